//! The policy as IT manages it: read the current text, set a new one.
//!
//! A new policy is validated with `palisade_shared::Policy::parse` before
//! anything is stored; a refused one answers every problem with its line,
//! column and key path. A valid one is signed, stored and audited by
//! [`crate::server::policy::set_policy`], the same path the command line
//! takes, and agents pick it up on their next fetch.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::StringRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_shared::Policy;

use super::auth::{Admin, Caller};
use super::bodies::{ErrorBodySchema, InvalidPolicyBody, PolicyBody, PolicyProblem};
use crate::app::AppState;
use crate::server::error::ApiError;

/// The current policy: its TOML text, id, version, revision and digest.
#[utoipa::path(
    get,
    path = "/api/v1/admin/policy",
    tag = "policy",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The current policy", body = PolicyBody),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
        (status = 404, description = "`no_policy` (never after the collector's first start)", body = ErrorBodySchema),
    )
)]
pub async fn get(
    _caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<PolicyBody>, ApiError> {
    let record = state
        .store
        .current_policy()
        .await
        .map_err(|err| ApiError::internal("cannot read the policy", &err))?
        .ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "no_policy", "no policy has been set")
        })?;
    Ok(Json(record.into()))
}

/// Set the policy: the body is the TOML text (PROTOCOL.md §3). Invalid text
/// is refused with every problem listed; nothing changes.
#[utoipa::path(
    put,
    path = "/api/v1/admin/policy",
    tag = "policy",
    request_body(content = String, content_type = "application/toml", description = "The policy's TOML text, UTF-8"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored, signed and now served to agents", body = PolicyBody),
        (status = 400, description = "`invalid_policy` with `problems`, or `malformed` (not UTF-8)", body = InvalidPolicyBody),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
        (status = 403, description = "`forbidden`: a viewer token", body = ErrorBodySchema),
        (status = 413, description = "`too_large`: over 256 KiB", body = ErrorBodySchema),
    )
)]
pub async fn put(
    Admin(caller): Admin,
    State(state): State<AppState>,
    text: Result<String, StringRejection>,
) -> Response {
    let text = match text {
        Ok(text) => text,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the policy is over the body limit",
            )
            .into_response();
        }
        Err(rejection) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "malformed", rejection.body_text())
                .into_response();
        }
    };
    if let Err(diagnostics) = Policy::parse(&text) {
        let problems: Vec<PolicyProblem> = diagnostics
            .0
            .into_iter()
            .map(|d| PolicyProblem {
                line: d.line,
                column: d.column,
                key_path: d.key_path,
                message: d.message,
            })
            .collect();
        let body = InvalidPolicyBody {
            error: "invalid_policy".to_owned(),
            message: format!(
                "the policy has {} problem{}; nothing was changed",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ),
            problems,
        };
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    // set_policy signs, stores and writes the `policy.set` audit entry.
    match crate::server::policy::set_policy(&state.store, &state.policy_key, &text, &caller.actor())
        .await
    {
        Ok(record) => {
            tracing::info!(
                policy = %record.policy_id,
                version = record.policy_version,
                revision = record.revision,
                actor = %caller.actor(),
                "policy set"
            );
            Json(PolicyBody::from(record)).into_response()
        }
        Err(err) => {
            ApiError::internal("setting the policy failed", &format!("{err:#}")).into_response()
        }
    }
}
