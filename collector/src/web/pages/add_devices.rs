//! `GET /add-devices` (admin): a form for a new enrollment secret and the
//! URL devices reach the collector at; `POST /add-devices` (admin): makes
//! the secret (audited, through [`crate::operations`]) and shows it once
//! with the silent-install command line for each OS, from
//! [`crate::installers`], the function `palisade-collector installers` uses.
//!
//! Viewers get 403 on both: the page exists to make secrets. Everything is
//! checked before the secret is made, so a mistake leaves no unused secret.

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::enrollment::{self, SecretFields};
use super::non_empty;
use crate::app::AppState;
use crate::installers::{self, InstallerValues};
use crate::operations::{self, NewSecret, OperationError};
use crate::web::auth::{Session, form_refusal};
use crate::web::layout::{self, Nav, csrf_field};
use crate::web::{PageError, html_response};

#[derive(Debug, Deserialize)]
pub struct AddDevicesForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(flatten)]
    secret: SecretFields,
    #[serde(default)]
    collector_url: Option<String>,
    /// Present (a ticked checkbox): leave the CA pin out.
    #[serde(default)]
    no_ca_pin: Option<String>,
}

pub async fn page(session: Session, State(state): State<AppState>) -> Result<Response, PageError> {
    refuse_viewers(&session)?;
    Ok(render(&session, &state, StatusCode::OK, None))
}

pub async fn create(
    session: Session,
    State(state): State<AppState>,
    form: Result<Form<AddDevicesForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| form_refusal(&r))?;
    session.authorise_change(form.csrf.as_deref())?;
    let refused = |message: String| {
        let notice = html! { p class="error" role="alert" { (message) } };
        Ok(render(
            &session,
            &state,
            StatusCode::BAD_REQUEST,
            Some(notice),
        ))
    };
    let (request, collector_url) = match validate(&form, Utc::now()) {
        Ok(valid) => valid,
        Err(message) => return refused(message),
    };
    let ca_pin = match (form.no_ca_pin.is_some(), state.web.ca_pin) {
        (true, _) => None,
        (false, Some(pin)) => Some(pin),
        (false, None) => {
            return refused(
                "CA pin: this collector serves no certificate to pin (plain HTTP); tick \"no CA \
                 pin\" if the devices trust its certificate anyway."
                    .to_owned(),
            );
        }
    };
    let secret =
        match operations::create_enrollment_secret(&state.store, &session.actor(), request).await {
            Ok(created) => created,
            Err(OperationError::Invalid { field, problem }) => {
                return refused(format!("{field}: {problem}"));
            }
            Err(other) => return Err(PageError::unavailable("creating the secret failed", &other)),
        };
    let commands = installers::install_commands(&InstallerValues {
        version: installers::VERSION,
        collector_url: &collector_url,
        secret: &secret.text,
        ca_pin: ca_pin.as_ref(),
    })
    .map_err(|err| PageError::bad_request(err.to_string()))?;
    // Shown here once: the collector keeps only the secret's hash.
    let notice = html! {
        section id="new-secret-shown" class="notice" {
            p { "New enrollment secret " code { (secret.info.id) } ". Copy it and the commands now: they are shown only once." }
            pre id="secret-value" { (secret.text) }
            @for command in &commands {
                h3 { (command.title) }
                pre id={ "install-" (command.os) } { (command.text) }
            }
        }
    };
    Ok(render(&session, &state, StatusCode::CREATED, Some(notice)))
}

/// The new secret and the collector URL the form asks for, or what is
/// wrong with them, said for the form.
pub fn validate(form: &AddDevicesForm, now: DateTime<Utc>) -> Result<(NewSecret, String), String> {
    let request = enrollment::validate(&form.secret, now)?;
    let Some(url_text) = non_empty(&form.collector_url) else {
        return Err("Collector URL: give the URL devices reach the collector at.".to_owned());
    };
    let collector_url = installers::parse_collector_url(url_text)
        .map_err(|problem| format!("Collector URL: {problem}."))?;
    Ok((request, collector_url))
}

fn refuse_viewers(session: &Session) -> Result<(), PageError> {
    if session.is_admin() {
        Ok(())
    } else {
        Err(PageError::forbidden(
            "adding devices makes an enrollment secret, which needs an admin",
        ))
    }
}

/// The page, with `notice` (the secret and its commands, or an error)
/// above the form.
fn render(
    session: &Session,
    state: &AppState,
    status: StatusCode,
    notice: Option<Markup>,
) -> Response {
    let default_url = state.web.public_url.as_deref().unwrap_or("");
    let days = installers::DEFAULT_EXPIRY_DAYS;
    let body = html! {
        @if let Some(notice) = notice { (notice) }
        p { "A new enrollment secret, and the command that installs the agent silently with it on each OS (agent version " (installers::VERSION) ")." }
        form id="add-devices" method="post" action="/add-devices" {
            (csrf_field(session))
            label { "Label " input id="add-label" name="label" type="text" maxlength="200" placeholder="e.g. ward 7 laptops, May batch"; }
            label { "Uses " input id="add-uses" name="uses" type="number" min="1" placeholder="unlimited"; }
            label { "Expires in (days) " input id="add-expires" name="expires_days" type="number" min="1" max="3650" value=(days); }
            label { "Collector URL " input id="add-url" name="collector_url" type="url" required placeholder="https://palisade.example.org:8443" value=(default_url); }
            @if let Some(pin) = &state.web.ca_pin {
                p { "CA pin: " code id="ca-pin" { (pin.to_string()) } }
            }
            label { input id="add-no-pin" name="no_ca_pin" type="checkbox" value="1"; " No CA pin (the certificate is from a public CA the devices trust)" }
            button id="add-submit" type="submit" { "Create secret and commands" }
        }
    };
    html_response(
        status,
        layout::page(session, Nav::Enrollment, "Add devices", body),
    )
}
