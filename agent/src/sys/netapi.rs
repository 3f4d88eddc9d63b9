//! The local account policy through `NetUserModalsGet` (netapi32): minimum
//! password length and ages (level 0) and the lockout settings (level 3).
//!
//! The one place the agent calls Win32 directly: winreg covers the
//! registry, but the account policy lives in the SAM and has no safe
//! wrapper. Each `unsafe` block says why it is sound.

use std::fmt;

use windows_sys::Win32::NetworkManagement::NetManagement::{
    NetApiBufferFree, NetUserModalsGet, USER_MODALS_INFO_0, USER_MODALS_INFO_3,
};

/// lmaccess.h's `TIMEQ_FOREVER`: the maximum password age that never ends.
const TIMEQ_FOREVER: u32 = u32::MAX;

/// `USER_MODALS_INFO_0`, as plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountModals {
    pub min_password_length: u32,
    /// Seconds; `None` for `TIMEQ_FOREVER`.
    pub max_password_age_seconds: Option<u32>,
    pub min_password_age_seconds: u32,
    pub password_history_length: u32,
}

/// `USER_MODALS_INFO_3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutModals {
    pub duration_seconds: u32,
    pub observation_window_seconds: u32,
    pub threshold: u32,
}

/// A failed `NetUserModalsGet`, with its NET_API_STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetApiError {
    pub level: u32,
    pub status: u32,
}

impl fmt::Display for NetApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meaning = match self.status {
            5 => " (access denied)",
            2140 => " (NERR_InvalidAPI: not implemented on this system)",
            2351 => " (NERR_InvalidComputer)",
            _ => "",
        };
        write!(
            f,
            "NetUserModalsGet level {} failed with {}{meaning}",
            self.level, self.status
        )
    }
}

impl std::error::Error for NetApiError {}

/// Calls `NetUserModalsGet` on the local machine at `level` and hands the
/// returned buffer, as `T`, to `read`; the buffer is freed afterwards.
fn modals<T: Copy, R>(level: u32, read: impl FnOnce(&T) -> R) -> Result<R, NetApiError> {
    let mut buffer: *mut u8 = std::ptr::null_mut();
    // SAFETY: a null server name means the local machine; `buffer` is a
    // valid out-pointer that the call fills with a NetApi-allocated buffer
    // on success.
    #[allow(unsafe_code)]
    let status = unsafe { NetUserModalsGet(std::ptr::null(), level, &mut buffer) };
    if status != 0 || buffer.is_null() {
        return Err(NetApiError { level, status });
    }
    // SAFETY: on success the buffer holds one USER_MODALS_INFO_<level>,
    // which `T` is for the levels this module asks for (0 and 3); it is
    // read by value before the buffer is freed, and freed once.
    #[allow(unsafe_code)]
    let value = unsafe { *buffer.cast::<T>() };
    // SAFETY: `buffer` came from NetUserModalsGet and is not used after.
    #[allow(unsafe_code)]
    unsafe {
        NetApiBufferFree(buffer.cast());
    }
    Ok(read(&value))
}

/// Level 0: password length, ages and history.
pub fn account_modals() -> Result<AccountModals, NetApiError> {
    modals::<USER_MODALS_INFO_0, _>(0, |info| AccountModals {
        min_password_length: info.usrmod0_min_passwd_len,
        max_password_age_seconds: (info.usrmod0_max_passwd_age != TIMEQ_FOREVER)
            .then_some(info.usrmod0_max_passwd_age),
        min_password_age_seconds: info.usrmod0_min_passwd_age,
        password_history_length: info.usrmod0_password_hist_len,
    })
}

/// Level 3: lockout.
pub fn lockout_modals() -> Result<LockoutModals, NetApiError> {
    modals::<USER_MODALS_INFO_3, _>(3, |info| LockoutModals {
        duration_seconds: info.usrmod3_lockout_duration,
        observation_window_seconds: info.usrmod3_lockout_observation_window,
        threshold: info.usrmod3_lockout_threshold,
    })
}
