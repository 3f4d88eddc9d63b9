//! A log file for the processes that have no stderr anyone reads: the
//! Windows service (`palisade-agent service`) and the nudge helper started
//! at logon (`palisade-nudge`). It only opens the file; what is logged and
//! how is the caller's choice.

use std::path::Path;

use anyhow::Context as _;

/// A log file past this size is moved to `<name>.old` when the process
/// starts (one generation kept), so a process that warns every minute for
/// months cannot fill the disk. 1 MiB holds weeks of the daemon's info
/// lines (a few per check cycle, one cycle every 15 minutes).
pub const MAX_LOG_BYTES: u64 = 1024 * 1024;

/// Opens `path` for appending, making its directory and moving an
/// oversized old log aside first.
pub fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the log directory {}", parent.display()))?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
        let mut old = path.as_os_str().to_owned();
        old.push(".old");
        std::fs::rename(path, &old)
            .with_context(|| format!("cannot move the full log {} aside", path.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log file {}", path.display()))
}
