//! The words of each notification: the rule in words, what is wrong, why it
//! matters, how to fix it and by when; and the text of a blocked USB device.
//!
//! Pure text from the status the daemon served; this module shows nothing
//! and decides nothing. What is wrong and how to fix it come from the
//! check (`summary`, `fix`), written by the rule's evaluator; why it matters
//! is one fixed sentence per rule, the rule's own in the registry
//! (`checks/<rule>/mod.rs`), because it never changes with the facts.

use chrono::{DateTime, FixedOffset, Utc};
use palisade_shared::RuleId;
use palisade_shared::report::{CheckResult, Event, EventKind};

use crate::nudge::deadline::DeadlinePhase;

/// The notification title for a rule: the rule in words, from the
/// registry.
pub fn rule_title(rule: &RuleId) -> String {
    match crate::checks::find_rule(rule.as_str()) {
        Some(known) => known.title().to_owned(),
        // A rule newer than this helper: its id is still better than nothing.
        None => sentence_case(&rule.as_str().replace('_', " ")),
    }
}

/// Why a rule matters, in one sentence a person at the keyboard accepts,
/// from the registry.
pub fn why_it_matters(rule: &RuleId) -> &'static str {
    match crate::checks::find_rule(rule.as_str()) {
        Some(known) => known.why_it_matters(),
        None => "Your organisation's policy requires it to protect patient data.",
    }
}

/// The body of a failing rule's notification: what is wrong, why it
/// matters, how to fix it, and the deadline if there is one, a sentence a
/// line. Dates are in the local time zone given.
pub fn rule_body(check: &CheckResult, phase: DeadlinePhase, local_offset: FixedOffset) -> String {
    let mut lines = vec![
        as_sentence(&check.summary),
        why_it_matters(&check.id).to_owned(),
    ];
    let fix = check.fix.trim();
    if !fix.is_empty() {
        lines.push(format!("To fix: {}", as_sentence(fix)));
    }
    if let Some(deadline) = check.deadline {
        let day = local_day(deadline, local_offset);
        lines.push(match phase {
            DeadlinePhase::Overdue => format!("Overdue since {day}."),
            DeadlinePhase::Open | DeadlinePhase::LastDay => format!("Fix by {day}."),
        });
    }
    lines.retain(|line| !line.is_empty());
    lines.join("\n")
}

/// The title of a blocked USB device's notification.
pub fn usb_blocked_title() -> &'static str {
    "USB storage blocked"
}

/// The body of a blocked USB device's notification, from the event's
/// details: `product` (its name, e.g. `Cruzer Blade`; else `manufacturer`)
/// and its
/// `vendor:product` id, read from `device` (`0781:5567`) or from
/// `vendor_id` and `product_id`. Whatever is missing is left out.
pub fn usb_blocked_body(event: &Event) -> String {
    let text = |key: &str| {
        event
            .details
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let id = text("device")
        .map(str::to_owned)
        .or_else(|| Some(format!("{}:{}", text("vendor_id")?, text("product_id")?)));
    let name = text("product").or_else(|| text("manufacturer"));
    let device = match (name, id) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (Some(name), None) => name.to_owned(),
        (None, Some(id)) => format!("a USB storage device ({id})"),
        (None, None) => "a USB storage device".to_owned(),
    };
    format!(
        "USB storage blocked: {device} — patient data must not be copied to removable \
         storage; ask IT for an approved encrypted device."
    )
}

/// The title and body for an event the user should hear about, or `None`
/// for the kinds that are not theirs (policy updates, spool drops): a
/// blocked USB device, and a setting the agent changed (`enforced` with
/// result `applied`), so a changed screen-lock time is never a mystery.
pub fn event_message(event: &Event) -> Option<(String, String)> {
    match event.kind {
        EventKind::UsbDeviceBlocked => {
            Some((usb_blocked_title().to_owned(), usb_blocked_body(event)))
        }
        EventKind::Enforced => {
            let detail = |key: &str| event.details.get(key).and_then(serde_json::Value::as_str);
            if detail("result") != Some("applied") {
                return None;
            }
            let rule = RuleId::new(detail("rule")?);
            Some((
                format!("{} set for you", rule_title(&rule)),
                format!(
                    "Palisade changed this setting to meet your organisation's policy. {} \
                     Nothing for you to do.",
                    why_it_matters(&rule)
                ),
            ))
        }
        _ => None,
    }
}

/// A deadline's local day as people write it: `Mon 30 Nov`.
pub fn local_day(at: DateTime<Utc>, local_offset: FixedOffset) -> String {
    at.with_timezone(&local_offset)
        .format("%a %-d %b")
        .to_string()
}

/// `text` with a capital first letter and a closing full stop, so an
/// evaluator's lowercase summary reads as a sentence.
fn as_sentence(text: &str) -> String {
    let text = sentence_case(text.trim());
    if text.is_empty() || text.ends_with(['.', '!', '?']) {
        text
    } else {
        format!("{text}.")
    }
}

fn sentence_case(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use palisade_shared::report::{CheckStatus, Mode};

    use super::*;

    fn check(rule: &str, deadline: Option<DateTime<Utc>>) -> CheckResult {
        CheckResult {
            id: RuleId::new(rule),
            status: CheckStatus::Fail,
            mode: Mode::Nudge,
            summary: "no encrypted root volume found".to_owned(),
            evidence: serde_json::Map::new(),
            fix: "Ask IT to encrypt this laptop".to_owned(),
            probe_duration_us: 1,
            enforcement: None,
            first_failed_at: None,
            deadline,
        }
    }

    #[test]
    fn body_says_what_why_how_and_when() {
        let deadline = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
        let body = rule_body(
            &check(RuleId::DISK_ENCRYPTION, Some(deadline)),
            DeadlinePhase::Open,
            FixedOffset::east_opt(0).unwrap(),
        );
        assert_eq!(
            body,
            "No encrypted root volume found.\n\
             A lost laptop without it exposes every patient record on it.\n\
             To fix: Ask IT to encrypt this laptop.\n\
             Fix by Mon 30 Nov."
        );
    }

    #[test]
    fn overdue_deadline_is_said_so_in_local_time() {
        // 23:30 UTC on Sunday is already Monday in UTC+1.
        let deadline = Utc.with_ymd_and_hms(2026, 11, 29, 23, 30, 0).unwrap();
        let body = rule_body(
            &check(RuleId::SCREEN_LOCK, Some(deadline)),
            DeadlinePhase::Overdue,
            FixedOffset::east_opt(3600).unwrap(),
        );
        assert!(body.ends_with("Overdue since Mon 30 Nov."), "{body}");
    }

    #[test]
    fn no_deadline_and_no_fix_leave_their_lines_out() {
        let mut failing = check(RuleId::PASSWORD_POLICY, None);
        failing.fix = String::new();
        let body = rule_body(
            &failing,
            DeadlinePhase::Open,
            FixedOffset::east_opt(0).unwrap(),
        );
        assert_eq!(body.lines().count(), 2, "{body}");
        assert!(!body.contains("Fix by"), "{body}");
    }

    #[test]
    fn every_known_rule_has_words_and_a_reason() {
        for rule in RuleId::ALL {
            let rule = RuleId::new(rule);
            assert!(!rule_title(&rule).contains('_'), "{rule}");
            assert_ne!(why_it_matters(&rule), why_it_matters(&RuleId::new("x")));
        }
        assert_eq!(rule_title(&RuleId::new("new_rule")), "New rule");
    }

    #[test]
    fn an_applied_enforcement_is_told_and_other_events_are_not() {
        let event = |kind: EventKind, details: serde_json::Value| Event {
            kind,
            at: Utc.with_ymd_and_hms(2026, 11, 23, 9, 14, 59).unwrap(),
            details: details.as_object().cloned().unwrap_or_default(),
        };
        let (title, body) = event_message(&event(
            EventKind::Enforced,
            serde_json::json!({"rule": "screen_lock", "result": "applied"}),
        ))
        .expect("told");
        assert_eq!(title, "Screen lock set for you");
        assert!(body.contains("Nothing for you to do"), "{body}");
        let failed = event(
            EventKind::Enforced,
            serde_json::json!({"rule": "screen_lock", "result": "failed"}),
        );
        assert_eq!(event_message(&failed), None);
        assert_eq!(
            event_message(&event(EventKind::PolicyApplied, serde_json::json!({}))),
            None
        );
        assert!(
            event_message(&event(EventKind::UsbDeviceBlocked, serde_json::json!({}))).is_some()
        );
    }

    #[test]
    fn usb_body_names_the_device_when_known() {
        let event = |details: serde_json::Value| Event {
            kind: EventKind::UsbDeviceBlocked,
            at: Utc.with_ymd_and_hms(2026, 11, 23, 9, 14, 59).unwrap(),
            details: details.as_object().cloned().unwrap_or_default(),
        };
        assert_eq!(
            usb_blocked_body(&event(serde_json::json!({
                "product": "Cruzer Blade", "device": "0781:5567"
            }))),
            "USB storage blocked: Cruzer Blade (0781:5567) — patient data must not be copied \
             to removable storage; ask IT for an approved encrypted device."
        );
        assert!(
            usb_blocked_body(&event(serde_json::json!({
                "vendor_id": "0781", "product_id": "5567"
            })))
            .starts_with("USB storage blocked: a USB storage device (0781:5567) —")
        );
        assert!(
            usb_blocked_body(&event(serde_json::json!({})))
                .starts_with("USB storage blocked: a USB storage device — ")
        );
    }
}
