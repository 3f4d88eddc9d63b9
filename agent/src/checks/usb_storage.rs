//! Rule `usb_storage`: USB mass-storage devices are allowed, read-only or
//! blocked as the policy says, with an allowlist of approved devices by
//! `vendor:product[:serial]`.
//!
//! Linux probe, every read through [`Host`] so `--host-root` works:
//!
//! - the USB devices in `/sys/bus/usb/devices/*`: device entries (`usb1`,
//!   `2-1`) with `idVendor`, `idProduct`, `serial`, `manufacturer`, `product`,
//!   `authorized`, `busnum`, `devnum`; interface entries (`2-1:1.0`) with
//!   `bInterfaceClass`. A device is mass storage when one of its interfaces
//!   has class `08` (bulk-only and UAS alike). In real sysfs these entries are
//!   symlinks into `/sys/devices`; the probe reads files by path and never
//!   resolves links, so a prepared tree of plain directories works the same;
//! - for `read_only`, the `ro` flag of every block device found under a
//!   mass-storage interface (`<interface>/host*/target*/*:*:*:*/block/sdX/ro`);
//! - the preventive controls, reported as evidence: kmod configuration in the
//!   `modprobe.d` directories (`install usb-storage /bin/false` and friends,
//!   `blacklist`), whether `usb_storage`/`uas` are loaded (`/proc/modules`),
//!   USBGuard (`systemctl is-active usbguard` on the live system only), and
//!   each root hub's `authorized_default`.
//!
//! The decision is made per connected mass-storage device, never from the
//! preventive controls alone: a device the kernel has deauthorized
//! (`authorized` = 0) is already blocked and never fails; an allowlisted one
//! passes; the others pass, fail or are `unknown` as the storage mode says.
//! Anything the probe cannot read that could hide a device is `unknown`,
//! never `pass`. A machine without `/sys/bus/usb` is `not_applicable`.
//!
//! This module only looks: it loads, unloads and deauthorizes nothing (that
//! is `enforce/`). The macOS and Windows probes are not written yet: there
//! the rule reports `unknown`.

use std::collections::{BTreeMap, BTreeSet};

use palisade_shared::Policy;
use palisade_shared::policy::{UsbDeviceMatch, UsbStorageMode, UsbStoragePolicy};
use palisade_shared::report::CheckStatus;
use serde_json::{Map, Value, json};

use super::{ProbeError, Rule, Verdict};
use crate::sys::{CommandError, CommandSpec, Host};

#[derive(Debug)]
pub struct UsbStorage;

/// What the probe found: raw facts, not yet judged.
#[derive(Debug, Clone, PartialEq)]
pub struct UsbStorageFacts {
    pub usb_bus: UsbBus,
    pub controls: PreventiveControls,
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
    /// The block devices below a mass-storage interface; not looked for on
    /// other interfaces.
    pub block_devices: BlockDeviceScan,
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

/// Settings that stop USB storage before any device is plugged in. Evidence
/// only: the verdict is decided by the devices that are connected.
#[derive(Debug, Clone, PartialEq)]
pub struct PreventiveControls {
    /// The effective kmod configuration, or why it could not be read.
    pub modprobe: Result<ModprobeControls, String>,
    /// The loaded modules from `/proc/modules`; `Ok(None)` when the file does
    /// not exist (a kernel built without module support).
    pub loaded_modules: Result<Option<BTreeSet<String>>, String>,
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
            probe_linux(host)
        } else {
            Err(ProbeError::Undeterminable(format!(
                "no USB storage probe for {} yet",
                std::env::consts::OS
            )))
        }
    }

    fn evaluate(&self, facts: &UsbStorageFacts, policy: &Self::Policy) -> Verdict {
        evaluate(facts, policy)
    }
}

// ---------------------------------------------------------------------------
// Probe (Linux): read the files and hand the text to the parsers.

fn probe_linux(host: &Host) -> Result<UsbStorageFacts, ProbeError> {
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
    Ok(UsbStorageFacts { usb_bus, controls })
}

fn probe_usb_devices(host: &Host) -> Result<Vec<UsbDevice>, ProbeError> {
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
        block_devices,
    }
}

/// Reads one sysfs attribute, trimmed: `Ok(None)` when absent or empty,
/// `Err` with the reason when it exists but cannot be read.
fn read_attribute(host: &Host, path: &str) -> Result<Option<String>, String> {
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
fn find_block_devices(
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

fn block_device_state(host: &Host, name: &str, dir: &str) -> BlockDeviceState {
    BlockDeviceState {
        name: name.to_owned(),
        read_only: read_attribute(host, &format!("{dir}/ro"))
            .ok()
            .flatten()
            .as_deref()
            .and_then(parse_read_only_flag),
    }
}

fn is_real_directory(host: &Host, absolute: &str) -> bool {
    std::fs::symlink_metadata(host.path(absolute)).is_ok_and(|meta| meta.is_dir())
}

fn probe_controls(host: &Host) -> PreventiveControls {
    PreventiveControls {
        modprobe: probe_modprobe(host),
        loaded_modules: match host.read_optional("/proc/modules") {
            Ok(text) => Ok(text.as_deref().map(parse_proc_modules)),
            Err(err) => Err(format!("cannot read /proc/modules: {err}")),
        },
        usbguard: probe_usbguard(host),
    }
}

fn probe_modprobe(host: &Host) -> Result<ModprobeControls, String> {
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

fn probe_usbguard(host: &Host) -> UsbGuardState {
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

// ---------------------------------------------------------------------------
// Parsers: pure, tested against captured files.

/// What an entry of `/sys/bus/usb/devices` is, from its name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsbEntry {
    /// A device (`2-1`, `1-1.4`) or a root hub (`usb1`).
    Device,
    /// An interface `<device>:<config>.<interface>` (`2-1:1.0`); `device` is
    /// the name of its device entry.
    Interface { device: String },
}

/// Classifies an entry of `/sys/bus/usb/devices` by the kernel's naming
/// (drivers/usb/core/message.c: interfaces are `<device>:<config>.<n>`). A
/// root hub's interfaces are named `<bus>-0:1.0` while the hub itself is
/// `usb<bus>`.
pub fn classify_usb_entry(name: &str) -> UsbEntry {
    match name.split_once(':') {
        None => UsbEntry::Device,
        Some((device, _)) => {
            let device = match device.strip_suffix("-0") {
                Some(bus) if !bus.is_empty() && bus.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("usb{bus}")
                }
                _ => device.to_owned(),
            };
            UsbEntry::Interface { device }
        }
    }
}

/// Parses `idVendor`/`idProduct`: four hex digits (`0781`).
pub fn parse_usb_id(text: &str) -> Option<u16> {
    let text = text.trim();
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

/// Parses `bInterfaceClass` and its siblings: two hex digits (`08`).
pub fn parse_class_code(text: &str) -> Option<u8> {
    let text = text.trim();
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(text, 16).ok()
}

/// Parses `authorized`: only `0` means deauthorized. Anything else counts as
/// authorized, so an odd value can never hide a device.
pub fn parse_authorized(text: &str) -> bool {
    text.trim() != "0"
}

/// Parses a block device's `ro`: `1` read-only, `0` writable, anything else
/// unknown.
pub fn parse_read_only_flag(text: &str) -> Option<bool> {
    match text.trim() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

/// The configuration files kmod reads, in the order it reads them: every
/// `*.conf` (and legacy `*.alias`) name from the directories, highest
/// priority first in `listings`, where the first directory holding a name
/// masks the others; then sorted by file name, as libkmod does
/// (`conf_files_list`). Hidden files are skipped.
pub fn effective_modprobe_files(listings: &[(String, Vec<String>)]) -> Vec<String> {
    let mut by_name: BTreeMap<&str, String> = BTreeMap::new();
    for (dir, names) in listings {
        for name in names {
            let counted =
                !name.starts_with('.') && (name.ends_with(".conf") || name.ends_with(".alias"));
            if counted && !by_name.contains_key(name.as_str()) {
                by_name.insert(name, format!("{dir}/{name}"));
            }
        }
    }
    by_name.into_values().collect()
}

/// Parses kmod configuration files, given as `(path, text)` in the order kmod
/// reads them, for the `install` and `blacklist` lines of `usb_storage` and
/// `uas`. As in libkmod: a trailing backslash joins the next line, a line
/// whose first character is `#` is a comment, module names treat `-` and `_`
/// alike, and the first `install` line for a module is the one used.
pub fn parse_modprobe_config(files: &[(String, String)]) -> ModprobeControls {
    let mut controls = ModprobeControls::default();
    for (path, text) in files {
        for line in joined_config_lines(text) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let directive = words.next().unwrap_or_default();
            let Some(module) = words.next().map(normalize_module_name) else {
                continue;
            };
            let rules = match module.as_str() {
                "usb_storage" => &mut controls.usb_storage,
                "uas" => &mut controls.uas,
                _ => continue,
            };
            match directive {
                "install" if rules.install.is_none() => {
                    // The command is the rest of the line after the module
                    // name, as kmod hands it to the shell.
                    let command = words.collect::<Vec<_>>().join(" ");
                    rules.install = Some(ConfigLine {
                        value: command,
                        file: path.clone(),
                    });
                }
                "blacklist" if !rules.blacklisted_in.contains(path) => {
                    rules.blacklisted_in.push(path.clone());
                }
                _ => {}
            }
        }
    }
    controls
}

fn joined_config_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        match raw.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(raw);
                lines.push(std::mem::take(&mut pending).trim().to_owned());
            }
        }
    }
    if !pending.is_empty() {
        lines.push(pending.trim().to_owned());
    }
    lines
}

/// kmod treats `usb-storage` and `usb_storage` as one name.
pub fn normalize_module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Parses `/proc/modules` (proc(5)): the first field of each line is a loaded
/// module's name.
pub fn parse_proc_modules(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(normalize_module_name)
        .collect()
}

/// Reads `systemctl is-active usbguard`: it prints the unit's state on
/// stdout (`active`, `inactive`, `failed`…). Empty stdout means systemctl
/// could not ask systemd (e.g. "System has not been booted with systemd as
/// init system"), which says nothing about USBGuard.
pub fn parse_systemctl_is_active(stdout: &str, stderr: &str) -> UsbGuardState {
    match stdout.lines().next().map(str::trim) {
        Some("active") => UsbGuardState::Active,
        Some(state) if !state.is_empty() => UsbGuardState::NotActive(state.to_owned()),
        _ => {
            let reason = stderr
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .unwrap_or("systemctl printed nothing");
            UsbGuardState::Unknown(format!("systemctl is-active usbguard: {reason}"))
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluation: pure.

const FIX_BLOCK: &str = "Remove the USB storage device, or ask IT to add it to the allowlist \
                         if it is an approved encrypted device.";
/// The check reads the kernel's read-only flag of the block device, which a
/// read-only mount does not set: the fix names what does.
const FIX_READ_ONLY: &str = "Remove the USB storage device, or ask IT to add it to the \
                             allowlist if it is an approved encrypted device; otherwise it must \
                             be read-only: slide its write-protect switch to lock, or ask IT to \
                             set it read-only (blockdev --setro).";

/// What was decided about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The kernel has deauthorized the device or its storage interfaces.
    Blocked(&'static str),
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
            Self::Blocked(why) => (*why).to_owned(),
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

pub(crate) fn decide(device: &UsbDevice, policy: &UsbStoragePolicy) -> Decision {
    if !device.authorized {
        return Decision::Blocked("the kernel has deauthorized the device (authorized = 0)");
    }
    let mass_storage = is_mass_storage(device);
    let storage_interfaces: Vec<&UsbInterface> = device
        .interfaces
        .iter()
        .filter(|i| i.class == Some(MASS_STORAGE_CLASS))
        .collect();
    if mass_storage == Some(true) && storage_interfaces.iter().all(|i| !i.authorized) {
        return Decision::Blocked(
            "the kernel has deauthorized its mass-storage interfaces (authorized = 0)",
        );
    }
    let allowlisted = match (device.vendor_id, device.product_id) {
        (Some(vendor), Some(product)) => policy
            .allow
            .iter()
            .find(|entry| entry.matches(vendor, product, device.serial.as_deref())),
        _ if policy.allow.is_empty() => None,
        _ => {
            return Decision::Unknown(
                "its vendor and product ids cannot be read to compare with the allowlist".into(),
            );
        }
    };
    if let Some(entry) = allowlisted {
        return Decision::Allowlisted(entry.to_string());
    }
    if policy.storage == UsbStorageMode::Allow {
        return Decision::PermittedByPolicy;
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

fn decide_read_only(storage_interfaces: &[&UsbInterface]) -> Decision {
    let mut read_only = Vec::new();
    let mut writable = Vec::new();
    let mut problems = Vec::new();
    for interface in storage_interfaces.iter().filter(|i| i.authorized) {
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

fn device_evidence(device: &UsbDevice, mass_storage: Option<bool>, decision: &Decision) -> Value {
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

fn module_rules_evidence(module: &str, rules: &ModuleRules) -> Value {
    json!({
        "install": rules.install.as_ref().map(|l| l.value.clone()),
        "install_file": rules.install.as_ref().map(|l| l.file.clone()),
        "install_disables_loading": rules.install_disables_loading(),
        "blacklisted_in": rules.blacklisted_in,
        "note": if rules.blacklisted_in.is_empty() || rules.install_disables_loading() {
            Value::Null
        } else {
            json!(format!(
                "a blacklist line alone does not stop {module}: kmod still loads it by name or \
                 as a dependency (usb-storage is one of uas)"
            ))
        },
    })
}

/// The preventive controls as evidence, with the one-line descriptions of
/// the ones that are in place.
fn controls_evidence(controls: &PreventiveControls) -> (Value, Vec<String>) {
    let mut in_place = Vec::new();
    let modprobe = match &controls.modprobe {
        Ok(config) => {
            for (module, rules) in [("usb-storage", &config.usb_storage), ("uas", &config.uas)] {
                if let (true, Some(line)) = (rules.install_disables_loading(), &rules.install) {
                    in_place.push(format!(
                        "{module} disabled by `install {module} {}` in {}",
                        line.value, line.file
                    ));
                }
            }
            json!({
                "usb_storage": module_rules_evidence("usb-storage", &config.usb_storage),
                "uas": module_rules_evidence("uas", &config.uas),
            })
        }
        Err(reason) => json!(format!("unknown: {reason}")),
    };
    let loaded = match &controls.loaded_modules {
        Ok(Some(modules)) => json!({
            "usb_storage": modules.contains("usb_storage"),
            "uas": modules.contains("uas"),
        }),
        Ok(None) => json!("unknown: /proc/modules does not exist"),
        Err(reason) => json!(format!("unknown: {reason}")),
    };
    let usbguard = match &controls.usbguard {
        UsbGuardState::Active => {
            in_place.push("USBGuard is active".into());
            json!({ "service": "active" })
        }
        UsbGuardState::NotActive(state) => json!({ "service": state }),
        UsbGuardState::Unknown(reason) => json!({ "service": format!("unknown: {reason}") }),
        UsbGuardState::NotChecked {
            daemon_config_present,
        } => json!({
            "service": "not checked: a host root has no running services",
            "daemon_config_present": daemon_config_present,
        }),
    };
    (
        json!({
            "modprobe": modprobe,
            "modules_loaded": loaded,
            "usbguard": usbguard,
        }),
        in_place,
    )
}

/// Decides the rule from the facts.
pub fn evaluate(facts: &UsbStorageFacts, policy: &UsbStoragePolicy) -> Verdict {
    let (mut controls, mut in_place) = controls_evidence(&facts.controls);
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
        let decision = decide(device, policy);
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
        let summary = match (policy.storage, connected.len()) {
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
            (UsbStorageMode::ReadOnly, _) => format!(
                "every connected USB mass-storage device is allowlisted or read-only{blocked}"
            ),
            (UsbStorageMode::Block, _) => {
                format!("only allowlisted USB mass-storage devices are connected{blocked}")
            }
        };
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

#[cfg(test)]
mod tests;
