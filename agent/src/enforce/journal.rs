//! The undo journal: what an enforcer found before it first changed a path,
//! so `palisade-agent enforce --undo RULE` can put it back exactly.
//!
//! One directory per rule, `<state_dir>/enforce/<rule>/` (0700), holding one
//! `manifest.json` written atomically through [`crate::durable`]. Each entry
//! is one path the enforcer touched, in the order it first touched it: a file
//! (whether it existed, its mode and owner, and its original bytes in base64)
//! or a directory the enforcer created. An entry is added, and the manifest
//! made durable, *before* the path is changed, and only the first time: a
//! second enforcement never replaces the true original with its own output.
//!
//! Undo walks the entries backwards: files that existed get their bytes,
//! mode and owner back; files that did not are removed; directories the
//! enforcer created are removed if they are empty. Then the rule's directory
//! is deleted, so the next enforcement records afresh.
//!
//! The manifest is built with `json!` rather than a `Serialize` derive: only
//! the wire types are `Serialize` (ARCHITECTURE.md). Nothing here decides
//! what to change; that is the rule modules' business.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::durable::{self, FileMode};
use crate::sys::Host;

/// The manifest's format; a different number is refused rather than guessed.
const MANIFEST_VERSION: u64 = 1;
const MANIFEST_FILE: &str = "manifest.json";

/// What was at one path before the enforcer first changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Original {
    /// A regular file, with its bytes, or `None` when it did not exist.
    File(Option<FileOriginal>),
    /// A directory the enforcer created (it did not exist before).
    CreatedDirectory,
    /// A Windows REG_DWORD under HKLM (`key` without the hive), or `None`
    /// for its value when it did not exist.
    RegistryDword {
        key: String,
        name: String,
        value: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOriginal {
    pub bytes: Vec<u8>,
    /// Unix permission bits (`0o644`).
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// One rule's journal, loaded from disk (empty when there is none yet).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    rule: String,
    entries: Vec<(String, Original)>,
}

impl Journal {
    /// The journal directory of a rule.
    pub fn dir_for(state_dir: &Path, rule: &str) -> PathBuf {
        state_dir.join("enforce").join(rule)
    }

    pub fn load(state_dir: &Path, rule: &str) -> anyhow::Result<Self> {
        let dir = Self::dir_for(state_dir, rule);
        let path = dir.join(MANIFEST_FILE);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => parse_manifest(&bytes)
                .with_context(|| format!("cannot read the undo record {}", path.display()))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        Ok(Self {
            dir,
            rule: rule.to_owned(),
            entries,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[(String, Original)] {
        &self.entries
    }

    pub fn has(&self, path: &str) -> bool {
        self.entries.iter().any(|(p, _)| p == path)
    }

    /// Records the file at `path` (absolute, under the host root) as it is
    /// now, unless it was recorded before. Durable before it returns.
    pub fn record_file(&mut self, host: &Host, path: &str) -> anyhow::Result<()> {
        if self.has(path) {
            return Ok(());
        }
        let original = read_original(&host.path(path))
            .with_context(|| format!("cannot record the original of {path}"))?;
        self.entries
            .push((path.to_owned(), Original::File(original)));
        self.save()
    }

    /// Records a REG_DWORD under HKLM as it is now (`current`, `None` when
    /// absent), unless it was recorded before. Durable before it returns.
    pub fn record_registry_dword(
        &mut self,
        key: &str,
        name: &str,
        current: Option<u32>,
    ) -> anyhow::Result<()> {
        let path = registry_path(key, name);
        if self.has(&path) {
            return Ok(());
        }
        self.entries.push((
            path,
            Original::RegistryDword {
                key: key.to_owned(),
                name: name.to_owned(),
                value: current,
            },
        ));
        self.save()
    }

    /// Records that the enforcer is about to create the directory `path`.
    pub fn record_created_directory(&mut self, path: &str) -> anyhow::Result<()> {
        if self.has(path) {
            return Ok(());
        }
        self.entries
            .push((path.to_owned(), Original::CreatedDirectory));
        self.save()
    }

    fn save(&self) -> anyhow::Result<()> {
        durable::create_dir_private(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|(path, original)| match original {
                Original::CreatedDirectory => json!({
                    "path": path,
                    "kind": "directory",
                    "existed": false,
                }),
                Original::File(None) => json!({
                    "path": path,
                    "kind": "file",
                    "existed": false,
                }),
                Original::RegistryDword { key, name, value } => json!({
                    "path": path,
                    "kind": "registry_dword",
                    "key": key,
                    "name": name,
                    "existed": value.is_some(),
                    "value": value,
                }),
                Original::File(Some(file)) => json!({
                    "path": path,
                    "kind": "file",
                    "existed": true,
                    "mode": file.mode,
                    "uid": file.uid,
                    "gid": file.gid,
                    "bytes_base64": base64::engine::general_purpose::STANDARD.encode(&file.bytes),
                }),
            })
            .collect();
        let document = json!({
            "version": MANIFEST_VERSION,
            "rule": self.rule,
            "entries": entries,
        });
        let text = serde_json::to_vec_pretty(&document).context("cannot encode the undo record")?;
        let path = self.dir.join(MANIFEST_FILE);
        durable::write_atomic(&path, &text, FileMode::OwnerOnly)
            .with_context(|| format!("cannot write the undo record {}", path.display()))
    }

    /// Restores every recorded path, newest first, and deletes the journal.
    /// Returns one line per path restored.
    pub fn restore(self, host: &Host) -> anyhow::Result<Vec<String>> {
        let mut lines = Vec::new();
        for (path, original) in self.entries.iter().rev() {
            let target = host.path(path);
            match original {
                Original::File(Some(file)) => {
                    write_file(&target, &file.bytes, file.mode)
                        .with_context(|| format!("cannot restore {path}"))?;
                    restore_owner(&target, file.uid, file.gid);
                    tracing::info!(path = %path, "restored the original file");
                    lines.push(format!("restore {path}"));
                }
                Original::File(None) => {
                    if durable::remove_durably(&target)
                        .with_context(|| format!("cannot remove {path}"))?
                    {
                        tracing::info!(path = %path, "removed a file the enforcer had created");
                        lines.push(format!("remove {path}"));
                    }
                }
                Original::RegistryDword { key, name, value } => {
                    restore_registry_dword(key, name, *value)
                        .with_context(|| format!("cannot restore {path}"))?;
                    tracing::info!(path = %path, "restored the original registry value");
                    lines.push(match value {
                        Some(value) => format!("restore {path} = {value}"),
                        None => format!("delete {path}"),
                    });
                }
                Original::CreatedDirectory => match std::fs::remove_dir(&target) {
                    Ok(()) => {
                        tracing::info!(path = %path, "removed a directory the enforcer had created");
                        lines.push(format!("remove directory {path}"));
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    // Someone else put files in it since: it stays.
                    Err(err) if err.kind() == io::ErrorKind::DirectoryNotEmpty => {
                        lines.push(format!(
                            "keep directory {path}: it was created by the enforcer but is not \
                             empty now"
                        ));
                    }
                    Err(err) => {
                        return Err(err).with_context(|| format!("cannot remove directory {path}"));
                    }
                },
            }
        }
        match std::fs::remove_file(self.dir.join(MANIFEST_FILE)) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).context("cannot delete the used undo record"),
        }
        let _ = std::fs::remove_dir(&self.dir);
        Ok(lines)
    }
}

/// How a registry value is named in the journal and in messages.
pub fn registry_path(key: &str, name: &str) -> String {
    format!(r"HKLM\{key}\{name}")
}

#[cfg(windows)]
fn restore_registry_dword(key: &str, name: &str, value: Option<u32>) -> io::Result<()> {
    use crate::sys::registry::{self, Hive};
    match value {
        Some(value) => registry::write_dword(Hive::LocalMachine, key, name, value),
        None => registry::delete_value(Hive::LocalMachine, key, name),
    }
}

#[cfg(not(windows))]
fn restore_registry_dword(_key: &str, _name: &str, _value: Option<u32>) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "a registry value can only be restored on Windows",
    ))
}

/// Writes `bytes` to `target` atomically and gives it `mode`.
pub fn write_file(target: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    // Written private first, then opened up to the wanted mode: never more
    // open than intended, even for an instant.
    durable::write_atomic(target, bytes, FileMode::OwnerOnly)?;
    set_mode(target, mode)
}

#[cfg(unix)]
fn set_mode(target: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode & 0o7777))
}

#[cfg(not(unix))]
fn set_mode(_target: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// The current mode of a file, if it exists.
pub fn current_mode(target: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(target)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = target;
        None
    }
}

fn read_original(target: &Path) -> io::Result<Option<FileOriginal>> {
    let bytes = match std::fs::read(target) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    #[cfg(unix)]
    let (mode, uid, gid) = {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(target)?;
        (meta.mode() & 0o7777, Some(meta.uid()), Some(meta.gid()))
    };
    #[cfg(not(unix))]
    let (mode, uid, gid) = (0o644, None, None);
    Ok(Some(FileOriginal {
        bytes,
        mode,
        uid,
        gid,
    }))
}

/// Gives a restored file its original owner back. Only root can change
/// owners; an unprivileged run (a host root in a test) keeps its own, which
/// is the owner the file had there anyway.
fn restore_owner(target: &Path, uid: Option<u32>, gid: Option<u32>) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(meta) = std::fs::metadata(target) else {
            return;
        };
        if uid.is_none_or(|u| u == meta.uid()) && gid.is_none_or(|g| g == meta.gid()) {
            return;
        }
        if let Err(err) = std::os::unix::fs::chown(target, uid, gid) {
            tracing::warn!(path = %target.display(), error = %err, "cannot restore the file's owner");
        }
    }
    #[cfg(not(unix))]
    let _ = (target, uid, gid);
}

fn parse_manifest(bytes: &[u8]) -> anyhow::Result<Vec<(String, Original)>> {
    let document: Value = serde_json::from_slice(bytes).context("not JSON")?;
    if document["version"].as_u64() != Some(MANIFEST_VERSION) {
        bail!(
            "manifest version {} is not {MANIFEST_VERSION}",
            document["version"]
        );
    }
    let Some(entries) = document["entries"].as_array() else {
        bail!("no entries list");
    };
    let mut out = Vec::new();
    for entry in entries {
        let Some(path) = entry["path"].as_str() else {
            bail!("an entry has no path");
        };
        let original = match (entry["kind"].as_str(), entry["existed"].as_bool()) {
            (Some("directory"), _) => Original::CreatedDirectory,
            (Some("registry_dword"), Some(existed)) => {
                let text = |field: &str| {
                    entry[field]
                        .as_str()
                        .map(str::to_owned)
                        .with_context(|| format!("{path}: no {field}"))
                };
                let value = if existed {
                    Some(
                        entry["value"]
                            .as_u64()
                            .and_then(|v| u32::try_from(v).ok())
                            .with_context(|| format!("{path}: no 32-bit value"))?,
                    )
                } else {
                    None
                };
                Original::RegistryDword {
                    key: text("key")?,
                    name: text("name")?,
                    value,
                }
            }
            (Some("file"), Some(false)) => Original::File(None),
            (Some("file"), Some(true)) => {
                let bytes = entry["bytes_base64"]
                    .as_str()
                    .and_then(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
                    .with_context(|| format!("{path}: the original bytes are missing or broken"))?;
                let mode = entry["mode"]
                    .as_u64()
                    .and_then(|m| u32::try_from(m).ok())
                    .with_context(|| format!("{path}: no mode"))?;
                let id = |key: &str| entry[key].as_u64().and_then(|v| u32::try_from(v).ok());
                Original::File(Some(FileOriginal {
                    bytes,
                    mode,
                    uid: id("uid"),
                    gid: id("gid"),
                }))
            }
            _ => bail!("{path}: unknown entry kind"),
        };
        out.push((path.to_owned(), original));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_value_is_recorded_once_and_read_back() {
        let state = tempfile::tempdir().unwrap();
        let key = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System";
        let mut journal = Journal::load(state.path(), "screen_lock").unwrap();
        journal
            .record_registry_dword(key, "InactivityTimeoutSecs", Some(1800))
            .unwrap();
        // A second enforcement must not replace the true original.
        journal
            .record_registry_dword(key, "InactivityTimeoutSecs", Some(900))
            .unwrap();
        journal.record_registry_dword(key, "Other", None).unwrap();

        let loaded = Journal::load(state.path(), "screen_lock").unwrap();
        assert_eq!(
            loaded.entries(),
            [
                (
                    registry_path(key, "InactivityTimeoutSecs"),
                    Original::RegistryDword {
                        key: key.to_owned(),
                        name: "InactivityTimeoutSecs".to_owned(),
                        value: Some(1800),
                    }
                ),
                (
                    registry_path(key, "Other"),
                    Original::RegistryDword {
                        key: key.to_owned(),
                        name: "Other".to_owned(),
                        value: None,
                    }
                ),
            ]
        );
    }

    #[cfg(not(windows))]
    #[test]
    fn a_registry_value_cannot_be_restored_off_windows_and_the_journal_stays() {
        let state = tempfile::tempdir().unwrap();
        let mut journal = Journal::load(state.path(), "screen_lock").unwrap();
        journal.record_registry_dword("K", "V", Some(1)).unwrap();
        let err = journal.restore(&Host::with_root(state.path())).unwrap_err();
        assert!(
            format!("{err:#}").contains("only be restored on Windows"),
            "{err:#}"
        );
        assert!(
            !Journal::load(state.path(), "screen_lock")
                .unwrap()
                .is_empty()
        );
    }
}
