//! Opening the spool: recovery from whatever a crash left (see the
//! module documentation's "Crashes" for each stopping point and why the
//! repair below is exact).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::entries::{
    Inspected, inspect, parse_entry_name, quarantine, read_entry, remove_if_present,
};
use super::state_file::{read_state, write_state};
use super::{CORRUPT_DIR_NAME, STATE_FILE_NAME, Spool, SpoolError, SpoolLimits, unrecorded};
use crate::durable;

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

impl Spool {
    /// Opens the spool in `dir`, creating it (mode `0700`) if needed, and
    /// recovers from whatever a crash left: see the module documentation.
    pub fn open(dir: &Path, limits: SpoolLimits) -> Result<Self, SpoolError> {
        let io_error = |error: io::Error| SpoolError::Io {
            path: dir.to_path_buf(),
            error,
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
        let mut carried_unrecorded = BTreeMap::new();
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
                    if let Some(unrecorded) = inspected.unrecorded {
                        carried_unrecorded.insert(sequence, unrecorded);
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
            state.unrecorded = unrecorded::subtract(state.unrecorded, inspected.unrecorded);
            recovery.adopted.push(*sequence);
        }
        // A damaged entry's number is never reused. Its digest is unknown,
        // so the next report's empty prev_digest shows the break.
        if highest_quarantined > state.last_sequence {
            state.last_sequence = highest_quarantined;
            state.last_digest.clear();
        }
        // Saturating, here and below: `dropped_unreported` comes from a file
        // on disk, and one near u64::MAX (a person's edit, a disk fault that
        // still parses) overflowed, a panic at every start under overflow
        // checks and a wrap to a tiny count without (found by fuzz/spool_load).
        state.dropped = state
            .dropped
            .saturating_add(recovery.quarantined.len() as u64);

        let total_bytes = entries.values().sum();
        let mut spool = Self {
            dir: dir.to_path_buf(),
            limits,
            entries,
            carried,
            carried_unrecorded,
            total_bytes,
            state,
            state_unsaved: false,
            quarantine_after_save: Vec::new(),
            recovery,
        };
        let evicted = spool.plan_evictions(None);
        let mut with_evictions = spool.state.clone();
        with_evictions.dropped = with_evictions
            .dropped
            .saturating_add(spool.drops_in(&evicted));
        with_evictions.unrecorded =
            unrecorded::add(with_evictions.unrecorded, spool.unrecorded_in(&evicted));
        if let Some(&newest) = evicted.last() {
            with_evictions.evicted_through = newest;
        }
        // As in `append`: count first, then remove. A crash in between
        // counts a damaged entry twice at worst, never loses it or reuses
        // its number.
        if saved_state.as_ref() == Some(&with_evictions) {
            spool.state = with_evictions;
        } else if let Err(err) = write_state(&spool.dir, &with_evictions) {
            // A full disk: the agent must still start, check and deliver
            // (which frees space). What was repaired lives in memory, and
            // the entries on disk let the next start repair it again; no
            // file moves or goes until a state counting it is saved, and
            // the evictions wait for the next append.
            tracing::error!(error = %err, "cannot save the repaired spool state; going on, and saving it when the disk lets us");
            spool.state_unsaved = true;
            spool.quarantine_after_save = damaged;
            return Ok(spool.logged());
        } else {
            spool.state = with_evictions;
        }
        for (name, path) in &damaged {
            quarantine(dir, name, path).map_err(io_error)?;
        }
        spool.delete_evicted(&evicted);
        spool.recovery.evicted = evicted;
        Ok(spool.logged())
    }

    fn logged(self) -> Self {
        if !self.recovery.is_clean() {
            tracing::warn!(dir = %self.dir.display(), recovery = ?self.recovery, "spool recovered from an interrupted run");
        }
        self
    }
}
