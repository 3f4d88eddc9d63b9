//! The audit log: who changed what, and when, newest first.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::bodies::{AuditEntryBody, AuditListBody, ErrorBodySchema};
use super::{parse_in_range, query_refusal};
use crate::app::AppState;
use crate::server::error::ApiError;

/// Entries unless asked otherwise: a screenful and then some.
const DEFAULT_LIMIT: u32 = 100;
/// The most entries one answer holds.
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// How many of the newest entries: 1 to 1000, default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// The newest audit entries.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Newest first", body = AuditListBody),
        (status = 400, description = "`bad_parameter`", body = ErrorBodySchema),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
    )
)]
pub async fn list(
    _caller: Caller,
    State(state): State<AppState>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditListBody>, ApiError> {
    let Query(params) = params.map_err(|r| query_refusal(&r))?;
    let limit = match &params.limit {
        Some(text) => parse_in_range("limit", text, 1..=MAX_LIMIT)?,
        None => DEFAULT_LIMIT,
    };
    let entries = state
        .store
        .audit_log(limit)
        .await
        .map_err(|err| ApiError::internal("reading the audit log failed", &err))?;
    Ok(Json(AuditListBody {
        entries: entries.into_iter().map(AuditEntryBody::from).collect(),
    }))
}
