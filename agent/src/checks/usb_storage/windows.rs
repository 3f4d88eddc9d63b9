//! The Windows probe of `usb_storage`: not written yet (the SetupAPI device tree would
//! tell), so the rule reports `unknown` there rather than guess.

use super::UsbStorageFacts;
use crate::checks::ProbeError;
use crate::sys::Host;

pub(super) fn probe(_host: &Host) -> Result<UsbStorageFacts, ProbeError> {
    Err(crate::checks::no_probe_yet("USB storage"))
}
