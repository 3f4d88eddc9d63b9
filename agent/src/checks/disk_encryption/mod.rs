//! Rule `disk_encryption`: every persistent local filesystem, and swap, sits
//! on dm-crypt.
//!
//! Linux probe: the mounts from `/proc/self/mountinfo` and `/proc/swaps`, and
//! the block-device graph from `/sys/class/block/*` (`dev`, `slaves/`,
//! `dm/uuid`, `removable`). The evaluator walks from each mount's device down
//! through `slaves/` (LVM, RAID, stacked dm) until every path ends in a
//! dm-crypt device, whose `dm/uuid` starts `CRYPT-LUKS1-`, `CRYPT-LUKS2-`,
//! `CRYPT-PLAIN-` and the like. This is what makes LVM on LUKS pass, where
//! tools that look only at the mount's own device report a false negative.
//!
//! Not counted: pseudo and in-memory filesystems, network and host-shared
//! filesystems, read-only images (squashfs, iso9660), a container's overlay,
//! removable media (that is `usb_storage`'s business), and zram swap. A mount
//! whose device cannot be traced is `unknown`, never `pass`; ZFS is reported
//! `unknown` because its native encryption is not inspected yet.
//!
//! macOS (`fdesetup status`) and Windows (`manage-bde -status`) probes are
//! not written yet: there the rule reports `unknown`.
//!
//! The folder: this file holds the facts, the [`Rule`] impl and which probe
//! runs; `linux.rs` (and `windows.rs`, `macos.rs`) gather the facts,
//! `parse.rs` reads the text, `evaluate.rs` decides. Only the probes reach
//! the machine.

mod evaluate;
// Compiled on every OS, not only Linux: a host root (tests, `--host-root`) is
// a Linux tree wherever the agent runs, and gets this probe.
mod linux;
#[cfg(target_os = "macos")]
mod macos;
mod parse;
#[cfg(windows)]
mod windows;

pub use evaluate::evaluate;
pub use parse::{parse_mountinfo, parse_swaps};

use std::collections::BTreeMap;

use palisade_shared::Policy;
use palisade_shared::policy::DiskEncryptionPolicy;

use palisade_shared::policy::RuleSettings;

use super::{Enforcer, ProbeError, Rule, Verdict};
use crate::sys::Host;

#[derive(Debug)]
pub struct DiskEncryption;

/// What the probe found: raw tables, not yet judged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskFacts {
    pub mounts: Vec<MountEntry>,
    pub swaps: Vec<SwapEntry>,
    /// Block devices by kernel name (`sda1`, `dm-0`).
    pub devices: BTreeMap<String, BlockDevice>,
    /// For mount sources that are paths (`/dev/mapper/root`,
    /// `/dev/disk/by-uuid/…`), the kernel name they resolve to.
    pub resolved_sources: BTreeMap<String, String>,
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub major: u32,
    pub minor: u32,
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
}

/// One line of `/proc/swaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapEntry {
    pub path: String,
    /// `partition` or `file`.
    pub kind: String,
}

/// One block device from `/sys/class/block/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDevice {
    pub name: String,
    pub major: u32,
    pub minor: u32,
    /// The devices this one is built on (`slaves/`).
    pub slaves: Vec<String>,
    /// `dm/uuid` for device-mapper devices.
    pub dm_uuid: Option<String>,
    /// `dm/name` for device-mapper devices.
    pub dm_name: Option<String>,
    /// The disk (or its parent disk) reports removable media.
    pub removable: bool,
}

impl Rule for DiskEncryption {
    // No watched files: the rule reads /proc and /sys, which inotify cannot
    // watch. Disks and mappings coming and going arrive as block uevents;
    // a mount with no device change is seen at the next interval.

    type Policy = DiskEncryptionPolicy;
    type Facts = DiskFacts;

    fn id(&self) -> &'static str {
        palisade_shared::RuleId::DISK_ENCRYPTION
    }

    fn policy<'p>(&self, policy: &'p Policy) -> Option<&'p Self::Policy> {
        policy.disk_encryption.as_ref()
    }

    fn probe(&self, host: &Host, _policy: &Self::Policy) -> Result<DiskFacts, ProbeError> {
        // A host root (tests, `--host-root`) is a Linux tree on every OS, so
        // it gets the Linux probe wherever the agent runs.
        if cfg!(target_os = "linux") || !host.is_live_system() {
            linux::probe(host)
        } else {
            native_probe(host)
        }
    }

    fn evaluate(&self, facts: &DiskFacts, policy: &Self::Policy) -> Verdict {
        evaluate(facts, policy)
    }

    fn settings(&self, policy: &Self::Policy) -> RuleSettings {
        policy.settings
    }

    fn enforcer(&self) -> Enforcer<Self::Policy> {
        Enforcer::NotEnforceable(
            "an agent cannot encrypt a disk for its user, so this rule is only nudged",
        )
    }

    fn title(&self) -> &'static str {
        "Disk encryption"
    }

    fn why_it_matters(&self) -> &'static str {
        "A lost laptop without it exposes every patient record on it."
    }

    // No settings panel: disk encryption is set up at install time.
}

#[cfg(windows)]
use windows::probe as native_probe;

#[cfg(target_os = "macos")]
use macos::probe as native_probe;

/// Linux never gets here (a live Linux system runs `linux::probe`); other
/// systems have no probe yet.
#[cfg(not(any(windows, target_os = "macos")))]
fn native_probe(_host: &Host) -> Result<DiskFacts, ProbeError> {
    Err(super::no_probe_yet("disk encryption"))
}

#[cfg(test)]
use linux::probe as probe_linux;

#[cfg(test)]
mod tests;
