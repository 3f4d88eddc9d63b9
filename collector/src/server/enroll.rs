//! `POST /api/v1/enroll`: a new device proves it holds its key and presents
//! an enrollment secret; it gets a device id and the collector's
//! policy-signing public key to pin.
//!
//! Answers: 201 enrolled; 200 the key was already enrolled through this same
//! secret (a retry whose first answer was lost), with that same device; 400
//! malformed; 401 the proof of possession or the secret is wrong (one answer
//! for every secret problem, so a caller learns nothing about which secrets
//! exist); 409 the key is enrolled through another secret, or revoked; 422
//! `requested_at` outside the allowed clock skew; 429 too many failures from
//! this address ([`super::failure_limit`]; only 400 and 401 count). The
//! secret never reaches a log.
//!
//! Every use of an existing secret is audited, never the secret's text: an
//! enrollment as `device.enroll` (actor `secret:<id>`, target the new
//! device, with the hostname), written in the enrollment's own transaction;
//! a refusal as `device.enroll_refused` (target the secret id, with the
//! reason and the caller's address). A secret id that does not exist is
//! not audited: anyone can make those up, and the failure limiter is what
//! answers them.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use palisade_shared::envelope::{
    Envelope, KeyId, verifying_key_from_base64, verifying_key_to_base64,
};
use palisade_shared::protocol::{EnrollError, EnrollRequest, EnrollResponse};
use palisade_shared::{DeviceId, VerifyError};
use rand::RngCore as _;

use super::error::ApiError;
use super::reports::body_refusal;
use crate::app::AppState;
use crate::secrets;
use crate::store::{AuditEntry, EnrollDevice, EnrollRefusal, Enrolled};

pub async fn enroll(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let now = Instant::now();
    if state.enroll_guard.is_blocked(peer.ip(), now) {
        state.metrics.enrollment("rate_limited");
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed enrollment attempts from this address; wait 15 minutes",
        )
        .into_response();
    }
    let result = match body {
        Ok(body) => enroll_device(&state, &body, peer).await,
        Err(rejection) => Err(body_refusal(&rejection)),
    };
    match result {
        Ok((Enrolled::New, response)) => {
            state.metrics.enrollment("enrolled");
            (StatusCode::CREATED, Json(response)).into_response()
        }
        Ok((Enrolled::Existing { .. }, response)) => {
            state.metrics.enrollment("repeated");
            (StatusCode::OK, Json(response)).into_response()
        }
        Err(err) => {
            if counts_as_failure(err.status) {
                state.enroll_guard.record_failure(peer.ip(), now);
            }
            state.metrics.enrollment(err.code);
            err.into_response()
        }
    }
}

/// Whether a refusal counts towards the per-address limit: a request that
/// is malformed or whose proof or secret is wrong. A key that is already
/// enrolled (409), a clock off by too much (422) or a body too large (413)
/// proves nothing about guessing secrets, and a laptop retrying one of them
/// must not lock out every other laptop behind the same NAT address.
fn counts_as_failure(status: StatusCode) -> bool {
    matches!(status, StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED)
}

async fn enroll_device(
    state: &AppState,
    body: &[u8],
    peer: SocketAddr,
) -> Result<(Enrolled, EnrollResponse), ApiError> {
    let envelope =
        Envelope::from_json(body, state.limits.max_body_bytes).map_err(|err| match err {
            VerifyError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", err.to_string())
            }
            _ => ApiError::new(StatusCode::BAD_REQUEST, "malformed", err.to_string()),
        })?;
    let (request, key_id) = EnrollRequest::open(&envelope).map_err(|err| match err {
        EnrollError::Envelope(
            VerifyError::UnknownKey { .. } | VerifyError::BadSignature { .. },
        ) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_proof",
            "the request is not signed by the key it names",
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, "malformed", other.to_string()),
    })?;
    let skew = chrono::Duration::seconds(i64::from(state.limits.clock_skew_seconds));
    let now = Utc::now();
    if request.requested_at > now + skew || request.requested_at < now - skew {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "stale_request",
            format!(
                "requested_at is more than {} s from the collector's clock; check the device's clock",
                state.limits.clock_skew_seconds
            ),
        ));
    }
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_secret",
            "the enrollment secret is not valid",
        )
    };
    let presented = secrets::parse("pls", &request.enrollment_secret).ok_or_else(refused)?;
    let public_key = verifying_key_from_base64(&request.public_key)
        .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, "malformed", err.to_string()))?;

    let mut id_bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id_bytes);
    let device_id = format!("dev_{}", hex::encode(id_bytes));
    let enrollment = EnrollDevice {
        secret_id: presented.id.clone(),
        presented_hash: presented.hash,
        device_id: device_id.clone(),
        key_id: key_id.to_string(),
        public_key: public_key.to_bytes(),
        hostname: request.host.hostname.clone(),
        os_name: request.host.os_name.clone(),
        os_version: request.host.os_version.clone(),
        kernel_version: request.host.kernel_version.clone(),
        arch: request.host.arch.clone(),
        agent_version: request.agent.version.clone(),
        at: now,
        peer: peer.ip().to_string(),
    };
    // An enrollment is a write like a report: its failure (a full disk)
    // makes the collector unhealthy too, and its success healthy again.
    let enrolled = match state.store.enroll_device(&enrollment).await {
        Ok(Ok(enrolled)) => {
            state.write_health.succeeded();
            enrolled
        }
        Ok(Err(refusal)) => {
            tracing::info!(secret_id = %presented.id, reason = refusal.as_str(), "enrollment refused");
            if refusal != EnrollRefusal::UnknownSecret {
                audit_refusal(state, &presented.id, refusal, peer, &request.host.hostname).await;
            }
            if refusal == EnrollRefusal::KeyAlreadyEnrolled {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "key_already_enrolled",
                    "this key is already enrolled; a device re-enrolls with a new key",
                ));
            }
            return Err(refused());
        }
        Err(err) => {
            state.write_health.failed(&err, now);
            return Err(ApiError::internal("enrollment failed", &err));
        }
    };
    let device_id = match &enrolled {
        Enrolled::New => {
            tracing::info!(device = %device_id, hostname = %request.host.hostname, "device enrolled");
            device_id
        }
        Enrolled::Existing { device_id } => {
            tracing::info!(device = %device_id, hostname = %request.host.hostname, "enrollment repeated with an enrolled key; same device");
            device_id.clone()
        }
    };
    let policy_public = state.policy_key.verifying_key();
    let response = EnrollResponse {
        device_id: DeviceId::new(device_id),
        policy_public_key: verifying_key_to_base64(&policy_public),
        policy_key_id: KeyId::of(&policy_public),
    };
    Ok((enrolled, response))
}

/// Audits a refused use of an existing secret. The refusal stands whether
/// or not the entry is written; a failed write is logged for whoever runs
/// the collector.
async fn audit_refusal(
    state: &AppState,
    secret_id: &str,
    refusal: EnrollRefusal,
    peer: SocketAddr,
    hostname: &str,
) {
    let entry = AuditEntry {
        at: Utc::now(),
        actor: format!("secret:{secret_id}"),
        action: "device.enroll_refused".into(),
        target: secret_id.to_owned(),
        details_json: serde_json::json!({
            "reason": refusal.as_str(),
            "peer": peer.ip().to_string(),
            "hostname": hostname,
        })
        .to_string(),
    };
    if let Err(err) = state.store.append_audit(&entry).await {
        tracing::error!(error = %err, secret_id = %secret_id, "cannot audit a refused enrollment");
    }
}
