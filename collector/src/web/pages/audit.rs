//! `GET /audit`: the audit log, newest first.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use crate::app::AppState;
use crate::web::auth::Session;
use crate::web::layout::{self, Nav};
use crate::web::{PageError, format_time, html_response};

/// Entries shown: weeks of a normal IT team's changes and logins; the rest
/// is in the admin API (`/api/v1/audit?limit=1000`) and the database.
const ENTRIES: u32 = 500;

pub async fn page(session: Session, State(state): State<AppState>) -> Result<Response, PageError> {
    let entries = state
        .store
        .audit_log(ENTRIES)
        .await
        .map_err(|err| PageError::unavailable("reading the audit log failed", &err))?;
    let body = html! {
        p class="note" { "The newest " (ENTRIES) " entries: every login, failed login, logout and change, by whom." }
        table id="audit" {
            thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Details" } } }
            tbody {
                @for entry in &entries {
                    tr class="audit-entry" {
                        td { (format_time(entry.at)) }
                        td { (entry.actor) }
                        td { code { (entry.action) } }
                        td { (entry.target) }
                        td { code class="details" { (entry.details_json) } }
                    }
                }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        layout::page(&session, Nav::Audit, "Audit log", body),
    ))
}
