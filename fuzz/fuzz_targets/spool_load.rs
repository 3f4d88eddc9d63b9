//! The spool as the agent finds it on disk at start: a state file and
//! entries that a crash tore or someone edited. The input is one entry's
//! bytes, then (after the first NUL, which JSON never holds) the state
//! file's. The entry is written under its report's sequence (1 when it has
//! none) and again, damaged, under the next one, so that adoption,
//! quarantine and eviction (one report kept) all run. `Spool::open` must
//! answer, an error or a spool, and never panic.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use palisade_agent::spool::{
    STATE_FILE_NAME, Spool, SpoolLimits, entry_name, list_entries, parse_entry_name,
};
use palisade_shared::envelope::DEFAULT_MAX_ENVELOPE_BYTES;
use palisade_shared::{Envelope, Report};

/// A directory of this process's on tmpfs when there is one: `open` syncs.
static BASE: LazyLock<PathBuf> = LazyLock::new(|| {
    let shm = PathBuf::from("/dev/shm");
    let parent = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    parent.join(format!("palisade-fuzz-spool-{}", std::process::id()))
});

fn sequence_of(entry: &[u8]) -> Option<u64> {
    let envelope = Envelope::from_json(entry, DEFAULT_MAX_ENVELOPE_BYTES).ok()?;
    let payload = envelope.payload_unverified().ok()?;
    Some(Report::from_json(&payload).ok()?.sequence)
}

fuzz_target!(|bytes: &[u8]| {
    let _ = parse_entry_name(&String::from_utf8_lossy(bytes));
    let (entry, state) = match bytes.iter().position(|&b| b == 0) {
        Some(at) => (&bytes[..at], Some(&bytes[at + 1..])),
        None => (bytes, None),
    };
    let dir = BASE.join("spool");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the fuzz spool directory");
    let sequence = sequence_of(entry).unwrap_or(1).clamp(1, u64::MAX - 1);
    std::fs::write(dir.join(entry_name(sequence)), entry).expect("writing an entry");
    let mut damaged = entry.to_vec();
    damaged.truncate(entry.len() / 2);
    std::fs::write(dir.join(entry_name(sequence + 1)), &damaged).expect("writing an entry");
    if let Some(state) = state {
        std::fs::write(dir.join(STATE_FILE_NAME), state).expect("writing the state");
    }
    let _ = list_entries(&dir);
    let limits = SpoolLimits {
        max_reports: 1,
        ..SpoolLimits::default()
    };
    if let Ok(spool) = Spool::open(&dir, limits) {
        let _ = spool.next_link();
        let _ = spool.unrecorded();
        let _ = spool.pending();
    }
});
