//! The Windows probe of `screen_lock`: the machine inactivity limit from
//! HKLM, and for each loaded user hive under HKEY_USERS the screen saver
//! values from the user's Group Policy key and their own key. Reads only;
//! the evaluator (`evaluate_windows.rs`) decides.
//!
//! Only hives of people are read: local and domain accounts (`S-1-5-21-…`)
//! and Entra ID accounts (`S-1-12-1-…`). `.DEFAULT` and the service
//! accounts' hives (`S-1-5-18`, `-19`, `-20`) belong to no one at a screen,
//! and `…_Classes` keys are the same users' class registrations.

use super::parse::is_person_hive;
use super::{ScreenLockFacts, ScreenSaverValues, WindowsLockFacts, WindowsUserScreenSaver};
use crate::checks::{ProbeError, RegistryRead};
use crate::sys::Host;
use crate::sys::registry::{self, Hive};

/// Where the machine inactivity limit lives.
pub const SYSTEM_POLICIES: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System";
pub const INACTIVITY_TIMEOUT: &str = "InactivityTimeoutSecs";
const USER_POLICY_DESKTOP: &str = r"Software\Policies\Microsoft\Windows\Control Panel\Desktop";
const USER_DESKTOP: &str = r"Control Panel\Desktop";

fn screen_saver_values(sid: &str, path: &str) -> ScreenSaverValues {
    let key = format!(r"{sid}\{path}");
    let read = |name: &str| RegistryRead::from_io(registry::read_string(Hive::Users, &key, name));
    ScreenSaverValues {
        active: read("ScreenSaveActive"),
        secure: read("ScreenSaverIsSecure"),
        timeout: read("ScreenSaveTimeOut"),
        executable: read("SCRNSAVE.EXE"),
    }
}

pub(super) fn probe(_host: &Host) -> Result<ScreenLockFacts, ProbeError> {
    let inactivity_limit = RegistryRead::from_io(registry::read_dword(
        Hive::LocalMachine,
        SYSTEM_POLICIES,
        INACTIVITY_TIMEOUT,
    ));
    let hives = registry::subkeys(Hive::Users, "").map_err(|err| {
        ProbeError::Undeterminable(format!("cannot list the loaded user hives (HKU): {err}"))
    })?;
    let users = hives
        .iter()
        .filter(|name| is_person_hive(name))
        .map(|sid| WindowsUserScreenSaver {
            sid: sid.clone(),
            policy: screen_saver_values(sid, USER_POLICY_DESKTOP),
            user: screen_saver_values(sid, USER_DESKTOP),
        })
        .collect();
    Ok(ScreenLockFacts::Windows(WindowsLockFacts {
        inactivity_limit,
        users,
    }))
}
