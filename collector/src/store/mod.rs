//! The collector's storage: one contract, two real implementations.
//!
//! [`Store`] is the only way the rest of the collector reads or writes
//! durable state. [`sqlite::SqliteStore`] (WAL, `synchronous=FULL`, the
//! embedded default) and [`postgres::PostgresStore`] (default
//! `synchronous_commit`) implement [`StoreBackend`]; [`Store`] picks one from
//! the database URL at start and delegates. Migrations run at open.
//!
//! Rules every backend keeps:
//! - **Parameterised SQL only.** No value is ever formatted into SQL text;
//!   sort columns come from a closed enum mapped to fixed SQL fragments.
//! - **A method that returns `Ok` has committed durably.** The ingest path
//!   relies on this to acknowledge reports only after they are safe.
//! - **One transaction per call.** `store_reports` writes a whole batch in
//!   one transaction (group commit), and decides each report with
//!   [`chain::decide`] inside it.
//! - **Secrets are stored hashed.** Enrollment secrets and API tokens are
//!   kept as SHA-256 of their random part and compared in constant time.
//! - Times are `DateTime<Utc>` here and unix milliseconds in the database, so
//!   both backends sort and compare them the same way.
//! - **Exceptions are applied when read, never written.** `latest_verdicts`
//!   keeps each status exactly as the device signed it; listings, summaries,
//!   details and metrics turn a `fail` into `excepted` while an exception for
//!   that device and rule is active at the instant the caller passes. So an
//!   exception takes effect and expires without any job rewriting rows, and
//!   the stored history never disagrees with the signed reports. The rule
//!   lives twice, kept in step by the store tests: [`effective_status`] and
//!   [`overall_status`] in Rust (device detail), and `fleet_sql`'s
//!   `effective` and `listed` views in SQL (listings and counts).

mod batch_plan;
pub mod chain;
mod fleet_sql;
pub mod postgres;
mod rows;
pub mod sqlite;

use chrono::{DateTime, Utc};
use palisade_shared::report::CheckStatus;
use subtle::ConstantTimeEq;

/// Everything that can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A number the database cannot hold: both backends store integers as
    /// signed 64-bit, so a `u64` above `i64::MAX` is refused.
    #[error("{what} {value} is too large to store (the limit is {max})", max = i64::MAX)]
    ValueOutOfRange { what: &'static str, value: u64 },
}

// ---------------------------------------------------------------------------
// Enrollment.

/// A new enrollment secret. The secret itself is `pls_<id>_<random>`; only
/// the SHA-256 of the random part is kept.
#[derive(Debug, Clone)]
pub struct NewEnrollmentSecret {
    pub id: String,
    pub secret_hash: [u8; 32],
    pub label: String,
    /// `None`: unlimited uses.
    pub max_uses: Option<u32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// An enrollment secret as listed to IT (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentSecretInfo {
    pub id: String,
    pub label: String,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A device asking to enroll, already past the proof-of-possession check.
#[derive(Debug, Clone)]
pub struct EnrollDevice {
    pub secret_id: String,
    /// SHA-256 of the random part the agent presented.
    pub presented_hash: [u8; 32],
    /// The id the collector gives the new device.
    pub device_id: String,
    pub key_id: String,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub agent_version: String,
    pub at: DateTime<Utc>,
}

/// Why an enrollment was refused. The HTTP layer answers all of the secret
/// cases with the same 401, so a caller cannot tell which part was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollRefusal {
    UnknownSecret,
    WrongSecret,
    SecretExpired,
    SecretUsedUp,
    /// The key is already enrolled (to any device): a device re-enrolls with
    /// a new key.
    KeyAlreadyEnrolled,
}

// ---------------------------------------------------------------------------
// Devices and keys.

/// What the ingest path needs to know about a signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeyRecord {
    pub key_id: String,
    pub device_id: String,
    pub public_key: [u8; 32],
    /// Set when the device (and so its key) was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A device as the dashboard and the admin API see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device_id: String,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub agent_version: String,
    /// The policy the device last reported running; `None` before its first
    /// report.
    pub policy_id: Option<String>,
    pub policy_version: Option<u64>,
    /// The enrollment secret that enrolled it.
    pub enrollment_secret_id: String,
    pub enrolled_at: DateTime<Utc>,
    /// When its latest report was stored (collector clock).
    pub last_seen_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The head of its hash chain: highest stored sequence and its digest.
    pub last_sequence: Option<u64>,
    pub last_digest: Option<String>,
    /// Set once a report arrived after a gap; never cleared by ingest.
    pub sequence_gap: bool,
    /// Set once a report's `prev_digest` did not match the stored head.
    pub chain_broken: bool,
    /// The person last seen using it (a report's `host.console_user`);
    /// `None` until a report names one. A report without a user keeps the
    /// last one known.
    pub console_user: Option<String>,
}

/// A device's latest verdict for one rule, from its highest stored report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestVerdict {
    pub rule_id: String,
    pub status: CheckStatus,
    pub mode: String,
    pub summary: String,
    pub evidence_json: String,
    pub fix: String,
    /// `issued_at` of the first report in the current run of this status: a
    /// report with the same status keeps it, another status resets it.
    pub status_since: DateTime<Utc>,
    /// `received_at` of the report that last wrote the verdict.
    pub updated_at: DateTime<Utc>,
    /// The sequence of that report.
    pub report_sequence: u64,
}

// ---------------------------------------------------------------------------
// Reports.

/// A verified report ready to store.
#[derive(Debug, Clone)]
pub struct IncomingReport {
    pub device_id: String,
    pub key_id: String,
    pub sequence: u64,
    /// Hex SHA-256 of the payload bytes.
    pub digest: String,
    pub prev_digest: String,
    pub issued_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// The envelope exactly as received, for re-verification later.
    pub envelope: Vec<u8>,
    /// The host facts of the report, copied onto the device row.
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub agent_version: String,
    /// `None` keeps the user stored on the device (see
    /// [`DeviceRecord::console_user`]).
    pub console_user: Option<String>,
    pub policy_id: String,
    pub policy_version: u64,
    pub verdicts: Vec<IncomingVerdict>,
}

/// One rule's verdict from a report, kept as the device's latest.
#[derive(Debug, Clone)]
pub struct IncomingVerdict {
    pub rule_id: String,
    pub status: CheckStatus,
    pub mode: String,
    pub summary: String,
    /// The evidence object as JSON text.
    pub evidence_json: String,
    pub fix: String,
}

/// What happened to one report of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored {
        sequence_gap: bool,
        chain_broken: bool,
    },
    Duplicate,
    Conflict(chain::ConflictReason),
    /// The device was revoked after its report's key was checked and before
    /// the report's batch was written; nothing was stored.
    Revoked,
}

// ---------------------------------------------------------------------------
// Policy and audit.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    /// The collector's own counter, increasing with every saved policy; the
    /// ETag is derived from it and the digest.
    pub revision: u64,
    pub policy_id: String,
    pub policy_version: u64,
    pub text: String,
    /// Hex SHA-256 of `text`.
    pub digest: String,
    /// The signed DSSE envelope served to agents, as JSON bytes.
    pub envelope: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

#[derive(Debug, Clone)]
pub struct NewPolicy {
    pub policy_id: String,
    pub policy_version: u64,
    pub text: String,
    pub digest: String,
    pub envelope: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// One line of the audit log: who did what to what, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    /// e.g. `secret.create`, `device.revoke`, `policy.set`, `exception.grant`.
    pub action: String,
    pub target: String,
    /// A JSON object with the details.
    pub details_json: String,
}

// ---------------------------------------------------------------------------
// API tokens.

/// What a bearer token may do: a viewer reads, an admin also changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// A new API token. The token itself is `plt_<id>_<random>`; only the
/// SHA-256 of the random part is kept.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub id: String,
    pub token_hash: [u8; 32],
    pub role: Role,
    pub label: String,
    pub created_at: DateTime<Utc>,
}

/// An API token as listed to IT (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenInfo {
    pub id: String,
    pub role: Role,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An API token with its hash, for checking a presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiToken {
    pub info: ApiTokenInfo,
    token_hash: [u8; 32],
}

impl StoredApiToken {
    pub fn new(info: ApiTokenInfo, token_hash: [u8; 32]) -> Self {
        Self { info, token_hash }
    }

    /// Whether `presented` (the SHA-256 of a presented token's random part)
    /// is this token's hash, compared in constant time.
    pub fn hash_matches(&self, presented: &[u8; 32]) -> bool {
        bool::from(self.token_hash.ct_eq(presented))
    }
}

// ---------------------------------------------------------------------------
// The fleet as IT sees it.

/// A device's overall status, from its latest verdicts after exceptions
/// (see [`overall_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceStatus {
    Pass,
    Fail,
    Unknown,
}

impl DeviceStatus {
    pub const ALL: [Self; 3] = [Self::Pass, Self::Fail, Self::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A verdict's status once exceptions are applied: a `fail` with an active
/// exception is `excepted`; every other status is as reported.
pub fn effective_status(reported: CheckStatus, exception_active: bool) -> CheckStatus {
    if reported == CheckStatus::Fail && exception_active {
        CheckStatus::Excepted
    } else {
        reported
    }
}

/// A device's overall status from its effective verdict statuses: `fail` if
/// any fails; else `unknown` if any is `unknown` or `error` (a false pass is
/// the worst bug); else `pass` (`excepted` and `not_applicable` count as
/// compliant). A device with no verdicts yet is `unknown`.
pub fn overall_status(statuses: impl IntoIterator<Item = CheckStatus>) -> DeviceStatus {
    let mut any = false;
    let mut unsure = false;
    for status in statuses {
        any = true;
        match status {
            CheckStatus::Fail => return DeviceStatus::Fail,
            CheckStatus::Unknown | CheckStatus::Error => unsure = true,
            CheckStatus::Pass | CheckStatus::NotApplicable | CheckStatus::Excepted => {}
        }
    }
    if !any || unsure {
        DeviceStatus::Unknown
    } else {
        DeviceStatus::Pass
    }
}

/// The most devices one page of [`StoreBackend::list_devices`] holds: a page
/// of 200 rows is a few hundred KiB of JSON, enough for any screen, and keeps
/// one request from reading the whole fleet.
pub const MAX_DEVICES_PER_PAGE: u32 = 200;

/// How devices are ordered; each maps to a fixed SQL fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSort {
    /// Case-insensitively by hostname.
    Hostname,
    /// By when the latest report arrived; never-seen devices count as oldest.
    LastSeen,
    /// By OS name, then version.
    Os,
    /// By overall status: pass, unknown, fail.
    Status,
    EnrolledAt,
}

impl DeviceSort {
    pub const ALL: [Self; 5] = [
        Self::Hostname,
        Self::LastSeen,
        Self::Os,
        Self::Status,
        Self::EnrolledAt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hostname => "hostname",
            Self::LastSeen => "last_seen",
            Self::Os => "os",
            Self::Status => "status",
            Self::EnrolledAt => "enrolled_at",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Devices with a verdict for `rule_id` (after exceptions), optionally only
/// those where it has `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFilter {
    pub rule_id: String,
    pub status: Option<CheckStatus>,
}

/// Which devices to list, in what order, which page. Filters combine with
/// AND; `None` does not filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceQuery {
    /// The instant exceptions are judged at (normally now).
    pub at: DateTime<Utc>,
    pub status: Option<DeviceStatus>,
    pub rule: Option<RuleFilter>,
    /// Exact OS name, e.g. `Debian GNU/Linux`.
    pub os: Option<String>,
    /// Only devices last seen (or, never seen, enrolled) before this instant.
    pub stale_before: Option<DateTime<Utc>>,
    /// Only devices last seen (or enrolled) at or after this instant.
    pub seen_since: Option<DateTime<Utc>>,
    /// A case-insensitive substring of the hostname, the OS name or the
    /// console user; `%`, `_` and `\` match themselves.
    pub search: Option<String>,
    /// `Some(false)`: only active devices; `Some(true)`: only revoked ones.
    pub revoked: Option<bool>,
    pub sort: DeviceSort,
    pub descending: bool,
    /// 1-based.
    pub page: u32,
    /// 1 to [`MAX_DEVICES_PER_PAGE`]; the store clamps it.
    pub per_page: u32,
}

impl DeviceQuery {
    /// Every device, by hostname, first page of 50.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            at,
            status: None,
            rule: None,
            os: None,
            stale_before: None,
            seen_since: None,
            search: None,
            revoked: None,
            sort: DeviceSort::Hostname,
            descending: false,
            page: 1,
            per_page: 50,
        }
    }
}

/// One device of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceListing {
    pub device: DeviceRecord,
    pub status: DeviceStatus,
    /// Effective status per rule, by rule id.
    pub rules: Vec<(String, CheckStatus)>,
}

/// One page of devices and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePage {
    pub devices: Vec<DeviceListing>,
    pub total: u64,
}

/// A device's signing key as shown to IT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeyInfo {
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One stored report in a device's history (not its envelope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportHistoryEntry {
    pub sequence: u64,
    pub digest: String,
    pub prev_digest: String,
    pub issued_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub sequence_gap: bool,
    pub chain_broken: bool,
    /// JSON object: number of checks by status.
    pub summary_json: String,
}

/// A latest verdict with exceptions applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceVerdict {
    /// As the device reported it.
    pub verdict: LatestVerdict,
    /// After exceptions.
    pub status: CheckStatus,
    /// The active exception that made it `excepted`, if one did.
    pub exception_id: Option<u64>,
}

/// Everything IT sees about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDetail {
    pub device: DeviceRecord,
    pub status: DeviceStatus,
    pub verdicts: Vec<DeviceVerdict>,
    pub keys: Vec<DeviceKeyInfo>,
    /// The newest reports first.
    pub reports: Vec<ReportHistoryEntry>,
    /// Exceptions active at the instant asked about.
    pub exceptions: Vec<ExceptionRecord>,
}

/// The fleet in numbers. Revoked devices are counted only in `revoked`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetSummary {
    pub devices: u64,
    pub compliant: u64,
    pub failing: u64,
    pub unknown: u64,
    /// Not seen (or, never seen, enrolled) within `stale_after`.
    pub stale: u64,
    pub revoked: u64,
    /// Devices failing each rule (after exceptions), by rule id; rules no
    /// device fails are absent.
    pub failing_by_rule: Vec<(String, u64)>,
}

/// Devices by overall status; revoked devices only in `revoked`. The four
/// add up to every device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceStatusCounts {
    pub pass: u64,
    pub fail: u64,
    pub unknown: u64,
    pub revoked: u64,
}

// ---------------------------------------------------------------------------
// Exceptions.

/// IT's decision that a device may fail a rule until a date.
#[derive(Debug, Clone)]
pub struct NewException {
    pub device_id: String,
    pub rule_id: String,
    /// Active while the clock is before this instant.
    pub until: DateTime<Utc>,
    pub reason: String,
    /// Who approved it (a person).
    pub approver: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionRecord {
    pub id: u64,
    pub device_id: String,
    pub rule_id: String,
    pub until: DateTime<Utc>,
    pub reason: String,
    pub approver: String,
    pub created_at: DateTime<Utc>,
}

impl ExceptionRecord {
    pub fn is_active(&self, at: DateTime<Utc>) -> bool {
        at < self.until
    }
}

/// Which exceptions to list; `None` does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExceptionFilter {
    pub device_id: Option<String>,
    /// Only those active at this instant.
    pub active_at: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------------------
// The dashboard: its users, their sessions, and the overview's figures.

/// A dashboard user to create. The password is already an argon2 PHC string.
#[derive(Debug, Clone)]
pub struct NewAdminUser {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// A dashboard user as listed (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUserInfo {
    pub username: String,
    pub role: Role,
    pub failed_attempts: u32,
    /// Logins are refused until then.
    pub locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A dashboard user with the hash, for checking a password.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredAdminUser {
    pub info: AdminUserInfo,
    /// An argon2 PHC string.
    pub password_hash: String,
}

/// Hand-written so a hash never reaches a log through `{:?}`.
impl std::fmt::Debug for StoredAdminUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAdminUser")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// A new login session. The cookie itself is never stored, only its hash.
#[derive(Clone)]
pub struct NewSession {
    /// SHA-256 of the cookie value.
    pub id_hash: [u8; 32],
    pub username: String,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A live session with its user's current role (a role change applies
/// from the next request).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub username: String,
    pub role: Role,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// One UTC day of the compliance trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrendDay {
    pub day: chrono::NaiveDate,
    /// Devices with at least one report issued that day.
    pub reporting: u64,
    /// Of those, the devices whose last report that day had no failing
    /// check (as signed, before exceptions).
    pub compliant: u64,
}

/// An active device failing at least one rule, with the oldest
/// `status_since` among its failing rules (after exceptions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingDevice {
    pub device_id: String,
    pub hostname: String,
    pub console_user: Option<String>,
    pub failing_since: DateTime<Utc>,
    /// The failing rules, by rule id.
    pub rules: Vec<String>,
}

/// One stored policy revision, without its text and envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionInfo {
    pub revision: u64,
    pub policy_id: String,
    pub policy_version: u64,
    pub digest: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

// ---------------------------------------------------------------------------
// The contract.

/// What a storage backend must do. Each method is one transaction.
#[allow(async_fn_in_trait)] // used only through the `Store` enum, never as `dyn`
pub trait StoreBackend {
    async fn create_enrollment_secret(
        &self,
        secret: &NewEnrollmentSecret,
    ) -> Result<(), StoreError>;
    async fn list_enrollment_secrets(&self) -> Result<Vec<EnrollmentSecretInfo>, StoreError>;
    /// Checks the secret (constant-time hash comparison, expiry, uses),
    /// counts the use, and creates the device and its key, all in one
    /// transaction.
    async fn enroll_device(
        &self,
        request: &EnrollDevice,
    ) -> Result<Result<(), EnrollRefusal>, StoreError>;

    async fn device_key(&self, key_id: &str) -> Result<Option<DeviceKeyRecord>, StoreError>;
    /// Revokes a device and its keys; `false` when no such device exists.
    /// Revoking again keeps the first revocation time.
    async fn revoke_device(&self, device_id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError>;
    /// The device's latest verdicts, by rule id.
    async fn latest_verdicts(&self, device_id: &str) -> Result<Vec<LatestVerdict>, StoreError>;

    /// Stores a batch in one transaction, returning one outcome per report in
    /// order. Reports of the same device in one batch are decided in order.
    async fn store_reports(
        &self,
        batch: &[IncomingReport],
    ) -> Result<Vec<StoreOutcome>, StoreError>;
    /// The envelope stored for a device's sequence, byte for byte.
    async fn report_envelope(
        &self,
        device_id: &str,
        sequence: u64,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// How many reports are stored (for tests and metrics).
    async fn count_reports(&self) -> Result<u64, StoreError>;
    /// Deletes raw reports received before `cutoff`, keeping each device's
    /// latest; returns how many were deleted.
    async fn purge_reports_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn current_policy(&self) -> Result<Option<PolicyRecord>, StoreError>;
    async fn save_policy(&self, policy: &NewPolicy) -> Result<PolicyRecord, StoreError>;

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The newest `limit` entries, newest first (by `at`, then by order of
    /// appending).
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    async fn create_api_token(&self, token: &NewApiToken) -> Result<(), StoreError>;
    /// The token with this id, revoked or not, with its hash.
    async fn api_token(&self, id: &str) -> Result<Option<StoredApiToken>, StoreError>;
    /// Every token, newest first.
    async fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>, StoreError>;
    /// Revokes a token; `false` when no such token exists. Revoking again
    /// keeps the first revocation time.
    async fn revoke_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// One page of the devices matching `query`, and how many match in all.
    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError>;
    /// One device with its verdicts (exceptions applied at `at`), keys,
    /// newest `history` reports and active exceptions; `None` when unknown.
    async fn device_detail(
        &self,
        device_id: &str,
        at: DateTime<Utc>,
        history: u32,
    ) -> Result<Option<DeviceDetail>, StoreError>;
    /// The fleet at `at`: a device is stale when not seen within `stale_after`.
    async fn fleet_summary(
        &self,
        at: DateTime<Utc>,
        stale_after: chrono::TimeDelta,
    ) -> Result<FleetSummary, StoreError>;
    /// Devices by overall status at `at`, for `/metrics`.
    async fn devices_by_status(&self, at: DateTime<Utc>) -> Result<DeviceStatusCounts, StoreError>;

    /// Records an exception; `None` (and nothing stored) when the device does
    /// not exist.
    async fn grant_exception(
        &self,
        exception: &NewException,
    ) -> Result<Option<ExceptionRecord>, StoreError>;
    /// Exceptions matching `filter`, newest first.
    async fn list_exceptions(
        &self,
        filter: &ExceptionFilter,
    ) -> Result<Vec<ExceptionRecord>, StoreError>;

    /// Every OS name among the devices, sorted, for the dashboard's filter.
    async fn os_names(&self) -> Result<Vec<String>, StoreError>;
    /// Every stored policy revision, newest first, at most `limit`.
    async fn policy_versions(&self, limit: u32) -> Result<Vec<PolicyVersionInfo>, StoreError>;

    /// Creates a dashboard user; `false` (and nothing changed) when the name
    /// is taken.
    async fn create_admin_user(&self, user: &NewAdminUser) -> Result<bool, StoreError>;
    async fn admin_user(&self, username: &str) -> Result<Option<StoredAdminUser>, StoreError>;
    /// Every dashboard user, by name.
    async fn list_admin_users(&self) -> Result<Vec<AdminUserInfo>, StoreError>;
    /// Deletes a user and (by cascade) their sessions; `false` when unknown.
    async fn delete_admin_user(&self, username: &str) -> Result<bool, StoreError>;
    /// Counts a failed login for an existing user. The `max_attempts`-th
    /// failure in a row locks the user until `lock_until` and starts the
    /// count again; returns whether this failure locked it.
    async fn record_failed_login(
        &self,
        username: &str,
        max_attempts: u32,
        lock_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// A successful login: the failure count starts again.
    async fn record_successful_login(&self, username: &str) -> Result<(), StoreError>;

    /// Stores a session, sweeping the sessions expired at its creation.
    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError>;
    /// The session with this cookie hash if it is live at `at`.
    async fn session(
        &self,
        id_hash: &[u8; 32],
        at: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError>;
    /// Deletes a session; `false` when there was none.
    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<bool, StoreError>;

    /// The compliance trend by UTC day of `issued_at`, for reports issued in
    /// `[from, to)`; days without reports are absent.
    async fn compliance_trend(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<TrendDay>, StoreError>;
    /// The `limit` active devices failing longest (after exceptions at `at`):
    /// oldest `failing_since` first, ties by device id.
    async fn longest_failing(
        &self,
        at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FailingDevice>, StoreError>;
}

/// The store the collector runs on, chosen by URL.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PostgresStore),
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH` or `postgres://…`) and
    /// runs the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(sqlite::SqliteStore::open(url).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(postgres::PostgresStore::open(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// `Store` delegates every call to the backend it holds.
macro_rules! delegate {
    ($( async fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )*) => {
        impl StoreBackend for Store {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Self::Sqlite(store) => store.$name($($arg),*).await,
                        Self::Postgres(store) => store.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {
    async fn create_enrollment_secret(&self, secret: &NewEnrollmentSecret) -> Result<(), StoreError>;
    async fn list_enrollment_secrets(&self) -> Result<Vec<EnrollmentSecretInfo>, StoreError>;
    async fn enroll_device(&self, request: &EnrollDevice) -> Result<Result<(), EnrollRefusal>, StoreError>;
    async fn device_key(&self, key_id: &str) -> Result<Option<DeviceKeyRecord>, StoreError>;
    async fn revoke_device(&self, device_id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError>;
    async fn latest_verdicts(&self, device_id: &str) -> Result<Vec<LatestVerdict>, StoreError>;
    async fn store_reports(&self, batch: &[IncomingReport]) -> Result<Vec<StoreOutcome>, StoreError>;
    async fn report_envelope(&self, device_id: &str, sequence: u64) -> Result<Option<Vec<u8>>, StoreError>;
    async fn count_reports(&self) -> Result<u64, StoreError>;
    async fn purge_reports_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;
    async fn current_policy(&self) -> Result<Option<PolicyRecord>, StoreError>;
    async fn save_policy(&self, policy: &NewPolicy) -> Result<PolicyRecord, StoreError>;
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
    async fn create_api_token(&self, token: &NewApiToken) -> Result<(), StoreError>;
    async fn api_token(&self, id: &str) -> Result<Option<StoredApiToken>, StoreError>;
    async fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>, StoreError>;
    async fn revoke_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError>;
    async fn device_detail(&self, device_id: &str, at: DateTime<Utc>, history: u32) -> Result<Option<DeviceDetail>, StoreError>;
    async fn fleet_summary(&self, at: DateTime<Utc>, stale_after: chrono::TimeDelta) -> Result<FleetSummary, StoreError>;
    async fn devices_by_status(&self, at: DateTime<Utc>) -> Result<DeviceStatusCounts, StoreError>;
    async fn grant_exception(&self, exception: &NewException) -> Result<Option<ExceptionRecord>, StoreError>;
    async fn list_exceptions(&self, filter: &ExceptionFilter) -> Result<Vec<ExceptionRecord>, StoreError>;
    async fn os_names(&self) -> Result<Vec<String>, StoreError>;
    async fn policy_versions(&self, limit: u32) -> Result<Vec<PolicyVersionInfo>, StoreError>;
    async fn create_admin_user(&self, user: &NewAdminUser) -> Result<bool, StoreError>;
    async fn admin_user(&self, username: &str) -> Result<Option<StoredAdminUser>, StoreError>;
    async fn list_admin_users(&self) -> Result<Vec<AdminUserInfo>, StoreError>;
    async fn delete_admin_user(&self, username: &str) -> Result<bool, StoreError>;
    async fn record_failed_login(&self, username: &str, max_attempts: u32, lock_until: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn record_successful_login(&self, username: &str) -> Result<(), StoreError>;
    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &[u8; 32], at: DateTime<Utc>) -> Result<Option<SessionRecord>, StoreError>;
    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<bool, StoreError>;
    async fn compliance_trend(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<TrendDay>, StoreError>;
    async fn longest_failing(&self, at: DateTime<Utc>, limit: u32) -> Result<Vec<FailingDevice>, StoreError>;
}

/// `(device_id, hostname, console_user, failing_since, rule_id)` rows, one
/// per failing rule, ordered by device, grouped into [`FailingDevice`]s
/// in the order the devices first appear.
pub(crate) fn group_failing(
    rows: Vec<(String, String, Option<String>, i64, String)>,
) -> Result<Vec<FailingDevice>, StoreError> {
    let mut devices: Vec<FailingDevice> = Vec::new();
    for (device_id, hostname, console_user, since, rule_id) in rows {
        let since = from_millis(since)?;
        match devices.last_mut() {
            Some(last) if last.device_id == device_id => last.rules.push(rule_id),
            _ => devices.push(FailingDevice {
                device_id,
                hostname,
                console_user,
                failing_since: since,
                rules: vec![rule_id],
            }),
        }
    }
    Ok(devices)
}

/// A day number (days since the Unix epoch, UTC) as a date.
pub(crate) fn day_from_number(day: i64) -> Result<chrono::NaiveDate, StoreError> {
    DateTime::from_timestamp(day.saturating_mul(86_400), 0)
        .map(|t| t.date_naive())
        .ok_or_else(|| StoreError::Corrupt(format!("day {day} is out of range")))
}

/// The UTC day `at` falls on, as days since the Unix epoch: the `day`
/// column of the trend's `device_days` rollup.
pub(crate) fn utc_day(at: DateTime<Utc>) -> i64 {
    const DAY_MILLIS: i64 = 86_400_000;
    to_millis(at).div_euclid(DAY_MILLIS)
}

/// Unix milliseconds, the database's time representation.
pub fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// The inverse of [`to_millis`]; a value out of chrono's range is corrupt data.
pub fn from_millis(millis: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {millis} is out of range")))
}

/// A `u64` as the database's signed 64-bit integer.
pub(crate) fn to_db_integer(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::ValueOutOfRange { what, value })
}

/// The inverse of [`to_db_integer`]; a negative value is corrupt data (the
/// schema's CHECK constraints keep these columns non-negative).
pub(crate) fn from_db_integer(value: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is negative")))
}

/// A stored status string back to [`CheckStatus`], through the same serde
/// names the report schema uses (so a new status cannot be forgotten here).
pub(crate) fn parse_status(text: &str) -> Result<CheckStatus, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("unknown verdict status {text:?}")))
}

/// A status name (`pass`, `fail`, …, `excepted`) as [`CheckStatus`].
pub fn parse_check_status(text: &str) -> Option<CheckStatus> {
    parse_status(text).ok()
}

/// Why a secret does not allow an enrollment at `at_millis`, if it does not.
/// The hash is compared in constant time; the other checks are on values
/// that are not secret.
pub(crate) fn secret_refusal(
    presented_hash: &[u8; 32],
    stored_hash: &[u8],
    expires_at: Option<i64>,
    max_uses: Option<i64>,
    uses: i64,
    at_millis: i64,
) -> Option<EnrollRefusal> {
    if !bool::from(presented_hash.as_slice().ct_eq(stored_hash)) {
        Some(EnrollRefusal::WrongSecret)
    } else if expires_at.is_some_and(|expires| at_millis >= expires) {
        Some(EnrollRefusal::SecretExpired)
    } else if max_uses.is_some_and(|max| uses >= max) {
        Some(EnrollRefusal::SecretUsedUp)
    } else {
        None
    }
}

/// A use count as the contract's `u32`.
pub(crate) fn small_count(value: i64, what: &'static str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is out of range")))
}

/// A stored role back to [`Role`]; the schema's CHECK allows only the two.
pub(crate) fn parse_role(text: &str) -> Result<Role, StoreError> {
    Role::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown role {text:?}")))
}

/// A stored overall status (from `fleet_sql`) back to [`DeviceStatus`].
pub(crate) fn parse_device_status(text: &str) -> Result<DeviceStatus, StoreError> {
    DeviceStatus::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown device status {text:?}")))
}

/// A stored 32-byte hash.
pub(crate) fn hash_from_bytes(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("a stored {what} is not 32 bytes")))
}

/// Applies the active exceptions to a device's latest verdicts and derives
/// its overall status: the Rust half of the rule described in the module
/// documentation.
pub(crate) fn apply_exceptions(
    verdicts: Vec<LatestVerdict>,
    exceptions: &[ExceptionRecord],
    at: DateTime<Utc>,
) -> (Vec<DeviceVerdict>, DeviceStatus) {
    let verdicts: Vec<DeviceVerdict> = verdicts
        .into_iter()
        .map(|verdict| {
            let exception_id = exceptions
                .iter()
                .filter(|e| e.rule_id == verdict.rule_id && e.is_active(at))
                .map(|e| e.id)
                .max();
            let status = effective_status(verdict.status, exception_id.is_some());
            DeviceVerdict {
                exception_id: exception_id.filter(|_| status == CheckStatus::Excepted),
                status,
                verdict,
            }
        })
        .collect();
    let status = overall_status(verdicts.iter().map(|v| v.status));
    (verdicts, status)
}

/// Joins a page of devices with their rule statuses (`device_id`,
/// `rule_id`, status), keeping the page's order.
pub(crate) fn assemble_listings(
    devices: Vec<(DeviceRecord, DeviceStatus)>,
    rules: Vec<(String, String, CheckStatus)>,
) -> Vec<DeviceListing> {
    let mut by_device: std::collections::HashMap<String, Vec<(String, CheckStatus)>> =
        std::collections::HashMap::new();
    for (device_id, rule_id, status) in rules {
        by_device
            .entry(device_id)
            .or_default()
            .push((rule_id, status));
    }
    devices
        .into_iter()
        .map(|(device, status)| DeviceListing {
            rules: by_device.remove(&device.device_id).unwrap_or_default(),
            device,
            status,
        })
        .collect()
}

/// `(bucket, count)` rows of `fleet_sql::status_buckets` as counts.
pub(crate) fn count_buckets(buckets: Vec<(String, u64)>) -> Result<DeviceStatusCounts, StoreError> {
    let mut counts = DeviceStatusCounts::default();
    for (bucket, n) in buckets {
        match bucket.as_str() {
            "revoked" => counts.revoked = n,
            other => match parse_device_status(other)? {
                DeviceStatus::Pass => counts.pass = n,
                DeviceStatus::Fail => counts.fail = n,
                DeviceStatus::Unknown => counts.unknown = n,
            },
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_status_is_the_worst_verdict_and_unknown_without_any() {
        use CheckStatus::*;
        let cases: &[(&[CheckStatus], DeviceStatus)] = &[
            (&[], DeviceStatus::Unknown),
            (&[Pass], DeviceStatus::Pass),
            (&[Pass, NotApplicable, Excepted], DeviceStatus::Pass),
            (&[Pass, Unknown], DeviceStatus::Unknown),
            (&[Error, Pass], DeviceStatus::Unknown),
            (&[Unknown, Fail, Pass], DeviceStatus::Fail),
            (&[NotApplicable], DeviceStatus::Pass),
        ];
        for (statuses, expected) in cases {
            assert_eq!(
                overall_status(statuses.iter().copied()),
                *expected,
                "{statuses:?}"
            );
        }
    }

    #[test]
    fn only_a_fail_becomes_excepted() {
        assert_eq!(
            effective_status(CheckStatus::Fail, true),
            CheckStatus::Excepted
        );
        assert_eq!(
            effective_status(CheckStatus::Fail, false),
            CheckStatus::Fail
        );
        for status in [CheckStatus::Pass, CheckStatus::Unknown, CheckStatus::Error] {
            assert_eq!(effective_status(status, true), status);
        }
    }

    #[test]
    fn names_round_trip() {
        for status in DeviceStatus::ALL {
            assert_eq!(DeviceStatus::parse(status.as_str()), Some(status));
        }
        for sort in DeviceSort::ALL {
            assert_eq!(DeviceSort::parse(sort.as_str()), Some(sort));
        }
        for role in [Role::Admin, Role::Viewer] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
