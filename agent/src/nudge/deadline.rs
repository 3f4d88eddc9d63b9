//! Where a failing rule stands against its deadline: the one fact both the
//! schedule (how often to remind) and the words ("Fix by", "Overdue since")
//! depend on.

use chrono::{DateTime, TimeDelta, Utc};

/// How long before its deadline a rule is reminded about more often. One
/// day: the last working day is when a reminder changes what people do.
pub const LAST_DAY: TimeDelta = TimeDelta::hours(24);

/// Where a failing rule stands against its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlinePhase {
    /// No deadline, or more than [`LAST_DAY`] away.
    Open,
    /// Less than [`LAST_DAY`] to go.
    LastDay,
    /// The deadline has passed.
    Overdue,
}

/// Where `deadline` stands at `now`.
pub fn deadline_phase(deadline: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DeadlinePhase {
    match deadline {
        Some(deadline) if now >= deadline => DeadlinePhase::Overdue,
        Some(deadline) if deadline - now <= LAST_DAY => DeadlinePhase::LastDay,
        _ => DeadlinePhase::Open,
    }
}
