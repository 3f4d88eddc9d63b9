//! The Windows evaluator, case by case. The instance ids follow Microsoft's
//! "Standard USB Identifiers"; the vendor and product ids are those of real
//! sticks (SanDisk Cruzer Blade 0781:5567, Kingston DataTraveler 0951:1666).
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use palisade_shared::policy::{UsbStorageMode, UsbStoragePolicy};
use palisade_shared::report::CheckStatus;

use super::evaluate;
use crate::checks::RegistryRead;
use crate::checks::usb_storage::tests::policy;
use crate::checks::usb_storage::{RemovableStoragePolicy, WindowsStorageDevice, WindowsUsbFacts};

const CRUZER: &str = r"USB\VID_0781&PID_5567\4C530001230512116283";
const KINGSTON: &str = r"USB\VID_0951&PID_1666\60A44C4138E3F1B0B9A40B17";
/// The policy was written at tick 1000, the devices arrive at 2000 unless a
/// case says otherwise.
const POLICY_WRITTEN: u64 = 1_000;
const ARRIVED: u64 = 2_000;

fn device(instance_id: &str) -> WindowsStorageDevice {
    WindowsStorageDevice {
        instance_id: instance_id.to_owned(),
        parent_instance_id: None,
        description: Some("USB Mass Storage Device".to_owned()),
        started: Some(true),
        arrived: Some(ARRIVED),
    }
}

fn facts(devices: Vec<WindowsStorageDevice>) -> WindowsUsbFacts {
    WindowsUsbFacts {
        usbstor_start: RegistryRead::Value(3),
        uaspstor_start: RegistryRead::Value(3),
        removable_storage_policy: RemovableStoragePolicy::default(),
        devices: Ok(devices),
    }
}

fn deny_write() -> RemovableStoragePolicy {
    RemovableStoragePolicy {
        deny_write: RegistryRead::Value(1),
        class_written: Some(POLICY_WRITTEN),
        ..RemovableStoragePolicy::default()
    }
}

fn deny_all() -> RemovableStoragePolicy {
    RemovableStoragePolicy {
        deny_all: RegistryRead::Value(1),
        deny_all_written: Some(POLICY_WRITTEN),
        ..RemovableStoragePolicy::default()
    }
}

#[track_caller]
fn check(
    facts: &WindowsUsbFacts,
    policy: &UsbStoragePolicy,
    status: CheckStatus,
    summary_has: &str,
) -> crate::checks::Verdict {
    let verdict = evaluate(facts, policy);
    assert_eq!(verdict.status, status, "{verdict:#?}");
    assert!(
        verdict.summary.contains(summary_has),
        "{:?} lacks {summary_has:?}",
        verdict.summary
    );
    verdict
}

#[test]
fn no_device_passes_and_names_the_switches_in_place() {
    let block = policy(UsbStorageMode::Block, &[]);
    check(
        &facts(vec![]),
        &block,
        CheckStatus::Pass,
        "no USB mass-storage device is connected; no preventive control is in place",
    );
    let mut disabled = facts(vec![]);
    disabled.usbstor_start = RegistryRead::Value(4);
    let verdict = check(
        &disabled,
        &block,
        CheckStatus::Pass,
        "in place: the USBSTOR driver is disabled (Start = 4)",
    );
    assert_eq!(verdict.evidence["preventive_controls"]["usbstor_start"], 4);
}

#[test]
fn a_device_tree_that_cannot_be_read_is_unknown_even_with_usbstor_disabled() {
    let mut unreadable = facts(vec![]);
    unreadable.usbstor_start = RegistryRead::Value(4);
    unreadable.devices = Err("SetupDiGetClassDevsW failed with 5".into());
    check(
        &unreadable,
        &policy(UsbStorageMode::Block, &[]),
        CheckStatus::Unknown,
        "cannot list the USB devices (SetupAPI): SetupDiGetClassDevsW failed with 5",
    );
}

#[test]
fn a_working_stick_fails_block_even_when_usbstor_was_disabled_after_it_arrived() {
    let mut plugged = facts(vec![device(CRUZER)]);
    plugged.usbstor_start = RegistryRead::Value(4);
    let verdict = check(
        &plugged,
        &policy(UsbStorageMode::Block, &[]),
        CheckStatus::Fail,
        "USB mass-storage device 0781:5567 (USB Mass Storage Device) is connected and not allowed",
    );
    assert!(verdict.fix.contains("allowlist"), "{}", verdict.fix);
    assert_eq!(
        verdict.evidence["mass_storage_devices"][0]["serial"],
        "4C530001230512116283"
    );
}

#[test]
fn a_device_without_a_running_driver_is_blocked() {
    let mut stopped = device(CRUZER);
    stopped.started = Some(false);
    check(
        &facts(vec![stopped]),
        &policy(UsbStorageMode::Block, &[]),
        CheckStatus::Pass,
        "no USB mass-storage device is connected (1 blocked by Windows)",
    );
}

#[test]
fn an_unreadable_driver_state_is_unknown_unless_the_policy_allows_it() {
    let mut unread = device(CRUZER);
    unread.started = None;
    let unread = facts(vec![unread]);
    check(
        &unread,
        &policy(UsbStorageMode::Block, &[]),
        CheckStatus::Unknown,
        "whether Windows runs a driver for it cannot be read",
    );
    check(
        &unread,
        &policy(UsbStorageMode::Allow, &[]),
        CheckStatus::Pass,
        "the policy allows USB storage; 1 mass-storage device is connected",
    );
}

#[test]
fn the_allowlist_matches_vendor_product_and_serial_in_any_case() {
    let plugged = facts(vec![device(CRUZER)]);
    for entry in [
        "0781:5567",
        "0781:5567:4C530001230512116283",
        "0781:5567:4c530001230512116283",
    ] {
        check(
            &plugged,
            &policy(UsbStorageMode::Block, &[entry]),
            CheckStatus::Pass,
            "only allowlisted USB mass-storage devices are connected",
        );
    }
    check(
        &plugged,
        &policy(UsbStorageMode::Block, &["0781:5567:OTHER"]),
        CheckStatus::Fail,
        "not allowed",
    );
    check(
        &plugged,
        &policy(UsbStorageMode::Block, &["0951:1666"]),
        CheckStatus::Fail,
        "not allowed",
    );
}

#[test]
fn a_made_up_instance_id_never_matches_a_serial_entry() {
    let plugged = facts(vec![device(r"USB\VID_0781&PID_5567\5&2b8e6d3b&0&2")]);
    check(
        &plugged,
        &policy(UsbStorageMode::Block, &["0781:5567:5"]),
        CheckStatus::Fail,
        "not allowed",
    );
    check(
        &plugged,
        &policy(UsbStorageMode::Block, &["0781:5567"]),
        CheckStatus::Pass,
        "only allowlisted",
    );
}

#[test]
fn a_composite_interface_takes_its_serial_from_its_parent() {
    let mut interface = device(r"USB\VID_0781&PID_5567&MI_00\6&1c3b4d5e&0&0000");
    interface.parent_instance_id = Some(CRUZER.to_owned());
    check(
        &facts(vec![interface.clone()]),
        &policy(UsbStorageMode::Block, &["0781:5567:4C530001230512116283"]),
        CheckStatus::Pass,
        "only allowlisted",
    );
    // A parent of other ids lends no serial.
    interface.parent_instance_id = Some(KINGSTON.to_owned());
    check(
        &facts(vec![interface]),
        &policy(UsbStorageMode::Block, &["0781:5567:4C530001230512116283"]),
        CheckStatus::Fail,
        "not allowed",
    );
}

#[test]
fn an_unparseable_id_is_unknown_only_when_there_is_an_allowlist_to_compare() {
    let odd = facts(vec![device(r"USB\VID_0781&PID_5567&REV_0100\X")]);
    check(
        &odd,
        &policy(UsbStorageMode::Block, &["0951:1666"]),
        CheckStatus::Unknown,
        "its vendor and product ids cannot be read",
    );
    check(
        &odd,
        &policy(UsbStorageMode::Block, &[]),
        CheckStatus::Fail,
        r"USB\VID_0781&PID_5567&REV_0100\X (USB Mass Storage Device) is connected and not allowed",
    );
}

#[test]
fn read_only_passes_only_when_write_denial_was_in_force_before_the_device_arrived() {
    let read_only = policy(UsbStorageMode::ReadOnly, &[]);
    let verdict = check(
        &facts(vec![device(CRUZER)]),
        &read_only,
        CheckStatus::Fail,
        "is connected and writable; the policy allows only read-only storage",
    );
    assert!(verdict.fix.contains("Deny write access"), "{}", verdict.fix);

    let mut denied = facts(vec![device(CRUZER)]);
    denied.removable_storage_policy = deny_write();
    check(
        &denied,
        &read_only,
        CheckStatus::Pass,
        "every connected USB mass-storage device is allowlisted or read-only",
    );
    denied.removable_storage_policy = deny_all();
    check(&denied, &read_only, CheckStatus::Pass, "read-only");

    let mut late = facts(vec![device(CRUZER)]);
    late.removable_storage_policy = RemovableStoragePolicy {
        class_written: Some(ARRIVED + 1),
        ..deny_write()
    };
    check(
        &late,
        &read_only,
        CheckStatus::Unknown,
        "the policy was written after the device was plugged in",
    );
    // No arrival time recorded: cannot be told, so not a pass.
    let mut untimed = device(CRUZER);
    untimed.arrived = None;
    let mut untimed = facts(vec![untimed]);
    untimed.removable_storage_policy = deny_write();
    check(
        &untimed,
        &read_only,
        CheckStatus::Unknown,
        "plugged in again",
    );
}

#[test]
fn deny_read_alone_does_not_make_a_device_read_only() {
    let mut denied = facts(vec![device(CRUZER)]);
    denied.removable_storage_policy = RemovableStoragePolicy {
        deny_read: RegistryRead::Value(1),
        class_written: Some(POLICY_WRITTEN),
        ..RemovableStoragePolicy::default()
    };
    check(
        &denied,
        &policy(UsbStorageMode::ReadOnly, &[]),
        CheckStatus::Fail,
        "writable",
    );
}

#[test]
fn block_counts_group_policy_only_when_it_denies_both_reading_and_writing() {
    let block = policy(UsbStorageMode::Block, &[]);
    let mut denied = facts(vec![device(CRUZER)]);
    denied.removable_storage_policy = deny_all();
    check(
        &denied,
        &block,
        CheckStatus::Pass,
        "no USB mass-storage device is connected (1 blocked by Windows)",
    );
    denied.removable_storage_policy = RemovableStoragePolicy {
        deny_read: RegistryRead::Value(1),
        ..deny_write()
    };
    check(&denied, &block, CheckStatus::Pass, "1 blocked by Windows");
    denied.removable_storage_policy = deny_write();
    check(&denied, &block, CheckStatus::Fail, "not allowed");
    denied.removable_storage_policy = RemovableStoragePolicy {
        deny_all_written: Some(ARRIVED + 5),
        ..deny_all()
    };
    check(&denied, &block, CheckStatus::Unknown, "plugged in again");
}

#[test]
fn an_unreadable_policy_value_is_unknown_not_a_pass() {
    let mut denied = facts(vec![device(CRUZER)]);
    denied.removable_storage_policy = RemovableStoragePolicy {
        deny_write: RegistryRead::Unreadable("Deny_Write is REG_SZ, not REG_DWORD".into()),
        ..RemovableStoragePolicy::default()
    };
    check(
        &denied,
        &policy(UsbStorageMode::ReadOnly, &[]),
        CheckStatus::Unknown,
        "the removable storage policy is unreadable: Deny_Write is REG_SZ",
    );
}

#[test]
fn a_deny_value_other_than_one_denies_nothing() {
    let mut denied = facts(vec![device(CRUZER)]);
    denied.removable_storage_policy = RemovableStoragePolicy {
        deny_write: RegistryRead::Value(0),
        ..deny_write()
    };
    check(
        &denied,
        &policy(UsbStorageMode::ReadOnly, &[]),
        CheckStatus::Fail,
        "writable",
    );
}

#[test]
fn several_failing_devices_are_all_named_and_a_failure_outranks_an_unknown() {
    let mut unread = device(KINGSTON);
    unread.started = None;
    let verdict = check(
        &facts(vec![device(CRUZER), device(KINGSTON), unread]),
        &policy(UsbStorageMode::Block, &[]),
        CheckStatus::Fail,
        "2 USB mass-storage devices are: 0781:5567 (USB Mass Storage Device), 0951:1666 (USB Mass \
         Storage Device)",
    );
    let decisions: Vec<&str> = verdict.evidence["mass_storage_devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["not_allowed", "not_allowed", "unknown"]);
}

#[test]
fn allow_mode_passes_whatever_is_connected() {
    check(
        &facts(vec![device(CRUZER), device(KINGSTON)]),
        &policy(UsbStorageMode::Allow, &[]),
        CheckStatus::Pass,
        "the policy allows USB storage; 2 mass-storage devices are connected",
    );
    check(
        &facts(vec![]),
        &policy(UsbStorageMode::Allow, &[]),
        CheckStatus::Pass,
        "the policy allows USB storage; none is connected",
    );
}

#[test]
fn the_evidence_carries_every_switch_as_read() {
    let mut read = facts(vec![]);
    read.uaspstor_start = RegistryRead::Absent;
    read.removable_storage_policy.deny_read = RegistryRead::Unreadable("access denied".into());
    let verdict = evaluate(&read, &policy(UsbStorageMode::Block, &["0781:5567"]));
    let controls = &verdict.evidence["preventive_controls"];
    assert_eq!(controls["usbstor_start"], 3);
    assert_eq!(controls["uaspstor_start"], "absent");
    assert_eq!(
        controls["removable_disks_deny_read"]["unreadable"],
        "access denied"
    );
    assert_eq!(verdict.evidence["allowlist"][0], "0781:5567");
    assert_eq!(verdict.evidence["storage"], "block");
}
