//! The shipped `config/agent.toml` and whole config files: the documented
//! file parses to the defaults and names every key the parser knows, its
//! commented-out examples are valid too, and a file with several mistakes
//! gets every one reported as `FILE:LINE:COLUMN: key: message`.

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use palisade_agent::config::{AgentConfig, ConfigError};

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/agent.toml");

/// Every key the parser reads, as it lists them when it meets an unknown one.
fn keys_the_parser_knows() -> Vec<String> {
    let diagnostics = AgentConfig::parse("no_such_key = 1").unwrap_err();
    let message = &diagnostics.0[0].message;
    let list = message
        .split_once("expected one of: ")
        .unwrap_or_else(|| panic!("unexpected message: {message}"))
        .1;
    list.split(", ").map(str::to_owned).collect()
}

/// The keys a line of the file sets or shows, commented out or not.
fn key_of_line(line: &str) -> Option<&str> {
    let line = line.strip_prefix("# ").unwrap_or(line);
    let (key, _) = line.split_once(" = ")?;
    key.bytes()
        .all(|b| b.is_ascii_lowercase() || b == b'_')
        .then_some(key)
}

#[test]
fn shipped_file_parses_to_the_defaults() {
    let config = AgentConfig::load(Path::new(SHIPPED)).unwrap();
    assert_eq!(config, AgentConfig::default());
}

#[test]
fn shipped_file_documents_every_key_the_parser_knows() {
    let text = std::fs::read_to_string(SHIPPED).unwrap();
    let known = keys_the_parser_knows();
    assert!(known.len() >= 15, "{known:?}");
    let lines: Vec<&str> = text.lines().collect();
    for key in &known {
        let at = lines
            .iter()
            .position(|line| key_of_line(line) == Some(key.as_str()))
            .unwrap_or_else(|| panic!("config/agent.toml does not show `{key}`"));
        // Each key comes after a comment saying what it is.
        assert!(
            at > 0 && lines[at - 1].starts_with('#') && key_of_line(lines[at - 1]).is_none(),
            "`{key}` in config/agent.toml has no comment above it"
        );
    }
    for line in &lines {
        if let Some(key) = key_of_line(line) {
            assert!(
                known.iter().any(|k| k == key),
                "config/agent.toml shows unknown `{key}`"
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn shipped_file_with_every_example_uncommented_is_valid() {
    let text = std::fs::read_to_string(SHIPPED).unwrap();
    // ca_file and ca_pin are alternatives: each is uncommented without the
    // other.
    for (shown, left_out) in [("ca_file", "ca_pin"), ("ca_pin", "ca_file")] {
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if key_of_line(rest).is_some_and(|key| key != left_out) => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = AgentConfig::parse(&uncommented).unwrap_or_else(|errors| {
            panic!("with {shown}: {}", errors.render_for_file("agent.toml"))
        });
        assert!(config.collector_url.is_some());
        assert!(config.enroll_secret.is_some());
        assert_eq!(config.ca_file.is_some(), shown == "ca_file");
        assert_eq!(config.ca_pin.is_some(), shown == "ca_pin");
    }
}

#[test]
fn every_mistake_is_reported_with_its_file_line_and_key() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("agent.toml");
    let text = "\
# A file with six mistakes and two good lines.
collector_url = \"http://collector.example.org\"
interval_seconds = 30
working_hours = \"8-18\"
log_format = \"yaml\"
spool_max_reports = 20000
request_timeout_seconds = 20
connect_timeout_seconds = 25
intervall_seconds = 900
";
    std::fs::write(&path, text).unwrap();
    let err = AgentConfig::load(&path).unwrap_err();
    let ConfigError::Invalid { diagnostics, .. } = &err else {
        panic!("{err}")
    };
    let found: Vec<(usize, &str)> = diagnostics
        .0
        .iter()
        .map(|d| (d.line, d.key_path.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (2, "collector_url"),
            (3, "interval_seconds"),
            (4, "working_hours"),
            (5, "log_format"),
            (8, "connect_timeout_seconds"),
            (9, "intervall_seconds"),
        ]
    );
    let rendered = err.to_string();
    let file = path.display().to_string();
    assert!(
        rendered.starts_with(&format!("config file {file} has 6 problems:\n")),
        "{rendered}"
    );
    for expected in [
        format!("{file}:2:18: collector_url: \"http://collector.example.org\" is plain http"),
        format!("{file}:3:20: interval_seconds: must be between 60 and 86400, got 30"),
        format!("{file}:4:18: working_hours: \"8-18\" is not a window of local time"),
        format!("{file}:5:15: log_format: \"yaml\" is not a log format"),
        format!(
            "{file}:8:27: connect_timeout_seconds: is 25, longer than request_timeout_seconds (20)"
        ),
        format!("{file}:9:1: intervall_seconds: unknown key `intervall_seconds`"),
    ] {
        assert!(
            rendered.contains(&expected),
            "missing {expected:?} in:\n{rendered}"
        );
    }
}

#[test]
fn a_missing_file_names_its_path() {
    let err = AgentConfig::load(Path::new("/nonexistent/palisade/agent.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/palisade/agent.toml"),
        "{err}"
    );
}
