//! Waiting for a line in a log file another process writes (a Windows
//! service's, a daemon's): the file is read again each time the file system
//! says something under the watched directory changed, so nothing sleeps.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};

/// A log file and the watch on the directory it will appear in.
#[derive(Debug)]
pub struct LogWatch {
    pub path: PathBuf,
    deadline: Duration,
    changes: mpsc::Receiver<notify::Result<notify::Event>>,
    _watcher: notify::RecommendedWatcher,
}

impl LogWatch {
    /// Watches `path`'s directory, creating it first.
    pub fn new(path: PathBuf, deadline: Duration) -> Self {
        let dir = path
            .parent()
            .unwrap_or_else(|| panic!("{} has no directory", path.display()))
            .to_owned();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        Self::watching(&dir, RecursiveMode::NonRecursive, path, deadline)
    }

    /// Watches everything under `ancestor` (which must exist), for a log
    /// whose directory another process creates.
    pub fn under(ancestor: &Path, path: PathBuf, deadline: Duration) -> Self {
        Self::watching(ancestor, RecursiveMode::Recursive, path, deadline)
    }

    fn watching(dir: &Path, mode: RecursiveMode, path: PathBuf, deadline: Duration) -> Self {
        let (sender, changes) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(sender)
            .unwrap_or_else(|err| panic!("no file watcher: {err}"));
        watcher
            .watch(dir, mode)
            .unwrap_or_else(|err| panic!("cannot watch {}: {err}", dir.display()));
        Self {
            path,
            deadline,
            changes,
            _watcher: watcher,
        }
    }

    /// Waits until the log has a line for which `wanted` holds, and returns
    /// it; panics with the whole log at the deadline.
    pub fn wait_for_line(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + self.deadline;
        loop {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            if let Some(line) = text.lines().find(|line| wanted(line)) {
                return line.to_owned();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.changes.recv_timeout(left).is_err() {
                panic!(
                    "no {what} in {} after {:?}:\n{text}",
                    self.path.display(),
                    self.deadline
                );
            }
        }
    }
}
