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
use palisade_shared::DeviceId;
use palisade_shared::KeyId;
use palisade_shared::envelope::{verifying_key_from_base64, verifying_key_to_base64};
use palisade_shared::protocol::EnrollResponse;
use serde::Deserialize;

use crate::durable::{self, FileMode};

mod credential_store;
mod key_file;

use credential_store::{create_in_credential_store, load_from_credential_store, system_store};
use key_file::{create_key_file, load_key_file};

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

#[cfg(test)]
mod tests;
