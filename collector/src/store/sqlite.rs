//! The SQLite engine: the embedded default, one file in the state directory.
//!
//! Owns the SQLite connection settings, the SQLite schema
//! (`collector/migrations/sqlite/`) and the batch statements of
//! `store_reports` (SQLite has no array parameters; JSON stands in). The
//! rest of the store's SQL is shared ([`super::engine`]). It must not decide
//! anything about report chains itself: it reads the chain heads and writes
//! what [`super::batch_plan`] planned.
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

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    SqliteTransactionManager,
};
use sqlx::{Connection as _, TransactionManager as _};
use sqlx::{Sqlite, Transaction};

use super::batch_plan::BatchPlan;
use super::batch_rows::{HeadRow, StatusSince, StoredDigestRow};
use super::engine::Pools;
use super::{IfMissing, IncomingReport, StoreError, to_db_integer, to_millis};

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

/// Opens the database at `url` (`sqlite://PATH`), creating it if it is
/// missing and `if_missing` allows, and runs the migrations: one writer
/// connection, a few readers.
pub(super) async fn open(url: &str, if_missing: IfMissing) -> Result<Pools, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?;
    let path = options.get_filename();
    let in_memory = path == Path::new(":memory:") || url.contains("mode=memory");
    if if_missing == IfMissing::Refuse && !in_memory && !path.exists() {
        return Err(StoreError::Missing {
            path: path.to_owned(),
        });
    }
    let options = options
        .create_if_missing(if_missing == IfMissing::Create)
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
        // A COMMIT that fails on a full disk can leave the connection
        // counting a transaction SQLite has already rolled back (the
        // rollback sqlx queues then fails too), and every later BEGIN is
        // refused: "begin_with at non-zero transaction depth", until a
        // restart. So a connection that comes back still inside a
        // transaction, once the queued rollback has run (the ping flushes
        // it), is closed, and the pool opens a fresh one when space returns.
        .after_release(|connection, _| {
            Box::pin(async move {
                connection.ping().await?;
                Ok(SqliteTransactionManager::get_transaction_depth(connection) == 0)
            })
        })
        .connect_with(options.clone())
        .await?;
    MIGRATOR.run(&writer).await?;
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let readers = cores.clamp(2, MAX_READERS);
    let reader = SqlitePoolOptions::new()
        .max_connections(u32::try_from(readers).unwrap_or(2))
        .connect_with(options)
        .await?;
    Ok(Pools::Sqlite { writer, reader })
}

/// The chain heads of the batch's devices. BEGIN IMMEDIATE holds the
/// database's only write lock until commit, so nothing changes between
/// reading them and writing.
///
/// Each step of a batch is one statement for the whole batch: the batch's
/// rows go in as one JSON parameter that `json_each` expands (SQLite's
/// stand-in for PostgreSQL's array parameters). A statement per row would
/// cost a round trip to sqlx's SQLite worker thread each, about ten
/// statements per report, and cap a batch at a few thousand reports a
/// second.
pub(super) async fn chain_heads(
    tx: &mut Transaction<'static, Sqlite>,
    devices: &[&str],
) -> Result<Vec<HeadRow>, StoreError> {
    let devices = serde_json::to_string(devices)
        .map_err(|err| StoreError::Corrupt(format!("cannot encode device ids: {err}")))?;
    Ok(sqlx::query_as(
        "SELECT id, last_sequence, last_digest, revoked_at IS NOT NULL FROM devices \
         WHERE id IN (SELECT value FROM json_each(?1))",
    )
    .bind(devices)
    .fetch_all(&mut **tx)
    .await?)
}

/// The digests already stored at the batch's (device, sequence) pairs.
pub(super) async fn stored_digests(
    tx: &mut Transaction<'static, Sqlite>,
    batch: &[IncomingReport],
) -> Result<Vec<StoredDigestRow>, StoreError> {
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
    Ok(sqlx::query_as(
        "SELECT r.device_id, r.sequence, r.digest \
             FROM json_each(?1) AS wanted CROSS JOIN reports AS r \
             ON r.device_id = wanted.value ->> 'device_id' \
                AND r.sequence = wanted.value ->> 'sequence'",
    )
    .bind(serde_json::Value::Array(wanted).to_string())
    .fetch_all(&mut **tx)
    .await?)
}

/// Writes what [`super::batch_plan::plan_batch`] planned.
pub(super) async fn write_plan(
    tx: &mut Transaction<'static, Sqlite>,
    plan: &BatchPlan<'_>,
) -> Result<(), StoreError> {
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
        query.persistent(false).execute(&mut **tx).await?;
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
        query.persistent(false).execute(&mut **tx).await?;
    }

    if plan.devices.is_empty() {
        return Ok(());
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
    .execute(&mut **tx)
    .await?;

    upsert_verdicts(tx, carrying_on, StatusSince::KeepIfSame).await?;
    upsert_verdicts(tx, restarting, StatusSince::FromBatch).await?;

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
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Reports per multi-row INSERT: 11 parameters each makes 2,816, far
/// below SQLite's limit of 32,766 bound parameters per statement, and 256 is
/// the batcher's largest batch, so a batch is normally one statement.
const REPORT_INSERT_ROWS: usize = 256;

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
    use crate::store::{NewEnrollmentSecret, Store, from_millis};

    /// The settings the durability promise rests on, read back from the
    /// connections the store actually uses.
    #[tokio::test]
    async fn connections_use_wal_full_sync_foreign_keys_and_a_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("new").join("c.db").display());
        // A missing directory is the caller's to create; a missing file is ours.
        assert!(open(&url, IfMissing::Create).await.is_err());
        std::fs::create_dir(dir.path().join("new")).unwrap();
        let Pools::Sqlite { writer, reader } = open(&url, IfMissing::Create).await.unwrap() else {
            unreachable!("a sqlite URL opens SQLite")
        };
        for pool in [&writer, &reader] {
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
        assert_eq!(writer.options().get_max_connections(), 1);
    }

    /// `sqlite::memory:` works too (one database shared by the writer and
    /// the readers), for tests that need no file.
    #[tokio::test]
    async fn in_memory_database_is_shared_by_writer_and_readers() {
        let store = Store::open("sqlite::memory:").await.unwrap();
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
