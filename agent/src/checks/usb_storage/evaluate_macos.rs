//! The macOS evaluator of `usb_storage`: from system_profiler's USB tree to
//! a verdict, device by device, with the same [`Decision`]s and allowlist
//! matching as Linux. Pure (no I/O, no clock), so it is tested on every OS.
//!
//! A device is mass storage when system_profiler lists `Media` under it: a
//! stick, a disk, or a card reader holding a card (an SD card in a hub's
//! built-in reader shows as the reader's medium). A reader with no card in
//! it lists no medium and holds no storage now.
//!
//! What macOS allows without an MDM profile decides the rest. Nothing a
//! root daemon can set stops a USB disk from being mounted again the next
//! time it is plugged in or someone clicks "Mount" in Disk Utility: only a
//! configuration profile's media-management restrictions can (and they do
//! not reach recent versions fully). So no device is ever "blocked" here:
//! in `block` mode every connected storage device that is not allowlisted
//! fails, mounted or not. In `read_only` mode a device passes when every
//! volume of it is mounted read-only (a locked SD card, a write-protect
//! switch, or `diskutil mount readOnly`); one with nothing mounted cannot be
//! judged and is `unknown`. A report that lists devices without their media
//! (`SPUSBHostDataType`, newer macOS) cannot tell storage from anything
//! else, so its devices are `unknown` unless the policy allows USB storage.

use palisade_shared::policy::{UsbDeviceMatch, UsbStorageMode, UsbStoragePolicy};
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::evaluate::{
    Decision, allowlist_decision, failing_and_unknown, failing_verdict, pass_summary,
};
use super::{MacUsbDevice, MacUsbFacts, UsbReportSource};
use crate::checks::Verdict;

pub(super) const FIX_READ_ONLY_MACOS: &str = "Remove the USB storage device, or ask IT to add it \
    to the allowlist if it is an approved encrypted device; otherwise it must be read-only: slide \
    its write-protect switch (an SD card's lock tab) to lock, then eject it in Finder and plug it \
    in again.";

/// Said in the evidence of every macOS verdict, so that nobody reads a
/// pass as a block.
const MACOS_LIMIT: &str = "without an MDM configuration profile macOS lets any user mount a USB \
    disk; the agent can only report it (and unmount it), not stop it from mounting again";

/// Whether the device holds storage now: `Some(true)` with media, `None`
/// when the report does not say.
fn holds_storage(device: &MacUsbDevice) -> Option<bool> {
    device.media.as_ref().map(|media| !media.is_empty())
}

pub(super) fn decide(device: &MacUsbDevice, policy: &UsbStoragePolicy) -> Decision {
    if let Some(decision) = allowlist_decision(
        policy,
        device.vendor_id,
        device.product_id,
        device.serial.as_deref(),
    ) {
        return decision;
    }
    if holds_storage(device).is_none() {
        return Decision::Unknown(
            "this macOS lists USB devices without their storage media, so whether it holds \
             storage cannot be told"
                .into(),
        );
    }
    match policy.storage {
        UsbStorageMode::Allow => Decision::PermittedByPolicy,
        UsbStorageMode::Block => Decision::NotAllowed,
        UsbStorageMode::ReadOnly => decide_read_only(device),
    }
}

fn decide_read_only(device: &MacUsbDevice) -> Decision {
    let mounted: Vec<_> = device
        .media
        .iter()
        .flatten()
        .flat_map(|medium| &medium.volumes)
        .filter(|volume| volume.mount_point.is_some())
        .collect();
    let label = |v: &super::MacUsbVolume| {
        format!(
            "{} on {}",
            v.bsd_name,
            v.mount_point.as_deref().unwrap_or_default()
        )
    };
    if mounted.is_empty() {
        return Decision::Unknown(
            "none of its volumes is mounted, so whether it is write-protected cannot be told"
                .into(),
        );
    }
    let writable: Vec<String> = mounted
        .iter()
        .filter(|v| v.writable == Some(true))
        .map(|v| label(v))
        .collect();
    if !writable.is_empty() {
        return Decision::Writable(writable);
    }
    if mounted.iter().any(|v| v.writable.is_none()) {
        return Decision::Unknown("macOS did not say whether a mounted volume is writable".into());
    }
    Decision::AllReadOnly(mounted.iter().map(|v| label(v)).collect())
}

/// `1f75:0917 (PenDrive)`.
pub(super) fn describe(device: &MacUsbDevice) -> String {
    let id = match (device.vendor_id, device.product_id) {
        (Some(vendor), Some(product)) => format!("{vendor:04x}:{product:04x}"),
        _ => "unknown id".to_owned(),
    };
    match &device.name {
        Some(name) => format!("{id} ({name})"),
        None => id,
    }
}

fn device_evidence(device: &MacUsbDevice, decision: &Decision) -> Value {
    let media: Option<Vec<Value>> = device.media.as_ref().map(|media| {
        media
            .iter()
            .map(|m| {
                json!({
                    "bsd_name": m.bsd_name,
                    "removable": m.removable,
                    "volumes": m.volumes.iter().map(|v| json!({
                        "bsd_name": v.bsd_name,
                        "mount_point": v.mount_point,
                        "writable": v.writable,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect()
    });
    json!({
        "name": device.name,
        "vendor_id": device.vendor_id.map(|id| format!("{id:04x}")),
        "product_id": device.product_id.map(|id| format!("{id:04x}")),
        "serial": device.serial,
        "manufacturer": device.manufacturer,
        "location_id": device.location_id,
        "media": media,
        "decision": decision.as_str(),
        "detail": decision.detail(),
    })
}

/// Decides the rule from the macOS facts.
pub fn evaluate(facts: &MacUsbFacts, policy: &UsbStoragePolicy) -> Verdict {
    let allowlist: Vec<String> = policy.allow.iter().map(UsbDeviceMatch::to_string).collect();
    let with_context = |verdict: Verdict| {
        verdict
            .with_evidence("storage", policy.storage.as_str())
            .with_evidence("allowlist", allowlist.clone())
            .with_evidence("macos_limit", MACOS_LIMIT)
    };
    let report = match &facts.report {
        Ok(report) => report,
        Err(reason) => {
            return with_context(Verdict::new(
                CheckStatus::Unknown,
                format!("cannot list the USB devices (system_profiler): {reason}"),
            ));
        }
    };
    if report.source == UsbReportSource::NoDevices && report.buses == 0 {
        // Every Mac has a USB bus; a report without one says nothing about
        // what is plugged in (macOS 26 has been seen to print an empty
        // `SPUSBDataType` with devices attached).
        return with_context(Verdict::new(
            CheckStatus::Unknown,
            "system_profiler listed no USB bus at all, so what is connected cannot be told",
        ))
        .with_evidence("report", report.source.as_str());
    }
    // Devices known not to hold storage are not judged at all.
    let decisions: Vec<(&MacUsbDevice, Decision)> = report
        .devices
        .iter()
        .filter(|device| holds_storage(device) != Some(false))
        .map(|device| (device, decide(device, policy)))
        .collect();
    let (failing, unknown) = failing_and_unknown(&decisions, |device| describe(device));
    let verdict = if !failing.is_empty() {
        failing_verdict(policy.storage, &failing, FIX_READ_ONLY_MACOS)
    } else if !unknown.is_empty() {
        Verdict::new(
            CheckStatus::Unknown,
            format!("could not determine: {}", unknown.join("; ")),
        )
    } else {
        Verdict::new(
            CheckStatus::Pass,
            pass_summary(policy.storage, decisions.len(), "", &[]),
        )
    };
    let evidence: Vec<Value> = decisions
        .iter()
        .map(|(device, decision)| device_evidence(device, decision))
        .collect();
    with_context(verdict)
        .with_evidence("report", report.source.as_str())
        .with_evidence("mass_storage_devices", evidence)
}

#[cfg(test)]
#[path = "tests_macos.rs"]
mod tests;
