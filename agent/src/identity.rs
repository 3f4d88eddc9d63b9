//! The device's identity: its Ed25519 signing key and its enrollment record.
//!
//! The key is made on the device at first start and never leaves it (design
//! §4). Where it lives depends on the OS, and [`KeyStore`] names the place so
//! `palisade-agent status` can say it:
//!
//! - **Linux and other unixes**: `device.key` in the state directory, the
//!   32-byte Ed25519 seed, mode `0600`, created through
//!   [`durable::write_new`] so it is never readable by others even for an
//!   instant and two starts racing cannot both make one. A root daemon on
//!   Linux has no Secret Service (no user session bus, no unlocked keyring),
//!   and the kernel keyring is lost at reboot (`test-environments.md`), so a
//!   file it is. Loading refuses a key file that others could read or change,
//!   that is not a regular file, or whose owner is not the state directory's
//!   owner, and refuses a state directory that others can write to: any of
//!   these means someone else may know or have chosen the key.
//! - **macOS**: the System keychain, through `keyring-core` with the
//!   `apple-native-keyring-store` crate. The daemon runs as root from launchd
//!   with no login keychain, so the System keychain is the store it has.
//! - **Windows**: the Credential Manager, through `keyring-core` with the
//!   `windows-native-keyring-store` crate, persisted `Local` (the default,
//!   `Enterprise`, would roam with a domain profile, and the private key must
//!   never leave the device).
//!
//! The enrollment record ([`Enrollment`], `enrollment.json` in the state
//! directory) holds what the collector said at enrollment: the device id and
//! the pinned policy-signing key. It is written `0600` through
//! [`durable::write_atomic`]: nothing in it is secret, but it is trust state,
//! and replacing the pinned key would let someone else sign policy. The
//! enrollment secret is never part of it, nor written anywhere else.
//!
//! This module does not talk to the collector and does not decide when to
//! enroll.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use keyring_core::CredentialStore;
use palisade_shared::DeviceId;
use palisade_shared::KeyId;
use palisade_shared::envelope::{verifying_key_from_base64, verifying_key_to_base64};
use palisade_shared::protocol::EnrollResponse;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::durable::{self, FileMode};

/// The device key's file name in the state directory, where a file is the
/// store.
pub const KEY_FILE_NAME: &str = "device.key";
/// The enrollment record's file name in the state directory.
pub const ENROLLMENT_FILE_NAME: &str = "enrollment.json";

/// The credential's service and user names in a system store. They show in
/// Keychain Access and the Credential Manager, so they say what it is.
const CREDENTIAL_SERVICE: &str = "palisade-agent";
const CREDENTIAL_USER: &str = "device-signing-key";

/// An Ed25519 secret key is a 32-byte seed.
const SEED_LEN: usize = 32;

/// An enrollment record is a few hundred bytes; anything far larger is not
/// one, and is refused before it is parsed.
const MAX_ENROLLMENT_BYTES: u64 = 64 * 1024;

/// The only enrollment record version this agent reads and writes.
const ENROLLMENT_SCHEMA_VERSION: u32 = 1;

/// The device's signing key and where it is kept.
pub struct Identity {
    pub key: SigningKey,
    pub store: KeyStore,
}

impl fmt::Debug for Identity {
    // Never the secret: the key id is enough to recognise a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("key_id", &self.key_id())
            .field("store", &self.store)
            .finish()
    }
}

/// Where the device key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStore {
    /// A `0600` file holding the 32-byte seed (Linux and other unixes).
    File(PathBuf),
    /// The macOS System keychain.
    MacosKeychain,
    /// The Windows Credential Manager.
    WindowsCredentialManager,
}

impl fmt::Display for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {} (0600)", path.display()),
            Self::MacosKeychain => f.write_str("macOS Keychain"),
            Self::WindowsCredentialManager => f.write_str("Windows Credential Manager"),
        }
    }
}

impl KeyStore {
    /// The store this OS uses: the system store on macOS and Windows, a file
    /// in `state_dir` everywhere else.
    pub fn for_this_os(state_dir: &Path) -> Self {
        if cfg!(target_os = "macos") {
            Self::MacosKeychain
        } else if cfg!(windows) {
            Self::WindowsCredentialManager
        } else {
            Self::file_in(state_dir)
        }
    }

    /// The key file in `state_dir`. Also what tests use on every OS.
    pub fn file_in(state_dir: &Path) -> Self {
        Self::File(state_dir.join(KEY_FILE_NAME))
    }
}

/// Why the device key or the enrollment record could not be used. Each
/// message names the file or store and what to do.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("device key {path}: {source}")]
    KeyFile { path: PathBuf, source: io::Error },
    #[error(
        "device key {path} is {len} bytes, not a 32-byte Ed25519 seed; the device cannot sign \
         as itself any more: move the file away and enroll again"
    )]
    CorruptKeyFile { path: PathBuf, len: u64 },
    #[error(
        "{path} is writable by other users (mode {mode:04o}), so they could replace the device \
         key; run `chmod 700 {path}`"
    )]
    StateDirExposed { path: PathBuf, mode: u32 },
    #[error(
        "device key {path} belongs to uid {file_uid} but its directory to uid {dir_uid}; \
         someone else may have chosen this key: remove it and enroll again"
    )]
    ForeignKeyFile {
        path: PathBuf,
        file_uid: u32,
        dir_uid: u32,
    },
    #[error("device key in the {store}: {reason}")]
    CredentialStore { store: KeyStore, reason: String },
    #[error("the {store} does not exist on this operating system")]
    StoreUnavailable { store: KeyStore },
    #[error("enrollment record {path}: {reason}")]
    Enrollment { path: PathBuf, reason: String },
}

impl Identity {
    /// Loads the device key from `store`, or makes one there if it has none.
    ///
    /// Only an absent key leads to a new one. A key that is present but
    /// unreadable, exposed or malformed is an error, never silently
    /// replaced: a new key is a new device to the collector.
    pub fn load_or_create(store: KeyStore) -> Result<Self, IdentityError> {
        if let Some(identity) = Self::load(store.clone())? {
            return Ok(identity);
        }
        let key = match &store {
            KeyStore::File(path) => create_key_file(path)?,
            KeyStore::MacosKeychain | KeyStore::WindowsCredentialManager => {
                let (credentials, modifiers) = system_store(&store)?;
                create_in_credential_store(credentials.as_ref(), &modifiers, &store)?
            }
        };
        tracing::info!(store = %store, key_id = %KeyId::of(&key.verifying_key()), "made a new device key");
        Ok(Self { key, store })
    }

    /// Loads the device key from `store`; `Ok(None)` when there is none yet.
    /// Never writes anything (for `status` and `identity`).
    pub fn load(store: KeyStore) -> Result<Option<Self>, IdentityError> {
        let key = match &store {
            KeyStore::File(path) => load_key_file(path)?,
            KeyStore::MacosKeychain | KeyStore::WindowsCredentialManager => {
                let (credentials, modifiers) = system_store(&store)?;
                load_from_credential_store(credentials.as_ref(), &modifiers, &store)?
            }
        };
        Ok(key.map(|key| Self { key, store }))
    }

    /// The key id the collector knows this device by: hex SHA-256 of the
    /// public key.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.key.verifying_key())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as the protocol carries it: base64 of the 32 bytes.
    pub fn public_key_base64(&self) -> String {
        verifying_key_to_base64(&self.key.verifying_key())
    }
}

/// What the collector said when this device enrolled, kept in
/// `state_dir/enrollment.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub device_id: DeviceId,
    /// The collector the device enrolled with.
    pub collector_url: String,
    /// The pinned policy-signing key, base64 of its 32 bytes.
    pub policy_public_key: String,
    pub policy_key_id: KeyId,
    /// The device key that was enrolled. When the device key no longer
    /// matches (the key was lost and a new one made), the record is stale
    /// and the device must enroll again.
    pub device_key_id: KeyId,
    pub enrolled_at: DateTime<Utc>,
}

impl Enrollment {
    /// The record for a successful enrollment, checking that the policy key
    /// the collector sent is a valid key with the id it claims.
    pub fn from_response(
        response: &EnrollResponse,
        collector_url: &str,
        device_key_id: KeyId,
        enrolled_at: DateTime<Utc>,
    ) -> Result<Self, String> {
        let enrollment = Self {
            device_id: response.device_id.clone(),
            collector_url: collector_url.to_owned(),
            policy_public_key: response.policy_public_key.clone(),
            policy_key_id: response.policy_key_id.clone(),
            device_key_id,
            enrolled_at,
        };
        enrollment.validate()?;
        Ok(enrollment)
    }

    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(ENROLLMENT_FILE_NAME)
    }

    /// The pinned policy key, to verify policy envelopes with.
    pub fn policy_verifying_key(&self) -> Result<VerifyingKey, String> {
        verifying_key_from_base64(&self.policy_public_key).map_err(|err| err.to_string())
    }

    /// Whether this record was made for `identity`'s key.
    pub fn is_for(&self, identity: &Identity) -> bool {
        self.device_key_id == identity.key_id()
    }

    /// Loads the record; `Ok(None)` when the device has not enrolled.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, IdentityError> {
        let path = Self::path(state_dir);
        let fail = |reason: String| IdentityError::Enrollment {
            path: path.clone(),
            reason,
        };
        let metadata = match fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(fail(err.to_string())),
        };
        if !metadata.file_type().is_file() {
            return Err(fail("is not a regular file".into()));
        }
        if metadata.len() > MAX_ENROLLMENT_BYTES {
            return Err(fail(format!(
                "is {} bytes, over the {MAX_ENROLLMENT_BYTES} an enrollment record can be",
                metadata.len()
            )));
        }
        durable::refuse_if_exposed(&path).map_err(|err| fail(err.to_string()))?;
        let bytes = fs::read(&path).map_err(|err| fail(err.to_string()))?;
        let file: EnrollmentFile = serde_json::from_slice(&bytes)
            .map_err(|err| fail(format!("is not a valid enrollment record: {err}")))?;
        if file.schema_version != ENROLLMENT_SCHEMA_VERSION {
            return Err(fail(format!(
                "schema_version is {}, this agent reads {ENROLLMENT_SCHEMA_VERSION}",
                file.schema_version
            )));
        }
        let key_id = |field: &str, text: &str| {
            KeyId::parse(text).ok_or_else(|| fail(format!("{field} is not a key id")))
        };
        let enrollment = Self {
            device_id: file.device_id,
            collector_url: file.collector_url,
            policy_public_key: file.policy_public_key,
            policy_key_id: key_id("policy_key_id", &file.policy_key_id)?,
            device_key_id: key_id("device_key_id", &file.device_key_id)?,
            enrolled_at: file.enrolled_at,
        };
        enrollment.validate().map_err(fail)?;
        Ok(Some(enrollment))
    }

    /// Writes the record durably, mode `0600`, replacing any earlier one.
    pub fn save(&self, state_dir: &Path) -> Result<(), IdentityError> {
        let path = Self::path(state_dir);
        let fail = |err: io::Error| IdentityError::Enrollment {
            path: path.clone(),
            reason: err.to_string(),
        };
        durable::create_dir_private(state_dir).map_err(fail)?;
        // Written with `json!` rather than a `Serialize` derive: only the
        // wire types in `shared` are `Serialize` (ARCHITECTURE.md).
        let document = serde_json::json!({
            "schema_version": ENROLLMENT_SCHEMA_VERSION,
            "device_id": self.device_id.as_str(),
            "collector_url": self.collector_url,
            "policy_public_key": self.policy_public_key,
            "policy_key_id": self.policy_key_id.as_str(),
            "device_key_id": self.device_key_id.as_str(),
            "enrolled_at": self.enrolled_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        let mut bytes = serde_json::to_vec_pretty(&document)
            .map_err(io::Error::other)
            .map_err(fail)?;
        bytes.push(b'\n');
        durable::write_atomic(&path, &bytes, FileMode::OwnerOnly).map_err(fail)
    }

    fn validate(&self) -> Result<(), String> {
        if self.device_id.as_str().is_empty() || self.device_id.is_unenrolled() {
            return Err(format!(
                "device_id {:?} is not an enrolled id",
                self.device_id.as_str()
            ));
        }
        if self.collector_url.is_empty() {
            return Err("collector_url is empty".into());
        }
        let key = self.policy_verifying_key()?;
        if KeyId::of(&key) != self.policy_key_id {
            return Err(format!(
                "policy_key_id {} is not the id of policy_public_key ({})",
                self.policy_key_id,
                KeyId::of(&key)
            ));
        }
        Ok(())
    }
}

/// The record as stored. Read with serde; unknown fields are refused so a
/// newer agent's record is not half-understood.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollmentFile {
    schema_version: u32,
    device_id: DeviceId,
    collector_url: String,
    policy_public_key: String,
    policy_key_id: String,
    device_key_id: String,
    enrolled_at: DateTime<Utc>,
}

// ---------------------------------------------------------------------------
// The key file.

fn load_key_file(path: &Path) -> Result<Option<SigningKey>, IdentityError> {
    let fail = |source: io::Error| IdentityError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    // `symlink_metadata`: a symlink is refused, not followed to a key someone
    // else controls.
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(fail(err)),
    };
    if !metadata.file_type().is_file() {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidData,
            "is not a regular file (a symlink or a directory); remove it and enroll again",
        )));
    }
    refuse_if_dir_writable_by_others(path)?;
    durable::refuse_if_exposed(path).map_err(fail)?;
    refuse_if_foreign_owner(path, &metadata)?;
    if metadata.len() != SEED_LEN as u64 {
        return Err(IdentityError::CorruptKeyFile {
            path: path.to_path_buf(),
            len: metadata.len(),
        });
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(fail)?);
    let seed: Zeroizing<[u8; SEED_LEN]> = match bytes.as_slice().try_into() {
        Ok(seed) => Zeroizing::new(seed),
        Err(_) => {
            return Err(IdentityError::CorruptKeyFile {
                path: path.to_path_buf(),
                len: bytes.len() as u64,
            });
        }
    };
    Ok(Some(SigningKey::from_bytes(&seed)))
}

fn create_key_file(path: &Path) -> Result<SigningKey, IdentityError> {
    let fail = |source: io::Error| IdentityError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        durable::create_dir_private(dir).map_err(fail)?;
    }
    refuse_if_dir_writable_by_others(path)?;
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let seed = Zeroizing::new(key.to_bytes());
    match durable::write_new(path, seed.as_slice(), FileMode::OwnerOnly) {
        Ok(()) => Ok(key),
        // Another process made one between our look and our write: theirs
        // is the device key now.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            load_key_file(path)?.ok_or_else(|| {
                fail(io::Error::other(
                    "appeared and vanished while being created",
                ))
            })
        }
        Err(err) => Err(fail(err)),
    }
}

fn refuse_if_dir_writable_by_others(key_path: &Path) -> Result<(), IdentityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let Some(dir) = key_path.parent() else {
            return Ok(());
        };
        let metadata = fs::metadata(dir).map_err(|source| IdentityError::KeyFile {
            path: key_path.to_path_buf(),
            source,
        })?;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(IdentityError::StateDirExposed {
                path: dir.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = key_path;
    Ok(())
}

fn refuse_if_foreign_owner(key_path: &Path, metadata: &fs::Metadata) -> Result<(), IdentityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let Some(dir) = key_path.parent() else {
            return Ok(());
        };
        let dir_uid = fs::metadata(dir)
            .map_err(|source| IdentityError::KeyFile {
                path: key_path.to_path_buf(),
                source,
            })?
            .uid();
        if metadata.uid() != dir_uid {
            return Err(IdentityError::ForeignKeyFile {
                path: key_path.to_path_buf(),
                file_uid: metadata.uid(),
                dir_uid,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (key_path, metadata);
    Ok(())
}

// ---------------------------------------------------------------------------
// System credential stores, through keyring-core. The logic is written
// against `CredentialStore` so the unit tests run it on Linux with
// keyring-core's mock store; only `system_store` differs per OS.

/// Entry modifiers, as keyring-core takes them.
type Modifiers = std::collections::HashMap<&'static str, &'static str>;

fn load_from_credential_store(
    credentials: &CredentialStore,
    modifiers: &Modifiers,
    store: &KeyStore,
) -> Result<Option<SigningKey>, IdentityError> {
    let entry = build_entry(credentials, modifiers, store)?;
    match entry.get_secret() {
        Ok(secret) => seed_from_secret(Zeroizing::new(secret), store).map(Some),
        Err(keyring_core::Error::NoEntry) => Ok(None),
        Err(err) => Err(store_error(store, err)),
    }
}

fn create_in_credential_store(
    credentials: &CredentialStore,
    modifiers: &Modifiers,
    store: &KeyStore,
) -> Result<SigningKey, IdentityError> {
    let entry = build_entry(credentials, modifiers, store)?;
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let seed = Zeroizing::new(key.to_bytes());
    entry
        .set_secret(seed.as_slice())
        .map_err(|err| store_error(store, err))?;
    // Read back what the store holds: it proves the write, and if another
    // process stored a key at the same moment, whichever is stored is the
    // device key for everyone.
    load_from_credential_store(credentials, modifiers, store)?.ok_or_else(|| {
        IdentityError::CredentialStore {
            store: store.clone(),
            reason: "the key just stored cannot be read back".into(),
        }
    })
}

fn build_entry(
    credentials: &CredentialStore,
    modifiers: &Modifiers,
    store: &KeyStore,
) -> Result<keyring_core::Entry, IdentityError> {
    let modifiers = (!modifiers.is_empty()).then_some(modifiers);
    credentials
        .build(CREDENTIAL_SERVICE, CREDENTIAL_USER, modifiers)
        .map_err(|err| store_error(store, err))
}

fn seed_from_secret(
    secret: Zeroizing<Vec<u8>>,
    store: &KeyStore,
) -> Result<SigningKey, IdentityError> {
    let seed: [u8; SEED_LEN] =
        secret
            .as_slice()
            .try_into()
            .map_err(|_| IdentityError::CredentialStore {
                store: store.clone(),
                reason: format!(
                    "the stored key is {} bytes, not a 32-byte Ed25519 seed; delete the \
                     `{CREDENTIAL_SERVICE}` credential and enroll again",
                    secret.len()
                ),
            })?;
    let seed = Zeroizing::new(seed);
    Ok(SigningKey::from_bytes(&seed))
}

fn store_error(store: &KeyStore, err: keyring_core::Error) -> IdentityError {
    IdentityError::CredentialStore {
        store: store.clone(),
        reason: err.to_string(),
    }
}

/// The OS credential store for `store`, with the entry modifiers it needs.
fn system_store(
    store: &KeyStore,
) -> Result<(std::sync::Arc<CredentialStore>, Modifiers), IdentityError> {
    match store {
        #[cfg(target_os = "macos")]
        KeyStore::MacosKeychain => {
            let configuration = std::collections::HashMap::from([("keychain", "System")]);
            let credentials =
                apple_native_keyring_store::keychain::Store::new_with_configuration(&configuration)
                    .map_err(|err| store_error(store, err))?;
            Ok((credentials, Modifiers::new()))
        }
        #[cfg(windows)]
        KeyStore::WindowsCredentialManager => {
            let credentials = windows_native_keyring_store::Store::new()
                .map_err(|err| store_error(store, err))?;
            Ok((credentials, Modifiers::from([("persistence", "Local")])))
        }
        _ => Err(IdentityError::StoreUnavailable {
            store: store.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock() -> std::sync::Arc<CredentialStore> {
        keyring_core::mock::Store::new().unwrap()
    }

    #[test]
    fn credential_store_key_is_made_once_and_then_loaded() {
        let credentials = mock();
        let store = KeyStore::MacosKeychain;
        let none = Modifiers::new();
        assert!(
            load_from_credential_store(credentials.as_ref(), &none, &store)
                .unwrap()
                .is_none()
        );
        let made = create_in_credential_store(credentials.as_ref(), &none, &store).unwrap();
        let loaded = load_from_credential_store(credentials.as_ref(), &none, &store)
            .unwrap()
            .unwrap();
        assert_eq!(made.to_bytes(), loaded.to_bytes());
    }

    #[test]
    fn credential_store_malformed_key_is_an_error_not_replaced() {
        let credentials = mock();
        let store = KeyStore::WindowsCredentialManager;
        let none = Modifiers::new();
        let entry = build_entry(credentials.as_ref(), &none, &store).unwrap();
        entry.set_secret(b"short").unwrap();
        let err = load_from_credential_store(credentials.as_ref(), &none, &store).unwrap_err();
        assert!(err.to_string().contains("5 bytes"), "{err}");
        assert_eq!(entry.get_secret().unwrap(), b"short", "left as it was");
    }

    #[test]
    fn credential_store_failure_is_not_mistaken_for_absence() {
        let credentials = mock();
        let store = KeyStore::MacosKeychain;
        let none = Modifiers::new();
        let entry = build_entry(credentials.as_ref(), &none, &store).unwrap();
        let cred: &keyring_core::mock::Cred = entry.as_any().downcast_ref().unwrap();
        cred.set_error(keyring_core::Error::NoStorageAccess(Box::new(
            io::Error::other("keychain locked"),
        )));
        let err = load_from_credential_store(credentials.as_ref(), &none, &store).unwrap_err();
        assert!(err.to_string().contains("macOS Keychain"), "{err}");
    }

    #[test]
    fn store_names_for_status() {
        assert_eq!(
            KeyStore::file_in(Path::new("/var/lib/palisade")).to_string(),
            "file /var/lib/palisade/device.key (0600)"
        );
        assert_eq!(KeyStore::MacosKeychain.to_string(), "macOS Keychain");
        assert_eq!(
            KeyStore::WindowsCredentialManager.to_string(),
            "Windows Credential Manager"
        );
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    #[test]
    fn this_os_uses_the_file() {
        assert_eq!(
            KeyStore::for_this_os(Path::new("/s")),
            KeyStore::File(PathBuf::from("/s/device.key"))
        );
    }

    #[cfg(not(any(target_os = "macos", windows)))]
    #[test]
    fn system_stores_are_unavailable_here() {
        let err = Identity::load(KeyStore::MacosKeychain).unwrap_err();
        assert!(
            matches!(err, IdentityError::StoreUnavailable { .. }),
            "{err}"
        );
    }
}
