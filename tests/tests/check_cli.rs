//! `palisade-agent check` as a user meets it: exit codes, errors that name
//! the file, line and key, and a JSON document in the shared schema.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use palisade_shared::Report;
use palisade_tests::{agent, check_of};

#[test]
fn a_broken_policy_file_exits_2_naming_file_line_and_key_for_every_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        "[policy]\nid = \"p\"\nversion = 1\n\n[rules.screen_lock]\nmode = \"enforce\"\nmax_idle_seconds = -5\n\n[rules.usb_storage]\nmode = \"audit\"\nstorage = \"maybe\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let run = agent(&["check", "--policy", path.to_str().unwrap()]);
    assert_eq!(run.exit_code, Some(2), "{}", run.dump());
    let file = path.display().to_string();
    for expected in [
        format!("{file}:7:20: rules.screen_lock.max_idle_seconds:"),
        format!("{file}:11:12: rules.usb_storage.storage:"),
        format!("{file}:12:1: rules.usb_storage.colour: unknown key"),
    ] {
        assert!(
            run.stderr.contains(&expected),
            "missing {expected:?}\n{}",
            run.dump()
        );
    }
    assert!(run.stderr.contains("has 3 problems"), "{}", run.dump());
    assert!(
        run.stdout.is_empty(),
        "nothing is checked with a bad policy\n{}",
        run.dump()
    );
}

#[test]
fn a_missing_policy_file_exits_2_naming_it() {
    let run = agent(&["check", "--policy", "/nonexistent/policy.toml"]);
    assert_eq!(run.exit_code, Some(2), "{}", run.dump());
    assert!(
        run.stderr.contains("/nonexistent/policy.toml"),
        "{}",
        run.dump()
    );
}

#[test]
fn an_unknown_rule_exits_2_listing_the_known_ones() {
    let run = agent(&["check", "--rule", "screen_lok"]);
    assert_eq!(run.exit_code, Some(2), "{}", run.dump());
    assert!(
        run.stderr.contains("unknown rule \"screen_lok\""),
        "{}",
        run.dump()
    );
    assert!(
        run.stderr
            .contains("screen_lock, disk_encryption, password_policy, usb_storage"),
        "{}",
        run.dump()
    );
}

#[test]
fn a_rule_the_policy_leaves_out_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        "[policy]\nid = \"only-disk\"\nversion = 1\n[rules.disk_encryption]\nmode = \"audit\"\n",
    )
    .unwrap();
    let run = agent(&[
        "check",
        "--policy",
        path.to_str().unwrap(),
        "--rule",
        "usb_storage",
    ]);
    assert_eq!(run.exit_code, Some(2), "{}", run.dump());
    assert!(
        run.stderr.contains("not enabled by policy"),
        "{}",
        run.dump()
    );
}

#[test]
fn unknown_flags_exit_2() {
    let run = agent(&["check", "--frobnicate"]);
    assert_eq!(run.exit_code, Some(2), "{}", run.dump());
}

#[test]
fn json_output_is_a_valid_report_document_of_the_shared_schema() {
    let run = agent(&["check", "--json"]);
    assert!(matches!(run.exit_code, Some(0 | 1 | 3)), "{}", run.dump());
    let report = Report::from_json(run.stdout.as_bytes())
        .unwrap_or_else(|err| panic!("{err}\n{}", run.dump()));
    assert_eq!(report.sequence, 0);
    assert!(report.device_id.is_unenrolled());
    assert_eq!(report.policy.id, "nhs-baseline");
    let ids: Vec<&str> = report.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "screen_lock",
            "disk_encryption",
            "password_policy",
            "usb_storage"
        ]
    );
}

#[test]
fn the_table_has_one_row_per_rule_and_the_exit_code_follows_the_worst_status() {
    let json = agent(&["check", "--json"]);
    let table = agent(&["check"]);
    assert_eq!(
        json.exit_code,
        table.exit_code,
        "{}\n{}",
        json.dump(),
        table.dump()
    );
    let report = json.json();
    for rule in [
        "screen_lock",
        "disk_encryption",
        "password_policy",
        "usb_storage",
    ] {
        let status = check_of(&report, rule)["status"]
            .as_str()
            .unwrap()
            .to_owned();
        let row = table
            .stdout
            .lines()
            .find(|line| line.contains(rule))
            .unwrap_or_else(|| panic!("no row for {rule}\n{}", table.dump()));
        assert!(
            row.contains(&status),
            "row for {rule} does not say {status}\n{}",
            table.dump()
        );
    }
    let statuses: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    let expected = if statuses.contains(&"fail") {
        1
    } else if statuses.iter().any(|s| *s == "unknown" || *s == "error") {
        3
    } else {
        0
    };
    assert_eq!(json.exit_code, Some(expected), "{}", json.dump());
}

#[test]
fn a_host_root_that_is_not_a_directory_exits_2() {
    let run = agent(&["check", "--host-root", "/nonexistent/root"]);
    assert_eq!(run.exit_code, Some(2), "{}", run.dump());
    assert!(run.stderr.contains("/nonexistent/root"), "{}", run.dump());
}
