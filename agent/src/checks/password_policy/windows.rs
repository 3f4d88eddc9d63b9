//! The Windows probe of `password_policy`: not written yet (`net accounts` would
//! tell), so the rule reports `unknown` there rather than guess.

use super::PasswordFacts;
use crate::checks::ProbeError;
use crate::sys::Host;

pub(super) fn probe(_host: &Host) -> Result<PasswordFacts, ProbeError> {
    Err(crate::checks::no_probe_yet("password policy"))
}
