//! Every politeness rule of [`decide`], with fixed times. Monday 23 Nov
//! 2026; working hours 08:00-18:00 and a 4 h interval unless a test says
//! otherwise; local time is UTC unless a test gives an offset.

use chrono::TimeZone as _;
use palisade_shared::report::EventKind;

use super::*;
use crate::status::{DeliveryStatus, SpoolStatus};

fn utc(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
        .unwrap()
}

fn hours(n: i64) -> TimeDelta {
    TimeDelta::hours(n)
}

fn utc_offset() -> FixedOffset {
    FixedOffset::east_opt(0).unwrap()
}

fn settings() -> NudgeSettings {
    NudgeSettings {
        interval: hours(4),
        working_hours: WorkingHours::OFFICE,
    }
}

fn check(rule: &str, status: CheckStatus, mode: Mode) -> CheckResult {
    CheckResult {
        id: RuleId::new(rule),
        status,
        mode,
        summary: format!("{rule} is not as the policy asks"),
        evidence: serde_json::Map::new(),
        fix: format!("Change {rule}"),
        probe_duration_us: 1,
        enforcement: None,
        first_failed_at: None,
        deadline: None,
    }
}

fn failing(rule: &str) -> CheckResult {
    check(rule, CheckStatus::Fail, Mode::Nudge)
}

fn with_deadline(mut check: CheckResult, deadline: DateTime<Utc>) -> CheckResult {
    check.deadline = Some(deadline);
    check
}

fn status(checks: Vec<CheckResult>) -> AgentStatus {
    AgentStatus {
        schema_version: crate::status::STATUS_SCHEMA_VERSION,
        agent_version: "0.1.0".to_owned(),
        started_at: utc(23, 7, 0),
        device_id: None,
        key_id: palisade_shared::KeyId::parse(&"ab".repeat(32)).unwrap(),
        key_store: "file".to_owned(),
        collector_url: None,
        policy: None,
        last_cycle_at: None,
        checks,
        recent_events: Vec::new(),
        spool: SpoolStatus::default(),
        delivery: DeliveryStatus::default(),
    }
}

fn usb_event(at: DateTime<Utc>, sysfs_path: &str) -> Event {
    Event {
        kind: EventKind::UsbDeviceBlocked,
        at,
        details: serde_json::json!({
            "product": "Cruzer Blade",
            "device": "0781:5567",
            "sysfs_path": sysfs_path,
        })
        .as_object()
        .cloned()
        .unwrap(),
    }
}

fn rules_of(nudges: &[Nudge]) -> Vec<String> {
    nudges
        .iter()
        .map(|nudge| match &nudge.subject {
            NudgeSubject::Rule(rule) => rule.to_string(),
            NudgeSubject::Event(key) => format!("event@{}", key.at.format("%H:%M")),
        })
        .collect()
}

/// `decide` at `now`, local time UTC, default settings.
fn decide_at(now: DateTime<Utc>, status: &AgentStatus, memory: &NudgeMemory) -> Vec<String> {
    rules_of(&decide(now, utc_offset(), status, memory, &settings()))
}

fn shown_at(rule: &str, at: DateTime<Utc>) -> NudgeMemory {
    let mut memory = NudgeMemory::default();
    memory.record_rule_shown(&RuleId::new(rule), at);
    memory
}

#[test]
fn only_failures_in_nudge_or_enforce_mode_are_shown() {
    let statuses = [
        CheckStatus::Pass,
        CheckStatus::Fail,
        CheckStatus::Unknown,
        CheckStatus::Error,
        CheckStatus::NotApplicable,
        CheckStatus::Excepted,
    ];
    for status_value in statuses {
        for mode in [Mode::Audit, Mode::Nudge, Mode::Enforce] {
            let shown = decide_at(
                utc(23, 10, 0),
                &status(vec![check("screen_lock", status_value, mode)]),
                &NudgeMemory::default(),
            );
            let expected = status_value == CheckStatus::Fail && mode != Mode::Audit;
            assert_eq!(
                shown == ["screen_lock"],
                expected,
                "{status_value:?} in {mode:?}: {shown:?}"
            );
            assert!(expected || shown.is_empty(), "{shown:?}");
        }
    }
}

#[test]
fn one_notification_per_failing_rule_in_status_order() {
    let shown = decide_at(
        utc(23, 10, 0),
        &status(vec![
            failing("screen_lock"),
            check("disk_encryption", CheckStatus::Pass, Mode::Nudge),
            check("password_policy", CheckStatus::Fail, Mode::Enforce),
            check("usb_storage", CheckStatus::Fail, Mode::Audit),
        ]),
        &NudgeMemory::default(),
    );
    assert_eq!(shown, ["screen_lock", "password_policy"]);
}

#[test]
fn nothing_while_compliant() {
    let compliant = status(vec![
        check("screen_lock", CheckStatus::Pass, Mode::Enforce),
        check("disk_encryption", CheckStatus::Pass, Mode::Nudge),
    ]);
    assert!(decide_at(utc(23, 10, 0), &compliant, &NudgeMemory::default()).is_empty());
}

#[test]
fn at_most_once_per_interval() {
    let failing = status(vec![failing("screen_lock")]);
    let memory = shown_at("screen_lock", utc(23, 9, 0));
    for (now, expected) in [
        (utc(23, 9, 0), false),
        (utc(23, 10, 0), false),
        (utc(23, 12, 59), false),
        (utc(23, 13, 0), true),
        (utc(23, 17, 0), true),
    ] {
        let shown = decide_at(now, &failing, &memory);
        assert_eq!(!shown.is_empty(), expected, "at {now}: {shown:?}");
    }
}

#[test]
fn the_interval_comes_from_the_settings() {
    let failing = status(vec![failing("screen_lock")]);
    let memory = shown_at("screen_lock", utc(23, 9, 0));
    let hourly = NudgeSettings {
        interval: hours(1),
        ..settings()
    };
    let at = |now| decide(now, utc_offset(), &failing, &memory, &hourly);
    assert!(at(utc(23, 9, 59)).is_empty());
    assert_eq!(at(utc(23, 10, 0)).len(), 1);
}

#[test]
fn rate_limit_is_per_rule() {
    let both = status(vec![failing("screen_lock"), failing("disk_encryption")]);
    let memory = shown_at("screen_lock", utc(23, 9, 0));
    assert_eq!(
        decide_at(utc(23, 10, 0), &both, &memory),
        ["disk_encryption"]
    );
}

#[test]
fn last_day_before_the_deadline_reminds_every_quarter_interval() {
    let deadline = utc(24, 12, 0);
    let due = status(vec![with_deadline(failing("screen_lock"), deadline)]);
    // More than a day before the deadline: the full 4 h.
    let memory = shown_at("screen_lock", utc(23, 9, 0));
    assert!(decide_at(utc(23, 10, 0), &due, &memory).is_empty());
    // Within the last day: 4 h / 4 = 1 h.
    let memory = shown_at("screen_lock", utc(24, 9, 0));
    assert!(decide_at(utc(24, 9, 59), &due, &memory).is_empty());
    assert_eq!(decide_at(utc(24, 10, 0), &due, &memory), ["screen_lock"]);
    // The window opens exactly 24 h before the deadline.
    let memory = shown_at("screen_lock", utc(23, 11, 0));
    assert_eq!(decide_at(utc(23, 12, 0), &due, &memory), ["screen_lock"]);
    assert!(decide_at(utc(23, 11, 59), &due, &memory).is_empty());
}

#[test]
fn short_interval_is_never_below_an_hour() {
    let two_hours = NudgeSettings {
        interval: hours(2),
        ..settings()
    };
    assert_eq!(two_hours.short_interval(), hours(1));
    let day = NudgeSettings {
        interval: hours(24),
        ..settings()
    };
    assert_eq!(day.short_interval(), hours(6));
    let due = status(vec![with_deadline(failing("screen_lock"), utc(24, 12, 0))]);
    let memory = shown_at("screen_lock", utc(24, 9, 0));
    let at = |now| decide(now, utc_offset(), &due, &memory, &two_hours);
    assert!(
        at(utc(24, 9, 30)).is_empty(),
        "2 h / 4 = 30 min is raised to 1 h"
    );
    assert_eq!(at(utc(24, 10, 0)).len(), 1);
}

#[test]
fn quiet_outside_working_hours() {
    let failing = status(vec![failing("screen_lock")]);
    for (now, expected) in [
        (utc(23, 7, 59), false),
        (utc(23, 8, 0), true),
        (utc(23, 17, 59), true),
        (utc(23, 18, 0), false),
        (utc(23, 23, 0), false),
    ] {
        let shown = decide_at(now, &failing, &NudgeMemory::default());
        assert_eq!(!shown.is_empty(), expected, "at {now}: {shown:?}");
    }
}

#[test]
fn working_hours_are_local_time() {
    let failing = status(vec![failing("screen_lock")]);
    // 07:30 UTC is 08:30 in UTC+1 (inside) and 02:30 in UTC-5 (outside).
    let now = utc(23, 7, 30);
    let plus_one = FixedOffset::east_opt(3600).unwrap();
    let minus_five = FixedOffset::west_opt(5 * 3600).unwrap();
    let memory = NudgeMemory::default();
    assert_eq!(
        decide(now, plus_one, &failing, &memory, &settings()).len(),
        1
    );
    assert!(decide(now, minus_five, &failing, &memory, &settings()).is_empty());
}

#[test]
fn working_hours_may_cross_midnight() {
    let night_shift = NudgeSettings {
        working_hours: WorkingHours::parse("22:00-06:00").unwrap(),
        ..settings()
    };
    let failing = status(vec![failing("screen_lock")]);
    let memory = NudgeMemory::default();
    for (now, expected) in [
        (utc(23, 21, 59), false),
        (utc(23, 22, 0), true),
        (utc(23, 23, 59), true),
        (utc(24, 0, 0), true),
        (utc(24, 5, 59), true),
        (utc(24, 6, 0), false),
        (utc(24, 12, 0), false),
    ] {
        let shown = decide(now, utc_offset(), &failing, &memory, &night_shift);
        assert_eq!(!shown.is_empty(), expected, "at {now}");
    }
}

#[test]
fn all_day_working_hours_are_never_quiet() {
    let all_day = NudgeSettings {
        working_hours: WorkingHours::parse("00:00-24:00").unwrap(),
        ..settings()
    };
    let failing = status(vec![failing("screen_lock")]);
    for hour in [0, 3, 12, 23] {
        let shown = decide(
            utc(23, hour, 30),
            utc_offset(),
            &failing,
            &NudgeMemory::default(),
            &all_day,
        );
        assert_eq!(shown.len(), 1, "at {hour}:30");
    }
}

#[test]
fn overdue_is_shown_outside_working_hours_and_critical() {
    let overdue = status(vec![with_deadline(failing("screen_lock"), utc(23, 12, 0))]);
    let nudges = decide(
        utc(23, 22, 0),
        utc_offset(),
        &overdue,
        &NudgeMemory::default(),
        &settings(),
    );
    assert_eq!(rules_of(&nudges), ["screen_lock"]);
    assert_eq!(nudges[0].urgency, Urgency::Critical);
    assert!(
        nudges[0].body.contains("Overdue since Mon 23 Nov"),
        "{}",
        nudges[0].body
    );
    // The last day, not yet overdue, stays quiet at night.
    let last_day = status(vec![with_deadline(failing("screen_lock"), utc(24, 9, 0))]);
    assert!(decide_at(utc(23, 22, 0), &last_day, &NudgeMemory::default()).is_empty());
}

#[test]
fn overdue_cadence_is_short_in_hours_and_full_outside() {
    let overdue = status(vec![with_deadline(failing("screen_lock"), utc(20, 12, 0))]);
    let memory = shown_at("screen_lock", utc(23, 10, 0));
    assert!(decide_at(utc(23, 10, 59), &overdue, &memory).is_empty());
    assert_eq!(
        decide_at(utc(23, 11, 0), &overdue, &memory),
        ["screen_lock"]
    );
    let memory = shown_at("screen_lock", utc(23, 19, 0));
    assert!(decide_at(utc(23, 22, 59), &overdue, &memory).is_empty());
    assert_eq!(
        decide_at(utc(23, 23, 0), &overdue, &memory),
        ["screen_lock"]
    );
}

#[test]
fn urgency_is_normal_before_the_deadline() {
    let due = status(vec![with_deadline(failing("screen_lock"), utc(23, 12, 0))]);
    let nudges = decide(
        utc(23, 11, 59),
        utc_offset(),
        &due,
        &NudgeMemory::default(),
        &settings(),
    );
    assert_eq!(nudges[0].urgency, Urgency::Normal);
    assert!(
        nudges[0].body.contains("Fix by Mon 23 Nov"),
        "{}",
        nudges[0].body
    );
}

#[test]
fn snooze_keeps_a_rule_quiet_for_its_day() {
    let failing = status(vec![failing("screen_lock"), failing("disk_encryption")]);
    let mut memory = NudgeMemory::default();
    memory.snooze(&RuleId::new("screen_lock"), utc(23, 10, 0) + SNOOZE);
    assert_eq!(
        decide_at(utc(23, 10, 0), &failing, &memory),
        ["disk_encryption"],
        "only the snoozed rule is quiet"
    );
    assert_eq!(
        decide_at(utc(24, 9, 59), &failing, &memory),
        ["disk_encryption"]
    );
    assert_eq!(
        decide_at(utc(24, 10, 0), &failing, &memory),
        ["screen_lock", "disk_encryption"]
    );
}

#[test]
fn snooze_holds_even_when_overdue() {
    let overdue = status(vec![with_deadline(failing("screen_lock"), utc(20, 12, 0))]);
    let mut memory = NudgeMemory::default();
    memory.snooze(&RuleId::new("screen_lock"), utc(24, 10, 0));
    assert!(decide_at(utc(23, 22, 0), &overdue, &memory).is_empty());
}

#[test]
fn a_snooze_from_a_clock_that_moved_back_is_ignored() {
    let failing = status(vec![failing("screen_lock")]);
    let mut memory = NudgeMemory::default();
    memory.snooze(&RuleId::new("screen_lock"), utc(30, 10, 0));
    assert_eq!(
        decide_at(utc(23, 10, 0), &failing, &memory),
        ["screen_lock"]
    );
}

#[test]
fn shown_in_the_future_does_not_silence() {
    let failing = status(vec![failing("screen_lock")]);
    let memory = shown_at("screen_lock", utc(25, 10, 0));
    assert_eq!(
        decide_at(utc(23, 10, 0), &failing, &memory),
        ["screen_lock"]
    );
}

#[test]
fn passing_again_clears_memory_so_the_next_failure_is_shown_at_once() {
    let mut memory = shown_at("screen_lock", utc(23, 9, 0));
    memory.snooze(&RuleId::new("screen_lock"), utc(24, 9, 0));
    let failing_status = status(vec![failing("screen_lock")]);
    assert!(decide_at(utc(23, 10, 0), &failing_status, &memory).is_empty());

    let passing = status(vec![check("screen_lock", CheckStatus::Pass, Mode::Nudge)]);
    assert!(memory.forget_resolved(&passing));
    assert_eq!(memory.rule(&RuleId::new("screen_lock")), None);
    assert_eq!(
        decide_at(utc(23, 11, 0), &failing_status, &memory),
        ["screen_lock"]
    );
}

#[test]
fn undetermined_or_absent_rules_keep_their_memory() {
    let memory = shown_at("screen_lock", utc(23, 9, 0));
    for keeps in [
        status(vec![check(
            "screen_lock",
            CheckStatus::Unknown,
            Mode::Nudge,
        )]),
        status(vec![check("screen_lock", CheckStatus::Error, Mode::Nudge)]),
        status(vec![failing("screen_lock")]),
        status(Vec::new()),
    ] {
        let mut after = memory.clone();
        assert!(!after.forget_resolved(&keeps));
        assert_eq!(after, memory);
    }
    for clears in [CheckStatus::NotApplicable, CheckStatus::Excepted] {
        let mut after = memory.clone();
        assert!(after.forget_resolved(&status(vec![check("screen_lock", clears, Mode::Nudge)])));
    }
}

#[test]
fn a_blocked_usb_device_is_shown_once_at_any_hour() {
    let mut with_event = status(Vec::new());
    with_event.recent_events = vec![usb_event(utc(23, 22, 58), "/sys/bus/usb/devices/1-2")];
    let mut memory = NudgeMemory::default();
    let nudges = decide(
        utc(23, 23, 0),
        utc_offset(),
        &with_event,
        &memory,
        &settings(),
    );
    assert_eq!(rules_of(&nudges), ["event@22:58"]);
    assert!(
        nudges[0].body.contains("Cruzer Blade (0781:5567)"),
        "{}",
        nudges[0].body
    );
    let NudgeSubject::Event(key) = &nudges[0].subject else {
        panic!("not an event: {:?}", nudges[0]);
    };
    memory.record_event_shown(key.clone());
    assert!(decide_at(utc(23, 23, 1), &with_event, &memory).is_empty());
    // Remembered across a pass that prunes events the daemon forgot.
    assert!(!memory.forget_resolved(&with_event));
    assert!(decide_at(utc(23, 23, 2), &with_event, &memory).is_empty());
}

#[test]
fn events_are_told_apart_by_time_and_device() {
    let mut with_events = status(Vec::new());
    with_events.recent_events = vec![
        usb_event(utc(23, 10, 0), "/sys/bus/usb/devices/1-2"),
        usb_event(utc(23, 10, 0), "/sys/bus/usb/devices/1-3"),
        usb_event(utc(23, 10, 5), "/sys/bus/usb/devices/1-2"),
    ];
    let mut memory = NudgeMemory::default();
    memory.record_event_shown(EventKey::of(&with_events.recent_events[0]));
    assert_eq!(
        decide_at(utc(23, 10, 6), &with_events, &memory),
        ["event@10:00", "event@10:05"]
    );
}

#[test]
fn stale_and_other_events_are_not_shown() {
    let mut with_events = status(Vec::new());
    with_events.recent_events = vec![
        usb_event(utc(23, 8, 0), "/sys/bus/usb/devices/1-2"),
        Event {
            kind: EventKind::PolicyApplied,
            at: utc(23, 9, 59),
            details: serde_json::Map::new(),
        },
    ];
    assert!(decide_at(utc(23, 10, 0), &with_events, &NudgeMemory::default()).is_empty());
}

#[test]
fn forgotten_events_leave_memory() {
    let event = usb_event(utc(23, 10, 0), "/sys/bus/usb/devices/1-2");
    let mut memory = NudgeMemory::default();
    memory.record_event_shown(EventKey::of(&event));
    assert!(memory.forget_resolved(&status(Vec::new())));
    assert!(!memory.event_shown(&EventKey::of(&event)));
}

#[test]
fn rules_come_before_events() {
    let mut both = status(vec![failing("usb_storage")]);
    both.recent_events = vec![usb_event(utc(23, 9, 59), "/sys/bus/usb/devices/1-2")];
    assert_eq!(
        decide_at(utc(23, 10, 0), &both, &NudgeMemory::default()),
        ["usb_storage", "event@09:59"]
    );
}
