//! The DSSE envelope ("Dead Simple Signing Envelope", secure-systems-lab/dsse
//! v1.0) with Ed25519 signatures.
//!
//! Every report and every policy travels inside one. The signature covers the
//! pre-authentication encoding (PAE) of the payload type and the payload
//! bytes, so neither can be swapped without breaking it:
//!
//! ```text
//! PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
//! ```
//!
//! where `LEN` is the decimal byte length. `keyid` is the lowercase hex
//! SHA-256 of the raw 32-byte Ed25519 public key.
//!
//! This module does no I/O. Verification never panics on hostile input: every
//! failure is a [`VerifyError`], and input larger than the caller's limit is
//! refused before it is parsed.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The payload type of a posture report, schema version 1.
pub const REPORT_PAYLOAD_TYPE: &str = "application/vnd.palisade.report+json; version=1";
/// The payload type of an enrollment request, schema version 1.
pub const ENROLL_PAYLOAD_TYPE: &str = "application/vnd.palisade.enroll+json; version=1";
/// The payload type of a policy document: the policy's TOML text, exactly as
/// the collector serves it, so its digest is stable.
pub const POLICY_PAYLOAD_TYPE: &str = "application/vnd.palisade.policy+toml; version=1";

/// The largest envelope accepted by default: 256 KiB. A report of four rules
/// is about 4 KiB; 64 times that leaves room for many rules and events while
/// keeping a hostile client from making the collector parse megabytes.
pub const DEFAULT_MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// More signatures than this on one envelope is refused: Palisade envelopes
/// carry one, and each extra one costs a verification.
const MAX_SIGNATURES: usize = 4;

/// A DSSE envelope exactly as on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Base64 (standard alphabet, padded) of the payload bytes.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// Hex SHA-256 of the signer's raw public key. DSSE calls this an
    /// unauthenticated hint; Palisade requires it and looks the key up by it.
    pub keyid: String,
    /// Base64 of the 64-byte Ed25519 signature over the PAE.
    pub sig: String,
}

/// The identifier of an Ed25519 public key: lowercase hex SHA-256 of its 32
/// raw bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> Self {
        Self(hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// Accepts only the exact form `of` produces (64 lowercase hex digits).
    pub fn parse(text: &str) -> Option<Self> {
        is_sha256_hex(text).then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why an envelope was refused. Callers match on this: the collector maps
/// each variant to an HTTP status and a rejection counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("envelope is {actual} bytes, over the limit of {limit}")]
    TooLarge { actual: usize, limit: usize },
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("payload type is {found:?}, expected {expected:?}")]
    WrongPayloadType { expected: String, found: String },
    #[error("no signature is by a known key (key ids: {})", keyids.join(", "))]
    UnknownKey { keyids: Vec<String> },
    #[error("signature by key {keyid} does not verify")]
    BadSignature { keyid: String },
}

/// A payload whose signature has been checked, with the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPayload {
    pub key_id: KeyId,
    pub payload: Vec<u8>,
}

/// The DSSE pre-authentication encoding of `payload_type` and `payload`.
pub fn pre_authentication_encoding(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut pae = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    pae.extend_from_slice(b"DSSEv1 ");
    pae.extend_from_slice(payload_type.len().to_string().as_bytes());
    pae.push(b' ');
    pae.extend_from_slice(payload_type.as_bytes());
    pae.push(b' ');
    pae.extend_from_slice(payload.len().to_string().as_bytes());
    pae.push(b' ');
    pae.extend_from_slice(payload);
    pae
}

/// Whether `text` has the exact form [`sha256_hex`] produces.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lowercase hex SHA-256 of `bytes`: the digest used for report chains and
/// policy references.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Envelope {
    /// Signs `payload` with `key` into a new envelope with one signature.
    pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey) -> Self {
        let signature = key.sign(&pre_authentication_encoding(payload_type, payload));
        Self {
            payload: STANDARD.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: vec![EnvelopeSignature {
                keyid: KeyId::of(&key.verifying_key()).0,
                sig: STANDARD.encode(signature.to_bytes()),
            }],
        }
    }

    /// Parses an envelope from JSON bytes, refusing input over `max_bytes`
    /// before looking at it.
    pub fn from_json(bytes: &[u8], max_bytes: usize) -> Result<Self, VerifyError> {
        if bytes.len() > max_bytes {
            return Err(VerifyError::TooLarge {
                actual: bytes.len(),
                limit: max_bytes,
            });
        }
        serde_json::from_slice(bytes).map_err(|err| VerifyError::Malformed(err.to_string()))
    }

    /// The envelope as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of strings cannot fail; an empty vector would
        // be refused by every verifier, so it is a safe fallback.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes the payload without checking any signature. Only for showing a
    /// payload to a person; never for trusting it.
    pub fn payload_unverified(&self) -> Result<Vec<u8>, VerifyError> {
        decode_base64(&self.payload, "payload")
    }

    /// Verifies the envelope against the keys `lookup` knows and returns the
    /// payload.
    ///
    /// Accepted when the payload type is `expected_type` and at least one
    /// signature is by a key that `lookup` returns and verifies strictly
    /// (RFC 8032 with the small-order and malleability checks). A signature
    /// by a known key that does not verify rejects the whole envelope, even
    /// if another one verifies: a forged signature is never ignored.
    pub fn verify(
        &self,
        expected_type: &str,
        lookup: impl Fn(&KeyId) -> Option<VerifyingKey>,
    ) -> Result<VerifiedPayload, VerifyError> {
        if self.payload_type != expected_type {
            return Err(VerifyError::WrongPayloadType {
                expected: expected_type.to_owned(),
                found: self.payload_type.clone(),
            });
        }
        if self.signatures.is_empty() {
            return Err(VerifyError::Malformed("envelope has no signatures".into()));
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(VerifyError::Malformed(format!(
                "envelope has {} signatures, at most {MAX_SIGNATURES} are accepted",
                self.signatures.len()
            )));
        }
        let payload = decode_base64(&self.payload, "payload")?;
        let pae = pre_authentication_encoding(&self.payload_type, &payload);

        let mut verified_by = None;
        for entry in &self.signatures {
            let Some(key_id) = KeyId::parse(&entry.keyid) else {
                return Err(VerifyError::Malformed(format!(
                    "keyid {:?} is not 64 lowercase hex digits",
                    entry.keyid
                )));
            };
            let sig_bytes = decode_base64(&entry.sig, "sig")?;
            let Ok(signature) = Signature::from_slice(&sig_bytes) else {
                return Err(VerifyError::Malformed(format!(
                    "signature is {} bytes, an Ed25519 signature is 64",
                    sig_bytes.len()
                )));
            };
            let Some(key) = lookup(&key_id) else { continue };
            // The lookup is by a hint the sender chose; make sure the key it
            // returned really is the one named.
            if KeyId::of(&key) != key_id {
                return Err(VerifyError::BadSignature {
                    keyid: entry.keyid.clone(),
                });
            }
            if key.verify_strict(&pae, &signature).is_err() {
                return Err(VerifyError::BadSignature {
                    keyid: entry.keyid.clone(),
                });
            }
            verified_by.get_or_insert(key_id);
        }
        match verified_by {
            Some(key_id) => Ok(VerifiedPayload { key_id, payload }),
            None => Err(VerifyError::UnknownKey {
                keyids: self.signatures.iter().map(|s| s.keyid.clone()).collect(),
            }),
        }
    }
}

/// DSSE allows either the standard or the URL-safe alphabet; padding is
/// required by both engines used here.
fn decode_base64(text: &str, field: &str) -> Result<Vec<u8>, VerifyError> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .map_err(|err| VerifyError::Malformed(format!("{field} is not valid base64: {err}")))
}

/// Parses a base64 Ed25519 public key (32 raw bytes), as the protocol
/// messages carry it.
pub fn verifying_key_from_base64(text: &str) -> Result<VerifyingKey, VerifyError> {
    let bytes = decode_base64(text, "public key")?;
    let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        VerifyError::Malformed(format!(
            "public key is {} bytes, an Ed25519 key is 32",
            bytes.len()
        ))
    })?;
    VerifyingKey::from_bytes(&raw)
        .map_err(|err| VerifyError::Malformed(format!("public key is not a valid point: {err}")))
}

/// The base64 form of a public key, as the protocol messages carry it.
pub fn verifying_key_to_base64(key: &VerifyingKey) -> String {
    STANDARD.encode(key.as_bytes())
}
