//! The collector over real HTTPS on 127.0.0.1, against SQLite and against a
//! real PostgreSQL server: every answer of enrollment and ingest, the signed
//! policy with its ETag, and that after all the hostile requests only the
//! valid reports are stored.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use chrono::{Duration, Utc};
use palisade_collector::store::Store;
use palisade_shared::envelope::{
    Envelope, KeyId, POLICY_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE, verifying_key_from_base64,
};
use palisade_shared::protocol::EnrollResponse;
use palisade_tests::collector::RunningCollector;
use palisade_tests::databases::{Backend, database_for};
use palisade_tests::device::SimulatedDevice;
use reqwest::StatusCode;

struct Fixture {
    _dir: tempfile::TempDir,
    collector: RunningCollector,
    client: reqwest::Client,
}

fn start(backend: Backend, name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let database = database_for(backend, name);
    let collector = RunningCollector::start(dir.path(), database.as_deref());
    let client = collector.client();
    Fixture {
        _dir: dir,
        collector,
        client,
    }
}

impl Fixture {
    async fn post(&self, path: &str, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.collector.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {path}: {err}\n{}", self.collector.log()));
        let status = response.status();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    async fn enroll(
        &self,
        device: &mut SimulatedDevice,
        secret: &str,
    ) -> (StatusCode, serde_json::Value) {
        let envelope = device.enroll_envelope(secret, Utc::now());
        let (status, body) = self.post("/api/v1/enroll", envelope.to_json()).await;
        if status == StatusCode::CREATED {
            let response: EnrollResponse = serde_json::from_value(body.clone()).unwrap();
            device.device_id = Some(response.device_id.to_string());
        }
        (status, body)
    }

    async fn send(&self, envelope: &Envelope) -> (StatusCode, serde_json::Value) {
        self.post("/api/v1/reports", envelope.to_json()).await
    }

    async fn store(&self) -> Store {
        Store::open(&self.collector.database_url).await.unwrap()
    }
}

async fn enrollment_answers(backend: Backend) {
    let f = start(backend, "enroll");
    let single_use = f
        .collector
        .create_secret(&["--uses", "1", "--label", "ward 7"]);
    let mut first = SimulatedDevice::new("ward7-laptop-001");
    let (status, body) = f.enroll(&mut first, &single_use).await;
    assert_eq!(status, StatusCode::CREATED, "{body}\n{}", f.collector.log());
    assert!(
        body["device_id"].as_str().unwrap().starts_with("dev_"),
        "{body}"
    );
    let policy_key =
        verifying_key_from_base64(body["policy_public_key"].as_str().unwrap()).unwrap();
    assert_eq!(body["policy_key_id"], KeyId::of(&policy_key).as_str());

    // The single-use secret is spent.
    let mut second = SimulatedDevice::new("ward7-laptop-002");
    let (status, body) = f.enroll(&mut second, &single_use).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "bad_secret");

    // A wrong secret, a malformed one, and an expired one all look the same.
    let good = f.collector.create_secret(&[]);
    let wrong = format!("{}x", &good[..good.len() - 1]);
    for secret in [wrong.as_str(), "not-a-secret"] {
        let (status, body) = f.enroll(&mut SimulatedDevice::new("x"), secret).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("bad_secret")),
            "{body}"
        );
    }

    // The same key again.
    let (status, body) = f.enroll(&mut first, &good).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A request signed by another key than the one it names.
    let mut impostor = SimulatedDevice::new("impostor");
    let honest = SimulatedDevice::new("honest");
    let mut envelope = honest.enroll_envelope(&good, Utc::now());
    envelope.signatures = impostor.enroll_envelope(&good, Utc::now()).signatures;
    let (status, body) = f.post("/api/v1/enroll", envelope.to_json()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "bad_proof");

    // A stale request (replayed from long ago).
    let stale = impostor.enroll_envelope(&good, Utc::now() - Duration::hours(2));
    let (status, _) = f.post("/api/v1/enroll", stale.to_json()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(f.enroll(&mut impostor, &good).await.0, StatusCode::CREATED);

    let secrets = f.collector.cli(&["secret", "list"]);
    assert!(
        secrets.stdout.contains("uses 1/1") && secrets.stdout.contains("ward 7"),
        "{}",
        secrets.dump()
    );
    assert!(
        !secrets.stdout.contains(&single_use),
        "secret list must never show a secret"
    );
    assert!(
        !f.collector.log().contains(&good),
        "a secret reached the log"
    );
}

async fn ingest_answers(backend: Backend) {
    let f = start(backend, "ingest");
    let secret = f.collector.create_secret(&[]);
    let mut alice = SimulatedDevice::new("alice-laptop");
    let mut bob = SimulatedDevice::new("bob-laptop");
    f.enroll(&mut alice, &secret).await;
    f.enroll(&mut bob, &secret).await;

    // 201 stored, then 200 for the same envelope again.
    let first = alice.next_envelope();
    let (status, body) = f.send(&first).await;
    assert_eq!(status, StatusCode::CREATED, "{body}\n{}", f.collector.log());
    assert_eq!(body["newly_stored"], true);
    let (status, body) = f.send(&first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["newly_stored"], false);
    let second = alice.next_envelope();
    assert_eq!(f.send(&second).await.0, StatusCode::CREATED);

    // 409: the same sequence with another digest; a sequence below one stored.
    let mut rewrite = alice.next_report(Utc::now());
    rewrite.sequence = 2;
    rewrite.checks.clear();
    let (status, body) = f
        .send(&Envelope::sign(
            REPORT_PAYLOAD_TYPE,
            &rewrite.to_payload(),
            &alice.key,
        ))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let mut forgotten = SimulatedDevice::new("alice-laptop");
    forgotten.key = alice.key.clone();
    forgotten.device_id = alice.device_id.clone();
    let mut older = forgotten.next_report(Utc::now());
    older.sequence = 1;
    older.checks.clear();
    let (status, _) = f
        .send(&Envelope::sign(
            REPORT_PAYLOAD_TYPE,
            &older.to_payload(),
            &alice.key,
        ))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // 401: a forged signature, and a key that never enrolled.
    let mut forged = alice.next_envelope();
    let mut sig = forged.signatures[0].sig.clone().into_bytes();
    sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
    forged.signatures[0].sig = String::from_utf8(sig).unwrap();
    let (status, body) = f.send(&forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "bad_signature");
    let mut stranger = SimulatedDevice::new("stranger");
    stranger.device_id = alice.device_id.clone();
    let (status, body) = f.send(&stranger.next_envelope()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unknown_key"))
    );

    // 422: bob's key signing a report that claims to be alice's; a report
    // from the future.
    let mut cross = bob.next_report(Utc::now());
    cross.device_id = palisade_shared::DeviceId::new(alice.device_id.clone().unwrap());
    let (status, body) = f
        .send(&Envelope::sign(
            REPORT_PAYLOAD_TYPE,
            &cross.to_payload(),
            &bob.key,
        ))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong_device"))
    );
    let future = bob.next_report(Utc::now() + Duration::hours(1));
    let (status, body) = f
        .send(&Envelope::sign(
            REPORT_PAYLOAD_TYPE,
            &future.to_payload(),
            &bob.key,
        ))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("future_timestamp"))
    );

    // 400: not JSON, not DSSE, bad base64, a truncated body, a payload that
    // is signed but violates the schema, the wrong payload type.
    let valid = bob.next_envelope();
    let json = valid.to_json();
    let mut bad_base64 = valid.clone();
    bad_base64.payload = "!!!".into();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"hello".to_vec()),
        ("not dsse", br#"{"hello":"world"}"#.to_vec()),
        ("bad base64", bad_base64.to_json()),
        ("truncated", json[..json.len() / 2].to_vec()),
        (
            "schema",
            Envelope::sign(REPORT_PAYLOAD_TYPE, b"{\"sequence\":1}", &bob.key).to_json(),
        ),
        (
            "payload type",
            Envelope::sign(
                POLICY_PAYLOAD_TYPE,
                &bob.next_report(Utc::now()).to_payload(),
                &bob.key,
            )
            .to_json(),
        ),
    ];
    for (what, body) in bodies {
        let (status, answer) = f.post("/api/v1/reports", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
    }
    // 413: over the 256 KiB limit.
    let (status, _) = f.post("/api/v1/reports", vec![b' '; 300 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // bob's one valid report is still accepted after all of that.
    assert_eq!(f.send(&valid).await.0, StatusCode::CREATED);

    // 403 once revoked.
    let revoked = f
        .collector
        .cli(&["device", "revoke", bob.device_id.as_deref().unwrap()]);
    assert_eq!(revoked.exit_code, Some(0), "{}", revoked.dump());
    let (status, body) = f.send(&bob.next_envelope()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("revoked"))
    );

    // Only the valid reports are stored, byte for byte as sent.
    let store = f.store().await;
    assert_eq!(store.count_reports().await.unwrap(), 3);
    let stored = store
        .report_envelope(alice.device_id.as_deref().unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(first.to_json().as_slice()));

    // Every refusal was counted by its reason.
    let metrics = f
        .client
        .get(format!("{}/metrics", f.collector.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "sequence_conflict",
        "bad_signature",
        "unknown_key",
        "wrong_device",
        "future_timestamp",
        "malformed",
        "too_large",
        "revoked",
    ] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "no counter for {reason}:\n{metrics}"
        );
    }
}

async fn policy_with_etag(backend: Backend) {
    let f = start(backend, "policy");
    let secret = f.collector.create_secret(&[]);
    let mut device = SimulatedDevice::new("p");
    let (_, enrolled) = f.enroll(&mut device, &secret).await;
    let pinned =
        verifying_key_from_base64(enrolled["policy_public_key"].as_str().unwrap()).unwrap();
    let url = format!("{}/api/v1/policy", f.collector.url);

    let response = f.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let envelope = Envelope::from_json(&response.bytes().await.unwrap(), 1 << 20).unwrap();
    let policy = envelope
        .verify(POLICY_PAYLOAD_TYPE, |id| {
            (id == &KeyId::of(&pinned)).then_some(pinned)
        })
        .unwrap();
    let text = String::from_utf8(policy.payload).unwrap();
    assert!(text.contains("id = \"nhs-baseline\""), "{text}");

    let cached = f
        .client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    let new_policy = f.collector.state_dir.join("new-policy.toml");
    std::fs::write(&new_policy, "[policy]\nid = \"tight\"\nversion = 2\n[rules.screen_lock]\nmode = \"enforce\"\nmax_idle_seconds = 300\n").unwrap();
    let set = f
        .collector
        .cli(&["policy", "set", new_policy.to_str().unwrap()]);
    assert_eq!(set.exit_code, Some(0), "{}", set.dump());
    let changed = f
        .client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);

    let broken = f.collector.state_dir.join("broken.toml");
    std::fs::write(
        &broken,
        "[policy]\nid = \"x\"\nversion = 3\n[rules.screen_lock]\nmode = \"sometimes\"\n",
    )
    .unwrap();
    let refused = f
        .collector
        .cli(&["policy", "set", broken.to_str().unwrap()]);
    assert_ne!(refused.exit_code, Some(0));
    assert!(
        refused
            .stderr
            .contains("broken.toml:5:9: rules.screen_lock.mode"),
        "{}",
        refused.dump()
    );
}

palisade_tests::on_both_stores!(enrollment_answers, ingest_answers, policy_with_etag);

#[test]
fn plain_http_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().display().to_string();
    let run = palisade_tests::run(
        &palisade_tests::binary("palisade-collector"),
        &["serve", "--listen", "0.0.0.0:0", "--state-dir", &state_dir],
        &[],
    );
    assert_ne!(run.exit_code, Some(0), "{}", run.dump());
    assert!(
        run.stderr.contains("refusing to serve plain HTTP"),
        "{}",
        run.dump()
    );
}

#[test]
fn sigterm_stops_the_collector_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = RunningCollector::start(dir.path(), None);
    assert_eq!(collector.stop(), Some(0), "{}", collector.log());
    assert!(
        collector.log().contains("collector stopped"),
        "{}",
        collector.log()
    );
}
