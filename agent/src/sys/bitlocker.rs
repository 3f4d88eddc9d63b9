//! BitLocker's state of every volume it can encrypt, from WMI's
//! `Win32_EncryptableVolume` in `root\CIMV2\Security\MicrosoftVolumeEncryption`,
//! the provider `manage-bde` and the Control Panel read too.
//!
//! The COM and VARIANT work is the `wmi` crate's (its `unsafe` stays inside
//! it); this file only names the namespace, asks for packet privacy, which
//! that namespace refuses to answer without, and turns the HRESULTs a
//! person will meet into words. It decides nothing.
//!
//! Blocking COM calls: the daemon runs probes under `spawn_blocking`, and
//! the CLI's `check` is synchronous, so no async worker thread waits here.
//! COM: wmi 0.18 has no `COMLibrary` any more; on a thread where COM is not
//! initialized it joins the process's multithreaded apartment
//! (`CoIncrementMTAUsage`) and sets the default security once
//! (`CoInitializeSecurity`), never uninitializing, so each probe thread may
//! connect on its own.

use std::fmt;

use serde::Deserialize;
use wmi::{AuthLevel, WMIConnection, WMIError};

pub const NAMESPACE: &str = r"root\CIMV2\Security\MicrosoftVolumeEncryption";

/// Only the properties the rule reads: the class also carries
/// `PersistentVolumeID` and `IsVolumeInitializedForProtection`.
const QUERY: &str = "SELECT DeviceID, DriveLetter, VolumeType, ProtectionStatus, \
                     ConversionStatus, EncryptionMethod FROM Win32_EncryptableVolume";

/// One `Win32_EncryptableVolume` row with its numbers as WMI gave them;
/// `None` where the property was null.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptableVolume {
    #[serde(rename = "DeviceID")]
    pub device_id: Option<String>,
    pub drive_letter: Option<String>,
    pub volume_type: Option<u32>,
    pub protection_status: Option<u32>,
    pub conversion_status: Option<u32>,
    pub encryption_method: Option<u32>,
}

/// Which step of the query failed, and WMI's error.
#[derive(Debug)]
pub struct BitLockerQueryError {
    pub step: QueryStep,
    pub error: WMIError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryStep {
    Connect,
    SetPacketPrivacy,
    Query,
}

impl fmt::Display for BitLockerQueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.step {
            QueryStep::Connect => format!("connecting to WMI namespace {NAMESPACE}"),
            QueryStep::SetPacketPrivacy => {
                "asking WMI for packet privacy (CoSetProxyBlanket)".to_owned()
            }
            QueryStep::Query => "querying Win32_EncryptableVolume".to_owned(),
        };
        match &self.error {
            WMIError::HResultError { hres } => {
                // HRESULTs are documented as unsigned hex; windows-rs holds
                // them as i32.
                let code = u32::from_ne_bytes(hres.to_ne_bytes());
                write!(f, "{step} failed with HRESULT {code:#010X}")?;
                if let Some(meaning) = hresult_meaning(code) {
                    write!(f, " ({meaning})")?;
                }
                Ok(())
            }
            other => write!(f, "{step} failed: {other}"),
        }
    }
}

impl std::error::Error for BitLockerQueryError {}

/// The HRESULTs this query is known to meet, from the WMI error constants
/// (wbemcli.h) and winerror.h.
fn hresult_meaning(code: u32) -> Option<&'static str> {
    Some(match code {
        0x8004_100E => {
            "WBEM_E_INVALID_NAMESPACE: the BitLocker WMI namespace does not exist on this \
             system, so BitLocker's state cannot be read"
        }
        0x8004_1010 => "WBEM_E_INVALID_CLASS: this system has no Win32_EncryptableVolume class",
        0x8004_1017 => {
            "WBEM_E_INVALID_QUERY: this Windows does not know one of the properties asked for"
        }
        0x8004_1003 | 0x8007_0005 => {
            "access denied: reading BitLocker's state needs administrator rights"
        }
        0x8004_1001 => "WBEM_E_FAILED",
        0x8004_0154 => "REGDB_E_CLASSNOTREG: the WMI service is not registered",
        0x8007_0422 => "the WMI service (winmgmt) is disabled",
        _ => return None,
    })
}

/// Every volume BitLocker can encrypt, as the provider reports it. Blocking.
pub fn encryptable_volumes() -> Result<Vec<EncryptableVolume>, BitLockerQueryError> {
    let fail = |step| move |error| BitLockerQueryError { step, error };
    let connection =
        WMIConnection::with_namespace_path(NAMESPACE).map_err(fail(QueryStep::Connect))?;
    // The namespace requires RPC_C_AUTHN_LEVEL_PKT_PRIVACY (Microsoft's
    // BitLocker provider documentation, and wmi's note on this very class);
    // below it the provider refuses the call.
    connection
        .set_proxy_blanket(AuthLevel::PktPrivacy)
        .map_err(fail(QueryStep::SetPacketPrivacy))?;
    connection.raw_query(QUERY).map_err(fail(QueryStep::Query))
}
