//! `disk_encryption` against real dm-crypt: a qemu guest (TCG, since this
//! kernel has no device-mapper) opens real LUKS2 volumes, stacks LVM on one,
//! mounts them, and runs the real `palisade-agent check --rule
//! disk_encryption --json` after each stage. See `tests/vm/luks-guest.sh`.
//!
//! Stages and the truth the agent must report:
//! - `luks`: LUKS2 → ext4 at /srv/data: pass
//! - `lvm-on-luks`: + LUKS2 → LVM → ext4 at /srv/lvm: pass
//! - `plain`: + plain ext4 at /srv/plain and plain swap: fail naming both

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::collections::BTreeMap;

use palisade_tests::{binary, check_of, repo_root, run};
use serde_json::Value;

/// Splits the guest's stdout into `stage → (agent exit code, agent stdout)`.
fn stage_outputs(stdout: &str) -> BTreeMap<String, (i32, String)> {
    let mut stages = BTreeMap::new();
    let mut current: Option<(String, i32, String)> = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("===PALISADE-BEGIN stage=") {
            let rest = rest.trim_end_matches("===");
            let (stage, exit) = rest.split_once(" exit=").unwrap();
            current = Some((stage.to_owned(), exit.parse().unwrap(), String::new()));
        } else if line.starts_with("===PALISADE-END stage=") {
            let (stage, exit, body) = current.take().unwrap();
            stages.insert(stage, (exit, body));
        } else if let Some((_, _, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    stages
}

fn mount_status(check: &Value, mount_point: &str) -> String {
    check["evidence"]["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mount_point"] == mount_point)
        .map(|m| m["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{mount_point} not in evidence: {check:#}"))
}

#[test]
fn disk_encryption_tells_the_truth_about_real_luks_and_lvm_on_luks() {
    let work = tempfile::tempdir().unwrap();
    let agent = binary("palisade-agent");
    let script = repo_root().join("tests/vm/luks-guest.sh");
    let guest = run(
        &script,
        &[
            "--agent",
            agent.to_str().unwrap(),
            "--work",
            work.path().to_str().unwrap(),
        ],
        &[],
    );
    let console = std::fs::read_to_string(work.path().join("console.log")).unwrap_or_default();
    assert_eq!(
        guest.exit_code,
        Some(0),
        "{}\n--- console ---\n{console}",
        guest.dump()
    );
    let stages = stage_outputs(&guest.stdout);

    let parse = |stage: &str| -> (i32, Value) {
        let (exit, body) = stages
            .get(stage)
            .unwrap_or_else(|| panic!("no output for stage {stage}\n{}", guest.dump()));
        let report: Value = serde_json::from_str(body)
            .unwrap_or_else(|err| panic!("stage {stage}: not JSON ({err})\n{}", guest.dump()));
        (*exit, report)
    };

    let (exit, report) = parse("luks");
    let check = check_of(&report, "disk_encryption");
    assert_eq!(check["status"], "pass", "{check:#}");
    assert_eq!(exit, 0);
    assert_eq!(mount_status(check, "/srv/data"), "encrypted");

    let (exit, report) = parse("lvm-on-luks");
    let check = check_of(&report, "disk_encryption");
    assert_eq!(check["status"], "pass", "{check:#}");
    assert_eq!(exit, 0);
    assert_eq!(mount_status(check, "/srv/lvm"), "encrypted");

    let (exit, report) = parse("plain");
    let check = check_of(&report, "disk_encryption");
    assert_eq!(check["status"], "fail", "{check:#}");
    assert_eq!(exit, 1);
    assert_eq!(mount_status(check, "/srv/data"), "encrypted");
    assert_eq!(mount_status(check, "/srv/lvm"), "encrypted");
    assert_eq!(mount_status(check, "/srv/plain"), "not_encrypted");
    assert_eq!(mount_status(check, "[swap] /dev/vdc2"), "not_encrypted");
}
