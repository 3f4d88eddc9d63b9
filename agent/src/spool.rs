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
use palisade_shared::envelope::{
    DEFAULT_MAX_ENVELOPE_BYTES, REPORT_PAYLOAD_TYPE, is_sha256_hex, sha256_hex,
};
use palisade_shared::report::{Event, EventKind};
use palisade_shared::{Envelope, Report};
use serde::Deserialize;

use crate::durable::{self, FileMode};

/// The chain state's file name in the spool directory.
pub const STATE_FILE_NAME: &str = "spool-state.json";
/// Where entries that do not parse are moved.
pub const CORRUPT_DIR_NAME: &str = "corrupt";
/// Every entry's name is its sequence in this many digits (`u64::MAX` has
/// 20) and this suffix, so names sort in sequence order.
const SEQUENCE_DIGITS: usize = 20;
const ENTRY_SUFFIX: &str = ".dsse.json";
/// The only state file version this agent reads and writes.
const STATE_SCHEMA_VERSION: u32 = 1;
/// A state file is about 200 bytes; more is not one.
const MAX_STATE_BYTES: u64 = 64 * 1024;

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
}

impl NextLink {
    /// Puts this link into `report`: its sequence, its `prev_digest`, and a
    /// [`dropped_event`] at `now` when reports were dropped.
    pub fn apply_to(&self, report: &mut Report, now: DateTime<Utc>) {
        report.sequence = self.sequence;
        report.prev_digest.clone_from(&self.prev_digest);
        if self.dropped > 0 {
            report.events.push(dropped_event(self.dropped, now));
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

/// What [`Spool::open`] found and repaired, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Temporary files of interrupted writes, deleted.
    pub temp_files_removed: usize,
    /// Entries that did not parse, moved to `corrupt/` and counted as
    /// dropped (their file names).
    pub quarantined: Vec<String>,
    /// Entries newer than the chain state (an append stopped after writing
    /// its entry), taken into the chain.
    pub adopted: Vec<u64>,
    /// Entries counted as dropped before a crash and deleted now.
    pub evictions_completed: usize,
    /// Entries dropped now because the spool was over its bounds (smaller
    /// bounds in a new config, or an append stopped before evicting).
    pub evicted: Vec<u64>,
    /// Files in the directory that are none of the spool's, left alone.
    pub unknown_files: Vec<String>,
}

impl Recovery {
    /// Whether the spool was exactly as a clean shutdown leaves it.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
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
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
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
    total_bytes: u64,
    state: ChainState,
    /// The last attempt to save `state` failed; the entries on disk still
    /// let `open` rebuild it, but nothing may be deleted until it is saved.
    state_unsaved: bool,
    recovery: Recovery,
}

impl Spool {
    /// Opens the spool in `dir`, creating it (mode `0700`) if needed, and
    /// recovers from whatever a crash left: see the module documentation.
    pub fn open(dir: &Path, limits: SpoolLimits) -> Result<Self, SpoolError> {
        let io_error = |source: io::Error| SpoolError::Io {
            path: dir.to_path_buf(),
            source,
        };
        durable::create_dir_private(dir).map_err(io_error)?;
        let mut recovery = Recovery {
            temp_files_removed: durable::remove_stale_temp_files(dir).map_err(io_error)?,
            ..Recovery::default()
        };
        let saved_state = read_state(dir)?;
        let mut state = saved_state.clone().unwrap_or_default();

        let mut entries = BTreeMap::new();
        let mut carried = BTreeMap::new();
        // Entries newer than the saved state: their digest and the drop
        // count they carried, to take them into the chain.
        let mut newer: BTreeMap<u64, Inspected> = BTreeMap::new();
        // Damaged entries, moved to corrupt/ only once the state counts them.
        let mut damaged: Vec<(String, PathBuf)> = Vec::new();
        let mut highest_quarantined = 0;
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            names.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
        names.sort();
        for (name, path) in names {
            if name == STATE_FILE_NAME
                || name == CORRUPT_DIR_NAME
                || durable::is_temp_file_name(&name)
            {
                continue;
            }
            let Some(sequence) = parse_entry_name(&name) else {
                tracing::warn!(file = %path.display(), "unknown file in the spool directory, left alone");
                recovery.unknown_files.push(name);
                continue;
            };
            if sequence <= state.evicted_through {
                remove_if_present(&path).map_err(io_error)?;
                recovery.evictions_completed += 1;
                continue;
            }
            match read_entry(&path).and_then(|bytes| {
                let inspected = inspect(&bytes)?;
                if inspected.sequence == sequence {
                    Ok((bytes.len() as u64, inspected))
                } else {
                    Err(format!("its report has sequence {}", inspected.sequence))
                }
            }) {
                Ok((size, inspected)) => {
                    entries.insert(sequence, size);
                    if inspected.carried > 0 {
                        carried.insert(sequence, inspected.carried);
                    }
                    if sequence > state.last_sequence {
                        newer.insert(sequence, inspected);
                    }
                }
                Err(reason) => {
                    tracing::error!(file = %path.display(), %reason, "spooled report is damaged; moving it to corrupt/ and counting it as dropped");
                    highest_quarantined = highest_quarantined.max(sequence);
                    recovery.quarantined.push(name.clone());
                    damaged.push((name, path));
                }
            }
        }

        // An append that stopped after writing its entry: the entry is the
        // newest report, and the count it carried has been reported.
        for (sequence, inspected) in &newer {
            state.last_sequence = *sequence;
            state.last_digest.clone_from(&inspected.digest);
            state.dropped = state.dropped.saturating_sub(inspected.carried);
            recovery.adopted.push(*sequence);
        }
        // A damaged entry's number is never reused. Its digest is unknown,
        // so the next report's empty prev_digest shows the break.
        if highest_quarantined > state.last_sequence {
            state.last_sequence = highest_quarantined;
            state.last_digest.clear();
        }
        state.dropped += recovery.quarantined.len() as u64;

        let total_bytes = entries.values().sum();
        let mut spool = Self {
            dir: dir.to_path_buf(),
            limits,
            entries,
            carried,
            total_bytes,
            state,
            state_unsaved: false,
            recovery,
        };
        let evicted = spool.plan_evictions(None);
        spool.state.dropped += spool.drops_in(&evicted);
        if let Some(&newest) = evicted.last() {
            spool.state.evicted_through = newest;
        }
        // As in `append`: count first, then remove. A crash in between
        // counts a damaged entry twice at worst, never loses it or reuses
        // its number.
        if saved_state.as_ref() != Some(&spool.state) {
            write_state(&spool.dir, &spool.state)?;
        }
        for (name, path) in &damaged {
            quarantine(dir, name, path).map_err(io_error)?;
        }
        spool.delete_evicted(&evicted);
        spool.recovery.evicted = evicted;
        if !spool.recovery.is_clean() {
            tracing::warn!(dir = %dir.display(), recovery = ?spool.recovery, "spool recovered from an interrupted run");
        }
        Ok(spool)
    }

    /// What the next report must carry: see [`NextLink`].
    pub fn next_link(&self) -> NextLink {
        NextLink {
            sequence: self.state.last_sequence.saturating_add(1),
            prev_digest: self.state.last_digest.clone(),
            dropped: self.state.dropped,
        }
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

        // Step 1: the entry. From here on the report is spooled.
        let sequence = inspected.sequence;
        let path = self.entry_path(sequence);
        durable::write_atomic(&path, envelope_json, FileMode::WorldReadable).map_err(|source| {
            SpoolError::Io {
                path: path.clone(),
                source,
            }
        })?;
        self.entries.insert(sequence, size);
        if inspected.carried > 0 {
            self.carried.insert(sequence, inspected.carried);
        }
        self.total_bytes += size;
        self.state.last_sequence = sequence;
        self.state.last_digest.clone_from(&inspected.digest);
        self.state.dropped -= inspected.carried;

        // Step 2: the state, counting the evictions before any is deleted.
        let evicted = self.plan_evictions(Some(sequence));
        let mut next_state = self.state.clone();
        next_state.dropped += self.drops_in(&evicted);
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
        fs::read(&path).map_err(|source| SpoolError::Io { path, source })
    }

    /// Removes an entry the collector has acknowledged with a 2xx. Returns
    /// whether it was still pending (it may have been dropped by the bounds
    /// meanwhile).
    pub fn acknowledge(&mut self, sequence: u64) -> Result<bool, SpoolError> {
        let Some(&size) = self.entries.get(&sequence) else {
            return Ok(false);
        };
        if self.state_unsaved {
            // With the state one behind, this entry may be the only record of
            // the chain's head: save the state before deleting it.
            write_state(&self.dir, &self.state)?;
            self.state_unsaved = false;
        }
        let path = self.entry_path(sequence);
        remove_if_present(&path).map_err(|source| SpoolError::Io { path, source })?;
        self.entries.remove(&sequence);
        self.carried.remove(&sequence);
        self.total_bytes -= size;
        Ok(true)
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
        let carried: u64 = evicted.iter().filter_map(|s| self.carried.get(s)).sum();
        evicted.len() as u64 + carried
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

/// The spool's entries without opening it: no recovery, no writes, no
/// parsing. For `palisade-agent spool list` while the daemon runs.
pub fn list_entries(dir: &Path) -> Result<Vec<SpoolEntry>, SpoolError> {
    let io_error = |source: io::Error| SpoolError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(sequence) = parse_entry_name(&name) {
            let bytes = match entry.metadata() {
                Ok(metadata) => metadata.len(),
                // Sent and deleted while we looked.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(io_error(err)),
            };
            entries.push(SpoolEntry {
                sequence,
                bytes,
                path: entry.path(),
            });
        }
    }
    entries.sort_by_key(|entry| entry.sequence);
    Ok(entries)
}

/// `00000000000000000042.dsse.json` for 42.
pub fn entry_name(sequence: u64) -> String {
    format!("{sequence:0width$}{ENTRY_SUFFIX}", width = SEQUENCE_DIGITS)
}

/// The sequence an entry's file name stands for; `None` for any other name.
pub fn parse_entry_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(ENTRY_SUFFIX)?;
    if digits.len() != SEQUENCE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What the spool reads out of a report envelope.
#[derive(Debug)]
struct Inspected {
    sequence: u64,
    prev_digest: String,
    /// Hex SHA-256 of the payload bytes (the chain digest).
    digest: String,
    /// The sum of its `spool_dropped` events' counts.
    carried: u64,
}

/// Parses an envelope and its report payload. The signature is not checked
/// here: the spool holds the agent's own reports, and the collector verifies.
fn inspect(envelope_json: &[u8]) -> Result<Inspected, String> {
    let envelope = Envelope::from_json(envelope_json, DEFAULT_MAX_ENVELOPE_BYTES)
        .map_err(|err| err.to_string())?;
    if envelope.payload_type != REPORT_PAYLOAD_TYPE {
        return Err(format!(
            "payload type is {:?}, not a report",
            envelope.payload_type
        ));
    }
    if envelope.signatures.is_empty() {
        return Err("the envelope is not signed".into());
    }
    let payload = envelope
        .payload_unverified()
        .map_err(|err| err.to_string())?;
    let report = Report::from_json(&payload).map_err(|err| err.to_string())?;
    let mut carried: u64 = 0;
    for event in &report.events {
        if event.kind != EventKind::SpoolDropped {
            continue;
        }
        let count = event
            .details
            .get("count")
            .and_then(serde_json::Value::as_u64)
            .filter(|count| *count > 0)
            .ok_or("a spool_dropped event has no positive details.count")?;
        carried = carried.saturating_add(count);
    }
    Ok(Inspected {
        sequence: report.sequence,
        prev_digest: report.prev_digest,
        digest: sha256_hex(&payload),
        carried,
    })
}

fn read_entry(path: &Path) -> Result<Vec<u8>, String> {
    let size = fs::metadata(path).map_err(|err| err.to_string())?.len();
    if size > DEFAULT_MAX_ENVELOPE_BYTES as u64 {
        return Err(format!("{size} bytes, over the envelope limit"));
    }
    fs::read(path).map_err(|err| err.to_string())
}

/// Moves a damaged entry into `corrupt/`, never over an earlier one.
fn quarantine(dir: &Path, name: &str, path: &Path) -> io::Result<()> {
    let corrupt = dir.join(CORRUPT_DIR_NAME);
    durable::create_dir_private(&corrupt)?;
    let mut target = corrupt.join(name);
    let mut n = 1;
    while target.exists() {
        target = corrupt.join(format!("{name}.{n}"));
        n += 1;
    }
    fs::rename(path, &target)?;
    durable::sync_dir(&corrupt)?;
    durable::sync_dir(dir)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// The chain state file.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ChainState {
    last_sequence: u64,
    last_digest: String,
    dropped: u64,
    evicted_through: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    schema_version: u32,
    last_sequence: u64,
    last_digest: String,
    dropped_unreported: u64,
    evicted_through: u64,
}

fn read_state(dir: &Path) -> Result<Option<ChainState>, SpoolError> {
    let path = dir.join(STATE_FILE_NAME);
    let fail = |reason: String| SpoolError::State {
        path: path.clone(),
        reason,
    };
    let bytes = match fs::metadata(&path) {
        Ok(metadata) if metadata.len() > MAX_STATE_BYTES => {
            return Err(fail(format!("{} bytes is too large", metadata.len())));
        }
        Ok(_) => fs::read(&path).map_err(|err| fail(err.to_string()))?,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(fail(err.to_string())),
    };
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|err| fail(err.to_string()))?;
    if file.schema_version != STATE_SCHEMA_VERSION {
        return Err(fail(format!(
            "schema_version is {}, this agent reads {STATE_SCHEMA_VERSION}",
            file.schema_version
        )));
    }
    let digest_ok = if file.last_sequence == 0 {
        file.last_digest.is_empty()
    } else {
        file.last_digest.is_empty() || is_sha256_hex(&file.last_digest)
    };
    if !digest_ok || file.evicted_through > file.last_sequence {
        return Err(fail("its fields contradict each other".into()));
    }
    Ok(Some(ChainState {
        last_sequence: file.last_sequence,
        last_digest: file.last_digest,
        dropped: file.dropped_unreported,
        evicted_through: file.evicted_through,
    }))
}

fn write_state(dir: &Path, state: &ChainState) -> Result<(), SpoolError> {
    let path = dir.join(STATE_FILE_NAME);
    // `json!` rather than a `Serialize` derive: only the wire types in
    // `shared` are `Serialize` (ARCHITECTURE.md).
    let document = serde_json::json!({
        "schema_version": STATE_SCHEMA_VERSION,
        "last_sequence": state.last_sequence,
        "last_digest": state.last_digest,
        "dropped_unreported": state.dropped,
        "evicted_through": state.evicted_through,
    });
    let mut bytes = document.to_string().into_bytes();
    bytes.push(b'\n');
    durable::write_atomic(&path, &bytes, FileMode::WorldReadable)
        .map_err(|source| SpoolError::Io { path, source })
}

#[cfg(test)]
mod tests;
