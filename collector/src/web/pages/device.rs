//! `GET /devices/{id}`: one device in full (verdicts with evidence and fix,
//! deadlines and exceptions, report history with its chain, keys), and
//! `POST /devices/{id}/revoke`.

use std::collections::HashMap;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::html;
use palisade_shared::{Envelope, Report};

use crate::app::AppState;
use crate::operations::{self, OperationError};
use crate::store::{DeviceDetail, ReportHistoryEntry};
use crate::web::auth::{CsrfForm, Session, form_refusal};
use crate::web::layout::{self, Nav, csrf_field, status_badge};
use crate::web::{PageError, format_optional_time, format_time, html_response};

/// Reports in the history: a day of a laptop's life at one report per 15
/// minutes.
const HISTORY: u32 = 100;

pub async fn page(
    session: Session,
    State(state): State<AppState>,
    Path(device_id): Path<String>,
) -> Result<Response, PageError> {
    let now = Utc::now();
    let detail = state
        .store
        .device_detail(&device_id, now, HISTORY)
        .await
        .map_err(|err| PageError::unavailable("reading the device failed", &err))?
        .ok_or_else(|| no_such_device(&device_id))?;
    let deadlines = deadlines(&state, &detail).await;
    let device = &detail.device;
    let current_key = detail
        .keys
        .iter()
        .rev()
        .find(|k| k.revoked_at.is_none())
        .or(detail.keys.last());

    let body = html! {
        dl class="facts" {
            dt { "Hostname" } dd id="hostname" { (device.hostname) }
            dt { "User" } dd id="console-user" { (device.console_user.as_deref().unwrap_or("—")) }
            dt { "Device id" } dd { code { (device.device_id) } }
            dt { "Status" } dd { (status_badge(detail.status.as_str())) }
            dt { "OS" } dd { (device.os_name) " " (device.os_version) " (kernel " (device.kernel_version) ", " (device.arch) ")" }
            dt { "Agent" } dd { (device.agent_version) }
            dt { "Policy" } dd {
                @if let (Some(id), Some(version)) = (&device.policy_id, device.policy_version) { (id) " v" (version) } @else { "—" }
            }
            dt { "Enrolled" } dd id="enrolled-at" { (format_time(device.enrolled_at)) }
            dt { "Last seen" } dd { (format_optional_time(device.last_seen_at)) }
            dt { "Signing key" } dd {
                @if let Some(key) = current_key { code id="key-id" { (key.key_id) } } @else { span id="key-id" { "—" } }
            }
            dt { "Signatures" } dd {
                span class="signature-verified" {
                    "✓ Every stored report's Ed25519 signature was verified against this key when it arrived."
                }
            }
            @if device.sequence_gap { dt { "Chain" } dd class="warning" { "Reports were lost: the sequence has a gap (see the history)." } }
            @if device.chain_broken { dt { "Chain" } dd class="warning" { "A report did not link to its predecessor (see the history)." } }
        }
        @if let Some(revoked_at) = device.revoked_at {
            p id="revoked" class="warning" {
                "Revoked " (format_time(revoked_at)) ": its reports are refused; it must re-enroll with a new key."
            }
        } @else if session.is_admin() {
            form id="revoke" method="post" action={ "/devices/" (device.device_id) "/revoke" } {
                (csrf_field(&session))
                button id="revoke-submit" type="submit" class="danger" { "Revoke this device" }
                " Its reports are refused from now on; it re-enrolls with a new key."
            }
        }

        h2 { "Rules" }
        table id="verdicts" {
            thead { tr { th { "Rule" } th { "Status" } th { "Mode" } th { "Summary" } th { "Fix" } th { "Since" } th { "Deadline" } th { "Evidence" } } }
            tbody {
                @for verdict in &detail.verdicts {
                    @let latest = &verdict.verdict;
                    tr class="verdict" data-rule=(latest.rule_id) data-status=(verdict.status.as_str()) {
                        td { (latest.rule_id) }
                        td {
                            (status_badge(verdict.status.as_str()))
                            @if verdict.status != latest.status { br; small { "reported " (latest.status.as_str()) } }
                            @if let Some(id) = verdict.exception_id {
                                @if let Some(exception) = detail.exceptions.iter().find(|e| e.id == id) {
                                    br; small class="exception" { "exception #" (id) " until " (format_time(exception.until)) ": " (exception.reason) " (approved by " (exception.approver) ")" }
                                }
                            }
                        }
                        td { (latest.mode) }
                        td { (latest.summary) }
                        td { @if latest.fix.is_empty() { "—" } @else { (latest.fix) } }
                        td { (format_time(latest.status_since)) }
                        td { (format_optional_time(deadlines.get(&latest.rule_id).copied())) }
                        td { pre class="evidence" { (pretty_json(&latest.evidence_json)) } }
                    }
                }
            }
        }
        @if !detail.exceptions.is_empty() {
            h2 { "Active exceptions" }
            ul {
                @for e in &detail.exceptions {
                    li { (e.rule_id) " until " (format_time(e.until)) ": " (e.reason) " (approved by " (e.approver) ")" }
                }
            }
        }
        p { a href={ "/exceptions?device=" (device.device_id) } { "Grant an exception for this device" } }

        h2 { "Report history" }
        p class="note" { "Newest first; each report names its predecessor's digest, so a missing or rewritten report shows." }
        table id="history" {
            thead { tr { th { "Sequence" } th { "Issued" } th { "Received" } th { "Checks" } th { "Digest" } th { "Chain" } } }
            tbody {
                @for (index, report) in detail.reports.iter().enumerate() {
                    @let older = detail.reports.get(index + 1);
                    tr class={ "report" @if report.chain_broken { " broken" } } {
                        td { (report.sequence) }
                        td { (format_time(report.issued_at)) }
                        td { (format_time(report.received_at)) }
                        td { code { (report.summary_json) } }
                        td { code title=(report.digest) { (short(&report.digest)) } }
                        td {
                            @if report.chain_broken { span class="warning" { "previous digest does not match" } }
                            @else { "linked" }
                        }
                    }
                    @if let Some(missing) = gap_before(report, older) {
                        tr class="gap" { td colspan="6" { (missing) } }
                    }
                }
            }
        }
        h2 { "Keys" }
        table id="keys" {
            thead { tr { th { "Key id (SHA-256 of the public key)" } th { "Created" } th { "Revoked" } } }
            tbody {
                @for key in &detail.keys {
                    tr { td { code { (key.key_id) } } td { (format_time(key.created_at)) } td { (format_optional_time(key.revoked_at)) } }
                }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        layout::page(&session, Nav::Devices, &device.hostname, body),
    ))
}

/// What is missing between `report` and the next older one listed, if
/// anything: a hole in the sequence, or (for the oldest listed) the gap the
/// collector flagged when it stored the report.
fn gap_before(report: &ReportHistoryEntry, older: Option<&ReportHistoryEntry>) -> Option<String> {
    match older {
        Some(older) if report.sequence > older.sequence + 1 => {
            let (first, last) = (older.sequence + 1, report.sequence - 1);
            Some(if first == last {
                format!("gap: report {first} is missing")
            } else {
                format!("gap: reports {first} to {last} are missing")
            })
        }
        None if report.sequence_gap => Some(format!(
            "gap: reports before {} are missing",
            report.sequence
        )),
        _ => None,
    }
}

/// The first 12 hex digits of a digest: enough to tell reports apart.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// Stored JSON evidence, indented for reading; as stored if it does not
/// parse.
fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// Each rule's nudge deadline from the device's latest report. Deadlines
/// are not kept in the verdict table, so they are read from the stored
/// envelope (verified when it arrived); any problem just shows no deadline.
async fn deadlines(state: &AppState, detail: &DeviceDetail) -> HashMap<String, DateTime<Utc>> {
    let Some(sequence) = detail.device.last_sequence else {
        return HashMap::new();
    };
    let Ok(Some(bytes)) = state
        .store
        .report_envelope(&detail.device.device_id, sequence)
        .await
    else {
        return HashMap::new();
    };
    Envelope::from_json(&bytes, usize::MAX)
        .ok()
        .and_then(|envelope| envelope.payload_unverified().ok())
        .and_then(|payload| Report::from_json(&payload).ok())
        .map(|report| {
            report
                .checks
                .into_iter()
                .filter_map(|check| Some((check.id.as_str().to_owned(), check.deadline?)))
                .collect()
        })
        .unwrap_or_default()
}

fn no_such_device(device_id: &str) -> PageError {
    PageError::not_found(format!("There is no device {device_id:?}."))
}

/// `POST /devices/{id}/revoke` (admin): revokes, audits, and shows the
/// device again.
pub async fn revoke(
    session: Session,
    State(state): State<AppState>,
    Path(device_id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| form_refusal(&r))?;
    session.authorise_change(form.csrf.as_deref())?;
    operations::revoke_device(&state.store, &session.actor(), &device_id)
        .await
        .map_err(|err| match err {
            OperationError::NoSuchDevice(id) => no_such_device(&id),
            OperationError::Store(err) => {
                PageError::unavailable("revoking the device failed", &err)
            }
            other => PageError::unavailable(&other.to_string(), &other),
        })?;
    Ok(Redirect::to(&format!("/devices/{device_id}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sequence: u64, sequence_gap: bool) -> ReportHistoryEntry {
        ReportHistoryEntry {
            sequence,
            digest: String::new(),
            prev_digest: String::new(),
            issued_at: DateTime::default(),
            received_at: DateTime::default(),
            sequence_gap,
            chain_broken: false,
            summary_json: String::new(),
        }
    }

    #[test]
    fn gaps_are_found_between_and_before_reports() {
        assert_eq!(gap_before(&entry(5, false), Some(&entry(4, false))), None);
        assert_eq!(
            gap_before(&entry(5, true), Some(&entry(3, false))).as_deref(),
            Some("gap: report 4 is missing")
        );
        assert_eq!(
            gap_before(&entry(9, true), Some(&entry(3, false))).as_deref(),
            Some("gap: reports 4 to 8 are missing")
        );
        assert_eq!(
            gap_before(&entry(3, true), None).as_deref(),
            Some("gap: reports before 3 are missing")
        );
        assert_eq!(gap_before(&entry(1, false), None), None);
    }
}
