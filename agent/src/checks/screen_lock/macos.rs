//! The macOS probe of `screen_lock`, for a root daemon under launchd: who
//! is at the console (`sys::console_user_macos`), then that user's values
//! read in their own context. Run as root, `defaults -currentHost` reads
//! root's ByHost preferences and `sysadminctl -screenLock status` root's
//! setting, which are empty (the fleet#8875 lesson the issue cites; fleetdm/fleet
//! PR 12432 documents osquery's `screenlock` table returning nothing as
//! root for the same reason), so both run as
//! `launchctl asuser <uid> sudo -u <user> …`: the user's bootstrap
//! namespace and the user's identity. The managed preferences files are
//! root-readable and read directly. Reads only; `evaluate_macos.rs` decides.

use super::parse_macos::{
    parse_defaults_integer, parse_managed_screensaver, parse_sysadminctl_screen_lock,
};
use super::{MacLockFacts, MacUserLockFacts, ManagedScreenSaver, RegistryRead, ScreenLockFacts};
use crate::checks::ProbeError;
use crate::sys::console_user_macos::{ConsoleState, console_user};
use crate::sys::{CommandSpec, Host};

/// Where configuration profiles' preferences land: per user in a folder of
/// the user's short name, device-wide at the top.
const MANAGED_PREFERENCES: &str = "/Library/Managed Preferences";

pub(super) fn probe(host: &Host) -> Result<ScreenLockFacts, ProbeError> {
    let facts = match console_user(host) {
        Err(why) => MacLockFacts::ConsoleUnreadable(why),
        Ok(ConsoleState::NoOne(why)) => MacLockFacts::NoConsoleUser(why),
        Ok(ConsoleState::User(user)) => MacLockFacts::ConsoleUser(MacUserLockFacts {
            screen_lock: screen_lock_status(host, user.uid, &user.name),
            idle_time: idle_time(host, user.uid, &user.name),
            managed_user: managed(&format!(
                "{MANAGED_PREFERENCES}/{}/com.apple.screensaver.plist",
                user.name
            )),
            managed_device: managed(&format!(
                "{MANAGED_PREFERENCES}/com.apple.screensaver.plist"
            )),
            user: user.name,
            uid: user.uid,
        }),
    };
    Ok(ScreenLockFacts::MacOs(facts))
}

/// `launchctl asuser UID sudo -u USER PROGRAM ARGS…`.
fn as_user(uid: u32, user: &str, program: &str, args: &[&str]) -> CommandSpec {
    let mut command = CommandSpec::new("/bin/launchctl")
        .arg("asuser")
        .arg(uid.to_string())
        .arg("/usr/bin/sudo")
        .arg("-u")
        .arg(user)
        .arg(program);
    for arg in args {
        command = command.arg(*arg);
    }
    command
}

fn screen_lock_status(
    host: &Host,
    uid: u32,
    user: &str,
) -> Result<super::MacScreenLockDelay, String> {
    let command = as_user(
        uid,
        user,
        "/usr/sbin/sysadminctl",
        &["-screenLock", "status"],
    );
    let output = host.run(&command).map_err(|err| err.to_string())?;
    // The status goes to stderr; stdout is read too in case a release moves it.
    parse_sysadminctl_screen_lock(&format!("{}\n{}", output.stderr, output.stdout))
}

fn idle_time(host: &Host, uid: u32, user: &str) -> RegistryRead<i64> {
    let command = as_user(
        uid,
        user,
        "/usr/bin/defaults",
        &["-currentHost", "read", "com.apple.screensaver", "idleTime"],
    );
    match host.run(&command) {
        Ok(output) => parse_defaults_integer(output.exit_code, &output.stdout, &output.stderr),
        Err(err) => RegistryRead::Unreadable(err.to_string()),
    }
}

fn managed(path: &str) -> RegistryRead<ManagedScreenSaver> {
    match std::fs::read(path) {
        Ok(bytes) => match parse_managed_screensaver(&bytes) {
            Ok(managed) => RegistryRead::Value(managed),
            Err(why) => RegistryRead::Unreadable(format!("{path}: {why}")),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => RegistryRead::Absent,
        Err(err) => RegistryRead::Unreadable(format!("{path}: {err}")),
    }
}
