//! Showing a [`Nudge`] on this desktop, and the buttons on it.
//!
//! The thin, OS-specific edge of the nudge helper, like a probe: it turns a
//! decided notification into the platform's call and reports the buttons
//! the person pressed, and decides nothing.
//!
//! - Linux and the BSDs: `org.freedesktop.Notifications` on the session bus,
//!   through notify-rust's zbus backend (pure Rust, no libdbus). A rule's
//!   notification carries "Open settings" (when this desktop has a panel for
//!   the rule and its program is installed) and "Snooze for a day"; the
//!   helper listens for the `ActionInvoked` signal on the connection that
//!   showed it, and a newer notification about the same rule replaces the
//!   older one on screen instead of stacking up.
//! - Windows: a toast through notify-rust (WinRT). Toasts there carry no
//!   buttons through notify-rust, so the text says how to fix.
//! - macOS: `osascript -e 'display notification …'` (a sound when overdue). notify-rust's macOS
//!   backend compiles Objective-C against the macOS SDK, which the
//!   cross-target CI cannot have; AppleScript's notification needs nothing.
//!   No buttons either.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_shared::RuleId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::nudge::schedule::{Nudge, NudgeSubject, Urgency};

/// The application name notifications carry.
pub const APP_NAME: &str = "Palisade";

/// Action keys, as sent in `Notify` and received in `ActionInvoked`.
pub const ACTION_SNOOZE: &str = "snooze";
pub const ACTION_SETTINGS: &str = "settings";

/// Button labels.
pub const LABEL_SNOOZE: &str = "Snooze for a day";
pub const LABEL_SETTINGS: &str = "Open settings";

/// How long the helper listens for a button on one notification. A day:
/// after that a notification still on screen (a server that keeps them) is
/// stale, and the next reminder brings a fresh one with its own buttons.
pub const ACTION_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A button the person pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NudgeAction {
    /// "Snooze for a day".
    Snooze(RuleId),
    /// "Open settings".
    OpenSettings(RuleId),
}

/// Why a notification could not be shown.
#[derive(Debug, thiserror::Error)]
#[error("cannot show a notification: {0}")]
pub struct ShowError(String);

/// The desktop the helper shows notifications on.
#[derive(Debug)]
pub struct Desktop {
    /// Where pressed buttons go; `None` (`--once`) means nobody listens, so
    /// no buttons are offered.
    actions: Option<mpsc::UnboundedSender<NudgeAction>>,
    /// The settings program, when installed.
    settings_program: Option<PathBuf>,
    /// The on-screen notification per rule, to replace it with the next
    /// one and to stop listening to its buttons.
    shown: HashMap<RuleId, Shown>,
}

#[derive(Debug)]
struct Shown {
    #[cfg_attr(not(all(unix, not(target_os = "macos"))), allow(dead_code))]
    id: u32,
    listener: Option<JoinHandle<()>>,
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for shown in self.shown.values_mut() {
            if let Some(listener) = shown.listener.take() {
                listener.abort();
            }
        }
    }
}

impl Desktop {
    /// A desktop whose buttons are sent to `actions`, or one without buttons.
    /// Looks for the settings program on `PATH` once, now.
    pub fn new(actions: Option<mpsc::UnboundedSender<NudgeAction>>) -> Self {
        let settings_program = SETTINGS_PROGRAM
            .and_then(|program| find_program(program, std::env::var_os("PATH").as_deref()));
        tracing::debug!(program = ?settings_program, "settings program");
        Self {
            actions,
            settings_program,
            shown: HashMap::new(),
        }
    }

    /// The buttons a notification offers, as (key, label) pairs.
    pub fn buttons(&self, nudge: &Nudge) -> Vec<(&'static str, &'static str)> {
        let NudgeSubject::Rule(rule) = &nudge.subject else {
            return Vec::new();
        };
        if self.actions.is_none() || !cfg!(all(unix, not(target_os = "macos"))) {
            return Vec::new();
        }
        let mut buttons = Vec::new();
        if self.settings_program.is_some() && settings_panel(rule).is_some() {
            buttons.push((ACTION_SETTINGS, LABEL_SETTINGS));
        }
        buttons.push((ACTION_SNOOZE, LABEL_SNOOZE));
        buttons
    }

    /// Shows one notification; returns once the desktop took it.
    pub async fn show(&mut self, nudge: &Nudge) -> Result<(), ShowError> {
        let buttons = self.buttons(nudge);
        platform::show(self, nudge, &buttons).await
    }

    /// Opens the settings panel for `rule`, if there is one; does not wait
    /// for it to close.
    pub fn open_settings(&self, rule: &RuleId) {
        let (Some(program), Some(panel)) = (&self.settings_program, settings_panel(rule)) else {
            tracing::debug!(rule = %rule, "no settings panel to open");
            return;
        };
        let spawned = tokio::process::Command::new(program)
            .args(panel)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match spawned {
            Ok(mut child) => {
                tracing::info!(rule = %rule, program = %program.display(), "opened settings");
                // Reap it when it exits, so it does not linger as a zombie.
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
            Err(err) => tracing::warn!(
                rule = %rule,
                program = %program.display(),
                error = %err,
                "cannot open settings"
            ),
        }
    }
}

/// The program that opens a settings panel, on desktops where the helper
/// offers "Open settings".
const SETTINGS_PROGRAM: Option<&str> = if cfg!(all(unix, not(target_os = "macos"))) {
    Some("gnome-control-center")
} else {
    None
};

/// The arguments that open the panel where `rule` is fixed, if any: the
/// rule's own, from the registry (GNOME's panel names). None for a rule this
/// helper does not know.
pub fn settings_panel(rule: &RuleId) -> Option<&'static [&'static str]> {
    crate::checks::find_rule(rule.as_str())?.settings_panel()
}

/// The first executable file called `name` in a `PATH`-style list.
pub fn find_program(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
mod platform {
    use notify_rust::{ActionResponse, Notification};

    use super::*;

    pub(super) async fn show(
        desktop: &mut Desktop,
        nudge: &Nudge,
        buttons: &[(&str, &str)],
    ) -> Result<(), ShowError> {
        let mut notification = Notification::new();
        notification
            .appname(APP_NAME)
            .summary(&nudge.title)
            .body(&nudge.body)
            .urgency(match nudge.urgency {
                Urgency::Normal => notify_rust::Urgency::Normal,
                Urgency::Critical => notify_rust::Urgency::Critical,
            });
        for (key, label) in buttons {
            notification.action(key, label);
        }
        let rule = match &nudge.subject {
            NudgeSubject::Rule(rule) => Some(rule.clone()),
            NudgeSubject::Event(_) => None,
        };
        if let Some(previous) = rule.as_ref().and_then(|rule| desktop.shown.get(rule)) {
            notification.id(previous.id);
        }
        let handle = notification
            .show_async()
            .await
            .map_err(|err| ShowError(err.to_string()))?;
        let Some(rule) = rule else {
            return Ok(());
        };
        let id = handle.id();
        let listener = match (&desktop.actions, buttons.is_empty()) {
            (Some(actions), false) => {
                let actions = actions.clone();
                let rule = rule.clone();
                Some(tokio::spawn(async move {
                    let wait = handle.wait_for_action_async(|response| {
                        if let ActionResponse::Custom(key) = response {
                            let action = match *key {
                                ACTION_SNOOZE => Some(NudgeAction::Snooze(rule.clone())),
                                ACTION_SETTINGS => Some(NudgeAction::OpenSettings(rule.clone())),
                                _ => None,
                            };
                            if let Some(action) = action {
                                let _ = actions.send(action);
                            }
                        }
                    });
                    let _ = tokio::time::timeout(ACTION_WAIT, wait).await;
                }))
            }
            _ => None,
        };
        let replaced = desktop.shown.insert(rule, Shown { id, listener });
        if let Some(listener) = replaced.and_then(|shown| shown.listener) {
            listener.abort();
        }
        Ok(())
    }
}

#[cfg(windows)]
mod platform {
    use notify_rust::Notification;

    use super::*;

    pub(super) async fn show(
        _desktop: &mut Desktop,
        nudge: &Nudge,
        _buttons: &[(&str, &str)],
    ) -> Result<(), ShowError> {
        let mut notification = Notification::new();
        notification
            .appname(APP_NAME)
            .summary(&nudge.title)
            .body(&nudge.body)
            .urgency(match nudge.urgency {
                Urgency::Normal => notify_rust::Urgency::Normal,
                Urgency::Critical => notify_rust::Urgency::Critical,
            });
        tokio::task::spawn_blocking(move || notification.show())
            .await
            .map_err(|err| ShowError(err.to_string()))?
            .map_err(|err| ShowError(err.to_string()))
    }
}

#[cfg(target_os = "macos")]
mod platform {
    use super::*;

    /// How long `osascript` may take to hand the notification over.
    const OSASCRIPT_TIMEOUT: Duration = Duration::from_secs(10);

    pub(super) async fn show(
        _desktop: &mut Desktop,
        nudge: &Nudge,
        _buttons: &[(&str, &str)],
    ) -> Result<(), ShowError> {
        // Notification Center has no urgency; an overdue reminder at least
        // makes a sound.
        let sound = match nudge.urgency {
            Urgency::Normal => "",
            Urgency::Critical => " sound name \"Funk\"",
        };
        let script = format!(
            "display notification {} with title {}{sound}",
            applescript_string(&nudge.body),
            applescript_string(&format!("{APP_NAME}: {}", nudge.title)),
        );
        let mut child = tokio::process::Command::new("/usr/bin/osascript")
            .arg("-e")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| ShowError(format!("cannot run osascript: {err}")))?;
        match tokio::time::timeout(OSASCRIPT_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(ShowError(format!("osascript exited with {status}"))),
            Ok(Err(err)) => Err(ShowError(format!("osascript: {err}"))),
            Err(_) => Err(ShowError("osascript did not finish in 10 s".to_owned())),
        }
    }
}

#[cfg(not(any(unix, windows)))]
mod platform {
    use super::*;

    pub(super) async fn show(
        _desktop: &mut Desktop,
        _nudge: &Nudge,
        _buttons: &[(&str, &str)],
    ) -> Result<(), ShowError> {
        Err(ShowError(
            "no notification backend on this system".to_owned(),
        ))
    }
}

/// `text` as an AppleScript string literal.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
fn applescript_string(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applescript_strings_are_escaped() {
        assert_eq!(applescript_string(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }

    #[test]
    fn only_screen_lock_and_password_have_panels() {
        assert_eq!(
            settings_panel(&RuleId::new("screen_lock")),
            Some(&["privacy"][..])
        );
        assert_eq!(
            settings_panel(&RuleId::new("password_policy")),
            Some(&["users"][..])
        );
        assert_eq!(settings_panel(&RuleId::new("disk_encryption")), None);
        assert_eq!(settings_panel(&RuleId::new("usb_storage")), None);
    }

    #[cfg(unix)]
    #[test]
    fn programs_are_found_only_when_executable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("gnome-control-center");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = std::env::join_paths(["relative", dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(find_program("gnome-control-center", Some(&path)), None);
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_program("gnome-control-center", Some(&path)),
            Some(program)
        );
        assert_eq!(find_program("gnome-control-center", None), None);
    }
}
