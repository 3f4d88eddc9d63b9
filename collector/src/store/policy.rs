//! Policy, exceptions and the audit log: the signed policy revisions served
//! to agents, IT's exceptions, and who did what.
//!
//! SQL written once for both engines (see [`super::engine`]).

use chrono::{DateTime, Utc};

use super::engine::{Stmt, stmt};
use super::rows::*;
use super::*;

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

/// The statement that appends `entry`, for [`Store::append_audit`] and for
/// the methods that write their audit entry in their own transaction.
pub(super) fn audit_insert(entry: &AuditEntry) -> Stmt<'_> {
    stmt(
        "INSERT INTO audit_log (at, actor, action, target, details) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(to_millis(entry.at))
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(&entry.details_json)
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

impl Store {
    pub async fn current_policy(&self) -> Result<Option<PolicyRecord>, StoreError> {
        let row = stmt(
            "SELECT revision, policy_id, policy_version, text, digest, envelope, created_at, \
                    created_by \
             FROM policies ORDER BY revision DESC LIMIT 1",
        )
        .read_optional(&self.pools)
        .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    pub async fn save_policy(&self, policy: &NewPolicy) -> Result<PolicyRecord, StoreError> {
        let row = stmt(
            "INSERT INTO policies \
             (policy_id, policy_version, text, digest, envelope, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING revision",
        )
        .bind(&policy.policy_id)
        .bind(to_db_integer(policy.policy_version, "policy version")?)
        .bind(&policy.text)
        .bind(&policy.digest)
        .bind(policy.envelope.as_slice())
        .bind(to_millis(policy.created_at))
        .bind(&policy.created_by)
        .write_returning(&self.pools)
        .await?
        .ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
        let revision: i64 = row.value("revision")?;
        Ok(PolicyRecord {
            revision: from_db_integer(revision, "policy revision")?,
            policy_id: policy.policy_id.clone(),
            policy_version: policy.policy_version,
            text: policy.text.clone(),
            digest: policy.digest.clone(),
            envelope: policy.envelope.clone(),
            // Round to what was stored, so this equals a later read.
            created_at: from_millis(to_millis(policy.created_at))?,
            created_by: policy.created_by.clone(),
        })
    }

    /// Every stored policy revision, newest first, at most `limit`.
    pub async fn policy_versions(&self, limit: u32) -> Result<Vec<PolicyVersionInfo>, StoreError> {
        let rows = stmt(
            "SELECT revision, policy_id, policy_version, digest, created_at, created_by \
             FROM policies ORDER BY revision DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .read_all(&self.pools)
        .await?;
        rows.iter().map(policy_version_from_row).collect()
    }

    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        audit_insert(entry).write(&self.pools).await?;
        Ok(())
    }

    /// The newest `limit` entries, newest first (by `at`, then by order of
    /// appending).
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = stmt(
            "SELECT at, actor, action, target, details FROM audit_log \
             ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .read_all(&self.pools)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Records an exception; `None` (and nothing stored) when the device does
    /// not exist.
    pub async fn grant_exception(
        &self,
        exception: &NewException,
    ) -> Result<Option<ExceptionRecord>, StoreError> {
        // INSERT … SELECT: nothing is inserted for an unknown device, and the
        // foreign key covers a device deleted in between.
        let row = stmt(
            "INSERT INTO exceptions (device_id, rule_id, until, reason, approver, created_at) \
             SELECT d.id, $2, $3, $4, $5, $6 FROM devices d WHERE d.id = $1 \
             RETURNING id",
        )
        .bind(&exception.device_id)
        .bind(&exception.rule_id)
        .bind(to_millis(exception.until))
        .bind(&exception.reason)
        .bind(&exception.approver)
        .bind(to_millis(exception.created_at))
        .write_returning(&self.pools)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.value("id")?;
        Ok(Some(ExceptionRecord {
            id: from_db_integer(id, "exception id")?,
            device_id: exception.device_id.clone(),
            rule_id: exception.rule_id.clone(),
            // Round to what was stored, so this equals a later read.
            until: from_millis(to_millis(exception.until))?,
            reason: exception.reason.clone(),
            approver: exception.approver.clone(),
            created_at: from_millis(to_millis(exception.created_at))?,
        }))
    }

    /// Exceptions matching `filter`, newest first.
    pub async fn list_exceptions(
        &self,
        filter: &ExceptionFilter,
    ) -> Result<Vec<ExceptionRecord>, StoreError> {
        let rows = stmt(
            "SELECT id, device_id, rule_id, until, reason, approver, created_at \
             FROM exceptions \
             WHERE (CAST($1 AS TEXT) IS NULL OR device_id = $1) \
               AND (CAST($2 AS BIGINT) IS NULL OR until > $2) \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(filter.device_id.as_deref())
        .bind(filter.active_at.map(to_millis))
        .read_all(&self.pools)
        .await?;
        rows.iter().map(exception_from_row).collect()
    }
}
