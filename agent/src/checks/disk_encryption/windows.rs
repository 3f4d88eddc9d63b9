//! The Windows probe of `disk_encryption`: BitLocker's state of every
//! volume it can encrypt, from WMI's `Win32_EncryptableVolume` (through
//! `sys::bitlocker`). A failed query is not a probe error but a fact: the
//! evaluator reports it as `unknown` with WMI's reason, so the evidence says
//! why (no BitLocker namespace, access denied) instead of "probe failed".

use super::{BitLockerVolume, DiskFacts, WindowsDiskFacts};
use crate::checks::ProbeError;
use crate::sys::Host;
use crate::sys::bitlocker;

pub(super) fn probe(_host: &Host) -> Result<DiskFacts, ProbeError> {
    let volumes = bitlocker::encryptable_volumes()
        .map(|rows| {
            rows.into_iter()
                .map(|row| BitLockerVolume {
                    device_id: row.device_id.unwrap_or_default(),
                    drive_letter: row.drive_letter.filter(|letter| !letter.is_empty()),
                    volume_type: row.volume_type,
                    protection_status: row.protection_status,
                    conversion_status: row.conversion_status,
                    encryption_method: row.encryption_method,
                })
                .collect()
        })
        .map_err(|err| err.to_string());
    if let Err(reason) = &volumes {
        tracing::debug!(error = %reason, "BitLocker WMI query failed");
    }
    Ok(DiskFacts::Windows(WindowsDiskFacts { volumes }))
}
