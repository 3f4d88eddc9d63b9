//! The admin API: what IT's tools and the dashboard read and change, as JSON
//! under `/api/v1/`, every request authenticated by a bearer API token
//! (PROTOCOL.md §6).
//!
//! - [`auth`]: the bearer token extractors. [`auth::Caller`] lets any valid
//!   token in (viewer or admin); [`auth::Admin`] only admins (403 for a
//!   viewer). A handler's signature says which it needs.
//! - [`devices`]: device list (filters, search, sort, pages), one device,
//!   revocation, the fleet summary and the CSV export.
//! - [`policy`], [`secrets`], [`exceptions`], [`audit`]: one resource each;
//!   [`installers`]: a new secret with the install command lines.
//! - [`bodies`]: the JSON the admin API answers with. These are the
//!   collector's own types, not agent wire types, so they live here (not in
//!   `palisade-shared`) and derive `utoipa::ToSchema` for the document.
//! - [`openapi`]: `GET /api/v1/openapi.json`, assembled from the
//!   `#[utoipa::path]` attribute on each handler.
//!
//! Rules every handler keeps: query strings are parsed strictly (an unknown
//! parameter or a bad value is a 400 naming the parameter); every change an
//! admin makes is written to the audit log with the token that made it; a
//! token or secret never reaches a log or an answer, except the one answer
//! that creates a secret. Handlers reach the database only through
//! [`crate::store`].

pub mod audit;
pub mod auth;
pub mod bodies;
pub mod devices;
pub mod devices_csv;
pub mod exceptions;
pub mod installers;
pub mod openapi;
pub mod policy;
pub mod secrets;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use chrono::Utc;

use super::error::ApiError;
use crate::app::AppState;
use crate::store::AuditEntry;
use auth::Caller;

/// A query string that did not parse into the endpoint's parameters: an
/// unknown or repeated parameter. serde names it in its message.
pub(crate) fn query_refusal(rejection: &QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text)
        .replace("field", "parameter");
    ApiError::new(StatusCode::BAD_REQUEST, "bad_parameter", detail)
}

/// A JSON body that did not parse: the rejection's own status (400, 415 or
/// 422) with an `ErrorBody`; a body over the limit is 413 `too_large`, the
/// code every other endpoint gives it (it was `malformed` here, so a client
/// could not tell "too big" from "broken" by the code).
pub(crate) fn json_refusal(rejection: &JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "malformed"
    };
    ApiError::new(status, code, rejection.body_text())
}

/// A parameter with a value it cannot have.
pub(crate) fn bad_parameter(name: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_parameter",
        format!("parameter `{name}`: {problem}"),
    )
}

/// A JSON body field with a value it cannot have.
pub(crate) fn bad_field(name: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_field",
        format!("field `{name}`: {problem}"),
    )
}

/// `true` or `false`, nothing else.
pub(crate) fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(bad_parameter(
            name,
            format!("{other:?} is not `true` or `false`"),
        )),
    }
}

/// An integer within `range`.
pub(crate) fn parse_in_range<T>(
    name: &str,
    value: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ApiError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match value.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(bad_parameter(
            name,
            format!(
                "{value:?} is not a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// An RFC 3339 instant.
pub(crate) fn parse_instant(name: &str, value: &str) -> Result<chrono::DateTime<Utc>, ApiError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            bad_parameter(
                name,
                format!("{value:?} is not an RFC 3339 time like 2026-11-23T09:15:02Z"),
            )
        })
}

/// A known rule id.
pub(crate) fn parse_rule(name: &str, value: &str) -> Result<String, ApiError> {
    if palisade_shared::RuleId::ALL.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(bad_parameter(
            name,
            format!(
                "unknown rule {value:?}; expected one of: {}",
                palisade_shared::RuleId::ALL.join(", ")
            ),
        ))
    }
}

/// Records an admin change. A change is made first and audited second (the
/// store has one transaction per call); when the audit write fails the
/// caller answers 503, so the operator knows something went wrong and the
/// error is logged for whoever runs the collector.
pub(crate) async fn record(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    let entry = AuditEntry {
        at: Utc::now(),
        actor: caller.actor(),
        action: action.to_owned(),
        target: target.to_owned(),
        details_json: details.to_string(),
    };
    state.store.append_audit(&entry).await.map_err(|err| {
        ApiError::internal(
            &format!("{action} on {target} was done but could not be audited"),
            &err,
        )
    })
}
