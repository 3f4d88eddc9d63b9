//! Disk encryption as the distributions install it (issue 20, class 4): a
//! stock full-disk-encryption install leaves `/boot` and the EFI system
//! partition unencrypted and passes; anything else unencrypted still fails,
//! and a device-mapper device whose target type cannot be read is `unknown`.
//!
//! Each test builds a host root laid out as the kernel lays out sysfs:
//! devices under `/sys/devices/…`, `/sys/class/block/<name>` a symlink to
//! them, `slaves/<name>` symlinks, `dm/uuid` and `dm/name` for device-mapper
//! devices; and `/proc/self/mountinfo` in the proc(5) format. The layouts
//! are those of each installer's default encrypted partitioning, as `lsblk`
//! shows it (quoted in each test); uuids are made up in the format the tools
//! write (cryptsetup: `CRYPT-LUKS2-<uuid without dashes>-<name>`; lvm2:
//! `LVM-<vg uuid><lv uuid>`, 32 characters each, without dashes).

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::Path;

use palisade_shared::report::CheckStatus;
use serde_json::Value;

use super::tests::policy;
use super::*;
use crate::checks::host_tree::HostTree;

const NVME: &str = "devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1";
const SATA: &str = "devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda";
const SATA_SECOND: &str =
    "devices/pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sdb";

const PROC_AND_SYS: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
24 1 0:5 / /dev rw,nosuid,relatime shared:8 - devtmpfs udev rw,size=8000000k,mode=755
26 1 0:25 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,mode=755
35 23 0:31 / /sys/firmware/efi/efivars rw,nosuid,nodev,noexec,relatime shared:7 - efivarfs efivarfs rw
";

/// Builders, on top of [`HostTree`], of the block devices and mounts of one
/// machine.
trait Tree {
    /// A disk or partition at `sys/<devices_path>`, whose last component is
    /// its name, linked from `/sys/class/block` as the kernel does.
    fn block(&self, devices_path: &str, dev: &str);
    /// A device-mapper device `dm-<n>` under `/sys/devices/virtual/block`.
    fn dm(&self, name: &str, dev: &str, dm_name: &str, uuid: Option<&str>, slaves: &[&str]);
    /// `/proc/self/mountinfo`: the pseudo filesystems, then `lines`.
    fn mounts(&self, lines: &str);
    /// `/proc/swaps`: its header, then `lines`.
    fn swaps(&self, lines: &str);
    /// The verdict with swap counted.
    fn verdict(&self) -> Verdict;
}

impl Tree for HostTree {
    fn block(&self, devices_path: &str, dev: &str) {
        let name = devices_path.rsplit('/').next().unwrap();
        self.write(&format!("sys/{devices_path}/dev"), &format!("{dev}\n"));
        // Disks have `removable`; a partition, which sits inside its disk's
        // directory, does not.
        let parent = Path::new(devices_path).parent().unwrap();
        if !self.root().join("sys").join(parent).join("dev").exists() {
            self.write(&format!("sys/{devices_path}/removable"), "0\n");
        }
        self.link(
            &format!("sys/class/block/{name}"),
            &format!("sys/{devices_path}"),
        );
    }

    fn dm(&self, name: &str, dev: &str, dm_name: &str, uuid: Option<&str>, slaves: &[&str]) {
        let base = format!("devices/virtual/block/{name}");
        self.write(&format!("sys/{base}/dev"), &format!("{dev}\n"));
        self.write(&format!("sys/{base}/removable"), "0\n");
        self.write(&format!("sys/{base}/dm/name"), &format!("{dm_name}\n"));
        if let Some(uuid) = uuid {
            self.write(&format!("sys/{base}/dm/uuid"), &format!("{uuid}\n"));
        }
        for slave in slaves {
            let target =
                std::fs::canonicalize(self.root().join("sys/class/block").join(slave)).unwrap();
            let relative = target.strip_prefix(self.root()).unwrap();
            self.link(
                &format!("sys/{base}/slaves/{slave}"),
                relative.to_str().unwrap(),
            );
        }
        self.link(&format!("sys/class/block/{name}"), &format!("sys/{base}"));
    }

    fn mounts(&self, lines: &str) {
        self.write("proc/self/mountinfo", &format!("{PROC_AND_SYS}{lines}"));
    }

    fn swaps(&self, lines: &str) {
        self.write(
            "proc/swaps",
            &format!("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n{lines}"),
        );
    }

    fn verdict(&self) -> Verdict {
        let facts = probe_linux(&Host::with_root(self.root())).unwrap();
        evaluate_linux(&facts, &policy(true))
    }
}

fn status_of(verdict: &Verdict, mount_point: &str) -> String {
    entry_of(verdict, mount_point)["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn entry_of(verdict: &Verdict, mount_point: &str) -> Value {
    verdict.evidence["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mount_point"] == mount_point)
        .unwrap_or_else(|| panic!("{mount_point} missing from {:#?}", verdict.evidence))
        .clone()
}

const UBUNTU_LUKS_UUID: &str = "CRYPT-LUKS2-3f0c8a1e6b2d4c9a8e7f1a2b3c4d5e6f-dm_crypt-0";
const UBUNTU_LV_UUID: &str = "LVM-Xq3ZtR7yWm2Lk9Pd4Vb6Nc8Hf1Gj5Ks0Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8Ii9Jj0";

/// Ubuntu 24.04's installer, "Advanced features…", "Use LVM and encryption"
/// on an NVMe laptop (`lsblk` of such an install):
///
/// ```text
/// nvme0n1                     259:0    0 476.9G  0 disk
/// ├─nvme0n1p1                 259:1    0     1G  0 part  /boot/efi
/// ├─nvme0n1p2                 259:2    0     2G  0 part  /boot
/// └─nvme0n1p3                 259:3    0 473.9G  0 part
///   └─dm_crypt-0              252:0    0 473.9G  0 crypt
///     └─ubuntu--vg-ubuntu--lv 252:1    0 473.9G  0 lvm   /
/// ```
///
/// with the installer's swap file `/swap.img` on `/`.
fn ubuntu_24_04(tree: &HostTree, crypt_uuid: Option<&str>) {
    tree.block(NVME, "259:0");
    tree.block(&format!("{NVME}/nvme0n1p1"), "259:1");
    tree.block(&format!("{NVME}/nvme0n1p2"), "259:2");
    tree.block(&format!("{NVME}/nvme0n1p3"), "259:3");
    tree.dm("dm-0", "252:0", "dm_crypt-0", crypt_uuid, &["nvme0n1p3"]);
    tree.dm(
        "dm-1",
        "252:1",
        "ubuntu--vg-ubuntu--lv",
        Some(UBUNTU_LV_UUID),
        &["dm-0"],
    );
    tree.swaps("/swap.img                               file\t\t4194300\t\t0\t\t-2\n");
}

const UBUNTU_MOUNTS: &str = "\
27 1 252:1 / / rw,relatime shared:1 - ext4 /dev/mapper/ubuntu--vg-ubuntu--lv rw
30 27 259:2 / /boot rw,relatime shared:60 - ext4 /dev/nvme0n1p2 rw
31 30 259:1 / /boot/efi rw,relatime shared:62 - vfat /dev/nvme0n1p1 rw,fmask=0077,dmask=0077,codepage=437,iocharset=iso8859-1,shortname=mixed,errors=remount-ro
";

#[test]
fn ubuntu_24_04_lvm_and_encryption_passes_with_boot_and_efi_unencrypted() {
    let tree = HostTree::new();
    ubuntu_24_04(&tree, Some(UBUNTU_LUKS_UUID));
    tree.mounts(UBUNTU_MOUNTS);
    let verdict = tree.verdict();
    assert_eq!(verdict.status, CheckStatus::Pass, "{verdict:#?}");
    assert_eq!(status_of(&verdict, "/"), "encrypted");
    assert_eq!(status_of(&verdict, "[swap] /swap.img"), "encrypted");
    for boot in ["/boot", "/boot/efi"] {
        let entry = entry_of(&verdict, boot);
        assert_eq!(entry["status"], "unencrypted_boot", "{entry}");
        let detail = entry["detail"].as_str().unwrap();
        assert!(
            detail.contains("holds the boot loader and kernel, no user data")
                && detail.contains("as BitLocker and FileVault do"),
            "{detail}"
        );
    }
    assert!(
        verdict
            .summary
            .contains("not counted, unencrypted: /boot, /boot/efi"),
        "{}",
        verdict.summary
    );
}

/// Fedora 40 Workstation, "Encrypt my data" in Anaconda's automatic
/// partitioning: btrfs subvolumes `root` and `home` on one LUKS2 mapping,
/// ext4 `/boot`, the ESP at `/boot/efi`, and swap on zram (`lsblk`):
///
/// ```text
/// zram0                    252:0    0     8G  0 disk  [SWAP]
/// nvme0n1                  259:0    0 476.9G  0 disk
/// ├─nvme0n1p1              259:1    0   600M  0 part  /boot/efi
/// ├─nvme0n1p2              259:2    0     1G  0 part  /boot
/// └─nvme0n1p3              259:3    0 475.4G  0 part
///   └─luks-8e2b…           253:0    0 475.4G  0 crypt /home
///                                                     /
/// ```
///
/// btrfs reports an anonymous device number (0:36) in mountinfo, shared by
/// both subvolumes, whose roots are `/root` and `/home`.
#[test]
fn fedora_40_btrfs_on_luks_passes_with_boot_and_efi_unencrypted() {
    let tree = HostTree::new();
    tree.block("devices/virtual/block/zram0", "252:0");
    tree.block(NVME, "259:0");
    tree.block(&format!("{NVME}/nvme0n1p1"), "259:1");
    tree.block(&format!("{NVME}/nvme0n1p2"), "259:2");
    tree.block(&format!("{NVME}/nvme0n1p3"), "259:3");
    let name = "luks-8e2b5c71-0f4a-4d3e-9b1c-6a7d8e9f0a1b";
    tree.dm(
        "dm-0",
        "253:0",
        name,
        Some(&format!(
            "CRYPT-LUKS2-8e2b5c710f4a4d3e9b1c6a7d8e9f0a1b-{name}"
        )),
        &["nvme0n1p3"],
    );
    tree.mounts(&format!(
        "\
63 1 0:36 /root / rw,relatime shared:1 - btrfs /dev/mapper/{name} rw,seclabel,compress=zstd:1,ssd,discard=async,space_cache=v2,subvolid=257,subvol=/root
90 63 0:36 /home /home rw,relatime shared:53 - btrfs /dev/mapper/{name} rw,seclabel,compress=zstd:1,ssd,discard=async,space_cache=v2,subvolid=256,subvol=/home
93 63 259:2 / /boot rw,relatime shared:55 - ext4 /dev/nvme0n1p2 rw,seclabel
96 93 259:1 / /boot/efi rw,relatime shared:57 - vfat /dev/nvme0n1p1 rw,fmask=0077,dmask=0077,codepage=437,iocharset=ascii,shortname=winnt,errors=remount-ro
"
    ));
    tree.swaps("/dev/zram0                              partition\t8388604\t\t0\t\t100\n");
    let verdict = tree.verdict();
    assert_eq!(verdict.status, CheckStatus::Pass, "{verdict:#?}");
    assert_eq!(status_of(&verdict, "/"), "encrypted");
    assert_eq!(status_of(&verdict, "/home"), "encrypted");
    assert_eq!(status_of(&verdict, "/boot"), "unencrypted_boot");
    assert_eq!(status_of(&verdict, "/boot/efi"), "unencrypted_boot");
    assert_eq!(status_of(&verdict, "[swap] /dev/zram0"), "excluded");
}

/// Debian 12's installer, "Guided - use entire disk and set up encrypted
/// LVM", "All files in one partition", on a BIOS machine with an MBR disk
/// (`lsblk`):
///
/// ```text
/// sda                     8:0    0    20G  0 disk
/// ├─sda1                  8:1    0   487M  0 part  /boot
/// ├─sda2                  8:2    0     1K  0 part
/// └─sda5                  8:5    0  19.5G  0 part
///   └─sda5_crypt        254:0    0  19.5G  0 crypt
///     ├─debian--vg-root 254:1    0  18.5G  0 lvm   /
///     └─debian--vg-swap_1 254:2  0   976M  0 lvm   [SWAP]
/// ```
///
/// The guided recipe formats `/boot` ext2 as far as I know (partman-auto's
/// crypto recipe); not verified here, so ext4 is tried too.
#[test]
fn debian_12_guided_encrypted_lvm_passes_with_boot_unencrypted() {
    for boot_fs in ["ext2", "ext4"] {
        let tree = HostTree::new();
        tree.block(SATA, "8:0");
        tree.block(&format!("{SATA}/sda1"), "8:1");
        tree.block(&format!("{SATA}/sda2"), "8:2");
        tree.block(&format!("{SATA}/sda5"), "8:5");
        tree.dm(
            "dm-0",
            "254:0",
            "sda5_crypt",
            Some("CRYPT-LUKS2-5d1e0c3b2a194f8e8d7c6b5a49382716-sda5_crypt"),
            &["sda5"],
        );
        let lv = "LVM-aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY";
        tree.dm(
            "dm-1",
            "254:1",
            "debian--vg-root",
            Some(&format!("{lv}rootlv0rootlv0rootlv0rootlv0ab")),
            &["dm-0"],
        );
        tree.dm(
            "dm-2",
            "254:2",
            "debian--vg-swap_1",
            Some(&format!("{lv}swaplv0swaplv0swaplv0swaplv0ab")),
            &["dm-0"],
        );
        tree.mounts(&format!(
            "\
25 1 254:1 / / rw,relatime shared:1 - ext4 /dev/mapper/debian--vg-root rw,errors=remount-ro
29 25 8:1 / /boot rw,relatime shared:59 - {boot_fs} /dev/sda1 rw
"
        ));
        tree.swaps("/dev/dm-2                               partition\t999420\t\t0\t\t-2\n");
        let verdict = tree.verdict();
        assert_eq!(verdict.status, CheckStatus::Pass, "{boot_fs}: {verdict:#?}");
        assert_eq!(status_of(&verdict, "/boot"), "unencrypted_boot");
        assert_eq!(status_of(&verdict, "[swap] /dev/dm-2"), "encrypted");
    }
}

/// Ubuntu 24.04's default install without encryption ("Erase disk and
/// install Ubuntu"): the ESP on nvme0n1p1 and ext4 `/` on nvme0n1p2, `/boot`
/// a directory of `/`. A bind mount of that directory onto itself (as
/// some tools leave) has root `/boot` and `/`'s device: it is `/`, never a
/// boot partition. The fix must not tell them to encrypt `/boot`.
#[test]
fn boot_on_the_unencrypted_root_filesystem_fails_and_the_fix_leaves_boot_alone() {
    let tree = HostTree::new();
    tree.block(NVME, "259:0");
    tree.block(&format!("{NVME}/nvme0n1p1"), "259:1");
    tree.block(&format!("{NVME}/nvme0n1p2"), "259:2");
    tree.mounts(
        "\
27 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
30 27 259:1 / /boot/efi rw,relatime shared:62 - vfat /dev/nvme0n1p1 rw,fmask=0077,dmask=0077
41 27 259:2 /boot /boot rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
",
    );
    let verdict = tree.verdict();
    assert_eq!(verdict.status, CheckStatus::Fail, "{verdict:#?}");
    assert_eq!(status_of(&verdict, "/"), "not_encrypted");
    assert_eq!(status_of(&verdict, "/boot"), "not_encrypted");
    assert_eq!(status_of(&verdict, "/boot/efi"), "unencrypted_boot");
    assert!(verdict.fix.contains("reinstall"), "{}", verdict.fix);
    assert!(
        !verdict.fix.contains("Put /boot") && !verdict.fix.contains("/boot on LUKS"),
        "{}",
        verdict.fix
    );
}

/// The Ubuntu 24.04 encrypted install with a second, unencrypted disk
/// mounted at `/home` (`sdb1`, ext4): `/home` fails, and the fix is to put
/// it on LUKS, not to reinstall (which would leave the second disk as it is).
#[test]
fn a_plain_home_next_to_an_encrypted_root_fails_with_a_fix_for_home() {
    let tree = HostTree::new();
    ubuntu_24_04(&tree, Some(UBUNTU_LUKS_UUID));
    tree.block(SATA_SECOND, "8:16");
    tree.block(&format!("{SATA_SECOND}/sdb1"), "8:17");
    tree.mounts(&format!(
        "{UBUNTU_MOUNTS}45 27 8:17 / /home rw,relatime shared:70 - ext4 /dev/sdb1 rw\n"
    ));
    let verdict = tree.verdict();
    assert_eq!(verdict.status, CheckStatus::Fail, "{verdict:#?}");
    assert!(verdict.summary.contains("1 of 3"), "{}", verdict.summary);
    assert_eq!(status_of(&verdict, "/home"), "not_encrypted");
    assert!(
        verdict.fix.starts_with("Put /home on LUKS"),
        "{}",
        verdict.fix
    );
    assert!(!verdict.fix.contains("reinstall"), "{}", verdict.fix);
}

/// Data onto `/boot`: a plain data disk (`sdb1` at `/srv/data`) bound onto
/// `/boot` whole, a subdirectory of it bound there, or a plain filesystem
/// at `/boot/data`. Each is data; none is exempt.
#[test]
fn data_bound_or_mounted_under_boot_is_counted() {
    let cases = [
        "50 27 8:17 / /boot rw,relatime - ext4 /dev/sdb1 rw\n",
        "50 27 8:17 /patients /boot rw,relatime - ext4 /dev/sdb1 rw\n",
        "50 30 8:17 / /boot/data rw,relatime - ext4 /dev/sdb1 rw\n",
    ];
    for extra in cases {
        let tree = HostTree::new();
        ubuntu_24_04(&tree, Some(UBUNTU_LUKS_UUID));
        tree.block(SATA_SECOND, "8:16");
        tree.block(&format!("{SATA_SECOND}/sdb1"), "8:17");
        let data = if extra.contains("/boot/data") {
            ""
        } else {
            "45 27 8:17 / /srv/data rw,relatime - ext4 /dev/sdb1 rw\n"
        };
        tree.mounts(&format!("{UBUNTU_MOUNTS}{data}{extra}"));
        let verdict = tree.verdict();
        assert_eq!(verdict.status, CheckStatus::Fail, "{extra}: {verdict:#?}");
        let point = if extra.contains("/boot/data") {
            "/boot/data"
        } else {
            "/boot"
        };
        let boot_entries: Vec<&Value> = verdict.evidence["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["mount_point"] == point && m["device"] == "sdb1")
            .collect();
        assert_eq!(boot_entries.len(), 1, "{extra}");
        assert_eq!(boot_entries[0]["status"], "not_encrypted", "{extra}");
    }
}

/// The Ubuntu 24.04 encrypted install whose crypt mapping's `dm/uuid`
/// cannot be read (a directory here, so reading fails even as root), or is
/// empty (what `dmsetup create` without `--uuid` leaves): the device under
/// it is a plain partition, but the mapping may be dm-crypt, so `/` is
/// `unknown` with the reason, never `not_encrypted`.
#[test]
fn a_device_mapper_device_whose_uuid_cannot_be_read_is_unknown() {
    for uuid in ["unreadable", "empty", "unknown prefix"] {
        let tree = HostTree::new();
        match uuid {
            "unreadable" => {
                ubuntu_24_04(&tree, None);
                std::fs::create_dir_all(tree.root().join("sys/devices/virtual/block/dm-0/dm/uuid"))
                    .unwrap();
            }
            "empty" => ubuntu_24_04(&tree, Some("")),
            _ => ubuntu_24_04(&tree, Some("MYTOOL-0001")),
        }
        tree.mounts(UBUNTU_MOUNTS);
        let verdict = tree.verdict();
        assert_eq!(verdict.status, CheckStatus::Unknown, "{uuid}: {verdict:#?}");
        let root = entry_of(&verdict, "/");
        assert_eq!(root["status"], "unknown", "{uuid}: {root}");
        let detail = root["detail"].as_str().unwrap();
        assert!(
            detail.contains("dm-0") && detail.contains("cannot be told"),
            "{uuid}: {detail}"
        );
        assert!(verdict.summary.contains(detail), "{}", verdict.summary);
    }
}

/// A swap file on the unencrypted `/boot` of the Ubuntu 24.04 install pages
/// memory out in the clear: it fails although `/boot` itself is exempt.
#[test]
fn a_swap_file_on_the_unencrypted_boot_fails() {
    let tree = HostTree::new();
    ubuntu_24_04(&tree, Some(UBUNTU_LUKS_UUID));
    tree.swaps("/boot/swapfile                          file\t\t1048572\t\t0\t\t-2\n");
    tree.mounts(UBUNTU_MOUNTS);
    let verdict = tree.verdict();
    assert_eq!(verdict.status, CheckStatus::Fail, "{verdict:#?}");
    assert_eq!(
        status_of(&verdict, "[swap] /boot/swapfile"),
        "not_encrypted"
    );
    assert!(
        verdict.fix.starts_with("Move the swap file /boot/swapfile"),
        "{}",
        verdict.fix
    );
}
