//! The Windows probe of `password_policy`: the local account policy from
//! `NetUserModalsGet` (through `sys::netapi`). Complexity is not read yet
//! (it lives in the security database that `secedit /export` writes out),
//! so a policy that asks for character classes stays `unknown` here.

use super::{PasswordFacts, WindowsAccountPolicy, WindowsLockoutPolicy, WindowsPasswordFacts};
use crate::checks::ProbeError;
use crate::sys::Host;
use crate::sys::netapi;

pub(super) fn probe(_host: &Host) -> Result<PasswordFacts, ProbeError> {
    let accounts = netapi::account_modals()
        .map(|m| WindowsAccountPolicy {
            min_password_length: m.min_password_length,
            max_password_age_seconds: m.max_password_age_seconds,
            min_password_age_seconds: m.min_password_age_seconds,
            password_history_length: m.password_history_length,
        })
        .map_err(|err| err.to_string());
    let lockout = netapi::lockout_modals()
        .map(|m| WindowsLockoutPolicy {
            threshold: m.threshold,
            duration_seconds: m.duration_seconds,
            observation_window_seconds: m.observation_window_seconds,
        })
        .map_err(|err| err.to_string());
    Ok(PasswordFacts::Windows(WindowsPasswordFacts {
        accounts,
        lockout,
        complexity: None,
    }))
}
