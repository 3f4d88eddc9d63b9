//! Enforcer for `usb_storage`: deauthorizes (`block`) or write-protects
//! (`read_only`) USB mass-storage devices that are not on the allowlist, and
//! installs a udev rule that does the same while the agent is not running.
//!
//! - [`on_device_added`]: the daemon calls it (through the registry's device
//!   hook) on a USB `add` uevent with the device's sysfs path. It reads the device and its interfaces with the
//!   check's own sysfs readers and decides with the check's own `decide`, so
//!   the enforcer and the check can never disagree about a device. In
//!   `block` mode it writes `0` to the device's `authorized` attribute (the
//!   kernel unbinds every driver and binds none until it is set to 1 again);
//!   in `read_only` mode it runs `blockdev --setro` on the device's disks and
//!   partitions (the `ro` attribute in sysfs is itself read-only). Both only
//!   on the live system for commands; under a host root the attribute file
//!   of the tree is written, and `blockdev` is only recorded in the event.
//! - [`sweep`]: the same for every device present (daemon start).
//! - [`plan`]: for `palisade-agent enforce` and the daemon's enforce step:
//!   the sweep, plus `/etc/udev/rules.d/70-palisade-usb-storage.rules` and
//!   `udevadm control --reload` (live system only).
//!
//! On a live Windows, [`plan`] sets machine-wide switches instead (see
//! `native_plan`): `block` disables the USBSTOR and UASPStor drivers
//! (`Start` = 4) and sets Group Policy's Deny_Read and Deny_Write for
//! removable disks (the second covers a Windows where USBSTOR was never
//! installed, whose `Start` Windows would reset when it installs the driver
//! for the first stick: Microsoft's KB 823732); `read_only` sets Deny_Write.
//! Each value is recorded in the undo journal first, and undo restores it
//! or its absence. The switches cannot spare an allowlisted device, so with
//! an allowlist the Windows enforcer refuses. A stick already plugged in
//! keeps working until it is unplugged; the check says so.
//!
//! The daemon-facing functions act only when the policy puts the rule in
//! `enforce` mode. A device whose interface classes cannot be read is left
//! alone (it may be a keyboard) and logged; the check reports it `unknown`.
//! A deauthorized device stays so until it is unplugged; undo removes the
//! udev rule but does not re-authorize devices.

use std::path::Path;

use chrono::Utc;
use palisade_shared::Policy;
use palisade_shared::policy::{UsbDeviceMatch, UsbStorageMode, UsbStoragePolicy};
use palisade_shared::report::{Event, EventKind, Mode};
use serde_json::{Map, json};

use super::{
    Decision, UsbEntry, classify_usb_entry, decide, device_label, is_mass_storage, probe_device,
    probe_driver_loading, probe_interface,
};
use crate::enforce::plan::{Plan, Step, run_checked, write_attribute, write_if_different};
use crate::sys::{CommandSpec, Host, Uevent};

pub const UDEV_RULE: &str = "/etc/udev/rules.d/70-palisade-usb-storage.rules";
const USB_DEVICES: &str = "/sys/bus/usb/devices";

/// Called on every kernel uevent: acts on a USB device being plugged in
/// and, in `read_only` mode, on its disk appearing (the disk comes after
/// the USB device, so the disk's own `add` is the moment to act). Any other
/// event is left alone.
pub fn on_device_event(
    host: &Host,
    policy: &Policy,
    uevent: &Uevent,
) -> anyhow::Result<Option<Event>> {
    let read_only = policy
        .usb_storage
        .as_ref()
        .is_some_and(|usb| usb.storage == UsbStorageMode::ReadOnly);
    let usb_disk_added =
        uevent.action == "add" && uevent.subsystem == "block" && uevent.devpath.contains("/usb");
    let path = if uevent.is_usb_device_added() {
        uevent.sysfs_path()
    } else if read_only && usb_disk_added {
        // `.../usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sda`: the
        // USB interface is the part before the SCSI host.
        match uevent.sysfs_path().split_once("/host") {
            Some((interface, _)) => interface.to_owned(),
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    on_device_added(host, policy, Path::new(&path))
}

/// Called on a USB `add` uevent with the device's sysfs path (`/sys/...`,
/// a uevent `DEVPATH` such as `/devices/pci0000:00/.../2-1`, or one of its
/// interfaces `.../2-1:1.0`). Blocks or write-protects the device when the
/// policy says so and returns the `usb_device_blocked` event; `None` when
/// the device is left alone (not storage, allowlisted, already blocked, the
/// rule not in `enforce` mode).
pub fn on_device_added(
    host: &Host,
    policy: &Policy,
    sysfs_device: &Path,
) -> anyhow::Result<Option<Event>> {
    let Some(usb_policy) = enforced_policy(policy) else {
        return Ok(None);
    };
    let Some(dir) = device_dir(sysfs_device) else {
        anyhow::bail!("{} is not a USB device path", sysfs_device.display());
    };
    let Some(action) = device_action(host, usb_policy, &dir)? else {
        return Ok(None);
    };
    apply_device_action(host, action).map(Some)
}

/// Blocks or write-protects every present device the policy does not allow
/// (daemon start). Empty when the machine has no USB bus.
pub fn sweep(host: &Host, policy: &Policy) -> anyhow::Result<Vec<Event>> {
    let Some(usb_policy) = enforced_policy(policy) else {
        return Ok(Vec::new());
    };
    let mut events = Vec::new();
    for action in present_device_actions(host, usb_policy)? {
        events.push(apply_device_action(host, action)?);
    }
    Ok(events)
}

/// Plans the whole rule: present devices, then the udev rule.
pub fn plan(host: &Host, policy: &UsbStoragePolicy) -> anyhow::Result<Plan> {
    if Plan::is_foreign_live_system(host) {
        return native_plan(policy);
    }
    let mut plan = Plan::default();
    let actions = present_device_actions(host, policy)?;
    if !host.exists("/sys/bus/usb") {
        plan.notes
            .push("this machine has no USB bus: no device to deauthorize".into());
    } else if actions.is_empty() {
        plan.notes
            .push("no connected USB mass-storage device needs blocking".into());
    }
    for action in actions {
        plan.steps.extend(action.steps);
        plan.steps.push(Step::Event {
            event: action.event,
            description: None,
        });
    }
    let (rule, notes) = udev_rule_text(policy);
    plan.notes.extend(notes);
    let changed = match rule {
        Some(text) => write_if_different(host, &mut plan, UDEV_RULE, text)?,
        None if host.exists(UDEV_RULE) => {
            plan.steps.push(Step::RemoveFile {
                path: UDEV_RULE.to_owned(),
            });
            true
        }
        None => false,
    };
    if changed && host.is_live_system() {
        plan.steps.push(Step::Run {
            command: udev_reload_command(),
            writes: Vec::new(),
        });
    }
    Ok(plan)
}

/// The Windows plan: machine-wide registry switches (module comment). A
/// value already as wanted is left alone.
#[cfg(windows)]
fn native_plan(policy: &UsbStoragePolicy) -> anyhow::Result<Plan> {
    use anyhow::Context as _;

    use super::windows::{
        DENY_READ, DENY_WRITE, REMOVABLE_DISKS_POLICY, SERVICE_START, UASPSTOR_SERVICE,
        USBSTOR_SERVICE,
    };
    use crate::sys::registry::{self, Hive};

    /// The `Start` of a driver Windows never loads.
    const DISABLED: u32 = 4;

    let mut plan = Plan::default();
    if policy.storage == UsbStorageMode::Allow {
        plan.notes
            .push("the policy allows USB storage: nothing to switch off".into());
        return Ok(plan);
    }
    if !policy.allow.is_empty() {
        plan.refusal = Some(
            "Windows' switches for USB storage are machine-wide and would block the allowlisted \
             devices too; with an allowlist this rule can only be nudged on Windows"
                .into(),
        );
        return Ok(plan);
    }
    let mut set = |key: &str, name: &str, value: u32| -> anyhow::Result<()> {
        let current = registry::read_dword(Hive::LocalMachine, key, name)
            .with_context(|| format!(r"cannot read HKLM\{key}\{name}"))?;
        if current == Some(value) {
            plan.notes
                .push(format!(r"HKLM\{key}\{name} is already {value}"));
        } else {
            plan.steps.push(Step::SetRegistryDword {
                key: key.to_owned(),
                name: name.to_owned(),
                value,
                current,
            });
        }
        Ok(())
    };
    match policy.storage {
        UsbStorageMode::Block => {
            set(USBSTOR_SERVICE, SERVICE_START, DISABLED)?;
            // UASPStor exists from Windows 8 on; a key made up where there is
            // no such driver would mean nothing.
            if registry::key_last_write_time(Hive::LocalMachine, UASPSTOR_SERVICE)
                .with_context(|| format!(r"cannot read HKLM\{UASPSTOR_SERVICE}"))?
                .is_some()
            {
                set(UASPSTOR_SERVICE, SERVICE_START, DISABLED)?;
            }
            set(REMOVABLE_DISKS_POLICY, DENY_READ, 1)?;
            set(REMOVABLE_DISKS_POLICY, DENY_WRITE, 1)?;
        }
        UsbStorageMode::ReadOnly => set(REMOVABLE_DISKS_POLICY, DENY_WRITE, 1)?,
        UsbStorageMode::Allow => {}
    }
    plan.notes.push(
        "a USB stick already plugged in keeps working until it is unplugged and plugged in again"
            .into(),
    );
    Ok(plan)
}

#[cfg(target_os = "macos")]
use super::enforce_macos::native_plan;
#[cfg(not(any(windows, target_os = "macos")))]
fn native_plan(_policy: &UsbStoragePolicy) -> anyhow::Result<Plan> {
    Ok(Plan::no_enforcer_yet("USB storage"))
}

/// After `--undo`: udev reads its rules at start and on reload, and the
/// restored set must be the one it uses. Only the live system has a udev to
/// tell.
pub fn after_undo(host: &Host, restored_paths: &[String]) -> anyhow::Result<Vec<String>> {
    let touched_udev = restored_paths
        .iter()
        .any(|path| path.starts_with("/etc/udev/rules.d/"));
    if !(touched_udev && host.is_live_system()) {
        return Ok(Vec::new());
    }
    let command = udev_reload_command();
    run_checked(host, &command)?;
    Ok(vec![format!("run {}", command.display())])
}

/// `udevadm control --reload`: udev re-reads its rules files.
pub(crate) fn udev_reload_command() -> CommandSpec {
    CommandSpec::new("udevadm").arg("control").arg("--reload")
}

/// The udev rule for a policy (`None` for `allow`: no rule), and notes about
/// allowlist entries it cannot express.
///
/// `block`: on a USB device's `add`, when `ID_USB_INTERFACES` (set by the
/// `usb_id` builtin that 50-udev-default.rules imports for every USB device:
/// `:CCSSPP:` per interface) lists an interface of class 08, set
/// `ATTR{authorized}="0"`, unless an allowlist entry matched first and
/// jumped past it. `read_only`: on a USB disk or partition's `add`, run
/// `blockdev --setro` on its node, with the allowlist matched on the parent
/// USB device (`ATTRS{}` keys of one rule must match on the same device).
pub fn udev_rule_text(policy: &UsbStoragePolicy) -> (Option<String>, Vec<String>) {
    const END: &str = "GOTO=\"palisade_usb_storage_end\"";
    let mut notes = Vec::new();
    let (header, matcher, action, attr) = match policy.storage {
        UsbStorageMode::Allow => return (None, notes),
        UsbStorageMode::Block => (
            format!(
                "ACTION!=\"add\", {END}\n\
                 SUBSYSTEM!=\"usb\", {END}\n\
                 ENV{{DEVTYPE}}!=\"usb_device\", {END}\n\
                 ENV{{ID_USB_INTERFACES}}!=\"*:08????:*\", {END}\n"
            ),
            "deauthorizes USB mass-storage devices (an interface of class 08) when they are \
             plugged in",
            "ATTR{authorized}=\"0\"\n",
            "ATTR",
        ),
        UsbStorageMode::ReadOnly => (
            format!(
                "ACTION!=\"add\", {END}\n\
                 SUBSYSTEM!=\"block\", {END}\n\
                 ENV{{ID_BUS}}!=\"usb\", {END}\n"
            ),
            "makes the disks and partitions of USB storage devices read-only when they appear",
            "RUN+=\"/usr/sbin/blockdev --setro $devnode\"\n",
            "ATTRS",
        ),
    };
    let mut allow = String::new();
    for entry in &policy.allow {
        match udev_allow_line(entry, attr) {
            Some(line) => {
                allow.push_str(&line);
                allow.push_str(&format!(", {END}\n"));
            }
            None => notes.push(format!(
                "allowlist entry {entry} has a serial udev cannot match literally, so the udev \
                 rule does not exempt it (the agent itself does)"
            )),
        }
    }
    let text = format!(
        "# Managed by palisade-agent (rule usb_storage): {matcher}, also while the agent is not\n\
         # running. `palisade-agent enforce --undo usb_storage` removes it.\n\
         {header}\
         # The allowlist.\n\
         {allow}\
         {action}\
         LABEL=\"palisade_usb_storage_end\"\n"
    );
    (Some(text), notes)
}

fn udev_allow_line(entry: &UsbDeviceMatch, attr: &str) -> Option<String> {
    let mut line = format!(
        "{attr}{{idVendor}}==\"{:04x}\", {attr}{{idProduct}}==\"{:04x}\"",
        entry.vendor_id, entry.product_id
    );
    if let Some(serial) = &entry.serial {
        // udev values are glob patterns in double quotes: only plain
        // characters can be matched literally.
        if !serial
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return None;
        }
        line.push_str(&format!(", {attr}{{serial}}==\"{serial}\""));
    }
    Some(line)
}

// ---------------------------------------------------------------------------

/// What to do about one device.
#[derive(Debug)]
struct DeviceAction {
    steps: Vec<Step>,
    event: Event,
}

fn enforced_policy(policy: &Policy) -> Option<&UsbStoragePolicy> {
    policy
        .usb_storage
        .as_ref()
        .filter(|p| p.settings.mode == Mode::Enforce)
}

fn present_device_actions(
    host: &Host,
    policy: &UsbStoragePolicy,
) -> anyhow::Result<Vec<DeviceAction>> {
    let names = match host.list_dir(USB_DEVICES) {
        Ok(Some(names)) => names,
        Ok(None) => return Ok(Vec::new()),
        Err(err) => anyhow::bail!("cannot list {USB_DEVICES}: {err}"),
    };
    let mut actions = Vec::new();
    for name in names {
        if classify_usb_entry(&name) != UsbEntry::Device || name.starts_with("usb") {
            continue;
        }
        if let Some(action) = device_action(host, policy, &format!("{USB_DEVICES}/{name}"))? {
            actions.push(action);
        }
    }
    Ok(actions)
}

/// The device directory (absolute, under the host root) for a path the
/// caller gave: itself, or its device when it names an interface.
fn device_dir(path: &Path) -> Option<String> {
    let text = path.to_str()?.trim_end_matches('/');
    let text = if text.starts_with("/sys/") {
        text.to_owned()
    } else if text.starts_with("/devices/") {
        format!("/sys{text}")
    } else {
        return None;
    };
    let (parent, name) = text.rsplit_once('/')?;
    match classify_usb_entry(name) {
        UsbEntry::Device => Some(text.clone()),
        UsbEntry::Interface { device } => {
            // Real sysfs nests interfaces in their device's directory; the
            // `/sys/bus/usb/devices` view lists them side by side.
            if parent.rsplit('/').next() == Some(device.as_str()) {
                Some(parent.to_owned())
            } else {
                Some(format!("{parent}/{device}"))
            }
        }
    }
}

fn device_action(
    host: &Host,
    policy: &UsbStoragePolicy,
    dir: &str,
) -> anyhow::Result<Option<DeviceAction>> {
    let name = dir.rsplit('/').next().unwrap_or_default().to_owned();
    let mut device = probe_device(host, &name, dir);
    device.interfaces = find_interfaces(host, &name, dir)?;
    let label = device_label(&device);
    // As in the check: only mass storage is judged (a keyboard is never
    // `not_allowed`), and a device whose interface classes cannot be read
    // is left alone rather than risk deauthorizing a keyboard.
    match is_mass_storage(&device) {
        Some(true) => {}
        Some(false) => return Ok(None),
        None => {
            if device.authorized {
                tracing::warn!(device = %label, sysfs_path = %dir, "USB device left alone: the class of an interface cannot be read");
            }
            return Ok(None);
        }
    }
    // The device has just arrived, before any driver binds: whether one can
    // bind decides, as in the check.
    let decision = decide(&device, policy, &probe_driver_loading(host));
    let (action, steps, extra) = match &decision {
        Decision::NotAllowed => {
            let path = format!("{dir}/authorized");
            let steps = vec![Step::WriteAttribute {
                description: format!("write 0 to {path} (deauthorize {label})"),
                path,
                value: "0".into(),
            }];
            (
                "deauthorized",
                steps,
                json!({ "reason": format!(
                    "USB mass storage is blocked by the policy and {label} is not on the allowlist"
                ) }),
            )
        }
        Decision::Writable(names) => {
            let disks: Vec<&String> = names
                .iter()
                .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()))
                .collect();
            let commands: Vec<CommandSpec> = disks
                .iter()
                .map(|disk| {
                    CommandSpec::new("blockdev")
                        .arg("--setro")
                        .arg(format!("/dev/{disk}"))
                })
                .collect();
            let shown: Vec<String> = commands.iter().map(CommandSpec::display).collect();
            let live = host.is_live_system();
            let steps = if live {
                commands
                    .into_iter()
                    .map(|command| Step::Run {
                        command,
                        writes: Vec::new(),
                    })
                    .collect()
            } else {
                vec![Step::Note(format!(
                    "would run {} on the live system (a host root has no block devices)",
                    shown.join(" and ")
                ))]
            };
            (
                "read_only",
                steps,
                json!({
                    "reason": format!(
                        "the policy allows USB storage only read-only and {label} is writable"
                    ),
                    "block_devices": names,
                    "commands": shown,
                    "applied": live,
                }),
            )
        }
        Decision::Unknown(reason) => {
            tracing::warn!(device = %label, sysfs_path = %dir, reason = %reason, "USB device left alone: cannot tell whether it must be blocked");
            return Ok(None);
        }
        Decision::Blocked(_)
        | Decision::Allowlisted(_)
        | Decision::PermittedByPolicy
        | Decision::AllReadOnly(_) => return Ok(None),
    };
    let mut details = Map::new();
    let id = |value: Option<u16>| value.map(|v| format!("{v:04x}"));
    details.insert("vendor_id".into(), json!(id(device.vendor_id)));
    details.insert("product_id".into(), json!(id(device.product_id)));
    details.insert("serial".into(), json!(device.serial));
    details.insert("product".into(), json!(device.product));
    details.insert("manufacturer".into(), json!(device.manufacturer));
    details.insert("sysfs_path".into(), json!(dir));
    details.insert("action".into(), json!(action));
    if let Some(extra) = extra.as_object() {
        details.extend(extra.clone());
    }
    Ok(Some(DeviceAction {
        steps,
        event: Event {
            kind: EventKind::UsbDeviceBlocked,
            at: Utc::now(),
            details,
        },
    }))
}

/// The interfaces of device `name`: the `<name>:*` entries inside its
/// directory (real sysfs), or beside it (the `/sys/bus/usb/devices` view of a
/// prepared tree).
fn find_interfaces(host: &Host, name: &str, dir: &str) -> anyhow::Result<Vec<super::UsbInterface>> {
    let prefix = format!("{name}:");
    let parent = dir.rsplit_once('/').map_or("", |(p, _)| p).to_owned();
    for base in [dir.to_owned(), parent] {
        let names = host
            .list_dir(&base)
            .map_err(|err| anyhow::anyhow!("cannot list {base}: {err}"))?
            .unwrap_or_default();
        let interfaces: Vec<_> = names
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .map(|n| probe_interface(host, n, &format!("{base}/{n}")))
            .collect();
        if !interfaces.is_empty() {
            return Ok(interfaces);
        }
    }
    Ok(Vec::new())
}

fn apply_device_action(host: &Host, action: DeviceAction) -> anyhow::Result<Event> {
    for step in action.steps {
        match step {
            Step::WriteAttribute {
                path,
                value,
                description,
            } => {
                write_attribute(&host.path(&path), &value)
                    .map_err(|err| anyhow::anyhow!("cannot write {value:?} to {path}: {err}"))?;
                tracing::info!(change = %description, "blocked a USB device");
            }
            Step::Run { command, .. } => {
                run_checked(host, &command)?;
                tracing::info!(command = %command.display(), "made a USB disk read-only");
            }
            Step::Note(note) => tracing::info!(note = %note, "USB device not changed"),
            _ => {}
        }
    }
    Ok(action.event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_dirs_from_paths_and_devpaths() {
        let dir = |p: &str| device_dir(Path::new(p));
        assert_eq!(
            dir("/sys/bus/usb/devices/2-1").as_deref(),
            Some("/sys/bus/usb/devices/2-1")
        );
        assert_eq!(
            dir("/sys/bus/usb/devices/2-1:1.0").as_deref(),
            Some("/sys/bus/usb/devices/2-1")
        );
        assert_eq!(
            dir("/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0").as_deref(),
            Some("/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1")
        );
        assert_eq!(dir("relative/2-1"), None);
    }

    /// The packaged rule is the baseline policy's (block, empty allowlist).
    #[test]
    fn packaged_rule_matches_the_baseline() {
        let baseline = Policy::parse(crate::cli::BASELINE_POLICY).unwrap();
        let (text, notes) = udev_rule_text(baseline.usb_storage.as_ref().unwrap());
        assert!(notes.is_empty());
        assert_eq!(
            text.as_deref(),
            Some(include_str!(
                "../../../../packaging/linux/70-palisade-usb-storage.rules"
            ))
        );
    }
}
