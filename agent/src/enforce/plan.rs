//! The generic half of enforcement: what an enforcer returns (a [`Plan`] of
//! [`Step`]s) and how a plan is carried out, recording each path's original
//! in the rule's journal before changing it.
//!
//! The rules' enforcers (`checks/<rule>/enforce.rs`) build plans with the
//! helpers here; `enforce/mod.rs` picks the enforcer from the registry and
//! re-checks. This file knows no rule and nothing of the registry, so the
//! rules can lean on it without an import circle.

use std::path::Path;

use anyhow::Context as _;
use palisade_shared::Policy;
use palisade_shared::RuleId;
use palisade_shared::error_text::describe;
use palisade_shared::report::{EnforcementResult, Event};

use super::journal::{self, Journal};
use crate::sys::{CommandSpec, Host};

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
    /// `Applied` here means "changes were made"; [`super::enforce_failing`] and the
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

impl Plan {
    /// The plan of an enforcer that has nothing for this live system yet:
    /// a refusal, so a rule's Linux paths are never written where they mean
    /// nothing (`/etc/...` would become `C:\etc\...` on Windows).
    pub fn no_enforcer_yet(what: &str) -> Self {
        Self {
            refusal: Some(format!(
                "no {what} enforcer for {} yet",
                std::env::consts::OS
            )),
            ..Self::default()
        }
    }

    /// Whether `host` is a live system the Linux enforcers do not fit.
    pub fn is_foreign_live_system(host: &Host) -> bool {
        host.is_live_system() && !cfg!(target_os = "linux")
    }
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
    /// Set a REG_DWORD under HKLM (Windows; `key` without the hive), the
    /// value it replaces recorded first.
    SetRegistryDword {
        key: String,
        name: String,
        value: u32,
        /// What is there now (`None`: absent), as the plan read it.
        current: Option<u32>,
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
            Self::SetRegistryDword {
                key, name, value, ..
            } => format!("set {} = {value}", journal::registry_path(key, name)),
            Self::Note(note) => note.clone(),
            Self::Event { description, .. } => return description.clone(),
        })
    }
}

pub(crate) fn execute(ctx: &EnforceContext<'_>, rule: &RuleId, plan: Plan) -> EnforceReport {
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
            tracing::warn!(rule = %rule, error = %describe(&*err), "enforcement failed");
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
        Step::SetRegistryDword {
            key,
            name,
            value,
            current,
        } => {
            journal.record_registry_dword(&key, &name, current)?;
            set_registry_dword(&key, &name, value)
                .with_context(|| format!("cannot set {}", journal::registry_path(&key, &name)))?;
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

#[cfg(windows)]
fn set_registry_dword(key: &str, name: &str, value: u32) -> std::io::Result<()> {
    use crate::sys::registry::{self, Hive};
    registry::write_dword(Hive::LocalMachine, key, name, value)
}

#[cfg(not(windows))]
fn set_registry_dword(_key: &str, _name: &str, _value: u32) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "the registry exists only on Windows",
    ))
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

/// The absolute form of a path under the host root, for a command line or
/// a dconf profile (a relative `--host-root .` must not leak into them).
pub(crate) fn absolute_host_path(host: &Host, absolute: &str) -> anyhow::Result<String> {
    let path = std::path::absolute(host.path(absolute))
        .with_context(|| format!("cannot make {absolute} absolute under the host root"))?;
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("the path {} is not UTF-8", path.display()))
}
