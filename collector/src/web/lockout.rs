//! Lockout for dashboard logins: how many failures in a row lock a name,
//! for how long, and [`UnknownUserGuard`], which counts failures for names
//! that are not users in memory so they lock exactly like real ones.
//!
//! It owns no I/O: the real users' counters live in the store, and
//! [`crate::web::auth`] decides when to consult either.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

/// Failures in a row before a name is locked; with [`LOCKOUT`] this allows
/// about 480 guesses a day per name, far too few for a 12-character
/// password (OWASP Authentication Cheat Sheet, "Account lockout").
pub const MAX_FAILED_LOGINS: u32 = 5;
pub const LOCKOUT: TimeDelta = TimeDelta::minutes(15);

/// Failed logins for names that are not users, kept in memory so that
/// they lock exactly like real names and the answer does not reveal which
/// names exist. Bounded: when full it starts again, which only ever lets
/// an attacker make more guesses at names that do not exist.
#[derive(Debug, Default)]
pub struct UnknownUserGuard {
    failures: Mutex<HashMap<String, UnknownName>>,
}

/// Failures in a row for one unknown name, and the end of its lock.
type UnknownName = (u32, Option<DateTime<Utc>>);

/// Distinct unknown names remembered at once: a few hundred KiB.
const MAX_UNKNOWN_NAMES: usize = 10_000;

impl UnknownUserGuard {
    pub(crate) fn is_locked(&self, name: &str, now: DateTime<Utc>) -> bool {
        self.failures
            .lock()
            .ok()
            .and_then(|map| map.get(name).and_then(|(_, until)| *until))
            .is_some_and(|until| until > now)
    }

    pub(crate) fn record_failure(&self, name: &str, now: DateTime<Utc>) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= MAX_UNKNOWN_NAMES && !map.contains_key(name) {
            map.clear();
        }
        let entry = map.entry(name.to_owned()).or_insert((0, None));
        entry.0 += 1;
        if entry.0 >= MAX_FAILED_LOGINS {
            *entry = (0, Some(now + LOCKOUT));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_lock_like_real_ones() {
        let guard = UnknownUserGuard::default();
        let now = Utc::now();
        for _ in 0..MAX_FAILED_LOGINS - 1 {
            guard.record_failure("ghost", now);
            assert!(!guard.is_locked("ghost", now));
        }
        guard.record_failure("ghost", now);
        assert!(guard.is_locked("ghost", now));
        assert!(!guard.is_locked("ghost", now + LOCKOUT));
        assert!(!guard.is_locked("other", now));
    }
}
