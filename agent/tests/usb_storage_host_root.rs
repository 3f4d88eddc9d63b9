//! Runs the real `palisade-agent check --rule usb_storage --json --host-root`
//! against copies of the captured sysfs and kmod trees in
//! `tests/fixtures/linux/usb_storage/`, and checks the exit code and the
//! verdict in the JSON report.
//!
//! Each test gets its own temp dir holding the tree (so it can change files,
//! e.g. deauthorize the stick) and, where needed, a policy file. The binary
//! runs through the agent's own command runner: environment cleared, output
//! captured, a timeout. A failed assertion prints the command, its output and
//! the files of the tree.

// The helpers below are test code too: a panic there is a failed test, as
// clippy.toml allows inside `#[test]` functions.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{Run, Tree};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/linux/usb_storage"
);

/// One run of the agent against a prepared tree.
struct Scenario(Tree);

impl Scenario {
    /// A temp dir holding a copy of the fixture tree `scenario` as `root/`.
    fn from_fixture(scenario: &str) -> Self {
        Self(Tree::from_fixture(FIXTURES, scenario))
    }

    /// Adds another fixture tree on top (e.g. a kmod configuration).
    fn with_fixture(self, scenario: &str) -> Self {
        self.0.add_fixture(FIXTURES, scenario);
        self
    }

    fn write(&self, relative: &str, text: &str) {
        self.0.write(relative, text);
    }

    /// Writes a minimal policy enabling only `usb_storage`; returns its path.
    fn policy(&self, storage: &str, allow: &[&str]) -> PathBuf {
        let allow: Vec<String> = allow.iter().map(|entry| format!("{entry:?}")).collect();
        self.0.policy_file(&format!(
            "[policy]\nid = \"t\"\nversion = 1\n[rules.usb_storage]\nmode = \"audit\"\n\
             storage = \"{storage}\"\nallow = [{}]\n",
            allow.join(", ")
        ))
    }

    /// Runs the check; `policy` `None` uses the built-in baseline.
    fn check(&self, policy: Option<&Path>) -> Run {
        self.0.check("usb_storage", policy)
    }
}

/// The verdict assertion for this rule.
trait ExpectVerdict {
    fn expect(&self, exit_code: i32, status: &str) -> Value;
}

impl ExpectVerdict for Run {
    fn expect(&self, exit_code: i32, status: &str) -> Value {
        self.expect_check("usb_storage", exit_code, status)
    }
}

#[test]
fn a_connected_stick_fails_under_block() {
    let scenario = Scenario::from_fixture("sysfs-one-stick");
    let policy = scenario.policy("block", &[]);
    let check = scenario.check(Some(&policy)).expect(1, "fail");
    assert_eq!(
        check["summary"],
        "USB mass-storage device 0781:5581 (SanDisk Ultra) is connected and not allowed"
    );
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .starts_with("Remove the USB storage device")
    );
    let device = &check["evidence"]["mass_storage_devices"][0];
    assert_eq!(device["id"], "0781:5581");
    assert_eq!(device["serial"], "040156557d5110d1f");
    assert_eq!(device["decision"], "not_allowed");
}

#[test]
fn the_baseline_policy_blocks_the_stick_too() {
    let scenario = Scenario::from_fixture("sysfs-one-stick");
    let check = scenario.check(None).expect(1, "fail");
    assert_eq!(check["mode"], "enforce");
}

#[test]
fn the_same_stick_allowlisted_passes() {
    let scenario = Scenario::from_fixture("sysfs-one-stick");
    let by_product = scenario.policy("block", &["0781:5581"]);
    let check = scenario.check(Some(&by_product)).expect(0, "pass");
    assert_eq!(
        check["evidence"]["mass_storage_devices"][0]["decision"],
        "allowlisted"
    );
    let by_serial = scenario.policy("block", &["0781:5581:040156557d5110d1f"]);
    scenario.check(Some(&by_serial)).expect(0, "pass");
    let wrong_serial = scenario.policy("block", &["0781:5581:000000000000"]);
    scenario.check(Some(&wrong_serial)).expect(1, "fail");
}

#[test]
fn a_keyboard_alone_passes() {
    let scenario = Scenario::from_fixture("sysfs-keyboard-only");
    let policy = scenario.policy("block", &[]);
    let check = scenario.check(Some(&policy)).expect(0, "pass");
    assert!(
        check["summary"]
            .as_str()
            .unwrap()
            .starts_with("no USB mass-storage device is connected"),
        "{check}"
    );
    assert_eq!(
        check["evidence"]["mass_storage_devices"],
        serde_json::json!([])
    );
}

#[test]
fn a_stick_the_kernel_deauthorized_passes() {
    let scenario = Scenario::from_fixture("sysfs-one-stick");
    scenario.write("sys/bus/usb/devices/2-1/authorized", "0\n");
    let policy = scenario.policy("block", &[]);
    let check = scenario.check(Some(&policy)).expect(0, "pass");
    assert_eq!(
        check["evidence"]["mass_storage_devices"][0]["decision"],
        "blocked"
    );
    assert!(
        check["summary"]
            .as_str()
            .unwrap()
            .contains("1 blocked by the kernel"),
        "{check}"
    );
}

#[test]
fn the_uas_disk_fails_under_block() {
    let scenario = Scenario::from_fixture("sysfs-uas-disk");
    let policy = scenario.policy("block", &[]);
    let check = scenario.check(Some(&policy)).expect(1, "fail");
    assert_eq!(
        check["summary"],
        "USB mass-storage device 0bc2:2321 (Seagate Expansion) is connected and not allowed"
    );
}

#[test]
fn a_tree_without_sys_bus_usb_is_not_applicable() {
    let scenario = Scenario::from_fixture("modprobe/debian-12-default");
    let policy = scenario.policy("block", &[]);
    let check = scenario.check(Some(&policy)).expect(0, "not_applicable");
    assert_eq!(check["summary"], "this machine has no USB bus");
}

#[test]
fn a_modprobe_blacklist_and_install_line_are_reported_in_the_evidence() {
    let scenario = Scenario::from_fixture("sysfs-keyboard-only")
        .with_fixture("modprobe/cis-install-false-blacklist")
        .with_fixture("usbguard");
    let policy = scenario.policy("block", &[]);
    let check = scenario.check(Some(&policy)).expect(0, "pass");
    let controls = &check["evidence"]["preventive_controls"];
    let usb_storage = &controls["modprobe"]["usb_storage"];
    assert_eq!(
        usb_storage["blacklisted_in"],
        serde_json::json!(["/etc/modprobe.d/usb_storage.conf"])
    );
    assert_eq!(usb_storage["install"], "/bin/false");
    assert_eq!(usb_storage["install_disables_loading"], true);
    assert_eq!(controls["usbguard"]["daemon_config_present"], true);
    assert!(
        check["summary"]
            .as_str()
            .unwrap()
            .contains("usb-storage disabled by `install usb-storage /bin/false`"),
        "{check}"
    );
}

#[test]
fn a_blacklist_alone_is_reported_but_the_stick_still_fails() {
    let scenario =
        Scenario::from_fixture("sysfs-one-stick").with_fixture("modprobe/blacklist-only");
    let policy = scenario.policy("block", &[]);
    let check = scenario.check(Some(&policy)).expect(1, "fail");
    let usb_storage = &check["evidence"]["preventive_controls"]["modprobe"]["usb_storage"];
    assert_eq!(
        usb_storage["blacklisted_in"],
        serde_json::json!(["/etc/modprobe.d/blacklist-usb-storage.conf"])
    );
    assert_eq!(usb_storage["install_disables_loading"], false);
}

/// Where real sysfs puts a stick's disk (extra/SOURCES.md).
const STICK_DISK: &str = "sys/bus/usb/devices/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb";

#[test]
fn read_only_passes_a_write_protected_stick_and_fails_a_writable_one() {
    let scenario = Scenario::from_fixture("sysfs-one-stick");
    let policy = scenario.policy("read_only", &[]);
    // No SCSI subtree under the stick: whether it is read-only cannot be told.
    scenario.check(Some(&policy)).expect(3, "unknown");

    scenario.write(&format!("{STICK_DISK}/ro"), "1\n");
    scenario.write(&format!("{STICK_DISK}/sdb1/partition"), "1\n");
    scenario.write(&format!("{STICK_DISK}/sdb1/ro"), "1\n");
    let check = scenario.check(Some(&policy)).expect(0, "pass");
    assert_eq!(
        check["evidence"]["mass_storage_devices"][0]["decision"],
        "read_only"
    );

    scenario.write(&format!("{STICK_DISK}/ro"), "0\n");
    let check = scenario.check(Some(&policy)).expect(1, "fail");
    assert!(
        check["summary"]
            .as_str()
            .unwrap()
            .contains("is connected and writable (sdb)"),
        "{check}"
    );
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains("it must be read-only"),
        "{check}"
    );
}
