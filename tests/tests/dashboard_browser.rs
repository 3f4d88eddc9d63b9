//! The dashboard in a real headless Chromium over WebDriver, against a real
//! collector with simulated devices: log in through the form, read the
//! overview, filter the device table (with hostile text in a hostname and a
//! user name), open a device, export the CSV with the browser's session,
//! log out; a viewer, who is shown no revoke button; and an admin who adds
//! devices (a secret with its install commands) and revokes that secret.
//!
//! A screenshot of each page lands in `target/test-artifacts/dashboard/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed assertion

use chrono::{Duration, Utc};
use palisade_shared::RuleId;
use palisade_shared::report::CheckStatus;
use palisade_tests::browser::{Browser, DashboardSession, create_user_for};
use palisade_tests::collector::RunningCollector;
use palisade_tests::device::{OsFamily, Platform, SimulatedDevice, simulated_check};
use palisade_tests::fleet::{CollectorClient, RULES};

const ADMIN_PASSWORD: &str = "correct horse battery staple";
const VIEWER_PASSWORD: &str = "viewer's own long passphrase";
/// A hostname that is markup: it must show as text and run nothing.
const XSS_HOSTNAME: &str = "<script>alert(1)</script>";
/// A user name that is SQL: searching for it must match exactly its device.
const SQL_USER: &str = "' OR 1=1 --";

struct Fleet {
    _dir: tempfile::TempDir,
    collector: RunningCollector,
    ca_pem: Vec<u8>,
    /// The device failing disk_encryption (hostname [`XSS_HOSTNAME`]).
    failing_id: String,
    /// The device whose user is [`SQL_USER`].
    sql_user_id: String,
    passing_hostnames: Vec<String>,
    /// The one macOS device among them.
    mac_hostname: String,
}

/// A collector with an admin and a viewer, one device failing
/// disk_encryption since five days ago (hostname [`XSS_HOSTNAME`]), one
/// passing device used by [`SQL_USER`], and three more passing devices.
async fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let collector = RunningCollector::start(dir.path(), None);
    create_user_for(&collector, "admin", "admin", ADMIN_PASSWORD);
    create_user_for(&collector, "viewer", "viewer", VIEWER_PASSWORD);
    let secret = collector.create_secret(&["--uses", "10"]);
    let ca_pem = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
    let client = CollectorClient::new(&collector.url, &ca_pem).unwrap();
    let now = Utc::now();

    let mut failing = SimulatedDevice::new(XSS_HOSTNAME).with_console_user("m.okafor");
    client.enroll(&mut failing, &secret).await.unwrap();
    for issued_at in [now - Duration::days(5), now - Duration::hours(1)] {
        let checks = checks(OsFamily::Linux, Some(RuleId::DISK_ENCRYPTION));
        client.send(&mut failing, issued_at, checks).await.unwrap();
    }

    let mut sql_user = SimulatedDevice::new("ward9-lt-00002").with_console_user(SQL_USER);
    client.enroll(&mut sql_user, &secret).await.unwrap();
    client
        .send(
            &mut sql_user,
            now - Duration::hours(2),
            checks(OsFamily::Linux, None),
        )
        .await
        .unwrap();

    let mut passing_hostnames = Vec::new();
    let platforms = Platform::catalogue();
    for (i, user) in ["a.khan", "bpatel", "TRUST\\c.jones"]
        .into_iter()
        .enumerate()
    {
        let platform = platforms[i * 3].0.clone();
        let hostname = format!("radiology-{}-{i:05}", platform.family.agent_os());
        let mut device = SimulatedDevice::new(&hostname)
            .with_platform(platform.clone())
            .with_console_user(user);
        client.enroll(&mut device, &secret).await.unwrap();
        client
            .send(
                &mut device,
                now - Duration::hours(3),
                checks(platform.family, None),
            )
            .await
            .unwrap();
        passing_hostnames.push(hostname);
    }
    let mac_hostname = passing_hostnames
        .iter()
        .find(|name| name.contains("macos"))
        .expect("one passing device is a Mac")
        .clone();
    Fleet {
        mac_hostname,
        failing_id: failing.device_id.unwrap(),
        sql_user_id: sql_user.device_id.unwrap(),
        _dir: dir,
        collector,
        ca_pem,
        passing_hostnames,
    }
}

/// The four rules passing, except `failing`.
fn checks(family: OsFamily, failing: Option<&str>) -> Vec<palisade_shared::report::CheckResult> {
    RULES
        .iter()
        .map(|rule| {
            let status = if Some(*rule) == failing {
                CheckStatus::Fail
            } else {
                CheckStatus::Pass
            };
            simulated_check(rule, family, status, 0)
        })
        .collect()
}

/// Types into the login form and submits it.
async fn log_in(browser: &Browser, username: &str, password: &str) {
    browser
        .element("input#username")
        .await
        .unwrap()
        .send_keys(username)
        .await
        .unwrap();
    browser
        .element("input#password")
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    browser.mark_page().await.unwrap();
    browser
        .element("button#login-submit")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// No alert, confirm or prompt is open (an injected script would open one).
async fn assert_no_dialog(browser: &Browser, page: &str) {
    let alert = browser.client.get_alert_text().await;
    assert!(alert.is_err(), "a dialog is open on {page}: {alert:?}");
}

async fn number(browser: &Browser, css: &str) -> u64 {
    let text = browser.text(css).await.unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|err| panic!("{css} is {text:?}, not a number: {err}"))
}

/// The hostnames of the device table's rows.
async fn listed_hostnames(browser: &Browser) -> Vec<String> {
    let mut names = Vec::new();
    for row in browser.all("table#devices tr.device").await.unwrap() {
        let link = row
            .find(fantoccini::Locator::Css("a.device-link"))
            .await
            .unwrap();
        names.push(link.text().await.unwrap());
    }
    names
}

/// What to put in the filter form; empty means "any".
#[derive(Default)]
struct Filter<'a> {
    q: &'a str,
    rule: &'a str,
    status: &'a str,
    os: &'a str,
}

/// Submits the filter form and waits for the new table.
async fn filter(browser: &Browser, filter: Filter<'_>) {
    let search = browser.element("input#q").await.unwrap();
    search.clear().await.unwrap();
    search.send_keys(filter.q).await.unwrap();
    for (select, value) in [
        ("select#rule", filter.rule),
        ("select#status", filter.status),
        ("select#os", filter.os),
    ] {
        browser
            .element(select)
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap_or_else(|err| panic!("{select} has no option {value:?}: {err}"));
    }
    browser.mark_page().await.unwrap();
    browser
        .element("button#apply")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_new_page("table#devices").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_logs_in_finds_the_failing_device_filters_exports_and_logs_out() {
    let fleet = fleet().await;
    let url = &fleet.collector.url;
    let browser = Browser::start("dashboard").await.unwrap();

    // Not logged in: the overview sends the browser to the login form.
    browser
        .open(&format!("{url}/"), "form#login")
        .await
        .unwrap();
    let at = browser.client.current_url().await.unwrap();
    assert_eq!(at.path(), "/login", "{at}");
    browser.screenshot("01-login").await.unwrap();

    // A wrong password is refused with a message, and no session.
    log_in(&browser, "admin", "not the password at all").await;
    let error = browser.wait_for_new_page(".error").await.unwrap();
    assert!(!error.text().await.unwrap().is_empty());
    assert!(browser.all("#whoami").await.unwrap().is_empty());
    browser.screenshot("02-login-refused").await.unwrap();

    // The right one leads to the overview.
    browser
        .element("input#username")
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    log_in(&browser, "admin", ADMIN_PASSWORD).await;
    let whoami = browser.wait_for_new_page("#whoami").await.unwrap();
    assert_eq!(whoami.text().await.unwrap(), "admin");
    for nav in [
        "overview",
        "devices",
        "enrollment",
        "policy",
        "exceptions",
        "audit",
    ] {
        browser.element(&format!("a#nav-{nav}")).await.unwrap();
    }

    // Overview: five devices, the failing one among the longest failing.
    assert_eq!(number(&browser, "#count-total").await, 5);
    assert!(number(&browser, "#count-failing").await >= 1);
    assert_eq!(number(&browser, "#count-compliant").await, 4);
    browser.element("svg#chart-failing-by-rule").await.unwrap();
    browser.element("svg#chart-trend").await.unwrap();
    let mut found = false;
    for link in browser
        .all("table#longest-failing a.device-link")
        .await
        .unwrap()
    {
        if link.text().await.unwrap() == XSS_HOSTNAME {
            let href = link.attr("href").await.unwrap().unwrap_or_default();
            assert!(
                href.ends_with(&format!("/devices/{}", fleet.failing_id)),
                "{href}"
            );
            found = true;
        }
    }
    assert!(found, "the failing device is not in table#longest-failing");
    assert_no_dialog(&browser, "the overview").await;
    browser.screenshot("03-overview").await.unwrap();

    // Devices: all five, then only the failing one.
    browser.mark_page().await.unwrap();
    browser
        .element("a#nav-devices")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_new_page("table#devices").await.unwrap();
    let mut all = listed_hostnames(&browser).await;
    all.sort();
    let mut expected: Vec<String> = fleet.passing_hostnames.clone();
    expected.extend([XSS_HOSTNAME.to_owned(), "ward9-lt-00002".to_owned()]);
    expected.sort();
    assert_eq!(all, expected);

    filter(
        &browser,
        Filter {
            status: "fail",
            ..Filter::default()
        },
    )
    .await;
    // The hostname is shown as the literal text, not run as markup.
    assert_eq!(listed_hostnames(&browser).await, [XSS_HOSTNAME]);
    assert_eq!(number(&browser, "#result-count").await, 1);
    assert_no_dialog(&browser, "the device table").await;
    browser.screenshot("04-devices-failing").await.unwrap();

    // The CSV export of the same filter, fetched with the browser's session.
    let csv_href = browser
        .element("a#csv")
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("a#csv has an href");
    assert!(csv_href.contains("status=fail"), "{csv_href}");
    let csv_url = url::Url::parse(url).unwrap().join(&csv_href).unwrap();
    let csv_path = &csv_url[url::Position::BeforePath..];
    let cookie = browser
        .cookie("palisade_session")
        .await
        .unwrap()
        .expect("the browser holds a palisade_session cookie");
    let session = DashboardSession::with_cookie(url, &fleet.ca_pem, &cookie).unwrap();
    let answer = session.get(csv_path).await.unwrap();
    assert_eq!(answer.status(), 200);
    let content_type = answer.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let text = answer.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
    };
    let (hostname, disk) = (column("hostname"), column(RuleId::DISK_ENCRYPTION));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(&rows[0][hostname], XSS_HOSTNAME, "{text}");
    assert_eq!(&rows[0][disk], "fail", "{text}");
    // Without the session the export is not given out.
    let anonymous = DashboardSession::with_cookie(url, &fleet.ca_pem, "not-a-session").unwrap();
    let refused = anonymous.get(csv_path).await.unwrap();
    assert_ne!(
        refused.status(),
        200,
        "the CSV was served without a session"
    );

    // By rule: the failing device fails disk_encryption, the others pass it.
    filter(
        &browser,
        Filter {
            rule: RuleId::DISK_ENCRYPTION,
            status: "pass",
            ..Filter::default()
        },
    )
    .await;
    assert_eq!(listed_hostnames(&browser).await.len(), 4);
    assert!(
        !listed_hostnames(&browser)
            .await
            .contains(&XSS_HOSTNAME.to_owned())
    );
    // By OS: the one Mac.
    filter(
        &browser,
        Filter {
            os: "Darwin",
            ..Filter::default()
        },
    )
    .await;
    assert_eq!(
        listed_hostnames(&browser).await,
        [fleet.mac_hostname.as_str()]
    );

    // Hostile search text matches exactly the device whose user it is.
    filter(
        &browser,
        Filter {
            q: SQL_USER,
            ..Filter::default()
        },
    )
    .await;
    let rows = browser.all("table#devices tr.device").await.unwrap();
    assert_eq!(rows.len(), 1);
    let user = rows[0]
        .find(fantoccini::Locator::Css("td.user"))
        .await
        .unwrap();
    assert_eq!(user.text().await.unwrap(), SQL_USER);
    assert_eq!(listed_hostnames(&browser).await, ["ward9-lt-00002"]);
    browser.screenshot("05-devices-search").await.unwrap();

    // The failing device's page: its verdicts, its identity, revocable.
    filter(
        &browser,
        Filter {
            status: "fail",
            ..Filter::default()
        },
    )
    .await;
    browser.mark_page().await.unwrap();
    browser
        .element("table#devices a.device-link")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_new_page("table#verdicts").await.unwrap();
    let at = browser.client.current_url().await.unwrap();
    assert_eq!(at.path(), format!("/devices/{}", fleet.failing_id));
    assert_eq!(browser.text("#hostname").await.unwrap(), XSS_HOSTNAME);
    browser
        .element(r#"table#verdicts tr.verdict[data-rule="disk_encryption"][data-status="fail"]"#)
        .await
        .unwrap();
    let passing = browser
        .all(r#"table#verdicts tr.verdict[data-status="pass"]"#)
        .await
        .unwrap();
    assert_eq!(passing.len(), 3);
    assert_eq!(
        browser.all("table#history tr.report").await.unwrap().len(),
        2
    );
    assert!(!browser.text("#key-id").await.unwrap().is_empty());
    browser.element(".signature-verified").await.unwrap();
    browser
        .element("form#revoke button#revoke-submit")
        .await
        .unwrap();
    assert_no_dialog(&browser, "the device page").await;
    browser.screenshot("06-device").await.unwrap();

    // Log out: the session is gone and the overview asks for a login again.
    browser.mark_page().await.unwrap();
    browser
        .element("button#logout-submit")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_new_page("form#login").await.unwrap();
    browser
        .open(&format!("{url}/"), "form#login")
        .await
        .unwrap();
    let at = browser.client.current_url().await.unwrap();
    assert_eq!(at.path(), "/login", "{at}");
    assert!(browser.all("#whoami").await.unwrap().is_empty());
    let after_logout = session.get(csv_path).await.unwrap();
    assert_ne!(after_logout.status(), 200, "the old session still works");
    browser.screenshot("07-logged-out").await.unwrap();

    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_a_device_but_no_revoke_button() {
    let fleet = fleet().await;
    let url = &fleet.collector.url;
    let browser = Browser::start("dashboard").await.unwrap();
    browser
        .open(&format!("{url}/login"), "form#login")
        .await
        .unwrap();
    log_in(&browser, "viewer", VIEWER_PASSWORD).await;
    let whoami = browser.wait_for_new_page("#whoami").await.unwrap();
    assert_eq!(whoami.text().await.unwrap(), "viewer");

    for id in [&fleet.failing_id, &fleet.sql_user_id] {
        browser
            .open(&format!("{url}/devices/{id}"), "table#verdicts")
            .await
            .unwrap();
        // The page is complete (its history is below the verdicts) and has
        // no revoke form.
        browser.element("table#history").await.unwrap();
        assert!(browser.all("form#revoke").await.unwrap().is_empty());
        assert!(browser.all("#revoke-submit").await.unwrap().is_empty());
    }
    browser.screenshot("08-device-as-viewer").await.unwrap();
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_devices_and_revokes_the_secret() {
    let fleet = fleet().await;
    let url = &fleet.collector.url;
    let browser = Browser::start("dashboard").await.unwrap();
    browser
        .open(&format!("{url}/login"), "form#login")
        .await
        .unwrap();
    log_in(&browser, "admin", ADMIN_PASSWORD).await;
    browser.wait_for_new_page("#whoami").await.unwrap();

    // From the enrollment page to Add devices, and the form filled in.
    browser
        .open(&format!("{url}/enrollment"), "table#secrets")
        .await
        .unwrap();
    browser.mark_page().await.unwrap();
    browser
        .element("a#add-devices-link")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_new_page("form#add-devices").await.unwrap();
    let pin = browser.text("code#ca-pin").await.unwrap();
    for (input, value) in [
        ("input#add-label", "ward 12 <laptops>"),
        ("input#add-url", "https://palisade.example.org:8443"),
    ] {
        browser
            .element(input)
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    browser.mark_page().await.unwrap();
    browser
        .element("button#add-submit")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_new_page("pre#install-windows")
        .await
        .unwrap();
    let secret = browser.text("pre#secret-value").await.unwrap();
    assert!(secret.starts_with("pls_"), "{secret}");
    for os in ["windows", "debian", "rhel", "macos"] {
        let text = browser.text(&format!("pre#install-{os}")).await.unwrap();
        assert!(text.contains(&secret), "{os}: {text}");
        assert!(text.contains(&pin), "{os}: {text}");
        assert!(
            text.contains("https://palisade.example.org:8443"),
            "{os}: {text}"
        );
    }
    assert_no_dialog(&browser, "the add devices page").await;
    browser.screenshot("09-add-devices").await.unwrap();

    // Revoked from the enrollment page, where it then says so.
    let id = &secret[4..20];
    browser
        .open(&format!("{url}/enrollment"), "table#secrets")
        .await
        .unwrap();
    browser.mark_page().await.unwrap();
    browser
        .element(&format!("form#revoke-{id} button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_new_page("table#secrets").await.unwrap();
    assert!(
        browser
            .all(&format!("form#revoke-{id}"))
            .await
            .unwrap()
            .is_empty()
    );
    browser
        .element("table#secrets span.status-revoked")
        .await
        .unwrap();
    browser.screenshot("10-secret-revoked").await.unwrap();
    browser.close().await.unwrap();
}
