//! The PostgreSQL backend: for several collector instances behind a load
//! balancer sharing one database.
//!
//! Owns the PostgreSQL connection pool, the PostgreSQL schema
//! (`collector/migrations/postgres/`) and the SQL behind [`StoreBackend`]. It
//! must not decide anything about report chains itself: `store_reports`
//! reads the chain heads and hands them to [`super::batch_plan`].
//!
//! Durability and concurrency:
//! - The server's default `synchronous_commit` (`on`): a commit returns once
//!   the WAL is flushed, so an acknowledged report survives a crash.
//! - Several collectors may store reports for the same device at once.
//!   `store_reports` locks the batch's device rows (`SELECT … FOR UPDATE`,
//!   in id order so two overlapping batches cannot deadlock) before reading
//!   the chain heads; the second collector waits, then sees the first one's
//!   reports. `UNIQUE (device_id, sequence)` is the last line of defence.
//! - A batch is written with one statement per table (arrays bound as
//!   parameters and expanded with `UNNEST`), so a 256-report batch costs a
//!   handful of round trips rather than a thousand.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};

use super::batch_plan::{ChainHead, VerdictUpsert, batch_devices, plan_batch};
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

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per collector. The ingest path holds at most one for writing
/// (the batcher) and a few for key lookups, each a sub-millisecond query; ten
/// is sqlx's default and leaves room for the admin API. PostgreSQL's default
/// `max_connections` of 100 then serves nine collectors with room for an
/// operator's `psql`.
const MAX_CONNECTIONS: u32 = 10;

/// A PostgreSQL database behind a connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and runs the migrations. sqlx takes
    /// an advisory lock around them, so collectors starting together migrate
    /// once.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        // The collector acknowledges a report only after its commit is
        // durable. A server configured with `synchronous_commit = off` would
        // silently break that promise, so every session asks for it.
        let options = PgConnectOptions::from_str(url)?.options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

impl StoreBackend for PostgresStore {
    async fn create_enrollment_secret(
        &self,
        secret: &NewEnrollmentSecret,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrollment_secrets \
             (id, secret_hash, label, max_uses, uses, expires_at, created_at, created_by) \
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7)",
        )
        .bind(&secret.id)
        .bind(secret.secret_hash.as_slice())
        .bind(&secret.label)
        .bind(secret.max_uses.map(i64::from))
        .bind(secret.expires_at.map(to_millis))
        .bind(to_millis(secret.created_at))
        .bind(&secret.created_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_enrollment_secrets(&self) -> Result<Vec<EnrollmentSecretInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, label, max_uses, uses, expires_at, created_at, created_by \
             FROM enrollment_secrets ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(secret_from_row).collect()
    }

    async fn enroll_device(
        &self,
        request: &EnrollDevice,
    ) -> Result<Result<(), EnrollRefusal>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // FOR UPDATE: two enrollments on a single-use secret at once must not
        // both see one use left.
        let secret = sqlx::query(
            "SELECT secret_hash, max_uses, uses, expires_at FROM enrollment_secrets \
             WHERE id = $1 FOR UPDATE",
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
                let key_taken = sqlx::query("SELECT 1 FROM device_keys WHERE key_id = $1")
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
        sqlx::query("UPDATE enrollment_secrets SET uses = uses + 1 WHERE id = $1")
            .bind(&request.secret_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO devices \
             (id, hostname, os_name, os_version, kernel_version, arch, agent_version, \
              enrollment_secret_id, enrolled_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        // The same key enrolling through two different secrets at once: both
        // saw it free above, the second insert waits for the first and then
        // does nothing, and is refused like any other reused key.
        let inserted = sqlx::query(
            "INSERT INTO device_keys (key_id, device_id, public_key, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&request.key_id)
        .bind(&request.device_id)
        .bind(request.public_key.as_slice())
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(Err(EnrollRefusal::KeyAlreadyEnrolled));
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn device_key(&self, key_id: &str) -> Result<Option<DeviceKeyRecord>, StoreError> {
        // A key is revoked when it or its device is.
        let row = sqlx::query(
            "SELECT k.key_id, k.device_id, k.public_key, \
                    COALESCE(k.revoked_at, d.revoked_at) AS revoked_at \
             FROM device_keys k JOIN devices d ON d.id = k.device_id \
             WHERE k.key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn revoke_device(&self, device_id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found =
            sqlx::query("UPDATE devices SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
                .bind(device_id)
                .bind(to_millis(at))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        sqlx::query(
            "UPDATE device_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE device_id = $1",
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
             FROM devices WHERE id = $1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn latest_verdicts(&self, device_id: &str) -> Result<Vec<LatestVerdict>, StoreError> {
        let rows = sqlx::query(
            "SELECT rule_id, status, mode, summary, evidence, fix, status_since, updated_at, \
                    report_sequence \
             FROM latest_verdicts WHERE device_id = $1 ORDER BY rule_id COLLATE \"C\"",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;

        // Lock the batch's devices. ORDER BY makes every collector take the
        // locks in the same order (rows are locked as the sort emits them).
        let devices = batch_devices(batch);
        let head_rows: Vec<(String, Option<i64>, Option<String>, bool)> = sqlx::query_as(
            "SELECT id, last_sequence, last_digest, revoked_at IS NOT NULL FROM devices \
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&devices)
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

        // Read after the locks are held: in READ COMMITTED each statement
        // takes a fresh snapshot, so this sees every report committed by a
        // collector that held these locks before us.
        let mut wanted_devices = Vec::with_capacity(batch.len());
        let mut wanted_sequences = Vec::with_capacity(batch.len());
        for report in batch {
            // A sequence beyond i64 cannot be stored; plan_batch refuses it.
            if let Ok(sequence) = i64::try_from(report.sequence) {
                wanted_devices.push(report.device_id.as_str());
                wanted_sequences.push(sequence);
            }
        }
        let digest_rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT r.device_id, r.sequence, r.digest \
             FROM reports r \
             JOIN UNNEST($1::text[], $2::bigint[]) AS wanted (device_id, sequence) \
               ON r.device_id = wanted.device_id AND r.sequence = wanted.sequence",
        )
        .bind(&wanted_devices)
        .bind(&wanted_sequences)
        .fetch_all(&mut *tx)
        .await?;
        let mut stored_digests = HashMap::new();
        for (device_id, sequence, digest) in digest_rows {
            stored_digests.insert((device_id, from_db_integer(sequence, "sequence")?), digest);
        }

        let plan = plan_batch(batch, heads, &stored_digests)?;

        if !plan.inserts.is_empty() {
            let mut columns = ReportColumns::default();
            for insert in &plan.inserts {
                columns.push(insert)?;
            }
            sqlx::query(
                "INSERT INTO reports \
                 (device_id, key_id, sequence, digest, prev_digest, issued_at, received_at, \
                  envelope, summary, sequence_gap, chain_broken) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], \
                   $5::text[], $6::bigint[], $7::bigint[], $8::bytea[], $9::text[], \
                   $10::boolean[], $11::boolean[])",
            )
            .bind(&columns.device_id)
            .bind(&columns.key_id)
            .bind(&columns.sequence)
            .bind(&columns.digest)
            .bind(&columns.prev_digest)
            .bind(&columns.issued_at)
            .bind(&columns.received_at)
            .bind(&columns.envelope)
            .bind(&columns.summary)
            .bind(&columns.sequence_gap)
            .bind(&columns.chain_broken)
            .execute(&mut *tx)
            .await?;
        }
        let rollups = super::batch_plan::day_rollups(&plan.inserts)?;
        if !rollups.is_empty() {
            let device_id: Vec<&str> = rollups.iter().map(|r| r.device_id).collect();
            let day: Vec<i64> = rollups.iter().map(|r| r.day).collect();
            let issued_at: Vec<i64> = rollups.iter().map(|r| r.issued_at).collect();
            let sequence: Vec<i64> = rollups.iter().map(|r| r.sequence).collect();
            let compliant: Vec<bool> = rollups.iter().map(|r| r.compliant).collect();
            sqlx::query(
                "INSERT INTO device_days (device_id, day, issued_at, sequence, compliant) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], \
                   $5::boolean[]) \
                 ON CONFLICT (device_id, day) DO UPDATE SET issued_at = EXCLUDED.issued_at, \
                   sequence = EXCLUDED.sequence, compliant = EXCLUDED.compliant \
                 WHERE (EXCLUDED.issued_at, EXCLUDED.sequence) > \
                   (device_days.issued_at, device_days.sequence)",
            )
            .bind(&device_id)
            .bind(&day)
            .bind(&issued_at)
            .bind(&sequence)
            .bind(&compliant)
            .execute(&mut *tx)
            .await?;
        }

        if !plan.devices.is_empty() {
            let mut columns = DeviceColumns::default();
            // Verdicts whose stored status_since may carry on, and those
            // whose run of one status began within this batch (see
            // VerdictUpsert). EXCLUDED holds table columns only, so the two
            // kinds go in two statements rather than one with a flag column.
            let mut carrying_on = VerdictColumns::default();
            let mut restarting = VerdictColumns::default();
            let mut heads_device_id = Vec::new();
            let mut heads_sequence = Vec::new();
            for device in &plan.devices {
                columns.push(device)?;
                if let Some(head) = device.head {
                    let sequence = to_db_integer(head.sequence, "sequence")?;
                    heads_device_id.push(device.device_id);
                    heads_sequence.push(sequence);
                    for upsert in &device.head_verdicts {
                        let target = if upsert.continues_stored {
                            &mut carrying_on
                        } else {
                            &mut restarting
                        };
                        target.push(device.device_id, upsert, head, sequence);
                    }
                }
            }
            // A device without a new head (the chain rules never produce one
            // today) keeps its facts and head: the NULLs fall through
            // COALESCE. Flags are only ever set; last_seen_at only moves on.
            sqlx::query(
                "UPDATE devices AS d SET \
                   hostname = COALESCE(u.hostname, d.hostname), \
                   os_name = COALESCE(u.os_name, d.os_name), \
                   os_version = COALESCE(u.os_version, d.os_version), \
                   agent_version = COALESCE(u.agent_version, d.agent_version), \
                   console_user = COALESCE(u.console_user, d.console_user), \
                   policy_id = COALESCE(u.policy_id, d.policy_id), \
                   policy_version = COALESCE(u.policy_version, d.policy_version), \
                   last_sequence = COALESCE(u.last_sequence, d.last_sequence), \
                   last_digest = COALESCE(u.last_digest, d.last_digest), \
                   last_seen_at = GREATEST(d.last_seen_at, u.last_seen_at), \
                   sequence_gap = d.sequence_gap OR u.sequence_gap, \
                   chain_broken = d.chain_broken OR u.chain_broken \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                   $6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], \
                   $11::boolean[], $12::boolean[], $13::text[]) \
                   AS u (id, hostname, os_name, os_version, agent_version, policy_id, \
                         policy_version, last_sequence, last_digest, last_seen_at, \
                         sequence_gap, chain_broken, console_user) \
                 WHERE d.id = u.id",
            )
            .bind(&columns.id)
            .bind(&columns.hostname)
            .bind(&columns.os_name)
            .bind(&columns.os_version)
            .bind(&columns.agent_version)
            .bind(&columns.policy_id)
            .bind(&columns.policy_version)
            .bind(&columns.last_sequence)
            .bind(&columns.last_digest)
            .bind(&columns.last_seen_at)
            .bind(&columns.sequence_gap)
            .bind(&columns.chain_broken)
            .bind(&columns.console_user)
            .execute(&mut *tx)
            .await?;

            carrying_on.upsert(&mut tx, StatusSince::KeepIfSame).await?;
            restarting.upsert(&mut tx, StatusSince::FromBatch).await?;
            if !heads_device_id.is_empty() {
                // A rule the latest report no longer carries (switched off in
                // the policy) must not linger with a stale status.
                sqlx::query(
                    "DELETE FROM latest_verdicts AS v \
                     USING UNNEST($1::text[], $2::bigint[]) AS head (device_id, sequence) \
                     WHERE v.device_id = head.device_id AND v.report_sequence <> head.sequence",
                )
                .bind(&heads_device_id)
                .bind(&heads_sequence)
                .execute(&mut *tx)
                .await?;
            }
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
            "SELECT envelope FROM reports WHERE device_id = $1 AND sequence = $2",
        )
        .bind(device_id)
        .bind(sequence)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn count_reports(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports")
            .fetch_one(&self.pool)
            .await?;
        from_db_integer(count, "report count")
    }

    async fn purge_reports_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The MAX subquery is answered from the (device_id, sequence) index.
        // A report stored concurrently can only be a new highest one, which
        // is after the cutoff and never deleted here.
        let deleted = sqlx::query(
            "DELETE FROM reports WHERE received_at < $1 AND sequence < \
               (SELECT MAX(newest.sequence) FROM reports AS newest \
                WHERE newest.device_id = reports.device_id)",
        )
        .bind(to_millis(cutoff))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // The trend's rollup goes with the reports it was made from: whole
        // UTC days before the cutoff's day.
        sqlx::query("DELETE FROM device_days WHERE day < $1")
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
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    async fn save_policy(&self, policy: &NewPolicy) -> Result<PolicyRecord, StoreError> {
        let revision: i64 = sqlx::query_scalar(
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
        .fetch_one(&self.pool)
        .await?;
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
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, details) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(to_millis(entry.at))
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.details_json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, target, details FROM audit_log \
             ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn create_api_token(&self, token: &NewApiToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, role, label, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.id)
        .bind(token.token_hash.as_slice())
        .bind(token.role.as_str())
        .bind(&token.label)
        .bind(to_millis(token.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn api_token(&self, id: &str) -> Result<Option<StoredApiToken>, StoreError> {
        let row = sqlx::query(
            "SELECT id, token_hash, role, label, created_at, revoked_at \
             FROM api_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let hash = hash_from_bytes(row.try_get("token_hash")?, "token hash")?;
        Ok(Some(StoredApiToken::new(token_from_row(&row)?, hash)))
    }

    async fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, role, label, created_at, revoked_at FROM api_tokens \
             ORDER BY created_at DESC, id COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let found = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(to_millis(at))
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0;
        Ok(found)
    }

    async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError> {
        // One snapshot for the total, the page and its verdicts.
        let mut tx = self.begin_snapshot().await?;
        let count = fleet_sql::device_count(Dialect::Postgres, query);
        let total: i64 = bound(&count).fetch_one(&mut *tx).await?.try_get("n")?;
        let page = fleet_sql::device_page(Dialect::Postgres, query);
        let mut devices = Vec::new();
        for row in bound(&page).fetch_all(&mut *tx).await? {
            let status: String = row.try_get("overall_status")?;
            devices.push((device_from_row(&row)?, parse_device_status(&status)?));
        }
        let mut rules = Vec::new();
        if !devices.is_empty() {
            let ids: Vec<String> = devices.iter().map(|(d, _)| d.device_id.clone()).collect();
            let sql = fleet_sql::rule_statuses(Dialect::Postgres, query.at, &ids);
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
        let mut tx = self.begin_snapshot().await?;
        let row = sqlx::query(
            "SELECT id, hostname, os_name, os_version, kernel_version, arch, agent_version, \
                    policy_id, policy_version, enrollment_secret_id, enrolled_at, last_seen_at, \
                    revoked_at, last_sequence, last_digest, sequence_gap, chain_broken, \
                    console_user \
             FROM devices WHERE id = $1",
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
             FROM latest_verdicts WHERE device_id = $1 ORDER BY rule_id COLLATE \"C\"",
        )
        .bind(device_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(verdict_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let keys = sqlx::query(
            "SELECT key_id, created_at, revoked_at FROM device_keys \
             WHERE device_id = $1 ORDER BY created_at, key_id COLLATE \"C\"",
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
             FROM reports WHERE device_id = $1 ORDER BY sequence DESC LIMIT $2",
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
             FROM exceptions WHERE device_id = $1 AND until > $2 \
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
        let mut tx = self.begin_snapshot().await?;
        let counts = fleet_sql::summary_counts(Dialect::Postgres, at, at - stale_after);
        let mut summary = fleet_counts_from_row(&bound(&counts).fetch_one(&mut *tx).await?)?;
        let by_rule = fleet_sql::failing_by_rule(Dialect::Postgres, at);
        for row in bound(&by_rule).fetch_all(&mut *tx).await? {
            summary
                .failing_by_rule
                .push(named_count_from_row(&row, "rule_id")?);
        }
        tx.commit().await?;
        Ok(summary)
    }

    async fn devices_by_status(&self, at: DateTime<Utc>) -> Result<DeviceStatusCounts, StoreError> {
        let sql = fleet_sql::status_buckets(Dialect::Postgres, at);
        let mut buckets = Vec::new();
        for row in bound(&sql).fetch_all(&self.pool).await? {
            buckets.push(named_count_from_row(&row, "bucket")?);
        }
        count_buckets(buckets)
    }

    async fn grant_exception(
        &self,
        exception: &NewException,
    ) -> Result<Option<ExceptionRecord>, StoreError> {
        // INSERT … SELECT: nothing is inserted for an unknown device, and the
        // foreign key covers a device deleted in between.
        let id: Option<i64> = sqlx::query_scalar(
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
        .fetch_optional(&self.pool)
        .await?;
        let Some(id) = id else { return Ok(None) };
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
             WHERE ($1::text IS NULL OR device_id = $1) \
               AND ($2::bigint IS NULL OR until > $2) \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(filter.device_id.as_deref())
        .bind(filter.active_at.map(to_millis))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(exception_from_row).collect()
    }

    async fn os_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT os_name COLLATE \"C\" AS os_name FROM devices ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn policy_versions(&self, limit: u32) -> Result<Vec<PolicyVersionInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT revision, policy_id, policy_version, digest, created_at, created_by \
             FROM policies ORDER BY revision DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(policy_version_from_row).collect()
    }

    async fn create_admin_user(&self, user: &NewAdminUser) -> Result<bool, StoreError> {
        let created = sqlx::query(
            "INSERT INTO admin_users (username, password_hash, role, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(to_millis(user.created_at))
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0;
        Ok(created)
    }

    async fn admin_user(&self, username: &str) -> Result<Option<StoredAdminUser>, StoreError> {
        let row = sqlx::query(
            "SELECT username, password_hash, role, failed_attempts, locked_until, created_at \
             FROM admin_users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
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
             FROM admin_users ORDER BY username COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(admin_user_from_row).collect()
    }

    async fn delete_admin_user(&self, username: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM admin_users WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    async fn record_failed_login(
        &self,
        username: &str,
        max_attempts: u32,
        lock_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One statement takes the row lock, so concurrent failures are all
        // counted; the right-hand sides see the row as it was.
        let locked: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE admin_users SET \
               failed_attempts = CASE WHEN failed_attempts + 1 >= $2 THEN 0 \
                                      ELSE failed_attempts + 1 END, \
               locked_until = CASE WHEN failed_attempts + 1 >= $2 THEN $3 \
                                   ELSE locked_until END \
             WHERE username = $1 RETURNING locked_until",
        )
        .bind(username)
        .bind(i64::from(max_attempts))
        .bind(to_millis(lock_until))
        .fetch_optional(&self.pool)
        .await?;
        Ok(locked.flatten() == Some(to_millis(lock_until)))
    }

    async fn record_successful_login(&self, username: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE admin_users SET failed_attempts = 0, locked_until = NULL WHERE username = $1",
        )
        .bind(username)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(to_millis(session.created_at))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, username, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
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
             WHERE s.id_hash = $1 AND s.expires_at > $2",
        )
        .bind(id_hash.as_slice())
        .bind(to_millis(at))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash.as_slice())
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    async fn compliance_trend(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<TrendDay>, StoreError> {
        let sql = fleet_sql::compliance_trend(Dialect::Postgres, from, to);
        let mut days = Vec::new();
        for row in bound(&sql).fetch_all(&self.pool).await? {
            days.push(trend_day_from_row(&row)?);
        }
        Ok(days)
    }

    async fn longest_failing(
        &self,
        at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FailingDevice>, StoreError> {
        let sql = fleet_sql::longest_failing(Dialect::Postgres, at, limit);
        let mut rows = Vec::new();
        for row in bound(&sql).fetch_all(&self.pool).await? {
            rows.push(failing_rule_from_row(&row)?);
        }
        group_failing(rows)
    }
}

impl PostgresStore {
    /// A read-only transaction on one snapshot, so the several queries of a
    /// fleet view see the same data.
    async fn begin_snapshot(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?)
    }
}

/// A fleet statement with its values bound. Not kept in the statement
/// cache: its text varies with the filters and the page length.
fn bound(sql: &Sql) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments> {
    let mut query = sqlx::query(sql.text());
    for value in sql.binds() {
        query = match value {
            Bind::Int(v) => query.bind(*v),
            Bind::Text(v) => query.bind(v.as_str()),
        };
    }
    query.persistent(false)
}

/// The reports of a batch as one array per column, for `UNNEST`.
#[derive(Debug, Default)]
struct ReportColumns<'a> {
    device_id: Vec<&'a str>,
    key_id: Vec<&'a str>,
    sequence: Vec<i64>,
    digest: Vec<&'a str>,
    prev_digest: Vec<&'a str>,
    issued_at: Vec<i64>,
    received_at: Vec<i64>,
    envelope: Vec<&'a [u8]>,
    summary: Vec<&'a str>,
    sequence_gap: Vec<bool>,
    chain_broken: Vec<bool>,
}

impl<'a> ReportColumns<'a> {
    fn push(&mut self, insert: &'a super::batch_plan::ReportInsert<'a>) -> Result<(), StoreError> {
        let report = insert.report;
        self.device_id.push(&report.device_id);
        self.key_id.push(&report.key_id);
        self.sequence
            .push(to_db_integer(report.sequence, "sequence")?);
        self.digest.push(&report.digest);
        self.prev_digest.push(&report.prev_digest);
        self.issued_at.push(to_millis(report.issued_at));
        self.received_at.push(to_millis(report.received_at));
        self.envelope.push(&report.envelope);
        self.summary.push(&insert.summary_json);
        self.sequence_gap.push(insert.sequence_gap);
        self.chain_broken.push(insert.chain_broken);
        Ok(())
    }
}

/// The device-row changes of a batch, one array per column; `None` where a
/// device has no new head.
#[derive(Debug, Default)]
struct DeviceColumns<'a> {
    id: Vec<&'a str>,
    hostname: Vec<Option<&'a str>>,
    os_name: Vec<Option<&'a str>>,
    os_version: Vec<Option<&'a str>>,
    agent_version: Vec<Option<&'a str>>,
    policy_id: Vec<Option<&'a str>>,
    policy_version: Vec<Option<i64>>,
    last_sequence: Vec<Option<i64>>,
    last_digest: Vec<Option<&'a str>>,
    last_seen_at: Vec<i64>,
    sequence_gap: Vec<bool>,
    chain_broken: Vec<bool>,
    console_user: Vec<Option<&'a str>>,
}

impl<'a> DeviceColumns<'a> {
    fn push(&mut self, device: &super::batch_plan::DeviceUpdate<'a>) -> Result<(), StoreError> {
        let head = device.head;
        self.id.push(device.device_id);
        self.hostname.push(head.map(|h| h.hostname.as_str()));
        self.os_name.push(head.map(|h| h.os_name.as_str()));
        self.os_version.push(head.map(|h| h.os_version.as_str()));
        self.agent_version
            .push(head.map(|h| h.agent_version.as_str()));
        self.policy_id.push(head.map(|h| h.policy_id.as_str()));
        self.policy_version.push(
            head.map(|h| to_db_integer(h.policy_version, "policy version"))
                .transpose()?,
        );
        self.last_sequence.push(
            head.map(|h| to_db_integer(h.sequence, "sequence"))
                .transpose()?,
        );
        self.last_digest.push(head.map(|h| h.digest.as_str()));
        self.last_seen_at.push(to_millis(device.last_seen_at));
        self.sequence_gap.push(device.sequence_gap);
        self.chain_broken.push(device.chain_broken);
        self.console_user
            .push(head.and_then(|h| h.console_user.as_deref()));
        Ok(())
    }
}

/// New latest verdicts, one array per column.
#[derive(Debug, Default)]
struct VerdictColumns<'a> {
    device_id: Vec<&'a str>,
    rule_id: Vec<&'a str>,
    status: Vec<&'static str>,
    mode: Vec<&'a str>,
    summary: Vec<&'a str>,
    evidence: Vec<&'a str>,
    fix: Vec<&'a str>,
    status_since: Vec<i64>,
    updated_at: Vec<i64>,
    report_sequence: Vec<i64>,
}

impl<'a> VerdictColumns<'a> {
    fn push(
        &mut self,
        device_id: &'a str,
        upsert: &VerdictUpsert<'a>,
        head: &IncomingReport,
        head_sequence: i64,
    ) {
        let verdict = upsert.verdict;
        self.device_id.push(device_id);
        self.rule_id.push(&verdict.rule_id);
        self.status.push(verdict.status.as_str());
        self.mode.push(&verdict.mode);
        self.summary.push(&verdict.summary);
        self.evidence.push(&verdict.evidence_json);
        self.fix.push(&verdict.fix);
        self.status_since.push(to_millis(upsert.status_since));
        self.updated_at.push(to_millis(head.received_at));
        self.report_sequence.push(head_sequence);
    }

    /// Upserts the rows. plan_batch gives each (device, rule) once, as ON
    /// CONFLICT DO UPDATE requires.
    async fn upsert(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        status_since: StatusSince,
    ) -> Result<(), StoreError> {
        if self.device_id.is_empty() {
            return Ok(());
        }
        let status_since_sql = status_since.sql();
        // The right-hand sides of SET all see the row as it was before.
        let sql = format!(
            "INSERT INTO latest_verdicts \
             (device_id, rule_id, status, mode, summary, evidence, fix, \
              status_since, updated_at, report_sequence) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
               $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], \
               $10::bigint[]) \
             ON CONFLICT (device_id, rule_id) DO UPDATE SET \
               status_since = {status_since_sql}, \
               status = EXCLUDED.status, mode = EXCLUDED.mode, \
               summary = EXCLUDED.summary, evidence = EXCLUDED.evidence, \
               fix = EXCLUDED.fix, updated_at = EXCLUDED.updated_at, \
               report_sequence = EXCLUDED.report_sequence"
        );
        sqlx::query(&sql)
            .bind(&self.device_id)
            .bind(&self.rule_id)
            .bind(&self.status)
            .bind(&self.mode)
            .bind(&self.summary)
            .bind(&self.evidence)
            .bind(&self.fix)
            .bind(&self.status_since)
            .bind(&self.updated_at)
            .bind(&self.report_sequence)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

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
                "CASE WHEN latest_verdicts.status = EXCLUDED.status \
                 THEN latest_verdicts.status_since ELSE EXCLUDED.status_since END"
            }
            Self::FromBatch => "EXCLUDED.status_since",
        }
    }
}
