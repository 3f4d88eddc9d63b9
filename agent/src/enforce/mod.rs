//! Enforcement: making a failing rule pass by changing the machine, for the
//! rules the policy puts in `enforce` mode (and for an administrator running
//! `palisade-agent enforce`).
//!
//! Each rule module turns the policy into a [`Plan`]: the files to write or
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
//! `disk_encryption` is not enforceable: an agent cannot encrypt a disk for
//! its user, so that rule is only nudged.

pub mod journal;
pub mod password_policy;
pub mod screen_lock;
pub mod usb_storage;

/// The USB functions the daemon calls on uevents and at start.
pub use usb_storage as usb;

use std::path::Path;

use anyhow::Context as _;
use chrono::Utc;
use palisade_shared::Policy;
use palisade_shared::RuleId;
use palisade_shared::report::{
    CheckResult, CheckStatus, EnforcementOutcome, EnforcementResult, Event, EventKind, Mode,
};
use serde_json::{Map, json};

use crate::sys::{CommandSpec, Host};
use journal::Journal;

/// What an enforcer needs: the machine, the policy, where to keep originals,
/// and whether to only plan.
#[derive(Debug, Clone, Copy)]
pub struct EnforceContext<'a> {
    pub host: &'a Host,
    pub policy: &'a Policy,
    /// The agent's state directory; originals go to `enforce/<rule>/` in it.
    pub state_dir: &'a Path,
    /// Plan only: print what would change and write nothing.
    pub dry_run: bool,
}

/// What one enforcement did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq)]
pub struct EnforceReport {
    pub rule: RuleId,
    /// `Applied` here means "changes were made"; [`enforce_failing`] and the
    /// CLI turn it into `Failed` unless the re-check passes.
    pub result: EnforcementResult,
    /// One line per change: `write /etc/…`, `run dconf update`. In a dry run,
    /// the changes that would be made.
    pub changes: Vec<String>,
    /// Notes a person should read: what was left alone and why, or why it
    /// failed.
    pub detail: String,
    /// USB devices blocked along the way (`usb_device_blocked`).
    pub events: Vec<Event>,
}

/// Plans (`dry_run`) or applies one rule's enforcer. Idempotent: a second
/// run on an enforced machine changes nothing and says `already_compliant`.
pub fn enforce_rule(ctx: &EnforceContext<'_>, rule: &RuleId) -> anyhow::Result<EnforceReport> {
    let plan = match rule.as_str() {
        RuleId::SCREEN_LOCK => match &ctx.policy.screen_lock {
            Some(policy) => screen_lock::plan(ctx.host, policy)?,
            None => return not_in_policy(ctx, rule),
        },
        RuleId::PASSWORD_POLICY => match &ctx.policy.password_policy {
            Some(policy) => password_policy::plan(ctx.host, policy)?,
            None => return not_in_policy(ctx, rule),
        },
        RuleId::USB_STORAGE => match &ctx.policy.usb_storage {
            Some(policy) => usb_storage::plan(ctx.host, policy)?,
            None => return not_in_policy(ctx, rule),
        },
        RuleId::DISK_ENCRYPTION => {
            return Ok(EnforceReport {
                rule: rule.clone(),
                result: EnforcementResult::NotEnforceable,
                changes: Vec::new(),
                detail: "an agent cannot encrypt a disk for its user, so this rule is only nudged"
                    .into(),
                events: Vec::new(),
            });
        }
        other => anyhow::bail!("unknown rule {other:?}"),
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
    if !RuleId::ALL.contains(&rule.as_str()) {
        anyhow::bail!(
            "unknown rule {rule:?}; known rules: {}",
            RuleId::ALL.join(", ")
        );
    }
    let journal = Journal::load(state_dir, rule.as_str())?;
    if journal.is_empty() {
        return Ok(Vec::new());
    }
    let touched_udev = journal
        .entries()
        .iter()
        .any(|(path, _)| path.starts_with("/etc/udev/rules.d/"));
    let mut lines = journal.restore(host)?;
    // udev reads its rules at start and on reload; the restored set must be
    // the one it uses. Only the live system has a udev to tell.
    if touched_udev && host.is_live_system() {
        let command = usb_storage::udev_reload_command();
        run_checked(host, &command)?;
        lines.push(format!("run {}", command.display()));
    }
    Ok(lines)
}

// ---------------------------------------------------------------------------
// Plans and how they are carried out.

/// What an enforcer wants done, in order.
#[derive(Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Things a person should know that are not changes ("PAM is left
    /// alone"), shown in the detail.
    pub notes: Vec<String>,
    /// Why the enforcer refuses to act (a setting it must not edit wins over
    /// its own): the result is `failed` with this detail, and nothing is
    /// changed.
    pub refusal: Option<String>,
}

/// One change.
#[derive(Debug)]
pub enum Step {
    /// Write a file (absolute path under the host root), creating missing
    /// directories. `mode` applies to a new file; an existing one keeps its
    /// own.
    WriteFile {
        path: String,
        contents: Vec<u8>,
        mode: u32,
    },
    /// Remove a file.
    RemoveFile { path: String },
    /// Run a command that writes the listed files (recorded first).
    Run {
        command: CommandSpec,
        writes: Vec<String>,
    },
    /// Write a value into a sysfs attribute. Device state, not
    /// configuration: not recorded for undo (a replug resets it).
    WriteAttribute {
        path: String,
        value: String,
        description: String,
    },
    /// Something the live system would do that a host root cannot (run
    /// `blockdev` on a device): shown as a change, does nothing.
    Note(String),
    /// A USB event to report once the steps before it are done; shown as a
    /// change only when it has a description.
    Event {
        event: Event,
        description: Option<String>,
    },
}

impl Step {
    fn describe(&self, host: &Host) -> Option<String> {
        Some(match self {
            Self::WriteFile { path, .. } => {
                if host.path(path).exists() {
                    format!("write {path}")
                } else {
                    format!("create {path}")
                }
            }
            Self::RemoveFile { path } => format!("remove {path}"),
            Self::Run { command, .. } => format!("run {}", command.display()),
            Self::WriteAttribute { description, .. } => description.clone(),
            Self::Note(note) => note.clone(),
            Self::Event { description, .. } => return description.clone(),
        })
    }
}

fn execute(ctx: &EnforceContext<'_>, rule: &RuleId, plan: Plan) -> EnforceReport {
    let mut detail = plan.notes.join("; ");
    if let Some(refusal) = plan.refusal {
        tracing::warn!(rule = %rule, reason = %refusal, "enforcer refuses to act");
        let detail = if detail.is_empty() {
            refusal
        } else {
            format!("{refusal}; {detail}")
        };
        return EnforceReport {
            rule: rule.clone(),
            result: EnforcementResult::Failed,
            changes: Vec::new(),
            detail,
            events: Vec::new(),
        };
    }
    let descriptions: Vec<Option<String>> =
        plan.steps.iter().map(|s| s.describe(ctx.host)).collect();
    let events_planned: Vec<Event> = plan
        .steps
        .iter()
        .filter_map(|step| match step {
            Step::Event { event, .. } => Some(event.clone()),
            _ => None,
        })
        .collect();
    if plan.steps.is_empty() {
        return EnforceReport {
            rule: rule.clone(),
            result: EnforcementResult::AlreadyCompliant,
            changes: Vec::new(),
            detail,
            events: Vec::new(),
        };
    }
    if ctx.dry_run {
        return EnforceReport {
            rule: rule.clone(),
            result: EnforcementResult::Applied,
            changes: descriptions.into_iter().flatten().collect(),
            detail,
            events: events_planned,
        };
    }
    let mut changes = Vec::new();
    let mut events = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        let mut journal = Journal::load(ctx.state_dir, rule.as_str())?;
        for (step, description) in plan.steps.into_iter().zip(descriptions) {
            apply_step(ctx.host, &mut journal, rule, step, &mut events)?;
            if let Some(description) = description {
                tracing::info!(rule = %rule, change = %description, "enforced");
                changes.push(description);
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => EnforceReport {
            rule: rule.clone(),
            result: EnforcementResult::Applied,
            changes,
            detail,
            events,
        },
        Err(err) => {
            tracing::warn!(rule = %rule, error = %format!("{err:#}"), "enforcement failed");
            let failure = format!("{err:#}");
            detail = if detail.is_empty() {
                failure
            } else {
                format!("{failure}; {detail}")
            };
            EnforceReport {
                rule: rule.clone(),
                result: EnforcementResult::Failed,
                changes,
                detail,
                events,
            }
        }
    }
}

fn apply_step(
    host: &Host,
    journal: &mut Journal,
    rule: &RuleId,
    step: Step,
    events: &mut Vec<Event>,
) -> anyhow::Result<()> {
    match step {
        Step::WriteFile {
            path,
            contents,
            mode,
        } => {
            create_parents(host, journal, &path)?;
            journal.record_file(host, &path)?;
            let target = host.path(&path);
            let mode = journal::current_mode(&target).unwrap_or(mode);
            journal::write_file(&target, &contents, mode)
                .with_context(|| format!("cannot write {path}"))?;
        }
        Step::RemoveFile { path } => {
            journal.record_file(host, &path)?;
            crate::durable::remove_durably(&host.path(&path))
                .with_context(|| format!("cannot remove {path}"))?;
        }
        Step::Run { command, writes } => {
            for path in &writes {
                create_parents(host, journal, path)?;
                journal.record_file(host, path)?;
            }
            run_checked(host, &command)?;
        }
        Step::WriteAttribute { path, value, .. } => {
            write_attribute(&host.path(&path), &value)
                .with_context(|| format!("cannot write {value:?} to {path}"))?;
        }
        Step::Note(note) => {
            tracing::info!(rule = %rule, note = %note, "not done under a host root");
        }
        Step::Event { event, .. } => {
            tracing::info!(rule = %rule, details = %serde_json::Value::Object(event.details.clone()), "USB device blocked");
            events.push(event);
        }
    }
    Ok(())
}

/// Creates the missing parent directories of `path`, recording each for undo.
fn create_parents(host: &Host, journal: &mut Journal, path: &str) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut current = Path::new(path).parent();
    while let Some(dir) = current {
        let text = dir.to_string_lossy();
        if text == "/" || text.is_empty() || host.path(&text).is_dir() {
            break;
        }
        missing.push(text.into_owned());
        current = dir.parent();
    }
    for dir in missing.into_iter().rev() {
        journal.record_created_directory(&dir)?;
        let target = host.path(&dir);
        std::fs::create_dir(&target).with_context(|| format!("cannot create directory {dir}"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot set the mode of {dir}"))?;
        }
    }
    Ok(())
}

/// Writes a sysfs attribute the way `echo 0 > authorized` does: open for
/// writing (no create, no rename: sysfs allows neither) and write.
pub(crate) fn write_attribute(target: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(target)?;
    file.write_all(value.as_bytes())
}

pub(crate) fn run_checked(host: &Host, command: &CommandSpec) -> anyhow::Result<()> {
    let output = host
        .run(command)
        .with_context(|| format!("cannot run {}", command.display()))?;
    if !output.success() {
        let stderr = output.stderr.trim();
        anyhow::bail!(
            "`{}` failed ({}){}",
            command.display(),
            output
                .exit_code
                .map_or("ended by a signal".to_owned(), |c| format!("exit code {c}")),
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        );
    }
    tracing::info!(command = %command.display(), "ran command");
    Ok(())
}

/// Adds a `WriteFile` step when the file's bytes differ from `contents`.
pub(crate) fn write_if_different(
    host: &Host,
    plan: &mut Plan,
    path: &str,
    contents: String,
) -> anyhow::Result<bool> {
    let current = match std::fs::read(host.path(path)) {
        Ok(bytes) => Some(bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("cannot read {path}")),
    };
    if current.as_deref() == Some(contents.as_bytes()) {
        return Ok(false);
    }
    plan.steps.push(Step::WriteFile {
        path: path.to_owned(),
        contents: contents.into_bytes(),
        mode: 0o644,
    });
    Ok(true)
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

/// The absolute form of a path under the host root, for a command line or
/// a dconf profile (a relative `--host-root .` must not leak into them).
pub(crate) fn absolute_host_path(host: &Host, absolute: &str) -> anyhow::Result<String> {
    let path = std::path::absolute(host.path(absolute))
        .with_context(|| format!("cannot make {absolute} absolute under the host root"))?;
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("the path {} is not UTF-8", path.display()))
}
