//! The Windows probe of `screen_lock`: not written yet (the screen saver policy in the registry would
//! tell), so the rule reports `unknown` there rather than guess.

use super::ScreenLockFacts;
use crate::checks::ProbeError;
use crate::sys::Host;

pub(super) fn probe(_host: &Host) -> Result<ScreenLockFacts, ProbeError> {
    Err(crate::checks::no_probe_yet("screen lock"))
}
