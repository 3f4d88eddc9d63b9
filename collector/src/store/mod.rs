//! The collector's storage: one implementation over two database engines.
//!
//! [`Store`] is the only way the rest of the collector reads or writes
//! durable state. It runs on SQLite (WAL, `synchronous=FULL`, the embedded
//! default; `sqlite.rs`) or PostgreSQL (default `synchronous_commit`;
//! `postgres.rs`), chosen from the database URL at start. Migrations run at
//! open. Its methods are grouped by concern: [`devices`] (enrollment, keys,
//! revocation), [`reports`] (ingest and retention), [`fleet_read`] (what IT
//! sees), [`policy`] (policy, exceptions, audit) and [`access`] (tokens,
//! users, sessions). Their SQL is written once; [`engine`] is the one
//! place that knows there are two engines, and the few points where they
//! differ are named there (its `Dialect`), in the connection settings and
//! in the batch writes of `store_reports`.
//!
//! Rules every method keeps:
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
//!   both engines sort and compare them the same way.
//! - **Exceptions are applied when read, never written.** `latest_verdicts`
//!   keeps each status exactly as the device signed it; listings, summaries,
//!   details and metrics turn a `fail` into `excepted` while an exception for
//!   that device and rule is active at the instant the caller passes. So an
//!   exception takes effect and expires without any job rewriting rows, and
//!   the stored history never disagrees with the signed reports. The rule
//!   lives twice, kept in step by the store tests: [`effective_status`] and
//!   [`overall_status`] in Rust (device detail), and `fleet_sql`'s
//!   `effective` and `listed` views in SQL (listings and counts).
//!
//! The store imports nothing from ingest, the HTTP server, the dashboard or
//! the command line.

mod access;
mod batch_plan;
mod batch_rows;
pub mod chain;
mod devices;
mod engine;
mod fleet;
mod fleet_read;
mod fleet_sql;
mod policy;
mod postgres;
mod reports;
mod rows;
mod sqlite;

pub use access::{
    AdminUserInfo, ApiTokenInfo, NewAdminUser, NewApiToken, NewSession, Role, SessionRecord,
    StoredAdminUser, StoredApiToken,
};
pub use devices::{
    DeviceKeyRecord, DeviceRecord, EnrollDevice, EnrollRefusal, Enrolled, EnrollmentSecretInfo,
    LatestVerdict, NewEnrollmentSecret, SecretState,
};
pub use fleet::{
    DeviceDetail, DeviceKeyInfo, DeviceListing, DevicePage, DeviceQuery, DeviceSort, DeviceStatus,
    DeviceStatusCounts, DeviceVerdict, FailingDevice, FleetSummary, MAX_DEVICES_PER_PAGE,
    ReportHistoryEntry, RuleFilter, TrendDay, effective_status, overall_status,
};
pub use policy::{
    AuditEntry, ExceptionFilter, ExceptionRecord, NewException, NewPolicy, PolicyRecord,
    PolicyVersionInfo,
};
pub use reports::{IncomingReport, IncomingVerdict, StoreOutcome};

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
    #[error("cannot reach PostgreSQL at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    /// Opened with [`IfMissing::Refuse`], and the file is not there.
    #[error("the SQLite database {} does not exist", path.display())]
    Missing { path: std::path::PathBuf },
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A number the database cannot hold: both backends store integers as
    /// signed 64-bit, so a `u64` above `i64::MAX` is refused.
    #[error("{what} {value} is too large to store (the limit is {max})", max = i64::MAX)]
    ValueOutOfRange { what: &'static str, value: u64 },
}

const SQLITE_SCHEME: &str = "sqlite:";

/// Whether [`Store::open`] knows the kind of database `url` names.
pub fn is_supported_url(url: &str) -> bool {
    url.starts_with(SQLITE_SCHEME)
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://")
}

/// What [`Store::open_or`] does when a SQLite file is not there.
/// (PostgreSQL never creates a database: a missing one is a connection
/// error.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    Create,
    /// Refuse with [`StoreError::Missing`]: a mistyped path must not become
    /// a new, empty database that agents then enroll into.
    Refuse,
}

/// The store the collector runs on, chosen by URL. Cloning is cheap: the
/// clones share the connection pools.
#[derive(Debug, Clone)]
pub struct Store {
    pools: engine::Pools,
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH` or `postgres://…`),
    /// creating a SQLite file that is not there, and runs the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_or(url, IfMissing::Create).await
    }

    /// [`Store::open`], saying what to do when a SQLite file is not there.
    pub async fn open_or(url: &str, if_missing: IfMissing) -> Result<Self, StoreError> {
        let pools = if url.starts_with(SQLITE_SCHEME) {
            sqlite::open(url, if_missing).await?
        } else if is_supported_url(url) {
            postgres::open(url).await?
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        Ok(Self { pools })
    }

    pub fn kind(&self) -> &'static str {
        match self.pools.dialect() {
            engine::Dialect::Sqlite => "sqlite",
            engine::Dialect::Postgres => "postgres",
        }
    }
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
    limits: &SecretLimits,
    at_millis: i64,
) -> Option<EnrollRefusal> {
    let SecretLimits {
        expires_at,
        max_uses,
        uses,
        revoked_at,
    } = *limits;
    if !bool::from(presented_hash.as_slice().ct_eq(stored_hash)) {
        Some(EnrollRefusal::WrongSecret)
    } else if revoked_at.is_some() {
        Some(EnrollRefusal::SecretRevoked)
    } else if expires_at.is_some_and(|expires| at_millis >= expires) {
        Some(EnrollRefusal::SecretExpired)
    } else if max_uses.is_some_and(|max| uses >= max) {
        Some(EnrollRefusal::SecretUsedUp)
    } else {
        None
    }
}

/// What limits a stored secret, as its row has it (unix milliseconds).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SecretLimits {
    pub expires_at: Option<i64>,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub revoked_at: Option<i64>,
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
