//! The SQLite backend: the embedded default, one file in the state directory.
//!
//! Owns the SQLite connection settings, the SQLite schema
//! (`collector/migrations/sqlite/`) and the SQL behind [`StoreBackend`]. It
//! must not decide anything about report chains itself: `store_reports`
//! reads the chain heads and hands them to [`super::batch_plan`].
//!
//! Durability and concurrency:
//! - WAL journal with `synchronous=FULL`: a commit returns only after the WAL
//!   is fsynced, so an acknowledged report survives a power cut. (`NORMAL`,
//!   the usual WAL pairing, may lose the last commits on power loss.)
//! - SQLite allows one writer at a time. All writes go through `writer`, a
//!   pool of exactly one connection, so writers in this process queue in the
//!   pool (up to sqlx's default acquire timeout, 30 s) instead of failing
//!   with `SQLITE_BUSY`; every write transaction
//!   starts with `BEGIN IMMEDIATE`, taking the write lock up front, so a
//!   transaction never has to upgrade a read lock (which SQLite may refuse
//!   without waiting). The busy timeout covers another process (a
//!   `palisade-collector secret create` next to `serve`) holding the lock.
//! - Reads go through `reader`: in WAL mode readers neither block nor wait
//!   for the writer, so key lookups on the ingest path do not queue behind a
//!   commit's fsync.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::batch_plan::{ChainHead, batch_devices, plan_batch};
use super::fleet_sql::{self, Bind, Dialect, Sql};
use super::rows::{
    admin_user_from_row, audit_from_row, device_from_row, exception_from_row,
    failing_rule_from_row, fleet_counts_from_row, history_from_row, key_from_row,
    key_info_from_row, named_count_from_row, policy_from_row, policy_version_from_row,
    secret_from_row, session_from_row, token_from_row, trend_day_from_row, verdict_from_row,
};
use super::{
    AdminUserInfo, ApiTokenInfo, AuditEntry, DeviceDetail, DeviceKeyRecord, DevicePage,
    DeviceQuery, DeviceRecord, DeviceStatusCounts, EnrollDevice, EnrollRefusal,
    EnrollmentSecretInfo, ExceptionFilter, ExceptionRecord, FailingDevice, FleetSummary,
    IncomingReport, LatestVerdict, NewAdminUser, NewApiToken, NewEnrollmentSecret, NewException,
    NewPolicy, NewSession, PolicyRecord, PolicyVersionInfo, SessionRecord, StoreBackend,
    StoreError, StoreOutcome, StoredAdminUser, StoredApiToken, TrendDay, apply_exceptions,
    assemble_listings, count_buckets, from_db_integer, from_millis, group_failing, hash_from_bytes,
    parse_device_status, parse_status, secret_refusal, to_db_integer, to_millis, utc_day,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a write waits for another process's write lock before failing.
/// Our own transactions hold it briefly (a 256-report batch of 4 KiB
/// envelopes commits in 30 to 50 ms on the CI machine); ten seconds rides out
/// a slow disk or a long retention purge without leaving a request hanging
/// much longer than a client would wait anyway.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The most reader connections. SQLite reads run in this process, each
/// connection on its own sqlx worker thread, so more connections than cores
/// only adds page caches (about 2 MiB each by default) without adding
/// throughput; eight is the core count of a large collector host.
const MAX_READERS: usize = 8;

/// A SQLite database: one writer connection, a few readers.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://PATH`)
    /// and runs the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // The writer is opened (and migrates) first: switching a new file to
        // WAL needs an exclusive lock, which is easiest to get alone.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // Keep the write connection open: reopening costs a file open and
            // the pragmas, and an in-memory database would vanish with it.
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let readers = cores.clamp(2, MAX_READERS);
        let reader = SqlitePoolOptions::new()
            .max_connections(u32::try_from(readers).unwrap_or(2))
            .connect_with(options)
            .await?;
        Ok(Self { writer, reader })
    }

    /// Starts a write transaction holding SQLite's write lock.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

impl StoreBackend for SqliteStore {
    async fn create_enrollment_secret(
        &self,
        secret: &NewEnrollmentSecret,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO enrollment_secrets \
             (id, secret_hash, label, max_uses, uses, expires_at, created_at, created_by) \
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7)",
        )
        .bind(&secret.id)
        .bind(secret.secret_hash.as_slice())
        .bind(&secret.label)
        .bind(secret.max_uses.map(i64::from))
        .bind(secret.expires_at.map(to_millis))
        .bind(to_millis(secret.created_at))
        .bind(&secret.created_by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_enrollment_secrets(&self) -> Result<Vec<EnrollmentSecretInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, label, max_uses, uses, expires_at, created_at, created_by \
             FROM enrollment_secrets ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(secret_from_row).collect()
    }

    async fn enroll_device(
        &self,
        request: &EnrollDevice,
    ) -> Result<Result<(), EnrollRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let secret = sqlx::query(
            "SELECT secret_hash, max_uses, uses, expires_at FROM enrollment_secrets WHERE id = ?1",
        )
        .bind(&request.secret_id)
        .fetch_optional(&mut *tx)
        .await?;
        let refusal = match secret {
            None => Some(EnrollRefusal::UnknownSecret),
            Some(row) => {
                let stored_hash: Vec<u8> = row.try_get("secret_hash")?;
                let max_uses: Option<i64> = row.try_get("max_uses")?;
                let uses: i64 = row.try_get("uses")?;
                let expires_at: Option<i64> = row.try_get("expires_at")?;
                let key_taken = sqlx::query("SELECT 1 FROM device_keys WHERE key_id = ?1")
                    .bind(&request.key_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                secret_refusal(
                    &request.presented_hash,
                    &stored_hash,
                    expires_at,
                    max_uses,
                    uses,
                    to_millis(request.at),
                )
                .or(key_taken.then_some(EnrollRefusal::KeyAlreadyEnrolled))
            }
        };
        if let Some(refusal) = refusal {
            tx.rollback().await?;
            return Ok(Err(refusal));
        }

        let at = to_millis(request.at);
        sqlx::query("UPDATE enrollment_secrets SET uses = uses + 1 WHERE id = ?1")
            .bind(&request.secret_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO devices \
             (id, hostname, os_name, os_version, kernel_version, arch, agent_version, \
              enrollment_secret_id, enrolled_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(&request.device_id)
        .bind(&request.hostname)
        .bind(&request.os_name)
        .bind(&request.os_version)
        .bind(&request.kernel_version)
        .bind(&request.arch)
        .bind(&request.agent_version)
        .bind(&request.secret_id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO device_keys (key_id, device_id, public_key, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&request.key_id)
        .bind(&request.device_id)
        .bind(request.public_key.as_slice())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn device_key(&self, key_id: &str) -> Result<Option<DeviceKeyRecord>, StoreError> {
        // A key is revoked when it or its device is.
        let row = sqlx::query(
            "SELECT k.key_id, k.device_id, k.public_key, \
                    COALESCE(k.revoked_at, d.revoked_at) AS revoked_at \
             FROM device_keys k JOIN devices d ON d.id = k.device_id \
             WHERE k.key_id = ?1",
        )
        .bind(key_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn revoke_device(&self, device_id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let found =
            sqlx::query("UPDATE devices SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1")
                .bind(device_id)
                .bind(to_millis(at))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        sqlx::query(
            "UPDATE device_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE device_id = ?1",
        )
        .bind(device_id)
        .bind(to_millis(at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(found)
    }

    async fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, hostname, os_name, os_version, kernel_version, arch, agent_version, \
                    policy_id, policy_version, enrollment_secret_id, enrolled_at, last_seen_at, \
                    revoked_at, last_sequence, last_digest, sequence_gap, chain_broken, \
                    console_user \
             FROM devices WHERE id = ?1",
        )
        .bind(device_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn latest_verdicts(&self, device_id: &str) -> Result<Vec<LatestVerdict>, StoreError> {
        let rows = sqlx::query(
            "SELECT rule_id, status, mode, summary, evidence, fix, status_since, updated_at, \
                    report_sequence \
             FROM latest_verdicts WHERE device_id = ?1 ORDER BY rule_id",
        )
        .bind(device_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(verdict_from_row).collect()
    }

    async fn store_reports(
        &self,
        batch: &[IncomingReport],
    ) -> Result<Vec<StoreOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // BEGIN IMMEDIATE holds the database's only write lock until commit,
        // so nothing changes between reading the chain heads and writing.
        //
        // Each step is one statement for the whole batch: the batch's rows go
        // in as one JSON parameter that `json_each` expands (SQLite's stand-in
        // for PostgreSQL's array parameters). A statement per row would cost
        // a round trip to sqlx's SQLite worker thread each, about ten
        // statements per report, and cap a batch at a few thousand reports a
        // second.
        let mut tx = self.begin_write().await?;

        let devices = serde_json::to_string(&batch_devices(batch))
            .map_err(|err| StoreError::Corrupt(format!("cannot encode device ids: {err}")))?;
        let head_rows: Vec<(String, Option<i64>, Option<String>, bool)> = sqlx::query_as(
            "SELECT id, last_sequence, last_digest, revoked_at IS NOT NULL FROM devices \
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(devices)
        .fetch_all(&mut *tx)
        .await?;
        let mut heads = HashMap::new();
        for (device_id, last_sequence, last_digest, revoked) in head_rows {
            let last_sequence = last_sequence
                .map(|s| from_db_integer(s, "sequence"))
                .transpose()?;
            heads.insert(
                device_id,
                ChainHead {
                    last_sequence,
                    last_digest,
                    revoked,
                },
            );
        }

        // A sequence beyond i64 cannot be stored; plan_batch refuses it.
        let wanted: Vec<serde_json::Value> = batch
            .iter()
            .filter_map(|report| {
                let sequence = i64::try_from(report.sequence).ok()?;
                Some(serde_json::json!({ "device_id": report.device_id, "sequence": sequence }))
            })
            .collect();
        // CROSS JOIN keeps json_each the outer loop, so each wanted pair is
        // one probe of the (device_id, sequence) index.
        let digest_rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT r.device_id, r.sequence, r.digest \
             FROM json_each(?1) AS wanted CROSS JOIN reports AS r \
             ON r.device_id = wanted.value ->> 'device_id' \
                AND r.sequence = wanted.value ->> 'sequence'",
        )
        .bind(serde_json::Value::Array(wanted).to_string())
        .fetch_all(&mut *tx)
        .await?;
        let mut stored_digests = HashMap::new();
        for (device_id, sequence, digest) in digest_rows {
            stored_digests.insert((device_id, from_db_integer(sequence, "sequence")?), digest);
        }

        let plan = plan_batch(batch, heads, &stored_digests)?;

        // Envelopes are blobs, which JSON cannot carry; the reports go in as
        // multi-row VALUES instead, every value still a bound parameter.
        for chunk in plan.inserts.chunks(REPORT_INSERT_ROWS) {
            let mut sql = String::from(
                "INSERT INTO reports \
                 (device_id, key_id, sequence, digest, prev_digest, issued_at, received_at, \
                  envelope, summary, sequence_gap, chain_broken) VALUES ",
            );
            for index in 0..chunk.len() {
                if index > 0 {
                    sql.push_str(", ");
                }
                sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
            }
            let mut query = sqlx::query(&sql);
            for insert in chunk {
                let report = insert.report;
                query = query
                    .bind(&report.device_id)
                    .bind(&report.key_id)
                    .bind(to_db_integer(report.sequence, "sequence")?)
                    .bind(&report.digest)
                    .bind(&report.prev_digest)
                    .bind(to_millis(report.issued_at))
                    .bind(to_millis(report.received_at))
                    .bind(report.envelope.as_slice())
                    .bind(&insert.summary_json)
                    .bind(insert.sequence_gap)
                    .bind(insert.chain_broken);
            }
            // The text depends on the row count: keep it out of the
            // prepared-statement cache rather than crowd out the fixed ones.
            query.persistent(false).execute(&mut *tx).await?;
        }
        let rollups = super::batch_plan::day_rollups(&plan.inserts)?;
        for chunk in rollups.chunks(REPORT_INSERT_ROWS) {
            let mut sql = String::from(
                "INSERT INTO device_days (device_id, day, issued_at, sequence, compliant) VALUES ",
            );
            for index in 0..chunk.len() {
                if index > 0 {
                    sql.push_str(", ");
                }
                sql.push_str("(?, ?, ?, ?, ?)");
            }
            sql.push_str(
                " ON CONFLICT (device_id, day) DO UPDATE SET issued_at = excluded.issued_at, \
                   sequence = excluded.sequence, compliant = excluded.compliant \
                 WHERE (excluded.issued_at, excluded.sequence) > \
                   (device_days.issued_at, device_days.sequence)",
            );
            let mut query = sqlx::query(&sql);
            for rollup in chunk {
                query = query
                    .bind(rollup.device_id)
                    .bind(rollup.day)
                    .bind(rollup.issued_at)
                    .bind(rollup.sequence)
                    .bind(rollup.compliant);
            }
            query.persistent(false).execute(&mut *tx).await?;
        }

        if plan.devices.is_empty() {
            tx.commit().await?;
            return Ok(plan.outcomes);
        }

        let mut device_rows = Vec::with_capacity(plan.devices.len());
        let mut carrying_on = Vec::new();
        let mut restarting = Vec::new();
        let mut new_heads = Vec::new();
        for device in &plan.devices {
            let head = device.head;
            device_rows.push(serde_json::json!({
                "id": device.device_id,
                "hostname": head.map(|h| &h.hostname),
                "os_name": head.map(|h| &h.os_name),
                "os_version": head.map(|h| &h.os_version),
                "agent_version": head.map(|h| &h.agent_version),
                "console_user": head.and_then(|h| h.console_user.as_ref()),
                "policy_id": head.map(|h| &h.policy_id),
                "policy_version": head
                    .map(|h| to_db_integer(h.policy_version, "policy version"))
                    .transpose()?,
                "last_sequence": head
                    .map(|h| to_db_integer(h.sequence, "sequence"))
                    .transpose()?,
                "last_digest": head.map(|h| &h.digest),
                "last_seen_at": to_millis(device.last_seen_at),
                "sequence_gap": device.sequence_gap,
                "chain_broken": device.chain_broken,
            }));
            let Some(head) = head else { continue };
            let head_sequence = to_db_integer(head.sequence, "sequence")?;
            new_heads.push(serde_json::json!({
                "device_id": device.device_id,
                "sequence": head_sequence,
            }));
            for upsert in &device.head_verdicts {
                let verdict = upsert.verdict;
                let row = serde_json::json!({
                    "device_id": device.device_id,
                    "rule_id": verdict.rule_id,
                    "status": verdict.status.as_str(),
                    "mode": verdict.mode,
                    "summary": verdict.summary,
                    "evidence": verdict.evidence_json,
                    "fix": verdict.fix,
                    "status_since": to_millis(upsert.status_since),
                    "updated_at": to_millis(head.received_at),
                    "report_sequence": head_sequence,
                });
                if upsert.continues_stored {
                    carrying_on.push(row);
                } else {
                    restarting.push(row);
                }
            }
        }

        // A device without a new head (the chain rules never produce one
        // today) keeps its facts and head: the nulls fall through COALESCE.
        // Flags are only ever set; last_seen_at only moves on.
        sqlx::query(
            "UPDATE devices SET \
               hostname = COALESCE(u.value ->> 'hostname', hostname), \
               os_name = COALESCE(u.value ->> 'os_name', os_name), \
               os_version = COALESCE(u.value ->> 'os_version', os_version), \
               agent_version = COALESCE(u.value ->> 'agent_version', agent_version), \
               console_user = COALESCE(u.value ->> 'console_user', console_user), \
               policy_id = COALESCE(u.value ->> 'policy_id', policy_id), \
               policy_version = COALESCE(u.value ->> 'policy_version', policy_version), \
               last_sequence = COALESCE(u.value ->> 'last_sequence', last_sequence), \
               last_digest = COALESCE(u.value ->> 'last_digest', last_digest), \
               last_seen_at = MAX(COALESCE(last_seen_at, u.value ->> 'last_seen_at'), \
                                  u.value ->> 'last_seen_at'), \
               sequence_gap = (sequence_gap OR u.value ->> 'sequence_gap'), \
               chain_broken = (chain_broken OR u.value ->> 'chain_broken') \
             FROM json_each(?1) AS u WHERE devices.id = u.value ->> 'id'",
        )
        .bind(serde_json::Value::Array(device_rows).to_string())
        .execute(&mut *tx)
        .await?;

        upsert_verdicts(&mut tx, carrying_on, StatusSince::KeepIfSame).await?;
        upsert_verdicts(&mut tx, restarting, StatusSince::FromBatch).await?;

        if !new_heads.is_empty() {
            // A rule the latest report no longer carries (switched off in the
            // policy) must not linger with a stale status.
            sqlx::query(
                "DELETE FROM latest_verdicts WHERE rowid IN ( \
                   SELECT v.rowid FROM json_each(?1) AS head CROSS JOIN latest_verdicts AS v \
                   ON v.device_id = head.value ->> 'device_id' \
                   WHERE v.report_sequence <> head.value ->> 'sequence')",
            )
            .bind(serde_json::Value::Array(new_heads).to_string())
            .execute(&mut *tx)
            .await?;
        }

        tx.commit().await?;
        Ok(plan.outcomes)
    }

    async fn report_envelope(
        &self,
        device_id: &str,
        sequence: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Ok(sequence) = i64::try_from(sequence) else {
            return Ok(None);
        };
        Ok(sqlx::query_scalar(
            "SELECT envelope FROM reports WHERE device_id = ?1 AND sequence = ?2",
        )
        .bind(device_id)
        .bind(sequence)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn count_reports(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports")
            .fetch_one(&self.reader)
            .await?;
        from_db_integer(count, "report count")
    }

    async fn purge_reports_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        // The MAX subquery is answered from the (device_id, sequence) index.
        let deleted = sqlx::query(
            "DELETE FROM reports WHERE received_at < ?1 AND sequence < \
               (SELECT MAX(newest.sequence) FROM reports AS newest \
                WHERE newest.device_id = reports.device_id)",
        )
        .bind(to_millis(cutoff))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // The trend's rollup goes with the reports it was made from: whole
        // UTC days before the cutoff's day.
        sqlx::query("DELETE FROM device_days WHERE day < ?1")
            .bind(utc_day(cutoff))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn current_policy(&self) -> Result<Option<PolicyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT revision, policy_id, policy_version, text, digest, envelope, created_at, \
                    created_by \
             FROM policies ORDER BY revision DESC LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    async fn save_policy(&self, policy: &NewPolicy) -> Result<PolicyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let revision: i64 = sqlx::query_scalar(
            "INSERT INTO policies \
             (policy_id, policy_version, text, digest, envelope, created_at, created_by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING revision",
        )
        .bind(&policy.policy_id)
        .bind(to_db_integer(policy.policy_version, "policy version")?)
        .bind(&policy.text)
        .bind(&policy.digest)
        .bind(policy.envelope.as_slice())
        .bind(to_millis(policy.created_at))
        .bind(&policy.created_by)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
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

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, details) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(to_millis(entry.at))
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.details_json)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, target, details FROM audit_log \
             ORDER BY at DESC, id DESC LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn create_api_token(&self, token: &NewApiToken) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, role, label, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&token.id)
        .bind(token.token_hash.as_slice())
        .bind(token.role.as_str())
        .bind(&token.label)
        .bind(to_millis(token.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn api_token(&self, id: &str) -> Result<Option<StoredApiToken>, StoreError> {
        let row = sqlx::query(
            "SELECT id, token_hash, role, label, created_at, revoked_at \
             FROM api_tokens WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let hash = hash_from_bytes(row.try_get("token_hash")?, "token hash")?;
        Ok(Some(StoredApiToken::new(token_from_row(&row)?, hash)))
    }

    async fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, role, label, created_at, revoked_at FROM api_tokens \
             ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let found = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
        )
        .bind(id)
        .bind(to_millis(at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        tx.commit().await?;
        Ok(found)
    }

    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError> {
        // One read transaction: in WAL mode it reads one snapshot, so the
        // total, the page and its verdicts agree.
        let mut tx = self.reader.begin().await?;
        let count = fleet_sql::device_count(Dialect::Sqlite, query);
        let total: i64 = bound(&count).fetch_one(&mut *tx).await?.try_get("n")?;
        let page = fleet_sql::device_page(Dialect::Sqlite, query);
        let mut devices = Vec::new();
        for row in bound(&page).fetch_all(&mut *tx).await? {
            let status: String = row.try_get("overall_status")?;
            devices.push((device_from_row(&row)?, parse_device_status(&status)?));
        }
        let mut rules = Vec::new();
        if !devices.is_empty() {
            let ids: Vec<String> = devices.iter().map(|(d, _)| d.device_id.clone()).collect();
            let sql = fleet_sql::rule_statuses(Dialect::Sqlite, query.at, &ids);
            for row in bound(&sql).fetch_all(&mut *tx).await? {
                let status: String = row.try_get("status")?;
                rules.push((
                    row.try_get("device_id")?,
                    row.try_get("rule_id")?,
                    parse_status(&status)?,
                ));
            }
        }
        tx.commit().await?;
        Ok(DevicePage {
            devices: assemble_listings(devices, rules),
            total: from_db_integer(total, "device count")?,
        })
    }

    async fn device_detail(
        &self,
        device_id: &str,
        at: DateTime<Utc>,
        history: u32,
    ) -> Result<Option<DeviceDetail>, StoreError> {
        let mut tx = self.reader.begin().await?;
        let row = sqlx::query(
            "SELECT id, hostname, os_name, os_version, kernel_version, arch, agent_version, \
                    policy_id, policy_version, enrollment_secret_id, enrolled_at, last_seen_at, \
                    revoked_at, last_sequence, last_digest, sequence_gap, chain_broken, \
                    console_user \
             FROM devices WHERE id = ?1",
        )
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let device = device_from_row(&row)?;
        let verdicts = sqlx::query(
            "SELECT rule_id, status, mode, summary, evidence, fix, status_since, updated_at, \
                    report_sequence \
             FROM latest_verdicts WHERE device_id = ?1 ORDER BY rule_id",
        )
        .bind(device_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(verdict_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let keys = sqlx::query(
            "SELECT key_id, created_at, revoked_at FROM device_keys \
             WHERE device_id = ?1 ORDER BY created_at, key_id",
        )
        .bind(device_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(key_info_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let reports = sqlx::query(
            "SELECT sequence, digest, prev_digest, issued_at, received_at, sequence_gap, \
                    chain_broken, summary \
             FROM reports WHERE device_id = ?1 ORDER BY sequence DESC LIMIT ?2",
        )
        .bind(device_id)
        .bind(i64::from(history))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(history_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let exceptions = sqlx::query(
            "SELECT id, device_id, rule_id, until, reason, approver, created_at \
             FROM exceptions WHERE device_id = ?1 AND until > ?2 \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(device_id)
        .bind(to_millis(at))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(exception_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        let (verdicts, status) = apply_exceptions(verdicts, &exceptions, at);
        Ok(Some(DeviceDetail {
            device,
            status,
            verdicts,
            keys,
            reports,
            exceptions,
        }))
    }

    async fn fleet_summary(
        &self,
        at: DateTime<Utc>,
        stale_after: chrono::TimeDelta,
    ) -> Result<FleetSummary, StoreError> {
        let mut tx = self.reader.begin().await?;
        let counts = fleet_sql::summary_counts(Dialect::Sqlite, at, at - stale_after);
        let mut summary = fleet_counts_from_row(&bound(&counts).fetch_one(&mut *tx).await?)?;
        let by_rule = fleet_sql::failing_by_rule(Dialect::Sqlite, at);
        for row in bound(&by_rule).fetch_all(&mut *tx).await? {
            summary
                .failing_by_rule
                .push(named_count_from_row(&row, "rule_id")?);
        }
        tx.commit().await?;
        Ok(summary)
    }

    async fn devices_by_status(&self, at: DateTime<Utc>) -> Result<DeviceStatusCounts, StoreError> {
        let sql = fleet_sql::status_buckets(Dialect::Sqlite, at);
        let mut buckets = Vec::new();
        for row in bound(&sql).fetch_all(&self.reader).await? {
            buckets.push(named_count_from_row(&row, "bucket")?);
        }
        count_buckets(buckets)
    }

    async fn grant_exception(
        &self,
        exception: &NewException,
    ) -> Result<Option<ExceptionRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM devices WHERE id = ?1")
            .bind(&exception.device_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            tx.rollback().await?;
            return Ok(None);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO exceptions (device_id, rule_id, until, reason, approver, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        )
        .bind(&exception.device_id)
        .bind(&exception.rule_id)
        .bind(to_millis(exception.until))
        .bind(&exception.reason)
        .bind(&exception.approver)
        .bind(to_millis(exception.created_at))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
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

    async fn list_exceptions(
        &self,
        filter: &ExceptionFilter,
    ) -> Result<Vec<ExceptionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, device_id, rule_id, until, reason, approver, created_at \
             FROM exceptions \
             WHERE (?1 IS NULL OR device_id = ?1) AND (?2 IS NULL OR until > ?2) \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(filter.device_id.as_deref())
        .bind(filter.active_at.map(to_millis))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(exception_from_row).collect()
    }

    async fn os_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT os_name FROM devices ORDER BY os_name")
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn policy_versions(&self, limit: u32) -> Result<Vec<PolicyVersionInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT revision, policy_id, policy_version, digest, created_at, created_by \
             FROM policies ORDER BY revision DESC LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(policy_version_from_row).collect()
    }

    async fn create_admin_user(&self, user: &NewAdminUser) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let created = sqlx::query(
            "INSERT INTO admin_users (username, password_hash, role, created_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(to_millis(user.created_at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        tx.commit().await?;
        Ok(created)
    }

    async fn admin_user(&self, username: &str) -> Result<Option<StoredAdminUser>, StoreError> {
        let row = sqlx::query(
            "SELECT username, password_hash, role, failed_attempts, locked_until, created_at \
             FROM admin_users WHERE username = ?1",
        )
        .bind(username)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredAdminUser {
            info: admin_user_from_row(&row)?,
            password_hash: row.try_get("password_hash")?,
        }))
    }

    async fn list_admin_users(&self) -> Result<Vec<AdminUserInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT username, role, failed_attempts, locked_until, created_at \
             FROM admin_users ORDER BY username",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(admin_user_from_row).collect()
    }

    async fn delete_admin_user(&self, username: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let found = sqlx::query("DELETE FROM admin_users WHERE username = ?1")
            .bind(username)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        tx.commit().await?;
        Ok(found)
    }

    async fn record_failed_login(
        &self,
        username: &str,
        max_attempts: u32,
        lock_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        // One statement, so concurrent failures are all counted; the
        // right-hand sides see the row as it was.
        let locked: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE admin_users SET \
               failed_attempts = CASE WHEN failed_attempts + 1 >= ?2 THEN 0 \
                                      ELSE failed_attempts + 1 END, \
               locked_until = CASE WHEN failed_attempts + 1 >= ?2 THEN ?3 \
                                   ELSE locked_until END \
             WHERE username = ?1 RETURNING locked_until",
        )
        .bind(username)
        .bind(i64::from(max_attempts))
        .bind(to_millis(lock_until))
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(locked.flatten() == Some(to_millis(lock_until)))
    }

    async fn record_successful_login(&self, username: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE admin_users SET failed_attempts = 0, locked_until = NULL WHERE username = ?1",
        )
        .bind(username)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?1")
            .bind(to_millis(session.created_at))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, username, csrf_token, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(session.id_hash.as_slice())
        .bind(&session.username)
        .bind(&session.csrf_token)
        .bind(to_millis(session.created_at))
        .bind(to_millis(session.expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(
        &self,
        id_hash: &[u8; 32],
        at: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT s.username, u.role, s.csrf_token, s.expires_at \
             FROM sessions s JOIN admin_users u ON u.username = s.username \
             WHERE s.id_hash = ?1 AND s.expires_at > ?2",
        )
        .bind(id_hash.as_slice())
        .bind(to_millis(at))
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let found = sqlx::query("DELETE FROM sessions WHERE id_hash = ?1")
            .bind(id_hash.as_slice())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        tx.commit().await?;
        Ok(found)
    }

    async fn compliance_trend(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<TrendDay>, StoreError> {
        let sql = fleet_sql::compliance_trend(Dialect::Sqlite, from, to);
        let mut days = Vec::new();
        for row in bound(&sql).fetch_all(&self.reader).await? {
            days.push(trend_day_from_row(&row)?);
        }
        Ok(days)
    }

    async fn longest_failing(
        &self,
        at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FailingDevice>, StoreError> {
        let sql = fleet_sql::longest_failing(Dialect::Sqlite, at, limit);
        let mut rows = Vec::new();
        for row in bound(&sql).fetch_all(&self.reader).await? {
            rows.push(failing_rule_from_row(&row)?);
        }
        group_failing(rows)
    }
}

/// A fleet statement with its values bound. Not kept in the statement
/// cache: its text varies with the filters and the page length.
fn bound(sql: &Sql) -> sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments<'_>> {
    let mut query = sqlx::query(sql.text());
    for value in sql.binds() {
        query = match value {
            Bind::Int(v) => query.bind(*v),
            Bind::Text(v) => query.bind(v.as_str()),
        };
    }
    query.persistent(false)
}

/// Reports per multi-row INSERT: 11 parameters each makes 2,816, far
/// below SQLite's limit of 32,766 bound parameters per statement, and 256 is
/// the batcher's largest batch, so a batch is normally one statement.
const REPORT_INSERT_ROWS: usize = 256;

/// How an upsert sets `status_since` on an existing verdict row.
#[derive(Debug, Clone, Copy)]
enum StatusSince {
    /// Keep the stored time when the status is unchanged.
    KeepIfSame,
    /// The status began within the batch: take the batch's time.
    FromBatch,
}

impl StatusSince {
    /// A fixed SQL fragment; the only text ever formatted into a query here.
    fn sql(self) -> &'static str {
        match self {
            Self::KeepIfSame => {
                "CASE WHEN latest_verdicts.status = excluded.status \
                 THEN latest_verdicts.status_since ELSE excluded.status_since END"
            }
            Self::FromBatch => "excluded.status_since",
        }
    }
}

/// Upserts latest verdicts given as JSON objects (see `store_reports`).
/// plan_batch gives each (device, rule) once, so no row is touched twice.
/// excluded holds table columns only, which is why the two kinds of
/// `status_since` take two statements rather than a flag per row.
async fn upsert_verdicts(
    tx: &mut Transaction<'static, Sqlite>,
    rows: Vec<serde_json::Value>,
    status_since: StatusSince,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    // `WHERE true` resolves SQLite's parsing ambiguity between a SELECT's
    // join and the upsert's ON CONFLICT. The right-hand sides of SET all
    // see the row as it was before the update.
    let sql = format!(
        "INSERT INTO latest_verdicts \
         (device_id, rule_id, status, mode, summary, evidence, fix, \
          status_since, updated_at, report_sequence) \
         SELECT v.value ->> 'device_id', v.value ->> 'rule_id', v.value ->> 'status', \
                v.value ->> 'mode', v.value ->> 'summary', v.value ->> 'evidence', \
                v.value ->> 'fix', v.value ->> 'status_since', v.value ->> 'updated_at', \
                v.value ->> 'report_sequence' \
         FROM json_each(?1) AS v WHERE true \
         ON CONFLICT (device_id, rule_id) DO UPDATE SET \
           status_since = {}, \
           status = excluded.status, mode = excluded.mode, \
           summary = excluded.summary, evidence = excluded.evidence, \
           fix = excluded.fix, updated_at = excluded.updated_at, \
           report_sequence = excluded.report_sequence",
        status_since.sql()
    );
    sqlx::query(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings the durability promise rests on, read back from the
    /// connections the store actually uses.
    #[tokio::test]
    async fn connections_use_wal_full_sync_foreign_keys_and_a_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("new").join("c.db").display());
        // A missing directory is the caller's to create; a missing file is ours.
        assert!(SqliteStore::open(&url).await.is_err());
        std::fs::create_dir(dir.path().join("new")).unwrap();
        let store = SqliteStore::open(&url).await.unwrap();
        for pool in [&store.writer, &store.reader] {
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(journal, "wal");
            // 2 is FULL.
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(synchronous, 2);
            let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(foreign_keys, 1);
            let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(busy_timeout, 10_000);
        }
        assert_eq!(store.writer.options().get_max_connections(), 1);
    }

    /// `sqlite::memory:` works too (one database shared by the writer and
    /// the readers), for tests that need no file.
    #[tokio::test]
    async fn in_memory_database_is_shared_by_writer_and_readers() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        store
            .create_enrollment_secret(&NewEnrollmentSecret {
                id: "sec_a".to_owned(),
                secret_hash: [7; 32],
                label: String::new(),
                max_uses: None,
                expires_at: None,
                created_at: from_millis(0).unwrap(),
                created_by: "test".to_owned(),
            })
            .await
            .unwrap();
        assert_eq!(store.list_enrollment_secrets().await.unwrap().len(), 1);
    }
}
