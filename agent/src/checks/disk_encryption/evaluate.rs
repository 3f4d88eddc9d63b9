//! The Linux evaluator of `disk_encryption`: from the mounts, swaps and block-device
//! graph to a verdict. Pure (no I/O, no clock), so it compiles and is tested
//! on every OS.

use std::collections::BTreeMap;

use palisade_shared::policy::DiskEncryptionPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::{BlockDevice, LinuxDiskFacts};
use crate::checks::Verdict;

/// dm-crypt targets by the prefix cryptsetup gives their `dm/uuid`. Not every
/// `CRYPT-` prefix is encryption: `CRYPT-VERITY-` and `CRYPT-INTEGRITY-` only
/// protect integrity, so they are walked through, never accepted.
pub(super) const DM_CRYPT_UUID_PREFIXES: [(&str, &str); 6] = [
    ("CRYPT-LUKS2-", "LUKS2"),
    ("CRYPT-LUKS1-", "LUKS1"),
    ("CRYPT-PLAIN-", "plain dm-crypt"),
    ("CRYPT-BITLK-", "BitLocker (dm-crypt)"),
    ("CRYPT-TCRYPT-", "TrueCrypt/VeraCrypt (dm-crypt)"),
    ("CRYPT-LOOPAES-", "loop-AES (dm-crypt)"),
];

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
    if let Some(uuid) = &device.dm_uuid {
        if let Some((_, kind)) = DM_CRYPT_UUID_PREFIXES
            .iter()
            .find(|(p, _)| uuid.starts_with(p))
        {
            return Protection::Encrypted(vec![format!("{name} ({kind})")]);
        }
    }
    if device.slaves.is_empty() {
        if device.dm_uuid.is_some() {
            // A device-mapper device with nothing under it (e.g. dm-zero, or
            // an error target): nothing to trace.
            return Protection::Unknown(format!(
                "device-mapper device {name} has no underlying device"
            ));
        }
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
}

impl FindingStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Encrypted => "encrypted",
            Self::NotEncrypted => "not_encrypted",
            Self::Unknown => "unknown",
            Self::Excluded => "excluded",
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
        out.push(judge_device(
            &mount.mount_point,
            &mount.source,
            &mount.fs_type,
            device,
            facts,
        ));
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
        .filter(|f| f.status != FindingStatus::Excluded)
        .collect();
    let plain: Vec<&str> = counted
        .iter()
        .filter(|f| f.status == FindingStatus::NotEncrypted)
        .map(|f| f.mount_point.as_str())
        .collect();
    let unknown: Vec<&str> = counted
        .iter()
        .filter(|f| f.status == FindingStatus::Unknown)
        .map(|f| f.mount_point.as_str())
        .collect();

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
        .with_fix(
            "Encrypt the disk with LUKS: back up your files, then reinstall choosing \
             \"Guided - use entire disk and set up encrypted LVM\" (or ask IT for the encrypted \
             build). An agent cannot encrypt a disk in place.",
        )
    } else if !unknown.is_empty() {
        Verdict::new(
            CheckStatus::Unknown,
            format!(
                "could not tell whether these are encrypted: {}",
                unknown.join(", ")
            ),
        )
    } else {
        Verdict::new(
            CheckStatus::Pass,
            format!("all {} persistent mounts sit on dm-crypt", counted.len()),
        )
    };
    verdict
        .with_evidence("mounts", evidence)
        .with_evidence("include_swap", policy.include_swap)
}
