//! The Windows probe of `disk_encryption`: not written yet (`manage-bde -status` would
//! tell), so the rule reports `unknown` there rather than guess.

use super::DiskFacts;
use crate::checks::ProbeError;
use crate::sys::Host;

pub(super) fn probe(_host: &Host) -> Result<DiskFacts, ProbeError> {
    Err(crate::checks::no_probe_yet("disk encryption"))
}
