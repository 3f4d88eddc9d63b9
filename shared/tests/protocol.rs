//! Enrollment proves possession of the key the request names.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use chrono::Utc;
use ed25519_dalek::SigningKey;
use palisade_shared::envelope::{KeyId, VerifyError, verifying_key_to_base64};
use palisade_shared::protocol::{ENROLL_SCHEMA_VERSION, EnrollError, EnrollRequest};
use palisade_shared::report::{AgentInfo, HostInfo};

fn request_for(key: &SigningKey) -> EnrollRequest {
    EnrollRequest {
        schema_version: ENROLL_SCHEMA_VERSION,
        enrollment_secret: "s3cret".into(),
        public_key: verifying_key_to_base64(&key.verifying_key()),
        agent: AgentInfo {
            version: "0.1.0".into(),
            os: "linux".into(),
        },
        host: HostInfo {
            hostname: "h".into(),
            os_name: "Debian".into(),
            os_version: "12".into(),
            kernel_version: "6.1".into(),
            arch: "x86_64".into(),
            console_user: None,
        },
        requested_at: Utc::now(),
    }
}

#[test]
fn a_request_signed_by_its_own_key_opens() {
    let key = SigningKey::from_bytes(&[1; 32]);
    let (request, key_id) = EnrollRequest::open(&request_for(&key).sign(&key)).unwrap();
    assert_eq!(request.enrollment_secret, "s3cret");
    assert_eq!(key_id, KeyId::of(&key.verifying_key()));
}

#[test]
fn a_request_naming_a_key_it_was_not_signed_by_is_refused() {
    let claimed = SigningKey::from_bytes(&[1; 32]);
    let actual = SigningKey::from_bytes(&[2; 32]);
    let err = EnrollRequest::open(&request_for(&claimed).sign(&actual)).unwrap_err();
    assert!(
        matches!(err, EnrollError::Envelope(VerifyError::UnknownKey { .. })),
        "{err:?}"
    );
}
