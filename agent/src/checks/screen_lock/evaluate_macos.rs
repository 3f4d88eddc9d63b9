//! The macOS evaluator of `screen_lock`: from the console user's values to
//! a verdict. Pure, so it compiles and is tested on every OS.
//!
//! A Mac locks when the screen saver starts (after `idleTime` seconds) and
//! then asks for the password after the "Require password" delay, which
//! `sysadminctl -screenLock status` reports. A configuration profile's
//! `com.apple.screensaver` values win over the user's (the user's managed
//! file over the device's, key by key), as managed preferences apply.
//!
//! What cannot be told is `unknown`, never `pass`: an unset `idleTime`
//! (macOS' default is not documented where this could cite it), an
//! `idleTime` of 0 (the screen saver never starts; display sleep, which
//! also locks, is not read yet), a tool that failed, an unreadable profile
//! file. No one at the console (the login window) is `not_applicable`, as
//! the Linux rule does for no graphical session.

use palisade_shared::policy::ScreenLockPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::evaluate::SessionOutcome;
use super::{MacLockFacts, MacScreenLockDelay, MacUserLockFacts, ManagedScreenSaver, RegistryRead};
use crate::checks::Verdict;

/// Decides the rule from the macOS facts.
pub fn evaluate(facts: &MacLockFacts, policy: &ScreenLockPolicy) -> Verdict {
    let max = u64::from(policy.max_idle_seconds);
    let user = match facts {
        MacLockFacts::NoConsoleUser(why) => {
            return Verdict::new(
                CheckStatus::NotApplicable,
                format!("no one is logged in at the console: {why}"),
            )
            .with_evidence("max_idle_seconds", policy.max_idle_seconds);
        }
        MacLockFacts::ConsoleUnreadable(why) => {
            return Verdict::new(
                CheckStatus::Unknown,
                format!("cannot tell who is at the console: {why}"),
            )
            .with_evidence("max_idle_seconds", policy.max_idle_seconds);
        }
        MacLockFacts::ConsoleUser(user) => user,
    };
    let decided = user_outcome(user);
    let verdict = match &decided.outcome {
        SessionOutcome::LocksAfter(seconds) if *seconds <= max => Verdict::new(
            CheckStatus::Pass,
            format!(
                "the screen locks after {seconds} s idle for {}; the policy allows {max} s",
                user.user
            ),
        ),
        SessionOutcome::LocksAfter(seconds) => Verdict::new(
            CheckStatus::Fail,
            format!(
                "the screen locks after {seconds} s idle for {}; the policy allows {max} s",
                user.user
            ),
        )
        .with_fix(fix_text(max, decided.from_profile)),
        SessionOutcome::NeverLocks(reason) => Verdict::new(
            CheckStatus::Fail,
            format!("the screen never locks for {}: {reason}", user.user),
        )
        .with_fix(fix_text(max, decided.from_profile)),
        SessionOutcome::Unknown(reason) => Verdict::new(
            CheckStatus::Unknown,
            format!(
                "could not tell when the screen locks for {}: {reason}",
                user.user
            ),
        ),
    };
    verdict
        .with_evidence(
            "console_user",
            json!({ "name": user.user, "uid": user.uid }),
        )
        .with_evidence(
            "sysadminctl_screen_lock",
            screen_lock_evidence(&user.screen_lock),
        )
        .with_evidence("idle_time", user.idle_time.evidence())
        .with_evidence("managed_user", managed_evidence(&user.managed_user))
        .with_evidence("managed_device", managed_evidence(&user.managed_device))
        .with_evidence("max_idle_seconds", policy.max_idle_seconds)
}

/// The outcome and whether a profile set a value that decided it (the fix
/// is then IT's, not the user's).
struct Decided {
    outcome: SessionOutcome,
    from_profile: bool,
}

/// The first managed file, user's then device's, that sets the key.
fn managed_value<T: Copy>(
    user: &MacUserLockFacts,
    pick: impl Fn(&ManagedScreenSaver) -> Option<T>,
) -> Result<Option<T>, String> {
    for (file, read) in [
        ("user", &user.managed_user),
        ("device", &user.managed_device),
    ] {
        match read {
            RegistryRead::Value(managed) => {
                if let Some(value) = pick(managed) {
                    return Ok(Some(value));
                }
            }
            RegistryRead::Absent => {}
            RegistryRead::Unreadable(why) => {
                return Err(format!("cannot read the {file} managed preferences: {why}"));
            }
        }
    }
    Ok(None)
}

fn user_outcome(user: &MacUserLockFacts) -> Decided {
    let unknown = |reason: String, from_profile| Decided {
        outcome: SessionOutcome::Unknown(reason),
        from_profile,
    };
    let never = |reason: &str, from_profile| Decided {
        outcome: SessionOutcome::NeverLocks(reason.to_owned()),
        from_profile,
    };
    let (managed_idle, managed_ask, managed_delay) = match (
        managed_value(user, |m| m.idle_time),
        managed_value(user, |m| m.ask_for_password),
        managed_value(user, |m| m.ask_for_password_delay),
    ) {
        (Ok(idle), Ok(ask), Ok(delay)) => (idle, ask, delay),
        (Err(why), _, _) | (_, Err(why), _) | (_, _, Err(why)) => return unknown(why, false),
    };
    let (idle, idle_from_profile) = match (managed_idle, &user.idle_time) {
        (Some(idle), _) => (idle, true),
        (None, RegistryRead::Value(idle)) => (*idle, false),
        (None, RegistryRead::Absent) => {
            return unknown(
                "idleTime is not set and macOS' default is not documented".into(),
                false,
            );
        }
        (None, RegistryRead::Unreadable(why)) => {
            return unknown(format!("cannot read idleTime: {why}"), false);
        }
    };
    if idle <= 0 {
        return unknown(
            format!(
                "idleTime is {idle}, so the screen saver never starts; display sleep, which \
                 also locks, is not read yet"
            ),
            idle_from_profile,
        );
    }
    if managed_ask == Some(false) {
        return never(
            "a configuration profile sets askForPassword to 0, so the screen saver ends \
             without the password",
            true,
        );
    }
    let (delay, delay_from_profile) = match (managed_delay, &user.screen_lock) {
        (Some(delay), _) if delay < 0.0 => {
            return unknown(
                format!("the profile's askForPasswordDelay is {delay}"),
                true,
            );
        }
        (Some(delay), _) => (delay.ceil() as u64, true),
        (None, Ok(MacScreenLockDelay::Immediate)) => (0, false),
        (None, Ok(MacScreenLockDelay::Seconds(seconds))) => (*seconds, false),
        (None, Ok(MacScreenLockDelay::Off)) if managed_ask == Some(true) => {
            return unknown(
                "a profile sets askForPassword to 1 but sysadminctl reports the screen lock off"
                    .into(),
                true,
            );
        }
        (None, Ok(MacScreenLockDelay::Off)) => {
            return never(
                "\"Require password after screen saver begins or display is turned off\" is \
                 off (sysadminctl: screenLock is off)",
                false,
            );
        }
        (None, Err(why)) => {
            return unknown(format!("sysadminctl -screenLock status: {why}"), false);
        }
    };
    Decided {
        outcome: SessionOutcome::LocksAfter(idle.unsigned_abs() + delay),
        from_profile: idle_from_profile || delay_from_profile,
    }
}

fn fix_text(max: u64, from_profile: bool) -> String {
    let minutes = (max / 60).max(1);
    if from_profile {
        return format!(
            "A configuration profile sets the screen saver (com.apple.screensaver): ask IT to \
             set idleTime to {max} seconds or less, askForPassword to 1 and \
             askForPasswordDelay to 0 in the profile."
        );
    }
    format!(
        "Open System Settings > Lock Screen: set \"Start Screen Saver when inactive\" to \
         {minutes} minutes or less, and \"Require password after screen saver begins or \
         display is turned off\" to \"Immediately\". (macOS 12 and earlier: System Preferences \
         > Desktop & Screen Saver, and Security & Privacy > General.)"
    )
}

fn screen_lock_evidence(read: &Result<MacScreenLockDelay, String>) -> Value {
    match read {
        Ok(MacScreenLockDelay::Immediate) => json!("immediate"),
        Ok(MacScreenLockDelay::Seconds(seconds)) => json!({ "delay_seconds": seconds }),
        Ok(MacScreenLockDelay::Off) => json!("off"),
        Err(why) => json!({ "unreadable": why }),
    }
}

fn managed_evidence(read: &RegistryRead<ManagedScreenSaver>) -> Value {
    match read {
        RegistryRead::Value(managed) => json!({
            "idleTime": managed.idle_time,
            "askForPassword": managed.ask_for_password,
            "askForPasswordDelay": managed.ask_for_password_delay,
        }),
        RegistryRead::Absent => json!("absent"),
        RegistryRead::Unreadable(why) => json!({ "unreadable": why }),
    }
}
