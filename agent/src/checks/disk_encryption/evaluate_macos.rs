//! The macOS evaluator of `disk_encryption`: FileVault's own account
//! (`fdesetup status`) and the APFS volumes' keys (`diskutil apfs list
//! -plist`) to a verdict. Pure, so it compiles and is tested on every OS.
//!
//! Both sources must agree before the rule passes. `fdesetup` is the only
//! one that tells a deferred enablement (FileVault will turn on at the next
//! log-in, and until then the disk is plain) and a conversion under way;
//! the volumes' `FileVault` key is what says, volume by volume, that the
//! data is locked to a password. Judged are the volumes that hold user
//! data: the `Data` volume of each macOS volume group (Catalina and later)
//! and every volume without a role (the whole system before Catalina, and
//! volumes added in Disk Utility), in the APFS container the system booted
//! from (`diskutil info -plist /`). Another disk's volumes are
//! `usb_storage`'s or nobody's; when the boot container cannot be read,
//! every container is judged, which can fail a Mac but not pass one
//! wrongly. The sealed `System` snapshot and the
//! support volumes (`Preboot`, `Recovery`, `VM`, `Update` and the like) hold
//! no user data: macOS encrypts swap on its own, with a key that dies at
//! shutdown. `Encryption` alone is not enough: on a Mac with a T2 or Apple
//! silicon every volume is hardware-encrypted, readable by anyone who
//! starts the Mac unless FileVault protects the key with a password.
//!
//! Either source unreadable, an answer not known here, or no volume to judge
//! is `unknown`, never `pass`.

use palisade_shared::policy::DiskEncryptionPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::{ApfsVolume, FileVaultStatus, MacDiskFacts};
use crate::checks::Verdict;

/// Roles of volumes that hold no user data (`diskutil apfs` prints them;
/// apfs.h lists the role flags): judged by no one.
const SUPPORT_ROLES: [&str; 10] = [
    "System",
    "Preboot",
    "Recovery",
    "VM",
    "Update",
    "xART",
    "Hardware",
    "Installer",
    "Backup",
    "Prelinked",
];

const FIX_TURN_ON: &str = "Turn on FileVault: open System Settings > Privacy & Security > \
    FileVault (on macOS 12 and earlier, System Preferences > Security & Privacy > FileVault), \
    click \"Turn On\", and keep the recovery key where IT asks (or ask IT to do it).";
const FIX_DEFERRED: &str = "FileVault is waiting to be turned on at the next log-in: log out \
    (Apple menu > Log Out), log back in and enter your password when macOS asks, then keep the \
    Mac plugged in while it encrypts.";
const FIX_WAIT: &str = "Leave the Mac on and plugged in until FileVault finishes encrypting; \
    System Settings > Privacy & Security > FileVault shows how far it is.";
const FIX_DECRYPTING: &str = "Someone is turning FileVault off on this Mac. Ask IT before going \
    on; to keep the disk encrypted, turn FileVault back on in System Settings > Privacy & \
    Security > FileVault.";
const FIX_VOLUME: &str = "Some volumes on this Mac are not protected by FileVault. Ask IT: a \
    volume added in Disk Utility must be erased as \"APFS (Encrypted)\" with a password, or its \
    data moved to the FileVault-protected disk and the volume deleted.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VolumeStatus {
    Protected,
    NotProtected,
    /// `CryptoMigrationOn`: encryption or decryption under way.
    Converting,
    Unknown,
    /// A support volume: no user data.
    Skipped,
    /// On a disk the system did not boot from.
    OtherDisk,
}

impl VolumeStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Protected => "protected",
            Self::NotProtected => "not_protected",
            Self::Converting => "converting",
            Self::Unknown => "unknown",
            Self::Skipped => "skipped",
            Self::OtherDisk => "not_the_boot_disk",
        }
    }
}

fn judge(volume: &ApfsVolume) -> VolumeStatus {
    if volume
        .roles
        .iter()
        .any(|role| SUPPORT_ROLES.contains(&role.as_str()))
    {
        return VolumeStatus::Skipped;
    }
    if volume.crypto_migration_on == Some(true) {
        return VolumeStatus::Converting;
    }
    match volume.file_vault {
        Some(true) => VolumeStatus::Protected,
        // A locked volume is encrypted by definition, but without the
        // FileVault key it cannot be told whose password unlocks it.
        Some(false) if volume.locked == Some(true) => VolumeStatus::Unknown,
        Some(false) => VolumeStatus::NotProtected,
        None => VolumeStatus::Unknown,
    }
}

fn name_of(volume: &ApfsVolume) -> String {
    match &volume.name {
        Some(name) => format!("{} ({name})", volume.device_identifier),
        None => volume.device_identifier.clone(),
    }
}

fn fdesetup_evidence(status: &Result<FileVaultStatus, String>) -> Value {
    match status {
        Err(reason) => json!({ "error": reason }),
        Ok(FileVaultStatus::On) => json!({ "status": "on" }),
        Ok(FileVaultStatus::Off) => json!({ "status": "off" }),
        Ok(FileVaultStatus::Deferred { user }) => json!({ "status": "deferred", "user": user }),
        Ok(FileVaultStatus::Encrypting { progress }) => {
            json!({ "status": "encrypting", "progress": progress })
        }
        Ok(FileVaultStatus::Decrypting { progress }) => {
            json!({ "status": "decrypting", "progress": progress })
        }
        Ok(FileVaultStatus::Unrecognized(text)) => {
            json!({ "status": "unrecognized", "output": text })
        }
    }
}

/// Decides the rule from what fdesetup and diskutil said.
pub fn evaluate(facts: &MacDiskFacts, policy: &DiskEncryptionPolicy) -> Verdict {
    let mut failures: Vec<String> = Vec::new();
    let mut fixes: Vec<&str> = Vec::new();
    let mut unknowns: Vec<String> = Vec::new();

    match &facts.fdesetup {
        Ok(FileVaultStatus::On) => {}
        Ok(FileVaultStatus::Off) => {
            failures.push("FileVault is off".into());
            fixes.push(FIX_TURN_ON);
        }
        Ok(FileVaultStatus::Deferred { user }) => {
            failures.push(match user {
                Some(user) => format!(
                    "FileVault is not on yet: it is set to turn on when {user} next logs in"
                ),
                None => "FileVault is not on yet: it is set to turn on at the next log-in".into(),
            });
            fixes.push(FIX_DEFERRED);
        }
        Ok(FileVaultStatus::Encrypting { progress }) => {
            failures.push(format!(
                "FileVault is still encrypting, so part of the disk is not protected yet ({})",
                progress.as_deref().unwrap_or("no progress given")
            ));
            fixes.push(FIX_WAIT);
        }
        Ok(FileVaultStatus::Decrypting { progress }) => {
            failures.push(format!(
                "FileVault is being turned off (decrypting: {})",
                progress.as_deref().unwrap_or("no progress given")
            ));
            fixes.push(FIX_DECRYPTING);
        }
        Ok(FileVaultStatus::Unrecognized(text)) => unknowns.push(format!(
            "fdesetup status said something this check does not know: {text:?}"
        )),
        Err(reason) => unknowns.push(format!("could not ask fdesetup: {reason}")),
    }

    let mut evidence_volumes = Vec::new();
    let mut judged = 0;
    match &facts.apfs_volumes {
        Err(reason) => unknowns.push(format!("could not list the APFS volumes: {reason}")),
        Ok(volumes) => {
            let mut plain = Vec::new();
            let mut converting = Vec::new();
            let boot = facts.boot_container.as_ref().ok();
            if let Some(boot) = boot
                && !volumes.iter().any(|v| &v.container == boot)
            {
                unknowns.push(format!(
                    "the boot volume's APFS container {boot} is not among those diskutil listed"
                ));
            }
            for volume in volumes {
                // Another disk's volumes (an external APFS drive) are not
                // this rule's: the boot container holds the system's data.
                let status = match boot {
                    Some(boot) if &volume.container != boot => VolumeStatus::OtherDisk,
                    _ => judge(volume),
                };
                match status {
                    VolumeStatus::Skipped | VolumeStatus::OtherDisk => {}
                    VolumeStatus::NotProtected => plain.push(name_of(volume)),
                    VolumeStatus::Converting => converting.push(name_of(volume)),
                    VolumeStatus::Unknown => unknowns.push(format!(
                        "whether FileVault protects {} cannot be told",
                        name_of(volume)
                    )),
                    VolumeStatus::Protected => {}
                }
                if !matches!(status, VolumeStatus::Skipped | VolumeStatus::OtherDisk) {
                    judged += 1;
                }
                evidence_volumes.push(json!({
                    "container": volume.container,
                    "device_identifier": volume.device_identifier,
                    "name": volume.name,
                    "roles": volume.roles,
                    "file_vault": volume.file_vault,
                    "encryption": volume.encryption,
                    "crypto_migration_on": volume.crypto_migration_on,
                    "locked": volume.locked,
                    "status": status.as_str(),
                }));
            }
            if !plain.is_empty() {
                failures.push(format!("not protected by FileVault: {}", plain.join(", ")));
                // FileVault off explains every plain volume; otherwise they
                // are volumes FileVault does not cover.
                if !fixes.contains(&FIX_TURN_ON) && !fixes.contains(&FIX_DEFERRED) {
                    fixes.push(FIX_VOLUME);
                }
            }
            if !converting.is_empty() {
                failures.push(format!(
                    "encryption or decryption is under way on: {}",
                    converting.join(", ")
                ));
                if !fixes.contains(&FIX_WAIT) && !fixes.contains(&FIX_DECRYPTING) {
                    fixes.push(FIX_WAIT);
                }
            }
            if judged == 0 {
                unknowns.push("diskutil listed no APFS volume that holds user data".into());
            }
        }
    }

    let verdict = if !failures.is_empty() {
        Verdict::new(
            CheckStatus::Fail,
            format!(
                "the disk is not fully protected by FileVault: {}",
                failures.join("; ")
            ),
        )
        .with_fix(fixes.join(" "))
    } else if !unknowns.is_empty() {
        Verdict::new(
            CheckStatus::Unknown,
            format!(
                "could not tell whether FileVault protects the disk: {}",
                unknowns.join("; ")
            ),
        )
    } else {
        Verdict::new(
            CheckStatus::Pass,
            format!(
                "FileVault is on and protects every APFS volume that holds user data ({judged})"
            ),
        )
    };
    verdict
        .with_evidence("fdesetup", fdesetup_evidence(&facts.fdesetup))
        .with_evidence(
            "volumes",
            if facts.apfs_volumes.is_ok() {
                Value::from(evidence_volumes)
            } else {
                Value::Null
            },
        )
        .with_evidence(
            "boot_container",
            match &facts.boot_container {
                Ok(container) => json!({ "container": container }),
                Err(reason) => json!({ "error": reason }),
            },
        )
        .with_evidence("include_swap", policy.include_swap)
}
