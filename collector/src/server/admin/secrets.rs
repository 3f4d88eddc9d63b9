//! Enrollment secrets through the API: list them, create one. A new secret
//! is in the creating answer and nowhere else; only its hash is stored.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use chrono::{TimeDelta, Utc};

use super::auth::Admin;
use super::bodies::{
    CreatedSecretBody, ErrorBodySchema, NewSecretRequest, SecretBody, SecretListBody,
};
use super::{bad_field, json_refusal};
use crate::app::AppState;
use crate::secrets;
use crate::server::error::ApiError;
use crate::store::{EnrollmentSecretInfo, NewEnrollmentSecret};

/// Ten years: a secret meant to outlive the laptops it enrolls is a
/// mistake; "never expires" is said by leaving the field out.
const MAX_EXPIRES_IN_SECONDS: u64 = 10 * 365 * 86_400;
/// A label is a note, not a document.
const MAX_LABEL_CHARS: usize = 200;

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
        secrets: secrets.into_iter().map(SecretBody::from).collect(),
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
    if request.uses == Some(0) {
        return Err(bad_field(
            "uses",
            "must be at least 1 (leave it out for unlimited)",
        ));
    }
    if request.label.chars().count() > MAX_LABEL_CHARS {
        return Err(bad_field(
            "label",
            format!("longer than {MAX_LABEL_CHARS} characters"),
        ));
    }
    let now = Utc::now();
    let expires_at = match request.expires_in_seconds {
        None => None,
        Some(seconds) if (1..=MAX_EXPIRES_IN_SECONDS).contains(&seconds) => {
            Some(now + TimeDelta::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 1000)))
        }
        Some(_) => {
            return Err(bad_field(
                "expires_in_seconds",
                format!("must be from 1 to {MAX_EXPIRES_IN_SECONDS}"),
            ));
        }
    };
    let secret = secrets::generate("pls");
    let actor = caller.actor();
    let new = NewEnrollmentSecret {
        id: secret.id.clone(),
        secret_hash: secret.hash,
        label: request.label.clone(),
        max_uses: request.uses,
        expires_at,
        created_at: now,
        created_by: actor.clone(),
    };
    state
        .store
        .create_enrollment_secret(&new)
        .await
        .map_err(|err| ApiError::internal("creating a secret failed", &err))?;
    super::record(
        &state,
        &caller,
        "secret.create",
        &secret.id,
        serde_json::json!({
            "label": request.label,
            "max_uses": request.uses,
            "expires_at": expires_at,
        }),
    )
    .await?;
    tracing::info!(secret_id = %secret.id, actor = %actor, "enrollment secret created");
    let info = EnrollmentSecretInfo {
        id: secret.id,
        label: request.label,
        max_uses: request.uses,
        uses: 0,
        // As stored: whole milliseconds.
        expires_at: expires_at
            .and_then(|t| chrono::DateTime::from_timestamp_millis(t.timestamp_millis())),
        created_at: chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now),
        created_by: actor,
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedSecretBody {
            secret: secret.text,
            info: info.into(),
        }),
    ))
}
