//! `palisade-agent enforce`: apply (or with `--dry-run`, only show) the
//! enforcers of the rules the policy enables, or with `--undo RULE` restore
//! what a rule's enforcer changed.
//!
//! An administrator's command: it enforces every enabled rule (or `--rule`)
//! whatever the rule's mode, then re-runs each rule's check and prints the
//! outcome the report would carry. A dry run writes nothing at all, not even
//! the undo record. The work is done by [`crate::enforce`]; this module only
//! parses, prints and picks the exit code.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use palisade_shared::RuleId;
use palisade_shared::report::EnforcementResult;

use super::exit;
use crate::checks::{self, REGISTRY};
use crate::enforce::{self, EnforceContext};
use crate::sys::Host;

#[derive(Debug, Args)]
pub struct EnforceArgs {
    /// Enforce only this rule (its id, as `check` prints it; an unknown id lists the known ones).
    #[arg(long, value_name = "ID")]
    pub rule: Option<String>,
    /// Print what would change and change nothing.
    #[arg(long, conflicts_with = "undo")]
    pub dry_run: bool,
    /// Restore everything this rule's enforcer changed, byte for byte.
    #[arg(long, value_name = "RULE", conflicts_with = "rule")]
    pub undo: Option<String>,
    /// Use this policy file instead of the built-in baseline.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Change the Linux files under DIR instead of / (commands that would
    /// reach the live system, such as `dconf update`, are not run).
    #[arg(long, value_name = "DIR")]
    pub host_root: Option<PathBuf>,
    /// Where the originals are kept (default: the agent's state directory,
    /// or DIR/var/lib/palisade under --host-root).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Runs the command and returns its exit code: 0 when every rule is
/// enforced (or already was, or cannot be), 1 when a rule's enforcement
/// failed or its re-check does not confirm it.
pub fn run(args: &EnforceArgs) -> anyhow::Result<u8> {
    let host = match &args.host_root {
        Some(root) if !root.is_dir() => bail!("host root {} is not a directory", root.display()),
        Some(root) => Host::with_root(root),
        None => Host::system(),
    };
    let state_dir = match (&args.state_dir, &args.host_root) {
        (Some(dir), _) => std::path::absolute(dir)?,
        (None, Some(root)) => std::path::absolute(root)?.join("var/lib/palisade"),
        (None, None) => crate::config::default_state_dir(),
    };

    if let Some(rule) = &args.undo {
        let lines = enforce::undo_rule(&host, &state_dir, &RuleId::new(rule.as_str()))?;
        if lines.is_empty() {
            println!(
                "{rule}: nothing to undo (no record in {})",
                state_dir.display()
            );
        } else {
            println!("{rule}: restored");
            for line in lines {
                println!("  {line}");
            }
        }
        return Ok(exit::COMPLIANT);
    }

    let policy = super::load_policy(args.policy.as_deref())?;
    let rules: Vec<&str> = match &args.rule {
        Some(id) => {
            if checks::find_rule(id).is_none() {
                let known: Vec<&str> = REGISTRY.iter().map(|r| r.id()).collect();
                bail!("unknown rule {id:?}; known rules: {}", known.join(", "));
            }
            if checks::rule_settings(&policy, id).is_none() {
                bail!("rule {id:?} is not enabled by policy {:?}", policy.id);
            }
            vec![id.as_str()]
        }
        None => REGISTRY
            .iter()
            .map(|r| r.id())
            .filter(|id| checks::rule_settings(&policy, id).is_some())
            .collect(),
    };
    let ctx = EnforceContext {
        host: &host,
        policy: &policy,
        state_dir: &state_dir,
        dry_run: args.dry_run,
    };
    let mut code = exit::COMPLIANT;
    for id in rules {
        let rule = RuleId::new(id);
        let report = enforce::enforce_rule(&ctx, &rule)?;
        if args.dry_run {
            let heading = match report.result {
                EnforcementResult::Applied => "would change",
                EnforcementResult::AlreadyCompliant => "nothing to change",
                EnforcementResult::Failed => {
                    code = exit::NON_COMPLIANT;
                    "would fail"
                }
                EnforcementResult::NotEnforceable => "not enforceable",
            };
            println!("{id}: {heading} (dry run)");
            print_lines(&report.changes, &report.detail);
            continue;
        }
        let recheck = checks::run_checks(&host, &policy, Some(id))
            .into_iter()
            .next();
        let outcome = enforce::outcome(
            &report,
            recheck.as_ref().map(|r| (r.status, r.summary.as_str())),
        );
        if outcome.result == EnforcementResult::Failed {
            code = exit::NON_COMPLIANT;
        }
        println!(
            "{id}: {} (re-check: {})",
            enforce::result_str(outcome.result).replace('_', " "),
            enforce::status_str(outcome.recheck_status)
        );
        print_lines(&outcome.changes, &outcome.detail);
        for event in &report.events {
            println!(
                "  event: {}",
                serde_json::Value::Object(event.details.clone())
            );
        }
    }
    Ok(code)
}

fn print_lines(changes: &[String], detail: &str) {
    for change in changes {
        println!("  {change}");
    }
    for note in detail.split("; ").filter(|n| !n.is_empty()) {
        println!("  note: {note}");
    }
}
