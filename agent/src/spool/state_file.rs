//! The chain state file, `spool-state.json`: read with every field checked,
//! written atomically.

use std::fs;
use std::io;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use palisade_shared::envelope::is_sha256_hex;
use serde::Deserialize;

use super::unrecorded::Unrecorded;
use super::{STATE_FILE_NAME, SpoolError};
use crate::durable::{self, FileMode};

/// The only state file version this agent reads and writes.
const STATE_SCHEMA_VERSION: u32 = 1;
/// A state file is about 200 bytes; more is not one.
const MAX_STATE_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ChainState {
    pub(super) last_sequence: u64,
    pub(super) last_digest: String,
    pub(super) dropped: u64,
    pub(super) evicted_through: u64,
    /// Cycles whose report could not be written, not yet reported.
    pub(super) unrecorded: Option<Unrecorded>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateFile {
    schema_version: u32,
    last_sequence: u64,
    last_digest: String,
    dropped_unreported: u64,
    evicted_through: u64,
    // Written only when there are some, so a state file without them is
    // still the one earlier agents read.
    #[serde(default)]
    unrecorded_cycles: u64,
    #[serde(default)]
    unrecorded_since: Option<DateTime<Utc>>,
}

pub(super) fn read_state(dir: &Path) -> Result<Option<ChainState>, SpoolError> {
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
    let unrecorded = match (file.unrecorded_cycles, file.unrecorded_since) {
        (0, None) => None,
        (count @ 1.., Some(since)) => Some(Unrecorded { count, since }),
        _ => {
            return Err(fail(
                "unrecorded_cycles and unrecorded_since go together".into(),
            ));
        }
    };
    Ok(Some(ChainState {
        last_sequence: file.last_sequence,
        last_digest: file.last_digest,
        dropped: file.dropped_unreported,
        evicted_through: file.evicted_through,
        unrecorded,
    }))
}

pub(super) fn write_state(dir: &Path, state: &ChainState) -> Result<(), SpoolError> {
    let path = dir.join(STATE_FILE_NAME);
    // `json!` rather than a `Serialize` derive: only the wire types in
    // `shared` are `Serialize` (ARCHITECTURE.md).
    let mut document = serde_json::json!({
        "schema_version": STATE_SCHEMA_VERSION,
        "last_sequence": state.last_sequence,
        "last_digest": state.last_digest,
        "dropped_unreported": state.dropped,
        "evicted_through": state.evicted_through,
    });
    if let Some(unrecorded) = state.unrecorded {
        document["unrecorded_cycles"] = unrecorded.count.into();
        document["unrecorded_since"] = unrecorded
            .since
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
            .into();
    }
    let mut bytes = document.to_string().into_bytes();
    bytes.push(b'\n');
    durable::write_atomic(&path, &bytes, FileMode::WorldReadable)
        .map_err(|error| SpoolError::Io { path, error })
}
