//! The entry files: their names, reading one and what it says, moving a
//! damaged one aside.

use std::fs;
use std::io;
use std::path::Path;

use chrono::{DateTime, Utc};
use palisade_shared::envelope::{DEFAULT_MAX_ENVELOPE_BYTES, REPORT_PAYLOAD_TYPE, sha256_hex};
use palisade_shared::report::EventKind;
use palisade_shared::{Envelope, Report};

use super::unrecorded::{self, Unrecorded};
use super::{CORRUPT_DIR_NAME, SpoolEntry, SpoolError};
use crate::durable::{self};

/// Every entry's name is its sequence in this many digits (`u64::MAX` has
/// 20) and this suffix, so names sort in sequence order.
const SEQUENCE_DIGITS: usize = 20;
const ENTRY_SUFFIX: &str = ".dsse.json";

/// The spool's entries without opening it: no recovery, no writes, no
/// parsing. For `palisade-agent spool list` while the daemon runs.
pub fn list_entries(dir: &Path) -> Result<Vec<SpoolEntry>, SpoolError> {
    let io_error = |error: io::Error| SpoolError::Io {
        path: dir.to_path_buf(),
        error,
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
pub(super) struct Inspected {
    pub(super) sequence: u64,
    pub(super) prev_digest: String,
    /// Hex SHA-256 of the payload bytes (the chain digest).
    pub(super) digest: String,
    /// The sum of its `spool_dropped` events' counts.
    pub(super) carried: u64,
    /// What its `cycles_unrecorded` events say.
    pub(super) unrecorded: Option<Unrecorded>,
    /// When it was made: the time of its cycle.
    pub(super) issued_at: DateTime<Utc>,
}

/// Parses an envelope and its report payload. The signature is not checked
/// here: the spool holds the agent's own reports, and the collector verifies.
pub(super) fn inspect(envelope_json: &[u8]) -> Result<Inspected, String> {
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
        carried = carried.saturating_add(unrecorded::positive_count(event)?);
    }
    Ok(Inspected {
        sequence: report.sequence,
        unrecorded: unrecorded::read_events(&report.events)?,
        issued_at: report.issued_at,
        prev_digest: report.prev_digest,
        digest: sha256_hex(&payload),
        carried,
    })
}

pub(super) fn read_entry(path: &Path) -> Result<Vec<u8>, String> {
    let size = fs::metadata(path).map_err(|err| err.to_string())?.len();
    if size > DEFAULT_MAX_ENVELOPE_BYTES as u64 {
        return Err(format!("{size} bytes, over the envelope limit"));
    }
    fs::read(path).map_err(|err| err.to_string())
}

/// Moves a damaged entry into `corrupt/`, never over an earlier one.
pub(super) fn quarantine(dir: &Path, name: &str, path: &Path) -> io::Result<()> {
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

pub(super) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}
