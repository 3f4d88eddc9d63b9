//! The Windows evaluator of `disk_encryption`: BitLocker's own account of
//! each volume (`Win32_EncryptableVolume`) to a verdict. Pure, so it
//! compiles and is tested on every OS.
//!
//! A fixed volume (the operating system's, or a fixed data volume) is
//! compliant only when it is fully encrypted and its protection is on.
//! "Suspended" protection leaves the key in the clear on the disk, so a
//! suspended volume is as readable as a plain one and fails. Removable
//! volumes are skipped: USB drives are `usb_storage`'s business. A value
//! this evaluator does not know, a failed query and an empty answer are
//! `unknown`: none of them is evidence that the disk is safe.

use palisade_shared::policy::DiskEncryptionPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::{BitLockerVolume, WindowsDiskFacts};
use crate::checks::Verdict;

/// `VolumeType` values, from the `Win32_EncryptableVolume` documentation.
const VOLUME_TYPE_OPERATING_SYSTEM: u32 = 0;
const VOLUME_TYPE_FIXED_DATA: u32 = 1;
const VOLUME_TYPE_PORTABLE_DATA: u32 = 2;

/// `ProtectionStatus` values.
const PROTECTION_OFF: u32 = 0;
const PROTECTION_ON: u32 = 1;
const PROTECTION_UNKNOWN: u32 = 2;

/// `ConversionStatus` values.
const FULLY_DECRYPTED: u32 = 0;
const FULLY_ENCRYPTED: u32 = 1;
const ENCRYPTION_IN_PROGRESS: u32 = 2;
const DECRYPTION_IN_PROGRESS: u32 = 3;
const ENCRYPTION_PAUSED: u32 = 4;
const DECRYPTION_PAUSED: u32 = 5;

const FIX_ENCRYPT: &str = "Turn on BitLocker: open Control Panel > System and Security > \
                           BitLocker Drive Encryption, choose \"Turn on BitLocker\" for each \
                           drive listed, and save the recovery key where IT asks (or ask IT to \
                           do it).";
const FIX_RESUME: &str = "Resume BitLocker protection: open Control Panel > System and Security \
                          > BitLocker Drive Encryption and choose \"Resume protection\" for each \
                          drive listed, or run `manage-bde -protectors -enable C:` (with the \
                          drive's letter) in an administrator command prompt.";
const FIX_WAIT: &str = "Leave the computer on and plugged in until BitLocker finishes \
                        encrypting; if it says encryption is paused, choose \"Resume \
                        BitLocker\" in Control Panel > System and Security > BitLocker Drive \
                        Encryption.";
const FIX_DECRYPTING: &str = "Someone is turning BitLocker off on this computer. Ask IT before \
                              going on; to keep the drive encrypted, choose \"Turn on \
                              BitLocker\" in Control Panel > System and Security > BitLocker \
                              Drive Encryption.";

/// What was decided about one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VolumeStatus {
    /// Fully encrypted, protection on.
    Protected,
    /// Fully decrypted.
    NotEncrypted,
    /// Fully encrypted, protection off: the key sits in the clear.
    Suspended,
    /// Encryption running or paused: part of the disk is still plain.
    Encrypting,
    /// Decryption running or paused.
    Decrypting,
    Unknown,
    /// Removable: not this rule's to judge.
    Skipped,
}

impl VolumeStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Protected => "protected",
            Self::NotEncrypted => "not_encrypted",
            Self::Suspended => "protection_suspended",
            Self::Encrypting => "encrypting",
            Self::Decrypting => "decrypting",
            Self::Unknown => "unknown",
            Self::Skipped => "skipped",
        }
    }

    fn fails(self) -> bool {
        matches!(
            self,
            Self::NotEncrypted | Self::Suspended | Self::Encrypting | Self::Decrypting
        )
    }
}

struct Finding<'v> {
    volume: &'v BitLockerVolume,
    status: VolumeStatus,
    detail: String,
}

/// Decides the rule from BitLocker's volumes.
pub fn evaluate(facts: &WindowsDiskFacts, policy: &DiskEncryptionPolicy) -> Verdict {
    let volumes = match &facts.volumes {
        Err(reason) => {
            return Verdict::new(
                CheckStatus::Unknown,
                format!("could not ask Windows whether the disks are encrypted: {reason}"),
            )
            .with_evidence("volumes", Value::Null)
            .with_evidence("query_error", reason.as_str())
            .with_evidence("include_swap", policy.include_swap);
        }
        Ok(volumes) => volumes,
    };
    let findings: Vec<Finding<'_>> = volumes.iter().map(judge).collect();
    let evidence: Vec<Value> = findings.iter().map(evidence_of).collect();
    let counted: Vec<&Finding<'_>> = findings
        .iter()
        .filter(|f| f.status != VolumeStatus::Skipped)
        .collect();
    let skipped = findings.len() - counted.len();
    let named = |wanted: &[VolumeStatus]| -> Vec<String> {
        counted
            .iter()
            .filter(|f| wanted.contains(&f.status))
            .map(|f| name_of(f.volume))
            .collect()
    };
    let failing: Vec<&Finding<'_>> = counted
        .iter()
        .copied()
        .filter(|f| f.status.fails())
        .collect();

    let verdict = if volumes.is_empty() {
        // Windows lists at least the system volume wherever BitLocker's
        // provider runs; an empty answer says nothing about the disks.
        Verdict::new(
            CheckStatus::Unknown,
            "Windows listed no drives that BitLocker can encrypt, so whether the disks are \
             encrypted is unknown",
        )
    } else if counted.is_empty() {
        Verdict::new(
            CheckStatus::Unknown,
            format!(
                "Windows listed only removable drives ({skipped}), which this check leaves to \
                 usb_storage; no fixed drive to check"
            ),
        )
    } else if !failing.is_empty() {
        let mut parts = Vec::new();
        let mut fixes = Vec::new();
        let plain = named(&[VolumeStatus::NotEncrypted]);
        if !plain.is_empty() {
            parts.push(format!("not encrypted: {}", plain.join(", ")));
            fixes.push(FIX_ENCRYPT);
        }
        let suspended = named(&[VolumeStatus::Suspended]);
        if !suspended.is_empty() {
            parts.push(format!(
                "encrypted, but BitLocker protection is suspended (the drive can be read \
                 without a key): {}",
                suspended.join(", ")
            ));
            fixes.push(FIX_RESUME);
        }
        let encrypting = named(&[VolumeStatus::Encrypting]);
        if !encrypting.is_empty() {
            parts.push(format!(
                "BitLocker is still encrypting, so part of the drive is not protected yet: {}",
                encrypting.join(", ")
            ));
            fixes.push(FIX_WAIT);
        }
        let decrypting = named(&[VolumeStatus::Decrypting]);
        if !decrypting.is_empty() {
            parts.push(format!(
                "BitLocker is being turned off (decrypting): {}",
                decrypting.join(", ")
            ));
            fixes.push(FIX_DECRYPTING);
        }
        Verdict::new(
            CheckStatus::Fail,
            format!(
                "{} of {} fixed drives are not fully protected by BitLocker; {}",
                failing.len(),
                counted.len(),
                parts.join("; ")
            ),
        )
        .with_fix(fixes.join(" "))
    } else if counted.iter().any(|f| f.status == VolumeStatus::Unknown) {
        let unknown: Vec<String> = counted
            .iter()
            .filter(|f| f.status == VolumeStatus::Unknown)
            .map(|f| format!("{} ({})", name_of(f.volume), f.detail))
            .collect();
        Verdict::new(
            CheckStatus::Unknown,
            format!(
                "could not tell whether these drives are protected: {}",
                unknown.join("; ")
            ),
        )
    } else {
        Verdict::new(
            CheckStatus::Pass,
            format!(
                "all {} fixed drives are fully encrypted with BitLocker protection on",
                counted.len()
            ),
        )
    };
    let verdict = if skipped > 0 {
        verdict.with_evidence(
            "skipped",
            format!("{skipped} removable drive(s) not checked here: that is usb_storage's rule"),
        )
    } else {
        verdict
    };
    verdict
        .with_evidence("volumes", evidence)
        .with_evidence("include_swap", policy.include_swap)
}

fn judge(volume: &BitLockerVolume) -> Finding<'_> {
    let finding = |status, detail: String| Finding {
        volume,
        status,
        detail,
    };
    match volume.volume_type {
        Some(VOLUME_TYPE_PORTABLE_DATA) => {
            return finding(
                VolumeStatus::Skipped,
                "removable drive (see usb_storage)".into(),
            );
        }
        Some(VOLUME_TYPE_OPERATING_SYSTEM | VOLUME_TYPE_FIXED_DATA) => {}
        Some(other) => {
            return finding(
                VolumeStatus::Unknown,
                format!("volume type {other} is not one this check knows"),
            );
        }
        None => {
            return finding(
                VolumeStatus::Unknown,
                "Windows did not say what kind of drive this is".into(),
            );
        }
    }
    // A locked volume's state cannot be read until it is unlocked; BitLocker
    // itself answers "unknown", and so does this check.
    if volume.protection_status == Some(PROTECTION_UNKNOWN) {
        return finding(
            VolumeStatus::Unknown,
            "BitLocker reports its protection as unknown (the drive may be locked)".into(),
        );
    }
    match volume.conversion_status {
        Some(FULLY_ENCRYPTED) => match volume.protection_status {
            Some(PROTECTION_ON) => finding(
                VolumeStatus::Protected,
                "fully encrypted, protection on".into(),
            ),
            Some(PROTECTION_OFF) => finding(
                VolumeStatus::Suspended,
                "fully encrypted, but protection is suspended".into(),
            ),
            Some(other) => finding(
                VolumeStatus::Unknown,
                format!("protection status {other} is not one this check knows"),
            ),
            None => finding(
                VolumeStatus::Unknown,
                "Windows did not give the protection status".into(),
            ),
        },
        Some(FULLY_DECRYPTED) => finding(VolumeStatus::NotEncrypted, "not encrypted".into()),
        Some(ENCRYPTION_IN_PROGRESS) => {
            finding(VolumeStatus::Encrypting, "encryption in progress".into())
        }
        Some(ENCRYPTION_PAUSED) => finding(VolumeStatus::Encrypting, "encryption paused".into()),
        Some(DECRYPTION_IN_PROGRESS) => {
            finding(VolumeStatus::Decrypting, "decryption in progress".into())
        }
        Some(DECRYPTION_PAUSED) => finding(VolumeStatus::Decrypting, "decryption paused".into()),
        Some(other) => finding(
            VolumeStatus::Unknown,
            format!("conversion status {other} is not one this check knows"),
        ),
        None => finding(
            VolumeStatus::Unknown,
            "Windows did not give the encryption status".into(),
        ),
    }
}

/// `C:` where there is a letter, else the volume's GUID path.
fn name_of(volume: &BitLockerVolume) -> String {
    match volume.drive_letter.as_deref() {
        Some(letter) if !letter.is_empty() => letter.to_owned(),
        _ => volume.device_id.clone(),
    }
}

fn volume_type_name(volume_type: Option<u32>) -> &'static str {
    match volume_type {
        Some(VOLUME_TYPE_OPERATING_SYSTEM) => "operating_system",
        Some(VOLUME_TYPE_FIXED_DATA) => "fixed_data",
        Some(VOLUME_TYPE_PORTABLE_DATA) => "removable",
        _ => "unknown",
    }
}

fn evidence_of(finding: &Finding<'_>) -> Value {
    let v = finding.volume;
    json!({
        "device_id": v.device_id,
        "drive_letter": v.drive_letter,
        "volume_type": volume_type_name(v.volume_type),
        "volume_type_raw": v.volume_type,
        "protection_status_raw": v.protection_status,
        "conversion_status_raw": v.conversion_status,
        "encryption_method_raw": v.encryption_method,
        "status": finding.status.as_str(),
        "detail": finding.detail,
    })
}
