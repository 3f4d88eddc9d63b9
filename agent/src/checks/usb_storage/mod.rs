//! Rule `usb_storage`: USB mass-storage devices are allowed, read-only or
//! blocked as the policy says, with an allowlist of approved devices by
//! `vendor:product[:serial]`.
//!
//! Linux probe, every read through [`Host`] so `--host-root` works:
//!
//! - the USB devices in `/sys/bus/usb/devices/*`: device entries (`usb1`,
//!   `2-1`) with `idVendor`, `idProduct`, `serial`, `manufacturer`, `product`,
//!   `authorized`, `busnum`, `devnum`; interface entries (`2-1:1.0`) with
//!   `bInterfaceClass`, `authorized` and the `driver` link (the only link
//!   read, and only its name). A device is mass storage when one of its
//!   interfaces has class `08` (bulk-only and UAS alike). In real sysfs
//!   these entries are symlinks into `/sys/devices`; the probe reads files
//!   by path, so a prepared tree of plain directories works the same;
//! - for `read_only`, the `ro` flag of every block device found under a
//!   mass-storage interface (`<interface>/host*/target*/*:*:*:*/block/sdX/ro`);
//! - the preventive controls: kmod configuration in the `modprobe.d`
//!   directories (`install usb-storage /bin/false` and friends,
//!   `blacklist`), whether `usb_storage`/`uas` are loaded (`/proc/modules`)
//!   or built in (`/sys/module`), which decide whether an unbound interface
//!   can get a driver; and as evidence only, USBGuard (`systemctl is-active
//!   usbguard` on the live system only) and
//!   each root hub's `authorized_default`.
//!
//! The decision is made per connected mass-storage device, by what the
//! kernel lets happen to it, never from presence or the preventive controls
//! alone: a device the kernel has deauthorized (`authorized` = 0), or whose
//! every mass-storage interface is deauthorized or has no driver bound while
//! no storage driver can load (`usb_storage` and `uas` neither loaded nor
//! built in, and `install usb-storage /bin/false` or `/bin/true` replacing
//! the load; `uas` needs `usb-storage`), is blocked and never fails. A
//! `blacklist` line does not count: it only stops loading by alias. An
//! interface with no driver now, whose driver could still load, is judged
//! as if bound: a `modprobe` binds it. An allowlisted device passes; the
//! others pass, fail or are `unknown` as the storage mode says.
//! Anything the probe cannot read that could hide a device is `unknown`,
//! never `pass`. A machine without `/sys/bus/usb` is `not_applicable`.
//!
//! The check only looks: it loads, unloads and deauthorizes nothing (that
//! is the enforcer, `enforce.rs`).
//!
//! Windows probe (`windows.rs`): the present USB device nodes whose
//! compatible ids name class 08, from SetupAPI (`sys::setupapi`), each with
//! its instance id (vendor, product, serial), whether its driver runs and
//! when it arrived; the `Start` of the USBSTOR and UASPStor drivers; the
//! Group Policy "Removable Storage Access" values. `evaluate_windows.rs`
//! decides with the same per-device [`Decision`]s: no running driver is
//! blocked, a deny value counts only if written before the device arrived.
//!
//! macOS probe (`macos.rs`, run by the root daemon under launchd):
//! `system_profiler -json SPUSBDataType SPUSBHostDataType`, read by
//! `parse_macos.rs`: every USB device with its vendor, product and serial,
//! and for a storage device its media (a hub's card reader with a card in
//! it included) and their volumes. `evaluate_macos.rs` decides with the same
//! [`Decision`]s and allowlist as Linux. What macOS allows without an MDM
//! profile: nothing a root daemon can set keeps a USB disk from being
//! mounted again, so no device counts as blocked there; in `block` mode a
//! connected storage device that is not allowlisted fails whether mounted or
//! not, and in `read_only` mode it passes only when all its mounted volumes
//! are read-only. The newer report (`SPUSBHostDataType`) lists no media, so
//! its devices are `unknown` unless storage is allowed. The macOS enforcer
//! (`enforce_macos.rs`) ejects a blocked disk with `diskutil eject` and
//! remounts a writable volume with `diskutil mount readOnly`; it cannot keep
//! either from being mounted again, which only an MDM profile can.
//!
//! The folder: this file holds the facts, the [`Rule`] impl and which probe
//! runs; `linux.rs`, `windows.rs` and `macos.rs` gather the facts,
//! `parse.rs`, `parse_windows.rs` and `parse_macos.rs` read the text,
//! `evaluate.rs`, `evaluate_windows.rs` and `evaluate_macos.rs` decide,
//! and `enforce.rs` blocks devices (on uevents too; registry switches on
//! Windows; `enforce_macos.rs` plans `diskutil` on macOS). Only the probes
//! and the enforcers reach the machine.

pub mod enforce;
// Only the macOS build plans with it; tests run it on every OS.
#[cfg(any(test, target_os = "macos"))]
mod enforce_macos;
mod evaluate;
mod evaluate_macos;
mod evaluate_windows;
mod evidence;
// Compiled on every OS, not only Linux: a host root (tests, `--host-root`) is
// a Linux tree wherever the agent runs, and gets this probe.
mod linux;
#[cfg(target_os = "macos")]
mod macos;
mod parse;
mod parse_macos;
pub mod parse_windows;
#[cfg(windows)]
mod windows;

pub use evaluate::evaluate;
pub(crate) use evaluate::{Decision, decide, device_label, is_mass_storage};
pub(crate) use linux::{probe_device, probe_driver_loading, probe_interface};
pub use parse::{
    UsbEntry, classify_usb_entry, effective_modprobe_files, normalize_module_name,
    parse_authorized, parse_class_code, parse_modprobe_config, parse_proc_modules,
    parse_read_only_flag, parse_systemctl_is_active, parse_usb_id,
};
pub use parse_macos::{parse_system_profiler_usb, parse_usb_hex_id};

use std::collections::BTreeSet;

use palisade_shared::Policy;
use palisade_shared::policy::{RuleSettings, UsbStoragePolicy};
use palisade_shared::report::Event;

use super::{Enforcer, ProbeError, RegistryRead, Rule, Verdict};
use crate::sys::{Host, Uevent};

#[derive(Debug)]
pub struct UsbStorage;

/// What the probe found: raw facts, not yet judged, in the shape of the
/// system they came from.
#[derive(Debug, Clone, PartialEq)]
pub enum UsbStorageFacts {
    /// sysfs and the kmod configuration (a live Linux, or any host root).
    Linux(LinuxUsbFacts),
    /// SetupAPI's device tree and the registry (a live Windows).
    Windows(WindowsUsbFacts),
    /// system_profiler's USB report (a live macOS).
    MacOs(MacUsbFacts),
}

/// What the macOS probe found (`macos.rs`; decided by `evaluate_macos.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacUsbFacts {
    /// The USB report, or why system_profiler could not give it.
    pub report: Result<MacUsbReport, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacUsbReport {
    pub source: UsbReportSource,
    /// Host controllers listed in either data type.
    pub buses: usize,
    /// Every device below the buses, hubs included, depth first.
    pub devices: Vec<MacUsbDevice>,
}

/// Which of system_profiler's data types listed the devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsbReportSource {
    /// `SPUSBDataType`, with each device's media.
    UsbDataType,
    /// `SPUSBHostDataType` (newer macOS), without media.
    UsbHostDataType,
    /// Neither listed a device.
    NoDevices,
}

impl UsbReportSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsbDataType => "SPUSBDataType",
            Self::UsbHostDataType => "SPUSBHostDataType",
            Self::NoDevices => "no_devices",
        }
    }
}

/// One USB device of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacUsbDevice {
    pub name: Option<String>,
    pub vendor_id: Option<u16>,
    pub product_id: Option<u16>,
    /// None when the device has no serial string (or says "Not Provided").
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    /// `0x40120000 / 5`: where on the bus, for the evidence.
    pub location_id: Option<String>,
    /// Part of the Mac or of a display built into it.
    pub built_in: bool,
    /// Its disks (`Media`); `None` when the report does not list media at
    /// all, so whether it holds storage is not known.
    pub media: Option<Vec<MacUsbMedium>>,
}

/// One disk of a storage device: `disk5`, a card in a reader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacUsbMedium {
    pub bsd_name: String,
    /// `removable_media`: a card or a stick (yes), or a fixed disk (no).
    pub removable: Option<bool>,
    pub volumes: Vec<MacUsbVolume>,
}

/// One volume (partition) of a medium.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacUsbVolume {
    pub bsd_name: String,
    /// Where it is mounted; `None` when it is not.
    pub mount_point: Option<String>,
    /// `writable` as system_profiler gives it for a mounted volume.
    pub writable: Option<bool>,
}

/// What the Linux probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct LinuxUsbFacts {
    pub usb_bus: UsbBus,
    pub controls: PreventiveControls,
}

/// What the Windows probe found (`windows.rs`; decided by
/// `evaluate_windows.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowsUsbFacts {
    /// `HKLM\SYSTEM\CurrentControlSet\Services\USBSTOR\Start`: 4 means the
    /// bulk-only mass-storage driver never loads for a device plugged in
    /// from now on.
    pub usbstor_start: RegistryRead<u32>,
    /// The same for `UASPStor`, the driver of USB Attached SCSI sticks and
    /// disks, which USBSTOR's switch does not cover.
    pub uaspstor_start: RegistryRead<u32>,
    /// The Group Policy "Removable Storage Access" values.
    pub removable_storage_policy: RemovableStoragePolicy,
    /// The present USB devices that offer mass storage, or why the device
    /// tree could not be read.
    pub devices: Result<Vec<WindowsStorageDevice>, String>,
}

/// `HKLM\SOFTWARE\Policies\Microsoft\Windows\RemovableStorageDevices`:
/// `Deny_All` in the key itself, `Deny_Read`/`Deny_Write` in the subkey of
/// the removable-disk class. Windows applies them when a device arrives (or
/// at the next restart, which the policy's `ForceReboot` exists for), so each
/// key's last write time is kept to compare with the devices' arrival.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovableStoragePolicy {
    pub deny_all: RegistryRead<u32>,
    /// When the `RemovableStorageDevices` key was last written (a FILETIME:
    /// 100 ns ticks since 1601); `None` when the key is absent or unreadable.
    pub deny_all_written: Option<u64>,
    pub deny_read: RegistryRead<u32>,
    pub deny_write: RegistryRead<u32>,
    /// When the removable-disk class subkey was last written.
    pub class_written: Option<u64>,
}

/// One present USB device node that offers mass storage (its compatible
/// ids include `USB\Class_08`): a whole device, or one interface of a
/// composite device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowsStorageDevice {
    /// The device instance id, e.g. `USB\VID_0781&PID_5567\4C530001230512116283`.
    pub instance_id: String,
    /// For an interface of a composite device (`…&MI_00\…`), its parent's
    /// instance id, which carries the device's serial.
    pub parent_instance_id: Option<String>,
    /// The friendly name or device description Windows shows.
    pub description: Option<String>,
    /// Whether the node's function driver runs (`DN_STARTED`); `None` when
    /// the status could not be read. A mass-storage node whose driver is
    /// disabled (USBSTOR Start = 4) is present but not started.
    pub started: Option<bool>,
    /// When Windows last saw it arrive (`DEVPKEY_Device_LastArrivalDate`, a
    /// FILETIME); `None` when Windows does not record it.
    pub arrived: Option<u64>,
}

/// Whether the machine has a USB bus, and what is on it.
#[derive(Debug, Clone, PartialEq)]
pub enum UsbBus {
    /// `/sys/bus/usb` does not exist: no USB host controller driver, so no
    /// USB device can be connected.
    Absent,
    /// Every device entry of `/sys/bus/usb/devices`, root hubs included, with
    /// its interfaces.
    Present(Vec<UsbDevice>),
}

/// One USB device (`/sys/bus/usb/devices/2-1`, or a root hub `usb1`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsbDevice {
    /// The kernel's name for it: `2-1` is port 1 of bus 2, `usb1` a root hub.
    pub name: String,
    /// `idVendor`; `None` when the file is absent or unreadable.
    pub vendor_id: Option<u16>,
    /// `idProduct`; `None` when the file is absent or unreadable.
    pub product_id: Option<u16>,
    /// `serial`; absent when the device has no serial string descriptor.
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    /// False only when `authorized` reads `0`: the kernel has unbound the
    /// device and will bind no driver to it. An absent or unreadable file
    /// counts as authorized, the kernel's default, so it can never hide a
    /// device.
    pub authorized: bool,
    pub busnum: Option<u32>,
    pub devnum: Option<u32>,
    /// Root hubs only: `authorized_default`, what the kernel does with a
    /// device newly plugged into this bus (`0` = deauthorized until a tool
    /// such as USBGuard authorizes it).
    pub authorized_default: Option<String>,
    pub interfaces: Vec<UsbInterface>,
    /// Attributes that exist but could not be read, with the reason.
    pub read_problems: Vec<String>,
}

/// One interface of a device (`/sys/bus/usb/devices/2-1:1.0`).
#[derive(Debug, Clone, PartialEq)]
pub struct UsbInterface {
    pub name: String,
    /// `bInterfaceClass`; `None` when absent or unreadable.
    pub class: Option<u8>,
    pub subclass: Option<u8>,
    /// `bInterfaceProtocol`: for mass storage `50` is bulk-only, `62` UAS.
    pub protocol: Option<u8>,
    /// False only when the interface's own `authorized` reads `0`.
    pub authorized: bool,
    /// The driver bound to the interface (its `driver` symlink).
    pub driver: InterfaceDriver,
    /// The block devices below a mass-storage interface; not looked for on
    /// other interfaces.
    pub block_devices: BlockDeviceScan,
}

/// Which driver the kernel has bound to an interface: sysfs links
/// `<interface>/driver` to `/sys/bus/usb/drivers/<name>` while one is bound
/// (Documentation/ABI/stable/sysfs-bus-usb and the driver-model's
/// `driver` link), and removes the link when it unbinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceDriver {
    /// `usb-storage`, `uas`, `usbhid`, `usbfs` (a program holding it
    /// through libusb) and so on.
    Bound(String),
    /// No `driver` link: nothing is bound now.
    NotBound,
    /// The link exists but could not be read.
    Unreadable(String),
}

/// The outcome of looking for block devices below an interface.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockDeviceScan {
    /// Not a mass-storage interface: nothing was looked for.
    NotScanned,
    Found(Vec<BlockDeviceState>),
    /// The walk could not read a directory.
    Failed(String),
}

/// One disk or partition and its read-only flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDeviceState {
    /// Kernel name: `sdb`, `sdb1`.
    pub name: String,
    /// The `ro` attribute: `Some(true)` for `1`; `None` when it could not be
    /// read or parsed.
    pub read_only: Option<bool>,
}

/// Settings that stop USB storage before any device is plugged in. They
/// never pass the rule alone: the verdict is decided by the devices that are
/// connected, and these only tell whether an interface without a driver can
/// get one ([`DriverLoading`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PreventiveControls {
    /// The effective kmod configuration, or why it could not be read.
    pub modprobe: Result<ModprobeControls, String>,
    /// The loaded modules from `/proc/modules`; `Ok(None)` when the file does
    /// not exist (a kernel built without module support).
    pub loaded_modules: Result<Option<BTreeSet<String>>, String>,
    /// The names in `/sys/module` (with `_` for `-`): every loaded module,
    /// and the built-in ones that have parameters, which `usb_storage` and
    /// `uas` both have (`delay_use`, `quirks`). `Ok(None)` when the directory
    /// does not exist (a prepared tree).
    pub sys_module: Result<Option<BTreeSet<String>>, String>,
    pub usbguard: UsbGuardState,
}

/// What the kmod configuration says about the two USB storage drivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModprobeControls {
    pub usb_storage: ModuleRules,
    pub uas: ModuleRules,
}

/// The `install` and `blacklist` lines for one module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleRules {
    /// The effective `install` command (kmod uses the first one it reads)
    /// and the file it came from.
    pub install: Option<ConfigLine>,
    /// Every file with a `blacklist` line for the module.
    pub blacklisted_in: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLine {
    pub value: String,
    pub file: String,
}

impl ModuleRules {
    /// Whether the `install` command replaces loading with a command that
    /// loads nothing. kmod runs the command instead of inserting the module,
    /// also when the module is needed as a dependency (the dry runs in the
    /// fixtures' SOURCES.md show `install /bin/false` in place of
    /// `usb-storage.ko` when `uas` is loaded).
    pub fn install_disables_loading(&self) -> bool {
        self.install
            .as_ref()
            .is_some_and(|line| NON_LOADING_INSTALL_COMMANDS.contains(&line.value.as_str()))
    }
}

/// Whether USBGuard guards the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsbGuardState {
    /// `systemctl is-active usbguard` printed `active`.
    Active,
    /// It printed another state (`inactive`, `failed`, `activating`…).
    NotActive(String),
    /// systemctl is missing or could not answer (no systemd as PID 1).
    Unknown(String),
    /// A prepared tree under `--host-root`: no daemon to ask, so only whether
    /// its configuration file exists.
    NotChecked { daemon_config_present: bool },
}

/// `install` commands that load nothing. `/bin/true` is what the CIS
/// benchmarks used to remediate to and `/bin/false` what they use now (so a
/// load attempt reports an error); both stop the module, as kmod's dry runs
/// in the fixtures' SOURCES.md show. A bare `true`/`false` is found on PATH by
/// the shell kmod runs the command with.
pub const NON_LOADING_INSTALL_COMMANDS: [&str; 6] = [
    "/bin/false",
    "/bin/true",
    "/usr/bin/false",
    "/usr/bin/true",
    "false",
    "true",
];

/// The kmod configuration directories, highest priority first, as libkmod
/// lists them (`default_config_paths` in libkmod.c: `/etc`, `/run`,
/// `/usr/local/lib`, the distribution directory `/usr/lib`, and `/lib`). A
/// file name found in an earlier directory masks the same name in later ones.
pub const MODPROBE_CONFIG_DIRS: [&str; 5] = [
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
];

/// The USBGuard daemon's configuration, where the Debian and Fedora packages
/// install it.
const USBGUARD_DAEMON_CONFIG: &str = "/etc/usbguard/usbguard-daemon.conf";

/// USB interface class of mass storage (usb.org "Defined Class Codes": 08h).
pub(crate) const MASS_STORAGE_CLASS: u8 = 0x08;

/// How many directory levels below a mass-storage interface the walk looks
/// for `block/`. In real sysfs it sits four levels down
/// (`host6/target6:0:0/6:0:0:0/block`); two more allow for an extra layer a
/// bridge driver may add, while the walk stays small and cannot wander the
/// whole of `/sys`.
const BLOCK_SEARCH_DEPTH: usize = 6;

impl Rule for UsbStorage {
    /// The module blacklists and USBGuard's policy; devices themselves
    /// arrive as USB uevents.
    fn watched_paths(&self) -> &'static [&'static str] {
        &["/etc/modprobe.d", "/etc/usbguard"]
    }

    type Policy = UsbStoragePolicy;
    type Facts = UsbStorageFacts;

    fn id(&self) -> &'static str {
        palisade_shared::RuleId::USB_STORAGE
    }

    fn policy<'p>(&self, policy: &'p Policy) -> Option<&'p Self::Policy> {
        policy.usb_storage.as_ref()
    }

    fn probe(&self, host: &Host, _policy: &Self::Policy) -> Result<UsbStorageFacts, ProbeError> {
        // A prepared tree is a Linux tree whatever the agent was built for.
        if cfg!(target_os = "linux") || !host.is_live_system() {
            linux::probe(host).map(UsbStorageFacts::Linux)
        } else {
            native_probe(host)
        }
    }

    fn evaluate(&self, facts: &UsbStorageFacts, policy: &Self::Policy) -> Verdict {
        match facts {
            UsbStorageFacts::Linux(facts) => evaluate::evaluate(facts, policy),
            UsbStorageFacts::Windows(facts) => evaluate_windows::evaluate(facts, policy),
            UsbStorageFacts::MacOs(facts) => evaluate_macos::evaluate(facts, policy),
        }
    }

    fn settings(&self, policy: &Self::Policy) -> RuleSettings {
        policy.settings
    }

    fn enforcer(&self) -> Enforcer<Self::Policy> {
        Enforcer::Plans(enforce::plan)
    }

    fn after_undo(&self, host: &Host, restored_paths: &[String]) -> anyhow::Result<Vec<String>> {
        enforce::after_undo(host, restored_paths)
    }

    fn title(&self) -> &'static str {
        "USB storage"
    }

    fn why_it_matters(&self) -> &'static str {
        "Patient data copied to a USB stick leaves every protection of this laptop behind."
    }

    // No settings panel: a USB policy is not a setting a person changes.

    fn on_device_event(
        &self,
        host: &Host,
        policy: &Policy,
        uevent: &Uevent,
    ) -> anyhow::Result<Option<Event>> {
        enforce::on_device_event(host, policy, uevent)
    }

    fn sweep_devices(&self, host: &Host, policy: &Policy) -> anyhow::Result<Vec<Event>> {
        enforce::sweep(host, policy)
    }
}

#[cfg(windows)]
use windows::probe as native_probe;

#[cfg(target_os = "macos")]
use macos::probe as native_probe;

/// Linux never gets here (a live Linux system runs `linux::probe`); other
/// systems have no probe yet.
#[cfg(not(any(windows, target_os = "macos")))]
fn native_probe(_host: &Host) -> Result<UsbStorageFacts, ProbeError> {
    Err(super::no_probe_yet("USB storage"))
}

// The unit tests were written against the one-file rule and name its imports.
#[cfg(test)]
use {
    linux::probe as probe_linux,
    palisade_shared::policy::{UsbDeviceMatch, UsbStorageMode},
    palisade_shared::report::CheckStatus,
    serde_json::{Value, json},
};

#[cfg(test)]
mod tests;
// Builds sysfs trees with symlinks, as the kernel lays them out.
#[cfg(all(test, unix))]
mod tests_drivers;
