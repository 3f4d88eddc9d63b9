//! The device rules and the machinery that runs them.
//!
//! Each rule is a folder, `checks/<rule>/`, in three parts (design §3):
//!
//! 1. a **probe** that gathers facts from the machine through [`Host`], thin
//!    and per-OS: `linux.rs`, `windows.rs`, `macos.rs` (the last two say
//!    "no probe yet" for now, through `no_probe_yet`); `mod.rs` picks one;
//! 2. **parsers**: pure functions from captured text to facts, compiled and
//!    tested on every OS against real captures in `agent/tests/fixtures/`;
//! 3. **evaluate** (`evaluate.rs`): a pure function from facts and the rule's
//!    policy to a [`Verdict`].
//!
//! Beside them `enforce.rs` holds the rule's enforcer, if it has one, and
//! `tests.rs` its tests. Only `mod.rs`, the probes and `enforce.rs` may use
//! `crate::sys`.
//!
//! The [`Rule`] trait ties the three together, with everything else the
//! agent knows about a rule: its enforcer (or why it has none), its texts
//! for the desktop nudge, its device hooks. [`REGISTRY`] lists the rules:
//! adding one touches its own folder and, here, its `pub mod` line and its
//! [`REGISTRY`] line; nothing elsewhere in the agent names a rule id.
//! [`run_checks`] runs them; a probe that fails or panics becomes that
//! rule's `error` verdict and the others still run. Checks never change the
//! machine (enforcers do, through `enforce/`, which carries their plans
//! out), and nothing here talks to the network.

pub mod disk_encryption;
// Test support for the rules' sysfs-tree tests.
#[cfg(all(test, unix))]
mod host_tree;
pub mod password_policy;
pub mod screen_lock;
pub mod usb_storage;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use palisade_shared::Policy;
use palisade_shared::RuleId;
use palisade_shared::policy::RuleSettings;
use palisade_shared::report::{CheckResult, CheckStatus, Event};
use serde_json::{Map, Value};

use crate::enforce::plan::Plan;
use crate::sys::{Host, Uevent};

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

/// How a rule is enforced.
#[derive(Debug)]
pub enum Enforcer<P: 'static> {
    /// Plans the changes that make the rule pass, computed from what is on
    /// disk now so that a second run plans nothing (`enforce/plan.rs` carries
    /// the plan out and journals it for undo).
    Plans(fn(&Host, &P) -> anyhow::Result<Plan>),
    /// Why no agent can enforce the rule: it is only nudged.
    NotEnforceable(&'static str),
}

/// What [`RegisteredRule::plan_enforcement`] found to do.
#[derive(Debug)]
pub enum EnforcementPlan {
    Planned(Plan),
    /// The policy leaves the rule out.
    NotInPolicy,
    /// See [`Enforcer::NotEnforceable`].
    NotEnforceable(&'static str),
}

/// One device rule: its id, how it finds facts and how it judges them, how
/// it is enforced, and its words for the person at the keyboard.
pub trait Rule: Sync {
    /// The rule's own section of the policy.
    type Policy: 'static;
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

    /// The settings every rule has (mode, grace days), from its section.
    fn settings(&self, policy: &Self::Policy) -> RuleSettings;

    /// How the rule is enforced, or why it cannot be.
    fn enforcer(&self) -> Enforcer<Self::Policy>;

    /// Runs after `enforce --undo` restored these paths from the rule's
    /// journal (a daemon told to re-read them); returns one line per thing
    /// done.
    fn after_undo(&self, _host: &Host, _restored_paths: &[String]) -> anyhow::Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// The rule in words: the title of its notification.
    fn title(&self) -> &'static str;

    /// Why the rule matters, one sentence a person at the keyboard accepts.
    fn why_it_matters(&self) -> &'static str;

    /// The arguments that open the desktop settings panel where a person
    /// fixes the rule, if there is one (`nudge/desktop.rs` runs them).
    fn settings_panel(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// The kernel announced a device change: a rule about devices decides
    /// whether it is one to act on, acts at once when its policy enforces
    /// (before anything can mount a new disk), and returns the event to
    /// report.
    fn on_device_event(
        &self,
        _host: &Host,
        _policy: &Policy,
        _uevent: &Uevent,
    ) -> anyhow::Result<Option<Event>> {
        Ok(None)
    }

    /// The same for every device already present (daemon start).
    fn sweep_devices(&self, _host: &Host, _policy: &Policy) -> anyhow::Result<Vec<Event>> {
        Ok(Vec::new())
    }
}

/// A setting as a probe read it (a Windows registry value; on macOS a
/// `defaults` key or a managed preferences file): there, absent (which has
/// a meaning: nothing set), or unreadable (which makes a verdict `unknown`).
/// Defined here, not in `sys/`, so the pure evaluators can take it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RegistryRead<T> {
    Value(T),
    #[default]
    Absent,
    Unreadable(String),
}

impl<T: serde::Serialize> RegistryRead<T> {
    /// As report evidence: the value, `"absent"`, or `{"unreadable": why}`.
    pub fn evidence(&self) -> serde_json::Value {
        match self {
            Self::Value(value) => serde_json::json!(value),
            Self::Absent => serde_json::json!("absent"),
            Self::Unreadable(reason) => serde_json::json!({ "unreadable": reason }),
        }
    }
}

impl<T> RegistryRead<T> {
    /// From a `sys::registry` read; the error is kept as its text.
    pub fn from_io(read: std::io::Result<Option<T>>) -> Self {
        match read {
            Ok(Some(value)) => Self::Value(value),
            Ok(None) => Self::Absent,
            Err(err) => Self::Unreadable(err.to_string()),
        }
    }
}

/// What a rule's probe says on a live system it has no probe for yet (the
/// Windows and macOS probes of most rules): the verdict is `unknown`.
#[cfg(not(windows))] // every rule has its Windows probe
/// A command's stdout, or why there is none in words for the evidence: it
/// could not run, or it exited non-zero (then with its stderr). For probes
/// that turn a failed tool into a fact rather than a probe error; only the
/// macOS probes use it so far.
#[cfg(target_os = "macos")]
pub(crate) fn command_stdout(
    host: &Host,
    command: &crate::sys::CommandSpec,
) -> Result<String, String> {
    let output = host.run(command).map_err(|err| err.to_string())?;
    if output.success() {
        return Ok(output.stdout);
    }
    let status = output
        .exit_code
        .map_or_else(|| "a signal".to_owned(), |code| format!("status {code}"));
    Err(format!(
        "`{}` exited with {status}: {}",
        command.display(),
        output.stderr.trim()
    ))
}

// Only a system with neither a native probe nor Linux's (e.g. FreeBSD)
// gets here.
#[cfg(not(any(windows, target_os = "macos")))]
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
    /// The rule's settings, or `None` when the policy leaves it out.
    fn settings(&self, policy: &Policy) -> Option<RuleSettings>;
    /// The rule's enforcement plan for this policy and machine.
    fn plan_enforcement(&self, host: &Host, policy: &Policy) -> anyhow::Result<EnforcementPlan>;
    /// See [`Rule::after_undo`].
    fn after_undo(&self, host: &Host, restored_paths: &[String]) -> anyhow::Result<Vec<String>>;
    /// See [`Rule::title`].
    fn title(&self) -> &'static str;
    /// See [`Rule::why_it_matters`].
    fn why_it_matters(&self) -> &'static str;
    /// See [`Rule::settings_panel`].
    fn settings_panel(&self) -> Option<&'static [&'static str]>;
    /// See [`Rule::on_device_event`].
    fn on_device_event(
        &self,
        host: &Host,
        policy: &Policy,
        uevent: &Uevent,
    ) -> anyhow::Result<Option<Event>>;
    /// See [`Rule::sweep_devices`].
    fn sweep_devices(&self, host: &Host, policy: &Policy) -> anyhow::Result<Vec<Event>>;
}

impl<R: Rule> RegisteredRule for R {
    fn id(&self) -> &'static str {
        Rule::id(self)
    }

    fn watched_paths(&self) -> &'static [&'static str] {
        Rule::watched_paths(self)
    }

    fn settings(&self, policy: &Policy) -> Option<RuleSettings> {
        self.policy(policy)
            .map(|rule_policy| Rule::settings(self, rule_policy))
    }

    fn plan_enforcement(&self, host: &Host, policy: &Policy) -> anyhow::Result<EnforcementPlan> {
        // Not enforceable whatever the policy says, as before the registry
        // carried enforcers: the reason is the same either way.
        let plan = match self.enforcer() {
            Enforcer::NotEnforceable(reason) => return Ok(EnforcementPlan::NotEnforceable(reason)),
            Enforcer::Plans(plan) => plan,
        };
        match self.policy(policy) {
            Some(rule_policy) => Ok(EnforcementPlan::Planned(plan(host, rule_policy)?)),
            None => Ok(EnforcementPlan::NotInPolicy),
        }
    }

    fn after_undo(&self, host: &Host, restored_paths: &[String]) -> anyhow::Result<Vec<String>> {
        Rule::after_undo(self, host, restored_paths)
    }

    fn title(&self) -> &'static str {
        Rule::title(self)
    }

    fn why_it_matters(&self) -> &'static str {
        Rule::why_it_matters(self)
    }

    fn settings_panel(&self) -> Option<&'static [&'static str]> {
        Rule::settings_panel(self)
    }

    fn on_device_event(
        &self,
        host: &Host,
        policy: &Policy,
        uevent: &Uevent,
    ) -> anyhow::Result<Option<Event>> {
        Rule::on_device_event(self, host, policy, uevent)
    }

    fn sweep_devices(&self, host: &Host, policy: &Policy) -> anyhow::Result<Vec<Event>> {
        Rule::sweep_devices(self, host, policy)
    }

    fn run(&self, host: &Host, policy: &Policy) -> Option<CheckResult> {
        let rule_policy = self.policy(policy)?;
        let settings = Rule::settings(self, rule_policy);
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

/// The settings of a rule by id, or `None` when the rule is unknown or the
/// policy leaves it out (then the rule is not checked).
pub fn rule_settings(policy: &Policy, id: &str) -> Option<RuleSettings> {
    find_rule(id)?.settings(policy)
}

/// Tells the rules the kernel announced a device change (see
/// [`Rule::on_device_event`]): the first event a rule returns, or the first
/// error.
pub fn on_device_event(
    host: &Host,
    policy: &Policy,
    uevent: &Uevent,
) -> anyhow::Result<Option<Event>> {
    for rule in REGISTRY {
        if let Some(event) = rule.on_device_event(host, policy, uevent)? {
            return Ok(Some(event));
        }
    }
    Ok(None)
}

/// Asks the rules to act on the devices already present (see
/// [`Rule::sweep_devices`]): every rule's events, or the first error.
pub fn sweep_devices(host: &Host, policy: &Policy) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    for rule in REGISTRY {
        events.extend(rule.sweep_devices(host, policy)?);
    }
    Ok(events)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry is the one place that knows the rules: it must know
    /// every rule id of the wire schema, once each, and give each the words
    /// a nudge needs.
    #[test]
    fn the_registry_holds_every_rule_id_once_with_its_words() {
        let mut ids: Vec<&str> = REGISTRY.iter().map(|rule| rule.id()).collect();
        ids.sort_unstable();
        let mut expected = RuleId::ALL.to_vec();
        expected.sort_unstable();
        assert_eq!(ids, expected);
        for rule in REGISTRY {
            assert!(!rule.title().is_empty(), "{} has no title", rule.id());
            assert!(
                rule.why_it_matters().ends_with('.'),
                "{}'s reason is not a sentence",
                rule.id()
            );
            assert!(find_rule(rule.id()).is_some_and(|found| found.id() == rule.id()));
        }
        assert!(find_rule("no_such_rule").is_none());
    }
}
