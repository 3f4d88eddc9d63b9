//! The evaluator of `usb_storage`: from the connected USB devices and the
//! preventive controls to a verdict, device by device. Pure (no I/O, no
//! clock), so it compiles and is tested on every OS. The enforcer decides
//! each device with this file's [`decide`], so the two never disagree.

use palisade_shared::policy::{UsbDeviceMatch, UsbStorageMode, UsbStoragePolicy};
use palisade_shared::report::CheckStatus;
use serde_json::{Map, Value, json};

use std::collections::BTreeSet;

use super::evidence::controls_evidence;
use super::{
    BlockDeviceScan, InterfaceDriver, LinuxUsbFacts, MASS_STORAGE_CLASS, ModprobeControls, UsbBus,
    UsbDevice, UsbInterface,
};
use crate::checks::Verdict;

pub(super) const FIX_BLOCK: &str = "Remove the USB storage device, or ask IT to add it to the allowlist \
                         if it is an approved encrypted device.";
/// The check reads the kernel's read-only flag of the block device, which a
/// read-only mount does not set: the fix names what does.
pub(super) const FIX_READ_ONLY: &str = "Remove the USB storage device, or ask IT to add it to the \
                             allowlist if it is an approved encrypted device; otherwise it must \
                             be read-only: slide its write-protect switch to lock, or ask IT to \
                             set it read-only (blockdev --setro).";

/// What was decided about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The kernel lets no storage driver work with it: the device or its
    /// storage interfaces are deauthorized, or unbound with no driver able
    /// to load. Why, in words.
    Blocked(String),
    Allowlisted(String),
    PermittedByPolicy,
    AllReadOnly(Vec<String>),
    NotAllowed,
    Writable(Vec<String>),
    Unknown(String),
}

impl Decision {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::Blocked(_) => "blocked",
            Self::Allowlisted(_) => "allowlisted",
            Self::PermittedByPolicy => "allowed_by_policy",
            Self::AllReadOnly(_) => "read_only",
            Self::NotAllowed => "not_allowed",
            Self::Writable(_) => "writable",
            Self::Unknown(_) => "unknown",
        }
    }

    pub(crate) fn detail(&self) -> String {
        match self {
            Self::Blocked(why) => why.clone(),
            Self::Allowlisted(entry) => format!("matches allowlist entry {entry}"),
            Self::PermittedByPolicy => "the policy allows USB storage".into(),
            Self::AllReadOnly(names) => format!("read-only: {}", names.join(", ")),
            Self::NotAllowed => "connected and not on the allowlist".into(),
            Self::Writable(names) => format!("writable: {}", names.join(", ")),
            Self::Unknown(reason) => reason.clone(),
        }
    }
}

/// Whether a device offers mass storage: `Some(true)` when an interface has
/// class 08, `None` when an interface's class could not be read and none is
/// 08. A deauthorized device without interfaces is `None` too: the kernel
/// removes a device's interfaces when it deauthorizes it
/// (`usb_deauthorize_device` unsets the configuration), so there is nothing
/// left to tell.
pub(crate) fn is_mass_storage(device: &UsbDevice) -> Option<bool> {
    if !device.authorized && device.interfaces.is_empty() {
        return None;
    }
    if device
        .interfaces
        .iter()
        .any(|i| i.class == Some(MASS_STORAGE_CLASS))
    {
        Some(true)
    } else if device.interfaces.iter().any(|i| i.class.is_none()) {
        None
    } else {
        Some(false)
    }
}

pub(crate) fn id_text(device: &UsbDevice) -> Option<String> {
    Some(format!(
        "{:04x}:{:04x}",
        device.vendor_id?, device.product_id?
    ))
}

/// `0781:5567 (SanDisk Cruzer Blade)`, or the sysfs name when the ids are
/// unreadable.
pub(crate) fn device_label(device: &UsbDevice) -> String {
    let names: Vec<&str> = [device.manufacturer.as_deref(), device.product.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let id = id_text(device).unwrap_or_else(|| format!("at {} (ids unreadable)", device.name));
    if names.is_empty() {
        id
    } else {
        format!("{id} ({})", names.join(" "))
    }
}

/// Whether a USB storage driver can still bind to an interface that has
/// none now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DriverLoading {
    /// Neither `usb_storage` nor `uas` is in the kernel and loading
    /// `usb-storage` is replaced by a command that loads nothing (or the
    /// kernel loads no modules at all). Why, in words.
    Prevented(String),
    /// A `modprobe` (udev's, on the next uevent, or anyone's) can bind one.
    Possible,
}

/// Decides [`DriverLoading`] from the kmod configuration and the modules in
/// the kernel. Only `usb-storage`'s `install` line matters: `uas` depends on
/// it, and kmod replaces the dependency's load with the command too (the
/// dry runs in the fixtures' SOURCES.md), while `usb-storage` alone drives a
/// UAS device through its bulk-only setting. Each module must be seen absent
/// from both `/proc/modules` and `/sys/module` (built-in ones are only in
/// the latter), and anything unread keeps loading possible.
pub(crate) fn driver_loading(
    modprobe: &Result<ModprobeControls, String>,
    loaded_modules: &Result<Option<BTreeSet<String>>, String>,
    sys_module: &Result<Option<BTreeSet<String>>, String>,
) -> DriverLoading {
    const STORAGE_MODULES: [&str; 2] = ["usb_storage", "uas"];
    let (Ok(Some(loaded)), Ok(Some(in_kernel))) = (loaded_modules, sys_module) else {
        return DriverLoading::Possible;
    };
    if STORAGE_MODULES
        .iter()
        .any(|m| loaded.contains(*m) || in_kernel.contains(*m))
    {
        return DriverLoading::Possible;
    }
    match modprobe {
        Ok(config) => match (
            &config.usb_storage.install,
            config.usb_storage.install_disables_loading(),
        ) {
            (Some(line), true) => DriverLoading::Prevented(format!(
                "usb-storage and uas are not in the kernel, and `install usb-storage {}` in {} \
                 replaces loading them",
                line.value, line.file
            )),
            _ => DriverLoading::Possible,
        },
        Err(_) => DriverLoading::Possible,
    }
}

/// Why the kernel lets nothing use a mass-storage interface, or `None` when
/// a storage driver is, or can be, bound to it.
fn interface_blocked(interface: &UsbInterface, loading: &DriverLoading) -> Option<String> {
    if !interface.authorized {
        return Some(format!(
            "the kernel has deauthorized its mass-storage interface {} (authorized = 0)",
            interface.name
        ));
    }
    match (&interface.driver, loading) {
        (InterfaceDriver::NotBound, DriverLoading::Prevented(why)) => Some(format!(
            "no driver is bound to its mass-storage interface {} and none can load: {why}",
            interface.name
        )),
        _ => None,
    }
}

pub(crate) fn decide(
    device: &UsbDevice,
    policy: &UsbStoragePolicy,
    loading: &DriverLoading,
) -> Decision {
    if !device.authorized {
        return Decision::Blocked("the kernel has deauthorized the device (authorized = 0)".into());
    }
    let mass_storage = is_mass_storage(device);
    // Only the storage interfaces a driver can use count: a composite
    // device's keyboard interface stays usable when its storage is blocked.
    let mut blocked_reasons = Vec::new();
    let mut storage_interfaces: Vec<&UsbInterface> = Vec::new();
    for interface in device
        .interfaces
        .iter()
        .filter(|i| i.class == Some(MASS_STORAGE_CLASS))
    {
        match interface_blocked(interface, loading) {
            Some(reason) => blocked_reasons.push(reason),
            None => storage_interfaces.push(interface),
        }
    }
    if mass_storage == Some(true) && storage_interfaces.is_empty() {
        return Decision::Blocked(blocked_reasons.join("; "));
    }
    if let Some(decision) = allowlist_decision(
        policy,
        device.vendor_id,
        device.product_id,
        device.serial.as_deref(),
    ) {
        return decision;
    }
    if mass_storage.is_none() {
        return Decision::Unknown(
            "the class of one of its interfaces cannot be read, so it may be mass storage".into(),
        );
    }
    match policy.storage {
        UsbStorageMode::Allow => Decision::PermittedByPolicy,
        UsbStorageMode::Block => Decision::NotAllowed,
        UsbStorageMode::ReadOnly => decide_read_only(&storage_interfaces),
    }
}

pub(super) fn decide_read_only(storage_interfaces: &[&UsbInterface]) -> Decision {
    let mut read_only = Vec::new();
    let mut writable = Vec::new();
    let mut problems = Vec::new();
    for interface in storage_interfaces {
        match &interface.block_devices {
            BlockDeviceScan::Found(devices) => {
                for device in devices {
                    match device.read_only {
                        Some(true) => read_only.push(device.name.clone()),
                        Some(false) => writable.push(device.name.clone()),
                        None => {
                            problems.push(format!("the ro flag of {} is unreadable", device.name))
                        }
                    }
                }
            }
            BlockDeviceScan::Failed(reason) => problems.push(reason.clone()),
            BlockDeviceScan::NotScanned => problems.push(format!(
                "interface {} was not searched for block devices",
                interface.name
            )),
        }
    }
    if !writable.is_empty() {
        Decision::Writable(writable)
    } else if !problems.is_empty() {
        Decision::Unknown(problems.join("; "))
    } else if read_only.is_empty() {
        Decision::Unknown(
            "no block device was found under it, so whether it is read-only cannot be told".into(),
        )
    } else {
        Decision::AllReadOnly(read_only)
    }
}

pub(super) fn device_evidence(
    device: &UsbDevice,
    mass_storage: Option<bool>,
    decision: &Decision,
) -> Value {
    let interfaces: Vec<Value> = device
        .interfaces
        .iter()
        .map(|i| {
            let mut entry = json!({
                "name": i.name,
                "class": i.class.map(|c| format!("{c:02x}")),
                "subclass": i.subclass.map(|c| format!("{c:02x}")),
                "protocol": i.protocol.map(|c| format!("{c:02x}")),
                "authorized": i.authorized,
                "driver": match &i.driver {
                    InterfaceDriver::Bound(name) => json!(name),
                    InterfaceDriver::NotBound => Value::Null,
                    InterfaceDriver::Unreadable(reason) => json!(format!("unknown: {reason}")),
                },
            });
            match &i.block_devices {
                BlockDeviceScan::NotScanned => {}
                BlockDeviceScan::Found(found) => {
                    entry["block_devices"] = found
                        .iter()
                        .map(|b| json!({ "name": b.name, "read_only": b.read_only }))
                        .collect();
                }
                BlockDeviceScan::Failed(reason) => {
                    entry["block_devices"] = json!(format!("unknown: {reason}"));
                }
            }
            entry
        })
        .collect();
    let mut value = json!({
        "device": device.name,
        "id": id_text(device),
        "serial": device.serial,
        "manufacturer": device.manufacturer,
        "product": device.product,
        "bus": device.busnum,
        "devnum": device.devnum,
        "authorized": device.authorized,
        "mass_storage": mass_storage,
        "interfaces": interfaces,
        "decision": decision.as_str(),
        "detail": decision.detail(),
    });
    if !device.read_problems.is_empty() {
        value["read_problems"] = json!(device.read_problems);
    }
    value
}

/// The verdict when devices fail, the same words on every OS: `failing`
/// names them, `read_only_fix` is the system's own way to make one
/// read-only.
pub(super) fn failing_verdict(
    storage: UsbStorageMode,
    failing: &[String],
    read_only_fix: &str,
) -> Verdict {
    let what = if storage == UsbStorageMode::ReadOnly {
        "connected and writable; the policy allows only read-only storage"
    } else {
        "connected and not allowed"
    };
    let subject = match failing {
        [one] => format!("USB mass-storage device {one} is"),
        many => format!(
            "{} USB mass-storage devices are: {} —",
            many.len(),
            many.join(", ")
        ),
    };
    Verdict::new(CheckStatus::Fail, format!("{subject} {what}")).with_fix(
        if storage == UsbStorageMode::ReadOnly {
            read_only_fix
        } else {
            FIX_BLOCK
        },
    )
}

/// The decision the allowlist and an `allow` policy make before the
/// device itself is looked at: allowlisted by vendor, product and serial;
/// `unknown` when its ids cannot be read and there is an allowlist to
/// compare with; permitted when the policy allows USB storage. `None`: the
/// device must be judged.
pub(super) fn allowlist_decision(
    policy: &UsbStoragePolicy,
    vendor_id: Option<u16>,
    product_id: Option<u16>,
    serial: Option<&str>,
) -> Option<Decision> {
    let entry = match (vendor_id, product_id) {
        (Some(vendor), Some(product)) => policy
            .allow
            .iter()
            .find(|entry| entry.matches(vendor, product, serial)),
        _ if policy.allow.is_empty() => None,
        _ => {
            return Some(Decision::Unknown(
                "its vendor and product ids cannot be read to compare with the allowlist".into(),
            ));
        }
    };
    match entry {
        Some(entry) => Some(Decision::Allowlisted(entry.to_string())),
        None if policy.storage == UsbStorageMode::Allow => Some(Decision::PermittedByPolicy),
        None => None,
    }
}

/// The devices that fail and those that cannot be judged, each as
/// `describe` names it (the unknown ones with the reason).
pub(super) fn failing_and_unknown<D>(
    decisions: &[(D, Decision)],
    describe: impl Fn(&D) -> String,
) -> (Vec<String>, Vec<String>) {
    let failing = decisions
        .iter()
        .filter(|(_, d)| matches!(d, Decision::NotAllowed | Decision::Writable(_)))
        .map(|(device, _)| describe(device))
        .collect();
    let unknown = decisions
        .iter()
        .filter_map(|(device, d)| match d {
            Decision::Unknown(reason) => Some(format!("{}: {reason}", describe(device))),
            _ => None,
        })
        .collect();
    (failing, unknown)
}

/// The summary of a pass, the same words on every OS: `blocked` is the
/// note on devices the system blocked (`" (2 blocked by the kernel)"` or
/// empty), `in_place` the preventive controls found.
pub(super) fn pass_summary(
    storage: UsbStorageMode,
    connected: usize,
    blocked: &str,
    in_place: &[String],
) -> String {
    match (storage, connected) {
        (UsbStorageMode::Allow, 0) => {
            format!("the policy allows USB storage; none is connected{blocked}")
        }
        (UsbStorageMode::Allow, n) => format!(
            "the policy allows USB storage; {n} mass-storage device{} connected{blocked}",
            if n == 1 { " is" } else { "s are" }
        ),
        (_, 0) => {
            let controls = if in_place.is_empty() {
                "no preventive control is in place, so one plugged in later is caught at the \
                 next check"
                    .to_owned()
            } else {
                format!("in place: {}", in_place.join("; "))
            };
            format!("no USB mass-storage device is connected{blocked}; {controls}")
        }
        (UsbStorageMode::ReadOnly, _) => {
            format!("every connected USB mass-storage device is allowlisted or read-only{blocked}")
        }
        (UsbStorageMode::Block, _) => {
            format!("only allowlisted USB mass-storage devices are connected{blocked}")
        }
    }
}

/// Decides the rule from the facts.
pub fn evaluate(facts: &LinuxUsbFacts, policy: &UsbStoragePolicy) -> Verdict {
    let (mut controls, mut in_place) = controls_evidence(&facts.controls);
    let loading = driver_loading(
        &facts.controls.modprobe,
        &facts.controls.loaded_modules,
        &facts.controls.sys_module,
    );
    let allowlist: Vec<String> = policy.allow.iter().map(UsbDeviceMatch::to_string).collect();
    let devices = match &facts.usb_bus {
        UsbBus::Absent => {
            return Verdict::new(CheckStatus::NotApplicable, "this machine has no USB bus")
                .with_evidence("storage", policy.storage.as_str())
                .with_evidence("preventive_controls", controls);
        }
        UsbBus::Present(devices) => devices,
    };

    let mut root_hub_defaults = Map::new();
    for device in devices {
        if let Some(default) = &device.authorized_default {
            root_hub_defaults.insert(device.name.clone(), json!(default));
        }
    }
    if !root_hub_defaults.is_empty() && root_hub_defaults.values().all(|v| v == "0") {
        in_place.push(
            "new USB devices are deauthorized until approved (authorized_default = 0)".into(),
        );
    }
    controls["root_hub_authorized_default"] = Value::Object(root_hub_defaults);

    let mut evidence_devices = Vec::new();
    let mut failing: Vec<(String, &Decision)> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut decisions = Vec::new();
    for device in devices {
        let mass_storage = is_mass_storage(device);
        // Devices that are plainly not storage (keyboards, hubs, root hubs)
        // stay out of the list, blocked or not.
        if mass_storage == Some(false) {
            continue;
        }
        let decision = decide(device, policy, &loading);
        evidence_devices.push(device_evidence(device, mass_storage, &decision));
        decisions.push((device, decision));
    }
    for (device, decision) in &decisions {
        match decision {
            Decision::NotAllowed | Decision::Writable(_) => {
                failing.push((device_label(device), decision));
            }
            Decision::Unknown(reason) => {
                unknown.push(format!("{}: {reason}", device_label(device)));
            }
            _ => {}
        }
    }
    let connected: Vec<&UsbDevice> = decisions
        .iter()
        .filter(|(_, d)| !matches!(d, Decision::Blocked(_)))
        .map(|(device, _)| *device)
        .collect();
    let blocked_count = decisions.len() - connected.len();

    let verdict = if let [(label, decision)] = failing.as_slice() {
        let what = match decision {
            Decision::Writable(names) => format!(
                "is connected and writable ({}); the policy allows only read-only storage",
                names.join(", ")
            ),
            _ => "is connected and not allowed".to_owned(),
        };
        Verdict::new(
            CheckStatus::Fail,
            format!("USB mass-storage device {label} {what}"),
        )
    } else if !failing.is_empty() {
        let labels: Vec<&str> = failing.iter().map(|(label, _)| label.as_str()).collect();
        let what = if policy.storage == UsbStorageMode::ReadOnly {
            "connected and writable"
        } else {
            "connected and not allowed"
        };
        Verdict::new(
            CheckStatus::Fail,
            format!(
                "{} USB mass-storage devices are {what}: {}",
                failing.len(),
                labels.join(", ")
            ),
        )
    } else if !unknown.is_empty() {
        Verdict::new(
            CheckStatus::Unknown,
            format!("could not determine: {}", unknown.join("; ")),
        )
    } else {
        let blocked = if blocked_count == 0 {
            String::new()
        } else {
            format!(" ({blocked_count} blocked by the kernel)")
        };
        let summary = pass_summary(policy.storage, connected.len(), &blocked, &in_place);
        Verdict::new(CheckStatus::Pass, summary)
    };
    let verdict = if verdict.status == CheckStatus::Fail {
        verdict.with_fix(if policy.storage == UsbStorageMode::ReadOnly {
            FIX_READ_ONLY
        } else {
            FIX_BLOCK
        })
    } else {
        verdict
    };
    verdict
        .with_evidence("storage", policy.storage.as_str())
        .with_evidence("allowlist", allowlist)
        .with_evidence("usb_device_count", devices.len())
        .with_evidence("mass_storage_devices", evidence_devices)
        .with_evidence("preventive_controls", controls)
        .with_evidence("preventive_controls_in_place", in_place)
}
