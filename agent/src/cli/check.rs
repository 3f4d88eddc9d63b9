//! `palisade-agent check`: run the rules once and print the verdicts.
//!
//! Read-only: it never enforces and never sends anything.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use palisade_shared::report::{CheckResult, CheckStatus};

use super::exit;
use crate::checks::{self, REGISTRY};
use crate::sys::Host;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the report document (JSON, the shared schema, unsigned) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Run only this rule (its id, as `check` prints it; an unknown id lists the known ones).
    #[arg(long, value_name = "ID")]
    pub rule: Option<String>,
    /// Use this policy file instead of the built-in baseline.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Read the Linux files (/etc, /sys, /proc, /run) under DIR instead of /.
    #[arg(long, value_name = "DIR")]
    pub host_root: Option<PathBuf>,
}

/// Runs the command and returns its exit code.
pub fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    let policy = super::load_policy(args.policy.as_deref())?;
    if let Some(id) = &args.rule {
        if checks::find_rule(id).is_none() {
            let known: Vec<&str> = REGISTRY.iter().map(|r| r.id()).collect();
            bail!("unknown rule {id:?}; known rules: {}", known.join(", "));
        }
        if checks::rule_settings(&policy, id).is_none() {
            bail!("rule {id:?} is not enabled by policy {:?}", policy.id);
        }
    }
    let host = match &args.host_root {
        Some(root) if !root.is_dir() => bail!("host root {} is not a directory", root.display()),
        Some(root) => Host::with_root(root),
        None => Host::system(),
    };
    let results = checks::run_checks(&host, &policy, args.rule.as_deref());
    if args.json {
        let report = crate::report::standalone_report(&host, &policy, results.clone());
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", table(&results));
        println!("policy {} version {}", policy.id, policy.version);
    }
    Ok(exit_code(&results))
}

/// 1 on any failure, else 3 if anything is undetermined, else 0.
pub fn exit_code(results: &[CheckResult]) -> u8 {
    let any = |wanted: &[CheckStatus]| results.iter().any(|r| wanted.contains(&r.status));
    if any(&[CheckStatus::Fail]) {
        exit::NON_COMPLIANT
    } else if any(&[CheckStatus::Unknown, CheckStatus::Error]) {
        exit::UNDETERMINED
    } else {
        exit::COMPLIANT
    }
}

fn table(results: &[CheckResult]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(120)
        .set_header(["rule", "status", "summary", "fix"]);
    for result in results {
        table.add_row([
            result.id.as_str(),
            result.status.as_str(),
            result.summary.as_str(),
            result.fix.as_str(),
        ]);
    }
    table
}
