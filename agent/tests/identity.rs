//! The device key file and the enrollment record on a real filesystem: made
//! once with mode 0600, loaded unchanged afterwards, and refused (never
//! replaced) when exposed, damaged, planted by someone else or a symlink.
//! The system credential stores are tested with keyring-core's mock store
//! in `src/identity.rs`; this machine has neither Keychain nor Credential
//! Manager.

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use chrono::TimeZone as _;
use ed25519_dalek::SigningKey;
use palisade_agent::identity::{
    ENROLLMENT_FILE_NAME, Enrollment, Identity, IdentityError, KEY_FILE_NAME, KeyStore,
};
use palisade_shared::envelope::verifying_key_to_base64;
use palisade_shared::protocol::EnrollResponse;
use palisade_shared::{DeviceId, KeyId};

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn first_start_makes_a_private_key_and_later_starts_load_it() {
    let temp = tempfile::tempdir().unwrap();
    let state = temp.path().join("state");
    let store = KeyStore::file_in(&state);
    assert!(Identity::load(store.clone()).unwrap().is_none());
    assert!(!state.exists(), "load never writes");

    let made = Identity::load_or_create(store.clone()).unwrap();
    let key_file = state.join(KEY_FILE_NAME);
    assert_eq!(fs::read(&key_file).unwrap(), made.key.to_bytes());
    assert_eq!(names(&state), [KEY_FILE_NAME], "no temp file left");
    #[cfg(unix)]
    {
        assert_eq!(mode_of(&key_file), 0o600);
        assert_eq!(mode_of(&state) & 0o077, 0, "state dir made private");
    }
    assert_eq!(
        made.store.to_string(),
        format!("file {} (0600)", key_file.display())
    );
    assert_eq!(made.key_id(), KeyId::of(&made.verifying_key()));
    assert_eq!(
        made.public_key_base64(),
        verifying_key_to_base64(&made.verifying_key())
    );
    let shown = format!("{made:?}");
    assert!(shown.contains(made.key_id().as_str()), "{shown}");
    assert!(
        !shown.contains(&hex::encode(made.key.to_bytes())),
        "{shown}"
    );

    let again = Identity::load_or_create(store.clone()).unwrap();
    assert_eq!(again.key.to_bytes(), made.key.to_bytes());
    let loaded = Identity::load(store).unwrap().unwrap();
    assert_eq!(loaded.key_id(), made.key_id());
}

#[test]
fn starts_racing_for_the_first_key_all_get_the_same_one() {
    let temp = tempfile::tempdir().unwrap();
    let store = KeyStore::file_in(temp.path());
    let keys: Vec<[u8; 32]> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                scope.spawn(move || Identity::load_or_create(store).unwrap().key.to_bytes())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        keys.windows(2).all(|w| w[0] == w[1]),
        "two different keys were made"
    );
    assert_eq!(names(temp.path()), [KEY_FILE_NAME]);
}

#[cfg(unix)]
#[test]
fn an_exposed_key_file_is_refused_with_the_fix() {
    let temp = tempfile::tempdir().unwrap();
    let store = KeyStore::file_in(temp.path());
    Identity::load_or_create(store.clone()).unwrap();
    let key_file = temp.path().join(KEY_FILE_NAME);
    let before = fs::read(&key_file).unwrap();
    for mode in [0o644, 0o604, 0o640, 0o660] {
        chmod(&key_file, mode);
        let err = Identity::load_or_create(store.clone()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
        assert!(
            message.contains(&format!("chmod 600 {}", key_file.display())),
            "{message}"
        );
        assert_eq!(fs::read(&key_file).unwrap(), before, "never replaced");
    }
    chmod(&key_file, 0o400);
    Identity::load(store).unwrap().unwrap();
}

#[cfg(unix)]
#[test]
fn a_state_directory_others_can_write_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let state = temp.path().join("state");
    fs::create_dir(&state).unwrap();
    chmod(&state, 0o777);
    let err = Identity::load_or_create(KeyStore::file_in(&state)).unwrap_err();
    assert!(
        matches!(err, IdentityError::StateDirExposed { mode: 0o777, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 700"), "{err}");
    assert!(
        names(&state).is_empty(),
        "no key made in an exposed directory"
    );
}

#[test]
fn a_damaged_key_file_is_an_error_and_left_for_a_person() {
    let temp = tempfile::tempdir().unwrap();
    let key_file = temp.path().join(KEY_FILE_NAME);
    for content in [&b""[..], &[1u8; 31][..], &[1u8; 64][..]] {
        fs::write(&key_file, content).unwrap();
        #[cfg(unix)]
        chmod(&key_file, 0o600);
        let err = Identity::load_or_create(KeyStore::file_in(temp.path())).unwrap_err();
        assert!(
            matches!(err, IdentityError::CorruptKeyFile { len, .. } if len == content.len() as u64),
            "{err}"
        );
        assert!(err.to_string().contains("enroll again"), "{err}");
        assert_eq!(fs::read(&key_file).unwrap(), content, "never replaced");
    }
}

#[cfg(unix)]
#[test]
fn a_symlinked_key_file_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let elsewhere = temp.path().join("planted.key");
    fs::write(&elsewhere, [9u8; 32]).unwrap();
    chmod(&elsewhere, 0o600);
    let state = temp.path().join("state");
    fs::create_dir(&state).unwrap();
    chmod(&state, 0o700);
    std::os::unix::fs::symlink(&elsewhere, state.join(KEY_FILE_NAME)).unwrap();
    let err = Identity::load_or_create(KeyStore::file_in(&state)).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

/// A key file owned by another user than the state directory: someone else
/// may have chosen it. Needs root to give the file away; as another user the
/// situation cannot be made, so there is nothing to check.
#[cfg(unix)]
#[test]
fn a_key_file_owned_by_someone_else_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let store = KeyStore::file_in(temp.path());
    Identity::load_or_create(store.clone()).unwrap();
    let key_file = temp.path().join(KEY_FILE_NAME);
    if std::os::unix::fs::chown(&key_file, Some(65_534), None).is_err() {
        return;
    }
    let err = Identity::load(store).unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::ForeignKeyFile {
                file_uid: 65_534,
                ..
            }
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// The enrollment record.

fn response() -> (EnrollResponse, SigningKey) {
    let policy_key = SigningKey::from_bytes(&[5; 32]);
    let response = EnrollResponse {
        device_id: DeviceId::new("dev_01HZX3M8Q2W7R4T6Y9B1C5D8F0"),
        policy_public_key: verifying_key_to_base64(&policy_key.verifying_key()),
        policy_key_id: KeyId::of(&policy_key.verifying_key()),
    };
    (response, policy_key)
}

fn enrolled_at() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc.with_ymd_and_hms(2025, 3, 1, 9, 30, 0).unwrap()
}

#[test]
fn enrollment_record_round_trips_privately_and_holds_no_secret() {
    let temp = tempfile::tempdir().unwrap();
    let identity = Identity::load_or_create(KeyStore::file_in(temp.path())).unwrap();
    let (response, policy_key) = response();
    assert!(Enrollment::load(temp.path()).unwrap().is_none());

    let enrollment = Enrollment::from_response(
        &response,
        "https://palisade.example.org",
        identity.key_id(),
        enrolled_at(),
    )
    .unwrap();
    enrollment.save(temp.path()).unwrap();
    let path = temp.path().join(ENROLLMENT_FILE_NAME);
    #[cfg(unix)]
    assert_eq!(mode_of(&path), 0o600);

    let loaded = Enrollment::load(temp.path()).unwrap().unwrap();
    assert_eq!(loaded, enrollment);
    assert!(loaded.is_for(&identity));
    assert_eq!(
        loaded.policy_verifying_key().unwrap(),
        policy_key.verifying_key()
    );

    // Exactly these fields: there is no place for the enrollment secret.
    let document: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let mut keys: Vec<&str> = document
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "collector_url",
            "device_id",
            "device_key_id",
            "enrolled_at",
            "policy_key_id",
            "policy_public_key",
            "schema_version"
        ]
    );
    assert_eq!(document["enrolled_at"], "2025-03-01T09:30:00Z");

    // A new key (the old one lost) makes the record stale.
    let other = Identity::load_or_create(KeyStore::file_in(&temp.path().join("other"))).unwrap();
    assert!(!loaded.is_for(&other));
}

#[test]
fn a_policy_key_that_does_not_match_its_id_is_refused() {
    let (mut response, _) = response();
    response.policy_key_id = KeyId::of(&SigningKey::from_bytes(&[6; 32]).verifying_key());
    let device = KeyId::of(&SigningKey::from_bytes(&[1; 32]).verifying_key());
    let err = Enrollment::from_response(&response, "https://c.example", device, enrolled_at())
        .unwrap_err();
    assert!(err.contains("is not the id of policy_public_key"), "{err}");
}

#[test]
fn a_tampered_enrollment_record_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (response, _) = response();
    let device = KeyId::of(&SigningKey::from_bytes(&[1; 32]).verifying_key());
    Enrollment::from_response(&response, "https://c.example", device, enrolled_at())
        .unwrap()
        .save(temp.path())
        .unwrap();
    let path = temp.path().join(ENROLLMENT_FILE_NAME);
    let original = fs::read_to_string(&path).unwrap();

    // Someone pins their own policy key but leaves the id.
    let attacker = SigningKey::from_bytes(&[66; 32]).verifying_key();
    let swapped = original.replace(
        &response.policy_public_key,
        &verifying_key_to_base64(&attacker),
    );
    let unknown_field = original.replacen('{', "{\n  \"enrollment_secret\": \"x\",", 1);
    for (what, text) in [("swapped key", swapped), ("unknown field", unknown_field)] {
        fs::write(&path, text).unwrap();
        let err = Enrollment::load(temp.path()).unwrap_err();
        assert!(
            err.to_string().contains(ENROLLMENT_FILE_NAME),
            "{what}: {err}"
        );
    }

    #[cfg(unix)]
    {
        fs::write(&path, &original).unwrap();
        Enrollment::load(temp.path()).unwrap().unwrap();
        chmod(&path, 0o666);
        let err = Enrollment::load(temp.path()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
