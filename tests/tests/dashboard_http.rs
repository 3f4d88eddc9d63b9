//! The dashboard's server side over real HTTPS, on SQLite and PostgreSQL:
//! login, wrong passwords and lockout, redirects, cookie flags, CSRF and
//! roles on every change, revocation, escaping of hostile hostnames and
//! users, search by user, the CSV link, and policy upload errors.
//!
//! The browser tests drive the same pages through Chromium; these check
//! the HTTP contract underneath with a cookie-keeping client that does not
//! follow redirects, so every 303 is seen.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed assertion

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use palisade_shared::protocol::EnrollResponse;
use palisade_tests::collector::{RunningCollector, client_trusting, csrf_field};
use palisade_tests::databases::{Backend, database_for};
use palisade_tests::device::SimulatedDevice;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

const ADMIN_PASSWORD: &str = "admin password 123";
const VIEWER_PASSWORD: &str = "viewer password 456";

struct Fixture {
    _dir: tempfile::TempDir,
    collector: RunningCollector,
    secret: String,
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }
}

fn start(backend: Backend, name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let database = database_for(backend, name);
    let collector = RunningCollector::start(dir.path(), database.as_deref());
    create_user(&collector, "admin", "admin", ADMIN_PASSWORD);
    create_user(&collector, "viewer", "viewer", VIEWER_PASSWORD);
    let secret = collector.create_secret(&[]);
    Fixture {
        _dir: dir,
        collector,
        secret,
    }
}

/// `palisade-collector user create`, the password on standard input.
fn create_user(collector: &RunningCollector, username: &str, role: &str, password: &str) {
    let (code, stdout, stderr) = user_create(collector, username, role, &format!("{password}\n"));
    assert_eq!(code, Some(0), "user create: {stdout}\n{stderr}");
}

fn user_create(
    collector: &RunningCollector,
    username: &str,
    role: &str,
    stdin: &str,
) -> (Option<i32>, String, String) {
    let state_dir = collector.state_dir.display().to_string();
    #[allow(clippy::disallowed_methods)] // the test's own child, bounded by its stdin closing
    let mut child = Command::new(palisade_tests::binary("palisade-collector"))
        .args(["user", "create", "--username", username, "--role", role])
        .args(["--state-dir", &state_dir])
        .args(["--database-url", &collector.database_url])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Fixture {
    /// A browser-like client: keeps cookies, trusts only this collector,
    /// does not follow redirects.
    fn browser(&self) -> reqwest::Client {
        client_trusting(&self.collector.state_dir)
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    async fn get(&self, client: &reqwest::Client, path: &str) -> Answer {
        let response = client
            .get(format!("{}{path}", self.collector.url))
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {path}: {err}\n{}", self.collector.log()));
        answer(response).await
    }

    async fn post(&self, client: &reqwest::Client, path: &str, form: &[(&str, &str)]) -> Answer {
        let response = client
            .post(format!("{}{path}", self.collector.url))
            .form(form)
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {path}: {err}\n{}", self.collector.log()));
        answer(response).await
    }

    /// GET asserting 200; the HTML.
    async fn page(&self, client: &reqwest::Client, path: &str) -> String {
        let answer = self.get(client, path).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "GET {path}: {}\n{}",
            answer.text,
            self.collector.log()
        );
        answer.text
    }

    /// Fetches the login form and posts it; the answer to the POST.
    async fn login(&self, client: &reqwest::Client, username: &str, password: &str) -> Answer {
        let form = self.page(client, "/login").await;
        let csrf = csrf_field(&form);
        self.post(
            client,
            "/login",
            &[
                ("username", username),
                ("password", password),
                ("csrf", &csrf),
            ],
        )
        .await
    }

    /// A client logged in as `username`.
    async fn logged_in(&self, username: &str, password: &str) -> reqwest::Client {
        let client = self.browser();
        let answer = self.login(&client, username, password).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
        assert_eq!(answer.location(), "/");
        client
    }

    /// The status an enrollment with `secret` gets.
    async fn enroll_status(&self, secret: &str) -> StatusCode {
        let device = SimulatedDevice::new("added");
        self.collector
            .client()
            .post(format!("{}/api/v1/enroll", self.collector.url))
            .header("content-type", "application/json")
            .body(device.enroll_envelope(secret, Utc::now()).to_json())
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Enrolls a device and sends one report (disk_encryption failing,
    /// screen_lock passing) naming `user` as its console user.
    async fn device(&self, hostname: &str, user: Option<&str>) -> String {
        let client = self.collector.client();
        let mut device = SimulatedDevice::new(hostname);
        let response = client
            .post(format!("{}/api/v1/enroll", self.collector.url))
            .header("content-type", "application/json")
            .body(device.enroll_envelope(&self.secret, Utc::now()).to_json())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let enrolled: EnrollResponse = response.json().await.unwrap();
        device.device_id = Some(enrolled.device_id.to_string());
        let mut report = device.next_report(Utc::now());
        report.host.console_user = user.map(str::to_owned);
        let envelope = device.sign_and_advance(&report);
        let response = client
            .post(format!("{}/api/v1/reports", self.collector.url))
            .header("content-type", "application/json")
            .body(envelope.to_json())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        enrolled.device_id.to_string()
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

/// The text content of the element with `id` (no nested elements).
fn text_of<'a>(html: &'a str, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let start = html[at..].find('>').unwrap() + at + 1;
    let end = html[start..].find('<').unwrap() + start;
    &html[start..end]
}

/// The markup of the `<p>` with `id`, up to its end.
fn paragraph_of<'a>(html: &'a str, id: &str) -> &'a str {
    let marker = format!("<p id=\"{id}\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no p#{id} in {html}"));
    let end = html[start..].find("</p>").unwrap() + start;
    &html[start..end]
}

fn attribute_of<'a>(html: &'a str, id: &str, attribute: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let tag_end = html[at..].find('>').unwrap() + at;
    let tag = &html[..tag_end];
    let tag_start = tag.rfind('<').unwrap();
    let tag = &html[tag_start..tag_end];
    let marker = format!("{attribute}=\"");
    let start = tag
        .find(&marker)
        .unwrap_or_else(|| panic!("no {attribute} in {tag}"))
        + marker.len();
    let end = tag[start..].find('"').unwrap() + start;
    &tag[start..end]
}

fn assert_cookie_flags(cookie: &str, secure: bool) {
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Strict"), "{cookie}");
    assert_eq!(cookie.contains("; Secure"), secure, "{cookie}");
}

// ---------------------------------------------------------------------------
// Scenarios.

async fn login_lockout_and_logout(backend: Backend) {
    let f = start(backend, "web_login");
    let anonymous = f.browser();

    // Every page sends an anonymous visitor to the login page.
    for path in ["/", "/devices", "/devices/dev_x", "/policy", "/audit"] {
        let answer = f.get(&anonymous, path).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(answer.location(), "/login", "{path}");
    }

    // The login form: the contract's ids, and a CSRF cookie with the flags.
    let login = f.get(&anonymous, "/login").await;
    assert_eq!(login.status, StatusCode::OK);
    for fragment in [
        "<form id=\"login\" method=\"post\" action=\"/login\">",
        "id=\"username\" name=\"username\"",
        "id=\"password\" name=\"password\" type=\"password\"",
        "<button id=\"login-submit\" type=\"submit\">",
    ] {
        assert!(
            login.text.contains(fragment),
            "{fragment} in {}",
            login.text
        );
    }
    assert_cookie_flags(&login.set_cookie("palisade_login_csrf").unwrap(), true);
    let timing = login.headers["server-timing"].to_str().unwrap();
    let duration: f64 = timing.strip_prefix("app;dur=").unwrap().parse().unwrap();
    assert!(duration >= 0.0, "{timing}");
    assert_eq!(
        login.headers["content-security-policy"],
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'"
    );
    assert_eq!(login.headers["x-content-type-options"], "nosniff");
    assert_eq!(login.headers["referrer-policy"], "no-referrer");
    assert_eq!(login.headers["cache-control"], "no-store");

    // A login POST without the form's token is refused, even with the right
    // password.
    let forged = f
        .post(
            &f.browser(),
            "/login",
            &[("username", "admin"), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.set_cookie("palisade_session").is_none());

    // A wrong password: an error, no session.
    let client = f.browser();
    let wrong = f.login(&client, "admin", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text.contains("class=\"error\""), "{}", wrong.text);
    assert!(wrong.set_cookie("palisade_session").is_none());
    assert_eq!(f.get(&client, "/").await.status, StatusCode::SEE_OTHER);

    // The right one: a session cookie with every flag, then the pages.
    let ok = f.login(&client, "admin", ADMIN_PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
    assert_eq!(ok.location(), "/");
    let cookie = ok.set_cookie("palisade_session").unwrap();
    assert_cookie_flags(&cookie, true);
    assert!(cookie.contains("; Path=/;"), "{cookie}");
    let overview = f.page(&client, "/").await;
    assert_eq!(text_of(&overview, "whoami"), "admin");
    for id in [
        "nav-overview",
        "nav-devices",
        "nav-enrollment",
        "nav-policy",
        "nav-exceptions",
        "nav-audit",
    ] {
        assert!(overview.contains(&format!("<a id=\"{id}\"")), "{id}");
    }
    assert!(overview.contains("<form id=\"logout\" method=\"post\" action=\"/logout\">"));

    // Five wrong passwords lock the name: the sixth try fails even with the
    // right password. A name that does not exist gets the same answers.
    for name in ["viewer", "nobody-by-this-name"] {
        let client = f.browser();
        for attempt in 1..=5 {
            let answer = f.login(&client, name, "wrong password 000").await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name} #{attempt}");
        }
        let locked = f.login(&client, name, VIEWER_PASSWORD).await;
        assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{name}");
        assert!(locked.text.contains("locked"), "{}", locked.text);
        assert!(locked.set_cookie("palisade_session").is_none());
    }

    // Logins, failures and the lockout are in the audit log; no password is.
    let audit = f.page(&client, "/audit").await;
    assert!(audit.contains("user.login<"), "{audit}");
    assert!(audit.contains("user.login_failed"), "{audit}");
    assert!(audit.contains("locked"), "{audit}");
    for secret in [ADMIN_PASSWORD, VIEWER_PASSWORD, "wrong password 000"] {
        assert!(!audit.contains(secret), "{secret} in the audit log");
        assert!(!f.collector.log().contains(secret), "{secret} in the log");
    }

    // Logout needs the token, ends the session and is audited.
    let refused = f.post(&client, "/logout", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(f.get(&client, "/").await.status, StatusCode::OK);
    let csrf = csrf_field(&overview);
    let out = f.post(&client, "/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    assert_eq!(f.get(&client, "/").await.status, StatusCode::SEE_OTHER);
    let admin = f.logged_in("admin", ADMIN_PASSWORD).await;
    assert!(f.page(&admin, "/audit").await.contains("user.logout"));
}

async fn roles_csrf_and_revocation(backend: Backend) {
    let f = start(backend, "web_revoke");
    let device_id = f.device("ward7-laptop-023", Some("nurse.jones")).await;
    let path = format!("/devices/{device_id}");
    let revoke = format!("{path}/revoke");
    let admin = f.logged_in("admin", ADMIN_PASSWORD).await;
    let viewer = f.logged_in("viewer", VIEWER_PASSWORD).await;

    let page = f.page(&admin, &path).await;
    assert_eq!(text_of(&page, "hostname"), "ward7-laptop-023");
    assert!(text_of(&page, "key-id").len() == 64, "{page}");
    assert!(!text_of(&page, "enrolled-at").is_empty());
    assert!(page.contains("class=\"signature-verified\""));
    assert!(
        page.contains("<tr class=\"verdict\" data-rule=\"disk_encryption\" data-status=\"fail\">"),
        "{page}"
    );
    assert!(page.contains("<table id=\"history\">"));
    assert!(page.contains("<tr class=\"report\">"));
    assert!(page.contains(&format!(
        "<form id=\"revoke\" method=\"post\" action=\"{revoke}\">"
    )));
    assert!(page.contains("id=\"revoke-submit\""));
    assert!(!page.contains("id=\"revoked\""));
    let admin_csrf = csrf_field(&page);

    // No token, a wrong token: 403, and the device stays active.
    for form in [vec![], vec![("csrf", "not-the-token")]] {
        let answer = f.post(&admin, &revoke, &form).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{form:?}");
    }
    // A viewer, even with their own valid token: 403, still active.
    let viewer_page = f.page(&viewer, &path).await;
    assert!(
        !viewer_page.contains("id=\"revoke\""),
        "a viewer sees no revoke form"
    );
    let viewer_csrf = csrf_field(&viewer_page);
    let answer = f.post(&viewer, &revoke, &[("csrf", &viewer_csrf)]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    // Another session's token is not this session's.
    let answer = f.post(&viewer, &revoke, &[("csrf", &admin_csrf)]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let still = f.page(&admin, &path).await;
    assert!(
        !still.contains("id=\"revoked\""),
        "revoked without a valid admin POST"
    );

    // The admin's POST with the token revokes, and the page says so.
    let answer = f.post(&admin, &revoke, &[("csrf", &admin_csrf)]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    assert_eq!(answer.location(), path);
    let revoked = f.page(&admin, &path).await;
    assert!(revoked.contains("id=\"revoked\""), "{revoked}");
    assert!(!revoked.contains("id=\"revoke\""));
    let audit = f.page(&admin, "/audit").await;
    assert!(audit.contains("device.revoke"), "{audit}");
    assert!(audit.contains("user:admin"), "{audit}");

    // Other changes are refused to viewers and token-less posts alike.
    for (path, form) in [
        ("/enrollment", vec![("label", "x")]),
        (
            "/exceptions",
            vec![
                ("device_id", device_id.as_str()),
                ("rule_id", "disk_encryption"),
            ],
        ),
        ("/policy", vec![("text", "x")]),
    ] {
        let answer = f.post(&admin, path, &form).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{path} without a token"
        );
        let mut with_token = form.clone();
        with_token.push(("csrf", &viewer_csrf));
        let answer = f.post(&viewer, path, &with_token).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path} by a viewer");
    }
    let enrollment = f.page(&admin, "/enrollment").await;
    assert_eq!(
        enrollment.matches("<tr class=\"secret\">").count(),
        1,
        "{enrollment}"
    );

    // An unknown device is a 404 page.
    assert_eq!(
        f.get(&admin, "/devices/dev_nope").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn add_devices_and_secret_revocation(backend: Backend) {
    let f = start(backend, "web_add_devices");
    let admin = f.logged_in("admin", ADMIN_PASSWORD).await;
    let viewer = f.logged_in("viewer", VIEWER_PASSWORD).await;
    let secrets = |html: &str| html.matches("<tr class=\"secret\">").count();

    // Viewers may not see the page, nor post to it; the enrollment page
    // links it for admins only.
    assert_eq!(
        f.get(&viewer, "/add-devices").await.status,
        StatusCode::FORBIDDEN
    );
    let viewer_enrollment = f.page(&viewer, "/enrollment").await;
    assert!(!viewer_enrollment.contains("add-devices-link"));
    assert!(!viewer_enrollment.contains("id=\"revoke-"));
    let enrollment = f.page(&admin, "/enrollment").await;
    assert!(enrollment.contains("href=\"/add-devices\""), "{enrollment}");
    let page = f.page(&admin, "/add-devices").await;
    assert!(
        page.contains("<form id=\"add-devices\" method=\"post\" action=\"/add-devices\">"),
        "{page}"
    );
    assert_eq!(attribute_of(&page, "add-expires", "value"), "7");
    let pin = text_of(&page, "ca-pin").to_owned();
    assert!(pin.starts_with("sha256/"), "{page}");
    let csrf = csrf_field(&page);
    let viewer_csrf = csrf_field(&viewer_enrollment);
    let url = "https://palisade.example.org:8443";
    let form = [
        ("label", "<b>ward</b> 'nine'"),
        ("uses", "3"),
        ("expires_days", "2"),
        ("collector_url", url),
    ];
    assert_eq!(
        f.post(&admin, "/add-devices", &form).await.status,
        StatusCode::FORBIDDEN,
        "no token"
    );
    let mut with_viewer_token = form.to_vec();
    with_viewer_token.push(("csrf", &viewer_csrf));
    assert_eq!(
        f.post(&viewer, "/add-devices", &with_viewer_token)
            .await
            .status,
        StatusCode::FORBIDDEN,
        "a viewer"
    );
    // A bad URL is refused before any secret is made.
    for bad in ["http://palisade.example.org", "", "https://a.example/<x>"] {
        let answer = f
            .post(
                &admin,
                "/add-devices",
                &[("csrf", &csrf), ("collector_url", bad)],
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(answer.text.contains("Collector URL"), "{}", answer.text);
    }
    assert_eq!(secrets(&f.page(&admin, "/enrollment").await), 1);

    let mut with_token = form.to_vec();
    with_token.push(("csrf", &csrf));
    let answer = f.post(&admin, "/add-devices", &with_token).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let secret = text_of(&answer.text, "secret-value").to_owned();
    assert!(secret.starts_with("pls_"), "{}", answer.text);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        text_of(&answer.text, "install-windows"),
        format!(
            "msiexec /i palisade-agent-{version}-x64.msi /qn COLLECTOR_URL=&quot;{url}&quot; \
             ENROLL_SECRET=&quot;{secret}&quot; CA_PIN=&quot;{pin}&quot;"
        )
    );
    for os in ["debian", "rhel", "macos"] {
        let text = text_of(&answer.text, &format!("install-{os}"));
        assert!(
            text.contains(&secret) && text.contains(&pin),
            "{os}: {text}"
        );
    }
    assert!(!answer.text.contains("<b>ward"), "unescaped label");
    assert!(!f.collector.log().contains(&secret), "a secret in the log");
    // The secret enrolls, and appears on the enrollment page, escaped.
    let enrollment = f.page(&admin, "/enrollment").await;
    assert_eq!(secrets(&enrollment), 2);
    assert!(
        enrollment.contains("&lt;b&gt;ward&lt;/b&gt;"),
        "{enrollment}"
    );
    assert!(!enrollment.contains(&secret));
    let id = &secret[4..20];
    let audit = f.page(&admin, "/audit").await;
    assert!(audit.contains("secret.create"), "{audit}");
    assert_eq!(f.enroll_status(&secret).await, StatusCode::CREATED);

    // Revoking it from the enrollment page: an admin's POST with the token.
    let revoke = format!("/enrollment/{id}/revoke");
    assert!(
        enrollment.contains(&format!(
            "<form id=\"revoke-{id}\" method=\"post\" action=\"{revoke}\">"
        )),
        "{enrollment}"
    );
    let csrf = csrf_field(&enrollment);
    assert_eq!(
        f.post(&admin, &revoke, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.post(&viewer, &revoke, &[("csrf", &viewer_csrf)])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(f.enroll_status(&secret).await, StatusCode::CREATED);
    let answer = f.post(&admin, &revoke, &[("csrf", &csrf)]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    assert_eq!(answer.location(), "/enrollment");
    let enrollment = f.page(&admin, "/enrollment").await;
    assert!(
        enrollment.contains("<span class=\"status status-revoked\">revoked</span>"),
        "{enrollment}"
    );
    assert!(!enrollment.contains(&format!("id=\"revoke-{id}\"")));
    assert_eq!(f.enroll_status(&secret).await, StatusCode::UNAUTHORIZED);
    // Again: nothing changes; an unknown id is a 404 page.
    let answer = f.post(&admin, &revoke, &[("csrf", &csrf)]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let answer = f
        .post(
            &admin,
            "/enrollment/0123456789abcdef/revoke",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let audit = f.page(&admin, "/audit").await;
    assert_eq!(audit.matches("secret.revoke").count(), 1, "{audit}");
    assert!(audit.contains("device.enroll_refused"), "{audit}");
}

async fn hostile_names_search_and_csv(backend: Backend) {
    let f = start(backend, "web_search");
    let xss = f.device("<script>alert(1)</script>", Some("alice")).await;
    let injected = f.device("reception-pc", Some("' OR 1=1 --")).await;
    let _plain = f.device("plain-laptop", None).await;
    let admin = f.logged_in("admin", ADMIN_PASSWORD).await;

    // Hostile text is shown as text, everywhere.
    for path in [
        "/devices".to_owned(),
        format!("/devices/{xss}"),
        "/".to_owned(),
    ] {
        let page = f.page(&admin, &path).await;
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: {page}"
        );
        assert!(!page.contains("<script>alert"), "{path}: {page}");
    }

    // The list: every device, with the contract's markup.
    let all = f.page(&admin, "/devices").await;
    assert_eq!(text_of(&all, "result-count"), "3");
    assert_eq!(all.matches("<tr class=\"device\"").count(), 3);
    assert!(
        all.contains("<td class=\"user\">&#39;") || all.contains("<td class=\"user\">'"),
        "{all}"
    );

    // Searching for the hostile user finds exactly that device.
    let query = "/devices?q=%27+OR+1%3D1+--";
    let found = f.page(&admin, query).await;
    assert_eq!(text_of(&found, "result-count"), "1", "{found}");
    assert_eq!(found.matches("<tr class=\"device\"").count(), 1);
    assert!(
        found.contains(&format!(
            "<a class=\"device-link\" href=\"/devices/{injected}\">reception-pc</a>"
        )),
        "{found}"
    );

    // The CSV link carries the same filter.
    let href = attribute_of(&found, "csv", "href").replace("&amp;", "&");
    assert!(href.starts_with("/devices.csv?"), "{href}");
    let csv = f.get(&admin, &href).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let rows: Vec<&str> = csv.text.lines().collect();
    assert_eq!(rows.len(), 2, "{}", csv.text);
    assert!(rows[1].starts_with(&injected), "{}", csv.text);
    // Without a session there is no CSV.
    assert_eq!(
        f.get(&f.browser(), &href).await.status,
        StatusCode::SEE_OTHER
    );

    // A rule filter: every device fails disk encryption and passes screen
    // lock; a bad value is a 400 naming the parameter.
    let failing = f
        .page(&admin, "/devices?rule=disk_encryption&status=fail")
        .await;
    assert_eq!(text_of(&failing, "result-count"), "3");
    let passing = f
        .page(&admin, "/devices?rule=disk_encryption&status=pass")
        .await;
    assert_eq!(text_of(&passing, "result-count"), "0");
    let bad = f.get(&admin, "/devices?status=failing").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("status"), "{}", bad.text);

    // The overview counts the same fleet.
    let overview = f.page(&admin, "/").await;
    assert_eq!(text_of(&overview, "count-total"), "3");
    assert_eq!(text_of(&overview, "count-failing"), "3");
    assert_eq!(text_of(&overview, "count-compliant"), "0");
    assert!(overview.contains("<svg id=\"chart-failing-by-rule\""));
    assert!(overview.contains("<svg id=\"chart-trend\""));
    assert!(overview.contains("<table id=\"longest-failing\">"));
    assert_eq!(overview.matches("class=\"device-link\"").count(), 3);
    // Today's point: three devices reported, none compliant.
    assert!(overview.contains("<circle class=\"point\""), "{overview}");

    // The JSON API has the user too, and searches it.
    let token = f.collector.cli(&["token", "create", "--role", "viewer"]);
    let token = token.stdout.trim();
    let listed: serde_json::Value = f
        .collector
        .client()
        .get(format!("{}/api/v1/devices", f.collector.url))
        .query(&[("search", "' OR 1=1 --")])
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["devices"][0]["console_user"], "' OR 1=1 --");
}

async fn policy_upload_shows_every_error(backend: Backend) {
    let f = start(backend, "web_policy");
    let admin = f.logged_in("admin", ADMIN_PASSWORD).await;
    let before = f.page(&admin, "/policy").await;
    let current = paragraph_of(&before, "policy-current").to_owned();
    assert!(current.contains("(revision 1,"), "{current}");
    let csrf = csrf_field(&before);

    let broken = "[policy]\nid = \"ward-7\"\nversion = 2\n\n[rules.screen_lock]\nmode = \"sometimes\"\n\
                  max_idle_seconds = 0\n\n[rules.usb_storage]\nmode = \"audit\"\nstorage = \"maybe\"\n";
    let refused = f
        .post(&admin, "/policy", &[("csrf", &csrf), ("text", broken)])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.text.contains("3 problems; nothing was saved"),
        "{}",
        refused.text
    );
    for line in [6, 7, 11] {
        assert!(
            refused.text.contains(&format!("data-line=\"{line}\"")),
            "line {line}: {}",
            refused.text
        );
    }
    // The form keeps what was typed; the policy is unchanged.
    assert!(
        refused.text.contains("storage = &quot;maybe&quot;"),
        "{}",
        refused.text
    );
    let after = f.page(&admin, "/policy").await;
    assert_eq!(paragraph_of(&after, "policy-current"), current);

    // A valid policy is saved as a new revision and audited.
    let good = "[policy]\nid = \"ward-7\"\nversion = 2\n\n[rules.screen_lock]\nmode = \"audit\"\n";
    let saved = f
        .post(&admin, "/policy", &[("csrf", &csrf), ("text", good)])
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    let after = f.page(&admin, "/policy").await;
    let now_current = paragraph_of(&after, "policy-current");
    assert!(
        now_current.contains("<code>ward-7</code> version 2 (revision 2,"),
        "{now_current}"
    );
    assert!(f.page(&admin, "/audit").await.contains("policy.set"));
}

async fn user_create_refuses_short_passwords(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database = database_for(backend, "web_users");
    let collector = RunningCollector::start(dir.path(), database.as_deref());
    let (code, _, stderr) = user_create(&collector, "shorty", "admin", "elevenchars\n");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("at least 12"), "{stderr}");
    let listed = collector.cli(&["user", "list"]);
    assert_eq!(listed.exit_code, Some(0), "{}", listed.dump());
    assert!(!listed.stdout.contains("shorty"), "{}", listed.dump());
    create_user(&collector, "keeper", "viewer", "twelve chars");
    let listed = collector.cli(&["user", "list"]);
    assert!(
        listed.stdout.contains("keeper\tviewer"),
        "{}",
        listed.dump()
    );
    let (code, _, stderr) = user_create(&collector, "keeper", "admin", "another password\n");
    assert_eq!(code, Some(1), "{stderr}");
    let deleted = collector.cli(&["user", "delete", "keeper"]);
    assert_eq!(deleted.exit_code, Some(0), "{}", deleted.dump());
    assert!(!collector.cli(&["user", "list"]).stdout.contains("keeper"));
}

palisade_tests::on_both_stores!(
    login_lockout_and_logout,
    roles_csrf_and_revocation,
    add_devices_and_secret_revocation,
    hostile_names_search_and_csv,
    policy_upload_shows_every_error,
    user_create_refuses_short_passwords,
);
