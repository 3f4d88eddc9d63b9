//! Reports: storing a batch of verified reports (the ingest path), reading a
//! stored envelope back, and the retention purge.
//!
//! `store_reports` reads the chain heads, hands them to
//! [`super::batch_plan`] (which applies [`super::chain`]) and writes the plan
//! with the engine's batch statements (`sqlite.rs`, `postgres.rs`), all in
//! one transaction. The rest is SQL written once for both engines.

use chrono::{DateTime, Utc};
use palisade_shared::report::CheckStatus;

use std::collections::HashMap;

use super::batch_plan::{ChainHead, batch_devices, plan_batch};
use super::engine::{Tx, stmt};
use super::rows::*;
use super::*;
use super::{postgres, sqlite};

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

impl Store {
    /// Stores a batch in one transaction, returning one outcome per report in
    /// order. Reports of the same device in one batch are decided in order.
    pub async fn store_reports(
        &self,
        batch: &[IncomingReport],
    ) -> Result<Vec<StoreOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pools.begin_write().await?;
        let devices = batch_devices(batch);
        let (head_rows, digest_rows) = match &mut tx {
            Tx::Sqlite(tx) => (
                sqlite::chain_heads(tx, &devices).await?,
                sqlite::stored_digests(tx, batch).await?,
            ),
            Tx::Postgres(tx) => (
                postgres::chain_heads(tx, &devices).await?,
                postgres::stored_digests(tx, batch).await?,
            ),
        };
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
        let mut stored = HashMap::new();
        for (device_id, sequence, digest) in digest_rows {
            stored.insert((device_id, from_db_integer(sequence, "sequence")?), digest);
        }

        let plan = plan_batch(batch, heads, &stored)?;
        match &mut tx {
            Tx::Sqlite(tx) => sqlite::write_plan(tx, &plan).await?,
            Tx::Postgres(tx) => postgres::write_plan(tx, &plan).await?,
        }
        tx.commit().await?;
        Ok(plan.outcomes)
    }
    /// The envelope stored for a device's sequence, byte for byte.
    pub async fn report_envelope(
        &self,
        device_id: &str,
        sequence: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Ok(sequence) = i64::try_from(sequence) else {
            return Ok(None);
        };
        let row = stmt("SELECT envelope FROM reports WHERE device_id = $1 AND sequence = $2")
            .bind(device_id)
            .bind(sequence)
            .read_optional(&self.pools)
            .await?;
        row.map(|row| row.value("envelope")).transpose()
    }

    /// How many reports are stored (for tests and metrics).
    pub async fn count_reports(&self) -> Result<u64, StoreError> {
        let count: i64 = stmt("SELECT COUNT(*) AS n FROM reports")
            .read_one(&self.pools)
            .await?
            .value("n")?;
        from_db_integer(count, "report count")
    }

    /// Deletes raw reports received before `cutoff`, keeping each device's
    /// latest; returns how many were deleted.
    pub async fn purge_reports_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pools.begin_write().await?;
        // The MAX subquery is answered from the (device_id, sequence) index.
        let deleted = stmt(
            "DELETE FROM reports WHERE received_at < $1 AND sequence < \
               (SELECT MAX(newest.sequence) FROM reports AS newest \
                WHERE newest.device_id = reports.device_id)",
        )
        .bind(to_millis(cutoff))
        .execute(&mut tx)
        .await?;
        // The trend's rollup goes with the reports it was made from: whole
        // UTC days before the cutoff's day.
        stmt("DELETE FROM device_days WHERE day < $1")
            .bind(utc_day(cutoff))
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}
