//! The parsers of `usb_storage`: pure functions from sysfs attribute text,
//! kmod configuration, `/proc/modules` and `systemctl is-active` output to
//! facts. Compiled and tested on every OS; they read nothing themselves.

use std::collections::{BTreeMap, BTreeSet};

use super::{ConfigLine, ModprobeControls, UsbGuardState};

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

pub(super) fn joined_config_lines(text: &str) -> Vec<String> {
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
