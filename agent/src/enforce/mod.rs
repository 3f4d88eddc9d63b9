//! Enforcement: making a failing rule pass by changing the machine, for the
//! rules the policy puts in `enforce` mode (and for an administrator running
//! `palisade-agent enforce`).
//!
//! Each rule's enforcer (`checks/<rule>/enforce.rs`, found through the
//! registry) turns the policy into a [`Plan`]: the files to write or
//! remove, the commands to run and the sysfs attributes to set, computed
//! from what is on disk now so that a second run finds nothing to do. A dry
//! run prints the plan and writes nothing at all, not even the undo record.
//! Applying it records each path's original in the rule's [`journal`] the
//! first time it is touched, then changes it; `--undo RULE` puts every
//! recorded path back byte for byte.
//!
//! An enforcer never claims success on its own: [`enforce_failing`] re-runs
//! the rule's check after the change and reports `applied` only when that
//! check passes. Checks never change the machine; this module is the only
//! one that does (ARCHITECTURE.md). Every file is reached through [`Host`],
//! so a host root (tests, `--host-root`) is changed instead of `/`, and
//! commands that would reach beyond it (`dconf update`, `udevadm`,
//! `blockdev`) run only on the live system.
//!
//! A rule the registry marks not enforceable (disk encryption: an agent
//! cannot encrypt a disk for its user) reports `not_enforceable` with the
//! rule's own reason.

pub mod journal;
pub mod plan;

pub use plan::{EnforceContext, EnforceReport, Plan, Step};

use std::path::Path;

use chrono::Utc;
use palisade_shared::RuleId;
use palisade_shared::report::{
    CheckResult, CheckStatus, EnforcementOutcome, EnforcementResult, Event, EventKind, Mode,
};
use serde_json::{Map, json};

use crate::checks::EnforcementPlan;
use crate::sys::Host;
use journal::Journal;
use plan::execute;

/// Plans (`dry_run`) or applies one rule's enforcer. Idempotent: a second
/// run on an enforced machine changes nothing and says `already_compliant`.
pub fn enforce_rule(ctx: &EnforceContext<'_>, rule: &RuleId) -> anyhow::Result<EnforceReport> {
    let Some(registered) = crate::checks::find_rule(rule.as_str()) else {
        anyhow::bail!("unknown rule {:?}", rule.as_str());
    };
    let plan = match registered.plan_enforcement(ctx.host, ctx.policy)? {
        EnforcementPlan::Planned(plan) => plan,
        EnforcementPlan::NotInPolicy => return not_in_policy(ctx, rule),
        EnforcementPlan::NotEnforceable(reason) => {
            return Ok(EnforceReport {
                rule: rule.clone(),
                result: EnforcementResult::NotEnforceable,
                changes: Vec::new(),
                detail: reason.into(),
                events: Vec::new(),
            });
        }
    };
    Ok(execute(ctx, rule, plan))
}

/// For each result whose rule is in `enforce` mode and fails: apply the
/// rule's enforcer, re-run that rule's check, and set `enforcement` and the
/// verdict from the re-check. Returns an `enforced` event per rule acted on,
/// and a `usb_device_blocked` event per device blocked.
pub fn enforce_failing(ctx: &EnforceContext<'_>, results: &mut [CheckResult]) -> Vec<Event> {
    let mut events = Vec::new();
    for result in results.iter_mut() {
        if result.mode != Mode::Enforce || result.status != CheckStatus::Fail {
            continue;
        }
        let rule = result.id.clone();
        let report = match enforce_rule(ctx, &rule) {
            Ok(report) => report,
            Err(err) => EnforceReport {
                rule: rule.clone(),
                result: EnforcementResult::Failed,
                changes: Vec::new(),
                detail: format!("{err:#}"),
                events: Vec::new(),
            },
        };
        if ctx.dry_run {
            // A plan is not an outcome: the result is left as it was.
            tracing::info!(rule = %rule, changes = ?report.changes, detail = %report.detail, "would enforce (dry run)");
            continue;
        }
        let recheck = crate::checks::run_checks(ctx.host, ctx.policy, Some(rule.as_str()))
            .into_iter()
            .next();
        let outcome = outcome(
            &report,
            recheck.as_ref().map(|r| (r.status, r.summary.as_str())),
        );
        events.extend(report.events.iter().cloned());
        events.push(enforced_event(&rule, &outcome));
        if let Some(recheck) = recheck {
            result.status = recheck.status;
            result.summary = recheck.summary;
            result.evidence = recheck.evidence;
            result.fix = recheck.fix;
        }
        result.enforcement = Some(outcome);
    }
    events
}

/// Turns an enforcer's report and the re-check into the outcome the report
/// carries. `Applied` only when changes were made *and* the check now
/// passes; changes the check cannot confirm are `Failed`, with the reason.
pub fn outcome(report: &EnforceReport, recheck: Option<(CheckStatus, &str)>) -> EnforcementOutcome {
    let (recheck_status, recheck_summary) = recheck.unwrap_or((CheckStatus::Unknown, ""));
    let join = |a: &str, b: String| {
        if a.is_empty() {
            b
        } else if b.is_empty() {
            a.to_owned()
        } else {
            format!("{a}; {b}")
        }
    };
    let (result, detail) = match (report.result, recheck_status) {
        (EnforcementResult::NotEnforceable | EnforcementResult::Failed, _) => {
            (report.result, report.detail.clone())
        }
        (EnforcementResult::Applied, _) if recheck.is_none() => (
            EnforcementResult::Failed,
            join(
                &report.detail,
                "the changes were made but the check did not run again, so they are not \
                 confirmed"
                    .to_owned(),
            ),
        ),
        (_, _) if recheck.is_none() => (report.result, report.detail.clone()),
        (EnforcementResult::Applied, CheckStatus::Pass) => {
            (EnforcementResult::Applied, report.detail.clone())
        }
        (EnforcementResult::AlreadyCompliant, CheckStatus::Pass | CheckStatus::NotApplicable) => {
            (EnforcementResult::AlreadyCompliant, report.detail.clone())
        }
        (EnforcementResult::Applied, status) => (
            EnforcementResult::Failed,
            join(
                &report.detail,
                format!(
                    "the changes were made but the re-check is {}, so they are not confirmed: \
                     {recheck_summary}",
                    status_str(status)
                ),
            ),
        ),
        (EnforcementResult::AlreadyCompliant, status) => (
            EnforcementResult::Failed,
            join(
                &report.detail,
                format!(
                    "the enforcer found nothing left to change, but the re-check is {}: \
                     {recheck_summary}",
                    status_str(status)
                ),
            ),
        ),
    };
    EnforcementOutcome {
        result,
        changes: report.changes.clone(),
        recheck_status,
        detail,
    }
}

/// Restores everything the rule's enforcer changed, from its journal.
/// Returns one line per path restored; an empty list when there was nothing
/// recorded.
pub fn undo_rule(host: &Host, state_dir: &Path, rule: &RuleId) -> anyhow::Result<Vec<String>> {
    let Some(registered) = crate::checks::find_rule(rule.as_str()) else {
        anyhow::bail!(
            "unknown rule {rule:?}; known rules: {}",
            RuleId::ALL.join(", ")
        );
    };
    let journal = Journal::load(state_dir, rule.as_str())?;
    if journal.is_empty() {
        return Ok(Vec::new());
    }
    let restored_paths: Vec<String> = journal
        .entries()
        .iter()
        .map(|(path, _)| path.clone())
        .collect();
    let mut lines = journal.restore(host)?;
    // The rule may have to tell a service to re-read what was restored
    // (usb_storage: udev its rules).
    lines.extend(registered.after_undo(host, &restored_paths)?);
    Ok(lines)
}

fn not_in_policy(ctx: &EnforceContext<'_>, rule: &RuleId) -> anyhow::Result<EnforceReport> {
    anyhow::bail!("rule {rule:?} is not enabled by policy {:?}", ctx.policy.id)
}

fn enforced_event(rule: &RuleId, outcome: &EnforcementOutcome) -> Event {
    let mut details = Map::new();
    details.insert("rule".into(), json!(rule.as_str()));
    details.insert("result".into(), json!(result_str(outcome.result)));
    details.insert("changes".into(), json!(outcome.changes));
    details.insert(
        "recheck_status".into(),
        json!(status_str(outcome.recheck_status)),
    );
    if !outcome.detail.is_empty() {
        details.insert("detail".into(), json!(outcome.detail));
    }
    Event {
        kind: EventKind::Enforced,
        at: Utc::now(),
        details,
    }
}

pub fn result_str(result: EnforcementResult) -> &'static str {
    match result {
        EnforcementResult::Applied => "applied",
        EnforcementResult::AlreadyCompliant => "already_compliant",
        EnforcementResult::Failed => "failed",
        EnforcementResult::NotEnforceable => "not_enforceable",
    }
}

pub fn status_str(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "fail",
        CheckStatus::Unknown => "unknown",
        CheckStatus::Error => "error",
        CheckStatus::NotApplicable => "not_applicable",
        CheckStatus::Excepted => "excepted",
    }
}
