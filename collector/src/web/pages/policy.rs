//! `GET /policy`: the current policy text and every stored version;
//! `POST /policy` (admin): a new policy, validated with
//! [`palisade_shared::Policy::parse`] first. On any error nothing is saved
//! and every problem is shown with its line and column.

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use palisade_shared::Policy;
use serde::Deserialize;

use crate::app::AppState;
use crate::web::auth::{Session, form_refusal};
use crate::web::layout::{self, Nav, csrf_field};
use crate::web::{PageError, format_time, html_response};

/// Versions listed: years of policy changes.
const VERSIONS: u32 = 100;

#[derive(Debug, Deserialize)]
pub struct PolicyForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    text: String,
}

pub async fn page(session: Session, State(state): State<AppState>) -> Result<Response, PageError> {
    render(&session, &state, StatusCode::OK, None, None).await
}

/// The page; `draft` refills the form after a refusal, `problems` lists
/// why it was refused.
async fn render(
    session: &Session,
    state: &AppState,
    status: StatusCode,
    draft: Option<&str>,
    problems: Option<Markup>,
) -> Result<Response, PageError> {
    let failed =
        |err: crate::store::StoreError| PageError::unavailable("reading the policy failed", &err);
    let current = state.store.current_policy().await.map_err(failed)?;
    let versions = state
        .store
        .policy_versions(VERSIONS)
        .await
        .map_err(failed)?;
    let body = html! {
        @if let Some(problems) = problems { (problems) }
        h2 { "Current policy" }
        @if let Some(current) = &current {
            p id="policy-current" {
                code { (current.policy_id) } " version " (current.policy_version)
                " (revision " (current.revision) ", set " (format_time(current.created_at)) " by " (current.created_by) ")"
            }
            pre id="policy-text" class="policy" { (current.text) }
        } @else {
            p { "No policy is set." }
        }
        @if session.is_admin() {
            h2 { "Upload a new policy" }
            p class="note" { "TOML as in PROTOCOL.md §3. It is checked before anything is saved; agents fetch it, signed by the collector, at their next cycle." }
            form id="policy-upload" method="post" action="/policy" {
                (csrf_field(session))
                textarea id="policy-input" name="text" rows="24" cols="80" spellcheck="false" required {
                    (draft.map_or_else(|| current.as_ref().map(|c| c.text.clone()).unwrap_or_default(), str::to_owned))
                }
                button id="policy-submit" type="submit" { "Check and save" }
            }
        }
        h2 { "Versions" }
        table id="policy-versions" {
            thead { tr { th { "Revision" } th { "Policy" } th { "Version" } th { "Digest" } th { "Set" } th { "By" } } }
            tbody {
                @for v in &versions {
                    tr { td { (v.revision) } td { (v.policy_id) } td { (v.policy_version) }
                         td { code title=(v.digest) { (v.digest.get(..12).unwrap_or(&v.digest)) } }
                         td { (format_time(v.created_at)) } td { (v.created_by) } }
                }
            }
        }
    };
    Ok(html_response(
        status,
        layout::page(session, Nav::Policy, "Policy", body),
    ))
}

pub async fn upload(
    session: Session,
    State(state): State<AppState>,
    form: Result<Form<PolicyForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| form_refusal(&r))?;
    session.authorise_change(form.csrf.as_deref())?;
    // Browsers send textarea lines with CRLF (HTML §4.10.11); the policy
    // and its digest are the text as IT wrote it, with plain newlines.
    let text = form.text.replace("\r\n", "\n");
    if let Err(diagnostics) = Policy::parse(&text) {
        let count = diagnostics.0.len();
        let problems = html! {
            section id="policy-errors" class="error" role="alert" {
                p { "The policy has " (count) " problem" @if count != 1 { "s" } "; nothing was saved." }
                ul {
                    @for d in &diagnostics.0 {
                        li class="policy-error" data-line=(d.line) {
                            "line " (d.line) ", column " (d.column) ": "
                            @if !d.key_path.is_empty() { code { (d.key_path) } ": " }
                            (d.message)
                        }
                    }
                }
            }
        };
        return render(
            &session,
            &state,
            StatusCode::BAD_REQUEST,
            Some(&text),
            Some(problems),
        )
        .await;
    }
    // set_policy signs, stores and writes the `policy.set` audit entry.
    let record =
        crate::server::policy::set_policy(&state.store, &state.policy_key, &text, &session.actor())
            .await
            .map_err(|err| {
                PageError::unavailable("saving the policy failed", &format!("{err:#}"))
            })?;
    tracing::info!(
        policy = %record.policy_id,
        version = record.policy_version,
        revision = record.revision,
        actor = %session.actor(),
        "policy set"
    );
    Ok(Redirect::to("/policy").into_response())
}
