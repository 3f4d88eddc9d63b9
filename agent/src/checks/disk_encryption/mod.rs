//! Rule `disk_encryption`: every persistent local filesystem is encrypted.
//! On Linux that is every filesystem, and swap, on dm-crypt; on Windows
//! every fixed volume fully encrypted by BitLocker with its protection on.
//!
//! Linux probe: the mounts from `/proc/self/mountinfo` and `/proc/swaps`, and
//! the block-device graph from `/sys/class/block/*` (`dev`, `slaves/`,
//! `dm/uuid`, `removable`). The evaluator walks from each mount's device down
//! through `slaves/` (LVM, RAID, stacked dm) until every path ends in a
//! dm-crypt device, whose `dm/uuid` starts `CRYPT-LUKS1-`, `CRYPT-LUKS2-`,
//! `CRYPT-PLAIN-` and the like. This is what makes LVM on LUKS pass, where
//! tools that look only at the mount's own device report a false negative.
//!
//! Not counted on Linux: pseudo and in-memory filesystems, network and
//! host-shared filesystems, read-only images (squashfs, iso9660), a
//! container's overlay, removable media (that is `usb_storage`'s business),
//! zram swap, and an unencrypted `/boot`, `/boot/efi` or `/efi` that is a
//! whole filesystem of its own, mounted nowhere else (`boot.rs`): it holds
//! the boot loader and kernel, no user data, and every distribution's
//! encrypted install leaves it so, as BitLocker and FileVault do theirs. A
//! swap file on it still fails. A mount whose device cannot be traced is
//! `unknown`, never `pass`, and so is one on a device-mapper device whose
//! target type cannot be read (a `dm/uuid` unreadable, empty, or of a prefix
//! not known to encrypt or not): it is never taken for a plain disk. ZFS is
//! reported `unknown` because its native encryption is not inspected yet.
//! The fix names one step per failing kind (reinstall for `/`, LUKS for
//! another filesystem, a random key for swap), none of which still fails.
//!
//! Windows probe: WMI's `Win32_EncryptableVolume` in
//! `root\CIMV2\Security\MicrosoftVolumeEncryption` (through
//! `sys::bitlocker`), one row per volume BitLocker can encrypt. The
//! evaluator (`evaluate_windows.rs`) asks every operating-system and fixed
//! data volume to be fully encrypted with protection on: encrypted with
//! protection suspended fails, as does encryption still running. Removable
//! volumes are left to `usb_storage`. A namespace that is absent (Wine,
//! editions without BitLocker), a refused query, an empty answer or a status
//! BitLocker itself cannot give (a locked volume) is `unknown`, never
//! `pass`.
//!
//! macOS probe (`macos.rs`, run by the root daemon under launchd):
//! `fdesetup status`, `diskutil apfs list -plist` and `diskutil info -plist
//! /`, read by `parse_macos.rs`. The evaluator (`evaluate_macos.rs`) asks
//! both sources: fdesetup must say `FileVault is On.` with no conversion
//! under way (a deferred enablement, "Encryption in progress" and
//! "Decryption in progress" all fail, as does `FileVault is Off.`), and
//! every APFS volume that holds user data (the volume group's `Data`
//! volume, or a volume without a role) must have `FileVault` set and
//! `CryptoMigrationOn` unset. Only the container the system booted from is
//! judged; every container when that cannot be read, which can fail a Mac
//! but never pass one wrongly. The sealed `System` snapshot and the support
//! volumes are not judged. A tool that fails, an answer not known here or
//! no volume to judge is `unknown`, never `pass`.
//!
//! The folder: this file holds the facts, the [`Rule`] impl and which probe
//! runs; `linux.rs`, `windows.rs` and `macos.rs` gather the facts,
//! `parse.rs` and `parse_macos.rs` read the text, `evaluate.rs` (with
//! `boot.rs`), `evaluate_windows.rs` and `evaluate_macos.rs` decide. Only
//! the probes reach the machine.

mod boot;
mod evaluate;
mod evaluate_macos;
mod evaluate_windows;
// Compiled on every OS, not only Linux: a host root (tests, `--host-root`) is
// a Linux tree wherever the agent runs, and gets this probe.
mod linux;
#[cfg(target_os = "macos")]
mod macos;
mod parse;
mod parse_macos;
#[cfg(windows)]
mod windows;

#[cfg(test)]
use evaluate::evaluate_linux;
pub use parse::{parse_mountinfo, parse_swaps};
pub use parse_macos::{parse_apfs_list, parse_boot_container, parse_fdesetup_status};

use std::collections::BTreeMap;

use palisade_shared::Policy;
use palisade_shared::policy::DiskEncryptionPolicy;

use palisade_shared::policy::RuleSettings;

use super::{Enforcer, ProbeError, Rule, Verdict};
use crate::sys::Host;

#[derive(Debug)]
pub struct DiskEncryption;

/// What the probe found, not yet judged, in the terms of its system.
#[derive(Debug, Clone, PartialEq)]
pub enum DiskFacts {
    Linux(LinuxDiskFacts),
    Windows(WindowsDiskFacts),
    MacOs(MacDiskFacts),
}

/// macOS: what `fdesetup status` and `diskutil apfs list -plist` said, or
/// why each could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacDiskFacts {
    pub fdesetup: Result<FileVaultStatus, String>,
    pub apfs_volumes: Result<Vec<ApfsVolume>, String>,
    /// The APFS container of `/` (`diskutil info -plist /`): only its
    /// volumes are judged, so an external APFS disk is left to
    /// `usb_storage`.
    pub boot_container: Result<String, String>,
}

/// What `fdesetup status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileVaultStatus {
    On,
    Off,
    /// "Deferred enablement appears to be active for user 'x'": FileVault
    /// turns on at that user's next log-in; until then the disk is plain.
    Deferred {
        user: Option<String>,
    },
    /// "Encryption in progress: Percent completed = 42" (or "Pending").
    Encrypting {
        progress: Option<String>,
    },
    Decrypting {
        progress: Option<String>,
    },
    /// Output this agent does not know, kept for the evidence.
    Unrecognized(String),
}

/// One volume of `diskutil apfs list -plist`; `None` is a key diskutil left
/// out (older macOS versions lack some).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApfsVolume {
    /// `ContainerReference` of its container: `disk1`, `disk3`.
    pub container: String,
    /// `DeviceIdentifier`: `disk3s5`.
    pub device_identifier: String,
    pub name: Option<String>,
    /// `Roles`: `System`, `Data`, `Preboot`…; empty for a volume without a
    /// role (the boot volume before Catalina, or one added in Disk Utility).
    pub roles: Vec<String>,
    /// `FileVault`: the volume's key is wrapped by a user's password.
    pub file_vault: Option<bool>,
    /// `Encryption`: encrypted at all (every volume on a T2 or Apple
    /// silicon Mac is, with a hardware key anyone starting the Mac can use).
    pub encryption: Option<bool>,
    /// `CryptoMigrationOn`: encryption or decryption under way.
    pub crypto_migration_on: Option<bool>,
    pub locked: Option<bool>,
}

/// Windows: the volumes `Win32_EncryptableVolume` lists, or why WMI could
/// not be asked (the error as WMI gave it, with its HRESULT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsDiskFacts {
    pub volumes: Result<Vec<BitLockerVolume>, String>,
}

/// One `Win32_EncryptableVolume` instance. The numbers are kept raw, as WMI
/// gave them, so that a value outside the documented set (a newer Windows,
/// a provider bug) reaches the evaluator, which reads it as `unknown`; `None`
/// is a property WMI left null (or an older Windows without it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BitLockerVolume {
    /// `DeviceID`: the volume GUID path, `\\?\Volume{…}\`.
    pub device_id: String,
    /// `DriveLetter`, `C:`; none for a volume mounted without a letter.
    pub drive_letter: Option<String>,
    /// `VolumeType`: 0 operating system, 1 fixed data, 2 portable
    /// (removable) data.
    pub volume_type: Option<u32>,
    /// `ProtectionStatus`: 0 off, 1 on, 2 unknown (a locked volume).
    pub protection_status: Option<u32>,
    /// `ConversionStatus`: 0 fully decrypted, 1 fully encrypted, 2
    /// encryption in progress, 3 decryption in progress, 4 encryption
    /// paused, 5 decryption paused.
    pub conversion_status: Option<u32>,
    /// `EncryptionMethod`: 0 none, 6 XTS-AES 128, 7 XTS-AES 256 and so on;
    /// only shown in the evidence.
    pub encryption_method: Option<u32>,
}

/// Linux: the mounts, swaps and block devices, raw tables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinuxDiskFacts {
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
    /// The directory of the filesystem that is mounted here: `/` for a whole
    /// filesystem, a subdirectory for a bind mount (`mount --bind /srv/x
    /// /boot`) or a btrfs subvolume (`/root`).
    pub root: String,
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
    /// A device-mapper device: sysfs gives it a `dm/` directory.
    pub device_mapper: bool,
    /// `dm/uuid` for device-mapper devices, trimmed. Its prefix is the only
    /// place sysfs tells the target type (crypt, LVM, multipath); a device
    /// made with plain `dmsetup create` has an empty one.
    pub dm_uuid: Option<String>,
    /// Why `dm/uuid` exists but could not be read.
    pub dm_uuid_error: Option<String>,
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
            linux::probe(host).map(DiskFacts::Linux)
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

/// Decides the rule from the facts of whichever system they came from.
pub fn evaluate(facts: &DiskFacts, policy: &DiskEncryptionPolicy) -> Verdict {
    match facts {
        DiskFacts::Linux(facts) => evaluate::evaluate_linux(facts, policy),
        DiskFacts::Windows(facts) => evaluate_windows::evaluate(facts, policy),
        DiskFacts::MacOs(facts) => evaluate_macos::evaluate(facts, policy),
    }
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
// Builds sysfs trees with symlinks, as the kernel lays them out.
#[cfg(all(test, unix))]
mod tests_boot;
#[cfg(test)]
mod tests_macos;
#[cfg(test)]
mod tests_windows;
