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
//!   [`crate::ingest::chain::decide`] inside it.
//! - **Secrets are stored hashed.** Enrollment secrets and API tokens are
//!   kept as SHA-256 of their random part and compared in constant time.
//! - Times are `DateTime<Utc>` here and unix milliseconds in the database, so
//!   both backends sort and compare them the same way.

mod batch_plan;
pub mod postgres;
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
    Conflict(crate::ingest::chain::ConflictReason),
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
