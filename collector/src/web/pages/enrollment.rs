//! `GET /enrollment`: the enrollment secrets (never the secrets
//! themselves) and their state; `POST /enrollment` (admin): a new secret,
//! shown once in the answer and stored only as a hash;
//! `POST /enrollment/{id}/revoke` (admin): revokes one (idempotent, like
//! the admin API), then shows the page again.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Redirect, Response};
use chrono::{TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::non_empty;
use crate::app::AppState;
use crate::operations::{self, MAX_SECRET_LABEL_CHARS, NewSecret, OperationError};
use crate::web::auth::{CsrfForm, Session, form_refusal};
use crate::web::layout::{self, Nav, csrf_field, status_badge};
use crate::web::{PageError, format_optional_time, format_time, html_response};

/// The same limits as the admin API: ten years at most, labels are notes.
const MAX_EXPIRES_DAYS: u32 = 3650;

#[derive(Debug, Deserialize)]
pub struct NewSecretForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(flatten)]
    pub fields: SecretFields,
}

/// The fields of a new secret, on this page and on Add devices.
#[derive(Debug, Default, Deserialize)]
pub struct SecretFields {
    #[serde(default)]
    label: Option<String>,
    /// Empty: unlimited.
    #[serde(default)]
    uses: Option<String>,
    /// Empty: never expires.
    #[serde(default)]
    expires_days: Option<String>,
}

pub async fn page(session: Session, State(state): State<AppState>) -> Result<Response, PageError> {
    render(&session, &state, StatusCode::OK, None).await
}

/// The page, with `notice` (the new secret, or an error) above the list.
async fn render(
    session: &Session,
    state: &AppState,
    status: StatusCode,
    notice: Option<Markup>,
) -> Result<Response, PageError> {
    let secrets = state
        .store
        .list_enrollment_secrets()
        .await
        .map_err(|err| PageError::unavailable("listing secrets failed", &err))?;
    let now = Utc::now();
    let body = html! {
        @if let Some(notice) = notice { (notice) }
        @if session.is_admin() {
            p { a id="add-devices-link" href="/add-devices" { "Add devices" } ": a new secret with the install command for each OS." }
            h2 { "New enrollment secret" }
            form id="new-secret" method="post" action="/enrollment" {
                (csrf_field(session))
                label { "Label " input id="secret-label" name="label" type="text" maxlength="200" placeholder="e.g. ward 7 laptops, May batch"; }
                label { "Uses " input id="secret-uses" name="uses" type="number" min="1" placeholder="unlimited"; }
                label { "Expires in (days) " input id="secret-expires" name="expires_days" type="number" min="1" max="3650" placeholder="never"; }
                button id="secret-submit" type="submit" { "Create secret" }
            }
        }
        h2 { "Secrets" }
        table id="secrets" {
            thead { tr { th { "Id" } th { "Label" } th { "State" } th { "Uses" } th { "Expires" } th { "Created" } th { "By" } @if session.is_admin() { th { "Revoke" } } } }
            tbody {
                @for secret in &secrets {
                    tr class="secret" {
                        td { code { (secret.id) } }
                        td { (secret.label) }
                        td class="secret-state" { (status_badge(secret.state(now).as_str())) }
                        td { (secret.uses) " / " (secret.max_uses.map_or("unlimited".to_owned(), |n| n.to_string())) }
                        td { (format_optional_time(secret.expires_at)) }
                        td { (format_time(secret.created_at)) }
                        td { (secret.created_by) }
                        @if session.is_admin() {
                            td {
                                @if secret.revoked_at.is_none() {
                                    form id={ "revoke-" (secret.id) } method="post" action={ "/enrollment/" (secret.id) "/revoke" } {
                                        (csrf_field(session))
                                        button type="submit" { "Revoke" }
                                    }
                                } @else {
                                    (format_optional_time(secret.revoked_at))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html_response(
        status,
        layout::page(session, Nav::Enrollment, "Enrollment", body),
    ))
}

/// The form as a new secret, or what is wrong with it, said for the form.
pub fn validate(form: &SecretFields, now: chrono::DateTime<Utc>) -> Result<NewSecret, String> {
    let label = non_empty(&form.label).unwrap_or("").to_owned();
    if label.chars().count() > MAX_SECRET_LABEL_CHARS {
        return Err(format!(
            "The label is longer than {MAX_SECRET_LABEL_CHARS} characters."
        ));
    }
    let uses = match non_empty(&form.uses).map(str::parse::<u32>) {
        None => None,
        Some(Ok(n)) if n >= 1 => Some(n),
        Some(_) => {
            return Err(
                "Uses must be a whole number of at least 1 (or empty for unlimited).".to_owned(),
            );
        }
    };
    let expires_at = match non_empty(&form.expires_days).map(str::parse::<u32>) {
        None => None,
        Some(Ok(days)) if (1..=MAX_EXPIRES_DAYS).contains(&days) => {
            Some(now + TimeDelta::days(i64::from(days)))
        }
        Some(_) => {
            return Err(format!(
                "Expires must be a whole number of days from 1 to {MAX_EXPIRES_DAYS} (or empty \
                 for never)."
            ));
        }
    };
    Ok(NewSecret {
        label,
        max_uses: uses,
        expires_at,
    })
}

pub async fn create(
    session: Session,
    State(state): State<AppState>,
    form: Result<Form<NewSecretForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| form_refusal(&r))?;
    session.authorise_change(form.csrf.as_deref())?;
    let now = Utc::now();
    let refused = |message: String| {
        let notice = html! { p class="error" role="alert" { (message) } };
        render(&session, &state, StatusCode::BAD_REQUEST, Some(notice))
    };
    let request = match validate(&form.fields, now) {
        Ok(valid) => valid,
        Err(message) => return refused(message).await,
    };
    let secret =
        match operations::create_enrollment_secret(&state.store, &session.actor(), request).await {
            Ok(created) => created,
            Err(OperationError::Invalid { field, problem }) => {
                return refused(format!("{field}: {problem}")).await;
            }
            Err(other) => return Err(PageError::unavailable("creating the secret failed", &other)),
        };
    // Shown here once: the collector keeps only its hash.
    let notice = html! {
        section id="new-secret-shown" class="notice" {
            p { "New enrollment secret " code { (secret.info.id) } ". Copy it now: it is shown only once." }
            pre id="secret-value" { (secret.text) }
        }
    };
    render(&session, &state, StatusCode::CREATED, Some(notice)).await
}

/// `POST /enrollment/{id}/revoke` (admin): revokes and audits, then shows
/// the list again; an unknown id is a 404 page.
pub async fn revoke(
    session: Session,
    State(state): State<AppState>,
    Path(secret_id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| form_refusal(&r))?;
    session.authorise_change(form.csrf.as_deref())?;
    operations::revoke_enrollment_secret(&state.store, &session.actor(), &secret_id)
        .await
        .map_err(|err| match err {
            OperationError::NoSuchSecret(_) => PageError::not_found(format!("There is {err}.")),
            other => PageError::unavailable("revoking the secret failed", &other),
        })?;
    Ok(Redirect::to("/enrollment").into_response())
}
