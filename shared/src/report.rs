//! The posture report, schema version 1: what one check cycle found on one
//! device.
//!
//! A report is the payload of a DSSE envelope of type
//! [`REPORT_PAYLOAD_TYPE`](crate::envelope::REPORT_PAYLOAD_TYPE). Reports from
//! one device form a hash chain: `sequence` increases by one each time and
//! `prev_digest` is the SHA-256 of the previous report's payload bytes, so a
//! gap or a rewrite in the stored history is visible.
//!
//! Unknown fields are rejected on input (`deny_unknown_fields`): a newer agent
//! that adds a field must raise `schema_version`. A full example lives in
//! `shared/tests/data/report-v1.json` and is checked by the tests.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::envelope::is_sha256_hex;
use crate::ids::{DeviceId, RuleId};

/// The only report schema version this crate reads and writes.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// One posture report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Always [`REPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    pub device_id: DeviceId,
    /// Strictly increasing per device, starting at 1. `palisade-agent check`
    /// prints documents with sequence 0: they are not part of any chain.
    pub sequence: u64,
    /// When the agent finished the check cycle, RFC 3339 in UTC.
    pub issued_at: DateTime<Utc>,
    /// Lowercase hex SHA-256 of the previous report's payload bytes; empty for
    /// a device's first report.
    pub prev_digest: String,
    pub agent: AgentInfo,
    pub host: HostInfo,
    pub policy: PolicyRef,
    pub checks: Vec<CheckResult>,
    #[serde(default)]
    pub events: Vec<Event>,
}

/// Which agent produced the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInfo {
    /// The agent's semantic version, e.g. `0.1.0`.
    pub version: String,
    /// The operating system family the agent was built for: `linux`,
    /// `macos` or `windows`.
    pub os: String,
}

/// Facts about the machine that help IT recognise it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    pub hostname: String,
    /// Human-readable OS name and version, e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    /// CPU architecture as Rust names it: `x86_64`, `aarch64`.
    pub arch: String,
    /// The person using the machine: the user of the active graphical (or
    /// else console) session when the report was made. Absent when nobody is
    /// logged in or the agent cannot tell. IT finds a laptop by its user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_user: Option<String>,
}

/// The policy the checks were evaluated against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    pub id: String,
    pub version: u64,
    /// Lowercase hex SHA-256 of the policy's TOML text.
    pub digest: String,
}

/// The outcome of one rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckResult {
    pub id: RuleId,
    pub status: CheckStatus,
    pub mode: Mode,
    /// One line a person can read, e.g. "screen locks after 1800 s idle; policy allows 900 s".
    pub summary: String,
    /// The facts that decided the verdict, shaped per rule.
    pub evidence: Map<String, Value>,
    /// What a person should do to pass; empty when there is nothing to do.
    pub fix: String,
    /// How long the probe took to gather its facts, in microseconds.
    pub probe_duration_us: u64,
    /// Present when the rule is in `enforce` mode and the agent acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<EnforcementOutcome>,
    /// When this rule first failed in the current run of failures (nudge mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_at: Option<DateTime<Utc>>,
    /// `first_failed_at` plus the rule's grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
}

/// A verdict's status.
///
/// `unknown` means the agent could not tell; it is never rounded to `pass`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// The facts could not be determined (missing tool, unreadable setting).
    Unknown,
    /// The probe itself failed (a crash, an unexpected error).
    Error,
    /// The rule does not apply to this device (e.g. no graphical session).
    NotApplicable,
    /// The rule fails, but IT granted an exception that has not expired.
    Excepted,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Unknown => "unknown",
            Self::Error => "error",
            Self::NotApplicable => "not_applicable",
            Self::Excepted => "excepted",
        }
    }
}

/// What the agent does about a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Report only.
    Audit,
    /// Report and notify the person at the keyboard, with a deadline.
    Nudge,
    /// Change the setting, re-check, report what was done, and notify.
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audit => "audit",
            Self::Nudge => "nudge",
            Self::Enforce => "enforce",
        }
    }
}

/// What an enforcer did and whether the re-check passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforcementOutcome {
    pub result: EnforcementResult,
    /// What was changed, one entry per file or setting.
    pub changes: Vec<String>,
    /// The status of the check run again after the change.
    pub recheck_status: CheckStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementResult {
    Applied,
    AlreadyCompliant,
    Failed,
    /// The rule cannot be enforced by an agent (e.g. disk encryption).
    NotEnforceable,
}

/// Something that happened on the device between two reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub details: Map<String, Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    AgentStarted,
    /// The spool was full and the oldest reports were dropped; `details.count`.
    SpoolDropped,
    /// Check cycles whose report could not be written (a full or failing
    /// disk): `details.count`, and `details.since`, when the first was.
    CyclesUnrecorded,
    UsbDeviceBlocked,
    PolicyApplied,
    /// A policy failed verification and was refused; the last good one stays.
    PolicyRejected,
    Enforced,
}

/// Why a report document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("report is not valid JSON for schema version 1: {0}")]
    Invalid(String),
    #[error("schema_version is {0}, only version 1 is understood")]
    UnsupportedVersion(u32),
    #[error("{field}: {reason}")]
    BadField { field: &'static str, reason: String },
}

/// The first free-text field of `host` or `agent` that holds U+0000, if
/// any. The collector stores these fields as text, and PostgreSQL cannot
/// store U+0000 in a `TEXT` column: one such report or enrollment would
/// fail the whole write batch it lands in (503 for every device in it, and
/// an unhealthy collector), while SQLite would store it. No OS names a
/// host, a user or a version with it, so it is refused as malformed, alike
/// on both stores.
pub fn nul_field(host: &HostInfo, agent: &AgentInfo) -> Option<&'static str> {
    let texts = [
        ("host.hostname", host.hostname.as_str()),
        ("host.os_name", &host.os_name),
        ("host.os_version", &host.os_version),
        ("host.kernel_version", &host.kernel_version),
        ("host.arch", &host.arch),
        (
            "host.console_user",
            host.console_user.as_deref().unwrap_or(""),
        ),
        ("agent.version", &agent.version),
        ("agent.os", &agent.os),
    ];
    texts
        .into_iter()
        .find(|(_, text)| text.contains('\0'))
        .map(|(field, _)| field)
}

fn nul_refused(field: &'static str) -> SchemaError {
    SchemaError::BadField {
        field,
        reason: "contains a NUL character (U+0000)".into(),
    }
}

impl Report {
    /// Parses and validates a report payload as received from the wire.
    pub fn from_json(payload: &[u8]) -> Result<Self, SchemaError> {
        let report: Self =
            serde_json::from_slice(payload).map_err(|err| SchemaError::Invalid(err.to_string()))?;
        report.validate()?;
        Ok(report)
    }

    /// Checks what serde's types cannot express.
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.schema_version != REPORT_SCHEMA_VERSION {
            return Err(SchemaError::UnsupportedVersion(self.schema_version));
        }
        if self.device_id.as_str().is_empty() {
            return Err(SchemaError::BadField {
                field: "device_id",
                reason: "is empty".into(),
            });
        }
        let digest_ok = self.prev_digest.is_empty() || is_sha256_hex(&self.prev_digest);
        if !digest_ok {
            return Err(SchemaError::BadField {
                field: "prev_digest",
                reason: "must be empty or 64 lowercase hex digits".into(),
            });
        }
        if !is_sha256_hex(&self.policy.digest) {
            return Err(SchemaError::BadField {
                field: "policy.digest",
                reason: "must be 64 lowercase hex digits".into(),
            });
        }
        if let Some(field) = nul_field(&self.host, &self.agent) {
            return Err(nul_refused(field));
        }
        if self.policy.id.contains('\0') {
            return Err(nul_refused("policy.id"));
        }
        let mut seen = std::collections::HashSet::new();
        for check in &self.checks {
            let texts = [
                ("checks.id", check.id.as_str()),
                ("checks.summary", &check.summary),
                ("checks.fix", &check.fix),
            ];
            if let Some((field, _)) = texts.iter().find(|(_, text)| text.contains('\0')) {
                return Err(nul_refused(field));
            }
            if !seen.insert(check.id.as_str()) {
                return Err(SchemaError::BadField {
                    field: "checks",
                    reason: format!("rule {} appears twice", check.id),
                });
            }
        }
        Ok(())
    }

    /// The payload bytes that get signed: compact JSON.
    pub fn to_payload(&self) -> Vec<u8> {
        // A Report holds only strings, numbers, maps and times; serde_json
        // cannot fail on it.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
