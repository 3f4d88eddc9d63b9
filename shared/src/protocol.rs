//! Messages of the agent–collector protocol other than the report itself.
//!
//! Enrollment is a DSSE envelope of type
//! [`ENROLL_PAYLOAD_TYPE`](crate::envelope::ENROLL_PAYLOAD_TYPE) whose payload
//! is an [`EnrollRequest`], signed by the new device key named in that same
//! payload: verifying it proves the sender holds the private key. PROTOCOL.md
//! describes every endpoint.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::{
    ENROLL_PAYLOAD_TYPE, Envelope, KeyId, VerifyError, verifying_key_from_base64,
};
use crate::ids::DeviceId;
use crate::report::{AgentInfo, HostInfo};

/// The only enrollment schema version this crate reads and writes.
pub const ENROLL_SCHEMA_VERSION: u32 = 1;

/// Payload of `POST /api/v1/enroll`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub schema_version: u32,
    /// The enrollment secret IT created. Inside the signed payload, so it
    /// cannot be lifted onto another key's request.
    pub enrollment_secret: String,
    /// The device's Ed25519 public key, base64 of the 32 raw bytes.
    pub public_key: String,
    pub agent: AgentInfo,
    pub host: HostInfo,
    /// When the agent made the request; the collector refuses stale ones.
    pub requested_at: DateTime<Utc>,
}

/// Body of a `201 Created` answer to an enrollment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollResponse {
    pub device_id: DeviceId,
    /// The collector's policy-signing public key, base64; the agent pins it.
    pub policy_public_key: String,
    pub policy_key_id: KeyId,
}

/// Body of a `2xx` answer to a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportAck {
    pub sequence: u64,
    /// Hex SHA-256 of the stored payload.
    pub digest: String,
    /// `false` when this was an idempotent retry of a stored report.
    pub newly_stored: bool,
}

/// Body of every `4xx`/`5xx` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `bad_signature`.
    pub error: String,
    /// A sentence for a person.
    pub message: String,
}

/// Why an enrollment envelope was refused before any secret was checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Envelope(#[from] VerifyError),
    #[error("enrollment request is not valid: {0}")]
    Invalid(String),
}

impl EnrollRequest {
    /// Signs this request with the device key it names.
    pub fn sign(&self, key: &ed25519_dalek::SigningKey) -> Envelope {
        let payload = serde_json::to_vec(self).unwrap_or_default();
        Envelope::sign(ENROLL_PAYLOAD_TYPE, &payload, key)
    }

    /// Checks the proof of possession: the envelope verifies with the very key
    /// its payload names. Returns the request and that key's id.
    pub fn open(envelope: &Envelope) -> Result<(Self, KeyId), EnrollError> {
        if envelope.payload_type != ENROLL_PAYLOAD_TYPE {
            return Err(VerifyError::WrongPayloadType {
                expected: ENROLL_PAYLOAD_TYPE.to_owned(),
                found: envelope.payload_type.clone(),
            }
            .into());
        }
        // Read the claimed key from the payload, then verify against it alone.
        let claimed: Self = serde_json::from_slice(&envelope.payload_unverified()?)
            .map_err(|err| EnrollError::Invalid(err.to_string()))?;
        if claimed.schema_version != ENROLL_SCHEMA_VERSION {
            return Err(EnrollError::Invalid(format!(
                "schema_version is {}, only {ENROLL_SCHEMA_VERSION} is understood",
                claimed.schema_version
            )));
        }
        // The same free-text rule as reports (see `nul_field`).
        if let Some(field) = crate::report::nul_field(&claimed.host, &claimed.agent) {
            return Err(EnrollError::Invalid(format!(
                "{field} contains a NUL character (U+0000)"
            )));
        }
        let key = verifying_key_from_base64(&claimed.public_key)?;
        let key_id = KeyId::of(&key);
        let verified = envelope.verify(ENROLL_PAYLOAD_TYPE, |id| (id == &key_id).then_some(key))?;
        Ok((claimed, verified.key_id))
    }
}
