//! The dashboard under attack: every POST action without the CSRF token,
//! with another session's, as a viewer and without a session; hostile text
//! from a device on every page and in the CSV exports; and login guessing,
//! whose lock must outlive the collector process.

use chrono::Utc;
use palisade_shared::RuleId;
use palisade_shared::report::{CheckResult, CheckStatus, Mode};
use palisade_tests::browser::{DashboardSession, create_user_for};
use palisade_tests::collector::{RunningCollector, client_trusting, csrf_field};
use palisade_tests::databases::Backend;
use palisade_tests::device::SimulatedDevice;
use reqwest::StatusCode;
use serde_json::json;

use super::{Case, World};

const ADMIN_PASSWORD: &str = "admin password 123";
const VIEWER_PASSWORD: &str = "viewer password 456";
const CSRF_REFUSED: &str = "security token is missing or out of date";
const NOT_ADMIN: &str = "this needs an admin; a viewer may only look";

/// Two admin sessions and a viewer's, each with its CSRF token.
pub struct Sessions {
    admin: (DashboardSession, String),
    other_admin: (DashboardSession, String),
    viewer: (DashboardSession, String),
}

impl Sessions {
    pub async fn log_in(world: &World) -> Self {
        create_user_for(&world.collector, "admin", "admin", ADMIN_PASSWORD);
        create_user_for(&world.collector, "viewer", "viewer", VIEWER_PASSWORD);
        let pem = std::fs::read(world.collector.state_dir.join("tls/cert.pem")).unwrap();
        let session = |name: &'static str, password: &'static str| {
            let pem = pem.clone();
            let url = world.collector.url.clone();
            async move {
                let session = DashboardSession::login(&url, &pem, name, password)
                    .await
                    .unwrap();
                let page = session.get("/").await.unwrap().text().await.unwrap();
                (session, csrf_field(&page))
            }
        };
        Self {
            admin: session("admin", ADMIN_PASSWORD).await,
            other_admin: session("admin", ADMIN_PASSWORD).await,
            viewer: session("viewer", VIEWER_PASSWORD).await,
        }
    }

    /// The admin's session survived every refused POST, logout included.
    pub async fn still_logged_in(&self, world: &World) {
        let page = self.admin.0.get("/").await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{}", world.collector.log());
    }
}

/// Every dashboard POST, with a form that an admin's valid token would make
/// succeed, refused every other way.
pub async fn csrf_and_role_cases(world: &World, sessions: &Sessions) -> Vec<Case> {
    let bob = World::device_id(&world.bob).to_owned();
    let secret_id = world.secret.split('_').nth(1).unwrap().to_owned();
    let actions: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/devices/{bob}/revoke"), vec![]),
        ("/enrollment".into(), vec![("label", "x")]),
        (format!("/enrollment/{secret_id}/revoke"), vec![]),
        (
            "/add-devices".into(),
            vec![
                ("label", "x"),
                ("collector_url", "https://collector.example.org"),
            ],
        ),
        (
            "/policy".into(),
            vec![("text", "[policy]\nid = \"hijacked\"\nversion = 9\n")],
        ),
        (
            "/exceptions".into(),
            vec![
                ("device_id", bob.as_str()),
                ("rule_id", "disk_encryption"),
                ("until", "2999-01-01"),
                ("reason", "x"),
                ("approver", "y"),
            ],
        ),
        ("/logout".into(), vec![]),
    ];
    let (admin, admin_csrf) = (&sessions.admin.0.cookie, sessions.admin.1.as_str());
    let other_csrf = sessions.other_admin.1.as_str();
    let (viewer, viewer_csrf) = (&sessions.viewer.0.cookie, sessions.viewer.1.as_str());
    assert_ne!(admin_csrf, other_csrf, "two sessions share a CSRF token");
    let forbidden = StatusCode::FORBIDDEN;
    let mut cases = Vec::new();
    for (path, form) in &actions {
        let post = |name: &str, csrf: Option<&str>| {
            let mut fields = form.clone();
            fields.extend(csrf.map(|token| ("csrf", token)));
            Case::post_form(format!("POST {path}: {name}"), path.clone(), &fields)
        };
        cases.push(
            post("admin without the token", None)
                .cookie(admin)
                .answered(forbidden, CSRF_REFUSED),
        );
        cases.push(
            post("admin with an empty token", Some(""))
                .cookie(admin)
                .answered(forbidden, CSRF_REFUSED),
        );
        cases.push(
            post("admin with another session's token", Some(other_csrf))
                .cookie(admin)
                .answered(forbidden, CSRF_REFUSED),
        );
        cases.push(
            post("viewer with the admin's token", Some(admin_csrf))
                .cookie(viewer)
                .answered(forbidden, CSRF_REFUSED),
        );
        if path != "/logout" {
            cases.push(
                post("viewer with their own token", Some(viewer_csrf))
                    .cookie(viewer)
                    .answered(forbidden, NOT_ADMIN),
            );
        }
        cases.push(post("no session, the admin's token", Some(admin_csrf)).redirected("/login"));
        cases.push(
            post("a made-up session cookie", Some(admin_csrf))
                .cookie("palisade_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
                .redirected("/login"),
        );
    }
    cases
}

/// One hostile string per field a device controls, each naming its field
/// so a leak says where it came from.
struct Payloads {
    hostname: &'static str,
    os_name: &'static str,
    os_version: &'static str,
    kernel: &'static str,
    arch: &'static str,
    agent_version: &'static str,
    user: &'static str,
    summary: &'static str,
    fix: &'static str,
    evidence: &'static str,
    evidence_key: &'static str,
    rule: &'static str,
}

const PAYLOADS: Payloads = Payloads {
    hostname: "<script>alert('hostname')</script>",
    os_name: "\"><img src=x onerror=alert('os_name')>",
    os_version: "<svg/onload=alert('os_version')>",
    kernel: "</dd><script>alert('kernel')</script>",
    arch: "<iframe src=\"javascript:alert('arch')\">",
    agent_version: "javascript:alert('agent_version')//<b>",
    user: "<img src=x onerror=alert('user')>",
    summary: "<script>alert('summary')</script>",
    fix: "<a href=\"javascript:alert('fix')\">fix</a>",
    evidence: "</pre><script>alert('evidence')</script>",
    evidence_key: "<b onmouseover=alert('key')>",
    rule: "\"><script>alert('rule')</script>",
};

impl Payloads {
    fn all(&self) -> [(&'static str, &'static str); 12] {
        [
            ("hostname", self.hostname),
            ("os_name", self.os_name),
            ("os_version", self.os_version),
            ("kernel_version", self.kernel),
            ("arch", self.arch),
            ("agent_version", self.agent_version),
            ("console_user", self.user),
            ("summary", self.summary),
            ("fix", self.fix),
            ("evidence", self.evidence),
            ("evidence key", self.evidence_key),
            ("rule id", self.rule),
        ]
    }
}

/// Text as maud writes it into HTML.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// No payload appears raw, and no attribute holds a `javascript:` URL.
fn assert_inert(page: &str, path: &str) {
    for (field, payload) in PAYLOADS.all() {
        if payload.contains(['<', '"']) {
            assert!(
                !page.contains(payload),
                "{path}: the {field} payload is raw:\n{page}"
            );
        }
    }
    let lower = page.to_ascii_lowercase();
    for attribute in [
        "href=\"javascript:",
        "src=\"javascript:",
        "action=\"javascript:",
    ] {
        assert!(!lower.contains(attribute), "{path}: {attribute} in\n{page}");
    }
}

pub async fn hostile_text_is_escaped(world: &World) {
    let p = &PAYLOADS;
    let mut mallory = SimulatedDevice::new(p.hostname).with_console_user(p.user);
    mallory.platform.os_name = p.os_name.into();
    mallory.platform.os_version = p.os_version.into();
    mallory.platform.kernel_version = p.kernel.into();
    mallory.platform.arch = p.arch.into();
    let mut envelope = mallory.enroll_envelope(&world.secret, Utc::now());
    // The agent version is in the signed payload: sign it again with it.
    let mut request: serde_json::Value =
        serde_json::from_slice(&envelope.payload_unverified().unwrap()).unwrap();
    request["agent"]["version"] = json!(p.agent_version);
    envelope = palisade_shared::envelope::Envelope::sign(
        palisade_shared::envelope::ENROLL_PAYLOAD_TYPE,
        &serde_json::to_vec(&request).unwrap(),
        &mallory.key,
    );
    super::enroll(&world.collector, &mut mallory, &envelope).await;
    let id = World::device_id(&mallory).to_owned();
    let check = |rule: &str| CheckResult {
        id: RuleId::new(rule),
        status: CheckStatus::Fail,
        mode: Mode::Audit,
        summary: p.summary.into(),
        evidence: json!({ "path": p.evidence, (p.evidence_key): 1 })
            .as_object()
            .unwrap()
            .clone(),
        fix: p.fix.into(),
        probe_duration_us: 1,
        enforcement: None,
        first_failed_at: None,
        deadline: None,
    };
    let mut report = mallory.next_report_with(
        Utc::now(),
        vec![check(RuleId::DISK_ENCRYPTION), check(p.rule)],
    );
    report.agent.version = p.agent_version.into();
    world.accept(&mallory.sign_and_advance(&report)).await;

    let sessions_world = Sessions::log_in(world).await;
    let admin = &sessions_world.admin.0;
    let page = |path: String| async move {
        let answer = admin.get(&path).await.unwrap();
        let status = answer.status();
        (status, answer.text().await.unwrap())
    };

    // The device page shows every field, escaped.
    let device_path = format!("/devices/{id}");
    let (status, device_page) = page(device_path.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_inert(&device_page, &device_path);
    for (field, payload) in PAYLOADS.all() {
        assert!(
            device_page.contains(&escaped(payload)),
            "{device_path}: no escaped {field}:\n{device_page}"
        );
    }
    // The list, the overview and the audit log name the device, escaped.
    for path in ["/devices", "/", "/audit"] {
        let (status, html) = page(path.to_owned()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_inert(&html, path);
        assert!(
            html.contains(&escaped(p.hostname)),
            "{path}: no escaped hostname:\n{html}"
        );
    }
    let (_, list) = page("/devices".to_owned()).await;
    assert!(
        list.contains(&escaped(p.user)),
        "/devices: no escaped user:\n{list}"
    );
    // What the address bar carries back into a page is escaped too.
    let reflected = [
        format!("/devices?q={}", urlencode(p.hostname)),
        format!("/exceptions?device={}", urlencode(p.os_name)),
        format!("/devices/{}", urlencode(p.hostname)),
    ];
    for path in reflected {
        let (status, html) = page(path.clone()).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "{path}: {status}"
        );
        assert_inert(&html, &path);
    }

    // The CSV exports hold the exact text (CSV is not HTML), quoted.
    let (status, csv) = page("/devices.csv".to_owned()).await;
    assert_eq!(status, StatusCode::OK);
    assert_csv_row(&csv, &id);
    let api_csv = world
        .fresh_client()
        .get(format!("{}/api/v1/devices.csv", world.collector.url))
        .bearer_auth(&world.viewer_token)
        .send()
        .await
        .unwrap();
    assert_eq!(api_csv.status(), StatusCode::OK);
    assert!(
        api_csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_csv_row(&api_csv.text().await.unwrap(), &id);
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The CSV row of `device_id` carries the hostile hostname, user and OS
/// exactly.
fn assert_csv_row(csv: &str, device_id: &str) {
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let row = reader
        .records()
        .map(Result::unwrap)
        .find(|row| &row[0] == device_id)
        .unwrap_or_else(|| panic!("no row for {device_id} in\n{csv}"));
    assert_eq!(&row[column("hostname")], PAYLOADS.hostname, "{csv}");
    assert_eq!(&row[column("console_user")], PAYLOADS.user, "{csv}");
    assert_eq!(&row[column("os_name")], PAYLOADS.os_name, "{csv}");
    assert_eq!(
        &row[column("agent_version")],
        PAYLOADS.agent_version,
        "{csv}"
    );
}

/// A login through the form with a fresh cookie jar; the status and page.
async fn try_login(
    collector: &RunningCollector,
    username: &str,
    password: &str,
) -> (StatusCode, String) {
    let client = client_trusting(&collector.state_dir)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = client
        .get(format!("{}/login", collector.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let answer = client
        .post(format!("{}/login", collector.url))
        .form(&[
            ("username", username),
            ("password", password),
            ("csrf", &csrf_field(&form)),
        ])
        .send()
        .await
        .unwrap();
    let status = answer.status();
    (status, answer.text().await.unwrap())
}

const WRONG: &str = "Wrong user name or password.";
const LOCKED: &str = "This account is locked after too many failed logins; try again later.";

/// Five wrong passwords lock the name: the right one is then refused with
/// 429, after a restart on the same store too, and (PostgreSQL) on a
/// second collector sharing the database.
pub async fn login_lockout_survives_restart(mut world: World, backend: Backend) {
    create_user_for(&world.collector, "ward-admin", "admin", ADMIN_PASSWORD);
    for attempt in 1..=5 {
        let (status, page) = try_login(&world.collector, "ward-admin", "guess 0000000").await;
        assert_eq!(
            (status, page.contains(WRONG)),
            (StatusCode::UNAUTHORIZED, true),
            "attempt {attempt}: {page}"
        );
    }
    let (status, page) = try_login(&world.collector, "ward-admin", ADMIN_PASSWORD).await;
    assert_eq!(
        (status, page.contains(LOCKED)),
        (StatusCode::TOO_MANY_REQUESTS, true),
        "{page}"
    );
    let user = world.store.admin_user("ward-admin").await.unwrap().unwrap();
    assert!(
        user.info
            .locked_until
            .is_some_and(|until| until > Utc::now()),
        "{:?}",
        user.info
    );

    let address = world.collector.address().to_owned();
    assert_eq!(world.collector.stop(), Some(0), "{}", world.collector.log());
    let (state_dir, database_url) = (
        world.collector.state_dir.clone(),
        world.collector.database_url.clone(),
    );
    world.collector = RunningCollector::start_on(&state_dir, Some(&database_url), &address);
    let (status, page) = try_login(&world.collector, "ward-admin", ADMIN_PASSWORD).await;
    assert_eq!(
        (status, page.contains(LOCKED)),
        (StatusCode::TOO_MANY_REQUESTS, true),
        "after a restart: {page}"
    );

    if backend == Backend::Postgres {
        let other_dir = tempfile::tempdir().unwrap();
        let other = RunningCollector::start(other_dir.path(), Some(&world.collector.database_url));
        let (status, page) = try_login(&other, "ward-admin", ADMIN_PASSWORD).await;
        assert_eq!(
            (status, page.contains(LOCKED)),
            (StatusCode::TOO_MANY_REQUESTS, true),
            "on another collector: {page}"
        );
    }
    // Still refused; no session was ever made.
    world.assert_still_well().await;
}
