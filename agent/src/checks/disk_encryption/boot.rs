//! Which unencrypted mounts of `disk_encryption` are boot partitions: the
//! separate `/boot` and the EFI system partition that every distribution's
//! full-disk-encryption install leaves in the clear (the Debian, Ubuntu and
//! Fedora installers all do), as BitLocker and FileVault leave theirs. They
//! hold the boot loader and the kernel, no user data, so they are not
//! counted. Pure, like the evaluator that asks it.
//!
//! The exemption is narrow on purpose, so that it cannot become a false
//! pass: only the exact mount points below, only a whole filesystem (a bind
//! mount of a data directory onto `/boot` has another root), only a
//! filesystem that is mounted nowhere else (a `/boot` that is a directory of
//! `/`, or data reachable through another mount point, is that other mount),
//! and only the filesystems a boot loader reads there.

use super::MountEntry;

/// What the evidence says of an unencrypted boot partition.
pub(super) const BOOT_PARTITION_NOTE: &str = "holds the boot loader and kernel, no user data; \
     installers leave it unencrypted, as BitLocker and FileVault do";

/// Where the EFI system partition is mounted: `/boot/efi` by Debian, Ubuntu
/// and Fedora, `/efi` as the Boot Loader Specification and systemd's
/// `bootctl` prefer.
const EFI_MOUNT_POINTS: [&str; 2] = ["/boot/efi", "/efi"];

/// The filesystems an EFI system partition can have: UEFI firmware reads
/// only FAT (UEFI specification 2.10, section 13.3), which Linux mounts as
/// `vfat`.
const EFI_FS_TYPES: [&str; 1] = ["vfat"];

/// The filesystems a separate `/boot` has in practice: ext4 (Ubuntu,
/// Fedora), ext2 (older Debian guided installs), xfs (RHEL), btrfs
/// (openSUSE), vfat (systemd-boot's `/boot` as the ESP itself); ext3 for
/// old installs. All are read by GRUB or the firmware.
const BOOT_FS_TYPES: [&str; 6] = ["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat"];

/// Whether `mount`, found unencrypted, is a boot partition the rule does not
/// count, among `mounts`. `device` is the kernel name the evaluator traced
/// it to, and `device_of` traces any other mount the same way (the
/// evaluator's own tracing, handed in so that this file needs nothing of it).
pub(super) fn is_boot_partition(
    mount: &MountEntry,
    device: Option<&str>,
    mounts: &[MountEntry],
    device_of: impl Fn(&MountEntry) -> Option<String>,
) -> bool {
    let point = mount.mount_point.as_str();
    let fs_allowed = if EFI_MOUNT_POINTS.contains(&point) {
        EFI_FS_TYPES.contains(&mount.fs_type.as_str())
    } else if point == "/boot" {
        BOOT_FS_TYPES.contains(&mount.fs_type.as_str())
    } else {
        false
    };
    // A root other than `/` is a bind mount of a directory (or a btrfs
    // subvolume): whatever it is, not the boot filesystem itself.
    if !fs_allowed || mount.root != "/" {
        return false;
    }
    // The same filesystem mounted anywhere else (`/`, `/srv/data`) is data:
    // `/boot` on the root filesystem is just `/`, and a data filesystem
    // bound onto `/boot` is still that data filesystem.
    let same_filesystem = |other: &MountEntry| {
        (other.major, other.minor) == (mount.major, mount.minor)
            || device.is_some_and(|name| device_of(other).as_deref() == Some(name))
    };
    !mounts
        .iter()
        .any(|other| !is_boot_mount_point(&other.mount_point) && same_filesystem(other))
}

fn is_boot_mount_point(point: &str) -> bool {
    point == "/boot" || EFI_MOUNT_POINTS.contains(&point)
}
