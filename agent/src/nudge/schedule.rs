//! The politeness rules: given the daemon's status, what the helper
//! remembers and the clock, which notifications to show now.
//!
//! Everything here is pure (no clock, no files, no D-Bus) so every rule is
//! unit-tested with fixed times (`schedule/tests.rs`). The rules, in the
//! order [`decide`] applies them to each check:
//!
//! 1. Only a real failure the policy wants the person to hear about: status
//!    `fail` and mode `nudge` or `enforce`. `audit` is IT's business only;
//!    `unknown`/`error` mean the agent could not tell, and a nudge must never
//!    be about a guess; `pass`, `not_applicable` and `excepted` need nothing.
//! 2. A snoozed rule is quiet until its snooze ends ([`SNOOZE`], 24 h).
//! 3. Outside working hours nothing is shown, unless the deadline has passed.
//! 4. At most one notification per rule per interval
//!    ([`NudgeSettings::interval`], `nudge_interval_hours`); in the last 24 h
//!    before the deadline, and once it has passed, a quarter of that (at
//!    least an hour) during working hours. An overdue reminder outside
//!    working hours keeps the full interval: it is an exception and stays rare.
//!
//! Each `usb_device_blocked` event is shown once, at any hour (the person
//! has just plugged the device in), unless it is older than
//! [`EVENT_MAX_AGE`]: a helper that starts long after the event (the next
//! login) would only confuse with it.
//!
//! What was shown is recorded by the caller ([`NudgeMemory::record_shown`])
//! once the notification really went out, and memory of a rule is dropped
//! when it passes again ([`NudgeMemory::forget_resolved`]), so a new failure
//! is announced at once.

use chrono::{DateTime, FixedOffset, TimeDelta, Timelike as _, Utc};
use palisade_shared::RuleId;
use palisade_shared::report::{CheckResult, CheckStatus, Event, Mode};

use crate::config::WorkingHours;
pub use crate::nudge::deadline::{DeadlinePhase, LAST_DAY, deadline_phase};
use crate::nudge::memory::{EventKey, NudgeMemory};
use crate::nudge::message;
use crate::status::AgentStatus;

/// How long "Snooze for a day" keeps a rule quiet.
pub const SNOOZE: TimeDelta = TimeDelta::hours(24);

/// The shortened interval is the configured one divided by this...
pub const LAST_DAY_DIVISOR: i32 = 4;

/// ...but never below an hour: more often than hourly is nagging, and
/// people start dismissing unread.
pub const MIN_SHORT_INTERVAL: TimeDelta = TimeDelta::hours(1);

/// Events older than this when the helper first sees them are not shown.
/// The helper polls every minute, so a live event is at most a minute old;
/// an hour covers a helper restarted in the meantime (suspend, a new login)
/// without announcing yesterday's USB stick.
pub const EVENT_MAX_AGE: TimeDelta = TimeDelta::hours(1);

/// How the helper is told to behave: from `agent.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NudgeSettings {
    /// `nudge_interval_hours`: the least time between two notifications
    /// about one rule.
    pub interval: TimeDelta,
    /// `working_hours`, local time.
    pub working_hours: WorkingHours,
}

impl NudgeSettings {
    /// The settings an `agent.toml` asks for.
    pub fn from_config(config: &crate::config::AgentConfig) -> Self {
        let hours = i64::try_from(config.nudge_interval_hours).unwrap_or(i64::MAX);
        Self {
            interval: TimeDelta::try_hours(hours).unwrap_or(TimeDelta::MAX),
            working_hours: config.working_hours,
        }
    }

    /// The interval near and after a deadline: a quarter, at least an hour.
    pub fn short_interval(&self) -> TimeDelta {
        (self.interval / LAST_DAY_DIVISOR).max(MIN_SHORT_INTERVAL)
    }
}

impl Default for NudgeSettings {
    fn default() -> Self {
        Self::from_config(&crate::config::AgentConfig::default())
    }
}

/// One notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nudge {
    pub subject: NudgeSubject,
    /// The notification's title: the rule in words, or what happened.
    pub title: String,
    /// The notification's text: what is wrong, why it matters, how to fix
    /// it, by when. One sentence a line.
    pub body: String,
    pub urgency: Urgency,
}

/// What a notification is about, to remember it and to act on its buttons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NudgeSubject {
    /// A failing rule; may be snoozed and may offer its settings panel.
    Rule(RuleId),
    /// Something the daemon did, shown once.
    Event(EventKey),
}

/// How hard the notification asks for attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Normal,
    /// The deadline has passed: the desktop keeps it on screen until
    /// dismissed.
    Critical,
}

/// The notifications to show now, rules first (in status order), then
/// events (oldest first). `local_offset` is the local time zone's offset
/// from UTC at `now`: working hours and the dates in the text are local.
pub fn decide(
    now: DateTime<Utc>,
    local_offset: FixedOffset,
    status: &AgentStatus,
    memory: &NudgeMemory,
    settings: &NudgeSettings,
) -> Vec<Nudge> {
    let local_now = now.with_timezone(&local_offset);
    let minute_of_day = u16::try_from(local_now.hour() * 60 + local_now.minute()).unwrap_or(0);
    let in_working_hours = settings.working_hours.contains(minute_of_day);
    let mut nudges: Vec<Nudge> = status
        .checks
        .iter()
        .filter(|check| rule_is_due(check, now, in_working_hours, memory, settings))
        .map(|check| {
            let phase = deadline_phase(check.deadline, now);
            Nudge {
                subject: NudgeSubject::Rule(check.id.clone()),
                title: message::rule_title(&check.id),
                body: message::rule_body(check, phase, local_offset),
                urgency: if phase == DeadlinePhase::Overdue {
                    Urgency::Critical
                } else {
                    Urgency::Normal
                },
            }
        })
        .collect();
    nudges.extend(
        status
            .recent_events
            .iter()
            .filter(|event| event_is_due(event, now, memory))
            .filter_map(|event| {
                let (title, body) = message::event_message(event)?;
                Some(Nudge {
                    subject: NudgeSubject::Event(EventKey::of(event)),
                    title,
                    body,
                    urgency: Urgency::Normal,
                })
            }),
    );
    nudges
}

/// Whether a check's status and mode call for a nudge at all.
pub fn wants_nudge(check: &CheckResult) -> bool {
    check.status == CheckStatus::Fail && matches!(check.mode, Mode::Nudge | Mode::Enforce)
}

fn rule_is_due(
    check: &CheckResult,
    now: DateTime<Utc>,
    in_working_hours: bool,
    memory: &NudgeMemory,
    settings: &NudgeSettings,
) -> bool {
    if !wants_nudge(check) {
        return false;
    }
    let remembered = memory.rule(&check.id);
    if let Some(until) = remembered.and_then(|rule| rule.snoozed_until) {
        // A snooze ending more than a day from now was set by a clock that
        // has since moved back; it cannot be what the person asked for.
        if now < until && until - now <= SNOOZE {
            return false;
        }
    }
    let phase = deadline_phase(check.deadline, now);
    if !in_working_hours && phase != DeadlinePhase::Overdue {
        return false;
    }
    let interval = match phase {
        DeadlinePhase::Open => settings.interval,
        DeadlinePhase::LastDay => settings.short_interval(),
        DeadlinePhase::Overdue if in_working_hours => settings.short_interval(),
        DeadlinePhase::Overdue => settings.interval,
    };
    match remembered.and_then(|rule| rule.last_shown_at) {
        // Shown "in the future": the clock moved back; the elapsed time is
        // unknown, so do not stay silent for however long the jump was.
        Some(last) if last <= now => now - last >= interval,
        _ => true,
    }
}

fn event_is_due(event: &Event, now: DateTime<Utc>, memory: &NudgeMemory) -> bool {
    message::event_message(event).is_some()
        && now - event.at <= EVENT_MAX_AGE
        && !memory.event_shown(&EventKey::of(event))
}

#[cfg(test)]
mod tests;
