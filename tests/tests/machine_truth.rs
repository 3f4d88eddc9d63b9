//! `palisade-agent check` on the machine the tests run on must agree with the
//! truth found independently, by other tools (`findmnt`, `lsblk`, `loginctl`,
//! `ps`) rather than by the agent's own method.
//!
//! On the CI machines that truth is: the root filesystem is a plain virtio
//! disk (so `disk_encryption` is `fail`), no graphical login session (so
//! `screen_lock` is `not_applicable`), no USB bus (`usb_storage` is
//! `not_applicable`). On a developer's encrypted laptop the same tests expect
//! the other answers.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::Path;

use palisade_tests::{agent, check_of, run};
use serde_json::Value;

fn tool(name: &str, args: &[&str]) -> palisade_tests::Finished {
    let path = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed"));
    run(&path, args, &[])
}

fn report() -> Value {
    let run = agent(&["check", "--json"]);
    assert!(matches!(run.exit_code, Some(0 | 1 | 3)), "{}", run.dump());
    run.json()
}

#[test]
fn disk_encryption_matches_lsblk_for_the_root_filesystem() {
    let source = tool("findmnt", &["-n", "-o", "SOURCE", "--target", "/"]);
    let source = source.stdout.trim().to_owned();
    let report = report();
    let check = check_of(&report, "disk_encryption");
    let root_entry = check["evidence"]["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mount_point"] == "/")
        .cloned();

    if !source.starts_with("/dev/") {
        // A container's overlay root is not a local block device: the agent
        // must not count it.
        assert!(root_entry.is_none(), "root {source} was counted: {check:#}");
        return;
    }
    // lsblk --inverse lists the root device and everything it is built on.
    let stack = tool(
        "lsblk",
        &["--inverse", "--noheadings", "--output", "TYPE", &source],
    );
    assert_eq!(stack.exit_code, Some(0), "{}", stack.dump());
    let on_crypt = stack.stdout.lines().any(|t| t.trim() == "crypt");
    let root_entry = root_entry.unwrap_or_else(|| panic!("/ is missing from {check:#}"));
    if on_crypt {
        assert_eq!(
            root_entry["status"], "encrypted",
            "lsblk: {}\n{check:#}",
            stack.stdout
        );
    } else {
        assert_eq!(
            root_entry["status"], "not_encrypted",
            "lsblk: {}\n{check:#}",
            stack.stdout
        );
        assert_eq!(check["status"], "fail", "{check:#}");
    }
}

/// Display servers and compositors whose presence means a graphical session.
const DISPLAY_SERVERS: [&str; 8] = [
    "Xorg",
    "Xwayland",
    "gnome-shell",
    "kwin_wayland",
    "kwin_x11",
    "sway",
    "weston",
    "X",
];

fn graphical_sessions_by_loginctl() -> usize {
    let list = tool("loginctl", &["list-sessions", "--no-legend"]);
    if list.exit_code != Some(0) {
        // No systemd-logind on this machine, so no logind session at all.
        return 0;
    }
    list.stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|id| {
            let kind = tool("loginctl", &["show-session", id, "-p", "Type", "--value"]);
            matches!(kind.stdout.trim(), "x11" | "wayland" | "mir")
        })
        .count()
}

#[test]
fn screen_lock_is_not_applicable_exactly_when_there_is_no_graphical_session() {
    let processes = tool("ps", &["-e", "-o", "comm="]);
    let display_server_running = processes
        .stdout
        .lines()
        .any(|name| DISPLAY_SERVERS.contains(&name.trim()));
    let sessions = graphical_sessions_by_loginctl();
    let report = report();
    let status = check_of(&report, "screen_lock")["status"]
        .as_str()
        .unwrap()
        .to_owned();
    if sessions == 0 && !display_server_running {
        assert_eq!(status, "not_applicable", "{report:#}");
    } else {
        assert_ne!(status, "not_applicable", "sessions: {sessions}\n{report:#}");
    }
}

#[test]
fn usb_storage_is_not_applicable_exactly_when_there_is_no_usb_bus() {
    let report = report();
    let status = check_of(&report, "usb_storage")["status"]
        .as_str()
        .unwrap()
        .to_owned();
    if Path::new("/sys/bus/usb").exists() {
        assert_ne!(status, "not_applicable", "{report:#}");
    } else {
        assert_eq!(status, "not_applicable", "{report:#}");
    }
}

#[test]
fn password_policy_fails_when_pam_does_not_call_pam_pwquality() {
    let stack = ["/etc/pam.d/common-password", "/etc/pam.d/system-auth"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok());
    let Some(stack) = stack else {
        let report = report();
        assert_eq!(
            check_of(&report, "password_policy")["status"],
            "unknown",
            "{report:#}"
        );
        return;
    };
    let calls_pwquality = stack
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .any(|line| line.starts_with("password") && line.contains("pam_pwquality.so"));
    let report = report();
    let check = check_of(&report, "password_policy");
    if !calls_pwquality {
        assert_eq!(check["status"], "fail", "{check:#}");
        assert!(
            check["summary"].as_str().unwrap().contains("PAM"),
            "the summary must say PAM does not enforce it: {check:#}"
        );
    } else {
        assert_ne!(check["status"], "not_applicable", "{check:#}");
    }
}
