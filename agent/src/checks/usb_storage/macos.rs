//! The macOS probe of `usb_storage`: runs `system_profiler -json
//! SPUSBDataType SPUSBHostDataType` through [`Host::run`] and hands the JSON
//! to `parse_macos.rs`. Asking for both data types in one run covers the
//! macOS versions that fill only one of them. A failed run is not a probe
//! error but a fact, which the evaluator reports as `unknown`.

use super::parse_macos::parse_system_profiler_usb;
use super::{MacUsbFacts, UsbStorageFacts};
use crate::checks::{ProbeError, command_stdout};
use crate::sys::{CommandSpec, Host};

/// An absolute path, so PATH cannot swap the tool.
const SYSTEM_PROFILER: &str = "/usr/sbin/system_profiler";

pub(super) fn probe(host: &Host) -> Result<UsbStorageFacts, ProbeError> {
    Ok(UsbStorageFacts::MacOs(facts(host)))
}

/// The facts themselves, for the probe and the enforcer's plan.
pub(super) fn facts(host: &Host) -> MacUsbFacts {
    let both = CommandSpec::new(SYSTEM_PROFILER)
        .arg("-json")
        .arg("SPUSBDataType")
        .arg("SPUSBHostDataType");
    // Should a macOS version refuse a data type it does not know, the older
    // one alone still answers.
    let report = command_stdout(host, &both)
        .or_else(|first| {
            let legacy = CommandSpec::new(SYSTEM_PROFILER)
                .arg("-json")
                .arg("SPUSBDataType");
            command_stdout(host, &legacy).map_err(|second| format!("{first}; then {second}"))
        })
        .and_then(|stdout| parse_system_profiler_usb(&stdout));
    if let Err(reason) = &report {
        tracing::debug!(error = %reason, "system_profiler USB report failed");
    }
    MacUsbFacts { report }
}
