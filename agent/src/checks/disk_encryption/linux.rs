//! The Linux probe of `disk_encryption`: reads `/proc/self/mountinfo`,
//! `/proc/swaps` and `/sys/class/block/*` through [`Host`] and hands the text
//! to the pure parsers in `parse.rs`. Judges nothing.

use std::collections::BTreeMap;

use super::parse::{parse_major_minor, parse_mountinfo, parse_swaps};
use super::{BlockDevice, LinuxDiskFacts};
use crate::checks::ProbeError;
use crate::sys::Host;

pub(super) fn probe(host: &Host) -> Result<LinuxDiskFacts, ProbeError> {
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
        // An unreadable uuid is kept as such: it hides the target type, so
        // the evaluator must not take the device for a plain one.
        let (dm_uuid, dm_uuid_error) = match host.read_optional(&format!("{base}/dm/uuid")) {
            Ok(text) => (text.map(|t| t.trim().to_owned()), None),
            Err(err) => (None, Some(format!("cannot read {base}/dm/uuid: {err}"))),
        };
        devices.insert(
            name.clone(),
            BlockDevice {
                name: name.clone(),
                major,
                minor,
                slaves,
                device_mapper: host.exists(&format!("{base}/dm")),
                dm_uuid,
                dm_uuid_error,
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
    Ok(LinuxDiskFacts {
        mounts,
        swaps,
        devices,
        resolved_sources,
    })
}

/// The disk a partition belongs to: sysfs places `sda1` inside `sda`.
pub(super) fn parent_disk(host: &Host, name: &str) -> Option<String> {
    let real = std::fs::canonicalize(host.path(&format!("/sys/class/block/{name}"))).ok()?;
    let parent = real.parent()?.file_name()?.to_string_lossy().into_owned();
    host.exists(&format!("/sys/class/block/{parent}/dev"))
        .then_some(parent)
}
