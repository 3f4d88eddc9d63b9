//! Failed attempts per source address, for the two doors a stranger can
//! knock on with a guessed secret: enrollment (`pls_` secrets) and the admin
//! API (`plt_` tokens). Both secrets are 256-bit random, so guessing is
//! hopeless anyway; the limit keeps the logs, the database and the CPU quiet
//! when a script tries.
//!
//! Dashboard logins have their own lockout per user name
//! ([`crate::web::auth`]), because passwords are chosen by people.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per source address per window. Ten: a person mistyping
/// or pasting a secret a few times never meets it; a script guessing does
/// at once.
pub const MAX_FAILURES_PER_WINDOW: u32 = 10;
/// The window: fifteen minutes, a common lockout period (CIS, NCSC).
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Addresses tracked at most; past this the oldest windows are forgotten, so
/// a flood of source addresses cannot exhaust memory.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Failed attempts per source address, in fixed windows that start at an
/// address's first failure.
#[derive(Debug, Default)]
pub struct FailedAttempts {
    by_address: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedAttempts {
    /// Whether `address` has used up its failures for the current window.
    /// A poisoned lock (a panic while counting) blocks: failing closed.
    pub fn is_blocked(&self, address: IpAddr, now: Instant) -> bool {
        let Ok(map) = self.by_address.lock() else {
            return true;
        };
        map.get(&address).is_some_and(|(start, count)| {
            now.duration_since(*start) < FAILURE_WINDOW && *count >= MAX_FAILURES_PER_WINDOW
        })
    }

    pub fn record_failure(&self, address: IpAddr, now: Instant) {
        let Ok(mut map) = self.by_address.lock() else {
            return;
        };
        if map.len() >= MAX_TRACKED_ADDRESSES && !map.contains_key(&address) {
            map.retain(|_, (start, _)| now.duration_since(*start) < FAILURE_WINDOW);
            if map.len() >= MAX_TRACKED_ADDRESSES {
                map.clear();
            }
        }
        let entry = map.entry(address).or_insert((now, 0));
        if now.duration_since(entry.0) >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn an_address_is_blocked_after_its_failures_and_only_for_the_window() {
        let attempts = FailedAttempts::default();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES_PER_WINDOW - 1 {
            attempts.record_failure(HOME, start);
        }
        assert!(!attempts.is_blocked(HOME, start));
        attempts.record_failure(HOME, start);
        assert!(attempts.is_blocked(HOME, start));
        assert!(!attempts.is_blocked(ELSEWHERE, start));
        assert!(attempts.is_blocked(HOME, start + FAILURE_WINDOW - Duration::from_secs(1)));
        assert!(!attempts.is_blocked(HOME, start + FAILURE_WINDOW));
        // A failure after the window starts a new count.
        attempts.record_failure(HOME, start + FAILURE_WINDOW);
        assert!(!attempts.is_blocked(HOME, start + FAILURE_WINDOW));
    }
}
