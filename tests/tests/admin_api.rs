//! The admin API over real HTTPS on 127.0.0.1, against SQLite and against a
//! real PostgreSQL server: bearer tokens and roles, the device list with
//! every filter, sort and page, hostile search text, device detail with its
//! chain flags, the summary and `/metrics`, policy, secrets, exceptions that
//! expire, the CSV export, the audit log, and the OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed assertion

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use palisade_shared::envelope::{Envelope, KeyId, POLICY_PAYLOAD_TYPE};
use palisade_shared::protocol::EnrollResponse;
use palisade_shared::report::{CheckStatus, Report};
use palisade_tests::collector::RunningCollector;
use palisade_tests::databases::{Backend, database_for};
use palisade_tests::device::SimulatedDevice;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Fixture {
    _dir: tempfile::TempDir,
    collector: RunningCollector,
    client: reqwest::Client,
    /// `plt_…` tokens made with the command line.
    admin: String,
    viewer: String,
    /// An enrollment secret with unlimited uses.
    secret: String,
}

/// What came back.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {} {}", self.status, self.text))
    }
}

fn start(backend: Backend, name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let database = database_for(backend, name);
    let collector = RunningCollector::start(dir.path(), database.as_deref());
    let client = collector.client();
    let admin = create_token(&collector, "admin", "ops console");
    let viewer = create_token(&collector, "viewer", "");
    let secret = collector.create_secret(&[]);
    Fixture {
        _dir: dir,
        collector,
        client,
        admin,
        viewer,
        secret,
    }
}

fn create_token(collector: &RunningCollector, role: &str, label: &str) -> String {
    let made = collector.cli(&["token", "create", "--role", role, "--label", label]);
    assert_eq!(made.exit_code, Some(0), "{}", made.dump());
    let token = made.stdout.trim().to_owned();
    assert!(token.starts_with("plt_"), "{}", made.dump());
    token
}

/// The id part of a `plt_<id>_<random>` token.
fn token_id(token: &str) -> &str {
    &token[4..20]
}

impl Fixture {
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.collector.url))
            .query(query);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{method} {path}: {err}\n{}", self.collector.log()));
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    /// GET with a token, asserting 200; the JSON body.
    async fn get(&self, path: &str, query: &[(&str, &str)], token: &str) -> Value {
        let answer = self.call(Method::GET, path, query, Some(token), None).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "GET {path} {query:?}: {}\n{}",
            answer.text,
            self.collector.log()
        );
        answer.json()
    }

    async fn post_json(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.call(
            Method::POST,
            path,
            &[],
            Some(token),
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    /// The hostnames the device list answers for `query`, in order.
    async fn hostnames(&self, query: &[(&str, &str)]) -> Vec<String> {
        let page = self.get("/api/v1/devices", query, &self.viewer).await;
        page["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["hostname"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn enroll(&self, hostname: &str) -> SimulatedDevice {
        let mut device = SimulatedDevice::new(hostname);
        let envelope = device.enroll_envelope(&self.secret, Utc::now());
        let answer = self
            .call(
                Method::POST,
                "/api/v1/enroll",
                &[],
                None,
                Some(("application/json", envelope.to_json())),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        let response: EnrollResponse = serde_json::from_str(&answer.text).unwrap();
        device.device_id = Some(response.device_id.to_string());
        device
    }

    /// Signs and sends `report`, asserting 201.
    async fn send(&self, device: &mut SimulatedDevice, report: &Report) {
        let envelope = device.sign_and_advance(report);
        self.send_envelope(&envelope, StatusCode::CREATED).await;
    }

    async fn send_envelope(&self, envelope: &Envelope, expected: StatusCode) {
        let answer = self
            .call(
                Method::POST,
                "/api/v1/reports",
                &[],
                None,
                Some(("application/json", envelope.to_json())),
            )
            .await;
        assert_eq!(answer.status, expected, "{}", answer.text);
    }

    /// Sends the device's next report with these check statuses (rules in
    /// the order of `SimulatedDevice::next_report`: disk_encryption,
    /// screen_lock) from this OS.
    async fn report(
        &self,
        device: &mut SimulatedDevice,
        statuses: [CheckStatus; 2],
        os_name: &str,
    ) {
        let mut report = device.next_report(Utc::now());
        report.host.os_name = os_name.to_owned();
        for (check, status) in report.checks.iter_mut().zip(statuses) {
            check.status = status;
        }
        self.send(device, &report).await;
    }

    async fn audit_actions(&self) -> Vec<(String, String, String)> {
        let audit = self.get("/api/v1/audit", &[], &self.viewer).await;
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_owned(),
                    e["actor"].as_str().unwrap().to_owned(),
                    e["target"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// Query-string pairs.
type Query<'a> = Vec<(&'a str, &'a str)>;

/// Waits until the wall clock has moved on by a few milliseconds, so that
/// times taken before and after are strictly ordered at the store's
/// millisecond resolution.
async fn clock_moves_on() {
    let start = Utc::now();
    while Utc::now() < start + Duration::milliseconds(3) {
        tokio::time::sleep(StdDuration::from_millis(1)).await;
    }
}

/// Waits until the wall clock has passed `at`. For the behaviours that are
/// about time passing (a device going stale, an exception expiring): the
/// collector reads the real clock, so the test lets the real time pass, once,
/// to a known instant, and then asserts. Nothing is polled.
async fn wait_until_past(at: DateTime<Utc>) {
    let left = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + StdDuration::from_millis(2)).await;
    assert!(Utc::now() > at);
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

use CheckStatus::{Fail, Pass, Unknown};

const DEBIAN: &str = "Debian GNU/Linux";

// ---------------------------------------------------------------------------
// Scenarios.

async fn tokens_and_roles(backend: Backend) {
    let f = start(backend, "admin_auth");
    let path = "/api/v1/devices";

    // No token, a malformed one, an enrollment secret, a wrong random part.
    let wrong_random = format!("{}x", &f.admin[..f.admin.len() - 1]);
    let unknown_id = format!("plt_0000000000000000_{}", &f.admin[21..]);
    let bad: [Option<&str>; 5] = [
        None,
        Some("not-a-token"),
        Some(f.secret.as_str()),
        Some(wrong_random.as_str()),
        Some(unknown_id.as_str()),
    ];
    for token in bad {
        let answer = f.call(Method::GET, path, &[], token, None).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{token:?}: {}",
            answer.text
        );
        assert_eq!(answer.json()["error"], "unauthorized");
        assert!(
            answer.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{:?}",
            answer.headers
        );
    }
    // Basic auth is not a bearer token.
    let basic = f
        .client
        .get(format!("{}{path}", f.collector.url))
        .basic_auth("admin", Some("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    // Both roles read; only admins change.
    for token in [&f.admin, &f.viewer] {
        for read in [
            "/api/v1/devices",
            "/api/v1/summary",
            "/api/v1/admin/policy",
            "/api/v1/exceptions",
            "/api/v1/audit",
        ] {
            f.get(read, &[], token).await;
        }
    }
    let device = f.enroll("viewer-target").await;
    let device_id = device.device_id.clone().unwrap();
    let revoke_path = format!("/api/v1/devices/{device_id}/revoke");
    let forbidden = [
        f.call(Method::POST, &revoke_path, &[], Some(&f.viewer), None).await,
        f.call(Method::GET, "/api/v1/secrets", &[], Some(&f.viewer), None).await,
        f.post_json("/api/v1/secrets", &f.viewer, &json!({"label": "x"})).await,
        f.post_json(
            "/api/v1/exceptions",
            &f.viewer,
            &json!({"device_id": device_id, "rule_id": "disk_encryption",
                    "until": rfc3339(Utc::now() + Duration::days(1)), "reason": "r", "approver": "a"}),
        )
        .await,
        f.call(
            Method::PUT,
            "/api/v1/admin/policy",
            &[],
            Some(&f.viewer),
            Some(("application/toml", b"[policy]\n".to_vec())),
        )
        .await,
    ];
    for answer in forbidden {
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
        assert_eq!(answer.json()["error"], "forbidden");
    }
    // The viewer's attempt changed nothing.
    let detail = f
        .get(&format!("/api/v1/devices/{device_id}"), &[], &f.admin)
        .await;
    assert_eq!(detail["device"]["revoked_at"], Value::Null);

    // A revoked token is refused from the next request on.
    let revoked = f.collector.cli(&["token", "revoke", token_id(&f.viewer)]);
    assert_eq!(revoked.exit_code, Some(0), "{}", revoked.dump());
    let answer = f.call(Method::GET, path, &[], Some(&f.viewer), None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    f.get(path, &[], &f.admin).await;
    let missing = f.collector.cli(&["token", "revoke", "0000000000000000"]);
    assert_ne!(missing.exit_code, Some(0), "{}", missing.dump());

    let listed = f.collector.cli(&["token", "list"]);
    assert_eq!(listed.exit_code, Some(0), "{}", listed.dump());
    assert!(
        listed.stdout.contains(token_id(&f.admin)),
        "{}",
        listed.dump()
    );
    assert!(listed.stdout.contains("ops console"), "{}", listed.dump());
    assert!(listed.stdout.contains("revoked"), "{}", listed.dump());
    for token in [&f.admin, &f.viewer] {
        assert!(
            !listed.stdout.contains(token.as_str()),
            "token list shows a token"
        );
        assert!(
            !f.collector.log().contains(token.as_str()),
            "a token reached the log"
        );
    }

    // Unknown parameters and bad values are named; unknown paths are 404.
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("colour", "red")], "colour"),
        (&[("per_page", "500")], "per_page"),
        (&[("sort", "hostname; DROP TABLE devices")], "sort"),
        (&[("status", "pass"), ("status", "fail")], "status"),
        (&[("stale_before", "last week")], "stale_before"),
    ];
    for (query, name) in cases {
        let answer = f.call(Method::GET, path, query, Some(&f.admin), None).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{query:?}: {}",
            answer.text
        );
        let body = answer.json();
        assert_eq!(body["error"], "bad_parameter", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(name),
            "{query:?}: {body}"
        );
    }
    let answer = f
        .call(Method::GET, "/api/v1/nothing", &[], Some(&f.admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json()["error"], "not_found");
}

/// The number after `<name>{<labels>} ` in the metrics text, 0 when absent.
fn metric(metrics: &str, name_and_labels: &str) -> u64 {
    let prefix = format!("{name_and_labels} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().unwrap())
}

/// Ten invalid tokens from one address within the window, and that address
/// is refused with 429 even with a valid token, before any lookup. Agents
/// (enrollment, reports) do not use tokens and are not affected. Store
/// independent, so SQLite only.
#[tokio::test]
async fn invalid_tokens_from_one_address_are_rate_limited() {
    let f = start(Backend::Sqlite, "admin_token_limit");
    let path = "/api/v1/devices";
    f.get(path, &[], &f.admin).await;
    let wrong_random = format!("{}x", &f.admin[..f.admin.len() - 1]);
    for attempt in 1..=10 {
        let answer = f
            .call(Method::GET, path, &[], Some(&wrong_random), None)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}: {}",
            answer.text
        );
    }
    let limited = f.call(Method::GET, path, &[], Some(&f.admin), None).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.text
    );
    assert_eq!(limited.json()["error"], "rate_limited");
    // No token at all is not a guess: still the plain 401.
    let anonymous = f.call(Method::GET, path, &[], None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    f.enroll("still-enrolls").await;
    let metrics = f.call(Method::GET, "/metrics", &[], None, None).await.text;
    assert_eq!(
        metric(
            &metrics,
            "palisade_api_token_refusals_total{reason=\"invalid\"}"
        ),
        10,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "palisade_api_token_refusals_total{reason=\"rate_limited\"}"
        ),
        1,
        "{metrics}"
    );
    assert!(!f.collector.log().contains(&wrong_random));
}

/// alpha (pass, Debian), then the cutoff, then bravo (fail, Ubuntu),
/// charlie (unknown, Debian); delta enrolled before the cutoff and never
/// reported; echo (fail, Debian) revoked.
async fn device_list_filters_sorts_and_pages(backend: Backend) {
    let f = start(backend, "admin_list");
    // The clock moves on between steps so that enrollment and report times
    // are distinct at the store's millisecond resolution.
    let mut enrolled = Vec::new();
    for hostname in [
        "ward1-alpha",
        "Ward1-Bravo",
        "ward2-charlie",
        "ward2-delta",
        "ward3-echo",
    ] {
        enrolled.push(f.enroll(hostname).await);
        clock_moves_on().await;
    }
    let [mut alpha, mut bravo, mut charlie, delta, mut echo] =
        <[SimulatedDevice; 5]>::try_from(enrolled).unwrap();
    f.report(&mut alpha, [Pass, Pass], DEBIAN).await;
    clock_moves_on().await;
    let cutoff = Utc::now();
    clock_moves_on().await;
    f.report(&mut bravo, [Fail, Pass], "Ubuntu").await;
    clock_moves_on().await;
    f.report(&mut charlie, [Pass, Unknown], DEBIAN).await;
    clock_moves_on().await;
    f.report(&mut echo, [Fail, Fail], DEBIAN).await;
    let echo_id = echo.device_id.clone().unwrap();
    let revoked = f
        .call(
            Method::POST,
            &format!("/api/v1/devices/{echo_id}/revoke"),
            &[],
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);

    let cutoff_text = rfc3339(cutoff);
    let cases: Vec<(Query, Vec<&str>)> = vec![
        (
            vec![],
            vec![
                "ward1-alpha",
                "Ward1-Bravo",
                "ward2-charlie",
                "ward2-delta",
                "ward3-echo",
            ],
        ),
        (vec![("status", "pass")], vec!["ward1-alpha"]),
        (vec![("status", "fail")], vec!["Ward1-Bravo", "ward3-echo"]),
        (
            vec![("status", "unknown")],
            vec!["ward2-charlie", "ward2-delta"],
        ),
        (
            vec![("rule", "disk_encryption"), ("rule_status", "fail")],
            vec!["Ward1-Bravo", "ward3-echo"],
        ),
        (
            vec![("rule", "screen_lock"), ("rule_status", "unknown")],
            vec!["ward2-charlie"],
        ),
        (
            vec![("rule", "screen_lock")],
            vec!["ward1-alpha", "Ward1-Bravo", "ward2-charlie", "ward3-echo"],
        ),
        (vec![("os", "Ubuntu")], vec!["Ward1-Bravo"]),
        (vec![("os", DEBIAN), ("status", "fail")], vec!["ward3-echo"]),
        (
            vec![("search", "ward2")],
            vec!["ward2-charlie", "ward2-delta"],
        ),
        (vec![("search", "BRAVO")], vec!["Ward1-Bravo"]),
        (vec![("search", "ubun")], vec!["Ward1-Bravo"]),
        (
            vec![("stale_before", cutoff_text.as_str())],
            vec!["ward1-alpha", "ward2-delta"],
        ),
        (vec![("stale", "true")], vec![]),
        (
            vec![
                ("stale", "false"),
                ("stale_after_seconds", "3600"),
                ("status", "unknown"),
            ],
            vec!["ward2-charlie", "ward2-delta"],
        ),
        (vec![("revoked", "true")], vec!["ward3-echo"]),
        (
            vec![("revoked", "false"), ("status", "fail")],
            vec!["Ward1-Bravo"],
        ),
        (
            vec![("sort", "hostname"), ("descending", "true")],
            vec![
                "ward3-echo",
                "ward2-delta",
                "ward2-charlie",
                "Ward1-Bravo",
                "ward1-alpha",
            ],
        ),
        (
            vec![("sort", "status")],
            vec![
                "ward1-alpha",
                "ward2-charlie",
                "ward2-delta",
                "Ward1-Bravo",
                "ward3-echo",
            ],
        ),
        (
            vec![("sort", "os")],
            vec![
                "ward1-alpha",
                "ward2-charlie",
                "ward2-delta",
                "ward3-echo",
                "Ward1-Bravo",
            ],
        ),
        (
            vec![("sort", "last_seen")],
            vec![
                "ward2-delta",
                "ward1-alpha",
                "Ward1-Bravo",
                "ward2-charlie",
                "ward3-echo",
            ],
        ),
        (
            vec![("sort", "enrolled_at"), ("descending", "true")],
            vec![
                "ward3-echo",
                "ward2-delta",
                "ward2-charlie",
                "Ward1-Bravo",
                "ward1-alpha",
            ],
        ),
        (
            vec![("per_page", "2"), ("page", "2")],
            vec!["ward2-charlie", "ward2-delta"],
        ),
        (vec![("per_page", "2"), ("page", "3")], vec!["ward3-echo"]),
        (vec![("per_page", "2"), ("page", "4")], vec![]),
    ];
    for (query, expected) in &cases {
        assert_eq!(&f.hostnames(query).await, expected, "{query:?}");
    }

    let page = f
        .get(
            "/api/v1/devices",
            &[("per_page", "2"), ("page", "2")],
            &f.viewer,
        )
        .await;
    assert_eq!(
        (
            page["total"].as_u64(),
            page["page"].as_u64(),
            page["per_page"].as_u64()
        ),
        (Some(5), Some(2), Some(2))
    );
    let all = f.get("/api/v1/devices", &[], &f.viewer).await;
    let bravo_row = &all["devices"][1];
    assert_eq!(bravo_row["device_id"], bravo.device_id.clone().unwrap());
    assert_eq!(bravo_row["status"], "fail");
    assert_eq!(
        bravo_row["rules"],
        json!({"disk_encryption": "fail", "screen_lock": "pass"})
    );
    assert_eq!(bravo_row["os_name"], "Ubuntu");
    assert_eq!(bravo_row["last_sequence"], 1);
    assert!(bravo_row["last_seen_at"].is_string());
    let delta_row = &all["devices"][3];
    assert_eq!(delta_row["device_id"], delta.device_id.clone().unwrap());
    assert_eq!(delta_row["last_seen_at"], Value::Null);
    assert_eq!(delta_row["rules"], json!({}));
    assert!(all["devices"][4]["revoked_at"].is_string());
}

async fn search_with_hostile_strings(backend: Backend) {
    let f = start(backend, "admin_search");
    let hostnames = [
        "50%-laptop",
        "under_score",
        "o'brien-pc",
        "<script>alert(1)</script>",
        "plain-pc",
    ];
    for hostname in hostnames {
        let mut device = f.enroll(hostname).await;
        f.report(&mut device, [Pass, Pass], DEBIAN).await;
    }
    let cases: [(&str, &[&str]); 9] = [
        ("' OR 1=1 --", &[]),
        ("' OR '1'='1", &[]),
        ("%", &["50%-laptop"]),
        ("_", &["under_score"]),
        ("'", &["o'brien-pc"]),
        ("<script>", &["<script>alert(1)</script>"]),
        ("\"; DROP TABLE devices; --", &[]),
        ("-pc", &["o'brien-pc", "plain-pc"]),
        (
            "",
            &[
                "50%-laptop",
                "<script>alert(1)</script>",
                "o'brien-pc",
                "plain-pc",
                "under_score",
            ],
        ),
    ];
    for (search, expected) in cases {
        let mut found = f.hostnames(&[("search", search)]).await;
        found.sort();
        let mut expected: Vec<&str> = expected.to_vec();
        expected.sort_unstable();
        assert_eq!(found, expected, "search {search:?}");
    }
    // The JSON carries the hostile hostname as data, escaped by the encoder.
    let page = f
        .get("/api/v1/devices", &[("search", "<script>")], &f.viewer)
        .await;
    assert_eq!(page["devices"][0]["hostname"], "<script>alert(1)</script>");
    assert_eq!(page["total"], 1);
    // And nothing was harmed.
    assert_eq!(f.get("/api/v1/devices", &[], &f.viewer).await["total"], 5);
}

async fn device_detail_with_history_and_chain_flags(backend: Backend) {
    let f = start(backend, "admin_detail");
    let mut device = f.enroll("detail-laptop").await;
    let id = device.device_id.clone().unwrap();
    let key_id = KeyId::of(&device.key.verifying_key()).to_string();
    // Reports 1 and 2; then 4 (3 lost: a gap); then 5 with a prev_digest
    // that is not 4's (a broken chain).
    f.report(&mut device, [Fail, Pass], DEBIAN).await;
    f.report(&mut device, [Fail, Pass], DEBIAN).await;
    let mut skipped = device.next_report(Utc::now());
    skipped.sequence += 1;
    f.send(&mut device, &skipped).await;
    let mut rewritten = device.next_report(Utc::now());
    rewritten.prev_digest = "ab".repeat(32);
    rewritten.checks[0]
        .evidence
        .insert("unencrypted".into(), json!(["/"]));
    rewritten.checks[0].fix = "Encrypt / with LUKS".into();
    f.send(&mut device, &rewritten).await;

    let detail = f
        .get(&format!("/api/v1/devices/{id}"), &[], &f.viewer)
        .await;
    let dev = &detail["device"];
    assert_eq!(dev["device_id"], id);
    assert_eq!(dev["hostname"], "detail-laptop");
    assert_eq!(dev["status"], "fail");
    assert_eq!(dev["last_sequence"], 5);
    assert_eq!(dev["sequence_gap"], true);
    assert_eq!(dev["chain_broken"], true);
    let history: Vec<(u64, bool, bool)> = detail["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["sequence"].as_u64().unwrap(),
                r["sequence_gap"].as_bool().unwrap(),
                r["chain_broken"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            (5, false, true),
            (4, true, false),
            (2, false, false),
            (1, false, false)
        ]
    );
    let newest = &detail["reports"][0];
    assert_eq!(newest["prev_digest"], "ab".repeat(32));
    assert_eq!(newest["digest"].as_str().unwrap(), device.prev_digest);
    // 4 links to 2 (3 is missing); 2 links to 1.
    assert_eq!(
        detail["reports"][1]["prev_digest"],
        detail["reports"][2]["digest"]
    );
    assert_eq!(
        detail["reports"][2]["prev_digest"],
        detail["reports"][3]["digest"]
    );
    assert_eq!(newest["checks_by_status"], json!({"fail": 1, "pass": 1}));
    assert!(newest["issued_at"].is_string() && newest["received_at"].is_string());

    let verdicts = detail["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 2);
    let disk = &verdicts[0];
    assert_eq!(disk["rule_id"], "disk_encryption");
    assert_eq!(disk["status"], "fail");
    assert_eq!(disk["reported_status"], "fail");
    assert_eq!(disk["evidence"], json!({"unencrypted": ["/"]}));
    assert_eq!(disk["fix"], "Encrypt / with LUKS");
    assert_eq!(disk["report_sequence"], 5);
    assert!(disk["summary"].as_str().unwrap().contains("not encrypted"));
    assert!(disk["status_since"].is_string());
    assert_eq!(
        detail["keys"],
        json!([{"key_id": key_id, "created_at": dev["enrolled_at"], "revoked_at": null}])
    );
    assert_eq!(detail["exceptions"], json!([]));

    let short = f
        .get(
            &format!("/api/v1/devices/{id}"),
            &[("history", "2")],
            &f.viewer,
        )
        .await;
    assert_eq!(short["reports"].as_array().unwrap().len(), 2);
    let answer = f
        .call(
            Method::GET,
            &format!("/api/v1/devices/{id}"),
            &[("history", "0")],
            Some(&f.viewer),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("history")
    );
    let answer = f
        .call(
            Method::GET,
            "/api/v1/devices/dev_nope",
            &[],
            Some(&f.viewer),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json()["error"], "no_such_device");
}

/// The number after `palisade_devices{status="<status>"}` in the metrics.
fn devices_gauge(metrics: &str, status: &str) -> u64 {
    let prefix = format!("palisade_devices{{status=\"{status}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

async fn summary_metrics_and_revocation(backend: Backend) {
    let f = start(backend, "admin_summary");
    let empty = f.get("/api/v1/summary", &[], &f.viewer).await;
    assert_eq!(
        (empty["devices"].as_u64(), empty["failing"].as_u64()),
        (Some(0), Some(0))
    );
    let metrics = f.call(Method::GET, "/metrics", &[], None, None).await.text;
    assert_eq!(devices_gauge(&metrics, "pass"), 0);

    let mut a = f.enroll("a").await;
    let mut b = f.enroll("b").await;
    let mut c = f.enroll("c").await;
    let mut d = f.enroll("d").await;
    f.enroll("never-reports").await;
    f.report(&mut a, [Pass, Pass], DEBIAN).await;
    f.report(&mut b, [Fail, Pass], DEBIAN).await;
    f.report(&mut c, [Fail, Fail], DEBIAN).await;
    f.report(&mut d, [Pass, Unknown], DEBIAN).await;
    let reported = Utc::now();

    let summary = f.get("/api/v1/summary", &[], &f.viewer).await;
    assert_eq!(summary["devices"], 5);
    assert_eq!(summary["compliant"], 1);
    assert_eq!(summary["failing"], 2);
    assert_eq!(summary["unknown"], 2);
    assert_eq!(summary["stale"], 0);
    assert_eq!(summary["revoked"], 0);
    assert_eq!(summary["stale_after_seconds"], 259_200);
    assert_eq!(
        summary["failing_by_rule"],
        json!({"disk_encryption": 2, "screen_lock": 1, "password_policy": 0, "usb_storage": 0})
    );
    // Everything is stale against a one-second threshold once a second has
    // passed since the last report (the collector saw it before `reported`).
    wait_until_past(reported + Duration::seconds(1)).await;
    let stale = f
        .get(
            "/api/v1/summary",
            &[("stale_after_seconds", "1")],
            &f.viewer,
        )
        .await;
    assert_eq!(stale["stale"], 5, "{stale}");

    // Revoke c through the API: it leaves the counts, its reports are refused.
    let c_id = c.device_id.clone().unwrap();
    let revoked = f
        .call(
            Method::POST,
            &format!("/api/v1/devices/{c_id}/revoke"),
            &[],
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    let first_time = revoked.json()["revoked_at"].clone();
    assert!(first_time.is_string());
    let again = f
        .call(
            Method::POST,
            &format!("/api/v1/devices/{c_id}/revoke"),
            &[],
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(
        again.json()["revoked_at"],
        first_time,
        "revoking again keeps the first time"
    );
    let unknown = f
        .call(
            Method::POST,
            "/api/v1/devices/dev_nope/revoke",
            &[],
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    f.send_envelope(&c.next_envelope(), StatusCode::FORBIDDEN)
        .await;

    let summary = f.get("/api/v1/summary", &[], &f.viewer).await;
    assert_eq!(
        (
            summary["devices"].as_u64(),
            summary["failing"].as_u64(),
            summary["revoked"].as_u64()
        ),
        (Some(4), Some(1), Some(1))
    );
    assert_eq!(summary["failing_by_rule"]["screen_lock"], 0);

    let metrics = f.call(Method::GET, "/metrics", &[], None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    for (status, n) in [("pass", 1), ("fail", 1), ("unknown", 2), ("revoked", 1)] {
        assert_eq!(
            devices_gauge(&metrics.text, status),
            n,
            "{status}\n{}",
            metrics.text
        );
    }
    let audit = f.audit_actions().await;
    let revocations: Vec<_> = audit
        .iter()
        .filter(|(action, _, _)| action == "device.revoke")
        .collect();
    assert_eq!(revocations.len(), 1, "{audit:?}");
    assert_eq!(revocations[0].2, c_id);
}

async fn policy_get_and_put(backend: Backend) {
    let f = start(backend, "admin_policy");
    let current = f.get("/api/v1/admin/policy", &[], &f.viewer).await;
    assert_eq!(current["policy_id"], "nhs-baseline");
    assert_eq!(current["version"], 1);
    assert!(
        current["text"]
            .as_str()
            .unwrap()
            .contains("[rules.screen_lock]")
    );
    let first_revision = current["revision"].as_u64().unwrap();
    assert_eq!(current["digest"].as_str().unwrap().len(), 64);

    // A broken policy: every problem with its line, column and key; nothing
    // changes.
    let broken = "[policy]\nid = \"x\"\nversion = 3\n[rules.screen_lock]\nmode = \"sometimes\"\nmax_idle_seconds = 0\ncolour = \"red\"\n";
    let answer = f
        .call(
            Method::PUT,
            "/api/v1/admin/policy",
            &[],
            Some(&f.admin),
            Some(("application/toml", broken.as_bytes().to_vec())),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["error"], "invalid_policy");
    let problems = body["problems"].as_array().unwrap();
    assert!(problems.len() >= 3, "{body}");
    assert!(
        problems.iter().any(|p| p["line"] == 5
            && p["column"] == 9
            && p["key_path"] == "rules.screen_lock.mode"),
        "{body}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p["line"] == 6 && p["key_path"] == "rules.screen_lock.max_idle_seconds"),
        "{body}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p["line"] == 7 && p["message"].as_str().unwrap().contains("colour")),
        "{body}"
    );
    let answer = f
        .call(
            Method::PUT,
            "/api/v1/admin/policy",
            &[],
            Some(&f.admin),
            Some(("application/toml", b"[policy\n".to_vec())),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["problems"][0]["line"], 1);
    let answer = f
        .call(
            Method::PUT,
            "/api/v1/admin/policy",
            &[],
            Some(&f.admin),
            Some(("application/toml", vec![0xff, 0xfe])),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        f.get("/api/v1/admin/policy", &[], &f.viewer).await["revision"],
        first_revision
    );

    // A good one is signed and served to agents at once.
    let agent_url = format!("{}/api/v1/policy", f.collector.url);
    let etag = f.client.get(&agent_url).send().await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = "[policy]\nid = \"tight\"\nversion = 2\n[rules.screen_lock]\nmode = \"enforce\"\nmax_idle_seconds = 300\n";
    let answer = f
        .call(
            Method::PUT,
            "/api/v1/admin/policy",
            &[],
            Some(&f.admin),
            Some(("application/toml", text.as_bytes().to_vec())),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let set = answer.json();
    assert_eq!(
        (set["policy_id"].as_str(), set["version"].as_u64()),
        (Some("tight"), Some(2))
    );
    assert!(set["revision"].as_u64().unwrap() > first_revision);
    assert_eq!(
        set["created_by"],
        format!("token:{} (ops console)", token_id(&f.admin))
    );
    let read = f.get("/api/v1/admin/policy", &[], &f.viewer).await;
    assert_eq!(read["text"], text);
    assert_eq!(read["revision"], set["revision"]);

    let served = f
        .client
        .get(&agent_url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let envelope = Envelope::from_json(&served.bytes().await.unwrap(), 1 << 20).unwrap();
    assert_eq!(envelope.payload_type, POLICY_PAYLOAD_TYPE);
    assert_eq!(envelope.payload_unverified().unwrap(), text.as_bytes());

    let audit = f.audit_actions().await;
    assert_eq!(audit[0].0, "policy.set", "{audit:?}");
    assert_eq!(
        audit[0].1,
        format!("token:{} (ops console)", token_id(&f.admin))
    );
    assert_eq!(audit[0].2, "tight v2");
}

async fn secrets_create_and_list(backend: Backend) {
    let f = start(backend, "admin_secrets");
    let answer = f
        .post_json(
            "/api/v1/secrets",
            &f.admin,
            &json!({"uses": 1, "expires_in_seconds": 3600, "label": "ward 9 laptops"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let created = answer.json();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with(&format!("pls_{}_", created["id"].as_str().unwrap())),
        "{created}"
    );
    assert_eq!(created["max_uses"], 1);
    assert_eq!(created["uses"], 0);
    let expires: DateTime<Utc> = created["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (expires - Utc::now() - Duration::hours(1))
            .num_seconds()
            .abs()
            < 60
    );

    // It enrolls one device, once.
    let mut device = SimulatedDevice::new("ward9-001");
    let envelope = device.enroll_envelope(&secret, Utc::now());
    let enroll = |body: Vec<u8>| {
        f.call(
            Method::POST,
            "/api/v1/enroll",
            &[],
            None,
            Some(("application/json", body)),
        )
    };
    assert_eq!(enroll(envelope.to_json()).await.status, StatusCode::CREATED);
    device = SimulatedDevice::new("ward9-002");
    assert_eq!(
        enroll(device.enroll_envelope(&secret, Utc::now()).to_json())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let answer = f.post_json("/api/v1/secrets", &f.admin, &json!({})).await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "label may be left out: {}",
        answer.text
    );
    assert_eq!(answer.json()["max_uses"], Value::Null);

    let listed = f.get("/api/v1/secrets", &[], &f.admin).await;
    let secrets = listed["secrets"].as_array().unwrap();
    // The fixture's secret from the command line, and the two above.
    assert_eq!(secrets.len(), 3, "{listed}");
    let ward9 = secrets
        .iter()
        .find(|s| s["id"] == created["id"])
        .expect("listed");
    assert_eq!(
        (ward9["uses"].as_u64(), ward9["max_uses"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(ward9["label"], "ward 9 laptops");
    assert_eq!(
        ward9["created_by"],
        format!("token:{} (ops console)", token_id(&f.admin))
    );
    assert!(ward9.get("secret").is_none());
    assert!(
        !listed.to_string().contains(&secret),
        "a listing shows a secret"
    );
    assert!(
        !f.collector.log().contains(&secret),
        "a secret reached the log"
    );

    for (body, field) in [
        (json!({"uses": 0}), "uses"),
        (json!({"expires_in_seconds": 0}), "expires_in_seconds"),
        (json!({"label": "x".repeat(201)}), "label"),
    ] {
        let answer = f.post_json("/api/v1/secrets", &f.admin, &body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.text
        );
        assert!(
            answer.json()["message"].as_str().unwrap().contains(field),
            "{}",
            answer.text
        );
    }
    let answer = f
        .post_json(
            "/api/v1/secrets",
            &f.admin,
            &json!({"uses": 1, "colour": "red"}),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    let answer = f
        .call(
            Method::POST,
            "/api/v1/secrets",
            &[],
            Some(&f.admin),
            Some(("application/json", b"{not json".to_vec())),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    assert_eq!(answer.json()["error"], "malformed");
    assert_eq!(
        f.get("/api/v1/secrets", &[], &f.admin).await["secrets"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

async fn exceptions_except_and_expire(backend: Backend) {
    let f = start(backend, "admin_exceptions");
    let mut device = f.enroll("trial-laptop").await;
    let mut other = f.enroll("other-laptop").await;
    let id = device.device_id.clone().unwrap();
    f.report(&mut device, [Fail, Pass], DEBIAN).await;
    f.report(&mut other, [Fail, Pass], DEBIAN).await;

    // Refusals first: each names its field.
    let until = Utc::now() + Duration::days(1);
    let grant = |device_id: &str, rule: &str, until: DateTime<Utc>, reason: &str| {
        json!({"device_id": device_id, "rule_id": rule, "until": rfc3339(until),
               "reason": reason, "approver": "Dr Okafor, IG lead"})
    };
    for (body, status, word) in [
        (
            grant(&id, "firewall", until, "r"),
            StatusCode::BAD_REQUEST,
            "rule_id",
        ),
        (
            grant(&id, "disk_encryption", Utc::now() - Duration::hours(1), "r"),
            StatusCode::BAD_REQUEST,
            "until",
        ),
        (
            grant(&id, "disk_encryption", until, " "),
            StatusCode::BAD_REQUEST,
            "reason",
        ),
        (
            grant("dev_nope", "disk_encryption", until, "r"),
            StatusCode::NOT_FOUND,
            "dev_nope",
        ),
    ] {
        let answer = f.post_json("/api/v1/exceptions", &f.admin, &body).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
        assert!(answer.text.contains(word), "{}", answer.text);
    }

    // Four seconds: long enough to look at it while active, short enough to
    // wait for its expiry.
    let until = Utc::now() + Duration::seconds(4);
    let answer = f
        .post_json(
            "/api/v1/exceptions",
            &f.admin,
            &grant(
                &id,
                "disk_encryption",
                until,
                "clinical trial kit, encrypted by vendor",
            ),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let exception = answer.json();
    assert_eq!(exception["active"], true);
    assert_eq!(exception["approver"], "Dr Okafor, IG lead");

    // While active: excepted in the detail, compliant in the list and the
    // summary; the other device still fails.
    let detail = f
        .get(&format!("/api/v1/devices/{id}"), &[], &f.viewer)
        .await;
    assert_eq!(detail["device"]["status"], "pass");
    assert_eq!(detail["verdicts"][0]["status"], "excepted");
    assert_eq!(detail["verdicts"][0]["reported_status"], "fail");
    assert_eq!(detail["verdicts"][0]["exception_id"], exception["id"]);
    assert_eq!(detail["exceptions"][0]["id"], exception["id"]);
    assert_eq!(f.hostnames(&[("status", "pass")]).await, ["trial-laptop"]);
    assert_eq!(
        f.hostnames(&[("rule", "disk_encryption"), ("rule_status", "excepted")])
            .await,
        ["trial-laptop"]
    );
    let summary = f.get("/api/v1/summary", &[], &f.viewer).await;
    assert_eq!(
        (summary["compliant"].as_u64(), summary["failing"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(summary["failing_by_rule"]["disk_encryption"], 1);
    let listed = f
        .get("/api/v1/exceptions", &[("active", "true")], &f.viewer)
        .await;
    assert_eq!(listed["exceptions"].as_array().unwrap().len(), 1);

    // It expires by itself at `until`.
    wait_until_past(until).await;
    let detail = f
        .get(&format!("/api/v1/devices/{id}"), &[], &f.viewer)
        .await;
    assert_eq!(detail["device"]["status"], "fail", "{detail}");
    assert_eq!(detail["verdicts"][0]["status"], "fail");
    assert_eq!(detail["verdicts"][0]["exception_id"], Value::Null);
    assert_eq!(detail["exceptions"], json!([]));
    assert_eq!(
        f.hostnames(&[("status", "fail")]).await,
        ["other-laptop", "trial-laptop"]
    );
    assert_eq!(
        f.get("/api/v1/summary", &[], &f.viewer).await["failing_by_rule"]["disk_encryption"],
        2
    );
    let active = f
        .get("/api/v1/exceptions", &[("active", "true")], &f.viewer)
        .await;
    assert_eq!(active["exceptions"], json!([]));
    let all = f
        .get("/api/v1/exceptions", &[("device", id.as_str())], &f.viewer)
        .await;
    assert_eq!(all["exceptions"][0]["active"], false);
    assert_eq!(
        all["exceptions"][0]["reason"],
        "clinical trial kit, encrypted by vendor"
    );
    let answer = f
        .call(
            Method::GET,
            "/api/v1/exceptions",
            &[("active", "yes")],
            Some(&f.viewer),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let audit = f.audit_actions().await;
    let grants: Vec<_> = audit
        .iter()
        .filter(|(a, _, _)| a == "exception.grant")
        .collect();
    assert_eq!(
        grants.len(),
        1,
        "only the granted one is audited: {audit:?}"
    );
    assert_eq!(grants[0].2, id);
}

async fn csv_export_with_formula_hostnames(backend: Backend) {
    let f = start(backend, "admin_csv");
    let hostnames = ["=1+2", "+SUM(A1)", "-cmd", "@calc", "plain-pc"];
    for hostname in hostnames {
        let mut device = f.enroll(hostname).await;
        if hostname == "plain-pc" {
            device = device.with_console_user("=cmd|' /C calc'!A0");
        }
        f.report(&mut device, [Fail, Pass], DEBIAN).await;
    }
    let mut passing = f.enroll("passing-pc").await;
    f.report(&mut passing, [Pass, Pass], DEBIAN).await;

    let answer = f
        .call(
            Method::GET,
            "/api/v1/devices.csv",
            &[("status", "fail")],
            Some(&f.viewer),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = answer.text.lines().collect();
    assert_eq!(
        lines[0],
        "device_id,hostname,console_user,status,os_name,os_version,kernel_version,agent_version,\
         enrolled_at,\
         last_seen_at,revoked_at,last_sequence,sequence_gap,chain_broken,\
         screen_lock,disk_encryption,password_policy,usb_storage"
    );
    assert_eq!(lines.len(), 6, "{}", answer.text);
    let hostname_cells: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(
        hostname_cells,
        ["'+SUM(A1)", "'-cmd", "'=1+2", "'@calc", "plain-pc"]
    );
    for line in &lines[1..] {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[0].len(), 36, "{line}");
        let console_user = if cells[1] == "plain-pc" {
            "'=cmd|' /C calc'!A0"
        } else {
            ""
        };
        assert_eq!(cells[2], console_user, "{line}");
        assert_eq!(cells[3], "fail", "{line}");
        assert_eq!(&cells[14..], ["pass", "fail", "", ""], "{line}");
        assert_eq!(cells[11], "1", "{line}");
    }
    assert!(!answer.text.contains("passing-pc"));

    let everything = f
        .call(
            Method::GET,
            "/api/v1/devices.csv",
            &[],
            Some(&f.viewer),
            None,
        )
        .await;
    assert_eq!(everything.text.lines().count(), 7);
    let answer = f
        .call(
            Method::GET,
            "/api/v1/devices.csv",
            &[("page", "2")],
            Some(&f.viewer),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text.contains("page"));
    let answer = f
        .call(Method::GET, "/api/v1/devices.csv", &[], None, None)
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

async fn every_admin_action_is_audited(backend: Backend) {
    let f = start(backend, "admin_audit");
    let device = f.enroll("audited").await;
    let id = device.device_id.clone().unwrap();
    let admin_actor = format!("token:{} (ops console)", token_id(&f.admin));

    let secret = f
        .post_json("/api/v1/secrets", &f.admin, &json!({"label": "audit"}))
        .await
        .json();
    let policy = "[policy]\nid = \"audited\"\nversion = 9\n[rules.usb_storage]\nmode = \"audit\"\n";
    let answer = f
        .call(
            Method::PUT,
            "/api/v1/admin/policy",
            &[],
            Some(&f.admin),
            Some(("application/toml", policy.as_bytes().to_vec())),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let exception = f
        .post_json(
            "/api/v1/exceptions",
            &f.admin,
            &json!({"device_id": id, "rule_id": "usb_storage", "until": rfc3339(Utc::now() + Duration::days(30)),
                    "reason": "label printer", "approver": "IT"}),
        )
        .await;
    assert_eq!(exception.status, StatusCode::CREATED, "{}", exception.text);
    let revoked = f
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/revoke"),
            &[],
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let cli_token = create_token(&f.collector, "viewer", "temp");
    let revoke = f.collector.cli(&["token", "revoke", token_id(&cli_token)]);
    assert_eq!(revoke.exit_code, Some(0), "{}", revoke.dump());

    let audit = f.get("/api/v1/audit", &[], &f.viewer).await;
    let entries = audit["entries"].as_array().unwrap();
    let find = |action: &str, target: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["target"] == target)
            .unwrap_or_else(|| panic!("no {action} on {target} in {audit:#}"))
    };
    let secret_entry = find("secret.create", secret["id"].as_str().unwrap());
    assert_eq!(secret_entry["actor"], admin_actor);
    assert_eq!(secret_entry["details"]["label"], "audit");
    assert!(
        !audit
            .to_string()
            .contains(secret["secret"].as_str().unwrap())
    );
    assert_eq!(find("policy.set", "audited v9")["actor"], admin_actor);
    let grant = find("exception.grant", &id);
    assert_eq!(grant["actor"], admin_actor);
    assert_eq!(grant["details"]["rule_id"], "usb_storage");
    assert_eq!(grant["details"]["approver"], "IT");
    assert_eq!(find("device.revoke", &id)["actor"], admin_actor);
    assert!(
        find("token.create", token_id(&f.admin))["actor"]
            .as_str()
            .unwrap()
            .starts_with("cli:")
    );
    assert_eq!(
        find("token.create", token_id(&cli_token))["details"]["role"],
        "viewer"
    );
    assert!(
        find("token.revoke", token_id(&cli_token))["actor"]
            .as_str()
            .unwrap()
            .starts_with("cli:")
    );
    // Newest first, each with a time.
    assert_eq!(entries[0]["action"], "token.revoke");
    let times: Vec<DateTime<Utc>> = entries
        .iter()
        .map(|e| e["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let limited = f.get("/api/v1/audit", &[("limit", "2")], &f.viewer).await;
    assert_eq!(limited["entries"].as_array().unwrap().len(), 2);
    for token in [&f.admin, &f.viewer, &cli_token] {
        assert!(
            !audit.to_string().contains(token.as_str()),
            "a token reached the audit log"
        );
    }
}

/// Every route the collector answers, by (method, path).
const EXPECTED_ROUTES: [(&str, &str); 21] = [
    ("post", "/api/v1/enroll"),
    ("post", "/api/v1/reports"),
    ("get", "/api/v1/policy"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/devices"),
    ("get", "/api/v1/devices.csv"),
    ("get", "/api/v1/devices/{id}"),
    ("post", "/api/v1/devices/{id}/revoke"),
    ("get", "/api/v1/summary"),
    ("get", "/api/v1/admin/policy"),
    ("put", "/api/v1/admin/policy"),
    ("get", "/api/v1/secrets"),
    ("post", "/api/v1/secrets"),
    ("post", "/api/v1/secrets/{id}/revoke"),
    ("post", "/api/v1/installers"),
    ("get", "/api/v1/exceptions"),
    ("post", "/api/v1/exceptions"),
    ("get", "/api/v1/audit"),
];

async fn openapi_document_lists_every_route(backend: Backend) {
    let f = start(backend, "admin_openapi");
    let answer = f
        .call(Method::GET, "/api/v1/openapi.json", &[], None, None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let document = answer.json();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        document["openapi"]
    );
    let mut documented = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if let Some(operation) = item.get(method) {
                documented.push((method.to_owned(), path.clone(), operation.clone()));
            }
        }
    }
    let mut listed: Vec<(String, String)> = documented
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    listed.sort();
    let mut expected: Vec<(String, String)> = EXPECTED_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    // Each documented operation reaches a handler of the running collector
    // (no 404 `not_found`, no 405), and names its answers.
    for (method, path, operation) in &documented {
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{method} {path}"
        );
        let concrete = path.replace("{id}", "dev_nope");
        let answer = f
            .call(
                method.to_uppercase().parse().unwrap(),
                &concrete,
                &[],
                None,
                None,
            )
            .await;
        assert_ne!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let not_routed = answer.status == StatusCode::NOT_FOUND
            && serde_json::from_str::<Value>(&answer.text).is_ok_and(|b| b["error"] == "not_found");
        assert!(!not_routed, "{method} {path} is documented but not routed");
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        if secured {
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without a token"
            );
            assert!(
                operation["responses"]["429"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("rate_limited")),
                "{method} {path} names its 429"
            );
        }
    }
    // The bodies and parameters are described.
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for name in [
        "DevicePageBody",
        "DeviceDetailBody",
        "SummaryBody",
        "ErrorBody",
        "Envelope",
        "NewExceptionRequest",
    ] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
    let list_params: Vec<&str> = document["paths"]["/api/v1/devices"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "status",
        "rule",
        "rule_status",
        "os",
        "search",
        "stale",
        "stale_before",
        "revoked",
        "sort",
        "descending",
        "page",
        "per_page",
    ] {
        assert!(list_params.contains(&name), "{name} not in {list_params:?}");
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

palisade_tests::on_both_stores!(
    tokens_and_roles,
    device_list_filters_sorts_and_pages,
    search_with_hostile_strings,
    device_detail_with_history_and_chain_flags,
    summary_metrics_and_revocation,
    policy_get_and_put,
    secrets_create_and_list,
    exceptions_except_and_expire,
    csv_export_with_formula_hostnames,
    every_admin_action_is_audited,
    openapi_document_lists_every_route,
);
