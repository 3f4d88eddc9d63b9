//! The Windows probe of `usb_storage`: the present USB nodes that offer
//! mass storage (SetupAPI, through `sys::setupapi`), the storage drivers'
//! `Start` values and the Group Policy "Removable Storage Access" values
//! with their keys' last write times. Reads only; the evaluator
//! (`evaluate_windows.rs`) decides.

use super::parse_windows::offers_mass_storage;
use super::{RemovableStoragePolicy, UsbStorageFacts, WindowsStorageDevice, WindowsUsbFacts};
use crate::checks::{ProbeError, RegistryRead};
use crate::sys::Host;
use crate::sys::registry::{self, Hive};
use crate::sys::setupapi;

/// The bulk-only mass-storage driver's service key.
pub const USBSTOR_SERVICE: &str = r"SYSTEM\CurrentControlSet\Services\USBSTOR";
/// The USB Attached SCSI driver's service key.
pub const UASPSTOR_SERVICE: &str = r"SYSTEM\CurrentControlSet\Services\UASPStor";
pub const SERVICE_START: &str = "Start";
/// Group Policy's "Removable Storage Access" key.
pub const REMOVABLE_STORAGE_POLICY: &str =
    r"SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices";
/// Its subkey for the removable-disk class (GUID_DEVINTERFACE_DISK's
/// device class, `{53f5630d-b6bf-11d0-94f2-00a0c91efb8b}`, as the ADMX
/// template RemovableStorage.admx names it).
pub const REMOVABLE_DISKS_POLICY: &str = r"SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices\{53f5630d-b6bf-11d0-94f2-00a0c91efb8b}";
pub const DENY_ALL: &str = "Deny_All";
pub const DENY_READ: &str = "Deny_Read";
pub const DENY_WRITE: &str = "Deny_Write";

fn dword(path: &str, name: &str) -> RegistryRead<u32> {
    RegistryRead::from_io(registry::read_dword(Hive::LocalMachine, path, name))
}

fn written(path: &str) -> Option<u64> {
    registry::key_last_write_time(Hive::LocalMachine, path)
        .ok()
        .flatten()
}

pub(super) fn probe(_host: &Host) -> Result<UsbStorageFacts, ProbeError> {
    let devices = setupapi::present_usb_nodes()
        .map(|nodes| {
            nodes
                .into_iter()
                .filter(|node| offers_mass_storage(&node.compatible_ids))
                .map(|node| WindowsStorageDevice {
                    instance_id: node.instance_id,
                    parent_instance_id: node.parent_instance_id,
                    description: node.description,
                    started: node.started,
                    arrived: node.arrived,
                })
                .collect()
        })
        .map_err(|err| err.to_string());
    Ok(UsbStorageFacts::Windows(WindowsUsbFacts {
        usbstor_start: dword(USBSTOR_SERVICE, SERVICE_START),
        uaspstor_start: dword(UASPSTOR_SERVICE, SERVICE_START),
        removable_storage_policy: RemovableStoragePolicy {
            deny_all: dword(REMOVABLE_STORAGE_POLICY, DENY_ALL),
            deny_all_written: written(REMOVABLE_STORAGE_POLICY),
            deny_read: dword(REMOVABLE_DISKS_POLICY, DENY_READ),
            deny_write: dword(REMOVABLE_DISKS_POLICY, DENY_WRITE),
            class_written: written(REMOVABLE_DISKS_POLICY),
        },
        devices,
    }))
}
