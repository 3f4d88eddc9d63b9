//! The device rules and the machinery that runs them.
//!
//! Each rule lives in its own module and has three parts (design §3):
//!
//! 1. a **probe** that gathers facts from the machine through [`Host`], thin
//!    and per-OS;
//! 2. **parsers**: pure functions from captured text to facts, compiled and
//!    tested on every OS against real captures in `agent/tests/fixtures/`;
//! 3. **evaluate**: a pure function from facts and the rule's policy to a
//!    [`Verdict`].
//!
//! The [`Rule`] trait ties the three together and [`REGISTRY`] lists the rules:
//! adding one touches its own module and one line here. [`run_checks`] runs
//! them; a probe that fails or panics becomes that rule's `error` verdict and
//! the others still run. Nothing here changes the machine (that is
//! `enforce/`), and nothing here talks to the network.

pub mod disk_encryption;
pub mod password_policy;
pub mod screen_lock;
pub mod usb_storage;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use palisade_shared::Policy;
use palisade_shared::RuleId;
use palisade_shared::policy::RuleSettings;
use palisade_shared::report::{CheckResult, CheckStatus};
use serde_json::{Map, Value};

use crate::sys::Host;

/// A rule's decision about the facts.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub status: CheckStatus,
    /// One line a person can read.
    pub summary: String,
    /// The facts that decided, as the report will carry them.
    pub evidence: Map<String, Value>,
    /// What a person should do; empty when nothing.
    pub fix: String,
}

impl Verdict {
    pub fn new(status: CheckStatus, summary: impl Into<String>) -> Self {
        Self {
            status,
            summary: summary.into(),
            evidence: Map::new(),
            fix: String::new(),
        }
    }

    pub fn with_evidence(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.evidence.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = fix.into();
        self
    }
}

/// Why a probe could not produce facts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The facts cannot be determined here (a tool is missing, a file is
    /// unreadable, the OS has no probe yet): the verdict is `unknown`.
    #[error("{0}")]
    Undeterminable(String),
    /// The probe broke in a way that needs a fix in the agent: `error`.
    #[error("{0}")]
    Failed(String),
}

/// One device rule: its id, how it finds facts and how it judges them.
pub trait Rule: Sync {
    /// The rule's own section of the policy.
    type Policy;
    /// What the probe found.
    type Facts;

    /// The stable id, as in the policy file and the report.
    fn id(&self) -> &'static str;

    /// The rule's policy, or `None` when the policy leaves the rule out.
    fn policy<'p>(&self, policy: &'p Policy) -> Option<&'p Self::Policy>;

    /// Gathers facts from the machine. Thin: reading and running only, the
    /// text goes to a pure parser.
    fn probe(&self, host: &Host, policy: &Self::Policy) -> Result<Self::Facts, ProbeError>;

    /// Decides. Pure: no I/O, no clock.
    fn evaluate(&self, facts: &Self::Facts, policy: &Self::Policy) -> Verdict;

    /// The files and directories (absolute, as on Linux) whose change can
    /// change the verdict: the daemon watches them and checks at once when
    /// one changes. Device changes come as uevents and need no entry here.
    fn watched_paths(&self) -> &'static [&'static str] {
        &[]
    }
}

/// What a rule's probe says on a live system it has no probe for yet (the
/// Windows and macOS probes of most rules): the verdict is `unknown`.
pub(crate) fn no_probe_yet(what: &str) -> ProbeError {
    ProbeError::Undeterminable(format!("no {what} probe for {} yet", std::env::consts::OS))
}

/// The object-safe face of a [`Rule`], so the registry can hold them all.
pub trait RegisteredRule: Sync {
    fn id(&self) -> &'static str;
    /// Runs the rule if the policy enables it.
    fn run(&self, host: &Host, policy: &Policy) -> Option<CheckResult>;
    /// See [`Rule::watched_paths`].
    fn watched_paths(&self) -> &'static [&'static str];
}

impl<R: Rule> RegisteredRule for R {
    fn id(&self) -> &'static str {
        Rule::id(self)
    }

    fn watched_paths(&self) -> &'static [&'static str] {
        Rule::watched_paths(self)
    }

    fn run(&self, host: &Host, policy: &Policy) -> Option<CheckResult> {
        let rule_policy = self.policy(policy)?;
        let settings = policy.rule_settings(Rule::id(self))?;
        let started = Instant::now();
        // A bug in one probe must not take the other rules (or the daemon)
        // down with it: catch the panic and report it as this rule's error.
        let probed = catch_unwind(AssertUnwindSafe(|| self.probe(host, rule_policy)));
        let probe_duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let verdict = match probed {
            Ok(Ok(facts)) => catch_unwind(AssertUnwindSafe(|| self.evaluate(&facts, rule_policy)))
                .unwrap_or_else(|panic| panicked("evaluator", &panic)),
            Ok(Err(ProbeError::Undeterminable(reason))) => Verdict::new(
                CheckStatus::Unknown,
                format!("could not determine: {reason}"),
            ),
            Ok(Err(ProbeError::Failed(reason))) => {
                Verdict::new(CheckStatus::Error, format!("probe failed: {reason}"))
            }
            Err(panic) => panicked("probe", &panic),
        };
        if matches!(verdict.status, CheckStatus::Error) {
            tracing::warn!(rule = Rule::id(self), summary = %verdict.summary, "check failed to run");
        }
        Some(to_result(
            Rule::id(self),
            settings,
            verdict,
            probe_duration_us,
        ))
    }
}

fn panicked(part: &str, panic: &(dyn std::any::Any + Send)) -> Verdict {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    Verdict::new(CheckStatus::Error, format!("{part} panicked: {message}"))
}

fn to_result(
    id: &str,
    settings: RuleSettings,
    verdict: Verdict,
    probe_duration_us: u64,
) -> CheckResult {
    CheckResult {
        id: RuleId::new(id),
        status: verdict.status,
        mode: settings.mode,
        summary: verdict.summary,
        evidence: verdict.evidence,
        fix: verdict.fix,
        probe_duration_us,
        enforcement: None,
        first_failed_at: None,
        deadline: None,
    }
}

/// Every rule this agent knows, in report order.
pub static REGISTRY: &[&dyn RegisteredRule] = &[
    &screen_lock::ScreenLock,
    &disk_encryption::DiskEncryption,
    &password_policy::PasswordRule,
    &usb_storage::UsbStorage,
];

/// Looks a rule up by id.
pub fn find_rule(id: &str) -> Option<&'static dyn RegisteredRule> {
    REGISTRY.iter().copied().find(|rule| rule.id() == id)
}

/// Runs every rule the policy enables (or only `only`, when given).
pub fn run_checks(host: &Host, policy: &Policy, only: Option<&str>) -> Vec<CheckResult> {
    REGISTRY
        .iter()
        .filter(|rule| only.is_none_or(|id| rule.id() == id))
        .filter_map(|rule| rule.run(host, policy))
        .collect()
}

/// Every path some rule wants watched, each once.
pub fn watched_paths() -> Vec<&'static str> {
    let mut paths: Vec<&'static str> = REGISTRY
        .iter()
        .flat_map(|rule| rule.watched_paths().iter().copied())
        .collect();
    paths.sort_unstable();
    paths.dedup();
    paths
}
