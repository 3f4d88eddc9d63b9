//! `GET /api/v1/policy`: the current policy as a DSSE envelope signed by the
//! collector's policy key, with an ETag so agents that have it get a 304.
//!
//! The policy is not secret (it says which settings a laptop must have), so
//! fetching it needs no credential; its signature, checked against the key
//! the agent pinned at enrollment, is what makes it trustworthy.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use palisade_shared::Policy;
use palisade_shared::envelope::{Envelope, POLICY_PAYLOAD_TYPE};

use super::error::ApiError;
use crate::app::AppState;
use crate::store::{AuditEntry, NewPolicy, PolicyRecord, Store};

pub async fn get_policy(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let record = match state.store.current_policy().await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return ApiError::new(StatusCode::NOT_FOUND, "no_policy", "no policy has been set")
                .into_response();
        }
        Err(err) => return ApiError::internal("cannot read the policy", &err).into_response(),
    };
    let etag = etag(&record);
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|wanted| {
            wanted
                .split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let etag_header = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if cached {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response();
    }
    (
        StatusCode::OK,
        [
            (header::ETAG, etag_header),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        record.envelope,
    )
        .into_response()
}

/// A strong ETag naming the collector's revision and the policy's digest.
pub fn etag(record: &PolicyRecord) -> String {
    let short = record.digest.get(..16).unwrap_or(&record.digest);
    format!("\"r{}-{short}\"", record.revision)
}

/// Validates, signs and stores a new current policy, with an audit entry.
pub async fn set_policy(
    store: &Store,
    key: &ed25519_dalek::SigningKey,
    text: &str,
    actor: &str,
) -> anyhow::Result<PolicyRecord> {
    let policy = Policy::parse(text)
        .map_err(|errors| anyhow::anyhow!("the policy is invalid:\n{errors}"))?;
    let envelope = Envelope::sign(POLICY_PAYLOAD_TYPE, text.as_bytes(), key);
    let now = Utc::now();
    let record = store
        .save_policy(&NewPolicy {
            policy_id: policy.id.clone(),
            policy_version: policy.version,
            text: text.to_owned(),
            digest: policy.digest.clone(),
            envelope: envelope.to_json(),
            created_at: now,
            created_by: actor.to_owned(),
        })
        .await?;
    store
        .append_audit(&AuditEntry {
            at: now,
            actor: actor.to_owned(),
            action: "policy.set".into(),
            target: format!("{} v{}", policy.id, policy.version),
            details_json:
                serde_json::json!({ "digest": policy.digest, "revision": record.revision })
                    .to_string(),
        })
        .await?;
    Ok(record)
}
