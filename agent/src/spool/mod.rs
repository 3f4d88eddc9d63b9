//! The durable spool of signed reports waiting for the collector, and the
//! report chain's state (the next sequence number and the previous digest).
//!
//! # Layout
//!
//! One directory (by default `state_dir/spool`):
//!
//! ```text
//! 00000000000000000042.dsse.json   one signed report envelope, exactly the
//! 00000000000000000043.dsse.json   bytes that will be sent; named by its
//!                                  sequence, zero-padded so names sort
//! spool-state.json                 the chain state (see below)
//! corrupt/                         entries that did not parse, kept for a person
//! .palisade-tmp-*                  a write that a crash interrupted
//! ```
//!
//! `spool-state.json` holds `last_sequence` and `last_digest` (the newest
//! report ever spooled, even if it has since been sent), `dropped_unreported`
//! (reports dropped by the bounds that no spooled report has reported yet)
//! and `evicted_through` (every entry at or below this sequence has been
//! counted as dropped and is to be deleted).
//!
//! # Contract
//!
//! - [`Spool::append`] returns only once the report is on disk (temp file,
//!   fsync, rename, fsync of the directory: [`durable`]). The daemon appends
//!   before any attempt to send, and builds each report from
//!   [`Spool::next_link`]: its sequence, `prev_digest`, and a
//!   `spool_dropped` event ([`dropped_event`]) when `dropped` is not zero.
//!   The spool reads these back out of the signed payload and refuses a
//!   report that breaks the chain, so a bug cannot spool one.
//! - The bounds ([`SpoolLimits`]) are enforced by dropping the oldest
//!   entries. Each drop is added to `dropped_unreported` (with the drops
//!   the dropped report was itself carrying, which would otherwise vanish
//!   with it), persisted before the file is deleted, and cleared only by
//!   appending a report whose `spool_dropped` event carries it: a loss is
//!   never silent.
//! - [`Spool::pending`] lists entries in sequence order; the sender sends
//!   them in that order and calls [`Spool::acknowledge`] after the
//!   collector's 2xx.
//!
//! # Crashes
//!
//! A SIGKILL or power cut can stop an append at any point. The order of its
//! steps makes every stopping point recoverable by [`Spool::open`]:
//!
//! 1. *Write the entry.* Stopped before the rename: only a temporary file
//!    exists, which `open` deletes; the report was never spooled and its
//!    sequence is free, which is right because `append` had not returned.
//! 2. *Write the state* (`last_sequence` = this report, `dropped_unreported`
//!    less what it carried plus what step 3 will evict, `evicted_through`).
//!    Stopped between 1 and 2: the entry is on disk but the state is one
//!    behind. `open` takes the larger of the state's `last_sequence` and the
//!    highest entry, recomputes that entry's digest from its payload, and
//!    subtracts the drop count it carried. So the next sequence is never one
//!    that is already spooled (no duplicate), `prev_digest` links to it, and
//!    the count it reported is not reported twice.
//! 3. *Delete the evicted entries.* Stopped between 2 and 3: the state
//!    already counts them and names them through `evicted_through`, so
//!    `open` deletes them without counting them again. Deleting before
//!    counting would lose the count in a crash; counting first and marking
//!    what was counted makes it exact.
//!
//! [`Spool::acknowledge`] only deletes a file and does not fsync: if the
//! deletion is lost, the report is sent again, and the collector answers an
//! identical retry with 200. Entries are never rewritten in place, so a
//! reader sees a whole envelope or none. A file that is damaged anyway (a
//! disk fault, a person's edit) is counted as dropped and then moved to
//! `corrupt/`; its sequence number is never reused.
//!
//! The spool has one writer, the daemon: [`Spool::open`] deletes temporary
//! files and so must not run while another process appends. Read-only
//! callers (`palisade-agent spool list`) use [`list_entries`].
//!
//! This module does not sign, send, or decide when to report.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use palisade_shared::Report;
use palisade_shared::envelope::DEFAULT_MAX_ENVELOPE_BYTES;
use palisade_shared::report::{Event, EventKind};

use crate::durable::{self, FileMode};

mod entries;
mod recovery;
mod state_file;
mod unrecorded;

pub use recovery::Recovery;
pub use unrecorded::{Unrecorded, unrecorded_event};

pub use entries::{entry_name, list_entries, parse_entry_name};
use entries::{inspect, remove_if_present};
use state_file::{ChainState, write_state};

/// The chain state's file name in the spool directory.
pub const STATE_FILE_NAME: &str = "spool-state.json";
/// Where entries that do not parse are moved.
pub const CORRUPT_DIR_NAME: &str = "corrupt";

/// 10,000 reports: at one report per 15 minutes, about 100 days without the
/// collector (a long leave, a laptop in a drawer) before the oldest is
/// dropped, and still weeks when events add cycles. With reports of about
/// 5 KiB as envelopes, that is about 50 MiB, so this and
/// [`DEFAULT_SPOOL_MAX_BYTES`] bind at about the same point.
pub const DEFAULT_SPOOL_MAX_REPORTS: u64 = 10_000;

/// 64 MiB: nothing on a laptop disk, and a hard ceiling however large
/// reports grow (more rules, long evidence), so a collector that is gone for
/// good cannot fill the disk.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// How much the spool may hold. Whichever bound is reached first applies;
/// `agent.toml` can change both (`crate::config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    pub max_reports: u64,
    pub max_bytes: u64,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        Self {
            max_reports: DEFAULT_SPOOL_MAX_REPORTS,
            max_bytes: DEFAULT_SPOOL_MAX_BYTES,
        }
    }
}

/// What the next report must carry to extend the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextLink {
    /// Its `sequence`: one more than the newest report ever spooled.
    pub sequence: u64,
    /// Its `prev_digest`: hex SHA-256 of the newest report's payload, or
    /// empty before the first report.
    pub prev_digest: String,
    /// Reports dropped by the bounds and not yet reported: put this in a
    /// [`dropped_event`] when it is not zero.
    pub dropped: u64,
    /// Cycles whose report could not be written and that no spooled report
    /// has reported: put this in an [`unrecorded_event`].
    pub unrecorded: Option<Unrecorded>,
}

impl NextLink {
    /// Puts this link into `report`: its sequence, its `prev_digest`, a
    /// [`dropped_event`] at `now` when reports were dropped, and an
    /// [`unrecorded_event`] when cycles could not be recorded.
    pub fn apply_to(&self, report: &mut Report, now: DateTime<Utc>) {
        report.sequence = self.sequence;
        report.prev_digest.clone_from(&self.prev_digest);
        if self.dropped > 0 {
            report.events.push(dropped_event(self.dropped, now));
        }
        if let Some(unrecorded) = self.unrecorded {
            report.events.push(unrecorded_event(unrecorded, now));
        }
    }
}

/// What one [`Spool::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub sequence: u64,
    /// Hex SHA-256 of the report's payload: the next report's `prev_digest`.
    pub digest: String,
    /// The oldest entries dropped to keep within the bounds, now counted in
    /// [`Spool::dropped_unreported`].
    pub evicted: Vec<u64>,
}

/// One spooled entry, as [`list_entries`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub sequence: u64,
    pub bytes: u64,
    pub path: PathBuf,
}

/// Why the spool refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    // `error` rather than `source`: its text is already in the message,
    // and a chained display would repeat it.
    #[error("spool {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "spool state {path} cannot be read: {reason}. The agent cannot tell which sequence \
         number comes next; move the file away to start the numbering again from the entries \
         present (the collector refuses reused sequence numbers until the device enrolls again)"
    )]
    State { path: PathBuf, reason: String },
    #[error("not a report envelope the spool can take: {0}")]
    InvalidReport(String),
    #[error("report has sequence {got}, but the next in the chain is {expected}")]
    OutOfSequence { expected: u64, got: u64 },
    #[error(
        "report {sequence} has prev_digest {got:?}, but the previous report's digest is {expected:?}"
    )]
    BrokenChain {
        sequence: u64,
        expected: String,
        got: String,
    },
    #[error("report reports {carried} dropped reports, but only {unreported} are unreported")]
    DropCountTooHigh { carried: u64, unreported: u64 },
    #[error("report reports {carried} unrecorded cycles, but only {unreported} are unreported")]
    UnrecordedCountTooHigh { carried: u64, unreported: u64 },
    #[error("report envelope is {size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("report {0} is not in the spool")]
    NotFound(u64),
}

/// The spool, opened by its single writer.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    /// Pending entries: sequence → size in bytes.
    entries: BTreeMap<u64, u64>,
    /// Pending entries that carry a `spool_dropped` count: sequence → count.
    /// Evicting one loses its count too, so the count goes back into
    /// `dropped_unreported` with it.
    carried: BTreeMap<u64, u64>,
    /// Pending entries that carry a `cycles_unrecorded` count, for the same
    /// reason.
    carried_unrecorded: BTreeMap<u64, Unrecorded>,
    total_bytes: u64,
    state: ChainState,
    /// The last attempt to save `state` failed (a full disk): the head of
    /// the chain is recorded only by its entry, which must stay until the
    /// state is saved.
    state_unsaved: bool,
    /// Damaged entries that `open` counted as dropped in a state it could
    /// not save: moved to `corrupt/` once a state counting them is saved.
    quarantine_after_save: Vec<(String, PathBuf)>,
    recovery: Recovery,
}

impl Spool {
    /// What the next report must carry: see [`NextLink`].
    pub fn next_link(&self) -> NextLink {
        NextLink {
            sequence: self.state.last_sequence.saturating_add(1),
            prev_digest: self.state.last_digest.clone(),
            dropped: self.state.dropped,
            unrecorded: self.state.unrecorded,
        }
    }

    /// Cycles whose report could not be written, not yet reported.
    pub fn unrecorded(&self) -> Option<Unrecorded> {
        self.state.unrecorded
    }

    /// Reports dropped by the bounds that no spooled report has reported.
    pub fn dropped_unreported(&self) -> u64 {
        self.state.dropped
    }

    /// Adds a signed report envelope (`envelope_json`, the exact bytes to
    /// send) and returns only once it is durable. Drops the oldest entries if
    /// the spool is then over its bounds.
    ///
    /// The report must extend the chain ([`Spool::next_link`]): its payload
    /// is read back to check its sequence and `prev_digest`, and the
    /// `spool_dropped` counts it carries are subtracted from
    /// [`Spool::dropped_unreported`]. Nothing is written when it is refused.
    ///
    /// When the entry cannot be written (a full disk), the cycle is counted
    /// in [`Spool::unrecorded`] for the next report to carry.
    pub fn append(&mut self, envelope_json: &[u8]) -> Result<Appended, SpoolError> {
        let size = envelope_json.len() as u64;
        let limit = self.limits.max_bytes.min(DEFAULT_MAX_ENVELOPE_BYTES as u64);
        if size > limit {
            return Err(SpoolError::TooLarge { size, limit });
        }
        let inspected = inspect(envelope_json).map_err(SpoolError::InvalidReport)?;
        let link = self.next_link();
        if inspected.sequence != link.sequence || self.state.last_sequence == u64::MAX {
            return Err(SpoolError::OutOfSequence {
                expected: link.sequence,
                got: inspected.sequence,
            });
        }
        if inspected.prev_digest != link.prev_digest {
            return Err(SpoolError::BrokenChain {
                sequence: inspected.sequence,
                expected: link.prev_digest,
                got: inspected.prev_digest,
            });
        }
        if inspected.carried > link.dropped {
            return Err(SpoolError::DropCountTooHigh {
                carried: inspected.carried,
                unreported: link.dropped,
            });
        }
        let count = |unrecorded: Option<Unrecorded>| unrecorded.map_or(0, |u| u.count);
        if count(inspected.unrecorded) > count(link.unrecorded) {
            return Err(SpoolError::UnrecordedCountTooHigh {
                carried: count(inspected.unrecorded),
                unreported: count(link.unrecorded),
            });
        }

        // Step 1: the entry. From here on the report is spooled.
        let sequence = inspected.sequence;
        let path = self.entry_path(sequence);
        if let Err(error) = durable::write_atomic(&path, envelope_json, FileMode::WorldReadable) {
            self.count_unrecorded(inspected.issued_at);
            return Err(SpoolError::Io {
                path: self.dir.clone(),
                error,
            });
        }
        self.entries.insert(sequence, size);
        if inspected.carried > 0 {
            self.carried.insert(sequence, inspected.carried);
        }
        if let Some(unrecorded) = inspected.unrecorded {
            self.carried_unrecorded.insert(sequence, unrecorded);
        }
        self.total_bytes += size;
        self.state.last_sequence = sequence;
        self.state.last_digest.clone_from(&inspected.digest);
        self.state.dropped -= inspected.carried;
        self.state.unrecorded = unrecorded::subtract(self.state.unrecorded, inspected.unrecorded);

        // Step 2: the state, counting the evictions before any is deleted.
        let evicted = self.plan_evictions(Some(sequence));
        let mut next_state = self.state.clone();
        // Saturating: the count may have come from a hostile state file
        // (see `Spool::open`).
        next_state.dropped = next_state.dropped.saturating_add(self.drops_in(&evicted));
        next_state.unrecorded =
            unrecorded::add(next_state.unrecorded, self.unrecorded_in(&evicted));
        if let Some(&newest) = evicted.last() {
            next_state.evicted_through = newest;
        }
        if let Err(err) = write_state(&self.dir, &next_state) {
            // The entry is durable, so `open` would rebuild this state from
            // it; nothing is evicted until the state is saved.
            tracing::error!(error = %err, "cannot save the spool state; will retry");
            self.state_unsaved = true;
            return Ok(Appended {
                sequence,
                digest: inspected.digest,
                evicted: Vec::new(),
            });
        }
        self.state = next_state;
        self.state_unsaved = false;
        self.quarantine_deferred();

        // Step 3: the evicted entries.
        self.delete_evicted(&evicted);
        Ok(Appended {
            sequence,
            digest: inspected.digest,
            evicted,
        })
    }

    /// The pending entries' sequences, oldest first: the order to send in.
    pub fn pending(&self) -> Vec<u64> {
        self.entries.keys().copied().collect()
    }

    /// The oldest pending entry.
    pub fn oldest(&self) -> Option<u64> {
        self.entries.keys().next().copied()
    }

    /// The envelope of a pending entry, byte for byte as appended.
    pub fn read(&self, sequence: u64) -> Result<Vec<u8>, SpoolError> {
        if !self.entries.contains_key(&sequence) {
            return Err(SpoolError::NotFound(sequence));
        }
        let path = self.entry_path(sequence);
        fs::read(&path).map_err(|error| SpoolError::Io { path, error })
    }

    /// Removes an entry the collector has acknowledged with a 2xx. Returns
    /// whether it was still pending (it may have been dropped by the bounds
    /// meanwhile).
    pub fn acknowledge(&mut self, sequence: u64) -> Result<bool, SpoolError> {
        let Some(&size) = self.entries.get(&sequence) else {
            return Ok(false);
        };
        if self.state_unsaved {
            if let Err(err) = self.save_state() {
                // The chain's head may be recorded only by its own entry,
                // which therefore stays. Any older entry may go, and on a
                // full disk must: deleting it is what makes room for the
                // state (and the next report).
                if sequence == self.state.last_sequence {
                    return Err(err);
                }
            }
        }
        let path = self.entry_path(sequence);
        remove_if_present(&path).map_err(|error| SpoolError::Io { path, error })?;
        self.entries.remove(&sequence);
        self.carried.remove(&sequence);
        self.carried_unrecorded.remove(&sequence);
        self.total_bytes -= size;
        if self.state_unsaved {
            let _ = self.save_state();
        }
        Ok(true)
    }

    /// Counts a cycle whose report could not be written, made at `at`, and
    /// tries to save the count. On a full disk that fails too and the count
    /// is kept in memory (see `unrecorded.rs`).
    fn count_unrecorded(&mut self, at: DateTime<Utc>) {
        self.state.unrecorded = unrecorded::add(self.state.unrecorded, Some(Unrecorded::one(at)));
        if self.save_state().is_err() {
            tracing::debug!("cannot save the count of unrecorded cycles either");
        }
    }

    /// Saves the state as it is in memory, then finishes what waited for it.
    fn save_state(&mut self) -> Result<(), SpoolError> {
        let saved = write_state(&self.dir, &self.state);
        self.state_unsaved = saved.is_err();
        saved?;
        self.quarantine_deferred();
        Ok(())
    }

    /// Moves the damaged entries a saved state now counts to `corrupt/`.
    fn quarantine_deferred(&mut self) {
        for (name, path) in std::mem::take(&mut self.quarantine_after_save) {
            if let Err(err) = entries::quarantine(&self.dir, &name, &path) {
                tracing::warn!(file = %path.display(), error = %err, "cannot move a damaged report to corrupt/; the next start does");
            }
        }
    }

    /// New bounds (a reloaded config); applied at the next append.
    pub fn set_limits(&mut self, limits: SpoolLimits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> SpoolLimits {
        self.limits
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pending entries' total size in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `open` repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    fn entry_path(&self, sequence: u64) -> PathBuf {
        self.dir.join(entry_name(sequence))
    }

    /// How many reports evicting `evicted` loses: the entries themselves and
    /// the drops they were carrying to the collector.
    fn drops_in(&self, evicted: &[u64]) -> u64 {
        // Saturating: each entry's count is read from its own file.
        evicted
            .iter()
            .filter_map(|s| self.carried.get(s))
            .fold(evicted.len() as u64, |total, &n| total.saturating_add(n))
    }

    /// The unrecorded cycles that evicting `evicted` would lose with them.
    fn unrecorded_in(&self, evicted: &[u64]) -> Option<Unrecorded> {
        evicted
            .iter()
            .filter_map(|s| self.carried_unrecorded.get(s).copied())
            .fold(None, |total, more| unrecorded::add(total, Some(more)))
    }

    /// The oldest entries to drop so the spool fits its bounds, sparing
    /// `keep` (the report just appended: the newest is never dropped for
    /// the older ones).
    fn plan_evictions(&self, keep: Option<u64>) -> Vec<u64> {
        let mut count = self.entries.len() as u64;
        let mut bytes = self.total_bytes;
        let mut evicted = Vec::new();
        for (&sequence, &size) in &self.entries {
            if count <= self.limits.max_reports && bytes <= self.limits.max_bytes {
                break;
            }
            if Some(sequence) == keep {
                break;
            }
            evicted.push(sequence);
            count -= 1;
            bytes -= size;
        }
        evicted
    }

    /// Deletes entries already counted in the saved state. A failure is
    /// only logged: `evicted_through` makes the next `open` finish the job.
    fn delete_evicted(&mut self, evicted: &[u64]) {
        for &sequence in evicted {
            if let Some(size) = self.entries.remove(&sequence) {
                self.total_bytes -= size;
            }
            self.carried.remove(&sequence);
            self.carried_unrecorded.remove(&sequence);
            let path = self.entry_path(sequence);
            if let Err(err) = remove_if_present(&path) {
                tracing::warn!(file = %path.display(), error = %err, "cannot delete a dropped report");
            }
        }
        if !evicted.is_empty() {
            tracing::warn!(
                count = evicted.len(),
                oldest = evicted.first().copied().unwrap_or_default(),
                newest = evicted.last().copied().unwrap_or_default(),
                "spool full: dropped the oldest reports; the next report says how many"
            );
        }
    }
}

/// A `spool_dropped` event telling the collector that `count` reports were
/// dropped unsent. The spool reads `details.count` back when the report is
/// appended.
pub fn dropped_event(count: u64, at: DateTime<Utc>) -> Event {
    let mut details = serde_json::Map::new();
    details.insert("count".into(), count.into());
    Event {
        kind: EventKind::SpoolDropped,
        at,
        details,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod unrecorded_tests;
