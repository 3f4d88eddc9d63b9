//! The Windows evaluator of `screen_lock`: from the machine inactivity limit
//! and each logged-on user's screen saver values to a verdict. Pure, so it
//! compiles and is tested on every OS.
//!
//! Windows locks a session in two ways, and the earlier one decides:
//! - the machine inactivity limit (`InactivityTimeoutSecs`), for every
//!   session at once;
//! - the user's screen saver, when it is on, one is chosen, it asks for the
//!   password on resume ("secure") and its wait is not 0. Each of its values
//!   comes from the Group Policy key when set there, else from the user's
//!   own key, as Windows applies them.
//!
//! A value the probe could not read, or one that is not set and whose
//! default Windows does not document, is `unknown` for that user unless the
//! other way already locks in time: never a guessed pass.

use palisade_shared::policy::ScreenLockPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::evaluate::SessionOutcome;
use super::{RegistryRead, ScreenSaverValues, WindowsLockFacts, WindowsUserScreenSaver};
use crate::checks::Verdict;

/// The one value of four that applies, and where it came from.
struct Effective<'a> {
    read: &'a RegistryRead<String>,
    from: &'static str,
}

fn effective<'a>(
    policy: &'a RegistryRead<String>,
    user: &'a RegistryRead<String>,
) -> Effective<'a> {
    match policy {
        RegistryRead::Absent => Effective {
            read: user,
            from: "user",
        },
        _ => Effective {
            read: policy,
            from: "policy",
        },
    }
}

/// When this user's screen saver locks the session, if it does.
pub(super) fn screen_saver_outcome(user: &WindowsUserScreenSaver) -> SessionOutcome {
    let ScreenSaverValues {
        active,
        secure,
        timeout,
        executable,
    } = &user.policy;
    let own = &user.user;
    let named = [
        ("ScreenSaveActive", effective(active, &own.active)),
        ("ScreenSaverIsSecure", effective(secure, &own.secure)),
        ("ScreenSaveTimeOut", effective(timeout, &own.timeout)),
        ("SCRNSAVE.EXE", effective(executable, &own.executable)),
    ];
    let mut values: Vec<Option<&str>> = Vec::with_capacity(4);
    for (name, value) in &named {
        match value.read {
            RegistryRead::Unreadable(reason) => {
                return SessionOutcome::Unknown(format!(
                    "cannot read {name} ({} key): {reason}",
                    value.from
                ));
            }
            RegistryRead::Value(text) => values.push(Some(text.trim())),
            RegistryRead::Absent => values.push(None),
        }
    }
    let [active, secure, timeout, executable] = values[..] else {
        return SessionOutcome::Unknown("screen saver values missing".into());
    };
    match executable {
        None | Some("") => {
            return SessionOutcome::NeverLocks(
                "no screen saver is chosen (SCRNSAVE.EXE is not set)".into(),
            );
        }
        Some(_) => {}
    }
    match active {
        Some("1") => {}
        Some("0") => {
            return SessionOutcome::NeverLocks("ScreenSaveActive is 0 (screen saver off)".into());
        }
        Some(other) => {
            return SessionOutcome::Unknown(format!("ScreenSaveActive is {other:?}, not 0 or 1"));
        }
        None => return SessionOutcome::Unknown("ScreenSaveActive is not set".into()),
    }
    match secure {
        Some("1") => {}
        Some("0") => {
            return SessionOutcome::NeverLocks(
                "ScreenSaverIsSecure is 0, so the screen saver ends without the password".into(),
            );
        }
        Some(other) => {
            return SessionOutcome::Unknown(format!(
                "ScreenSaverIsSecure is {other:?}, not 0 or 1"
            ));
        }
        None => return SessionOutcome::Unknown("ScreenSaverIsSecure is not set".into()),
    }
    match timeout.map(str::parse::<u64>) {
        Some(Ok(0)) => SessionOutcome::NeverLocks("ScreenSaveTimeOut is 0".into()),
        Some(Ok(seconds)) => SessionOutcome::LocksAfter(seconds),
        Some(Err(_)) => SessionOutcome::Unknown(format!(
            "ScreenSaveTimeOut is {:?}, not a number of seconds",
            timeout.unwrap_or_default()
        )),
        None => SessionOutcome::Unknown("ScreenSaveTimeOut is not set".into()),
    }
}

/// The machine inactivity limit as a lock: `None` when there is none.
fn machine_outcome(limit: &RegistryRead<u32>) -> Option<SessionOutcome> {
    match limit {
        RegistryRead::Value(0) | RegistryRead::Absent => None,
        RegistryRead::Value(seconds) => Some(SessionOutcome::LocksAfter(u64::from(*seconds))),
        RegistryRead::Unreadable(reason) => Some(SessionOutcome::Unknown(format!(
            "cannot read InactivityTimeoutSecs: {reason}"
        ))),
    }
}

/// The earlier of the two locks. An unknown on one side is decided by the
/// other only when that one already locks within `max`.
fn earlier(
    machine: Option<&SessionOutcome>,
    screen_saver: SessionOutcome,
    max: u64,
) -> SessionOutcome {
    use SessionOutcome::{LocksAfter, NeverLocks, Unknown};
    let Some(machine) = machine else {
        return screen_saver;
    };
    match (machine, screen_saver) {
        (LocksAfter(m), LocksAfter(s)) => LocksAfter((*m).min(s)),
        (LocksAfter(m), NeverLocks(_)) => LocksAfter(*m),
        (Unknown(_), LocksAfter(s)) if s <= max => LocksAfter(s),
        (Unknown(reason), _) => Unknown(reason.clone()),
        (LocksAfter(m), Unknown(reason)) if *m > max => Unknown(reason),
        (LocksAfter(m), Unknown(_)) => LocksAfter(*m),
        // machine_outcome never says "never": no limit is `None`.
        (NeverLocks(_), saver) => saver,
    }
}

fn fix_text(max: u64) -> String {
    format!(
        "Set \"Interactive logon: Machine inactivity limit\" to {max} seconds or less (Group \
         Policy: Computer Configuration > Windows Settings > Security Settings > Local \
         Policies > Security Options), or ask IT to let Palisade enforce it. Until then, \
         Settings > Personalisation > Lock screen > Screen saver: choose one, tick \"On resume, \
         display logon screen\" and set Wait to {} minutes or less.",
        (max / 60).max(1)
    )
}

fn outcome_evidence(outcome: &SessionOutcome) -> Value {
    match outcome {
        SessionOutcome::LocksAfter(seconds) => json!({ "locks_after_seconds": seconds }),
        SessionOutcome::NeverLocks(reason) => json!({ "never_locks": reason }),
        SessionOutcome::Unknown(reason) => json!({ "unknown": reason }),
    }
}

fn values_evidence(values: &ScreenSaverValues) -> Value {
    json!({
        "ScreenSaveActive": values.active.evidence(),
        "ScreenSaverIsSecure": values.secure.evidence(),
        "ScreenSaveTimeOut": values.timeout.evidence(),
        "SCRNSAVE.EXE": values.executable.evidence(),
    })
}

/// Decides the rule from the Windows facts.
pub fn evaluate(facts: &WindowsLockFacts, policy: &ScreenLockPolicy) -> Verdict {
    let max = u64::from(policy.max_idle_seconds);
    let machine = machine_outcome(&facts.inactivity_limit);
    let base = |verdict: Verdict, users: Vec<Value>| {
        verdict
            .with_evidence("inactivity_timeout_secs", facts.inactivity_limit.evidence())
            .with_evidence("users", users)
            .with_evidence("max_idle_seconds", policy.max_idle_seconds)
    };
    if let Some(SessionOutcome::LocksAfter(seconds)) = machine {
        if seconds <= max {
            let verdict = Verdict::new(
                CheckStatus::Pass,
                format!(
                    "Windows locks every session after {seconds} s idle (machine inactivity \
                     limit); the policy allows {max} s"
                ),
            );
            return base(verdict, Vec::new());
        }
    }
    if facts.users.is_empty() {
        let verdict = Verdict::new(CheckStatus::NotApplicable, "no one is logged on");
        return base(verdict, Vec::new());
    }
    let mut failures = Vec::new();
    let mut unknowns = Vec::new();
    let mut passes = Vec::new();
    let mut evidence = Vec::new();
    for user in &facts.users {
        let saver = screen_saver_outcome(user);
        let outcome = earlier(machine.as_ref(), saver.clone(), max);
        evidence.push(json!({
            "sid": user.sid,
            "policy": values_evidence(&user.policy),
            "user": values_evidence(&user.user),
            "screen_saver": outcome_evidence(&saver),
            "outcome": outcome_evidence(&outcome),
        }));
        match outcome {
            SessionOutcome::LocksAfter(seconds) if seconds <= max => {
                passes.push(format!("after {seconds} s idle for {}", user.sid));
            }
            SessionOutcome::LocksAfter(seconds) => {
                failures.push(format!(
                    "screen locks after {seconds} s idle for {}",
                    user.sid
                ));
            }
            SessionOutcome::NeverLocks(reason) => {
                failures.push(format!("screen never locks for {}: {reason}", user.sid));
            }
            SessionOutcome::Unknown(reason) => unknowns.push(format!("{}: {reason}", user.sid)),
        }
    }
    let verdict = if !failures.is_empty() {
        Verdict::new(
            CheckStatus::Fail,
            format!("{}; the policy allows {max} s", failures.join("; ")),
        )
        .with_fix(fix_text(max))
    } else if !unknowns.is_empty() {
        Verdict::new(
            CheckStatus::Unknown,
            format!(
                "could not tell when the screen locks for {}",
                unknowns.join("; ")
            ),
        )
    } else {
        Verdict::new(
            CheckStatus::Pass,
            format!(
                "screen locks {}; the policy allows {max} s",
                passes.join(", ")
            ),
        )
    };
    base(verdict, evidence)
}
