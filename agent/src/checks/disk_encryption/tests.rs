//! Parser tests against trees captured from a real qemu guest with LUKS2 and
//! LVM on LUKS (see `agent/tests/fixtures/linux/disk_encryption/SOURCES.md`),
//! and a table of evaluator cases over every branch.

use std::collections::BTreeMap;

use palisade_shared::policy::{DiskEncryptionPolicy, RuleSettings};
use palisade_shared::report::{CheckStatus, Mode};
use serde_json::Value;

use super::*;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/linux/disk_encryption"
);

pub(super) fn policy(include_swap: bool) -> DiskEncryptionPolicy {
    DiskEncryptionPolicy {
        settings: RuleSettings {
            mode: Mode::Nudge,
            grace_days: 14,
        },
        include_swap,
    }
}

fn captured(scenario: &str) -> LinuxDiskFacts {
    probe_linux(&Host::with_root(format!("{FIXTURES}/{scenario}"))).unwrap()
}

fn mount_statuses(verdict: &Verdict) -> Vec<(String, String)> {
    verdict.evidence["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mount_point"].as_str().unwrap().to_owned(),
                m["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn mountinfo_from_the_guest_parses_with_devices_and_sources() {
    let facts = captured("mixed-with-plain");
    let data = facts
        .mounts
        .iter()
        .find(|m| m.mount_point == "/srv/data")
        .unwrap();
    assert_eq!((data.major, data.minor), (253, 0));
    assert_eq!(data.source, "/dev/mapper/cryptdata");
    assert_eq!(data.fs_type, "ext4");
    assert_eq!(
        facts.swaps,
        vec![SwapEntry {
            path: "/dev/vdc2".into(),
            kind: "partition".into()
        }]
    );
    let lv = &facts.devices["dm-2"];
    assert_eq!(lv.slaves, vec!["dm-1"]);
    assert!(lv.dm_uuid.as_deref().unwrap().starts_with("LVM-"));
    assert!(
        facts.devices["dm-1"]
            .dm_uuid
            .as_deref()
            .unwrap()
            .starts_with("CRYPT-LUKS2-")
    );
}

#[test]
fn a_luks2_mount_passes() {
    let verdict = evaluate_linux(&captured("luks-only"), &policy(true));
    assert_eq!(verdict.status, CheckStatus::Pass, "{verdict:?}");
    assert_eq!(
        mount_statuses(&verdict),
        vec![("/srv/data".to_owned(), "encrypted".to_owned())]
    );
}

#[test]
fn lvm_on_luks_passes_by_walking_the_slaves() {
    let verdict = evaluate_linux(&captured("lvm-on-luks"), &policy(true));
    assert_eq!(verdict.status, CheckStatus::Pass, "{verdict:?}");
    let lvm = verdict.evidence["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mount_point"] == "/srv/lvm")
        .unwrap()
        .clone();
    assert_eq!(lvm["device"], "dm-2");
    assert!(
        lvm["detail"].as_str().unwrap().contains("dm-1 (LUKS2)"),
        "{lvm}"
    );
}

#[test]
fn a_plain_mount_and_plain_swap_fail_and_are_named() {
    let verdict = evaluate_linux(&captured("mixed-with-plain"), &policy(true));
    assert_eq!(verdict.status, CheckStatus::Fail);
    assert!(verdict.summary.contains("2 of 4"), "{}", verdict.summary);
    assert!(
        verdict.summary.contains("/srv/plain"),
        "{}",
        verdict.summary
    );
    assert!(
        verdict.summary.contains("[swap] /dev/vdc2"),
        "{}",
        verdict.summary
    );
    assert!(!verdict.fix.is_empty());
    // Pseudo filesystems (rootfs, proc, sysfs, devtmpfs, tmpfs) are not listed.
    let listed: Vec<String> = mount_statuses(&verdict)
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(
        listed,
        ["/srv/data", "/srv/lvm", "/srv/plain", "[swap] /dev/vdc2"]
    );
}

#[test]
fn swap_is_ignored_when_the_policy_says_so() {
    let verdict = evaluate_linux(&captured("mixed-with-plain"), &policy(false));
    assert!(verdict.summary.contains("1 of 3"), "{}", verdict.summary);
}

#[test]
fn mountinfo_escapes_are_decoded() {
    let text = "36 25 8:1 / /media/my\\040disk rw - ext4 /dev/sda1 rw\n";
    let mounts = parse_mountinfo(text).unwrap();
    assert_eq!(mounts[0].mount_point, "/media/my disk");
}

#[test]
fn mountinfo_with_optional_fields_parses() {
    let text =
        "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n";
    let mounts = parse_mountinfo(text).unwrap();
    assert_eq!(mounts[0].fs_type, "ext3");
    assert_eq!(mounts[0].source, "/dev/root");
}

#[test]
fn malformed_mountinfo_is_an_error_naming_the_line() {
    let err = parse_mountinfo("1 2 3\n").unwrap_err();
    assert!(err.contains("line 1"), "{err}");
    let err = parse_mountinfo("1 1 x:y / / rw - ext4 /dev/sda rw\n").unwrap_err();
    assert!(err.contains("line 1"), "{err}");
}

// ---------------------------------------------------------------------------
// Evaluator table.

fn device(name: &str, major: u32, minor: u32, slaves: &[&str], uuid: Option<&str>) -> BlockDevice {
    BlockDevice {
        name: name.into(),
        major,
        minor,
        slaves: slaves.iter().map(|s| (*s).to_owned()).collect(),
        device_mapper: uuid.is_some(),
        dm_uuid: uuid.map(str::to_owned),
        dm_uuid_error: None,
        dm_name: None,
        removable: false,
    }
}

fn mount(point: &str, major: u32, minor: u32, fs: &str, source: &str) -> MountEntry {
    MountEntry {
        major,
        minor,
        root: "/".into(),
        mount_point: point.into(),
        fs_type: fs.into(),
        source: source.into(),
    }
}

fn facts(
    mounts: Vec<MountEntry>,
    swaps: Vec<SwapEntry>,
    devices: Vec<BlockDevice>,
) -> LinuxDiskFacts {
    LinuxDiskFacts {
        mounts,
        swaps,
        devices: devices.into_iter().map(|d| (d.name.clone(), d)).collect(),
        resolved_sources: BTreeMap::new(),
    }
}

/// The usual laptop layout: sda3 → dm-0 (LUKS2) → LVM root dm-1 and swap dm-2.
fn laptop_devices() -> Vec<BlockDevice> {
    vec![
        device("sda", 8, 0, &[], None),
        device("sda1", 8, 1, &[], None),
        device("sda3", 8, 3, &[], None),
        device(
            "dm-0",
            253,
            0,
            &["sda3"],
            Some("CRYPT-LUKS2-abc-sda3_crypt"),
        ),
        device("dm-1", 253, 1, &["dm-0"], Some("LVM-root")),
        device("dm-2", 253, 2, &["dm-0"], Some("LVM-swap")),
    ]
}

fn status_of(facts: &LinuxDiskFacts) -> CheckStatus {
    evaluate_linux(facts, &policy(true)).status
}

#[test]
fn evaluator_table() {
    let swap_on = |path: &str, kind: &str| SwapEntry {
        path: path.into(),
        kind: kind.into(),
    };
    let with_dm_name = |mut d: BlockDevice, n: &str| {
        d.dm_name = Some(n.into());
        d
    };
    let removable = |mut d: BlockDevice| {
        d.removable = true;
        d
    };
    let cases: Vec<(&str, LinuxDiskFacts, CheckStatus)> = vec![
        (
            "LVM on LUKS root and swap",
            facts(
                vec![mount("/", 253, 1, "ext4", "/dev/mapper/vg-root")],
                vec![swap_on("/dev/dm-2", "partition")],
                laptop_devices(),
            ),
            CheckStatus::Pass,
        ),
        (
            "an unencrypted separate /boot partition is not counted",
            facts(
                vec![
                    mount("/", 253, 1, "ext4", "/dev/mapper/vg-root"),
                    mount("/boot", 8, 1, "ext4", "/dev/sda1"),
                ],
                vec![],
                laptop_devices(),
            ),
            CheckStatus::Pass,
        ),
        (
            "plain root",
            facts(
                vec![mount("/", 8, 1, "ext4", "/dev/sda1")],
                vec![],
                laptop_devices(),
            ),
            CheckStatus::Fail,
        ),
        (
            "encrypted root, plain swap partition",
            facts(
                vec![mount("/", 253, 1, "ext4", "/dev/mapper/vg-root")],
                vec![swap_on("/dev/sda1", "partition")],
                laptop_devices(),
            ),
            CheckStatus::Fail,
        ),
        (
            "swap file on an encrypted root",
            facts(
                vec![mount("/", 253, 1, "ext4", "/dev/mapper/vg-root")],
                vec![swap_on("/swapfile", "file")],
                laptop_devices(),
            ),
            CheckStatus::Pass,
        ),
        (
            "swap file on a plain /var",
            facts(
                vec![
                    mount("/", 253, 1, "ext4", "x"),
                    mount("/var", 8, 1, "ext4", "/dev/sda1"),
                ],
                vec![swap_on("/var/swap", "file")],
                laptop_devices(),
            ),
            CheckStatus::Fail,
        ),
        (
            "zram swap is not persistent",
            facts(
                vec![mount("/", 253, 1, "ext4", "x")],
                vec![swap_on("/dev/zram0", "partition")],
                [laptop_devices(), vec![device("zram0", 252, 0, &[], None)]].concat(),
            ),
            CheckStatus::Pass,
        ),
        (
            "an LV spanning an encrypted and a plain PV fails",
            facts(
                vec![mount("/", 253, 3, "ext4", "x")],
                vec![],
                [
                    laptop_devices(),
                    vec![device("dm-3", 253, 3, &["dm-0", "sda1"], Some("LVM-span"))],
                ]
                .concat(),
            ),
            CheckStatus::Fail,
        ),
        (
            "dm-verity is integrity, not encryption",
            facts(
                vec![mount("/usr", 253, 4, "ext4", "x")],
                vec![],
                [
                    laptop_devices(),
                    vec![device("dm-4", 253, 4, &["sda1"], Some("CRYPT-VERITY-abc"))],
                ]
                .concat(),
            ),
            CheckStatus::Fail,
        ),
        (
            "btrfs on LUKS with an anonymous device number resolves by mapper name",
            facts(
                vec![mount("/", 0, 33, "btrfs", "/dev/mapper/luks-root")],
                vec![],
                vec![
                    device("sda2", 8, 2, &[], None),
                    with_dm_name(
                        device("dm-0", 253, 0, &["sda2"], Some("CRYPT-LUKS2-x-luks-root")),
                        "luks-root",
                    ),
                ],
            ),
            CheckStatus::Pass,
        ),
        (
            "a mount whose device cannot be found is unknown, not pass",
            facts(
                vec![mount("/", 8, 9, "ext4", "/dev/disk/by-uuid/gone")],
                vec![],
                laptop_devices(),
            ),
            CheckStatus::Unknown,
        ),
        (
            "ZFS is unknown, never fail",
            facts(
                vec![mount("/", 0, 40, "zfs", "rpool/ROOT/debian")],
                vec![],
                vec![],
            ),
            CheckStatus::Unknown,
        ),
        (
            "a removable stick is left to usb_storage",
            facts(
                vec![
                    mount("/", 253, 1, "ext4", "x"),
                    mount("/media/stick", 8, 16, "vfat", "/dev/sdb"),
                ],
                vec![],
                [
                    laptop_devices(),
                    vec![removable(device("sdb", 8, 16, &[], None))],
                ]
                .concat(),
            ),
            CheckStatus::Pass,
        ),
        (
            "only pseudo, network and image filesystems: nothing to judge",
            facts(
                vec![
                    mount("/", 0, 30, "overlay", "overlay"),
                    mount("/proc", 0, 4, "proc", "proc"),
                    mount("/home", 0, 50, "nfs4", "server:/home"),
                    mount("/snap/core/1", 7, 0, "squashfs", "/dev/loop0"),
                ],
                vec![],
                vec![],
            ),
            CheckStatus::Unknown,
        ),
        (
            "a device stack that loops is unknown",
            facts(
                vec![mount("/", 253, 7, "ext4", "x")],
                vec![],
                vec![
                    device("dm-7", 253, 7, &["dm-8"], Some("LVM-a")),
                    device("dm-8", 253, 8, &["dm-7"], Some("LVM-b")),
                ],
            ),
            CheckStatus::Unknown,
        ),
        (
            "a device-mapper device with nothing under it is unknown",
            facts(
                vec![mount("/", 253, 9, "ext4", "x")],
                vec![],
                vec![device("dm-9", 253, 9, &[], Some(""))],
            ),
            CheckStatus::Unknown,
        ),
        (
            "fail wins over unknown",
            facts(
                vec![
                    mount("/", 8, 1, "ext4", "/dev/sda1"),
                    mount("/data", 0, 40, "zfs", "tank/data"),
                ],
                vec![],
                laptop_devices(),
            ),
            CheckStatus::Fail,
        ),
    ];
    for (name, facts, expected) in cases {
        assert_eq!(status_of(&facts), expected, "case: {name}");
    }
}

#[test]
fn every_counted_mount_is_in_the_evidence_with_its_status() {
    let facts = facts(
        vec![
            mount("/", 253, 1, "ext4", "x"),
            mount("/boot", 8, 1, "ext4", "/dev/sda1"),
        ],
        vec![],
        laptop_devices(),
    );
    let verdict = evaluate_linux(&facts, &policy(true));
    let statuses = mount_statuses(&verdict);
    assert_eq!(
        statuses,
        vec![
            ("/".to_owned(), "encrypted".to_owned()),
            ("/boot".to_owned(), "unencrypted_boot".to_owned())
        ]
    );
    assert_eq!(verdict.evidence["include_swap"], Value::Bool(true));
}
