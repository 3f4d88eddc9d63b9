//! Hostile clients against the real collector over HTTPS on 127.0.0.1: the
//! one place to read what the collector answers to forged, replayed,
//! malformed and oversized reports and enrollments, to callers of the admin
//! API and the dashboard who may not do what they try, to hostile text a
//! device puts in its reports, to login guessing, and to clients that hold
//! connections open.
//!
//! Most cases are rows of a table ([`Case`]): a request, the exact status,
//! and the exact error code (JSON) or the sentence (HTML) of the answer. The
//! runner sends each from its own source address in 127.0.0.0/8 (so the
//! per-address failure limits never decide a case they are not about), and
//! around each it takes a [`Fingerprint`] of the store and asserts that
//! nothing changed but the audit rows the case expects. After a table the
//! collector must still be healthy, its log must hold no panic, and a valid
//! report must still be accepted.
//!
//! The store tables run on SQLite and on PostgreSQL; the connection cases
//! (slowloris, idle and a thousand held connections) once, on SQLite.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

#[path = "hostile_clients/admin.rs"]
mod admin;
#[path = "hostile_clients/connections.rs"]
mod connections;
#[path = "hostile_clients/dashboard.rs"]
mod dashboard;
#[path = "hostile_clients/reports.rs"]
mod reports;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::Utc;
use palisade_collector::store::{DeviceQuery, ExceptionFilter, Store};
use palisade_shared::envelope::Envelope;
use palisade_shared::protocol::EnrollResponse;
use palisade_tests::collector::{RunningCollector, client_trusting};
use palisade_tests::databases::{Backend, database_for};
use palisade_tests::device::SimulatedDevice;
use reqwest::{Method, StatusCode};

/// One hostile request and the exact answer it must get.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: StatusCode,
    pub answer: Expected,
    /// Audit rows the refusal itself writes (a refused use of an existing
    /// enrollment secret is audited); nothing else may change.
    pub audit_rows: usize,
}

/// What the body of the answer must say.
#[derive(Debug, Clone)]
pub enum Expected {
    /// An `ErrorBody` with this `error` code.
    Code(&'static str),
    /// A body containing this text (an HTML page, an acknowledgement).
    Text(String),
    /// A redirect to this location.
    RedirectTo(&'static str),
    /// Nothing to check beyond the status (axum's bare 405).
    StatusOnly,
}

impl Case {
    pub fn new(name: impl Into<String>, method: Method, path: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
            status: StatusCode::OK,
            answer: Expected::StatusOnly,
            audit_rows: 0,
        }
    }

    /// A POST of `body` as `application/json`.
    pub fn post_json(name: impl Into<String>, path: impl Into<String>, body: Vec<u8>) -> Self {
        Self::new(name, Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
    }

    /// A POST of an HTML form.
    pub fn post_form(
        name: impl Into<String>,
        path: impl Into<String>,
        form: &[(&str, &str)],
    ) -> Self {
        let mut encoded = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in form {
            encoded.append_pair(key, value);
        }
        Self::new(name, Method::POST, path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded.finish().into_bytes())
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// Sent with a dashboard session's cookie (`palisade_session=…`).
    pub fn cookie(self, cookie: &str) -> Self {
        self.header("cookie", cookie)
    }

    /// Expects `status` with the `ErrorBody` code `code`.
    pub fn refused(mut self, status: StatusCode, code: &'static str) -> Self {
        self.status = status;
        self.answer = Expected::Code(code);
        self
    }

    /// Expects `status` with `text` somewhere in the body.
    pub fn answered(mut self, status: StatusCode, text: impl Into<String>) -> Self {
        self.status = status;
        self.answer = Expected::Text(text.into());
        self
    }

    /// Expects a 303 to `location`.
    pub fn redirected(mut self, location: &'static str) -> Self {
        self.status = StatusCode::SEE_OTHER;
        self.answer = Expected::RedirectTo(location);
        self
    }

    /// Expects `status` and nothing about the body.
    pub fn status_only(mut self, status: StatusCode) -> Self {
        self.status = status;
        self.answer = Expected::StatusOnly;
        self
    }

    pub fn audited(mut self, rows: usize) -> Self {
        self.audit_rows = rows;
        self
    }
}

/// Everything a hostile request could change, read straight from the store:
/// every device with its chain head and flags, the number of reports, every
/// enrollment secret with its uses, the audit log's length, the policy
/// revision, exceptions, API tokens and dashboard users (their failed-login
/// counters and locks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub devices: Vec<String>,
    pub reports: u64,
    pub secrets: Vec<String>,
    pub audit_rows: usize,
    pub policy_revision: Option<u64>,
    pub exceptions: usize,
    pub tokens: Vec<String>,
    pub users: Vec<String>,
}

/// A collector with a small enrolled fleet, the tokens and the store to
/// take fingerprints of.
#[allow(missing_debug_implementations)] // a store and a child process; nothing to print
pub struct World {
    pub _dir: tempfile::TempDir,
    pub collector: RunningCollector,
    pub store: Store,
    pub admin_token: String,
    pub viewer_token: String,
    /// An unlimited secret that enrolled alice, bob and carol.
    pub secret: String,
    /// Two reports stored (sequence 1 and 2), envelopes kept.
    pub alice: SimulatedDevice,
    pub alice_sent: Vec<Envelope>,
    /// Enrolled, one report stored.
    pub bob: SimulatedDevice,
    /// Enrolled, then revoked.
    pub carol: SimulatedDevice,
    /// Source addresses handed out so far.
    addresses: AtomicU32,
}

impl World {
    pub async fn start(backend: Backend, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = database_for(backend, name);
        let collector = RunningCollector::start(dir.path(), database.as_deref());
        let store = Store::open(&collector.database_url).await.unwrap();
        let token = |role: &str| {
            let made = collector.cli(&["token", "create", "--role", role, "--label", role]);
            assert_eq!(made.exit_code, Some(0), "{}", made.dump());
            made.stdout.trim().to_owned()
        };
        let admin_token = token("admin");
        let viewer_token = token("viewer");
        let secret = collector.create_secret(&["--label", "fleet"]);
        let mut world = Self {
            _dir: dir,
            collector,
            store,
            admin_token,
            viewer_token,
            secret,
            alice: SimulatedDevice::new("alice-laptop"),
            alice_sent: Vec::new(),
            bob: SimulatedDevice::new("bob-laptop"),
            carol: SimulatedDevice::new("carol-laptop"),
            addresses: AtomicU32::new(0),
        };
        let secret = world.secret.clone();
        for device in [&mut world.alice, &mut world.bob, &mut world.carol] {
            let envelope = device.enroll_envelope(&secret, Utc::now());
            enroll(&world.collector, device, &envelope).await;
        }
        for _ in 0..2 {
            let envelope = world.alice.next_envelope();
            world.accept(&envelope).await;
            world.alice_sent.push(envelope);
        }
        let envelope = world.bob.next_envelope();
        world.accept(&envelope).await;
        let carol = world.carol.device_id.clone().unwrap();
        let revoked = world.collector.cli(&["device", "revoke", &carol]);
        assert_eq!(revoked.exit_code, Some(0), "{}", revoked.dump());
        world
    }

    /// Enrolls `device` with this world's secret.
    pub async fn enroll(&self, device: &mut SimulatedDevice) {
        let envelope = device.enroll_envelope(&self.secret, Utc::now());
        enroll(&self.collector, device, &envelope).await;
    }

    /// Sends a report that must be stored (201).
    pub async fn accept(&self, envelope: &Envelope) {
        let (status, body) =
            send_json(&self.collector, "/api/v1/reports", envelope.to_json()).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{body}\n{}",
            self.collector.log()
        );
    }

    /// A client of this collector connecting from an address of
    /// 127.0.0.0/8 no other request of this world has used.
    pub fn fresh_client(&self) -> reqwest::Client {
        let n = self.addresses.fetch_add(1, Ordering::Relaxed);
        let [_, _, high, low] = n.to_be_bytes();
        // 127.1.x.y: never 127.0.0.1, which the setup and other tests use.
        let address = IpAddr::V4(Ipv4Addr::new(127, 1 + high, low, 1));
        client_trusting(&self.collector.state_dir)
            .local_address(address)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    pub fn device_id(device: &SimulatedDevice) -> &str {
        device.device_id.as_deref().unwrap()
    }

    pub async fn fingerprint(&self) -> Fingerprint {
        let store = &self.store;
        let mut query = DeviceQuery::new(Utc::now());
        query.per_page = 1000;
        let listed = store.list_devices(&query).await.unwrap();
        let mut devices = Vec::new();
        for listing in &listed.devices {
            let device = store.device(&listing.device.device_id).await.unwrap();
            devices.push(format!("{device:?}"));
        }
        Fingerprint {
            devices,
            reports: store.count_reports().await.unwrap(),
            secrets: debug_each(&store.list_enrollment_secrets().await.unwrap()),
            audit_rows: store.audit_log(1_000_000).await.unwrap().len(),
            policy_revision: store.current_policy().await.unwrap().map(|p| p.revision),
            exceptions: store
                .list_exceptions(&ExceptionFilter::default())
                .await
                .unwrap()
                .len(),
            tokens: debug_each(&store.list_api_tokens().await.unwrap()),
            users: debug_each(&store.list_admin_users().await.unwrap()),
        }
    }

    /// Runs every case, each from a fresh address, asserting its exact
    /// answer and an unchanged store; then that the collector is still
    /// healthy and never panicked. Every failing case is listed at once.
    pub async fn run(&self, cases: Vec<Case>) {
        assert!(!cases.is_empty());
        let mut failures = Vec::new();
        for case in &cases {
            let before = self.fingerprint().await;
            let (status, headers, body) = self.send(case).await;
            let mut after = self.fingerprint().await;
            let mut problems = Vec::new();
            if status != case.status {
                problems.push(format!("status {status}, expected {}", case.status));
            }
            if status.is_server_error() {
                problems.push("a 5xx answer".to_owned());
            }
            match &case.answer {
                Expected::Code(code) => {
                    let error = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|json| json["error"].as_str().map(str::to_owned));
                    if error.as_deref() != Some(code) {
                        problems.push(format!("error code {error:?}, expected {code:?}"));
                    }
                }
                Expected::Text(text) => {
                    if !body.contains(text.as_str()) {
                        problems.push(format!("the answer does not contain {text:?}"));
                    }
                }
                Expected::RedirectTo(location) => {
                    let got = headers
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    if got != *location {
                        problems.push(format!("location {got:?}, expected {location:?}"));
                    }
                }
                Expected::StatusOnly => {}
            }
            let audit_added = after.audit_rows.saturating_sub(before.audit_rows);
            if audit_added != case.audit_rows {
                problems.push(format!(
                    "{audit_added} audit rows written, expected {}",
                    case.audit_rows
                ));
            }
            after.audit_rows = before.audit_rows;
            if after != before {
                problems.push(format!(
                    "the store changed:\nbefore {before:#?}\nafter {after:#?}"
                ));
            }
            if !problems.is_empty() {
                let shown: String = body.chars().take(600).collect();
                failures.push(format!(
                    "{}: {}\n  answer: {shown}",
                    case.name,
                    problems.join("; ")
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}\n--- collector log ---\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n"),
            self.collector.log()
        );
        // Shown with --nocapture: how many cases this table holds.
        println!(
            "{} cases answered exactly, the store unchanged",
            cases.len()
        );
        self.assert_still_well().await;
    }

    async fn send(&self, case: &Case) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let url = format!("{}{}", self.collector.url, case.path);
        let mut request = self
            .fresh_client()
            .request(case.method.clone(), url)
            .body(case.body.clone());
        for (name, value) in &case.headers {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{}: {err}\n{}", case.name, self.collector.log()));
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        (status, headers, body)
    }

    /// Healthy, no panic in the log.
    pub async fn assert_still_well(&self) {
        let health = self
            .fresh_client()
            .get(format!("{}/healthz", self.collector.url))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK, "{}", self.collector.log());
        assert!(
            !self.collector.log().contains("panicked"),
            "{}",
            self.collector.log()
        );
    }
}

fn debug_each<T: std::fmt::Debug>(items: &[T]) -> Vec<String> {
    items.iter().map(|item| format!("{item:?}")).collect()
}

/// Enrolls `device` with its signed request `envelope`, asserting 201, and
/// records its device id.
pub async fn enroll(
    collector: &RunningCollector,
    device: &mut SimulatedDevice,
    envelope: &Envelope,
) {
    let (status, body) = send_json(collector, "/api/v1/enroll", envelope.to_json()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}\n{}", collector.log());
    let enrolled: EnrollResponse = serde_json::from_str(&body).unwrap();
    device.device_id = Some(enrolled.device_id.to_string());
}

/// POSTs `body` as JSON from 127.0.0.1; the status and the body's text.
pub async fn send_json(
    collector: &RunningCollector,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let response = collector
        .client()
        .post(format!("{}{path}", collector.url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {path}: {err}\n{}", collector.log()));
    let status = response.status();
    (status, response.text().await.unwrap())
}

// ---------------------------------------------------------------------------
// The scenarios, on both stores.

/// The agent endpoints: reports, then enrollments, each a table; then the
/// reports a hostile device can get stored (gaps, broken links, old times),
/// which are stored and flagged, never refused.
async fn reports_and_enrollment(backend: Backend) {
    let world = World::start(backend, "hostile_reports").await;
    world.run(reports::cases(&world)).await;
    world.run(reports::enroll_cases(&world).await).await;
    reports::stored_but_flagged(&world).await;
    reports::enrollment_guessing_is_limited_per_address(&world).await;
    world.accept(&world_next(&world)).await;
}

/// The admin API and the dashboard's changes: every write route without a
/// token, with a bad one, as a viewer, with a malformed body; every
/// dashboard POST without the CSRF token, with another session's, as a
/// viewer and with no session.
async fn admin_api_and_dashboard_changes(backend: Backend) {
    let world = World::start(backend, "hostile_admin").await;
    world.run(admin::cases(&world)).await;
    let sessions = dashboard::Sessions::log_in(&world).await;
    world
        .run(dashboard::csrf_and_role_cases(&world, &sessions).await)
        .await;
    sessions.still_logged_in(&world).await;
}

/// Hostile text in every field a device controls, on every page and in
/// the CSV exports.
async fn hostile_text_is_escaped(backend: Backend) {
    let world = World::start(backend, "hostile_xss").await;
    dashboard::hostile_text_is_escaped(&world).await;
    world.assert_still_well().await;
}

/// Login guessing locks the name, and the lock survives a restart of the
/// collector on the same store (and, on PostgreSQL, holds on a second
/// collector sharing the database).
async fn login_lockout_survives_restart(backend: Backend) {
    let world = World::start(backend, "hostile_login").await;
    dashboard::login_lockout_survives_restart(world, backend).await;
}

/// alice's next report, signed.
fn world_next(world: &World) -> Envelope {
    let mut alice = SimulatedDevice::new("alice-laptop");
    alice.key = world.alice.key.clone();
    alice.device_id = world.alice.device_id.clone();
    alice.sequence = world.alice.sequence;
    alice.prev_digest = world.alice.prev_digest.clone();
    alice.next_envelope()
}

palisade_tests::on_both_stores!(
    reports_and_enrollment,
    admin_api_and_dashboard_changes,
    hostile_text_is_escaped,
    login_lockout_survives_restart,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_idle_and_a_thousand_connections() {
    connections::slowloris_idle_and_a_thousand_connections().await;
}
