//! Test support: a host root in a temp directory, written file by file and
//! link by link, for the tests that lay out sysfs as the kernel does (with
//! symlinks, which the captured fixtures cannot hold). Reaches nothing
//! outside its own directory.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::Path;

pub(crate) struct HostTree {
    dir: tempfile::TempDir,
}

impl HostTree {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` at `relative`, creating the directories above it.
    pub(crate) fn write(&self, relative: &str, text: &str) {
        let path = self.root().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Makes `relative` a symlink to `target`, both inside the tree.
    pub(crate) fn link(&self, relative: &str, target: &str) {
        let path = self.root().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(self.root().join(target), path).unwrap();
    }
}
