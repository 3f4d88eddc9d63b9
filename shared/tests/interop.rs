//! Interoperability with an independent DSSE implementation: Python's
//! `cryptography` package, driven through `tests/interop/dsse_interop.py`,
//! which computes the PAE itself. `tests/run` installs the package; without it
//! these tests fail (they never skip).

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::PathBuf;
use std::process::Command;

use ed25519_dalek::SigningKey;
use palisade_shared::envelope::{
    DEFAULT_MAX_ENVELOPE_BYTES, Envelope, KeyId, REPORT_PAYLOAD_TYPE, VerifyError,
};

const REPORT_EXAMPLE: &str = include_str!("data/report-v1.json");

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/dsse_interop.py")
}

fn python(args: &[&str]) -> std::process::Output {
    let python = std::env::var("PALISADE_PYTHON").unwrap_or_else(|_| "python3".into());
    #[allow(clippy::disallowed_methods)] // a test's own child process, bounded by the test runner
    let output = Command::new(&python).arg(script()).args(args).output();
    let output = output.unwrap_or_else(|err| panic!("cannot run {python}: {err}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the Python `cryptography` package is missing: run tests/run, which installs it\n{stderr}"
    );
    output
}

#[test]
fn envelopes_made_in_rust_verify_in_python() {
    let dir = tempfile::tempdir().unwrap();
    let signer = SigningKey::from_bytes(&[42; 32]);
    let public_hex = hex::encode(signer.verifying_key().as_bytes());
    let envelope = Envelope::sign(REPORT_PAYLOAD_TYPE, REPORT_EXAMPLE.as_bytes(), &signer);
    let path = dir.path().join("envelope.json");
    std::fs::write(&path, envelope.to_json()).unwrap();

    let output = python(&[
        "verify",
        path.to_str().unwrap(),
        &public_hex,
        REPORT_PAYLOAD_TYPE,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, REPORT_EXAMPLE.as_bytes());

    // And Python is not a rubber stamp: a one-byte change is refused there too.
    let mut tampered = envelope.clone();
    tampered.payload = Envelope::sign(REPORT_PAYLOAD_TYPE, b"{\"x\":2}", &signer).payload;
    std::fs::write(&path, tampered.to_json()).unwrap();
    let output = python(&[
        "verify",
        path.to_str().unwrap(),
        &public_hex,
        REPORT_PAYLOAD_TYPE,
    ]);
    assert!(
        !output.status.success(),
        "python accepted a tampered envelope"
    );
}

#[test]
fn envelopes_made_in_python_verify_in_rust() {
    let dir = tempfile::tempdir().unwrap();
    let payload_path = dir.path().join("payload.json");
    std::fs::write(&payload_path, REPORT_EXAMPLE).unwrap();
    let seed = [9u8; 32];
    let output = python(&[
        "sign",
        &hex::encode(seed),
        REPORT_PAYLOAD_TYPE,
        payload_path.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let envelope = Envelope::from_json(&output.stdout, DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
    let public = SigningKey::from_bytes(&seed).verifying_key();
    let verified = envelope
        .verify(REPORT_PAYLOAD_TYPE, |id| {
            (id == &KeyId::of(&public)).then_some(public)
        })
        .unwrap();
    assert_eq!(verified.payload, REPORT_EXAMPLE.as_bytes());

    // The same envelope under another trusted key is refused.
    let other = SigningKey::from_bytes(&[10; 32]).verifying_key();
    let err = envelope
        .verify(REPORT_PAYLOAD_TYPE, |id| {
            (id == &KeyId::of(&other)).then_some(other)
        })
        .unwrap_err();
    assert!(matches!(err, VerifyError::UnknownKey { .. }), "{err:?}");
}
