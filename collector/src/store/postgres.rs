//! The PostgreSQL engine: for several collector instances behind a load
//! balancer sharing one database.
//!
//! Owns the PostgreSQL connection pool, the PostgreSQL schema
//! (`collector/migrations/postgres/`) and the batch statements of
//! `store_reports` (arrays bound as parameters). The rest of the store's SQL
//! is shared ([`super::engine`]). It must not decide anything about report
//! chains itself: it reads the chain heads and writes what
//! [`super::batch_plan`] planned.
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

use std::str::FromStr;

use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use super::batch_plan::{BatchPlan, VerdictUpsert};
use super::batch_rows::{HeadRow, StatusSince, StoredDigestRow};
use super::engine::Pools;
use super::{IncomingReport, StoreError, to_db_integer, to_millis};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per collector. The ingest path holds at most one for writing
/// (the batcher) and a few for key lookups, each a sub-millisecond query; ten
/// is sqlx's default and leaves room for the admin API. PostgreSQL's default
/// `max_connections` of 100 then serves nine collectors with room for an
/// operator's `psql`.
const MAX_CONNECTIONS: u32 = 10;

/// How long the first connection at start may take before the collector
/// says the server cannot be reached.
const FIRST_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to `url` (`postgres://…`) and runs the migrations. sqlx takes an
/// advisory lock around them, so collectors starting together migrate once.
pub(super) async fn open(url: &str) -> Result<Pools, StoreError> {
    // The collector acknowledges a report only after its commit is
    // durable. A server configured with `synchronous_commit = off` would
    // silently break that promise, so every session asks for it.
    let options = PgConnectOptions::from_str(url)?.options([("synchronous_commit", "on")]);
    // One connection first, bounded: the pool would retry a refused or
    // unanswered connection for its whole acquire timeout and then say only
    // "pool timed out". A server that cannot be reached at start is said at
    // once, with where it was looked for.
    let unreachable = |reason: String| StoreError::Unreachable {
        server: format!("{}:{}", options.get_host(), options.get_port()),
        reason,
    };
    match tokio::time::timeout(FIRST_CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(Ok(connection)) => connection.close().await?,
        Ok(Err(sqlx::Error::Io(err))) => return Err(unreachable(err.to_string())),
        Ok(Err(err)) => return Err(err.into()),
        Err(_) => {
            return Err(unreachable(format!(
                "no answer within {} s",
                FIRST_CONNECT_TIMEOUT.as_secs()
            )));
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .connect_with(options)
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(Pools::Postgres(pool))
}

/// The chain heads of the batch's devices, locked until commit. ORDER BY
/// makes every collector take the locks in the same order (rows are locked
/// as the sort emits them).
pub(super) async fn chain_heads(
    tx: &mut Transaction<'static, Postgres>,
    devices: &[&str],
) -> Result<Vec<HeadRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, last_sequence, last_digest, revoked_at IS NOT NULL FROM devices \
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(devices)
    .fetch_all(&mut **tx)
    .await?)
}

/// The digests already stored at the batch's (device, sequence) pairs.
/// Read after the locks are held: in READ COMMITTED each statement takes a
/// fresh snapshot, so this sees every report committed by a collector that
/// held these locks before us.
pub(super) async fn stored_digests(
    tx: &mut Transaction<'static, Postgres>,
    batch: &[IncomingReport],
) -> Result<Vec<StoredDigestRow>, StoreError> {
    let mut wanted_devices = Vec::with_capacity(batch.len());
    let mut wanted_sequences = Vec::with_capacity(batch.len());
    for report in batch {
        // A sequence beyond i64 cannot be stored; plan_batch refuses it.
        if let Ok(sequence) = i64::try_from(report.sequence) {
            wanted_devices.push(report.device_id.as_str());
            wanted_sequences.push(sequence);
        }
    }
    Ok(sqlx::query_as(
        "SELECT r.device_id, r.sequence, r.digest \
             FROM reports r \
             JOIN UNNEST($1::text[], $2::bigint[]) AS wanted (device_id, sequence) \
               ON r.device_id = wanted.device_id AND r.sequence = wanted.sequence",
    )
    .bind(&wanted_devices)
    .bind(&wanted_sequences)
    .fetch_all(&mut **tx)
    .await?)
}

/// Writes what [`super::batch_plan::plan_batch`] planned.
pub(super) async fn write_plan(
    tx: &mut Transaction<'static, Postgres>,
    plan: &BatchPlan<'_>,
) -> Result<(), StoreError> {
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
        .execute(&mut **tx)
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
        .execute(&mut **tx)
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
        .execute(&mut **tx)
        .await?;

        carrying_on.upsert(tx, StatusSince::KeepIfSame).await?;
        restarting.upsert(tx, StatusSince::FromBatch).await?;
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
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
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
