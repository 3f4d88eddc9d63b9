//! The Linux evaluator of `disk_encryption`: from the mounts, swaps and block-device
//! graph to a verdict. Pure (no I/O, no clock), so it compiles and is tested
//! on every OS.

use std::collections::BTreeMap;

use palisade_shared::policy::DiskEncryptionPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::boot::{BOOT_PARTITION_NOTE, is_boot_partition};
use super::{BlockDevice, LinuxDiskFacts};
use crate::checks::Verdict;

/// dm-crypt targets by the prefix cryptsetup gives their `dm/uuid`. Not every
/// `CRYPT-` prefix is encryption: `CRYPT-VERITY-` and `CRYPT-INTEGRITY-` only
/// protect integrity, so they are walked through, never accepted.
pub(super) const DM_CRYPT_UUID_PREFIXES: [(&str, &str); 7] = [
    ("CRYPT-LUKS2-", "LUKS2"),
    ("CRYPT-LUKS1-", "LUKS1"),
    ("CRYPT-PLAIN-", "plain dm-crypt"),
    ("CRYPT-BITLK-", "BitLocker (dm-crypt)"),
    ("CRYPT-TCRYPT-", "TrueCrypt/VeraCrypt (dm-crypt)"),
    ("CRYPT-LOOPAES-", "loop-AES (dm-crypt)"),
    ("CRYPT-FVAULT2-", "FileVault 2 (dm-crypt)"),
];

/// `dm/uuid` prefixes of device-mapper layers that encrypt nothing, so the
/// walk goes on to the devices under them: LVM logical volumes (lvm2 names
/// them `LVM-<vg uuid><lv uuid>`), cryptsetup's integrity-only targets and
/// the integrity sub-device of authenticated LUKS2, multipath maps and their
/// partitions (`mpath-`, `part1-mpath-…` from kpartx), and dmraid sets. Any
/// other prefix, and a missing or unreadable uuid, leaves the target type
/// unknown: such a device may be dm-crypt made by hand with `dmsetup`, so it
/// is neither passed nor taken for a plain disk.
pub(super) const DM_NON_ENCRYPTING_UUID_PREFIXES: [&str; 6] = [
    "LVM-",
    "CRYPT-VERITY-",
    "CRYPT-INTEGRITY-",
    "CRYPT-SUBDEV-",
    "mpath-",
    "DMRAID-",
];

/// kpartx's partitions of a device-mapper device: `part<N>-<uuid of the whole>`.
fn is_dm_partition_uuid(uuid: &str) -> bool {
    uuid.strip_prefix("part")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(number, _)| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
}

/// Filesystems that hold no persistent local data of their own.
pub(super) const NOT_COUNTED_FS_TYPES: [&str; 30] = [
    "proc",
    "sysfs",
    "tmpfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "mqueue",
    "hugetlbfs",
    "pstore",
    "bpf",
    "autofs",
    "binfmt_misc",
    "efivarfs",
    "rpc_pipefs",
    "nsfs",
    "ramfs",
    "rootfs",
    "overlay",
    "squashfs",
    "iso9660",
    "erofs",
    "9p",
    "virtiofs",
    "selinuxfs",
];
pub(super) const NETWORK_FS_TYPES: [&str; 8] = [
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "afs",
];

/// How deep a stack of dm/md devices can be before it is taken for a cycle.
pub(super) const MAX_STACK_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Protection {
    /// Encrypted by these dm-crypt devices (with their kind).
    Encrypted(Vec<String>),
    /// These leaf devices are reached without passing dm-crypt.
    Plain(Vec<String>),
    Unknown(String),
}

pub(super) fn protection_of(
    name: &str,
    devices: &BTreeMap<String, BlockDevice>,
    depth: usize,
) -> Protection {
    if depth > MAX_STACK_DEPTH {
        return Protection::Unknown(format!(
            "device stack under {name} is deeper than {MAX_STACK_DEPTH}"
        ));
    }
    let Some(device) = devices.get(name) else {
        return Protection::Unknown(format!("block device {name} is not in /sys/class/block"));
    };
    let device_mapper =
        device.device_mapper || device.dm_uuid.is_some() || device.dm_uuid_error.is_some();
    if device_mapper {
        if let Some(reason) = device_mapper_unknown(device) {
            return Protection::Unknown(reason);
        }
        let uuid = device.dm_uuid.as_deref().unwrap_or_default();
        if let Some((_, kind)) = DM_CRYPT_UUID_PREFIXES
            .iter()
            .find(|(p, _)| uuid.starts_with(p))
        {
            return Protection::Encrypted(vec![format!("{name} ({kind})")]);
        }
        if device.slaves.is_empty() {
            // A device-mapper device with nothing under it (e.g. dm-zero, or
            // an error target): nothing to trace.
            return Protection::Unknown(format!(
                "device-mapper device {name} has no underlying device"
            ));
        }
    } else if device.slaves.is_empty() {
        return Protection::Plain(vec![name.to_owned()]);
    }
    // Every path down must be encrypted: an LV spanning one encrypted and one
    // plain PV leaks whatever lands on the plain one.
    let mut encrypted = Vec::new();
    let mut plain = Vec::new();
    for slave in &device.slaves {
        match protection_of(slave, devices, depth + 1) {
            Protection::Encrypted(via) => encrypted.extend(via),
            Protection::Plain(leaves) => plain.extend(leaves),
            unknown @ Protection::Unknown(_) => return unknown,
        }
    }
    if plain.is_empty() {
        Protection::Encrypted(encrypted)
    } else {
        Protection::Plain(plain)
    }
}

/// Why a device-mapper device's target type cannot be told from its
/// `dm/uuid`, or `None` when the uuid names a crypt or a non-encrypting
/// target.
fn device_mapper_unknown(device: &BlockDevice) -> Option<String> {
    let name = &device.name;
    if let Some(error) = &device.dm_uuid_error {
        return Some(format!(
            "{error}, so whether device-mapper device {name} is dm-crypt cannot be told"
        ));
    }
    let uuid = device.dm_uuid.as_deref().unwrap_or_default();
    if uuid.is_empty() {
        return Some(format!(
            "device-mapper device {name} has no dm/uuid, so whether it is dm-crypt cannot be told"
        ));
    }
    let known = DM_CRYPT_UUID_PREFIXES
        .iter()
        .any(|(p, _)| uuid.starts_with(p))
        || DM_NON_ENCRYPTING_UUID_PREFIXES
            .iter()
            .any(|p| uuid.starts_with(p))
        || is_dm_partition_uuid(uuid);
    (!known).then(|| {
        format!(
            "device-mapper device {name} has dm/uuid {uuid:?}, whose prefix names no target \
             type known here, so whether it is dm-crypt cannot be told"
        )
    })
}

/// What was decided about one mount or swap area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Finding {
    pub(super) mount_point: String,
    pub(super) source: String,
    pub(super) fs_type: String,
    pub(super) device: Option<String>,
    pub(super) status: FindingStatus,
    pub(super) detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FindingStatus {
    Encrypted,
    NotEncrypted,
    Unknown,
    /// Looked at and deliberately not counted (removable, zram).
    Excluded,
    /// Not encrypted, and not counted: `/boot` or the EFI system partition
    /// (`boot.rs`). Kept apart from `Excluded` because a swap file on it is
    /// still not encrypted.
    UnencryptedBoot,
}

impl FindingStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Encrypted => "encrypted",
            Self::NotEncrypted => "not_encrypted",
            Self::Unknown => "unknown",
            Self::Excluded => "excluded",
            Self::UnencryptedBoot => "unencrypted_boot",
        }
    }
}

pub(super) fn device_of(
    major: u32,
    minor: u32,
    source: &str,
    facts: &LinuxDiskFacts,
) -> Option<String> {
    if major != 0 {
        if let Some(device) = facts
            .devices
            .values()
            .find(|d| d.major == major && d.minor == minor)
        {
            return Some(device.name.clone());
        }
    }
    // Btrfs and some others report an anonymous 0:N device; fall back to the
    // mount source.
    if let Some(name) = facts.resolved_sources.get(source) {
        return Some(name.clone());
    }
    let tail = source.strip_prefix("/dev/")?;
    if let Some(dm_name) = tail.strip_prefix("mapper/") {
        return facts
            .devices
            .values()
            .find(|d| d.dm_name.as_deref() == Some(dm_name))
            .map(|d| d.name.clone());
    }
    facts.devices.contains_key(tail).then(|| tail.to_owned())
}

pub(super) fn judge_device(
    mount_point: &str,
    source: &str,
    fs_type: &str,
    device: Option<String>,
    facts: &LinuxDiskFacts,
) -> Finding {
    let finding = |status, device: Option<String>, detail: String| Finding {
        mount_point: mount_point.to_owned(),
        source: source.to_owned(),
        fs_type: fs_type.to_owned(),
        device,
        status,
        detail,
    };
    let Some(name) = device else {
        return finding(
            FindingStatus::Unknown,
            None,
            format!("cannot find the block device behind {source}"),
        );
    };
    let record = facts.devices.get(&name);
    if record.is_some_and(|d| d.removable) {
        return finding(
            FindingStatus::Excluded,
            Some(name),
            "removable media (see usb_storage)".into(),
        );
    }
    if name.starts_with("zram") {
        return finding(
            FindingStatus::Excluded,
            Some(name),
            "compressed RAM, not persistent".into(),
        );
    }
    match protection_of(&name, &facts.devices, 0) {
        Protection::Encrypted(via) => finding(
            FindingStatus::Encrypted,
            Some(name),
            format!("on {}", via.join(", ")),
        ),
        Protection::Plain(leaves) => finding(
            FindingStatus::NotEncrypted,
            Some(name),
            format!("reaches {} without dm-crypt", leaves.join(", ")),
        ),
        Protection::Unknown(reason) => finding(FindingStatus::Unknown, Some(name), reason),
    }
}

pub(super) fn findings(facts: &LinuxDiskFacts, policy: &DiskEncryptionPolicy) -> Vec<Finding> {
    let mut out = Vec::new();
    for mount in &facts.mounts {
        let fs = mount.fs_type.as_str();
        let base_type = fs.split('.').next().unwrap_or(fs);
        if NOT_COUNTED_FS_TYPES.contains(&fs)
            || NETWORK_FS_TYPES.contains(&fs)
            || (base_type == "fuse" && !mount.source.starts_with("/dev/"))
        {
            continue;
        }
        if fs == "zfs" {
            out.push(Finding {
                mount_point: mount.mount_point.clone(),
                source: mount.source.clone(),
                fs_type: mount.fs_type.clone(),
                device: None,
                status: FindingStatus::Unknown,
                detail: "ZFS native encryption is not inspected yet".into(),
            });
            continue;
        }
        if mount.major == 0 && !mount.source.starts_with("/dev/") {
            // Anonymous device and no device path: a virtual filesystem this
            // list does not name yet. Not local block storage.
            continue;
        }
        let device = device_of(mount.major, mount.minor, &mount.source, facts);
        let mut finding = judge_device(
            &mount.mount_point,
            &mount.source,
            &mount.fs_type,
            device,
            facts,
        );
        if finding.status == FindingStatus::NotEncrypted
            && is_boot_partition(mount, finding.device.as_deref(), &facts.mounts, |other| {
                device_of(other.major, other.minor, &other.source, facts)
            })
        {
            finding.status = FindingStatus::UnencryptedBoot;
            finding.detail = format!("{}; not counted: it {BOOT_PARTITION_NOTE}", finding.detail);
        }
        out.push(finding);
    }
    if policy.include_swap {
        for swap in &facts.swaps {
            let label = format!("[swap] {}", swap.path);
            if swap.kind == "file" {
                // A swap file is as safe as the filesystem holding it.
                let holder = out
                    .iter()
                    .filter(|f| f.status != FindingStatus::Excluded)
                    .filter(|f| path_is_under(&swap.path, &f.mount_point))
                    .max_by_key(|f| f.mount_point.len())
                    .cloned();
                out.push(match holder {
                    Some(h) => Finding {
                        mount_point: label,
                        source: swap.path.clone(),
                        fs_type: "swap".into(),
                        detail: format!("swap file on {}: {}", h.mount_point, h.detail),
                        // Memory paged out to an unencrypted /boot is user
                        // data in the clear, whatever /boot itself holds.
                        status: match h.status {
                            FindingStatus::UnencryptedBoot => FindingStatus::NotEncrypted,
                            other => other,
                        },
                        ..h
                    },
                    None => Finding {
                        mount_point: label,
                        source: swap.path.clone(),
                        fs_type: "swap".into(),
                        device: None,
                        status: FindingStatus::Unknown,
                        detail: "cannot find the filesystem holding this swap file".into(),
                    },
                });
            } else {
                let device = device_of(0, 0, &swap.path, facts);
                out.push(judge_device(&label, &swap.path, "swap", device, facts));
            }
        }
    }
    out
}

pub(super) fn path_is_under(path: &str, mount_point: &str) -> bool {
    mount_point == "/"
        || path == mount_point
        || path
            .strip_prefix(mount_point)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Decides the rule from a Linux machine's facts.
pub(super) fn evaluate_linux(facts: &LinuxDiskFacts, policy: &DiskEncryptionPolicy) -> Verdict {
    let findings = findings(facts, policy);
    let evidence: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "mount_point": f.mount_point,
                "source": f.source,
                "fs_type": f.fs_type,
                "device": f.device,
                "status": f.status.as_str(),
                "detail": f.detail,
            })
        })
        .collect();
    let counted: Vec<&Finding> = findings
        .iter()
        .filter(|f| {
            !matches!(
                f.status,
                FindingStatus::Excluded | FindingStatus::UnencryptedBoot
            )
        })
        .collect();
    let plain_findings: Vec<&Finding> = counted
        .iter()
        .copied()
        .filter(|f| f.status == FindingStatus::NotEncrypted)
        .collect();
    let plain: Vec<&str> = plain_findings
        .iter()
        .map(|f| f.mount_point.as_str())
        .collect();
    // The reason goes into the summary: "unknown" alone sends an operator
    // to the evidence for what the agent already knows.
    let unknown: Vec<String> = counted
        .iter()
        .filter(|f| f.status == FindingStatus::Unknown)
        .map(|f| format!("{} ({})", f.mount_point, f.detail))
        .collect();
    let boot: Vec<&str> = findings
        .iter()
        .filter(|f| f.status == FindingStatus::UnencryptedBoot)
        .map(|f| f.mount_point.as_str())
        .collect();
    let boot_note = if boot.is_empty() {
        String::new()
    } else {
        format!(
            "; not counted, unencrypted: {} (boot loader and kernel, no user data)",
            boot.join(", ")
        )
    };

    let verdict = if counted.is_empty() {
        // Nothing to judge is not the same as nothing unencrypted.
        Verdict::new(
            CheckStatus::Unknown,
            "found no persistent local filesystem to check",
        )
    } else if !plain.is_empty() {
        Verdict::new(
            CheckStatus::Fail,
            format!(
                "{} of {} persistent mounts are not encrypted: {}",
                plain.len(),
                counted.len(),
                plain.join(", ")
            ),
        )
        .with_fix(fix_text(&plain_findings))
    } else if !unknown.is_empty() {
        Verdict::new(
            CheckStatus::Unknown,
            format!(
                "could not tell whether these are encrypted: {}",
                unknown.join("; ")
            ),
        )
    } else {
        Verdict::new(
            CheckStatus::Pass,
            format!(
                "all {} persistent mounts sit on dm-crypt{boot_note}",
                counted.len()
            ),
        )
    };
    verdict
        .with_evidence("mounts", evidence)
        .with_evidence("include_swap", policy.include_swap)
}

/// The fix for the mounts that failed, one step per kind, each one that
/// makes the check pass once done: a plain root needs a reinstall with the
/// installer's encryption (which leaves `/boot` and the EFI partition in the
/// clear, and that passes), another filesystem its own LUKS container, a
/// swap partition a random key at each boot, a swap file another home. It
/// never asks to encrypt `/boot`, which the rule does not count.
pub(super) fn fix_text(plain: &[&Finding]) -> String {
    let is_swap = |f: &&&Finding| f.fs_type == "swap";
    let mut steps = Vec::new();
    // One step per filesystem, not per mount point: a bind mount or a
    // second mount of a filesystem already named (`/boot` as a directory of
    // a plain `/`) is fixed with it, and must not get its own advice.
    let mut named_devices: Vec<String> = Vec::new();
    let mut first_of_its_device = |f: &&Finding| match &f.device {
        Some(device) if named_devices.contains(device) => false,
        Some(device) => {
            named_devices.push(device.clone());
            true
        }
        None => true,
    };
    let root = plain.iter().find(|f| f.mount_point == "/");
    if let Some(root) = root {
        first_of_its_device(root);
        steps.push(
            "Encrypt the system disk: back up your files, then reinstall with the installer's \
             disk encryption (Debian: \"Guided - use entire disk and set up encrypted LVM\"; \
             Ubuntu: \"Advanced features\", \"Use LVM and encryption\"; Fedora: \"Encrypt my \
             data\"), or ask IT for the encrypted build. The installer leaves /boot and the EFI \
             partition unencrypted; that is compliant."
                .to_owned(),
        );
    }
    let filesystems: Vec<&str> = plain
        .iter()
        .filter(|f| f.mount_point != "/" && !is_swap(f))
        .filter(|f| first_of_its_device(f))
        .map(|f| f.mount_point.as_str())
        .collect();
    if !filesystems.is_empty() {
        steps.push(format!(
            "Put {} on LUKS: back up its files, format its partition with `cryptsetup \
             luksFormat`, open it from /etc/crypttab, make the filesystem again on the opened \
             device and restore the files (or ask IT).",
            filesystems.join(", ")
        ));
    }
    let (swap_partitions, swap_files): (Vec<&&Finding>, Vec<&&Finding>) = plain
        .iter()
        .filter(is_swap)
        .partition(|f| f.source.starts_with("/dev/"));
    if !swap_partitions.is_empty() {
        let names: Vec<&str> = swap_partitions.iter().map(|f| f.source.as_str()).collect();
        steps.push(format!(
            "Encrypt swap on {} with a new random key at each boot: map it in /etc/crypttab \
             with `/dev/urandom swap,cipher=aes-xts-plain64,size=512` and point its /etc/fstab \
             line at the mapped device, or turn that swap off (swapoff, and remove it from \
             /etc/fstab).",
            names.join(", ")
        ));
    }
    if !swap_files.is_empty() {
        let names: Vec<&str> = swap_files.iter().map(|f| f.source.as_str()).collect();
        steps.push(format!(
            "Move the swap file {} onto an encrypted filesystem, or turn it off (swapoff, and \
             remove it from /etc/fstab).",
            names.join(", ")
        ));
    }
    steps.push("An agent cannot encrypt a disk in place.".to_owned());
    steps.join(" ")
}
