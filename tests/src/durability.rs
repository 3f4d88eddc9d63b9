//! What the SIGKILL loops share (`tests/collector_crash.rs`,
//! `tests/agent_kill_loop.rs`): how many kills and which random moments
//! (`PALISADE_KILLS`, `PALISADE_KILL_SEED`), the reports a database holds
//! read back row by row with plain SQL, the engine's own integrity check,
//! and the check that one device's stored reports are its whole chain.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use ed25519_dalek::VerifyingKey;
use palisade_shared::Report;
use palisade_shared::envelope::{Envelope, KeyId, REPORT_PAYLOAD_TYPE, sha256_hex};
use rand::SeedableRng as _;
use rand::rngs::StdRng;

/// Kills per run when `PALISADE_KILLS` is not set: the floor for CI.
/// The run recorded in RELIABILITY.md sets `PALISADE_KILLS=100`.
pub const DEFAULT_KILLS: usize = 30;

/// How many kills to make and the random moments to make them at.
#[derive(Debug)]
pub struct KillPlan {
    pub kills: usize,
    /// Printed at the start; `PALISADE_KILL_SEED=<seed>` makes the same
    /// choices again (the processes' own timing still varies).
    pub seed: u64,
    pub rng: StdRng,
}

impl KillPlan {
    /// Reads `PALISADE_KILLS` and `PALISADE_KILL_SEED` (a fresh random seed
    /// when unset) and prints both, so a failure can be replayed.
    pub fn from_env(test: &str) -> Self {
        let kills = env_number("PALISADE_KILLS").map_or(DEFAULT_KILLS, |n| n as usize);
        let seed = env_number("PALISADE_KILL_SEED").unwrap_or_else(rand::random);
        println!("{test}: {kills} kills; replay with PALISADE_KILL_SEED={seed}");
        Self {
            kills,
            seed,
            rng: StdRng::seed_from_u64(seed),
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|err| panic!("{name}={text:?} is not a number: {err}")),
    )
}

/// One stored report row: its sequence and the envelope exactly as stored.
pub type StoredRow = (i64, Vec<u8>);

/// Every row of the `reports` table, by device, in sequence order. Plain
/// SQL rather than the store's methods, which look a report up by
/// (device, sequence) and so could not show a second row for one.
pub async fn stored_reports(database_url: &str) -> BTreeMap<String, Vec<StoredRow>> {
    const ROWS: &str = "SELECT device_id, sequence, envelope FROM reports \
                        ORDER BY device_id, sequence, id";
    let rows: Vec<(String, i64, Vec<u8>)> = if database_url.starts_with("sqlite:") {
        let pool = sqlite_read_only(database_url).await;
        let rows = sqlx::query_as(ROWS).fetch_all(&pool).await;
        pool.close().await;
        rows
    } else {
        let pool = postgres(database_url).await;
        let rows = sqlx::query_as(ROWS).fetch_all(&pool).await;
        pool.close().await;
        rows
    }
    .unwrap_or_else(|err| panic!("cannot read the reports of {database_url}: {err}"));
    let mut by_device: BTreeMap<String, Vec<StoredRow>> = BTreeMap::new();
    for (device_id, sequence, envelope) in rows {
        by_device
            .entry(device_id)
            .or_default()
            .push((sequence, envelope));
    }
    by_device
}

/// The database engine's own verdict on the whole database, as lines: on
/// SQLite `PRAGMA integrity_check` (every page, b-tree, index entry and
/// constraint; `["ok"]` when sound), on PostgreSQL the `amcheck` extension
/// (`verify_heapam` on every table and `bt_index_check` with
/// `heapallindexed` on every B-tree index; `["ok"]` when neither finds
/// anything).
pub async fn integrity_check(database_url: &str) -> Vec<String> {
    if database_url.starts_with("sqlite:") {
        let pool = sqlite_read_only(database_url).await;
        let lines: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|err| panic!("PRAGMA integrity_check on {database_url}: {err}"));
        pool.close().await;
        return lines.into_iter().map(|(line,)| line).collect();
    }
    let pool = postgres(database_url).await;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS amcheck")
        .execute(&pool)
        .await
        .unwrap_or_else(|err| panic!("CREATE EXTENSION amcheck on {database_url}: {err}"));
    let heap: Vec<(String, Option<i64>, String)> = sqlx::query_as(
        "SELECT c.relname::text, v.blkno, v.msg FROM pg_class c \
         CROSS JOIN LATERAL verify_heapam(c.oid) v \
         WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|err| panic!("verify_heapam on {database_url}: {err}"));
    let indexes: Vec<(String,)> = sqlx::query_as(
        "SELECT c.oid::regclass::text FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
         WHERE am.amname = 'btree' AND c.relnamespace = 'public'::regnamespace",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|err| panic!("listing the indexes on {database_url}: {err}"));
    for (index,) in &indexes {
        // bt_index_check raises an error at the first inconsistency.
        sqlx::query("SELECT bt_index_check($1::regclass, true)")
            .bind(index)
            .execute(&pool)
            .await
            .unwrap_or_else(|err| panic!("bt_index_check({index}) on {database_url}: {err}"));
    }
    pool.close().await;
    assert!(
        !indexes.is_empty(),
        "amcheck found no index to check in {database_url}"
    );
    if heap.is_empty() {
        return vec!["ok".to_owned()];
    }
    heap.into_iter()
        .map(|(table, block, message)| format!("{table} block {block:?}: {message}"))
        .collect()
}

/// A read-only connection: the checks must not change what they look at.
async fn sqlite_read_only(database_url: &str) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(database_url)
        .unwrap_or_else(|err| panic!("{database_url}: {err}"))
        .read_only(true);
    sqlx::SqlitePool::connect_with(options)
        .await
        .unwrap_or_else(|err| panic!("cannot open {database_url} read-only: {err}"))
}

async fn postgres(database_url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(database_url)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {database_url}: {err}"))
}

/// Asserts that `stored` (one device's rows from [`stored_reports`]) is that
/// device's whole chain: sequences 1, 2, … n, each exactly once; every
/// envelope signed by `key` and carrying its row's sequence and
/// `device_id`; each `prev_digest` the digest of the payload before it
/// (empty for the first). Returns n.
pub fn assert_whole_chain(device_id: &str, key: &VerifyingKey, stored: &[StoredRow]) -> u64 {
    let sequences: Vec<i64> = stored.iter().map(|(sequence, _)| *sequence).collect();
    let expected: Vec<i64> = (1..=sequences.len() as i64).collect();
    assert_eq!(
        sequences, expected,
        "device {device_id}: the stored sequences are not 1..=n each once"
    );
    let key_id = KeyId::of(key);
    let mut prev_digest = String::new();
    for (sequence, bytes) in stored {
        let envelope = Envelope::from_json(bytes, 1 << 20)
            .unwrap_or_else(|err| panic!("device {device_id} #{sequence}: {err}"));
        let verified = envelope
            .verify(REPORT_PAYLOAD_TYPE, |id| (id == &key_id).then_some(*key))
            .unwrap_or_else(|err| panic!("device {device_id} #{sequence}: {err}"));
        let report = Report::from_json(&verified.payload)
            .unwrap_or_else(|err| panic!("device {device_id} #{sequence}: {err}"));
        assert_eq!(report.device_id.as_str(), device_id, "#{sequence}");
        assert_eq!(
            i64::try_from(report.sequence).ok(),
            Some(*sequence),
            "device {device_id}: the row's sequence is not its report's"
        );
        assert_eq!(
            report.prev_digest, prev_digest,
            "device {device_id} #{sequence}: prev_digest is not the digest of the report before"
        );
        prev_digest = sha256_hex(&verified.payload);
    }
    sequences.len() as u64
}
