//! The Windows agent for real, under Wine: the cross-built
//! `palisade-agent.exe` reads Wine's real registry (values set with
//! `reg.exe`) and its verdicts are asserted. What Wine cannot show
//! (BitLocker, the password policy APIs, USB devices) must say `unknown`,
//! never `pass`.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use palisade_tests::check_of;
use palisade_tests::wine::{WinePrefix, windows_path};

const SYSTEM_POLICIES: &str = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System";
const USER_DESKTOP: &str = r"HKCU\Control Panel\Desktop";
const USER_POLICY_DESKTOP: &str = r"HKCU\Software\Policies\Microsoft\Windows\Control Panel\Desktop";
const USBSTOR: &str = r"HKLM\SYSTEM\CurrentControlSet\Services\USBSTOR";
const REMOVABLE_DISKS: &str = r"HKLM\SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices\{53f5630d-b6bf-11d0-94f2-00a0c91efb8b}";

fn screen_lock(prefix: &WinePrefix) -> (String, String) {
    let run = prefix.agent(&["check", "--json", "--rule", "screen_lock"]);
    let report = run.json();
    let check = check_of(&report, "screen_lock");
    (
        check["status"].as_str().unwrap_or_default().to_owned(),
        check["summary"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn a_fresh_windows_fails_screen_lock_and_says_unknown_where_it_cannot_see() {
    let prefix = WinePrefix::new();
    let run = prefix.agent(&["check", "--json"]);
    let report = run.json();
    assert_eq!(report["agent"]["os"], "windows", "{}", run.dump());
    let screen = check_of(&report, "screen_lock");
    assert_eq!(screen["status"], "fail", "{}", run.dump());
    assert!(
        screen["summary"]
            .as_str()
            .unwrap()
            .contains("no screen saver is chosen"),
        "{}",
        run.dump()
    );
    assert!(
        screen["fix"]
            .as_str()
            .unwrap()
            .contains("Machine inactivity limit"),
        "{}",
        run.dump()
    );
    // SetupAPI answers, and Wine's device tree has no USB stick in it.
    let usb = check_of(&report, "usb_storage");
    assert_eq!(usb["status"], "pass", "{}", run.dump());
    assert!(
        usb["summary"]
            .as_str()
            .unwrap()
            .contains("no USB mass-storage device is connected"),
        "{}",
        run.dump()
    );
    for rule in ["disk_encryption", "password_policy"] {
        assert_eq!(
            check_of(&report, rule)["status"],
            "unknown",
            "{rule}\n{}",
            run.dump()
        );
    }
    // The real API was asked, and Wine's answer is the reason.
    let password = check_of(&report, "password_policy");
    assert!(
        password["summary"]
            .as_str()
            .unwrap()
            .contains("NetUserModalsGet level 0 failed with 2140"),
        "{}",
        run.dump()
    );
    let disk = check_of(&report, "disk_encryption");
    assert!(
        disk["summary"]
            .as_str()
            .unwrap()
            .contains("0x8004100E (WBEM_E_INVALID_NAMESPACE"),
        "{}",
        run.dump()
    );
}

#[test]
fn the_machine_inactivity_limit_is_read_from_the_registry() {
    let prefix = WinePrefix::new();
    prefix.reg_add(SYSTEM_POLICIES, "InactivityTimeoutSecs", "REG_DWORD", "600");
    let (status, summary) = screen_lock(&prefix);
    assert_eq!(status, "pass", "{summary}");
    assert!(
        summary.contains("600 s idle (machine inactivity limit)"),
        "{summary}"
    );

    prefix.reg_add(
        SYSTEM_POLICIES,
        "InactivityTimeoutSecs",
        "REG_DWORD",
        "1800",
    );
    let (status, summary) = screen_lock(&prefix);
    assert_eq!(status, "fail", "{summary}");
    assert!(summary.contains("after 1800 s idle"), "{summary}");

    // The wrong type is not what Windows reads: unknown, not a pass.
    prefix.reg_delete(SYSTEM_POLICIES, "InactivityTimeoutSecs");
    prefix.reg_add(SYSTEM_POLICIES, "InactivityTimeoutSecs", "REG_SZ", "600");
    let (status, summary) = screen_lock(&prefix);
    assert_eq!(status, "unknown", "{summary}");
    assert!(summary.contains("InactivityTimeoutSecs"), "{summary}");
}

#[test]
fn a_users_screen_saver_counts_and_group_policy_overrides_it() {
    let prefix = WinePrefix::new();
    for (name, data) in [
        ("SCRNSAVE.EXE", r"C:\windows\system32\scrnsave.scr"),
        ("ScreenSaveActive", "1"),
        ("ScreenSaverIsSecure", "1"),
        ("ScreenSaveTimeOut", "300"),
    ] {
        prefix.reg_add(USER_DESKTOP, name, "REG_SZ", data);
    }
    let (status, summary) = screen_lock(&prefix);
    assert_eq!(status, "pass", "{summary}");
    assert!(
        summary.contains("after 300 s idle for S-1-5-21-"),
        "{summary}"
    );

    prefix.reg_add(USER_POLICY_DESKTOP, "ScreenSaveTimeOut", "REG_SZ", "3600");
    let (status, summary) = screen_lock(&prefix);
    assert_eq!(status, "fail", "{summary}");
    assert!(summary.contains("after 3600 s idle"), "{summary}");

    prefix.reg_add(USER_POLICY_DESKTOP, "ScreenSaveTimeOut", "REG_SZ", "600");
    prefix.reg_add(USER_DESKTOP, "ScreenSaverIsSecure", "REG_SZ", "0");
    let (status, summary) = screen_lock(&prefix);
    assert_eq!(status, "fail", "{summary}");
    assert!(summary.contains("ScreenSaverIsSecure is 0"), "{summary}");
}

#[test]
fn enforce_sets_the_machine_inactivity_limit_and_undo_restores_it() {
    let prefix = WinePrefix::new();
    let limit = || prefix.reg_query(SYSTEM_POLICIES, "InactivityTimeoutSecs");

    // Absent before: enforce sets the policy's 900 s, undo deletes it again.
    let enforced = prefix.agent(&["enforce", "--rule", "screen_lock"]);
    assert_eq!(enforced.exit_code, Some(0), "{}", enforced.dump());
    assert!(
        enforced.stdout.contains("applied (re-check: pass)"),
        "{}",
        enforced.dump()
    );
    assert_eq!(limit().as_deref(), Some("0x384"), "{}", enforced.dump());
    let undone = prefix.agent(&["enforce", "--undo", "screen_lock"]);
    assert_eq!(undone.exit_code, Some(0), "{}", undone.dump());
    assert_eq!(limit(), None, "{}", undone.dump());

    // A longer limit is replaced, and undo puts exactly it back.
    prefix.reg_add(
        SYSTEM_POLICIES,
        "InactivityTimeoutSecs",
        "REG_DWORD",
        "1800",
    );
    let enforced = prefix.agent(&["enforce", "--rule", "screen_lock"]);
    assert_eq!(enforced.exit_code, Some(0), "{}", enforced.dump());
    assert_eq!(limit().as_deref(), Some("0x384"), "{}", enforced.dump());
    let undone = prefix.agent(&["enforce", "--undo", "screen_lock"]);
    assert_eq!(undone.exit_code, Some(0), "{}", undone.dump());
    assert_eq!(limit().as_deref(), Some("0x708"), "{}", undone.dump());

    // A stricter limit IT set is kept.
    prefix.reg_add(SYSTEM_POLICIES, "InactivityTimeoutSecs", "REG_DWORD", "600");
    let enforced = prefix.agent(&["enforce", "--rule", "screen_lock"]);
    assert!(
        enforced.stdout.contains("already compliant"),
        "{}",
        enforced.dump()
    );
    assert_eq!(limit().as_deref(), Some("0x258"), "{}", enforced.dump());
}

#[test]
fn rules_without_a_windows_enforcer_refuse_and_write_no_linux_paths() {
    let prefix = WinePrefix::new();
    let run = prefix.agent(&["enforce", "--rule", "password_policy"]);
    assert_ne!(run.exit_code, Some(0), "{}", run.dump());
    let what = "no password policy enforcer for windows yet";
    assert!(
        run.stdout.contains(what) || run.stderr.contains(what),
        "{}",
        run.dump()
    );
    // `/etc/...` on a live Windows lands on the current drive: C:\etc, or
    // under Wine (whose Z: is the Linux root) this machine's own /etc.
    assert!(!prefix.path().join("drive_c/etc").exists());
}

/// The baseline policy with `usb_storage` changed, written into the prefix;
/// its path as the agent under Wine sees it.
fn usb_policy(prefix: &WinePrefix, storage: &str, allow: &str) -> String {
    let baseline = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/policy.toml"),
    )
    .unwrap();
    let changed = baseline
        .replace("storage = \"block\"", &format!("storage = \"{storage}\""))
        .replace("allow = []", &format!("allow = [{allow}]"));
    assert_ne!(changed, baseline, "the baseline's usb_storage table moved");
    let path = prefix.path().join("usb-policy.toml");
    std::fs::write(&path, changed).unwrap();
    windows_path(&path)
}

#[test]
fn enforce_block_switches_the_storage_drivers_off_and_undo_restores_them() {
    let prefix = WinePrefix::new();
    // Wine has no USBSTOR service; a real Windows has it at 3 (on demand).
    prefix.reg_add(USBSTOR, "Start", "REG_DWORD", "3");
    let enforced = prefix.agent(&["enforce", "--rule", "usb_storage"]);
    assert_eq!(enforced.exit_code, Some(0), "{}", enforced.dump());
    assert!(
        enforced.stdout.contains("applied (re-check: pass)"),
        "{}",
        enforced.dump()
    );
    assert_eq!(prefix.reg_query(USBSTOR, "Start").as_deref(), Some("0x4"));
    assert_eq!(
        prefix.reg_query(REMOVABLE_DISKS, "Deny_Read").as_deref(),
        Some("0x1")
    );
    assert_eq!(
        prefix.reg_query(REMOVABLE_DISKS, "Deny_Write").as_deref(),
        Some("0x1")
    );
    let run = prefix.agent(&["check", "--json", "--rule", "usb_storage"]);
    let usb = check_of(&run.json(), "usb_storage").clone();
    assert_eq!(usb["status"], "pass", "{}", run.dump());
    assert!(
        usb["summary"]
            .as_str()
            .unwrap()
            .contains("in place: the USBSTOR driver is disabled (Start = 4)"),
        "{}",
        run.dump()
    );
    assert_eq!(usb["evidence"]["preventive_controls"]["usbstor_start"], 4);

    let undone = prefix.agent(&["enforce", "--undo", "usb_storage"]);
    assert_eq!(undone.exit_code, Some(0), "{}", undone.dump());
    assert_eq!(prefix.reg_query(USBSTOR, "Start").as_deref(), Some("0x3"));
    assert_eq!(prefix.reg_query(REMOVABLE_DISKS, "Deny_Read"), None);
    assert_eq!(prefix.reg_query(REMOVABLE_DISKS, "Deny_Write"), None);
}

#[test]
fn enforce_read_only_denies_writing_and_an_allowlist_is_refused() {
    let prefix = WinePrefix::new();
    let read_only = usb_policy(&prefix, "read_only", "");
    let enforced = prefix.agent(&["enforce", "--rule", "usb_storage", "--policy", &read_only]);
    assert_eq!(enforced.exit_code, Some(0), "{}", enforced.dump());
    assert_eq!(
        prefix.reg_query(REMOVABLE_DISKS, "Deny_Write").as_deref(),
        Some("0x1")
    );
    assert_eq!(prefix.reg_query(REMOVABLE_DISKS, "Deny_Read"), None);
    assert_eq!(prefix.reg_query(USBSTOR, "Start"), None);
    let undone = prefix.agent(&["enforce", "--undo", "usb_storage"]);
    assert_eq!(undone.exit_code, Some(0), "{}", undone.dump());
    assert_eq!(prefix.reg_query(REMOVABLE_DISKS, "Deny_Write"), None);

    let allowlisted = usb_policy(&prefix, "block", "\"0781:5567\"");
    let refused = prefix.agent(&["enforce", "--rule", "usb_storage", "--policy", &allowlisted]);
    assert_ne!(refused.exit_code, Some(0), "{}", refused.dump());
    assert!(
        (refused.stdout.clone() + &refused.stderr).contains("would block the allowlisted devices"),
        "{}",
        refused.dump()
    );
    assert_eq!(prefix.reg_query(USBSTOR, "Start"), None);
    assert_eq!(prefix.reg_query(REMOVABLE_DISKS, "Deny_Read"), None);
}
