//! The Windows evaluator of `usb_storage`: from the present mass-storage
//! device nodes and the registry switches to a verdict, device by device,
//! with the same [`Decision`]s as Linux. Pure (no I/O, no clock), so it is
//! tested on every OS.
//!
//! As on Linux, the decision is made per connected device, never from the
//! preventive switches alone: `USBSTOR\Start = 4` stops the driver loading
//! for a device plugged in later but leaves one already working, so it is
//! evidence, and what decides is whether Windows runs a driver for the
//! device (`DN_STARTED`). The Group Policy "Removable Storage Access" values
//! count for a device only when they were written before it arrived:
//! Windows applies them when a device is plugged in or at restart, so a
//! value set afterwards may not hold yet, and the device is `unknown` until
//! it is replugged.

use palisade_shared::policy::{UsbDeviceMatch, UsbStorageMode, UsbStoragePolicy};
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::evaluate::{Decision, failing_and_unknown, failing_verdict, pass_summary};
use super::parse_windows::{UsbInstanceId, filetime_to_unix_seconds, parse_usb_instance_id};
use super::{RemovableStoragePolicy, WindowsStorageDevice, WindowsUsbFacts};
use crate::checks::{RegistryRead, Verdict};

/// `Start` of a driver service that Windows never loads.
const SERVICE_DISABLED: u32 = 4;

pub(super) const FIX_READ_ONLY_WINDOWS: &str = "Remove the USB storage device, or ask IT to add it \
    to the allowlist if it is an approved encrypted device; otherwise IT must deny writing to \
    removable disks (Group Policy: System > Removable Storage Access > Removable Disks: Deny \
    write access), and the device must then be unplugged and plugged in again.";

/// A Group Policy deny value as read: set to 1, and whether it was written
/// before the device arrived (`None`: cannot be told).
fn deny_applies(value: &RegistryRead<u32>, written: Option<u64>, arrived: Option<u64>) -> Denial {
    match value {
        RegistryRead::Value(1) => match (written, arrived) {
            (Some(written), Some(arrived)) if written < arrived => Denial::InForce,
            _ => Denial::SetSinceArrival,
        },
        RegistryRead::Unreadable(reason) => Denial::Unreadable(reason.clone()),
        _ => Denial::NotSet,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Denial {
    NotSet,
    InForce,
    /// Set, but after the device arrived (or when cannot be told).
    SetSinceArrival,
    Unreadable(String),
}

/// The strongest of two denials that both stop the same access.
fn either(a: Denial, b: Denial) -> Denial {
    use Denial::*;
    match (a, b) {
        (InForce, _) | (_, InForce) => InForce,
        (Unreadable(reason), _) | (_, Unreadable(reason)) => Unreadable(reason),
        (SetSinceArrival, _) | (_, SetSinceArrival) => SetSinceArrival,
        (NotSet, NotSet) => NotSet,
    }
}

/// Whether reading and writing are denied to this device by Group Policy.
fn denials(policy: &RemovableStoragePolicy, arrived: Option<u64>) -> (Denial, Denial) {
    let all = deny_applies(&policy.deny_all, policy.deny_all_written, arrived);
    let read = deny_applies(&policy.deny_read, policy.class_written, arrived);
    let write = deny_applies(&policy.deny_write, policy.class_written, arrived);
    (either(all.clone(), read), either(all, write))
}

const SET_SINCE_ARRIVAL: &str = "Group Policy denies it, but the policy was written after the \
    device was plugged in (or when cannot be told), so it may not hold until the device is \
    plugged in again";

/// The device's vendor, product and serial: an interface of a composite
/// device takes its serial from its parent.
fn identity(device: &WindowsStorageDevice) -> Option<UsbInstanceId> {
    let mut id = parse_usb_instance_id(&device.instance_id)?;
    if id.interface.is_some() {
        id.serial = device
            .parent_instance_id
            .as_deref()
            .and_then(parse_usb_instance_id)
            .filter(|parent| (parent.vendor_id, parent.product_id) == (id.vendor_id, id.product_id))
            .and_then(|parent| parent.serial);
    }
    Some(id)
}

/// Windows keeps instance ids in upper case, so a serial is compared
/// without regard to case.
fn matches(entry: &UsbDeviceMatch, id: &UsbInstanceId) -> bool {
    entry.vendor_id == id.vendor_id
        && entry.product_id == id.product_id
        && entry.serial.as_deref().is_none_or(|wanted| {
            id.serial
                .as_deref()
                .is_some_and(|serial| serial.eq_ignore_ascii_case(wanted))
        })
}

pub(super) fn decide(
    device: &WindowsStorageDevice,
    policy: &UsbStoragePolicy,
    removable: &RemovableStoragePolicy,
) -> Decision {
    if device.started == Some(false) {
        return Decision::Blocked(
            "Windows runs no driver for it (its storage driver is disabled)".into(),
        );
    }
    let id = identity(device);
    match &id {
        Some(id) => {
            if let Some(entry) = policy.allow.iter().find(|entry| matches(entry, id)) {
                return Decision::Allowlisted(entry.to_string());
            }
        }
        None if policy.allow.is_empty() => {}
        None => {
            return Decision::Unknown(
                "its vendor and product ids cannot be read to compare with the allowlist".into(),
            );
        }
    }
    if policy.storage == UsbStorageMode::Allow {
        return Decision::PermittedByPolicy;
    }
    if device.started.is_none() {
        return Decision::Unknown("whether Windows runs a driver for it cannot be read".into());
    }
    let (read, write) = denials(removable, device.arrived);
    match policy.storage {
        UsbStorageMode::Allow => Decision::PermittedByPolicy,
        UsbStorageMode::Block => match (read, write) {
            (Denial::InForce, Denial::InForce) => Decision::Blocked(
                "Group Policy denies reading and writing removable storage".into(),
            ),
            (Denial::Unreadable(reason), _) | (_, Denial::Unreadable(reason)) => Decision::Unknown(
                format!("the removable storage policy is unreadable: {reason}"),
            ),
            (Denial::NotSet, _) | (_, Denial::NotSet) => Decision::NotAllowed,
            _ => Decision::Unknown(SET_SINCE_ARRIVAL.into()),
        },
        UsbStorageMode::ReadOnly => match write {
            Denial::InForce => {
                Decision::AllReadOnly(vec!["Group Policy denies writing to it".into()])
            }
            Denial::NotSet => Decision::Writable(vec![describe(device)]),
            Denial::SetSinceArrival => Decision::Unknown(SET_SINCE_ARRIVAL.into()),
            Denial::Unreadable(reason) => Decision::Unknown(format!(
                "the removable storage policy is unreadable: {reason}"
            )),
        },
    }
}

/// `0781:5567 (SanDisk Cruzer Blade)`, or the instance id when it cannot be
/// read.
fn describe(device: &WindowsStorageDevice) -> String {
    let id = identity(device).map_or_else(
        || device.instance_id.clone(),
        |id| format!("{:04x}:{:04x}", id.vendor_id, id.product_id),
    );
    match &device.description {
        Some(name) => format!("{id} ({name})"),
        None => id,
    }
}

fn controls(facts: &WindowsUsbFacts) -> (Value, Vec<String>) {
    let policy = &facts.removable_storage_policy;
    let mut in_place = Vec::new();
    if facts.usbstor_start == RegistryRead::Value(SERVICE_DISABLED) {
        in_place.push("the USBSTOR driver is disabled (Start = 4)".to_owned());
    }
    if facts.uaspstor_start == RegistryRead::Value(SERVICE_DISABLED) {
        in_place.push("the UASPStor driver is disabled (Start = 4)".to_owned());
    }
    if policy.deny_all == RegistryRead::Value(1) {
        in_place.push("Group Policy denies all removable storage (Deny_All)".to_owned());
    }
    if policy.deny_read == RegistryRead::Value(1) {
        in_place.push("Group Policy denies reading removable disks (Deny_Read)".to_owned());
    }
    if policy.deny_write == RegistryRead::Value(1) {
        in_place.push("Group Policy denies writing to removable disks (Deny_Write)".to_owned());
    }
    let evidence = json!({
        "usbstor_start": facts.usbstor_start.evidence(),
        "uaspstor_start": facts.uaspstor_start.evidence(),
        "deny_all": policy.deny_all.evidence(),
        "removable_disks_deny_read": policy.deny_read.evidence(),
        "removable_disks_deny_write": policy.deny_write.evidence(),
    });
    (evidence, in_place)
}

fn device_evidence(device: &WindowsStorageDevice, decision: &Decision) -> Value {
    let id = identity(device);
    json!({
        "instance_id": device.instance_id,
        "description": device.description,
        "vendor_id": id.as_ref().map(|id| format!("{:04x}", id.vendor_id)),
        "product_id": id.as_ref().map(|id| format!("{:04x}", id.product_id)),
        "serial": id.as_ref().and_then(|id| id.serial.clone()),
        "driver_started": device.started,
        "arrived_unix": device.arrived.map(filetime_to_unix_seconds),
        "decision": decision.as_str(),
        "detail": decision.detail(),
    })
}

/// Decides the rule from the Windows facts.
pub fn evaluate(facts: &WindowsUsbFacts, policy: &UsbStoragePolicy) -> Verdict {
    let (controls, in_place) = controls(facts);
    let allowlist: Vec<String> = policy.allow.iter().map(UsbDeviceMatch::to_string).collect();
    let with_context = |verdict: Verdict| {
        verdict
            .with_evidence("storage", policy.storage.as_str())
            .with_evidence("allowlist", allowlist.clone())
            .with_evidence("preventive_controls", controls.clone())
            .with_evidence("preventive_controls_in_place", in_place.clone())
    };
    let devices = match &facts.devices {
        Ok(devices) => devices,
        Err(reason) => {
            return with_context(Verdict::new(
                CheckStatus::Unknown,
                format!("cannot list the USB devices (SetupAPI): {reason}"),
            ));
        }
    };
    let decisions: Vec<(&WindowsStorageDevice, Decision)> = devices
        .iter()
        .map(|device| {
            (
                device,
                decide(device, policy, &facts.removable_storage_policy),
            )
        })
        .collect();
    let (failing, unknown) = failing_and_unknown(&decisions, |device| describe(device));
    let blocked = decisions
        .iter()
        .filter(|(_, d)| matches!(d, Decision::Blocked(_)))
        .count();
    let connected = decisions.len() - blocked;
    let blocked_note = if blocked == 0 {
        String::new()
    } else {
        format!(" ({blocked} blocked by Windows)")
    };

    let verdict = if !failing.is_empty() {
        failing_verdict(policy.storage, &failing, FIX_READ_ONLY_WINDOWS)
    } else if !unknown.is_empty() {
        Verdict::new(
            CheckStatus::Unknown,
            format!("could not determine: {}", unknown.join("; ")),
        )
    } else {
        let summary = pass_summary(policy.storage, connected, &blocked_note, &in_place);
        Verdict::new(CheckStatus::Pass, summary)
    };
    let evidence_devices: Vec<Value> = decisions
        .iter()
        .map(|(device, decision)| device_evidence(device, decision))
        .collect();
    with_context(verdict).with_evidence("mass_storage_devices", evidence_devices)
}

#[cfg(test)]
#[path = "tests_windows.rs"]
mod tests;
