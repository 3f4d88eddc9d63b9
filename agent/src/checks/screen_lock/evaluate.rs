//! The evaluator of `screen_lock`: from each graphical session's lock
//! settings (or the absence of sessions) to a verdict and its fix text. Pure
//! (no I/O, no clock), so it compiles and is tested on every OS.

use palisade_shared::policy::ScreenLockPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::parse::{DesktopFamily, KDE_DEFAULT_LOCK_GRACE_SECONDS, desktop_family};
use super::{
    DisplayServerProcess, GnomeLockSettings, KdeLockSettings, LinuxLockFacts, LockSettings,
    SessionFacts,
};
use crate::checks::Verdict;

/// How one session's lock behaves.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SessionOutcome {
    /// The screen locks this many seconds after the last input.
    LocksAfter(u64),
    /// The screen never locks on its own; the reason names the setting.
    NeverLocks(String),
    /// The settings could not be read.
    Unknown(String),
}

pub(super) fn session_outcome(settings: &Result<LockSettings, String>) -> SessionOutcome {
    match settings {
        Err(reason) => SessionOutcome::Unknown(reason.clone()),
        Ok(LockSettings::Gnome(gnome)) => gnome_outcome(gnome),
        Ok(LockSettings::Kde(kde)) => kde_outcome(kde),
    }
}

/// gnome-shell blanks the screen after `idle-delay` and locks `lock-delay`
/// later. (It also waits for a 10 s fade, `STANDARD_FADE_TIME` in
/// screenShield.js, when lock-delay is shorter; the policy's definition,
/// idle delay plus lock delay, leaves that out, as GNOME's Settings does.)
pub(super) fn gnome_outcome(gnome: &GnomeLockSettings) -> SessionOutcome {
    if gnome.lock_screen_disabled {
        SessionOutcome::NeverLocks(
            "org.gnome.desktop.lockdown disable-lock-screen is true, so GNOME refuses to lock"
                .into(),
        )
    } else if gnome.idle_delay_seconds == 0 {
        SessionOutcome::NeverLocks(
            "idle-delay is 0, so the session never goes idle and the screen never locks".into(),
        )
    } else if !gnome.lock_enabled {
        SessionOutcome::NeverLocks(
            "lock-enabled is false, so the screen blanks but does not lock".into(),
        )
    } else {
        SessionOutcome::LocksAfter(
            u64::from(gnome.idle_delay_seconds) + u64::from(gnome.lock_delay_seconds),
        )
    }
}

/// kscreenlocker starts the locker after `Timeout` minutes when `Autolock`
/// is on, and asks for the password once `LockGrace` seconds have passed.
/// `Lock=false`, `RequirePassword=false` or a negative grace make the locker
/// dismissable without a password for ever (ksldapp.cpp: "grace time lasts
/// forever", `--nolock`).
pub(super) fn kde_outcome(kde: &KdeLockSettings) -> SessionOutcome {
    if !kde.autolock {
        SessionOutcome::NeverLocks("Autolock is false, so the screen never locks on its own".into())
    } else if kde.timeout_minutes <= 0.0 {
        SessionOutcome::NeverLocks("Timeout is 0, so the screen never locks on its own".into())
    } else if !kde.lock {
        SessionOutcome::NeverLocks(
            "Lock is false, so the locker can be dismissed without a password".into(),
        )
    } else if !kde.require_password {
        SessionOutcome::NeverLocks(
            "RequirePassword is false, so the locker can be dismissed without a password".into(),
        )
    } else if kde.lock_grace_seconds < 0 {
        SessionOutcome::NeverLocks(
            "LockGrace is negative, so the password grace period never ends".into(),
        )
    } else {
        // `as` saturates for absurdly large values, which still fail.
        let timeout_seconds = (kde.timeout_minutes * 60.0).ceil() as u64;
        let grace_seconds = u64::try_from(kde.lock_grace_seconds).unwrap_or(0);
        SessionOutcome::LocksAfter(timeout_seconds.saturating_add(grace_seconds))
    }
}

/// Linux: every graphical session must lock in time.
pub(super) fn evaluate_linux(facts: &LinuxLockFacts, policy: &ScreenLockPolicy) -> Verdict {
    let max_seconds = u64::from(policy.max_idle_seconds);
    if facts.sessions.is_empty() {
        return evaluate_without_sessions(facts, policy);
    }

    let judged: Vec<(&SessionFacts, SessionOutcome)> = facts
        .sessions
        .iter()
        .map(|session| (session, session_outcome(&session.settings)))
        .collect();
    let evidence: Vec<Value> = judged
        .iter()
        .map(|(session, outcome)| session_evidence(session, outcome, max_seconds))
        .collect();

    let user_of = |session: &SessionFacts| {
        session
            .session
            .user
            .clone()
            .unwrap_or_else(|| format!("session {}", session.session.id))
    };
    let mut failures = Vec::new();
    let mut unknowns = Vec::new();
    let mut passes = Vec::new();
    let mut fixes: Vec<String> = Vec::new();
    for (session, outcome) in &judged {
        let user = user_of(session);
        match outcome {
            SessionOutcome::LocksAfter(seconds) if *seconds <= max_seconds => {
                passes.push(format!("after {seconds} s idle for {user}"));
            }
            SessionOutcome::LocksAfter(seconds) => {
                failures.push(format!("screen locks after {seconds} s idle for {user}"));
                push_unique(&mut fixes, fix_for(&session.settings, policy));
            }
            SessionOutcome::NeverLocks(reason) => {
                failures.push(format!("screen never locks for {user}: {reason}"));
                push_unique(&mut fixes, fix_for(&session.settings, policy));
            }
            SessionOutcome::Unknown(reason) => {
                unknowns.push(format!("{user} (session {}): {reason}", session.session.id));
            }
        }
    }

    let verdict = if !failures.is_empty() {
        Verdict::new(
            CheckStatus::Fail,
            format!("{}; the policy allows {max_seconds} s", failures.join("; ")),
        )
        .with_fix(fixes.join(" "))
    } else if !unknowns.is_empty() {
        Verdict::new(
            CheckStatus::Unknown,
            format!(
                "could not read the screen lock settings of {}",
                unknowns.join("; ")
            ),
        )
    } else {
        Verdict::new(
            CheckStatus::Pass,
            format!(
                "screen locks {}; the policy allows {max_seconds} s",
                passes.join(", ")
            ),
        )
    };
    verdict
        .with_evidence("sessions", evidence)
        .with_evidence("max_idle_seconds", policy.max_idle_seconds)
}

pub(super) fn evaluate_without_sessions(
    facts: &LinuxLockFacts,
    policy: &ScreenLockPolicy,
) -> Verdict {
    // A login screen's display server belongs to the greeter, whose lock is
    // not a user's business; any other is a screen someone may be using.
    let unaccounted: Vec<&DisplayServerProcess> = facts
        .display_servers
        .iter()
        .filter(|process| process.session_class.as_deref() != Some("greeter"))
        .collect();
    let display_server_evidence: Vec<Value> = facts
        .display_servers
        .iter()
        .map(|process| {
            json!({
                "pid": process.pid,
                "name": process.name,
                "session": process.session_id,
                "session_class": process.session_class,
            })
        })
        .collect();
    let verdict = if unaccounted.is_empty() {
        Verdict::new(CheckStatus::NotApplicable, "no graphical session")
    } else {
        let names: Vec<String> = unaccounted
            .iter()
            .map(|process| match &process.session_id {
                Some(id) => format!("{}, pid {}, in session {id}", process.name, process.pid),
                None => format!("{}, pid {}", process.name, process.pid),
            })
            .collect();
        let where_logind = match facts.logind_session_count {
            None => "there is no logind session directory",
            Some(_) => "logind lists no graphical user session",
        };
        Verdict::new(
            CheckStatus::Unknown,
            format!(
                "a display server runs ({}) but {where_logind}, so whose screen it is cannot \
                 be told",
                names.join("; ")
            ),
        )
    };
    verdict
        .with_evidence(
            "logind_sessions",
            facts.logind_session_count.map_or(Value::Null, Value::from),
        )
        .with_evidence("display_servers", display_server_evidence)
        .with_evidence("max_idle_seconds", policy.max_idle_seconds)
}

pub(super) fn session_evidence(
    session: &SessionFacts,
    outcome: &SessionOutcome,
    max_seconds: u64,
) -> Value {
    let logind = &session.session;
    let (status, effective_seconds, detail) = match outcome {
        SessionOutcome::LocksAfter(seconds) if *seconds <= max_seconds => {
            ("locks_in_time", Some(*seconds), String::new())
        }
        SessionOutcome::LocksAfter(seconds) => ("locks_too_late", Some(*seconds), String::new()),
        SessionOutcome::NeverLocks(reason) => ("never_locks", None, reason.clone()),
        SessionOutcome::Unknown(reason) => ("unknown", None, reason.clone()),
    };
    let (values, source) = match &session.settings {
        Ok(LockSettings::Gnome(gnome)) => (
            json!({
                "idle-delay": gnome.idle_delay_seconds,
                "lock-enabled": gnome.lock_enabled,
                "lock-delay": gnome.lock_delay_seconds,
                "disable-lock-screen": gnome.lock_screen_disabled,
            }),
            Value::from(gnome.source.clone()),
        ),
        Ok(LockSettings::Kde(kde)) => (
            json!({
                "Autolock": kde.autolock,
                "Timeout": kde.timeout_minutes,
                "Lock": kde.lock,
                "LockGrace": kde.lock_grace_seconds,
                "RequirePassword": kde.require_password,
            }),
            json!(kde.origins),
        ),
        Err(_) => (Value::Null, Value::Null),
    };
    let family = match &session.settings {
        Ok(LockSettings::Gnome(_)) => "gnome",
        Ok(LockSettings::Kde(_)) => "kde",
        Err(_) => match desktop_family(logind.desktop.as_deref().unwrap_or_default()) {
            DesktopFamily::Gnome => "gnome",
            DesktopFamily::Kde => "kde",
            DesktopFamily::Unsupported => "unsupported",
        },
    };
    json!({
        "session": logind.id,
        "user": logind.user,
        "uid": logind.uid,
        "type": logind.session_type,
        "desktop": logind.desktop,
        "desktop_family": family,
        "seat": logind.seat,
        "remote": logind.remote,
        "active": logind.active,
        "status": status,
        "effective_seconds": effective_seconds,
        "detail": detail,
        "values": values,
        "source": source,
    })
}

/// The fix for one failing session, in the words of its desktop's settings.
pub(super) fn fix_for(
    settings: &Result<LockSettings, String>,
    policy: &ScreenLockPolicy,
) -> String {
    let max = policy.max_idle_seconds;
    match settings {
        Ok(LockSettings::Gnome(gnome)) if gnome.lock_screen_disabled => {
            "GNOME's lock screen is switched off for everyone by \
             org.gnome.desktop.lockdown disable-lock-screen: ask IT to remove that setting \
             from /etc/dconf."
                .to_owned()
        }
        Ok(LockSettings::Gnome(_)) => format!(
            "Settings > Privacy > Screen Lock: set Blank Screen Delay to {} or less, turn \
             Automatic Screen Lock on and set Automatic Screen Lock Delay to \"Screen Turns \
             Off\". If these cannot be changed, IT has locked them in /etc/dconf: ask them.",
            minutes_phrase(max)
        ),
        Ok(LockSettings::Kde(_)) => format!(
            "System Settings > Screen Locking: Lock screen automatically after {}, keep \
             \"Allow unlocking without password for\" at {KDE_DEFAULT_LOCK_GRACE_SECONDS} \
             seconds or less, and leave the password required.",
            // KDE adds its grace seconds to the timeout.
            minutes_phrase(
                max.saturating_sub(u32::try_from(KDE_DEFAULT_LOCK_GRACE_SECONDS).unwrap_or(0))
            )
        ),
        Err(_) => String::new(),
    }
}

/// Whole minutes that fit within `seconds`, as a phrase.
pub(super) fn minutes_phrase(seconds: u32) -> String {
    match seconds / 60 {
        0 => format!("the shortest time offered (the policy allows only {seconds} s)"),
        1 => "1 minute".to_owned(),
        minutes => format!("{minutes} minutes"),
    }
}

pub(super) fn push_unique(list: &mut Vec<String>, item: String) {
    if !item.is_empty() && !list.contains(&item) {
        list.push(item);
    }
}
