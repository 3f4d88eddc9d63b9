//! Unit tests of the config parser: each value's rules, one table per key.
//! The shipped `config/agent.toml` and whole-file diagnostics are tested in
//! `agent/tests/config.rs`.

use super::*;

/// Parses `text` and returns the diagnostics as `line: key: message` lines.
fn problems(text: &str) -> Vec<String> {
    match AgentConfig::parse(text) {
        Ok(config) => panic!("expected problems in {text:?}, parsed {config:?}"),
        Err(diagnostics) => diagnostics
            .0
            .iter()
            .map(|d| format!("{}: {}: {}", d.line, d.key_path, d.message))
            .collect(),
    }
}

#[test]
fn empty_file_gives_the_defaults() {
    assert_eq!(AgentConfig::parse("").unwrap(), AgentConfig::default());
    let config = AgentConfig::default();
    assert_eq!(config.interval(), Duration::from_secs(900));
    assert_eq!(config.spool_limits().max_reports, 10_000);
    assert_eq!(config.spool_limits().max_bytes, 64 * 1024 * 1024);
    assert_eq!(config.nudge_interval(), Duration::from_secs(4 * 3600));
}

#[test]
fn collector_urls() {
    let accepted = [
        "https://palisade.example.org",
        "https://palisade.example.org:8443/base/",
        "http://127.0.0.1:8080",
        "http://127.42.0.9",
        "http://[::1]:8080/",
        "http://localhost:3000",
        "http://LOCALHOST",
    ];
    for url in accepted {
        assert!(CollectorUrl::parse(url).is_ok(), "{url} should be accepted");
    }
    let refused = [
        ("http://palisade.example.org", "plain http"),
        ("http://10.0.0.1", "plain http"),
        ("http://[::2]", "plain http"),
        ("http://localhost.example.org", "plain http"),
        ("http://127.0.0.1.nip.io", "plain http"),
        ("ftp://palisade.example.org", "scheme \"ftp\""),
        (
            "https://user:pw@palisade.example.org",
            "user name or password",
        ),
        ("https://palisade.example.org/?token=1", "?query"),
        ("https://", "not a URL"),
        ("palisade.example.org", "not a URL"),
    ];
    for (url, why) in refused {
        let err = CollectorUrl::parse(url).expect_err(url);
        assert!(err.contains(why), "{url}: {err}");
    }
}

#[test]
fn working_hours() {
    let office = WorkingHours::parse("08:00-18:00").unwrap();
    assert_eq!(office, WorkingHours::OFFICE);
    assert_eq!(office.to_string(), DEFAULT_WORKING_HOURS);
    assert!(!office.contains(8 * 60 - 1));
    assert!(office.contains(8 * 60));
    assert!(office.contains(18 * 60 - 1));
    assert!(!office.contains(18 * 60));

    let night = WorkingHours::parse("22:00-06:30").unwrap();
    assert!(night.contains(23 * 60));
    assert!(night.contains(0));
    assert!(night.contains(6 * 60 + 29));
    assert!(!night.contains(6 * 60 + 30));
    assert!(!night.contains(12 * 60));

    let all_day = WorkingHours::parse("00:00-24:00").unwrap();
    assert!(all_day.contains(0) && all_day.contains(1439));

    for bad in [
        "8:00-18:00",
        "08:00",
        "08:00-18:60",
        "25:00-01:00",
        "24:00-08:00",
        "09:00-09:00",
        "08:00-18:00-19:00",
        "",
    ] {
        assert!(
            WorkingHours::parse(bad).is_err(),
            "{bad:?} should be refused"
        );
    }
}

#[test]
fn numbers_are_checked_against_their_ranges() {
    let cases = [
        (
            "interval_seconds = 59",
            "must be between 60 and 86400, got 59",
        ),
        (
            "interval_seconds = 86401",
            "must be between 60 and 86400, got 86401",
        ),
        (
            "spool_max_reports = -1",
            "must be between 10 and 1000000, got -1",
        ),
        (
            "spool_max_bytes = 1000",
            "must be between 1048576 and 4294967296, got 1000",
        ),
        (
            "request_timeout_seconds = 0",
            "must be between 1 and 600, got 0",
        ),
        (
            "backoff_max_seconds = 0",
            "must be between 1 and 86400, got 0",
        ),
        (
            "nudge_interval_hours = 169",
            "must be between 1 and 168, got 169",
        ),
        (
            "interval_seconds = \"900\"",
            "must be a whole number, found a string",
        ),
        (
            "interval_seconds = 900.0",
            "must be a whole number, found a float",
        ),
        (
            "log_format = 1",
            "must be a string in quotes, found an integer",
        ),
        (
            "collector_url = [\"https://a.example\"]",
            "must be a string in quotes, found an array",
        ),
        ("backlog_reports_per_second = true", "found a boolean"),
    ];
    for (line, message) in cases {
        let found = problems(line);
        assert_eq!(found.len(), 1, "{line}: {found:?}");
        assert!(found[0].contains(message), "{line}: {found:?}");
    }
}

#[test]
fn connect_timeout_may_not_exceed_request_timeout() {
    let found = problems("request_timeout_seconds = 5\nconnect_timeout_seconds = 6\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("2: connect_timeout_seconds: is 6, longer than"),
        "{found:?}"
    );
    // A short request timeout also shortens the default connect timeout.
    let config = AgentConfig::parse("request_timeout_seconds = 5").unwrap();
    assert_eq!(config.connect_timeout_seconds, 5);
}

#[test]
fn backlog_rate_takes_integers_and_decimals() {
    let rate = |text: &str| AgentConfig::parse(text).map(|c| c.backlog_reports_per_second);
    assert_eq!(rate("backlog_reports_per_second = 5").unwrap(), 5.0);
    assert_eq!(rate("backlog_reports_per_second = 0.5").unwrap(), 0.5);
    for bad in ["0", "0.0", "nan", "inf", "-1", "\"2\"", "1001"] {
        assert!(
            rate(&format!("backlog_reports_per_second = {bad}")).is_err(),
            "{bad} should be refused"
        );
    }
}

#[test]
fn paths_must_be_absolute() {
    let found = problems("state_dir = \"var/lib/palisade\"\nca_file = \"ca.pem\"\n");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("1: state_dir: \"var/lib/palisade\" is a relative path"));
    assert!(found[1].starts_with("2: ca_file: \"ca.pem\" is a relative path"));
}

#[cfg(unix)]
#[test]
fn paths_are_taken_as_given() {
    let config = AgentConfig::parse(
        "state_dir = \"/tmp/p/state\"\nsocket_path = \"/tmp/p/agent.sock\"\nca_file = \"/tmp/ca.pem\"\n",
    )
    .unwrap();
    assert_eq!(config.state_dir, Path::new("/tmp/p/state"));
    assert_eq!(config.spool_dir(), Path::new("/tmp/p/state/spool"));
    assert_eq!(config.socket_path, Path::new("/tmp/p/agent.sock"));
    assert_eq!(config.ca_file.as_deref(), Some(Path::new("/tmp/ca.pem")));
}

#[test]
fn enroll_secret_is_never_shown() {
    let config = AgentConfig::parse("enroll_secret = \"s3cret-value\"").unwrap();
    let secret = config.enroll_secret.as_ref().unwrap();
    assert_eq!(secret.expose(), "s3cret-value");
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");

    for bad in ["\"\"", "\" s3cret\"", "\"s3cret\\n\""] {
        let found = problems(&format!("enroll_secret = {bad}"));
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        // The refusal never echoes the secret back.
        assert!(!found[0].contains("s3cret"), "{found:?}");
    }
}

#[test]
fn log_format_and_unknown_keys() {
    assert_eq!(
        AgentConfig::parse("log_format = \"json\"")
            .unwrap()
            .log_format,
        LogFormat::Json
    );
    let found = problems("log_format = \"xml\"\ninterval = 900\n[sender]\nx = 1\n");
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].starts_with("1: log_format: \"xml\" is not a log format"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("2: interval: unknown key `interval`"),
        "{found:?}"
    );
    assert!(
        found[2].starts_with("3: sender: unknown key `sender`"),
        "{found:?}"
    );
}

#[test]
fn syntax_error_is_reported_with_its_line() {
    let found = problems("interval_seconds = 900\nlog_format = \n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("2: : not valid TOML"), "{found:?}");
}

#[test]
fn ca_pin_is_read_checked_and_exclusive_with_ca_file() {
    let pin = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let config = AgentConfig::parse(&format!("ca_pin = \"{pin}\"\n")).unwrap();
    assert_eq!(
        config.ca_pin.map(|pin| pin.to_string()).as_deref(),
        Some(pin)
    );

    let found = problems("ca_pin = \"sha1/abc\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("1: ca_pin: a CA pin reads sha256/"),
        "{found:?}"
    );

    let found = problems(&format!("ca_file = \"/etc/ca.pem\"\nca_pin = \"{pin}\"\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("2: ca_pin: cannot be set together with ca_file"),
        "{found:?}"
    );
}
