//! The agent's endpoints under attack: `POST /api/v1/reports` (forged,
//! foreign, replayed, out-of-order, malformed, oversized, deeply nested,
//! invalid UTF-8, NaN, duplicate keys, overflowing numbers) and
//! `POST /api/v1/enroll` (spent, expired, revoked, unknown and guessed
//! secrets, bad proofs, malformed keys).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{Duration, Utc};
use ed25519_dalek::SigningKey;
use palisade_shared::envelope::{
    ENROLL_PAYLOAD_TYPE, Envelope, POLICY_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE, sha256_hex,
};
use palisade_tests::device::SimulatedDevice;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Case, World};

const REPORTS: &str = "/api/v1/reports";
const ENROLL: &str = "/api/v1/enroll";

/// A signed report envelope for `payload`, as JSON bytes.
fn signed(payload: &[u8], key: &SigningKey) -> Vec<u8> {
    Envelope::sign(REPORT_PAYLOAD_TYPE, payload, key).to_json()
}

/// alice's next report (sequence 3, linked to 2) as a JSON value to spoil.
fn alice_next(world: &World) -> Value {
    serde_json::to_value(world.alice.next_report(Utc::now())).unwrap()
}

/// alice's next report with `change` applied, signed by alice.
fn alice_with(world: &World, change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut report = alice_next(world);
    change(&mut report);
    signed(&serde_json::to_vec(&report).unwrap(), &world.alice.key)
}

/// alice's next report as text with `from` replaced by `to` (for what a
/// JSON value cannot hold: duplicate keys, NaN, huge numbers), signed.
fn alice_text(world: &World, from: &str, to: &str) -> Vec<u8> {
    let text = serde_json::to_string(&alice_next(world)).unwrap();
    assert!(text.contains(from), "{from} not in {text}");
    signed(text.replacen(from, to, 1).as_bytes(), &world.alice.key)
}

/// The envelope JSON of alice's valid next report, as a value to spoil.
fn alice_envelope(world: &World) -> Value {
    let report = world.alice.next_report(Utc::now());
    let envelope = Envelope::sign(REPORT_PAYLOAD_TYPE, &report.to_payload(), &world.alice.key);
    serde_json::to_value(envelope).unwrap()
}

fn envelope_with(world: &World, change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut envelope = alice_envelope(world);
    change(&mut envelope);
    serde_json::to_vec(&envelope).unwrap()
}

fn report(name: &str, body: Vec<u8>) -> Case {
    Case::post_json(name, REPORTS, body)
}

const BAD: StatusCode = StatusCode::BAD_REQUEST;

/// Every refused or idempotent report; none may change the store.
pub fn cases(world: &World) -> Vec<Case> {
    let alice = &world.alice;
    let bob = &world.bob;
    let alice_id = World::device_id(alice).to_owned();
    let replay = world.alice_sent[1].to_json();
    let mut forged = Envelope::from_json(
        &signed(&alice.next_report(Utc::now()).to_payload(), &alice.key),
        1 << 20,
    )
    .unwrap();
    let mut sig = STANDARD.decode(&forged.signatures[0].sig).unwrap();
    sig[10] ^= 0x01;
    forged.signatures[0].sig = STANDARD.encode(&sig);
    // bob's signature under alice's key id.
    let mut borrowed = Envelope::sign(
        REPORT_PAYLOAD_TYPE,
        &alice.next_report(Utc::now()).to_payload(),
        &bob.key,
    );
    borrowed.signatures[0].keyid = Envelope::from_json(&replay, 1 << 20).unwrap().signatures[0]
        .keyid
        .clone();
    let mut foreign = bob.next_report(Utc::now());
    foreign.device_id = palisade_shared::DeviceId::new(alice_id.clone());
    let stranger = SimulatedDevice::new("stranger");
    let mut strangers = alice.next_report(Utc::now());
    strangers.host.hostname = "stranger".into();
    let carol = &world.carol;
    let deep_evidence = {
        let mut value = json!("bottom");
        for _ in 0..200 {
            value = json!([value]);
        }
        value
    };

    vec![
        // Signatures and keys.
        report("one bit of alice's signature flipped", forged.to_json())
            .refused(StatusCode::UNAUTHORIZED, "bad_signature"),
        report("bob's signature under alice's key id", borrowed.to_json())
            .refused(StatusCode::UNAUTHORIZED, "bad_signature"),
        report(
            "bob's key signing a report that names alice's device",
            signed(&foreign.to_payload(), &bob.key),
        )
        .refused(StatusCode::UNPROCESSABLE_ENTITY, "wrong_device"),
        report(
            "a key that never enrolled",
            signed(&strangers.to_payload(), &stranger.key),
        )
        .refused(StatusCode::UNAUTHORIZED, "unknown_key"),
        report(
            "a key id that is not 64 hex digits",
            envelope_with(world, |e| e["signatures"][0]["keyid"] = json!("ABCDEF")),
        )
        .refused(BAD, "malformed"),
        report(
            "the revoked device's next report",
            signed(&carol.next_report(Utc::now()).to_payload(), &carol.key),
        )
        .refused(StatusCode::FORBIDDEN, "revoked"),
        // Replays and order.
        report("alice's report 2 again, byte for byte", replay.clone())
            .answered(StatusCode::OK, "\"newly_stored\":false"),
        report(
            "alice's report 1 again, below the head",
            world.alice_sent[0].to_json(),
        )
        .answered(StatusCode::OK, "\"newly_stored\":false"),
        report(
            "report 2 again as text/plain (the content type is not read)",
            replay,
        )
        .header("content-type", "text/plain")
        .answered(StatusCode::OK, "\"newly_stored\":false"),
        report(
            "sequence 2 again with other content",
            alice_with(world, |r| {
                r["sequence"] = json!(2);
                r["checks"] = json!([]);
            }),
        )
        .refused(StatusCode::CONFLICT, "sequence_conflict"),
        report(
            "sequence 1 with other content, below the head",
            alice_with(world, |r| {
                r["sequence"] = json!(1);
                r["prev_digest"] = json!("");
            }),
        )
        .refused(StatusCode::CONFLICT, "sequence_conflict"),
        report(
            "issued_at an hour ahead of the collector",
            alice_with(world, |r| {
                r["issued_at"] = json!((Utc::now() + Duration::hours(1)).to_rfc3339());
            }),
        )
        .refused(StatusCode::UNPROCESSABLE_ENTITY, "future_timestamp"),
        // The envelope.
        report(
            "the policy payload type",
            Envelope::sign(
                POLICY_PAYLOAD_TYPE,
                &alice.next_report(Utc::now()).to_payload(),
                &alice.key,
            )
            .to_json(),
        )
        .refused(BAD, "wrong_payload_type"),
        report(
            "the enrollment payload type",
            Envelope::sign(
                ENROLL_PAYLOAD_TYPE,
                &alice.next_report(Utc::now()).to_payload(),
                &alice.key,
            )
            .to_json(),
        )
        .refused(BAD, "wrong_payload_type"),
        report(
            "a payload that is not base64",
            envelope_with(world, |e| e["payload"] = json!("!!not base64!!")),
        )
        .refused(BAD, "malformed"),
        report(
            "a signature that is not base64",
            envelope_with(world, |e| e["signatures"][0]["sig"] = json!("%%%")),
        )
        .refused(BAD, "malformed"),
        report(
            "a signature of 63 bytes",
            envelope_with(world, |e| {
                e["signatures"][0]["sig"] = json!(STANDARD.encode([7u8; 63]))
            }),
        )
        .refused(BAD, "malformed"),
        report(
            "no signatures",
            envelope_with(world, |e| e["signatures"] = json!([])),
        )
        .refused(BAD, "malformed"),
        report(
            "five signatures",
            envelope_with(world, |e| {
                let one = e["signatures"][0].clone();
                e["signatures"] = json!([one, one, one, one, one]);
            }),
        )
        .refused(BAD, "malformed"),
        report(
            "an unknown envelope field",
            envelope_with(world, |e| e["extra"] = json!(1)),
        )
        .refused(BAD, "malformed"),
        report("the payload key twice, the second another report's", {
            let good = alice_envelope(world);
            let other = STANDARD.encode(br#"{"sequence":1}"#);
            format!(
                r#"{{"payload":{},"payload":"{other}","payloadType":{},"signatures":{}}}"#,
                good["payload"], good["payloadType"], good["signatures"]
            )
            .into_bytes()
        })
        .refused(BAD, "malformed"),
        report("an empty body", Vec::new()).refused(BAD, "malformed"),
        report("not JSON", b"hello".to_vec()).refused(BAD, "malformed"),
        report("JSON null", b"null".to_vec()).refused(BAD, "malformed"),
        report("300 KiB, over the 256 KiB limit", vec![b' '; 300 * 1024])
            .refused(StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        report("1 MiB of [[[[ nesting", vec![b'['; 1 << 20])
            .refused(StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        report(
            "200 KiB of [[[[ nesting, under the limit",
            vec![b'['; 200 * 1024],
        )
        .refused(BAD, "malformed"),
        report("invalid UTF-8 in the envelope", {
            let mut body = alice_envelope(world).to_string().into_bytes();
            let at = body.len() - 3;
            body.splice(at..at, [0xff, 0xfe]);
            body
        })
        .refused(BAD, "malformed"),
        report(
            "NaN in the envelope",
            br#"{"payload":NaN,"payloadType":"x","signatures":[]}"#.to_vec(),
        )
        .refused(BAD, "malformed"),
        // The signed payload.
        report("invalid UTF-8 in the signed payload", {
            let mut payload = alice.next_report(Utc::now()).to_payload();
            let at = payload.iter().position(|&b| b == b'a').unwrap();
            payload[at] = 0xff;
            signed(&payload, &alice.key)
        })
        .refused(BAD, "schema_violation"),
        report(
            "the signed payload is not JSON",
            signed(b"hello", &alice.key),
        )
        .refused(BAD, "schema_violation"),
        report(
            "evidence nested 200 deep",
            alice_with(world, |r| {
                r["checks"][0]["evidence"] = json!({ "deep": deep_evidence })
            }),
        )
        .refused(BAD, "schema_violation"),
        report(
            "NaN as probe_duration_us",
            alice_text(
                world,
                "\"probe_duration_us\":100",
                "\"probe_duration_us\":NaN",
            ),
        )
        .refused(BAD, "schema_violation"),
        report(
            "Infinity in evidence",
            alice_text(world, "\"evidence\":{}", "\"evidence\":{\"x\":Infinity}"),
        )
        .refused(BAD, "schema_violation"),
        report(
            "sequence twice: 2 (a conflict) then 3 (the next)",
            alice_text(world, "\"sequence\":3", "\"sequence\":2,\"sequence\":3"),
        )
        .refused(BAD, "schema_violation"),
        report(
            "device_id twice: alice's then bob's",
            alice_text(
                world,
                &format!("\"device_id\":\"{alice_id}\""),
                &format!(
                    "\"device_id\":\"{alice_id}\",\"device_id\":\"{}\"",
                    World::device_id(bob)
                ),
            ),
        )
        .refused(BAD, "schema_violation"),
        report(
            "sequence 2^64, over u64",
            alice_text(world, "\"sequence\":3", "\"sequence\":18446744073709551616"),
        )
        .refused(BAD, "schema_violation"),
        report(
            "sequence 2^63, over the databases' i64",
            alice_text(world, "\"sequence\":3", "\"sequence\":9223372036854775808"),
        )
        .refused(BAD, "schema_violation"),
        report(
            "sequence -1",
            alice_text(world, "\"sequence\":3", "\"sequence\":-1"),
        )
        .refused(BAD, "schema_violation"),
        report(
            "sequence 3.0",
            alice_text(world, "\"sequence\":3", "\"sequence\":3.0"),
        )
        .refused(BAD, "schema_violation"),
        report(
            "sequence 0",
            alice_with(world, |r| r["sequence"] = json!(0)),
        )
        .refused(BAD, "schema_violation"),
        report(
            "policy version 2^64 - 1, over the databases' i64",
            alice_with(world, |r| r["policy"]["version"] = json!(u64::MAX)),
        )
        .refused(BAD, "schema_violation"),
        report(
            "probe_duration_us 2^64",
            alice_text(
                world,
                "\"probe_duration_us\":100",
                "\"probe_duration_us\":18446744073709551616",
            ),
        )
        .refused(BAD, "schema_violation"),
        report(
            "schema_version 2",
            alice_with(world, |r| r["schema_version"] = json!(2)),
        )
        .refused(BAD, "schema_violation"),
        report(
            "an unknown report field",
            alice_with(world, |r| r["extra"] = json!(true)),
        )
        .refused(BAD, "schema_violation"),
        report(
            "a rule reported twice",
            alice_with(world, |r| {
                let first = r["checks"][0].clone();
                r["checks"][1] = first;
            }),
        )
        .refused(BAD, "schema_violation"),
        report(
            "prev_digest that is not a digest",
            alice_with(world, |r| r["prev_digest"] = json!("<script>")),
        )
        .refused(BAD, "schema_violation"),
        report(
            "an unknown status",
            alice_with(world, |r| r["checks"][0]["status"] = json!("fine")),
        )
        .refused(BAD, "schema_violation"),
        report(
            "a lone surrogate in the hostname",
            alice_text(
                world,
                "\"hostname\":\"alice-laptop\"",
                "\"hostname\":\"\\ud800\"",
            ),
        )
        .refused(BAD, "schema_violation"),
        report(
            "a NUL character in the hostname",
            alice_with(world, |r| r["host"]["hostname"] = json!("alice\u{0}laptop")),
        )
        .refused(BAD, "schema_violation"),
        report(
            "a NUL character in a check summary",
            alice_with(world, |r| r["checks"][0]["summary"] = json!("fail\u{0}")),
        )
        .refused(BAD, "schema_violation"),
        Case::new("GET on the reports endpoint", reqwest::Method::GET, REPORTS)
            .status_only(StatusCode::METHOD_NOT_ALLOWED),
    ]
}

/// Every refused enrollment; only the audit rows of refused uses of real
/// secrets may be written.
pub async fn enroll_cases(world: &World) -> Vec<Case> {
    let collector = &world.collector;
    let spent = collector.create_secret(&["--uses", "1"]);
    let mut first = SimulatedDevice::new("first");
    let envelope = first.enroll_envelope(&spent, Utc::now());
    super::enroll(collector, &mut first, &envelope).await;
    let expired = collector.create_secret(&["--expires", "1ms"]);
    let revoked = collector.create_secret(&[]);
    let revoked_id = revoked.split('_').nth(1).unwrap().to_owned();
    let done = collector.cli(&["secret", "revoke", &revoked_id]);
    assert_eq!(done.exit_code, Some(0), "{}", done.dump());
    let other = collector.create_secret(&[]);
    let wrong_random = format!("{}x", &other[..other.len() - 1]);
    let unknown_id = format!("pls_{}_{}", "0".repeat(revoked_id.len()), "A".repeat(43));
    let enroll = |name: &str, device: &SimulatedDevice, secret: &str| {
        Case::post_json(
            name,
            ENROLL,
            device.enroll_envelope(secret, Utc::now()).to_json(),
        )
    };
    let newcomer = SimulatedDevice::new("newcomer");
    let bad_secret = |case: Case| case.refused(StatusCode::UNAUTHORIZED, "bad_secret");
    let request = |change: &dyn Fn(&mut Value)| {
        let envelope = newcomer.enroll_envelope(&world.secret, Utc::now());
        let mut payload: Value =
            serde_json::from_slice(&envelope.payload_unverified().unwrap()).unwrap();
        change(&mut payload);
        Envelope::sign(
            ENROLL_PAYLOAD_TYPE,
            &serde_json::to_vec(&payload).unwrap(),
            &newcomer.key,
        )
        .to_json()
    };
    let mut impostor = newcomer.enroll_envelope(&world.secret, Utc::now());
    impostor.signatures = SimulatedDevice::new("impostor")
        .enroll_envelope(&world.secret, Utc::now())
        .signatures;
    let text = serde_json::to_string(
        &serde_json::from_slice::<Value>(
            &newcomer
                .enroll_envelope(&world.secret, Utc::now())
                .payload_unverified()
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let duplicated = text.replacen(
        "\"enrollment_secret\":",
        &format!("\"enrollment_secret\":\"{spent}\",\"enrollment_secret\":"),
        1,
    );

    vec![
        bad_secret(enroll(
            "a single-use secret already used",
            &newcomer,
            &spent,
        ))
        .audited(1),
        bad_secret(enroll("an expired secret", &newcomer, &expired)).audited(1),
        bad_secret(enroll("a revoked secret", &newcomer, &revoked)).audited(1),
        bad_secret(enroll(
            "a real secret id with the wrong random part",
            &newcomer,
            &wrong_random,
        ))
        .audited(1),
        bad_secret(enroll(
            "a secret id that does not exist",
            &newcomer,
            &unknown_id,
        )),
        bad_secret(enroll("not a secret at all", &newcomer, "hunter2")),
        bad_secret(enroll("an empty secret", &newcomer, "")),
        enroll(
            "alice's key again, through another secret",
            &world.alice,
            &other,
        )
        .refused(StatusCode::CONFLICT, "key_already_enrolled")
        .audited(1),
        enroll(
            "the revoked device's key again",
            &world.carol,
            &world.secret,
        )
        .refused(StatusCode::CONFLICT, "key_already_enrolled")
        .audited(1),
        Case::post_json(
            "signed by another key than the one named",
            ENROLL,
            impostor.to_json(),
        )
        .refused(StatusCode::UNAUTHORIZED, "bad_proof"),
        Case::post_json(
            "requested two hours ago",
            ENROLL,
            newcomer
                .enroll_envelope(&world.secret, Utc::now() - Duration::hours(2))
                .to_json(),
        )
        .refused(StatusCode::UNPROCESSABLE_ENTITY, "stale_request"),
        Case::post_json(
            "requested an hour ahead",
            ENROLL,
            newcomer
                .enroll_envelope(&world.secret, Utc::now() + Duration::hours(1))
                .to_json(),
        )
        .refused(StatusCode::UNPROCESSABLE_ENTITY, "stale_request"),
        Case::post_json(
            "a public key of 31 bytes",
            ENROLL,
            request(&|p| p["public_key"] = json!(STANDARD.encode([1u8; 31]))),
        )
        .refused(BAD, "malformed"),
        Case::post_json(
            "a public key that is not base64",
            ENROLL,
            request(&|p| p["public_key"] = json!("not base64!")),
        )
        .refused(BAD, "malformed"),
        Case::post_json(
            "schema_version 2",
            ENROLL,
            request(&|p| p["schema_version"] = json!(2)),
        )
        .refused(BAD, "malformed"),
        Case::post_json(
            "an unknown field",
            ENROLL,
            request(&|p| p["extra"] = json!(1)),
        )
        .refused(BAD, "malformed"),
        Case::post_json(
            "the secret twice, a spent one first",
            ENROLL,
            Envelope::sign(ENROLL_PAYLOAD_TYPE, duplicated.as_bytes(), &newcomer.key).to_json(),
        )
        .refused(BAD, "malformed"),
        Case::post_json(
            "a NUL character in the hostname",
            ENROLL,
            request(&|p| p["host"]["hostname"] = json!("new\u{0}comer")),
        )
        .refused(BAD, "malformed"),
        Case::post_json(
            "a report posted for enrollment",
            ENROLL,
            world.alice_sent[0].to_json(),
        )
        .refused(BAD, "malformed"),
        Case::post_json("an empty body", ENROLL, Vec::new()).refused(BAD, "malformed"),
        Case::post_json("300 KiB", ENROLL, vec![b' '; 300 * 1024])
            .refused(StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        Case::post_json("1 MiB of [[[[ nesting", ENROLL, vec![b'['; 1 << 20])
            .refused(StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        Case::post_json("200 KiB of [[[[ nesting", ENROLL, vec![b'['; 200 * 1024])
            .refused(BAD, "malformed"),
    ]
}

/// What a device may do to its own chain is stored and flagged for IT,
/// never refused (design §4): a gap, a report that does not link to its
/// predecessor, and a report issued long ago (a spool delivering late).
/// Each adds exactly one report and sets exactly its flag.
pub async fn stored_but_flagged(world: &World) {
    let mut dave = SimulatedDevice::new("dave-laptop");
    world.enroll(&mut dave).await;
    let id = World::device_id(&dave).to_owned();

    // A year-old report is stored as the first of the chain.
    let old = dave.next_report(Utc::now() - Duration::days(365));
    world.accept(&dave.sign_and_advance(&old)).await;
    let device = world.store.device(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            device.last_sequence,
            device.sequence_gap,
            device.chain_broken
        ),
        (Some(1), false, false)
    );

    // A report whose prev_digest is not report 1's: stored, chain_broken.
    let mut unlinked = dave.next_report(Utc::now());
    unlinked.prev_digest = sha256_hex(b"another history");
    world.accept(&dave.sign_and_advance(&unlinked)).await;
    let device = world.store.device(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            device.last_sequence,
            device.sequence_gap,
            device.chain_broken
        ),
        (Some(2), false, true)
    );

    // Sequence 10 after 2: stored, sequence_gap.
    let mut leap = dave.next_report(Utc::now());
    leap.sequence = 10;
    world.accept(&dave.sign_and_advance(&leap)).await;
    let device = world.store.device(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            device.last_sequence,
            device.sequence_gap,
            device.chain_broken
        ),
        (Some(10), true, true)
    );
    let reports = world.store.count_reports().await.unwrap();
    // alice 2, bob 1, the spent secret's device 0, dave 3.
    assert_eq!(reports, 6);
}

/// Ten bad secrets from one address, and that address gets 429 for the
/// eleventh try even with a valid secret, before the secret is looked at;
/// another address still enrolls.
pub async fn enrollment_guessing_is_limited_per_address(world: &World) {
    let guesser = world.fresh_client();
    let post = |client: &reqwest::Client, device: &SimulatedDevice, secret: &str| {
        client
            .post(format!("{}{ENROLL}", world.collector.url))
            .header("content-type", "application/json")
            .body(device.enroll_envelope(secret, Utc::now()).to_json())
            .send()
    };
    let device = SimulatedDevice::new("guessed");
    for attempt in 1..=10 {
        let guess = format!("pls_{attempt:016}_{}", "B".repeat(43));
        let answer = post(&guesser, &device, &guess).await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "guess {attempt}");
    }
    let before = world.fingerprint().await;
    let answer = post(&guesser, &device, &world.secret).await.unwrap();
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(
        world.fingerprint().await,
        before,
        "a blocked address enrolled"
    );
    let answer = post(&world.fresh_client(), &device, &world.secret)
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::CREATED,
        "another address is not blocked"
    );
}
