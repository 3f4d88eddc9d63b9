//! Check cycles whose report could not be written to the spool (a full or
//! failing disk). Such a report never existed as far as the collector can
//! tell, so the spool counts them, from the first one's time, and the next
//! report that is written tells the collector in a `cycles_unrecorded`
//! event: a loss is never silent, as with the reports the bounds drop.
//!
//! The count is saved in the state file when the disk lets it be; when it
//! does not (the usual case, since the disk is full), a restart before the
//! next report is written forgets it. That is the one loss the spool cannot
//! record, because there is nowhere to record it.

use chrono::{DateTime, SecondsFormat, Utc};
use palisade_shared::report::{Event, EventKind};

/// Cycles not recorded and not yet reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unrecorded {
    pub count: u64,
    /// When the first of them ran (its report's `issued_at`).
    pub since: DateTime<Utc>,
}

impl Unrecorded {
    /// One cycle, run at `at`.
    pub fn one(at: DateTime<Utc>) -> Self {
        Self {
            count: 1,
            since: at,
        }
    }

    /// Both together: the counts added, since the earlier.
    pub fn and(self, other: Self) -> Self {
        Self {
            count: self.count.saturating_add(other.count),
            since: self.since.min(other.since),
        }
    }
}

/// `total` and `more` together.
pub(super) fn add(total: Option<Unrecorded>, more: Option<Unrecorded>) -> Option<Unrecorded> {
    match (total, more) {
        (Some(total), Some(more)) => Some(total.and(more)),
        (total, more) => total.or(more),
    }
}

/// A `cycles_unrecorded` event telling the collector of `unrecorded`. The
/// spool reads `details.count` and `details.since` back when the report is
/// appended.
pub fn unrecorded_event(unrecorded: Unrecorded, at: DateTime<Utc>) -> Event {
    let mut details = serde_json::Map::new();
    details.insert("count".into(), unrecorded.count.into());
    details.insert(
        "since".into(),
        unrecorded
            .since
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
            .into(),
    );
    Event {
        kind: EventKind::CyclesUnrecorded,
        at,
        details,
    }
}

/// What a report's `cycles_unrecorded` events say, all together; an event
/// without a positive count or a readable time is an error.
pub(super) fn read_events(events: &[Event]) -> Result<Option<Unrecorded>, String> {
    let mut total = None;
    for event in events {
        if event.kind != EventKind::CyclesUnrecorded {
            continue;
        }
        let count = positive_count(event)?;
        let since = event
            .details
            .get("since")
            .and_then(serde_json::Value::as_str)
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .ok_or("a cycles_unrecorded event has no RFC 3339 details.since")?
            .with_timezone(&Utc);
        total = add(total, Some(Unrecorded { count, since }));
    }
    Ok(total)
}

/// An event's `details.count`, which must be a positive integer (the
/// spool's own events always have one: a damaged entry is one without).
pub(super) fn positive_count(event: &Event) -> Result<u64, String> {
    event
        .details
        .get("count")
        .and_then(serde_json::Value::as_u64)
        .filter(|count| *count > 0)
        .ok_or_else(|| {
            let kind = serde_json::to_string(&event.kind).unwrap_or_default();
            format!("a {kind} event has no positive details.count")
        })
}

/// What is left of `total` once a report carrying `reported` is spooled.
/// What is left keeps the earlier time: it cannot be told apart.
pub(super) fn subtract(
    total: Option<Unrecorded>,
    reported: Option<Unrecorded>,
) -> Option<Unrecorded> {
    match (total, reported) {
        (Some(total), Some(reported)) => {
            let count = total.count.saturating_sub(reported.count);
            (count > 0).then_some(Unrecorded {
                count,
                since: total.since,
            })
        }
        (total, None) => total,
        (None, Some(_)) => None,
    }
}
