//! What the nudge helper remembers between passes and across restarts:
//! when each rule was last shown, until when it is snoozed, and which events
//! were already shown.
//!
//! It lives in one small JSON file per user
//! (`$XDG_STATE_HOME/palisade/nudge.json`), written atomically through
//! [`crate::durable`] so a crash leaves the old file or the new one. The file
//! is only a courtesy: a corrupt or unreadable one is logged and the helper
//! starts afresh (at worst one reminder comes early), never stops. Nothing
//! in it is secret; it is written 0600 all the same, as it is one person's.
//!
//! This module decides nothing ([`super::schedule`] does) and shows nothing.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use palisade_shared::RuleId;
use palisade_shared::report::{CheckStatus, Event};
use serde::Deserialize;

use crate::durable::{self, FileMode};
use crate::status::AgentStatus;

/// The only memory file version this helper reads and writes. A file of
/// another version is treated like a corrupt one: started afresh.
pub const MEMORY_SCHEMA_VERSION: u32 = 1;

/// A memory file larger than this is refused unread. It holds four rules
/// and at most 32 events (the daemon keeps no more), about 4 KiB; 1 MiB is
/// a broken file, not a big one.
pub const MAX_MEMORY_BYTES: u64 = 1024 * 1024;

/// The file's name inside the state directory.
pub const MEMORY_FILE_NAME: &str = "nudge.json";

/// Everything the helper remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NudgeMemory {
    rules: BTreeMap<RuleId, RuleMemory>,
    shown_events: Vec<EventKey>,
}

/// What the helper remembers about one rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMemory {
    pub last_shown_at: Option<DateTime<Utc>>,
    pub snoozed_until: Option<DateTime<Utc>>,
}

/// How an event is recognised across passes: when it happened, its kind and
/// the device's sysfs path (empty when the event has none). Two inserts of
/// one stick are two events; one event seen twice is one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventKey {
    pub at: DateTime<Utc>,
    /// The kind as it is spelled on the wire, e.g. `usb_device_blocked`.
    pub kind: String,
    pub sysfs_path: String,
}

impl EventKey {
    pub fn of(event: &Event) -> Self {
        let kind = match serde_json::to_value(event.kind) {
            Ok(serde_json::Value::String(kind)) => kind,
            _ => format!("{:?}", event.kind),
        };
        let sysfs_path = event
            .details
            .get("sysfs_path")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Self {
            at: event.at,
            kind,
            sysfs_path,
        }
    }
}

impl NudgeMemory {
    /// What is remembered about `rule`, if anything.
    pub fn rule(&self, rule: &RuleId) -> Option<&RuleMemory> {
        self.rules.get(rule)
    }

    /// Whether this event was already shown.
    pub fn event_shown(&self, key: &EventKey) -> bool {
        self.shown_events.contains(key)
    }

    /// A notification about `rule` went out at `at`.
    pub fn record_rule_shown(&mut self, rule: &RuleId, at: DateTime<Utc>) {
        self.rules.entry(rule.clone()).or_default().last_shown_at = Some(at);
    }

    /// A notification about this event went out.
    pub fn record_event_shown(&mut self, key: EventKey) {
        if !self.shown_events.contains(&key) {
            self.shown_events.push(key);
        }
    }

    /// The person asked for quiet about `rule` until `until`.
    pub fn snooze(&mut self, rule: &RuleId, until: DateTime<Utc>) {
        self.rules.entry(rule.clone()).or_default().snoozed_until = Some(until);
    }

    /// Forgets every rule that no longer fails (it passes, does not apply, or
    /// IT excepted it), so its next failure is announced at once and an old
    /// snooze does not hide it, and every shown event the daemon no longer
    /// lists (it keeps the latest 32), so the file stays small. A rule the
    /// status does not mention, or could not judge (`unknown`, `error`), is
    /// kept: a daemon restart or a flaky probe must not reset the rate
    /// limit. Returns whether anything changed.
    pub fn forget_resolved(&mut self, status: &AgentStatus) -> bool {
        let before = (self.rules.len(), self.shown_events.len());
        for check in &status.checks {
            if matches!(
                check.status,
                CheckStatus::Pass | CheckStatus::NotApplicable | CheckStatus::Excepted
            ) {
                self.rules.remove(&check.id);
            }
        }
        let listed: Vec<EventKey> = status.recent_events.iter().map(EventKey::of).collect();
        self.shown_events.retain(|key| listed.contains(key));
        before != (self.rules.len(), self.shown_events.len())
    }

    /// Reads the memory file. A missing file is an empty memory; an
    /// unreadable, oversized, corrupt or other-version file is an error the
    /// caller logs before starting afresh.
    pub fn load(path: &Path) -> Result<Self, MemoryError> {
        let fail = |reason: String| MemoryError::Unreadable {
            path: path.to_owned(),
            reason,
        };
        let bytes = match std::fs::metadata(path) {
            Ok(metadata) if metadata.len() > MAX_MEMORY_BYTES => {
                return Err(fail(format!("{} bytes is too large", metadata.len())));
            }
            Ok(_) => std::fs::read(path).map_err(|err| fail(err.to_string()))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(fail(err.to_string())),
        };
        let file: MemoryFile =
            serde_json::from_slice(&bytes).map_err(|err| fail(err.to_string()))?;
        if file.schema_version != MEMORY_SCHEMA_VERSION {
            return Err(fail(format!(
                "schema_version is {}, this helper reads {MEMORY_SCHEMA_VERSION}",
                file.schema_version
            )));
        }
        Ok(Self {
            rules: file.rules,
            shown_events: file.shown_events,
        })
    }

    /// Writes the memory file atomically, making its directory (0700) if it
    /// is missing.
    pub fn save(&self, path: &Path) -> Result<(), MemoryError> {
        let fail = |source: io::Error| MemoryError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            durable::create_dir_private(dir).map_err(fail)?;
        }
        let mut bytes = self.to_json().into_bytes();
        bytes.push(b'\n');
        durable::write_atomic(path, &bytes, FileMode::OwnerOnly).map_err(fail)
    }

    /// The file's contents. `json!` rather than a `Serialize` derive: only
    /// wire documents are `Serialize` (ARCHITECTURE.md).
    pub fn to_json(&self) -> String {
        let rules: serde_json::Map<String, serde_json::Value> = self
            .rules
            .iter()
            .map(|(rule, memory)| {
                (
                    rule.to_string(),
                    serde_json::json!({
                        "last_shown_at": memory.last_shown_at,
                        "snoozed_until": memory.snoozed_until,
                    }),
                )
            })
            .collect();
        let events: Vec<serde_json::Value> = self
            .shown_events
            .iter()
            .map(|key| {
                serde_json::json!({
                    "at": key.at,
                    "kind": key.kind,
                    "sysfs_path": key.sysfs_path,
                })
            })
            .collect();
        serde_json::json!({
            "schema_version": MEMORY_SCHEMA_VERSION,
            "rules": rules,
            "shown_events": events,
        })
        .to_string()
    }
}

/// Why the memory file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot use nudge memory {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("cannot write nudge memory {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryFile {
    schema_version: u32,
    #[serde(default)]
    rules: BTreeMap<RuleId, RuleMemory>,
    #[serde(default)]
    shown_events: Vec<EventKey>,
}

/// Where the memory file goes when no `--state-file` is given:
/// `$XDG_STATE_HOME/palisade/nudge.json`, else
/// `~/.local/state/palisade/nudge.json` (the XDG default) on Linux and
/// other unixes; `~/Library/Application Support/Palisade/nudge.json` on
/// macOS; `%LOCALAPPDATA%\Palisade\nudge.json` on Windows. `None` when the
/// environment names no home: the helper then remembers only in memory.
pub fn default_memory_path(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let absolute = |name: &str| env(name).map(PathBuf::from).filter(|p| p.is_absolute());
    if cfg!(windows) {
        return absolute("LOCALAPPDATA").map(|dir| dir.join("Palisade").join(MEMORY_FILE_NAME));
    }
    if cfg!(target_os = "macos") {
        return absolute("HOME").map(|home| {
            home.join("Library")
                .join("Application Support")
                .join("Palisade")
                .join(MEMORY_FILE_NAME)
        });
    }
    absolute("XDG_STATE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local").join("state")))
        .map(|dir| dir.join("palisade").join(MEMORY_FILE_NAME))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, hour, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn memory_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/palisade/nudge.json");
        let mut memory = NudgeMemory::default();
        memory.record_rule_shown(&RuleId::new("screen_lock"), at(9));
        memory.snooze(&RuleId::new("disk_encryption"), at(10));
        memory.record_event_shown(EventKey {
            at: at(8),
            kind: "usb_device_blocked".to_owned(),
            sysfs_path: "/sys/devices/pci0000:00/usb1/1-2".to_owned(),
        });
        memory.save(&path).unwrap();
        assert_eq!(NudgeMemory::load(&path).unwrap(), memory);
    }

    #[test]
    fn missing_file_is_an_empty_memory() {
        let dir = tempfile::tempdir().unwrap();
        let memory = NudgeMemory::load(&dir.path().join("nudge.json")).unwrap();
        assert_eq!(memory, NudgeMemory::default());
    }

    #[test]
    fn corrupt_or_foreign_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nudge.json");
        for contents in [
            "{not json",
            r#"{"schema_version":2,"rules":{},"shown_events":[]}"#,
            r#"{"schema_version":1,"surprise":true}"#,
            r#"{"schema_version":1,"rules":{"screen_lock":{"last_shown_at":"yesterday"}}}"#,
        ] {
            std::fs::write(&path, contents).unwrap();
            let err = NudgeMemory::load(&path).unwrap_err();
            assert!(err.to_string().contains("nudge.json"), "{contents}: {err}");
        }
    }

    #[test]
    fn xdg_state_home_wins_then_home() {
        if cfg!(any(windows, target_os = "macos")) {
            return;
        }
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| std::ffi::OsString::from(value))
            }
        };
        assert_eq!(
            default_memory_path(env(&[("XDG_STATE_HOME", "/x/state"), ("HOME", "/home/a")])),
            Some(PathBuf::from("/x/state/palisade/nudge.json"))
        );
        // A relative XDG_STATE_HOME is invalid by the XDG spec and ignored.
        assert_eq!(
            default_memory_path(env(&[("XDG_STATE_HOME", "rel"), ("HOME", "/home/a")])),
            Some(PathBuf::from("/home/a/.local/state/palisade/nudge.json"))
        );
        assert_eq!(default_memory_path(env(&[])), None);
    }
}
