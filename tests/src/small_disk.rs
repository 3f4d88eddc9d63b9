//! A small real disk for fault tests: a tmpfs of a given size, mounted
//! for the test (root, which tests/run has), that a test fills to the last
//! byte and empties again, to see what the binaries do when writes fail
//! with ENOSPC.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::run;

/// A tmpfs of `size`, unmounted when dropped.
#[derive(Debug)]
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("no temp dir: {err}"));
        let mounted = run(
            Path::new("/bin/mount"),
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                &dir.path().display().to_string(),
            ],
            &[],
        );
        assert_eq!(mounted.exit_code, Some(0), "{}", mounted.dump());
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full; returns it.
    pub fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", filler.display()));
        let block = vec![0u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) => {
                    assert_eq!(err.raw_os_error(), Some(28), "not ENOSPC: {err}");
                    break;
                }
            }
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = run(
            Path::new("/bin/umount"),
            &["-l", &self.path().display().to_string()],
            &[],
        );
    }
}
