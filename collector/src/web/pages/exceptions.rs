//! `GET /exceptions`: every exception, active ones marked; `POST
//! /exceptions` (admin): grant one (this device, this rule, until a date,
//! why, who approved), with the admin API's rules.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use maud::{Markup, html};
use palisade_shared::RuleId;
use serde::Deserialize;

use super::non_empty;
use crate::app::AppState;
use crate::store::{ExceptionFilter, NewException};
use crate::web::auth::{Session, audit, form_refusal};
use crate::web::layout::{self, Nav, csrf_field};
use crate::web::{PageError, format_time, html_response};

/// As in the admin API: reasons are sentences, approvers names.
const MAX_REASON_CHARS: usize = 1000;
const MAX_APPROVER_CHARS: usize = 200;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionsParams {
    /// Prefills the grant form's device.
    device: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    rule_id: Option<String>,
    /// A date (`YYYY-MM-DD`): the exception holds through that day, UTC.
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    approver: Option<String>,
}

pub async fn page(
    session: Session,
    State(state): State<AppState>,
    params: Result<Query<ExceptionsParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let Query(params) = params.map_err(|r| PageError::bad_request(r.body_text()))?;
    render(
        &session,
        &state,
        StatusCode::OK,
        non_empty(&params.device),
        None,
    )
    .await
}

async fn render(
    session: &Session,
    state: &AppState,
    status: StatusCode,
    device: Option<&str>,
    notice: Option<Markup>,
) -> Result<Response, PageError> {
    let now = Utc::now();
    let exceptions = state
        .store
        .list_exceptions(&ExceptionFilter::default())
        .await
        .map_err(|err| PageError::unavailable("listing exceptions failed", &err))?;
    let body = html! {
        @if let Some(notice) = notice { (notice) }
        @if session.is_admin() {
            h2 { "Grant an exception" }
            p class="note" { "While it holds, the device's failure of that rule shows as excepted, visibly; it expires by itself." }
            form id="grant-exception" method="post" action="/exceptions" {
                (csrf_field(session))
                label { "Device id " input id="exception-device" name="device_id" type="text" required value=(device.unwrap_or("")); }
                label { "Rule "
                    select id="exception-rule" name="rule_id" required {
                        @for rule in RuleId::ALL { option value=(rule) { (rule) } }
                    }
                }
                label { "Until (through this day, UTC) " input id="exception-until" name="until" type="date" required; }
                label { "Reason " input id="exception-reason" name="reason" type="text" required maxlength="1000"; }
                label { "Approved by " input id="exception-approver" name="approver" type="text" required maxlength="200" value=(session.username); }
                button id="exception-submit" type="submit" { "Grant" }
            }
        }
        h2 { "Exceptions" }
        table id="exceptions" {
            thead { tr { th { "#" } th { "Device" } th { "Rule" } th { "Until" } th { "Reason" } th { "Approved by" } th { "Granted" } th { "State" } } }
            tbody {
                @for e in &exceptions {
                    tr class={ "exception" @if e.is_active(now) { " active" } } {
                        td { (e.id) }
                        td { a class="device-link" href={ "/devices/" (e.device_id) } { (e.device_id) } }
                        td { (e.rule_id) }
                        td { (format_time(e.until)) }
                        td { (e.reason) }
                        td { (e.approver) }
                        td { (format_time(e.created_at)) }
                        td { @if e.is_active(now) { "active" } @else { "expired" } }
                    }
                }
            }
        }
    };
    Ok(html_response(
        status,
        layout::page(session, Nav::Exceptions, "Exceptions", body),
    ))
}

pub async fn grant(
    session: Session,
    State(state): State<AppState>,
    form: Result<Form<GrantForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| form_refusal(&r))?;
    session.authorise_change(form.csrf.as_deref())?;
    let exception = validate(&form, Utc::now())?;
    let granted = state
        .store
        .grant_exception(&exception)
        .await
        .map_err(|err| PageError::unavailable("granting the exception failed", &err))?
        .ok_or_else(|| {
            PageError::not_found(format!("There is no device {:?}.", exception.device_id))
        })?;
    let NewException {
        device_id,
        rule_id,
        until,
        reason,
        approver,
        ..
    } = exception;
    audit(
        &state,
        &session.actor(),
        "exception.grant",
        &device_id,
        serde_json::json!({
            "exception_id": granted.id, "rule_id": rule_id, "until": until,
            "reason": reason, "approver": approver,
        }),
    )
    .await?;
    tracing::info!(device = %device_id, rule = %rule_id, actor = %session.actor(), "exception granted");
    Ok(Redirect::to("/exceptions").into_response())
}

/// The exception the form asks for, granted at `now`, or what is wrong
/// with it (a 400 naming the field).
pub fn validate(form: &GrantForm, now: DateTime<Utc>) -> Result<NewException, PageError> {
    let device_id = non_empty(&form.device_id).unwrap_or("").to_owned();
    let problem = |message: String| PageError::bad_request(message);
    let rule_id = match non_empty(&form.rule_id) {
        Some(rule) if RuleId::ALL.contains(&rule) => rule.to_owned(),
        other => {
            return Err(problem(format!(
                "field `rule_id`: unknown rule {:?}",
                other.unwrap_or("")
            )));
        }
    };
    let until = non_empty(&form.until)
        .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .and_then(|day| day.succ_opt())
        .and_then(|next| next.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| problem("field `until`: not a date like 2026-12-31".to_owned()))?;
    if until <= now + TimeDelta::seconds(1) {
        return Err(problem("field `until`: must be today or later".to_owned()));
    }
    let reason = non_empty(&form.reason).unwrap_or("").to_owned();
    let approver = non_empty(&form.approver).unwrap_or("").to_owned();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(problem(format!(
            "field `reason`: required, at most {MAX_REASON_CHARS} characters"
        )));
    }
    if approver.is_empty() || approver.chars().count() > MAX_APPROVER_CHARS {
        return Err(problem(format!(
            "field `approver`: required, at most {MAX_APPROVER_CHARS} characters"
        )));
    }
    Ok(NewException {
        device_id,
        rule_id,
        until,
        reason,
        approver,
        created_at: now,
    })
}
