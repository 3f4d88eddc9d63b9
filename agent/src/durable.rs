//! Durable, atomic file writes, and the permission check for files that hold
//! secrets or trust state.
//!
//! Every file the agent keeps in its state directory (the device key, the
//! enrollment record, each spooled report, the spool's chain state) is written
//! here, the one way that survives a crash or a power cut at any instant:
//!
//! 1. create a temporary file in the *same directory* with `create_new`
//!    (`O_EXCL`: never follows a planted symlink, never reuses a file) and, on
//!    unix, its final mode set in the `open` call itself, so a secret is not
//!    readable by another user even for the instant between create and chmod;
//! 2. write the bytes and `sync_all` them (data and size on disk);
//! 3. rename it over the target (atomic within one filesystem: a reader sees
//!    the old file or the new one, never half of one), or for
//!    [`write_new`] hard-link it to the target, which fails if the target
//!    exists;
//! 4. fsync the directory, so the rename itself is on disk before we return.
//!
//! On any failure the temporary file is removed. A crash can still leave one
//! behind (a SIGKILL between steps 1 and 3): their names start with
//! [`TEMP_PREFIX`] so a reader can recognise and delete them
//! ([`is_temp_file_name`]).
//!
//! This module knows nothing of what the bytes mean, and never decides where
//! files go. On Windows and other non-unix systems the mode calls are left
//! out: files there take the ACL of their directory, which the installer sets
//! on `%ProgramData%\Palisade\state`; directories cannot be fsynced there
//! (NTFS journals the rename itself).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Every temporary file made here starts with this, so recovery can tell a
/// crash's leftovers from real files.
pub const TEMP_PREFIX: &str = ".palisade-tmp-";

/// Who may read a file once written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// `0600`: only the owner (root, for the daemon). For the device key and
    /// trust state such as the enrollment record.
    OwnerOnly,
    /// `0644`: anyone may read, only the owner writes. For files with nothing
    /// secret in them.
    WorldReadable,
}

impl FileMode {
    /// The unix permission bits. The process umask can only clear bits from
    /// these, never add any, so a file is never more open than this.
    pub fn unix_bits(self) -> u32 {
        match self {
            Self::OwnerOnly => 0o600,
            Self::WorldReadable => 0o644,
        }
    }
}

/// A file that other users may read or write although it must be private.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{path} has mode {mode:04o}, so other users can read or change it; \
     run `chmod 600 {path}` (and make sure it is owned by the agent's user)"
)]
pub struct ExposedFile {
    pub path: String,
    pub mode: u32,
}

/// Writes `contents` to `path` atomically and durably, replacing any file
/// that is there. When this returns `Ok`, the new contents survive a crash.
pub fn write_atomic(path: &Path, contents: &[u8], mode: FileMode) -> io::Result<()> {
    let (dir, temp) = write_temp(path, contents, mode)?;
    if let Err(err) = fs::rename(&temp, path) {
        remove_quietly(&temp);
        return Err(annotate(err, "cannot rename temporary file over", path));
    }
    sync_dir(&dir)
}

/// Like [`write_atomic`], but fails with [`io::ErrorKind::AlreadyExists`]
/// instead of replacing an existing file. For files made once whose loss
/// would change who the device is (the device key): two processes racing to
/// create one can never both win.
pub fn write_new(path: &Path, contents: &[u8], mode: FileMode) -> io::Result<()> {
    let (dir, temp) = write_temp(path, contents, mode)?;
    // A hard link is atomic like rename but refuses to replace the target.
    let linked = fs::hard_link(&temp, path);
    remove_quietly(&temp);
    match linked {
        Ok(()) => sync_dir(&dir),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Err(err),
        Err(err) => Err(annotate(err, "cannot link temporary file to", path)),
    }
}

/// Removes `path` and makes the removal durable. `Ok(false)` when there was
/// nothing to remove.
pub fn remove_durably(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(&parent_of(path))?;
            Ok(true)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(annotate(err, "cannot remove", path)),
    }
}

/// Creates `dir` and any missing parents, new ones with mode `0700` on unix
/// (the state directory holds the device key), and makes the new entries
/// durable. An existing directory is left as it is.
pub fn create_dir_private(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|err| annotate(err, "cannot create directory", dir))?;
    // The new directory's own entry lives in its parent.
    sync_dir(&parent_of(dir))
}

/// Flushes a directory's entries (creations, renames, removals) to disk.
/// A no-op where directories cannot be opened as files (Windows).
///
/// Some filesystems refuse to sync a directory (`EINVAL`, `ENOTSUP`: FUSE
/// and network mounts; on macOS `F_FULLFSYNC`, which `sync_all` uses there,
/// is not supported everywhere). There is nothing more to do there, so that
/// refusal is not an error, as in SQLite, borg and Cassandra.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let handle = File::open(dir).map_err(|err| annotate(err, "cannot open directory", dir))?;
        match handle.sync_all() {
            Ok(()) => Ok(()),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
                ) =>
            {
                tracing::debug!(dir = %dir.display(), error = %err, "filesystem cannot fsync a directory");
                Ok(())
            }
            Err(err) => Err(annotate(err, "cannot fsync directory", dir)),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Refuses a file that group or others may read or write (unix mode bits
/// `0o077`), naming the path, its mode and the fix. Always `Ok` where there
/// are no unix modes.
pub fn refuse_if_exposed(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path)
            .map_err(|err| annotate(err, "cannot read the permissions of", path))?
            .permissions()
            .mode()
            & 0o7777;
        if mode & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                ExposedFile {
                    path: path.display().to_string(),
                    mode,
                },
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Whether a directory entry's name is a temporary file left by a write
/// here that did not finish.
pub fn is_temp_file_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// Deletes the temporary files a crashed writer left in `dir` and returns how
/// many there were. Only the directory's single writer may call this (the
/// daemon at start, the spool when it opens): it would delete the temporary
/// file of a write that is still going on.
pub fn remove_stale_temp_files(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(annotate(err, "cannot list", dir)),
    };
    for entry in entries {
        let entry = entry.map_err(|err| annotate(err, "cannot list", dir))?;
        if is_temp_file_name(&entry.file_name().to_string_lossy()) {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(annotate(err, "cannot remove", &entry.path())),
            }
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Makes, fills and syncs a temporary file next to `path`; returns the
/// directory and the temporary file's path.
fn write_temp(path: &Path, contents: &[u8], mode: FileMode) -> io::Result<(PathBuf, PathBuf)> {
    let dir = parent_of(path);
    let (temp, mut file) = create_temp(&dir, path, mode)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    drop(file);
    if let Err(err) = written {
        remove_quietly(&temp);
        return Err(annotate(err, "cannot write temporary file for", path));
    }
    Ok((dir, temp))
}

/// Creates a fresh temporary file in `dir`. The name carries the process id
/// and a counter so concurrent writers never collide; a name left by an
/// earlier process with the same pid is skipped (`create_new` refuses it).
fn create_temp(dir: &Path, target: &Path, mode: FileMode) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let stem = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A handful of collisions means something else is wrong; give up then.
    const ATTEMPTS: u32 = 16;
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!("{TEMP_PREFIX}{}-{n}-{stem}", std::process::id()));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(mode.unix_bits());
        }
        #[cfg(not(unix))]
        let _ = mode;
        match options.open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => last_error = Some(err),
            Err(err) => return Err(annotate(err, "cannot create temporary file for", target)),
        }
    }
    let err = last_error.unwrap_or_else(|| io::Error::other("no attempt made"));
    Err(annotate(
        err,
        "cannot find a free temporary name for",
        target,
    ))
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn remove_quietly(path: &Path) {
    // Best effort: the write already failed and that error is what the
    // caller needs; a leftover temp file is cleaned by the next recovery.
    let _ = fs::remove_file(path);
}

/// Keeps the error's kind (callers match on `NotFound`, `AlreadyExists`)
/// while naming the file in its message.
fn annotate(err: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one", FileMode::WorldReadable).unwrap();
        write_atomic(&path, b"two", FileMode::WorldReadable).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn modes_are_set_at_creation() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("device.key");
        let public = dir.path().join("report.json");
        write_new(&secret, b"k", FileMode::OwnerOnly).unwrap();
        write_atomic(&public, b"r", FileMode::WorldReadable).unwrap();
        assert_eq!(mode_of(&secret), 0o600);
        // The umask may clear bits but never adds any.
        assert_eq!(mode_of(&public) & !0o644, 0);
    }

    #[test]
    fn write_new_refuses_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        write_new(&path, b"first", FileMode::OwnerOnly).unwrap();
        let err = write_new(&path, b"second", FileMode::OwnerOnly).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["device.key"], "temp file removed");
    }

    #[test]
    fn failed_write_removes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory, so the rename fails after the temp file
        // was written.
        let target = dir.path().join("taken");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        assert!(write_atomic(&target, b"data", FileMode::OwnerOnly).is_err());
        assert_eq!(names(dir.path()), ["taken"]);
    }

    #[test]
    fn write_into_missing_directory_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            write_atomic(&dir.path().join("missing/file"), b"x", FileMode::OwnerOnly).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn exposed_file_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        write_new(&path, b"k", FileMode::OwnerOnly).unwrap();
        refuse_if_exposed(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = refuse_if_exposed(&path).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("0640"), "{message}");
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())),
            "{message}"
        );
    }

    #[test]
    fn temp_names_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let (temp, _file) =
            create_temp(dir.path(), &dir.path().join("x"), FileMode::OwnerOnly).unwrap();
        let name = temp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_temp_file_name(&name), "{name}");
        assert!(!is_temp_file_name("00000000000000000001.dsse.json"));
    }

    #[cfg(unix)]
    #[test]
    fn private_directories_are_0700() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b/state");
        create_dir_private(&state).unwrap();
        assert_eq!(mode_of(&state) & 0o077, 0);
        remove_durably(&state.join("nothing")).unwrap();
    }
}
