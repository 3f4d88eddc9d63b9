//! The policy the daemon enforces: fetched from the collector with an ETag,
//! verified against the key pinned at enrollment, kept on disk as the last
//! good one. A policy that fails verification is refused (the last good one
//! stays) and becomes a `policy_rejected` event.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::Utc;
use palisade_shared::Policy;
use palisade_shared::envelope::{Envelope, KeyId, POLICY_PAYLOAD_TYPE};
use palisade_shared::report::{Event, EventKind};

use crate::config::CollectorUrl;
use crate::durable::{self, FileMode};
pub use crate::policy::{CurrentPolicy, baseline};

const POLICY_FILE: &str = "policy.dsse.json";
/// A policy of four rules is under 4 KiB; 1 MiB is a generous bound that
/// still stops a hostile answer from filling memory.
const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// Loads the last good policy from the state directory (verified again with
/// the pinned key), or the built-in baseline.
pub fn load_last_good(
    state_dir: &Path,
    pinned: Option<&ed25519_dalek::VerifyingKey>,
) -> CurrentPolicy {
    let path = state_dir.join(POLICY_FILE);
    if let (Some(key), Ok(bytes)) = (pinned, std::fs::read(&path)) {
        match open_envelope(&bytes, key) {
            Ok(policy) => {
                return CurrentPolicy {
                    policy,
                    etag: None,
                    source: "last good policy from the collector",
                };
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "stored policy is unusable; using the baseline")
            }
        }
    }
    baseline()
}

/// The outcome of one fetch.
#[derive(Debug)]
pub enum Fetched {
    Unchanged,
    Updated(CurrentPolicy),
    /// The collector served something that does not verify: keep the old
    /// one, report this event.
    Rejected(Event),
}

/// Fetches the policy if it changed, verifies it, and stores it as the last
/// good one.
pub async fn fetch(
    client: &reqwest::Client,
    collector: &CollectorUrl,
    pinned: &ed25519_dalek::VerifyingKey,
    current: &CurrentPolicy,
    state_dir: &Path,
) -> anyhow::Result<Fetched> {
    let url = super::enroll::endpoint(collector, "api/v1/policy")?;
    let mut request = client.get(url.clone());
    if let Some(etag) = &current.etag {
        request = request.header("if-none-match", etag);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot fetch {url}"))?;
    if response.status() == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::Unchanged);
    }
    if !response.status().is_success() {
        anyhow::bail!("fetching the policy answered HTTP {}", response.status());
    }
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .bytes()
        .await
        .context("the policy answer was cut off")?;
    match open_envelope(&bytes, pinned) {
        Ok(policy) => {
            if policy.digest == current.policy.digest {
                return Ok(Fetched::Updated(CurrentPolicy {
                    etag,
                    ..current.clone()
                }));
            }
            durable::write_atomic(&policy_path(state_dir), &bytes, FileMode::OwnerOnly)
                .context("cannot keep the new policy on disk")?;
            tracing::info!(id = %policy.id, version = policy.version, "applied a new policy");
            Ok(Fetched::Updated(CurrentPolicy {
                policy,
                etag,
                source: "collector",
            }))
        }
        Err(reason) => {
            tracing::error!(%reason, "refused a policy that does not verify; keeping the last good one");
            let mut details = serde_json::Map::new();
            details.insert("reason".into(), reason.into());
            Ok(Fetched::Rejected(Event {
                kind: EventKind::PolicyRejected,
                at: Utc::now(),
                details,
            }))
        }
    }
}

fn policy_path(state_dir: &Path) -> PathBuf {
    state_dir.join(POLICY_FILE)
}

fn open_envelope(bytes: &[u8], pinned: &ed25519_dalek::VerifyingKey) -> Result<Policy, String> {
    let envelope = Envelope::from_json(bytes, MAX_POLICY_BYTES).map_err(|e| e.to_string())?;
    let pinned_id = KeyId::of(pinned);
    let verified = envelope
        .verify(POLICY_PAYLOAD_TYPE, |id| {
            (id == &pinned_id).then_some(*pinned)
        })
        .map_err(|e| e.to_string())?;
    let text =
        String::from_utf8(verified.payload).map_err(|_| "the policy is not UTF-8".to_owned())?;
    Policy::parse(&text).map_err(|errors| format!("the signed policy is invalid: {errors}"))
}
