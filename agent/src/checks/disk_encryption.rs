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

use std::collections::BTreeMap;

use palisade_shared::Policy;
use palisade_shared::policy::DiskEncryptionPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::{ProbeError, Rule, Verdict};
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
        if cfg!(target_os = "linux") || !host.is_live_system() {
            probe_linux(host)
        } else {
            Err(ProbeError::Undeterminable(format!(
                "no disk encryption probe for {} yet",
                std::env::consts::OS
            )))
        }
    }

    fn evaluate(&self, facts: &DiskFacts, policy: &Self::Policy) -> Verdict {
        evaluate(facts, policy)
    }
}

// ---------------------------------------------------------------------------
// Probe (Linux): read the files and hand the text to the parsers.

fn probe_linux(host: &Host) -> Result<DiskFacts, ProbeError> {
    let unreadable = |what: &str, err: std::io::Error| {
        ProbeError::Undeterminable(format!("cannot read {what}: {err}"))
    };
    let mountinfo = host
        .read("/proc/self/mountinfo")
        .map_err(|e| unreadable("/proc/self/mountinfo", e))?;
    let mounts = parse_mountinfo(&mountinfo).map_err(ProbeError::Undeterminable)?;
    let swaps = match host.read_optional("/proc/swaps") {
        Ok(Some(text)) => parse_swaps(&text),
        Ok(None) => Vec::new(),
        Err(err) => return Err(unreadable("/proc/swaps", err)),
    };
    let names = host
        .list_dir("/sys/class/block")
        .map_err(|e| unreadable("/sys/class/block", e))?
        .ok_or_else(|| ProbeError::Undeterminable("/sys/class/block does not exist".into()))?;
    let mut devices = BTreeMap::new();
    for name in names {
        let base = format!("/sys/class/block/{name}");
        let read_trimmed = |file: &str| {
            host.read_optional(&format!("{base}/{file}"))
                .ok()
                .flatten()
                .map(|s| s.trim().to_owned())
        };
        let Some((major, minor)) = read_trimmed("dev").as_deref().and_then(parse_major_minor)
        else {
            continue;
        };
        let slaves = host
            .list_dir(&format!("{base}/slaves"))
            .ok()
            .flatten()
            .unwrap_or_default();
        // Partitions have no `removable` of their own; their disk does.
        let removable = read_trimmed("removable")
            .or_else(|| {
                parent_disk(host, &name).and_then(|disk| {
                    host.read_optional(&format!("/sys/class/block/{disk}/removable"))
                        .ok()
                        .flatten()
                })
            })
            .is_some_and(|s| s.trim() == "1");
        devices.insert(
            name.clone(),
            BlockDevice {
                name: name.clone(),
                major,
                minor,
                slaves,
                dm_uuid: read_trimmed("dm/uuid"),
                dm_name: read_trimmed("dm/name"),
                removable,
            },
        );
    }
    let mut resolved_sources = BTreeMap::new();
    let sources = mounts.iter().map(|m| m.source.as_str()).chain(
        swaps
            .iter()
            .filter(|s| s.kind == "partition")
            .map(|s| s.path.as_str()),
    );
    for source in sources {
        if !source.starts_with("/dev/") {
            continue;
        }
        // `/dev/mapper/x` and `/dev/disk/by-*/…` are symlinks to `/dev/dm-N`
        // or `/dev/sdXN`; the kernel name is the last component of the target.
        if let Ok(target) = std::fs::canonicalize(host.path(source)) {
            if let Some(name) = target.file_name() {
                resolved_sources.insert(source.to_owned(), name.to_string_lossy().into_owned());
            }
        }
    }
    Ok(DiskFacts {
        mounts,
        swaps,
        devices,
        resolved_sources,
    })
}

/// The disk a partition belongs to: sysfs places `sda1` inside `sda`.
fn parent_disk(host: &Host, name: &str) -> Option<String> {
    let real = std::fs::canonicalize(host.path(&format!("/sys/class/block/{name}"))).ok()?;
    let parent = real.parent()?.file_name()?.to_string_lossy().into_owned();
    host.exists(&format!("/sys/class/block/{parent}/dev"))
        .then_some(parent)
}

// ---------------------------------------------------------------------------
// Parsers: pure, tested against captured files.

/// Parses `/proc/self/mountinfo` (proc(5)):
/// `id parent major:minor root mount-point options [optional…] - fstype source super-options`.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>, String> {
    let mut mounts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || {
            format!(
                "mountinfo line {} is not in the proc(5) format: {line:?}",
                index + 1
            )
        };
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().position(|f| *f == "-").ok_or_else(bad)?;
        if separator < 6 || fields.len() < separator + 3 {
            return Err(bad());
        }
        let (major, minor) = parse_major_minor(fields[2]).ok_or_else(bad)?;
        mounts.push(MountEntry {
            major,
            minor,
            mount_point: unescape_octal(fields[4]),
            fs_type: fields[separator + 1].to_owned(),
            source: unescape_octal(fields[separator + 2]),
        });
    }
    Ok(mounts)
}

/// Parses `/proc/swaps`: a header line, then `Filename Type Size Used Priority`.
pub fn parse_swaps(text: &str) -> Vec<SwapEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let path = unescape_octal(fields.next()?);
            let kind = fields.next()?.to_owned();
            Some(SwapEntry { path, kind })
        })
        .collect()
}

fn parse_major_minor(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The kernel escapes space, tab, newline and backslash in these files as
/// `\040`, `\011`, `\012`, `\134`.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// Evaluation: pure.

/// dm-crypt targets by the prefix cryptsetup gives their `dm/uuid`. Not every
/// `CRYPT-` prefix is encryption: `CRYPT-VERITY-` and `CRYPT-INTEGRITY-` only
/// protect integrity, so they are walked through, never accepted.
const DM_CRYPT_UUID_PREFIXES: [(&str, &str); 6] = [
    ("CRYPT-LUKS2-", "LUKS2"),
    ("CRYPT-LUKS1-", "LUKS1"),
    ("CRYPT-PLAIN-", "plain dm-crypt"),
    ("CRYPT-BITLK-", "BitLocker (dm-crypt)"),
    ("CRYPT-TCRYPT-", "TrueCrypt/VeraCrypt (dm-crypt)"),
    ("CRYPT-LOOPAES-", "loop-AES (dm-crypt)"),
];

/// Filesystems that hold no persistent local data of their own.
const NOT_COUNTED_FS_TYPES: [&str; 30] = [
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
const NETWORK_FS_TYPES: [&str; 8] = [
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
const MAX_STACK_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Protection {
    /// Encrypted by these dm-crypt devices (with their kind).
    Encrypted(Vec<String>),
    /// These leaf devices are reached without passing dm-crypt.
    Plain(Vec<String>),
    Unknown(String),
}

fn protection_of(name: &str, devices: &BTreeMap<String, BlockDevice>, depth: usize) -> Protection {
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
struct Finding {
    mount_point: String,
    source: String,
    fs_type: String,
    device: Option<String>,
    status: FindingStatus,
    detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FindingStatus {
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

fn device_of(major: u32, minor: u32, source: &str, facts: &DiskFacts) -> Option<String> {
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

fn judge_device(
    mount_point: &str,
    source: &str,
    fs_type: &str,
    device: Option<String>,
    facts: &DiskFacts,
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

fn findings(facts: &DiskFacts, policy: &DiskEncryptionPolicy) -> Vec<Finding> {
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

fn path_is_under(path: &str, mount_point: &str) -> bool {
    mount_point == "/"
        || path == mount_point
        || path
            .strip_prefix(mount_point)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Decides the rule from the facts.
pub fn evaluate(facts: &DiskFacts, policy: &DiskEncryptionPolicy) -> Verdict {
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

#[cfg(test)]
mod tests;
