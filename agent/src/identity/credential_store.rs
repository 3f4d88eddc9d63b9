//! The signing key in a system credential store, through keyring-core. The
//! logic is written against `CredentialStore` so the unit tests run it on
//! Linux with keyring-core's mock store; only `system_store` differs per OS.

use super::{CREDENTIAL_SERVICE, CREDENTIAL_USER, IdentityError, KeyStore, SEED_LEN};
use ed25519_dalek::SigningKey;
use keyring_core::CredentialStore;
use zeroize::Zeroizing;

/// Entry modifiers, as keyring-core takes them.
pub(super) type Modifiers = std::collections::HashMap<&'static str, &'static str>;

pub(super) fn load_from_credential_store(
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

pub(super) fn create_in_credential_store(
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

pub(super) fn build_entry(
    credentials: &CredentialStore,
    modifiers: &Modifiers,
    store: &KeyStore,
) -> Result<keyring_core::Entry, IdentityError> {
    let modifiers = (!modifiers.is_empty()).then_some(modifiers);
    credentials
        .build(CREDENTIAL_SERVICE, CREDENTIAL_USER, modifiers)
        .map_err(|err| store_error(store, err))
}

pub(super) fn seed_from_secret(
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

pub(super) fn store_error(store: &KeyStore, err: keyring_core::Error) -> IdentityError {
    IdentityError::CredentialStore {
        store: store.clone(),
        reason: err.to_string(),
    }
}

/// The OS credential store for `store`, with the entry modifiers it needs.
pub(super) fn system_store(
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
