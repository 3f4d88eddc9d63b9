//! Unit tests of the device identity: the key file's refusals and the
//! credential store path, on keyring-core's mock store.

use keyring_core::CredentialStore;

use super::credential_store::{Modifiers, build_entry};
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
