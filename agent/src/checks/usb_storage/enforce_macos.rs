//! The macOS enforcer of `usb_storage`: ejects a USB disk the policy blocks
//! and remounts read-only a volume the policy wants read-only, with
//! `diskutil`. The plan is made from the check's own facts and [`decide`],
//! so the enforcer and the check never disagree about a device; making it
//! is pure ([`unmount_plan`]), so it is tested on every OS.
//!
//! What macOS allows without an MDM profile: a root daemon can unmount and
//! eject a disk, not stop it from being mounted again. An ejected stick
//! comes back when it is unplugged and plugged in, and a user can remount a
//! volume in Disk Utility; only a configuration profile's media-management
//! restrictions can refuse the mount itself. So the check keeps failing a
//! blocked stick that is still plugged in (it is connected, and nothing
//! keeps it from being used again), and every enforcement run ejects it
//! again. An allowlisted device is never touched.
//!
//! [`decide`]: super::evaluate_macos::decide

use palisade_shared::policy::{UsbStorageMode, UsbStoragePolicy};

use super::MacUsbFacts;
use super::evaluate::Decision;
use super::evaluate_macos::{decide, describe};
use crate::enforce::plan::{Plan, Step};
use crate::sys::CommandSpec;

/// An absolute path, so PATH cannot swap the tool.
const DISKUTIL: &str = "/usr/sbin/diskutil";

const MACOS_LIMIT_NOTE: &str = "without an MDM configuration profile macOS cannot stop a USB \
    disk from being mounted again: an ejected disk comes back when it is replugged, and the \
    next enforcement run ejects it again";

/// The plan for the devices the facts list.
pub(super) fn unmount_plan(facts: &MacUsbFacts, policy: &UsbStoragePolicy) -> Plan {
    let mut plan = Plan::default();
    if policy.storage == UsbStorageMode::Allow {
        plan.notes
            .push("the policy allows USB storage: nothing to eject".into());
        return plan;
    }
    let report = match &facts.report {
        Ok(report) => report,
        Err(reason) => {
            plan.refusal = Some(format!(
                "cannot list the USB devices, so none is ejected: {reason}"
            ));
            return plan;
        }
    };
    for device in &report.devices {
        // Known to hold no storage: not this rule's. Not known (a report
        // without media): decided, so it is noted and left alone.
        if device.media.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        let media = device.media.as_deref().unwrap_or_default();
        match decide(device, policy) {
            Decision::NotAllowed => {
                for medium in media.iter().filter(|m| !m.bsd_name.is_empty()) {
                    plan.steps.push(diskutil(&["eject", &medium.bsd_name]));
                }
            }
            Decision::Writable(_) => {
                for volume in media
                    .iter()
                    .flat_map(|m| &m.volumes)
                    .filter(|v| v.writable == Some(true) && !v.bsd_name.is_empty())
                {
                    plan.steps.push(diskutil(&["unmount", &volume.bsd_name]));
                    plan.steps
                        .push(diskutil(&["mount", "readOnly", &volume.bsd_name]));
                }
            }
            Decision::Unknown(reason) => plan
                .notes
                .push(format!("{} is left alone: {reason}", describe(device))),
            _ => {}
        }
    }
    if plan.steps.is_empty() {
        plan.notes
            .push("no connected USB disk needs ejecting or remounting".into());
    }
    plan.notes.push(MACOS_LIMIT_NOTE.into());
    plan
}

fn diskutil(args: &[&str]) -> Step {
    let command = args
        .iter()
        .fold(CommandSpec::new(DISKUTIL), |command, arg| command.arg(*arg));
    Step::Run {
        command,
        writes: Vec::new(),
    }
}

/// The live-macOS plan: the check's probe, then [`unmount_plan`].
#[cfg(target_os = "macos")]
pub(super) fn native_plan(policy: &UsbStoragePolicy) -> anyhow::Result<Plan> {
    let facts = super::macos::facts(&crate::sys::Host::system());
    Ok(unmount_plan(&facts, policy))
}
