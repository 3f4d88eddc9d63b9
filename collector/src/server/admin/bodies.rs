//! The JSON bodies of the admin API, and how store records become them.
//!
//! Times are RFC 3339 in UTC. Every type here derives `ToSchema`, so the
//! OpenAPI document describes exactly what is sent; nothing here is read
//! by the agent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use palisade_shared::report::CheckStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{
    AuditEntry, DeviceDetail, DeviceKeyInfo, DeviceListing, DeviceRecord, DeviceStatus,
    EnrollmentSecretInfo, ExceptionRecord, FleetSummary, PolicyRecord, ReportHistoryEntry,
    SecretState,
};

/// A device's overall status: `fail` if any rule fails; else `unknown` if
/// any is unknown or errored, or none has been reported yet; else `pass`.
/// An active exception makes a failing rule `excepted`, which counts as
/// compliant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatusName {
    Pass,
    Fail,
    Unknown,
}

impl From<DeviceStatus> for DeviceStatusName {
    fn from(status: DeviceStatus) -> Self {
        match status {
            DeviceStatus::Pass => Self::Pass,
            DeviceStatus::Fail => Self::Fail,
            DeviceStatus::Unknown => Self::Unknown,
        }
    }
}

/// A rule's status (report schema v1, PROTOCOL.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictStatusName {
    Pass,
    Fail,
    Unknown,
    Error,
    NotApplicable,
    Excepted,
}

impl From<CheckStatus> for VerdictStatusName {
    fn from(status: CheckStatus) -> Self {
        match status {
            CheckStatus::Pass => Self::Pass,
            CheckStatus::Fail => Self::Fail,
            CheckStatus::Unknown => Self::Unknown,
            CheckStatus::Error => Self::Error,
            CheckStatus::NotApplicable => Self::NotApplicable,
            CheckStatus::Excepted => Self::Excepted,
        }
    }
}

/// One device as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceBody {
    pub device_id: String,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub agent_version: String,
    pub status: DeviceStatusName,
    /// Each reported rule's status after exceptions, by rule id.
    pub rules: BTreeMap<String, VerdictStatusName>,
    /// The policy the device last reported running.
    pub policy_id: Option<String>,
    pub policy_version: Option<u64>,
    pub enrollment_secret_id: String,
    pub enrolled_at: DateTime<Utc>,
    /// When its latest report arrived; `null` before the first.
    pub last_seen_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The head of its report chain.
    pub last_sequence: Option<u64>,
    pub last_digest: Option<String>,
    /// A report arrived after a gap in sequence (reports were lost).
    pub sequence_gap: bool,
    /// A report's `prev_digest` did not match the stored predecessor.
    pub chain_broken: bool,
    /// The person last seen using it (a report's `host.console_user`);
    /// `null` until a report names one.
    pub console_user: Option<String>,
}

impl DeviceBody {
    fn new(
        device: DeviceRecord,
        status: DeviceStatus,
        rules: impl IntoIterator<Item = (String, CheckStatus)>,
    ) -> Self {
        Self {
            device_id: device.device_id,
            hostname: device.hostname,
            os_name: device.os_name,
            os_version: device.os_version,
            kernel_version: device.kernel_version,
            arch: device.arch,
            agent_version: device.agent_version,
            status: status.into(),
            rules: rules.into_iter().map(|(r, s)| (r, s.into())).collect(),
            policy_id: device.policy_id,
            policy_version: device.policy_version,
            enrollment_secret_id: device.enrollment_secret_id,
            enrolled_at: device.enrolled_at,
            last_seen_at: device.last_seen_at,
            revoked_at: device.revoked_at,
            last_sequence: device.last_sequence,
            last_digest: device.last_digest,
            sequence_gap: device.sequence_gap,
            chain_broken: device.chain_broken,
            console_user: device.console_user,
        }
    }
}

impl From<DeviceListing> for DeviceBody {
    fn from(listing: DeviceListing) -> Self {
        Self::new(listing.device, listing.status, listing.rules)
    }
}

/// One page of devices.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DevicePageBody {
    pub devices: Vec<DeviceBody>,
    /// How many devices match the filters in all.
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

/// A rule's latest verdict on one device.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerdictBody {
    pub rule_id: String,
    /// After exceptions.
    pub status: VerdictStatusName,
    /// As the device reported and signed it.
    pub reported_status: VerdictStatusName,
    pub mode: String,
    pub summary: String,
    /// The facts that decided, shaped per rule.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    pub fix: String,
    /// When the current run of this reported status began (device clock).
    pub status_since: DateTime<Utc>,
    /// When the report that last wrote it arrived.
    pub updated_at: DateTime<Utc>,
    pub report_sequence: u64,
    /// The exception that makes it `excepted`.
    pub exception_id: Option<u64>,
}

/// A device signing key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyBody {
    /// Hex SHA-256 of the Ed25519 public key (its fingerprint).
    pub key_id: String,
    /// When it was enrolled.
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<DeviceKeyInfo> for KeyBody {
    fn from(key: DeviceKeyInfo) -> Self {
        Self {
            key_id: key.key_id,
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// One stored report, without its envelope.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportEntryBody {
    pub sequence: u64,
    /// Hex SHA-256 of the payload.
    pub digest: String,
    pub prev_digest: String,
    pub issued_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// This report came after a gap in sequence.
    pub sequence_gap: bool,
    /// Its `prev_digest` did not match the stored predecessor.
    pub chain_broken: bool,
    /// Number of checks by status, e.g. `{"fail": 1, "pass": 3}`.
    #[schema(value_type = Object)]
    pub checks_by_status: serde_json::Value,
}

impl From<ReportHistoryEntry> for ReportEntryBody {
    fn from(entry: ReportHistoryEntry) -> Self {
        Self {
            sequence: entry.sequence,
            digest: entry.digest,
            prev_digest: entry.prev_digest,
            issued_at: entry.issued_at,
            received_at: entry.received_at,
            sequence_gap: entry.sequence_gap,
            chain_broken: entry.chain_broken,
            checks_by_status: stored_json(&entry.summary_json),
        }
    }
}

/// One device in full.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceDetailBody {
    pub device: DeviceBody,
    pub verdicts: Vec<VerdictBody>,
    pub keys: Vec<KeyBody>,
    /// The newest reports first.
    pub reports: Vec<ReportEntryBody>,
    /// The exceptions active now.
    pub exceptions: Vec<ExceptionBody>,
}

impl DeviceDetailBody {
    pub fn new(detail: DeviceDetail, now: DateTime<Utc>) -> Self {
        let rules = detail
            .verdicts
            .iter()
            .map(|v| (v.verdict.rule_id.clone(), v.status));
        let device = DeviceBody::new(detail.device, detail.status, rules);
        Self {
            device,
            verdicts: detail
                .verdicts
                .into_iter()
                .map(|v| VerdictBody {
                    status: v.status.into(),
                    reported_status: v.verdict.status.into(),
                    evidence: stored_json(&v.verdict.evidence_json),
                    rule_id: v.verdict.rule_id,
                    mode: v.verdict.mode,
                    summary: v.verdict.summary,
                    fix: v.verdict.fix,
                    status_since: v.verdict.status_since,
                    updated_at: v.verdict.updated_at,
                    report_sequence: v.verdict.report_sequence,
                    exception_id: v.exception_id,
                })
                .collect(),
            keys: detail.keys.into_iter().map(KeyBody::from).collect(),
            reports: detail
                .reports
                .into_iter()
                .map(ReportEntryBody::from)
                .collect(),
            exceptions: detail
                .exceptions
                .into_iter()
                .map(|e| ExceptionBody::new(e, now))
                .collect(),
        }
    }
}

/// The answer to a revocation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevokedBody {
    pub device_id: String,
    /// When it was first revoked (revoking again changes nothing).
    pub revoked_at: DateTime<Utc>,
}

/// The fleet in numbers. Revoked devices count only in `revoked`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SummaryBody {
    pub generated_at: DateTime<Utc>,
    /// Active (not revoked) devices.
    pub devices: u64,
    /// Active devices whose status is `pass`.
    pub compliant: u64,
    pub failing: u64,
    pub unknown: u64,
    /// Active devices not seen (or, never seen, enrolled) within
    /// `stale_after_seconds`.
    pub stale: u64,
    pub stale_after_seconds: u64,
    pub revoked: u64,
    /// Active devices failing each rule (after exceptions), by rule id;
    /// every known rule is present.
    pub failing_by_rule: BTreeMap<String, u64>,
}

impl SummaryBody {
    pub fn new(summary: FleetSummary, now: DateTime<Utc>, stale_after_seconds: u64) -> Self {
        let mut failing_by_rule: BTreeMap<String, u64> = palisade_shared::RuleId::ALL
            .iter()
            .map(|rule| ((*rule).to_owned(), 0))
            .collect();
        failing_by_rule.extend(summary.failing_by_rule);
        Self {
            generated_at: now,
            devices: summary.devices,
            compliant: summary.compliant,
            failing: summary.failing,
            unknown: summary.unknown,
            stale: summary.stale,
            stale_after_seconds,
            revoked: summary.revoked,
            failing_by_rule,
        }
    }
}

/// The current policy.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyBody {
    pub policy_id: String,
    pub version: u64,
    /// The collector's counter, increasing with every policy set.
    pub revision: u64,
    /// Hex SHA-256 of `text`.
    pub digest: String,
    /// The TOML text, byte for byte as signed and served to agents.
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl From<PolicyRecord> for PolicyBody {
    fn from(record: PolicyRecord) -> Self {
        Self {
            policy_id: record.policy_id,
            version: record.policy_version,
            revision: record.revision,
            digest: record.digest,
            text: record.text,
            created_at: record.created_at,
            created_by: record.created_by,
        }
    }
}

/// One problem in a policy, where an editor can jump to it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyProblem {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted path of the key at fault, e.g. `rules.screen_lock.mode`; empty
    /// for the document itself.
    pub key_path: String,
    pub message: String,
}

/// A refused policy: `error` is `invalid_policy` and `problems` lists every
/// problem found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvalidPolicyBody {
    pub error: String,
    pub message: String,
    pub problems: Vec<PolicyProblem>,
}

/// An enrollment secret as listed (never the secret itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SecretBody {
    pub id: String,
    pub label: String,
    /// `null`: unlimited.
    pub max_uses: Option<u32>,
    pub uses: u32,
    /// `null`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// `null`: not revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether it enrolls devices now: `active`, or why not (`revoked`
    /// wins over `expired`, which wins over `used_up`).
    pub state: SecretStateName,
}

impl SecretBody {
    pub fn new(info: EnrollmentSecretInfo, now: DateTime<Utc>) -> Self {
        Self {
            state: info.state(now).into(),
            id: info.id,
            label: info.label,
            max_uses: info.max_uses,
            uses: info.uses,
            expires_at: info.expires_at,
            created_at: info.created_at,
            created_by: info.created_by,
            revoked_at: info.revoked_at,
        }
    }
}

/// An enrollment secret's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecretStateName {
    Active,
    Expired,
    UsedUp,
    Revoked,
}

impl From<SecretState> for SecretStateName {
    fn from(state: SecretState) -> Self {
        match state {
            SecretState::Active => Self::Active,
            SecretState::Expired => Self::Expired,
            SecretState::UsedUp => Self::UsedUp,
            SecretState::Revoked => Self::Revoked,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SecretListBody {
    pub secrets: Vec<SecretBody>,
}

/// `POST /api/v1/secrets`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSecretRequest {
    /// How many devices may enroll with it; absent: unlimited.
    #[schema(minimum = 1)]
    pub uses: Option<u32>,
    /// How long it stays valid; absent: never expires.
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub expires_in_seconds: Option<u64>,
    /// A note for IT, e.g. the batch of laptops it is for.
    #[serde(default)]
    pub label: String,
}

/// A new enrollment secret: the only time `secret` is ever shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedSecretBody {
    /// `pls_<id>_<random>`; only its hash is stored.
    pub secret: String,
    #[serde(flatten)]
    pub info: SecretBody,
}

/// An exception: this device may fail this rule until a time.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExceptionBody {
    pub id: u64,
    pub device_id: String,
    pub rule_id: String,
    /// Active while the collector's clock is before this.
    pub until: DateTime<Utc>,
    pub reason: String,
    /// Who approved it.
    pub approver: String,
    pub created_at: DateTime<Utc>,
    /// Whether it is active now.
    pub active: bool,
}

impl ExceptionBody {
    pub fn new(record: ExceptionRecord, now: DateTime<Utc>) -> Self {
        Self {
            active: record.is_active(now),
            id: record.id,
            device_id: record.device_id,
            rule_id: record.rule_id,
            until: record.until,
            reason: record.reason,
            approver: record.approver,
            created_at: record.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExceptionListBody {
    pub exceptions: Vec<ExceptionBody>,
}

/// `POST /api/v1/exceptions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExceptionRequest {
    pub device_id: String,
    /// One of `screen_lock`, `disk_encryption`, `password_policy`,
    /// `usb_storage`.
    pub rule_id: String,
    /// RFC 3339; must be in the future.
    pub until: DateTime<Utc>,
    /// Why; shown next to the verdict.
    pub reason: String,
    /// Who approved it (a person).
    pub approver: String,
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntryBody {
    pub at: DateTime<Utc>,
    /// `token:<id> (<label>)` for the admin API, `cli:<user>` for the
    /// command line, `secret:<id>` for an enrollment.
    pub actor: String,
    /// `secret.create`, `secret.revoke`, `device.revoke`, `policy.set`,
    /// `exception.grant`, `token.create`, `token.revoke`, `device.enroll`,
    /// `device.enroll_refused`.
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<AuditEntry> for AuditEntryBody {
    fn from(entry: AuditEntry) -> Self {
        Self {
            details: stored_json(&entry.details_json),
            at: entry.at,
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditListBody {
    /// Newest first.
    pub entries: Vec<AuditEntryBody>,
}

/// JSON the store kept as text, as a value; text that is not JSON (which
/// the store never writes) is passed on as a string rather than lost.
fn stored_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

/// Every error answer (`palisade_shared::protocol::ErrorBody`), mirrored
/// for the document. Here, beside the other bodies, so the handlers can name
/// it in their `#[utoipa::path]` without depending on [`super::openapi`].
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ErrorBody)]
pub struct ErrorBodySchema {
    /// A stable machine-readable code, e.g. `bad_signature`.
    pub error: String,
    /// A sentence for a person.
    pub message: String,
}
