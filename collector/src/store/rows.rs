//! Rows to records, written once for both backends. SQLite and PostgreSQL
//! hold the same columns with the same meaning (times as Unix milliseconds,
//! counters as integers, flags as booleans), so each record is read from a
//! row the same way whichever database answered; [`Columns`] is the one
//! place that knows there are two row types.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Postgres, Sqlite};

use super::{
    AdminUserInfo, ApiTokenInfo, AuditEntry, DeviceKeyInfo, DeviceKeyRecord, DeviceRecord,
    EnrollmentSecretInfo, ExceptionRecord, FleetSummary, LatestVerdict, PolicyRecord,
    PolicyVersionInfo, ReportHistoryEntry, SessionRecord, StoreError, TrendDay, day_from_number,
    from_db_integer, from_millis, parse_role, parse_status, small_count,
};

/// A column type both databases can decode.
pub(super) trait ColumnType:
    for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
    + for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
{
}

impl<T> ColumnType for T where
    T: for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
        + for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
{
}

/// A result row of either database, read by column name.
pub(super) trait Columns {
    fn value<T: ColumnType>(&self, column: &str) -> Result<T, StoreError>;
}

impl Columns for PgRow {
    fn value<T: ColumnType>(&self, column: &str) -> Result<T, StoreError> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}

impl Columns for SqliteRow {
    fn value<T: ColumnType>(&self, column: &str) -> Result<T, StoreError> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}

pub(super) fn admin_user_from_row(row: &impl Columns) -> Result<AdminUserInfo, StoreError> {
    let role: String = row.value("role")?;
    Ok(AdminUserInfo {
        username: row.value("username")?,
        role: parse_role(&role)?,
        failed_attempts: small_count(row.value("failed_attempts")?, "failed attempts")?,
        locked_until: optional_time(row.value("locked_until")?)?,
        created_at: from_millis(row.value("created_at")?)?,
    })
}

pub(super) fn session_from_row(row: &impl Columns) -> Result<SessionRecord, StoreError> {
    let role: String = row.value("role")?;
    Ok(SessionRecord {
        username: row.value("username")?,
        role: parse_role(&role)?,
        csrf_token: row.value("csrf_token")?,
        expires_at: from_millis(row.value("expires_at")?)?,
    })
}

pub(super) fn secret_from_row(row: &impl Columns) -> Result<EnrollmentSecretInfo, StoreError> {
    let max_uses: Option<i64> = row.value("max_uses")?;
    Ok(EnrollmentSecretInfo {
        id: row.value("id")?,
        label: row.value("label")?,
        max_uses: max_uses.map(|n| small_count(n, "max uses")).transpose()?,
        uses: small_count(row.value("uses")?, "uses")?,
        expires_at: optional_time(row.value("expires_at")?)?,
        created_at: from_millis(row.value("created_at")?)?,
        created_by: row.value("created_by")?,
        revoked_at: optional_time(row.value("revoked_at")?)?,
    })
}

pub(super) fn key_from_row(row: &impl Columns) -> Result<DeviceKeyRecord, StoreError> {
    let public_key: Vec<u8> = row.value("public_key")?;
    Ok(DeviceKeyRecord {
        key_id: row.value("key_id")?,
        device_id: row.value("device_id")?,
        public_key: public_key
            .try_into()
            .map_err(|_| StoreError::Corrupt("a stored public key is not 32 bytes".to_owned()))?,
        revoked_at: optional_time(row.value("revoked_at")?)?,
    })
}

pub(super) fn device_from_row(row: &impl Columns) -> Result<DeviceRecord, StoreError> {
    let policy_version: Option<i64> = row.value("policy_version")?;
    let last_sequence: Option<i64> = row.value("last_sequence")?;
    Ok(DeviceRecord {
        device_id: row.value("id")?,
        hostname: row.value("hostname")?,
        os_name: row.value("os_name")?,
        os_version: row.value("os_version")?,
        kernel_version: row.value("kernel_version")?,
        arch: row.value("arch")?,
        agent_version: row.value("agent_version")?,
        policy_id: row.value("policy_id")?,
        policy_version: policy_version
            .map(|v| from_db_integer(v, "policy version"))
            .transpose()?,
        enrollment_secret_id: row.value("enrollment_secret_id")?,
        enrolled_at: from_millis(row.value("enrolled_at")?)?,
        last_seen_at: optional_time(row.value("last_seen_at")?)?,
        revoked_at: optional_time(row.value("revoked_at")?)?,
        last_sequence: last_sequence
            .map(|s| from_db_integer(s, "sequence"))
            .transpose()?,
        last_digest: row.value("last_digest")?,
        sequence_gap: row.value("sequence_gap")?,
        chain_broken: row.value("chain_broken")?,
        console_user: row.value("console_user")?,
    })
}

pub(super) fn verdict_from_row(row: &impl Columns) -> Result<LatestVerdict, StoreError> {
    let status: String = row.value("status")?;
    Ok(LatestVerdict {
        rule_id: row.value("rule_id")?,
        status: parse_status(&status)?,
        mode: row.value("mode")?,
        summary: row.value("summary")?,
        evidence_json: row.value("evidence")?,
        fix: row.value("fix")?,
        status_since: from_millis(row.value("status_since")?)?,
        updated_at: from_millis(row.value("updated_at")?)?,
        report_sequence: from_db_integer(row.value("report_sequence")?, "sequence")?,
    })
}

pub(super) fn policy_from_row(row: &impl Columns) -> Result<PolicyRecord, StoreError> {
    Ok(PolicyRecord {
        revision: from_db_integer(row.value("revision")?, "policy revision")?,
        policy_id: row.value("policy_id")?,
        policy_version: from_db_integer(row.value("policy_version")?, "policy version")?,
        text: row.value("text")?,
        digest: row.value("digest")?,
        envelope: row.value("envelope")?,
        created_at: from_millis(row.value("created_at")?)?,
        created_by: row.value("created_by")?,
    })
}

pub(super) fn audit_from_row(row: &impl Columns) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        at: from_millis(row.value("at")?)?,
        actor: row.value("actor")?,
        action: row.value("action")?,
        target: row.value("target")?,
        details_json: row.value("details")?,
    })
}

pub(super) fn optional_time(millis: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    millis.map(from_millis).transpose()
}

pub(super) fn token_from_row(row: &impl Columns) -> Result<ApiTokenInfo, StoreError> {
    let role: String = row.value("role")?;
    Ok(ApiTokenInfo {
        id: row.value("id")?,
        role: parse_role(&role)?,
        label: row.value("label")?,
        created_at: from_millis(row.value("created_at")?)?,
        revoked_at: optional_time(row.value("revoked_at")?)?,
    })
}

pub(super) fn key_info_from_row(row: &impl Columns) -> Result<DeviceKeyInfo, StoreError> {
    Ok(DeviceKeyInfo {
        key_id: row.value("key_id")?,
        created_at: from_millis(row.value("created_at")?)?,
        revoked_at: optional_time(row.value("revoked_at")?)?,
    })
}

pub(super) fn history_from_row(row: &impl Columns) -> Result<ReportHistoryEntry, StoreError> {
    Ok(ReportHistoryEntry {
        sequence: from_db_integer(row.value("sequence")?, "sequence")?,
        digest: row.value("digest")?,
        prev_digest: row.value("prev_digest")?,
        issued_at: from_millis(row.value("issued_at")?)?,
        received_at: from_millis(row.value("received_at")?)?,
        sequence_gap: row.value("sequence_gap")?,
        chain_broken: row.value("chain_broken")?,
        summary_json: row.value("summary")?,
    })
}

pub(super) fn exception_from_row(row: &impl Columns) -> Result<ExceptionRecord, StoreError> {
    Ok(ExceptionRecord {
        id: from_db_integer(row.value("id")?, "exception id")?,
        device_id: row.value("device_id")?,
        rule_id: row.value("rule_id")?,
        until: from_millis(row.value("until")?)?,
        reason: row.value("reason")?,
        approver: row.value("approver")?,
        created_at: from_millis(row.value("created_at")?)?,
    })
}

pub(super) fn policy_version_from_row(row: &impl Columns) -> Result<PolicyVersionInfo, StoreError> {
    Ok(PolicyVersionInfo {
        revision: from_db_integer(row.value("revision")?, "policy revision")?,
        policy_id: row.value("policy_id")?,
        policy_version: from_db_integer(row.value("policy_version")?, "policy version")?,
        digest: row.value("digest")?,
        created_at: from_millis(row.value("created_at")?)?,
        created_by: row.value("created_by")?,
    })
}

/// The one row of `fleet_sql::summary_counts`; `failing_by_rule` is left
/// empty for the second query.
pub(super) fn fleet_counts_from_row(row: &impl Columns) -> Result<FleetSummary, StoreError> {
    let count = |name: &str| -> Result<u64, StoreError> {
        from_db_integer(row.value(name)?, "device count")
    };
    Ok(FleetSummary {
        devices: count("n_devices")?,
        compliant: count("n_compliant")?,
        failing: count("n_failing")?,
        unknown: count("n_unknown")?,
        stale: count("n_stale")?,
        revoked: count("n_revoked")?,
        failing_by_rule: Vec::new(),
    })
}

/// A `(name, n)` row of a grouped count, the name read from `name_column`.
pub(super) fn named_count_from_row(
    row: &impl Columns,
    name_column: &str,
) -> Result<(String, u64), StoreError> {
    Ok((
        row.value(name_column)?,
        from_db_integer(row.value("n")?, "device count")?,
    ))
}

pub(super) fn trend_day_from_row(row: &impl Columns) -> Result<TrendDay, StoreError> {
    Ok(TrendDay {
        day: day_from_number(row.value("day")?)?,
        reporting: from_db_integer(row.value("reporting")?, "device count")?,
        compliant: from_db_integer(row.value("compliant")?, "device count")?,
    })
}

/// A row of `fleet_sql::longest_failing`, for `group_failing`.
pub(super) fn failing_rule_from_row(
    row: &impl Columns,
) -> Result<(String, String, Option<String>, i64, String), StoreError> {
    Ok((
        row.value("device_id")?,
        row.value("hostname")?,
        row.value("console_user")?,
        row.value("since")?,
        row.value("rule_id")?,
    ))
}
