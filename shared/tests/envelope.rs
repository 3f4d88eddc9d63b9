//! DSSE envelope: signing, verification, the checked-in test vectors, and
//! every way a tampered or hostile envelope must be refused.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use palisade_shared::envelope::{
    DEFAULT_MAX_ENVELOPE_BYTES, Envelope, KeyId, REPORT_PAYLOAD_TYPE, VerifyError,
    pre_authentication_encoding,
};
use serde_json::Value;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn only(key: VerifyingKey) -> impl Fn(&KeyId) -> Option<VerifyingKey> {
    move |id| (id == &KeyId::of(&key)).then_some(key)
}

fn signed(payload: &[u8]) -> (SigningKey, Envelope) {
    let signer = key(7);
    let envelope = Envelope::sign(REPORT_PAYLOAD_TYPE, payload, &signer);
    (signer, envelope)
}

#[test]
fn a_signed_envelope_verifies_and_returns_its_payload() {
    let (signer, envelope) = signed(b"{\"a\":1}");
    let verified = envelope
        .verify(REPORT_PAYLOAD_TYPE, only(signer.verifying_key()))
        .unwrap();
    assert_eq!(verified.payload, b"{\"a\":1}");
    assert_eq!(verified.key_id, KeyId::of(&signer.verifying_key()));
}

#[test]
fn flipping_one_payload_byte_is_a_bad_signature() {
    let (signer, mut envelope) = signed(b"{\"sequence\":1}");
    let mut payload = STANDARD.decode(&envelope.payload).unwrap();
    payload[3] ^= 0x01;
    envelope.payload = STANDARD.encode(payload);
    let err = envelope
        .verify(REPORT_PAYLOAD_TYPE, only(signer.verifying_key()))
        .unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err:?}");
}

#[test]
fn flipping_one_payload_type_byte_is_a_wrong_payload_type() {
    let (signer, mut envelope) = signed(b"{}");
    let mut bytes = envelope.payload_type.into_bytes();
    bytes[0] ^= 0x01;
    envelope.payload_type = String::from_utf8(bytes).unwrap();
    let err = envelope
        .verify(REPORT_PAYLOAD_TYPE, only(signer.verifying_key()))
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::WrongPayloadType { .. }),
        "{err:?}"
    );
}

#[test]
fn a_changed_payload_type_breaks_the_signature_even_when_expected() {
    // The PAE binds the type: re-labelling an envelope and asking for the new
    // label must not verify.
    let (signer, mut envelope) = signed(b"{}");
    envelope.payload_type = "application/vnd.palisade.enroll+json; version=1".into();
    let err = envelope
        .verify(&envelope.payload_type.clone(), only(signer.verifying_key()))
        .unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err:?}");
}

#[test]
fn flipping_one_signature_byte_is_a_bad_signature() {
    let (signer, mut envelope) = signed(b"{}");
    let mut sig = STANDARD.decode(&envelope.signatures[0].sig).unwrap();
    sig[10] ^= 0x80;
    envelope.signatures[0].sig = STANDARD.encode(sig);
    let err = envelope
        .verify(REPORT_PAYLOAD_TYPE, only(signer.verifying_key()))
        .unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err:?}");
}

#[test]
fn a_signature_by_another_key_is_an_unknown_key() {
    let (_, envelope) = signed(b"{}");
    let err = envelope
        .verify(REPORT_PAYLOAD_TYPE, only(key(8).verifying_key()))
        .unwrap_err();
    assert!(matches!(err, VerifyError::UnknownKey { .. }), "{err:?}");
}

#[test]
fn a_keyid_pointing_at_another_trusted_key_is_a_bad_signature() {
    // The attacker signs with their own key but names a trusted key's id.
    let trusted = key(1).verifying_key();
    let mut envelope = Envelope::sign(REPORT_PAYLOAD_TYPE, b"{}", &key(2));
    envelope.signatures[0].keyid = KeyId::of(&trusted).to_string();
    let err = envelope
        .verify(REPORT_PAYLOAD_TYPE, only(trusted))
        .unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err:?}");
}

#[test]
fn a_forged_signature_next_to_a_good_one_still_rejects() {
    let good = key(1);
    let mut envelope = Envelope::sign(REPORT_PAYLOAD_TYPE, b"{}", &good);
    let mut forged = envelope.signatures[0].clone();
    forged.sig = STANDARD.encode([0u8; 64]);
    envelope.signatures.push(forged);
    let err = envelope
        .verify(REPORT_PAYLOAD_TYPE, only(good.verifying_key()))
        .unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err:?}");
}

#[test]
fn hostile_inputs_are_malformed_not_panics() {
    let cases: &[&[u8]] = &[
        b"",
        b"not json",
        b"[]",
        b"{\"payload\":\"\",\"payloadType\":\"x\"}",
        b"{\"payload\":\"e30=\",\"payloadType\":\"x\",\"signatures\":[],\"extra\":1}",
        b"{\"payload\":1,\"payloadType\":\"x\",\"signatures\":[]}",
    ];
    for case in cases {
        let err = Envelope::from_json(case, DEFAULT_MAX_ENVELOPE_BYTES).unwrap_err();
        assert!(
            matches!(err, VerifyError::Malformed(_)),
            "{case:?}: {err:?}"
        );
    }
    let signer = key(3);
    let keyid = KeyId::of(&signer.verifying_key()).to_string();
    let bodies = [
        // no signatures
        format!(r#"{{"payload":"e30=","payloadType":"{REPORT_PAYLOAD_TYPE}","signatures":[]}}"#),
        // payload not base64
        format!(
            r#"{{"payload":"!!!","payloadType":"{REPORT_PAYLOAD_TYPE}","signatures":[{{"keyid":"{keyid}","sig":"AA=="}}]}}"#
        ),
        // signature of the wrong length
        format!(
            r#"{{"payload":"e30=","payloadType":"{REPORT_PAYLOAD_TYPE}","signatures":[{{"keyid":"{keyid}","sig":"AAAA"}}]}}"#
        ),
        // keyid not hex
        format!(
            r#"{{"payload":"e30=","payloadType":"{REPORT_PAYLOAD_TYPE}","signatures":[{{"keyid":"zz","sig":"AA=="}}]}}"#
        ),
    ];
    for body in bodies {
        let envelope = Envelope::from_json(body.as_bytes(), DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
        let err = envelope
            .verify(REPORT_PAYLOAD_TYPE, only(signer.verifying_key()))
            .unwrap_err();
        assert!(matches!(err, VerifyError::Malformed(_)), "{body}: {err:?}");
    }
}

#[test]
fn input_over_the_limit_is_refused_before_parsing() {
    let big = vec![b' '; 1025];
    let err = Envelope::from_json(&big, 1024).unwrap_err();
    assert_eq!(
        err,
        VerifyError::TooLarge {
            actual: 1025,
            limit: 1024
        }
    );
}

#[test]
fn envelope_json_uses_the_dsse_field_names() {
    let (_, envelope) = signed(b"{}");
    let json: Value = serde_json::from_slice(&envelope.to_json()).unwrap();
    let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["payload", "payloadType", "signatures"]);
    let mut sig_keys: Vec<_> = json["signatures"][0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    sig_keys.sort();
    assert_eq!(sig_keys, ["keyid", "sig"]);
}

/// The vectors in `tests/data/dsse-vector-*.json` were made by the
/// independent Python implementation (`tests/interop/dsse_interop.py`).
/// Vector 1's key is RFC 8032's first test key.
#[test]
fn checked_in_test_vectors_match_byte_for_byte() {
    for name in ["dsse-vector-1.json", "dsse-vector-2.json"] {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        let vector: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let field = |k: &str| vector[k].as_str().unwrap().to_owned();
        let seed: [u8; 32] = hex::decode(field("seed_hex")).unwrap().try_into().unwrap();
        let signer = SigningKey::from_bytes(&seed);
        assert_eq!(
            hex::encode(signer.verifying_key().as_bytes()),
            field("public_key_hex"),
            "{name}"
        );
        assert_eq!(
            KeyId::of(&signer.verifying_key()).as_str(),
            field("keyid"),
            "{name}"
        );
        let payload = STANDARD.decode(field("payload_base64")).unwrap();
        let pae = pre_authentication_encoding(&field("payload_type"), &payload);
        assert_eq!(hex::encode(&pae), field("pae_hex"), "{name}");
        let envelope = Envelope::sign(&field("payload_type"), &payload, &signer);
        assert_eq!(
            envelope.signatures[0].sig,
            field("signature_base64"),
            "{name}"
        );
        assert_eq!(envelope.payload, field("payload_base64"), "{name}");
    }
}
