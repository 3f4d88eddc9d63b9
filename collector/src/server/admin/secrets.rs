//! Enrollment secrets through the API: list them, create one, revoke one.
//! A new secret is in the creating answer and nowhere else; only its hash
//! is stored. Revoking is idempotent: a revoked secret revoked again
//! answers 200 with the first revocation's time (as devices do), so a
//! retried request is never an error.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{TimeDelta, Utc};

use super::auth::Admin;
use super::bodies::{
    CreatedSecretBody, ErrorBodySchema, NewSecretRequest, SecretBody, SecretListBody,
};
use super::{bad_field, json_refusal};
use crate::app::AppState;
use crate::operations::{self, CreatedSecret, NewSecret, OperationError};
use crate::server::error::ApiError;

/// Ten years: a secret meant to outlive the laptops it enrolls is a
/// mistake; "never expires" is said by leaving the field out.
const MAX_EXPIRES_IN_SECONDS: u64 = 10 * 365 * 86_400;

/// Every enrollment secret, newest first (never the secrets themselves).
#[utoipa::path(
    get,
    path = "/api/v1/secrets",
    tag = "enrollment",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The secrets", body = SecretListBody),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
        (status = 403, description = "`forbidden`: a viewer token", body = ErrorBodySchema),
    )
)]
pub async fn list(
    Admin(_caller): Admin,
    State(state): State<AppState>,
) -> Result<Json<SecretListBody>, ApiError> {
    let secrets = state
        .store
        .list_enrollment_secrets()
        .await
        .map_err(|err| ApiError::internal("listing secrets failed", &err))?;
    Ok(Json(SecretListBody {
        secrets: secrets
            .into_iter()
            .map(|info| SecretBody::new(info, Utc::now()))
            .collect(),
    }))
}

/// Create an enrollment secret; the answer holds it, once.
#[utoipa::path(
    post,
    path = "/api/v1/secrets",
    tag = "enrollment",
    request_body = NewSecretRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `secret` is shown only here", body = CreatedSecretBody),
        (status = 400, description = "`malformed` or `bad_field`", body = ErrorBodySchema),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
        (status = 403, description = "`forbidden`: a viewer token", body = ErrorBodySchema),
    )
)]
pub async fn create(
    Admin(caller): Admin,
    State(state): State<AppState>,
    request: Result<Json<NewSecretRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedSecretBody>), ApiError> {
    let Json(request) = request.map_err(|r| json_refusal(&r))?;
    let created = create_secret(
        &state,
        &caller.actor(),
        request.uses,
        request.expires_in_seconds,
        request.label,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedSecretBody {
            secret: created.text,
            info: SecretBody::new(created.info, Utc::now()),
        }),
    ))
}

/// Makes a secret through [`operations`], answering a bad value as a 400
/// naming its field; for this module and the installers endpoint.
pub(super) async fn create_secret(
    state: &AppState,
    actor: &str,
    uses: Option<u32>,
    expires_in_seconds: Option<u64>,
    label: String,
) -> Result<CreatedSecret, ApiError> {
    let expires_at = match expires_in_seconds {
        None => None,
        Some(seconds) if (1..=MAX_EXPIRES_IN_SECONDS).contains(&seconds) => {
            Some(Utc::now() + TimeDelta::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 1000)))
        }
        Some(_) => {
            return Err(bad_field(
                "expires_in_seconds",
                format!("must be from 1 to {MAX_EXPIRES_IN_SECONDS}"),
            ));
        }
    };
    operations::create_enrollment_secret(
        &state.store,
        actor,
        NewSecret {
            label,
            max_uses: uses,
            expires_at,
        },
    )
    .await
    .map_err(|err| match err {
        OperationError::Invalid { field, problem } => bad_field(field, problem),
        other => ApiError::internal("creating a secret failed", &other),
    })
}

/// Revoke an enrollment secret: devices presenting it are refused from now
/// on (401 `bad_secret`, as for any other bad secret); the devices it
/// enrolled stay enrolled. Revoking again changes nothing and answers the
/// first revocation's time.
#[utoipa::path(
    post,
    path = "/api/v1/secrets/{id}/revoke",
    tag = "enrollment",
    params(("id" = String, Path, description = "Secret id (the 16 hex digits after `pls_`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked (now or before)", body = SecretBody),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
        (status = 403, description = "`forbidden`: a viewer token", body = ErrorBodySchema),
        (status = 404, description = "`no_such_secret`", body = ErrorBodySchema),
    )
)]
pub async fn revoke(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path(secret_id): Path<String>,
) -> Result<Json<SecretBody>, ApiError> {
    let revoked = operations::revoke_enrollment_secret(&state.store, &caller.actor(), &secret_id)
        .await
        .map_err(|err| match err {
            OperationError::NoSuchSecret(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "no_such_secret", err.to_string())
            }
            other => ApiError::internal("revoking a secret failed", &other),
        })?;
    Ok(Json(SecretBody::new(revoked.info, Utc::now())))
}
