//! Exceptions: IT's decision that one device may fail one rule until a
//! time, with a reason and who approved it. While active, that device's
//! `fail` for that rule shows as `excepted` everywhere (the store applies it
//! when reading); at `until` it expires by itself.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{Admin, Caller};
use super::bodies::{ErrorBodySchema, ExceptionBody, ExceptionListBody, NewExceptionRequest};
use super::{bad_field, json_refusal, parse_bool, query_refusal};
use crate::app::AppState;
use crate::server::error::ApiError;
use crate::store::{ExceptionFilter, NewException};

/// Reasons and approvers are sentences and names, not documents.
const MAX_REASON_CHARS: usize = 1000;
const MAX_APPROVER_CHARS: usize = 200;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExceptionListParams {
    /// Only this device's exceptions.
    pub device: Option<String>,
    /// `true`: only those active now; absent or `false`: all, expired too.
    #[param(value_type = Option<bool>)]
    pub active: Option<String>,
}

/// Exceptions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/exceptions",
    tag = "exceptions",
    params(ExceptionListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The exceptions", body = ExceptionListBody),
        (status = 400, description = "`bad_parameter`", body = ErrorBodySchema),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
    )
)]
pub async fn list(
    _caller: Caller,
    State(state): State<AppState>,
    params: Result<Query<ExceptionListParams>, QueryRejection>,
) -> Result<Json<ExceptionListBody>, ApiError> {
    let Query(params) = params.map_err(|r| query_refusal(&r))?;
    let now = Utc::now();
    let active = match &params.active {
        Some(text) => parse_bool("active", text)?,
        None => false,
    };
    let filter = ExceptionFilter {
        device_id: params.device.clone(),
        active_at: active.then_some(now),
    };
    let exceptions = state
        .store
        .list_exceptions(&filter)
        .await
        .map_err(|err| ApiError::internal("listing exceptions failed", &err))?;
    Ok(Json(ExceptionListBody {
        exceptions: exceptions
            .into_iter()
            .map(|e| ExceptionBody::new(e, now))
            .collect(),
    }))
}

/// Grant an exception.
#[utoipa::path(
    post,
    path = "/api/v1/exceptions",
    tag = "exceptions",
    request_body = NewExceptionRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Granted", body = ExceptionBody),
        (status = 400, description = "`malformed` or `bad_field` (unknown rule, `until` not in the future, empty reason or approver)", body = ErrorBodySchema),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
        (status = 403, description = "`forbidden`: a viewer token", body = ErrorBodySchema),
        (status = 404, description = "`no_such_device`", body = ErrorBodySchema),
    )
)]
pub async fn grant(
    Admin(caller): Admin,
    State(state): State<AppState>,
    request: Result<Json<NewExceptionRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ExceptionBody>), ApiError> {
    let Json(request) = request.map_err(|r| json_refusal(&r))?;
    let now = Utc::now();
    if !palisade_shared::RuleId::ALL.contains(&request.rule_id.as_str()) {
        return Err(bad_field(
            "rule_id",
            format!(
                "unknown rule {:?}; expected one of: {}",
                request.rule_id,
                palisade_shared::RuleId::ALL.join(", ")
            ),
        ));
    }
    if request.until <= now {
        return Err(bad_field("until", "must be in the future"));
    }
    for (name, value, max) in [
        ("reason", &request.reason, MAX_REASON_CHARS),
        ("approver", &request.approver, MAX_APPROVER_CHARS),
    ] {
        if value.trim().is_empty() {
            return Err(bad_field(name, "must not be empty"));
        }
        if value.chars().count() > max {
            return Err(bad_field(name, format!("longer than {max} characters")));
        }
    }
    let granted = state
        .store
        .grant_exception(&NewException {
            device_id: request.device_id.clone(),
            rule_id: request.rule_id.clone(),
            until: request.until,
            reason: request.reason.clone(),
            approver: request.approver.clone(),
            created_at: now,
        })
        .await
        .map_err(|err| ApiError::internal("granting an exception failed", &err))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_device",
                format!("no device {:?}", request.device_id),
            )
        })?;
    super::record(
        &state,
        &caller,
        "exception.grant",
        &request.device_id,
        serde_json::json!({
            "exception_id": granted.id,
            "rule_id": granted.rule_id,
            "until": granted.until,
            "reason": granted.reason,
            "approver": granted.approver,
        }),
    )
    .await?;
    tracing::info!(
        device = %granted.device_id,
        rule = %granted.rule_id,
        until = %granted.until,
        actor = %caller.actor(),
        "exception granted"
    );
    Ok((StatusCode::CREATED, Json(ExceptionBody::new(granted, now))))
}
