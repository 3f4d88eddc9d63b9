//! Reads what macOS's tools print about FileVault: `fdesetup status` (text)
//! and `diskutil apfs list -plist` (a property list). Pure, compiled on every
//! OS, so Linux CI tests it against the captures in
//! `agent/tests/fixtures/macos/disk_encryption/`. It decides nothing: an
//! answer it does not recognise is kept as such, for the evaluator to call
//! `unknown`.

use plist::Value;

use super::{ApfsVolume, FileVaultStatus};

/// Reads `fdesetup status`. The lines it is known to print (fdesetup(8), the
/// captures' SOURCES.md):
///
/// - `FileVault is On.` / `FileVault is Off.`
/// - `Encryption in progress: Percent completed = 42` (or `Pending` while
///   the Mac is on battery), after `FileVault is On.`
/// - `Decryption in progress: Percent completed = 73`
/// - `Deferred enablement appears to be active for user 'name'.` (or, on
///   macOS 13, `... appears to be active.`), after `FileVault is Off.`
///
/// A conversion or a deferral wins over the `On`/`Off` line it follows,
/// since it is what says the disk is not yet protected.
pub fn parse_fdesetup_status(stdout: &str) -> FileVaultStatus {
    let mut on_off = None;
    for line in stdout.lines().map(str::trim) {
        let lower = line.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("encryption in progress:") {
            return FileVaultStatus::Encrypting {
                progress: progress_of(line, rest),
            };
        }
        if let Some(rest) = lower.strip_prefix("decryption in progress:") {
            return FileVaultStatus::Decrypting {
                progress: progress_of(line, rest),
            };
        }
        if lower.starts_with("deferred enablement appears to be active") {
            return FileVaultStatus::Deferred {
                user: deferred_user(line),
            };
        }
        match lower.as_str() {
            "filevault is on." => on_off = Some(FileVaultStatus::On),
            "filevault is off." => on_off = Some(FileVaultStatus::Off),
            _ => {}
        }
    }
    on_off.unwrap_or_else(|| FileVaultStatus::Unrecognized(stdout.trim().to_owned()))
}

/// The text after the colon, as fdesetup wrote it (`Percent completed = 42`,
/// `Pending`); `None` when empty.
fn progress_of(line: &str, lower_rest: &str) -> Option<String> {
    let start = line.len() - lower_rest.len();
    let text = line.get(start..).unwrap_or_default().trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// `'alice'` in `... active for user 'alice'.`; `None` when fdesetup names
/// no user.
fn deferred_user(line: &str) -> Option<String> {
    let (_, after) = line.split_once(" for user ")?;
    let name = after.trim().trim_end_matches('.').trim_matches('\'').trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Reads `diskutil apfs list -plist`: every volume of every container, with
/// the keys that say whether it is encrypted. A key diskutil left out stays
/// `None`; a document that is not this shape is an error naming what is
/// missing.
pub fn parse_apfs_list(bytes: &[u8]) -> Result<Vec<ApfsVolume>, String> {
    let root = Value::from_reader(std::io::Cursor::new(bytes))
        .map_err(|err| format!("diskutil apfs list -plist is not a property list: {err}"))?;
    let containers = root
        .as_dictionary()
        .and_then(|dict| dict.get("Containers"))
        .and_then(Value::as_array)
        .ok_or("diskutil apfs list -plist has no Containers array")?;
    let mut volumes = Vec::new();
    for container in containers {
        let container = container
            .as_dictionary()
            .ok_or("a container in diskutil apfs list -plist is not a dictionary")?;
        let reference = string(container, "ContainerReference").unwrap_or_default();
        let Some(list) = container.get("Volumes").and_then(Value::as_array) else {
            return Err(format!(
                "container {reference} in diskutil apfs list -plist has no Volumes array"
            ));
        };
        for volume in list {
            let volume = volume
                .as_dictionary()
                .ok_or("a volume in diskutil apfs list -plist is not a dictionary")?;
            volumes.push(ApfsVolume {
                container: reference.clone(),
                device_identifier: string(volume, "DeviceIdentifier").unwrap_or_default(),
                name: string(volume, "Name"),
                roles: volume
                    .get("Roles")
                    .and_then(Value::as_array)
                    .map(|roles| {
                        roles
                            .iter()
                            .filter_map(Value::as_string)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                file_vault: boolean(volume, "FileVault"),
                encryption: boolean(volume, "Encryption"),
                crypto_migration_on: boolean(volume, "CryptoMigrationOn"),
                locked: boolean(volume, "Locked"),
            });
        }
    }
    Ok(volumes)
}

/// Reads `diskutil info -plist /`: the APFS container the running system
/// booted from (`APFSContainerReference`), so that only that disk's
/// volumes are judged. An error when the root is not on APFS (HFS+ before
/// 10.13) or the document is not this shape.
pub fn parse_boot_container(bytes: &[u8]) -> Result<String, String> {
    let root = Value::from_reader(std::io::Cursor::new(bytes))
        .map_err(|err| format!("diskutil info -plist / is not a property list: {err}"))?;
    root.as_dictionary()
        .and_then(|dict| string(dict, "APFSContainerReference"))
        .ok_or_else(|| {
            "diskutil info -plist / names no APFS container (not an APFS boot volume)".into()
        })
}

fn string(dict: &plist::Dictionary, key: &str) -> Option<String> {
    dict.get(key).and_then(Value::as_string).map(str::to_owned)
}

fn boolean(dict: &plist::Dictionary, key: &str) -> Option<bool> {
    dict.get(key).and_then(Value::as_boolean)
}
