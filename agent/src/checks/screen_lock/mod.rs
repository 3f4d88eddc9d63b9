//! Rule `screen_lock`: every graphical session locks its screen within the
//! policy's `max_idle_seconds` of idle time (idle delay plus lock delay).
//!
//! Linux probe. The settings are per user, so the probe starts from the
//! people at the screen: logind's state files `/run/systemd/sessions/*` name
//! each session's user, type, class and desktop. For each graphical user
//! session it reads that user's *effective* settings:
//!
//! - GNOME: `gsettings get` with the dconf backend, for
//!   `org.gnome.desktop.session idle-delay`, `org.gnome.desktop.screensaver
//!   lock-enabled` and `lock-delay`, and `org.gnome.desktop.lockdown
//!   disable-lock-screen` (gnome-shell refuses to lock at all when it is set).
//!   gsettings applies the system databases and their locks over the user's
//!   database and ignores values of the wrong type, so its answer is what
//!   gnome-shell sees; reading the keyfiles in `/etc/dconf` would not be (the
//!   GNOME admin guide's own untyped `idle-delay=180` is ignored by GSettings,
//!   see the fixtures' SOURCES.md). On the live system the probe runs
//!   gsettings as the session's user (`runuser`, which needs root); with a
//!   host root it never switches users and points HOME, XDG_CONFIG_HOME,
//!   XDG_RUNTIME_DIR and DCONF_PROFILE into the tree.
//! - KDE Plasma: `kscreenlockerrc` `[Daemon]` (`Autolock`, `Timeout`,
//!   `LockGrace`, and `Lock`/`RequirePassword`, either of which turns the
//!   lock into a screen anyone can dismiss), the user's file over
//!   `/etc/xdg/kscreenlockerrc` unless the system file marks the group, the
//!   key or the whole file immutable (`[$i]`), as KConfig resolves them.
//!
//! No graphical session, and no display server process in `/proc`, is
//! `not_applicable`. A display server that logind does not account for (no
//! logind at all, or X started from a text console) is `unknown`: someone may
//! be at a screen the probe cannot see. Anything the probe cannot read (a
//! desktop it does not know, a missing tool, gsettings falling back to its
//! in-memory backend, which reports schema defaults, not the user's values)
//! is `unknown` with the reason, never `pass`.
//!
//! Known limits, each of which a session's own environment could move: a
//! `DCONF_PROFILE` or `XDG_CONFIG_HOME` set inside the session, and KDE
//! distributions that add directories to `XDG_CONFIG_DIRS` (the probe reads
//! `/etc/xdg` only). gnome-shell also waits out a 10 s fade before locking
//! when lock-delay is shorter; the policy's "idle delay plus lock delay"
//! leaves it out, as GNOME's Settings does.
//!
//! macOS probe (`macos.rs`, for the root daemon under launchd): the console
//! user from configd (`sys::console_user_macos`); no one at the console
//! (the login window) is `not_applicable`. For that user, read in their own
//! context (`launchctl asuser UID sudo -u USER`, since root's own reads are
//! empty): `sysadminctl -screenLock status` (the "Require password after
//! screen saver begins or display is turned off" delay) and `defaults
//! -currentHost read com.apple.screensaver idleTime`; a configuration
//! profile's `com.apple.screensaver` values in `/Library/Managed
//! Preferences` (the user's file, then the device's) win over both. The
//! screen locks after idleTime plus the delay (`evaluate_macos.rs`); an
//! unset or zero idleTime, a failed tool or an unreadable profile is
//! `unknown`. Display sleep (`pmset`), which also locks, is not read yet.
//! The parsers (`parse_macos.rs`) are tested on Linux; the probe has not
//! run on a real Mac here.
//!
//! Windows probe (`windows.rs`, `evaluate_windows.rs`): the machine
//! inactivity limit and each loaded user hive's screen saver values.
//!
//! The check reads; it changes nothing (the enforcer is `enforce.rs`, which
//! has no macOS plan yet).
//!
//! The folder: this file holds the facts, the [`Rule`] impl and which probe
//! runs; `linux.rs`, `windows.rs` and `macos.rs` gather the facts,
//! `parse.rs` and `parse_macos.rs` read the text, `evaluate.rs`,
//! `evaluate_windows.rs` and `evaluate_macos.rs` decide, and `enforce.rs`
//! sets and locks the lock. Only the probes and the enforcer reach the
//! machine.

pub mod enforce;
mod evaluate;
mod evaluate_macos;
mod evaluate_windows;
// Compiled on every OS, not only Linux: a host root (tests, `--host-root`) is
// a Linux tree wherever the agent runs, and gets this probe.
mod linux;
#[cfg(target_os = "macos")]
mod macos;
mod parse;
pub mod parse_macos;
#[cfg(windows)]
mod windows;

pub(crate) use linux::logind_sessions;
pub use linux::{cgroup_contains_unit, is_display_server_process};
pub use parse::{
    DesktopFamily, GsettingsValue, KConfigDaemonGroup, KConfigEntry, PasswdEntry,
    classify_gsettings_output, dconf_profile_system_databases, desktop_family, is_person_hive,
    parse_gsettings_value, parse_kscreenlockerrc, parse_logind_session, parse_passwd,
    resolve_kde_settings,
};

use std::collections::BTreeMap;

use palisade_shared::Policy;
use palisade_shared::policy::ScreenLockPolicy;

use palisade_shared::policy::RuleSettings;

pub use super::RegistryRead;
use super::{Enforcer, ProbeError, Rule, Verdict};
use crate::sys::Host;

#[derive(Debug)]
pub struct ScreenLock;

/// What the probe found, in the terms of the system it ran on.
#[derive(Debug, Clone, PartialEq)]
pub enum ScreenLockFacts {
    Linux(LinuxLockFacts),
    Windows(WindowsLockFacts),
    MacOs(MacLockFacts),
}

/// macOS: who is at the console and, when someone is, their effective
/// screen lock values, read in their own context.
#[derive(Debug, Clone, PartialEq)]
pub enum MacLockFacts {
    /// No one is logged in at the console (the login window has it).
    NoConsoleUser(String),
    /// Who is at the console could not be read.
    ConsoleUnreadable(String),
    ConsoleUser(MacUserLockFacts),
}

/// One console user's screen lock values, each as read.
#[derive(Debug, Clone, PartialEq)]
pub struct MacUserLockFacts {
    pub user: String,
    pub uid: u32,
    /// `sysadminctl -screenLock status`: "Require password after screen
    /// saver begins or display is turned off" (macOS 10.13 and later).
    pub screen_lock: Result<MacScreenLockDelay, String>,
    /// `defaults -currentHost read com.apple.screensaver idleTime`: seconds
    /// of idle before the screen saver starts; 0 is never.
    pub idle_time: RegistryRead<i64>,
    /// `/Library/Managed Preferences/<user>/com.apple.screensaver.plist`,
    /// a configuration profile's values for this user.
    pub managed_user: RegistryRead<ManagedScreenSaver>,
    /// `/Library/Managed Preferences/com.apple.screensaver.plist`, a
    /// device profile's values.
    pub managed_device: RegistryRead<ManagedScreenSaver>,
}

/// What `sysadminctl -screenLock status` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacScreenLockDelay {
    Immediate,
    Seconds(u64),
    /// No password is asked after the screen saver or display sleep.
    Off,
}

/// The `com.apple.screensaver` keys a configuration profile sets; `None`
/// for a key the profile leaves alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagedScreenSaver {
    pub idle_time: Option<i64>,
    pub ask_for_password: Option<bool>,
    /// Seconds; profiles write an integer or a real (`5.0` in DISA's STIG).
    pub ask_for_password_delay: Option<f64>,
}

/// Windows: the machine-wide inactivity limit and, for each loaded user
/// hive (a person logged on), the screen saver as policy and user set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowsLockFacts {
    /// `HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System`
    /// `InactivityTimeoutSecs` (REG_DWORD, "Interactive logon: Machine
    /// inactivity limit"): Windows locks every session after this many
    /// seconds without input; absent or 0 is no limit.
    pub inactivity_limit: RegistryRead<u32>,
    /// One entry per user hive loaded under `HKEY_USERS` (S-1-5-21-… local
    /// and domain accounts, S-1-12-1-… Entra ID accounts).
    pub users: Vec<WindowsUserScreenSaver>,
}

/// One user's screen saver values: the Group Policy key
/// (`Software\Policies\Microsoft\Windows\Control Panel\Desktop`) takes
/// precedence, value by value, over the user's own (`Control Panel\Desktop`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowsUserScreenSaver {
    pub sid: String,
    pub policy: ScreenSaverValues,
    pub user: ScreenSaverValues,
}

/// The four REG_SZ values that decide whether and when the screen saver
/// locks: `ScreenSaveActive` ("1" on), `ScreenSaverIsSecure` ("1": ask for
/// the password on resume), `ScreenSaveTimeOut` (seconds) and `SCRNSAVE.EXE`
/// (which screen saver; with none chosen none runs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreenSaverValues {
    pub active: RegistryRead<String>,
    pub secure: RegistryRead<String>,
    pub timeout: RegistryRead<String>,
    pub executable: RegistryRead<String>,
}

/// Linux: the graphical sessions and each one's settings, or, when there is
/// none, the display servers seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinuxLockFacts {
    /// Graphical user sessions from logind, with the settings read for each.
    pub sessions: Vec<SessionFacts>,
    /// How many session files logind lists (graphical or not); `None` when
    /// `/run/systemd/sessions` does not exist.
    pub logind_session_count: Option<usize>,
    /// Display server processes, looked for only when logind lists no
    /// graphical user session.
    pub display_servers: Vec<DisplayServerProcess>,
}

/// One graphical session and what could be read of its lock settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionFacts {
    pub session: LogindSession,
    /// The settings, or why they could not be read.
    pub settings: Result<LockSettings, String>,
}

/// One logind session state file, `/run/systemd/sessions/<id>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogindSession {
    /// The file name, which is the session id.
    pub id: String,
    pub user: Option<String>,
    pub uid: Option<u32>,
    /// `TYPE`: unspecified, tty, x11, wayland, mir, web.
    pub session_type: Option<String>,
    /// `CLASS`: user, greeter, lock-screen, background.
    pub class: Option<String>,
    /// `STATE`: opening, online, active, closing.
    pub state: Option<String>,
    pub active: Option<bool>,
    pub remote: Option<bool>,
    /// `DESKTOP`, from the display manager's XDG_SESSION_DESKTOP.
    pub desktop: Option<String>,
    pub seat: Option<String>,
    /// `SCOPE`, the systemd scope unit holding the session's processes.
    pub scope: Option<String>,
}

impl LogindSession {
    /// A session someone sits in front of: a graphical type, a user's own
    /// session (not the login greeter or a lock screen), not on its way out.
    pub fn is_graphical(&self) -> bool {
        let graphical_type = matches!(
            self.session_type.as_deref(),
            Some("x11" | "wayland" | "mir")
        );
        graphical_type
            && self.class.as_deref() == Some("user")
            && self.state.as_deref() != Some("closing")
    }
}

/// A running process that draws a screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayServerProcess {
    pub pid: u32,
    /// `/proc/<pid>/comm`.
    pub name: String,
    /// The logind session whose scope holds the process, if any.
    pub session_id: Option<String>,
    /// That session's class (`greeter` for a login screen).
    pub session_class: Option<String>,
}

/// The effective lock settings of one session.
#[derive(Debug, Clone, PartialEq)]
pub enum LockSettings {
    Gnome(GnomeLockSettings),
    Kde(KdeLockSettings),
}

/// GNOME's effective values, as gsettings reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GnomeLockSettings {
    /// `org.gnome.desktop.session idle-delay`: seconds before the session is
    /// idle and the screen blanks; 0 is never.
    pub idle_delay_seconds: u32,
    /// `org.gnome.desktop.screensaver lock-enabled`.
    pub lock_enabled: bool,
    /// `org.gnome.desktop.screensaver lock-delay`: seconds after blanking
    /// before the lock.
    pub lock_delay_seconds: u32,
    /// `org.gnome.desktop.lockdown disable-lock-screen`.
    pub lock_screen_disabled: bool,
    /// How the values were read, for the evidence.
    pub source: String,
}

/// KDE's effective `[Daemon]` values after the KConfig cascade.
#[derive(Debug, Clone, PartialEq)]
pub struct KdeLockSettings {
    pub autolock: bool,
    /// Minutes of idle before the locker starts (a Double in KConfig).
    pub timeout_minutes: f64,
    /// `Lock`: false makes every lock a grace period without end.
    pub lock: bool,
    /// Seconds after the locker starts during which activity unlocks without
    /// a password.
    pub lock_grace_seconds: i64,
    pub require_password: bool,
    /// Where each value came from: a file path, or `default`.
    pub origins: BTreeMap<String, String>,
}

impl Rule for ScreenLock {
    /// The system dconf profile and databases (where a lock is set and
    /// locked) and KDE's system-wide kscreenlockerrc. A user's own settings
    /// live in their home and are re-read at the next interval.
    fn watched_paths(&self) -> &'static [&'static str] {
        &["/etc/dconf", "/etc/xdg/kscreenlockerrc"]
    }

    type Policy = ScreenLockPolicy;
    type Facts = ScreenLockFacts;

    fn id(&self) -> &'static str {
        palisade_shared::RuleId::SCREEN_LOCK
    }

    fn policy<'p>(&self, policy: &'p Policy) -> Option<&'p Self::Policy> {
        policy.screen_lock.as_ref()
    }

    fn probe(&self, host: &Host, _policy: &Self::Policy) -> Result<ScreenLockFacts, ProbeError> {
        // A host root (tests, `--host-root`) is a Linux tree on every OS, so
        // it gets the Linux probe wherever the agent runs.
        if cfg!(target_os = "linux") || !host.is_live_system() {
            linux::probe(host)
        } else {
            native_probe(host)
        }
    }

    fn evaluate(&self, facts: &ScreenLockFacts, policy: &Self::Policy) -> Verdict {
        evaluate(facts, policy)
    }

    fn settings(&self, policy: &Self::Policy) -> RuleSettings {
        policy.settings
    }

    fn enforcer(&self) -> Enforcer<Self::Policy> {
        Enforcer::Plans(enforce::plan)
    }

    fn title(&self) -> &'static str {
        "Screen lock"
    }

    fn why_it_matters(&self) -> &'static str {
        "An unlocked, unattended screen lets anyone passing read and change patient records."
    }

    /// GNOME keeps screen blanking and automatic lock in Privacy (Screen
    /// Lock, or Screen in GNOME 46 and later, both inside `privacy`).
    fn settings_panel(&self) -> Option<&'static [&'static str]> {
        Some(&["privacy"])
    }
}

/// Decides the rule from the facts of whichever system they came from.
pub fn evaluate(facts: &ScreenLockFacts, policy: &ScreenLockPolicy) -> Verdict {
    match facts {
        ScreenLockFacts::Linux(facts) => evaluate::evaluate_linux(facts, policy),
        ScreenLockFacts::Windows(facts) => evaluate_windows::evaluate(facts, policy),
        ScreenLockFacts::MacOs(facts) => evaluate_macos::evaluate(facts, policy),
    }
}

#[cfg(windows)]
use windows::probe as native_probe;

#[cfg(target_os = "macos")]
use macos::probe as native_probe;

/// Linux never gets here (a live Linux system runs `linux::probe`); other
/// systems have no probe yet.
#[cfg(not(any(windows, target_os = "macos")))]
fn native_probe(_host: &Host) -> Result<ScreenLockFacts, ProbeError> {
    Err(super::no_probe_yet("screen lock"))
}

#[cfg(test)]
use linux::*;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_macos;
