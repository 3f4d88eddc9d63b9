//! `POST /api/v1/reports`: verify a signed report and store it durably.
//!
//! Answers (PROTOCOL.md §6): 201 stored; 200 the same report again; 400
//! malformed; 401 unknown key or bad signature; 403 revoked device; 409
//! sequence conflict; 413 body over the limit (by the router's body limit);
//! 422 wrong device or `issued_at` too far in the future; 503 the store
//! failed (retry). A 2xx is sent only after the batch holding the report has
//! committed. Every refusal is counted by reason.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use palisade_shared::Report;
use palisade_shared::envelope::{Envelope, KeyId, REPORT_PAYLOAD_TYPE, VerifyError, sha256_hex};
use palisade_shared::protocol::ReportAck;

use super::error::ApiError;
use crate::app::AppState;
use crate::ingest::batcher::SubmitError;
use crate::store::{DeviceKeyRecord, IncomingReport, IncomingVerdict, StoreOutcome};

pub async fn ingest(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let accepted = match body {
        Ok(body) => accept(&state, &body).await,
        Err(rejection) => Err(body_refusal(&rejection)),
    };
    let response = match accepted {
        Ok((status, ack, outcome)) => {
            state.metrics.report_accepted(outcome);
            (status, Json(ack)).into_response()
        }
        Err(err) => {
            state.metrics.report_rejected(err.code);
            err.into_response()
        }
    };
    state
        .metrics
        .observe_ingest(started.elapsed().as_secs_f64());
    response
}

async fn accept(
    state: &AppState,
    body: &[u8],
) -> Result<(StatusCode, ReportAck, &'static str), ApiError> {
    let envelope = Envelope::from_json(body, state.limits.max_body_bytes).map_err(refusal)?;

    // Look up every key the envelope names (at most four), then verify.
    let mut keys: HashMap<String, DeviceKeyRecord> = HashMap::new();
    for signature in envelope.signatures.iter().take(4) {
        if KeyId::parse(&signature.keyid).is_none() || keys.contains_key(&signature.keyid) {
            continue;
        }
        let record = state
            .store
            .device_key(&signature.keyid)
            .await
            .map_err(|e| ApiError::internal("key lookup failed", &e))?;
        if let Some(record) = record {
            keys.insert(signature.keyid.clone(), record);
        }
    }
    let verified = envelope
        .verify(REPORT_PAYLOAD_TYPE, |id| {
            let record = keys.get(id.as_str())?;
            ed25519_dalek::VerifyingKey::from_bytes(&record.public_key).ok()
        })
        .map_err(refusal)?;
    let Some(key) = keys.get(verified.key_id.as_str()) else {
        return Err(ApiError::internal(
            "verified key vanished",
            &"lookup mismatch",
        ));
    };
    if key.revoked_at.is_some() {
        return Err(revoked_device());
    }

    let report = Report::from_json(&verified.payload).map_err(|err| {
        ApiError::new(StatusCode::BAD_REQUEST, "schema_violation", err.to_string())
    })?;
    if report.sequence == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "schema_violation",
            "sequence starts at 1; sequence 0 marks a report that is not part of a chain",
        ));
    }
    // Both databases store sequences as signed 64-bit integers; a larger one
    // must be refused here, or it would fail the whole batch it lands in.
    if i64::try_from(report.sequence).is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "schema_violation",
            format!("sequence must be at most {}", i64::MAX),
        ));
    }
    // The same holds for the policy version: without this check one report
    // naming version 2^64 - 1 failed the batch it landed in (503 for every
    // device in that batch, and /healthz unhealthy until the next commit).
    if i64::try_from(report.policy.version).is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "schema_violation",
            format!("policy.version must be at most {}", i64::MAX),
        ));
    }
    if report.device_id.as_str() != key.device_id {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_device",
            "the report's device_id is not the device this key was enrolled for",
        ));
    }
    let now = Utc::now();
    let skew = Duration::seconds(i64::from(state.limits.clock_skew_seconds));
    if report.issued_at > now + skew {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "future_timestamp",
            format!(
                "issued_at {} is more than {} s ahead of the collector's clock",
                report.issued_at.to_rfc3339(),
                state.limits.clock_skew_seconds
            ),
        ));
    }

    let digest = sha256_hex(&verified.payload);
    let incoming = IncomingReport {
        device_id: key.device_id.clone(),
        key_id: key.key_id.clone(),
        sequence: report.sequence,
        digest: digest.clone(),
        prev_digest: report.prev_digest.clone(),
        issued_at: report.issued_at,
        received_at: now,
        envelope: body.to_vec(),
        hostname: report.host.hostname.clone(),
        os_name: report.host.os_name.clone(),
        os_version: report.host.os_version.clone(),
        agent_version: report.agent.version.clone(),
        console_user: report.host.console_user.clone(),
        policy_id: report.policy.id.clone(),
        policy_version: report.policy.version,
        verdicts: report
            .checks
            .iter()
            .map(|check| IncomingVerdict {
                rule_id: check.id.as_str().to_owned(),
                status: check.status,
                mode: check.mode.as_str().to_owned(),
                summary: check.summary.clone(),
                evidence_json: serde_json::Value::Object(check.evidence.clone()).to_string(),
                fix: check.fix.clone(),
            })
            .collect(),
    };
    let ack = |newly_stored| ReportAck {
        sequence: report.sequence,
        digest: digest.clone(),
        newly_stored,
    };
    match state.batcher.submit(incoming).await {
        Ok(StoreOutcome::Stored {
            sequence_gap,
            chain_broken,
        }) => {
            if sequence_gap || chain_broken {
                tracing::warn!(
                    device = %report.device_id,
                    sequence = report.sequence,
                    sequence_gap,
                    chain_broken,
                    "report chain irregular; flagged on the device"
                );
            }
            Ok((StatusCode::CREATED, ack(true), "stored"))
        }
        Ok(StoreOutcome::Duplicate) => Ok((StatusCode::OK, ack(false), "duplicate")),
        Ok(StoreOutcome::Conflict(reason)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "sequence_conflict",
            reason.message(),
        )),
        Ok(StoreOutcome::Revoked) => Err(revoked_device()),
        Err(SubmitError::Closed) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the collector is shutting down; retry later",
        )),
        Err(SubmitError::Store(err)) => Err(ApiError::internal("report batch failed", &err)),
    }
}

/// The answer to a report from a revoked device, whether the revocation was
/// seen at the key check or, racing it, inside the batch's transaction.
fn revoked_device() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "revoked",
        "this device has been revoked; re-enroll it with a new key",
    )
}

/// Maps an envelope failure to its answer.
fn refusal(err: VerifyError) -> ApiError {
    match err {
        VerifyError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", err.to_string())
        }
        VerifyError::Malformed(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed", err.to_string())
        }
        VerifyError::WrongPayloadType { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "wrong_payload_type",
            err.to_string(),
        ),
        VerifyError::UnknownKey { .. } => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown_key",
            "no signature is by an enrolled key",
        ),
        VerifyError::BadSignature { .. } => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the signature does not verify",
        ),
    }
}

/// A body the router refused to read: too large (413) or unreadable (400).
pub fn body_refusal(rejection: &BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is over the limit",
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", rejection.body_text())
    }
}
