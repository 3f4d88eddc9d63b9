//! The Linux probe of `usb_storage`: reads `/sys/bus/usb/devices`, the block
//! devices under mass-storage interfaces, the `modprobe.d` directories,
//! `/proc/modules` and (live system only) USBGuard's state through [`Host`],
//! and hands the text to the pure parsers in `parse.rs`. Judges nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::evaluate::{DriverLoading, driver_loading};
use super::parse::{
    UsbEntry, classify_usb_entry, effective_modprobe_files, normalize_module_name,
    parse_authorized, parse_class_code, parse_modprobe_config, parse_proc_modules,
    parse_read_only_flag, parse_systemctl_is_active, parse_usb_id,
};
use super::{
    BLOCK_SEARCH_DEPTH, BlockDeviceScan, BlockDeviceState, InterfaceDriver, LinuxUsbFacts,
    MASS_STORAGE_CLASS, MODPROBE_CONFIG_DIRS, ModprobeControls, PreventiveControls,
    USBGUARD_DAEMON_CONFIG, UsbBus, UsbDevice, UsbGuardState, UsbInterface,
};
use crate::checks::ProbeError;
use crate::sys::{CommandError, CommandSpec, Host};

pub(super) fn probe(host: &Host) -> Result<LinuxUsbFacts, ProbeError> {
    let controls = probe_controls(host);
    let usb_bus = match host.list_dir("/sys/bus/usb") {
        Ok(None) => UsbBus::Absent,
        Ok(Some(_)) => UsbBus::Present(probe_usb_devices(host)?),
        Err(err) => {
            return Err(ProbeError::Undeterminable(format!(
                "cannot read /sys/bus/usb: {err}"
            )));
        }
    };
    Ok(LinuxUsbFacts { usb_bus, controls })
}

pub(super) fn probe_usb_devices(host: &Host) -> Result<Vec<UsbDevice>, ProbeError> {
    const DEVICES: &str = "/sys/bus/usb/devices";
    let names = host
        .list_dir(DEVICES)
        .map_err(|err| ProbeError::Undeterminable(format!("cannot read {DEVICES}: {err}")))?
        .ok_or_else(|| {
            ProbeError::Undeterminable(format!(
                "/sys/bus/usb exists but {DEVICES} does not, so connected devices cannot be listed"
            ))
        })?;

    let mut devices: BTreeMap<String, UsbDevice> = BTreeMap::new();
    let mut interfaces: Vec<(String, UsbInterface)> = Vec::new();
    for name in names {
        let dir = format!("{DEVICES}/{name}");
        match classify_usb_entry(&name) {
            UsbEntry::Device => {
                devices.insert(name.clone(), probe_device(host, &name, &dir));
            }
            UsbEntry::Interface { device } => {
                interfaces.push((device, probe_interface(host, &name, &dir)));
            }
        }
    }
    for (device_name, interface) in interfaces {
        // An interface whose device entry is missing (unplugged between the
        // two reads, or a damaged tree) still counts: a mass-storage
        // interface must never vanish from the verdict for want of its
        // parent. Its ids stay unknown.
        devices
            .entry(device_name.clone())
            .or_insert_with(|| UsbDevice {
                name: device_name.clone(),
                authorized: true,
                read_problems: vec![format!(
                    "{DEVICES}/{device_name} is missing although its interface {} exists",
                    interface.name
                )],
                ..UsbDevice::default()
            })
            .interfaces
            .push(interface);
    }
    Ok(devices.into_values().collect())
}

pub(crate) fn probe_device(host: &Host, name: &str, dir: &str) -> UsbDevice {
    let mut read_problems = Vec::new();
    let mut attribute = |file: &str| match read_attribute(host, &format!("{dir}/{file}")) {
        Ok(value) => value,
        Err(problem) => {
            read_problems.push(problem);
            None
        }
    };
    let vendor_text = attribute("idVendor");
    let product_text = attribute("idProduct");
    let serial = attribute("serial");
    let manufacturer = attribute("manufacturer");
    let product = attribute("product");
    let authorized_text = attribute("authorized");
    let busnum = attribute("busnum");
    let devnum = attribute("devnum");
    let authorized_default = attribute("authorized_default");
    UsbDevice {
        name: name.to_owned(),
        vendor_id: vendor_text.as_deref().and_then(parse_usb_id),
        product_id: product_text.as_deref().and_then(parse_usb_id),
        serial,
        manufacturer,
        product,
        authorized: authorized_text.as_deref().is_none_or(parse_authorized),
        busnum: busnum.and_then(|text| text.parse().ok()),
        devnum: devnum.and_then(|text| text.parse().ok()),
        authorized_default,
        interfaces: Vec::new(),
        read_problems,
    }
}

pub(crate) fn probe_interface(host: &Host, name: &str, dir: &str) -> UsbInterface {
    // An unreadable class is kept as `None`, which the evaluator treats as
    // "could be mass storage".
    let attribute = |file: &str| {
        read_attribute(host, &format!("{dir}/{file}"))
            .ok()
            .flatten()
    };
    let class = attribute("bInterfaceClass")
        .as_deref()
        .and_then(parse_class_code);
    let block_devices = if class == Some(MASS_STORAGE_CLASS) {
        match find_block_devices(host, dir, 0) {
            Ok(found) => BlockDeviceScan::Found(found),
            Err(reason) => BlockDeviceScan::Failed(reason),
        }
    } else {
        BlockDeviceScan::NotScanned
    };
    UsbInterface {
        name: name.to_owned(),
        class,
        subclass: attribute("bInterfaceSubClass")
            .as_deref()
            .and_then(parse_class_code),
        protocol: attribute("bInterfaceProtocol")
            .as_deref()
            .and_then(parse_class_code),
        authorized: attribute("authorized")
            .as_deref()
            .is_none_or(parse_authorized),
        driver: bound_driver(host, dir),
        block_devices,
    }
}

/// The driver bound to an interface: the last component of its `driver`
/// link (`…/bus/usb/drivers/usb-storage`). A prepared tree may hold a plain
/// file or directory of that name instead, which names nothing and is read
/// as unreadable, never as "no driver".
pub(super) fn bound_driver(host: &Host, dir: &str) -> InterfaceDriver {
    let path = host.path(&format!("{dir}/driver"));
    match std::fs::read_link(&path) {
        Ok(target) => match target.file_name() {
            Some(name) => InterfaceDriver::Bound(name.to_string_lossy().into_owned()),
            None => InterfaceDriver::Unreadable(format!(
                "{dir}/driver points to {}, which names no driver",
                target.display()
            )),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => InterfaceDriver::NotBound,
        Err(err) => InterfaceDriver::Unreadable(format!("cannot read {dir}/driver: {err}")),
    }
}

/// Reads one sysfs attribute, trimmed: `Ok(None)` when absent or empty,
/// `Err` with the reason when it exists but cannot be read.
pub(super) fn read_attribute(host: &Host, path: &str) -> Result<Option<String>, String> {
    match host.read_optional(path) {
        Ok(Some(text)) => {
            let trimmed = text.trim();
            Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
        }
        Ok(None) => Ok(None),
        Err(err) => Err(format!("cannot read {path}: {err}")),
    }
}

/// Walks the real directories below `dir` (never symlinks: sysfs links point
/// back up the tree and to other buses) for `block/<disk>` and the disk's
/// partitions, and reads each one's `ro`.
pub(super) fn find_block_devices(
    host: &Host,
    dir: &str,
    depth: usize,
) -> Result<Vec<BlockDeviceState>, String> {
    let names = host
        .list_dir(dir)
        .map_err(|err| format!("cannot read {dir}: {err}"))?
        .ok_or_else(|| format!("{dir} disappeared while it was read"))?;
    let mut found = Vec::new();
    for name in names {
        let child = format!("{dir}/{name}");
        if !is_real_directory(host, &child) {
            continue;
        }
        if name == "block" {
            let disks = host
                .list_dir(&child)
                .map_err(|err| format!("cannot read {child}: {err}"))?
                .unwrap_or_default();
            for disk in disks {
                let disk_dir = format!("{child}/{disk}");
                found.push(block_device_state(host, &disk, &disk_dir));
                // Partitions are the disk's subdirectories that have a
                // `partition` attribute (`queue/`, `power/` and the like do
                // not).
                for part in host
                    .list_dir(&disk_dir)
                    .map_err(|err| format!("cannot read {disk_dir}: {err}"))?
                    .unwrap_or_default()
                {
                    let part_dir = format!("{disk_dir}/{part}");
                    if is_real_directory(host, &part_dir)
                        && host.exists(&format!("{part_dir}/partition"))
                    {
                        found.push(block_device_state(host, &part, &part_dir));
                    }
                }
            }
        } else if depth + 1 < BLOCK_SEARCH_DEPTH {
            found.extend(find_block_devices(host, &child, depth + 1)?);
        }
    }
    Ok(found)
}

pub(super) fn block_device_state(host: &Host, name: &str, dir: &str) -> BlockDeviceState {
    BlockDeviceState {
        name: name.to_owned(),
        read_only: read_attribute(host, &format!("{dir}/ro"))
            .ok()
            .flatten()
            .as_deref()
            .and_then(parse_read_only_flag),
    }
}

pub(super) fn is_real_directory(host: &Host, absolute: &str) -> bool {
    std::fs::symlink_metadata(host.path(absolute)).is_ok_and(|meta| meta.is_dir())
}

pub(super) fn probe_controls(host: &Host) -> PreventiveControls {
    PreventiveControls {
        modprobe: probe_modprobe(host),
        loaded_modules: probe_loaded_modules(host),
        sys_module: probe_sys_module(host),
        usbguard: probe_usbguard(host),
    }
}

pub(super) fn probe_loaded_modules(host: &Host) -> Result<Option<BTreeSet<String>>, String> {
    match host.read_optional("/proc/modules") {
        Ok(text) => Ok(text.as_deref().map(parse_proc_modules)),
        Err(err) => Err(format!("cannot read /proc/modules: {err}")),
    }
}

pub(super) fn probe_sys_module(host: &Host) -> Result<Option<BTreeSet<String>>, String> {
    match host.list_dir("/sys/module") {
        Ok(names) => Ok(names.map(|names| {
            names
                .iter()
                .map(|name| normalize_module_name(name))
                .collect()
        })),
        Err(err) => Err(format!("cannot read /sys/module: {err}")),
    }
}

/// Whether a storage driver can still bind, from the kmod configuration and
/// the modules in the kernel, for the enforcer, which decides each device as
/// it arrives (before any driver has bound) without the rest of the check.
pub(crate) fn probe_driver_loading(host: &Host) -> DriverLoading {
    driver_loading(
        &probe_modprobe(host),
        &probe_loaded_modules(host),
        &probe_sys_module(host),
    )
}

pub(super) fn probe_modprobe(host: &Host) -> Result<ModprobeControls, String> {
    let mut listings = Vec::new();
    for dir in MODPROBE_CONFIG_DIRS {
        let names = host
            .list_dir(dir)
            .map_err(|err| format!("cannot read {dir}: {err}"))?
            .unwrap_or_default();
        listings.push((dir.to_owned(), names));
    }
    let mut files = Vec::new();
    for path in effective_modprobe_files(&listings) {
        // A masking symlink to /dev/null reads as empty, which is what kmod
        // sees too. A directory with a `.conf` name is skipped, as kmod does.
        if !host.path(&path).is_file() && !host.path(&path).is_symlink() {
            continue;
        }
        let text = host
            .read_optional(&path)
            .map_err(|err| format!("cannot read {path}: {err}"))?
            .unwrap_or_default();
        files.push((path, text));
    }
    Ok(parse_modprobe_config(&files))
}

pub(super) fn probe_usbguard(host: &Host) -> UsbGuardState {
    if !host.is_live_system() {
        return UsbGuardState::NotChecked {
            daemon_config_present: host.exists(USBGUARD_DAEMON_CONFIG),
        };
    }
    let command = CommandSpec::new("systemctl")
        .arg("is-active")
        .arg("usbguard");
    match host.run(&command) {
        Ok(output) => parse_systemctl_is_active(&output.stdout, &output.stderr),
        Err(CommandError::NotFound { .. }) => {
            UsbGuardState::Unknown("systemctl is not installed".into())
        }
        Err(err) => UsbGuardState::Unknown(err.to_string()),
    }
}
