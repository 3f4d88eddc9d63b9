//! The store contract (`collector/src/store/mod.rs`), tested once and run
//! against both backends: every test below is an `async fn(Backend)`, and
//! `store_tests!` turns each into `sqlite::<name>` and `postgres::<name>`.
//!
//! SQLite runs on a file in a fresh temporary directory per test.
//! PostgreSQL runs on a real server whose URL comes from
//! `PALISADE_TEST_POSTGRES_URL` (`tests/run` starts one with
//! `tests/pg/start-postgres.sh`); each test creates its own database on it,
//! so the tests run in parallel without seeing each other's rows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed assertion

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use palisade_collector::ingest::chain::ConflictReason;
use palisade_collector::store::{
    AuditEntry, EnrollDevice, EnrollRefusal, IncomingReport, IncomingVerdict, NewEnrollmentSecret,
    NewPolicy, Store, StoreBackend, StoreError, StoreOutcome,
};
use palisade_shared::report::CheckStatus;
use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor};

macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

store_tests! {
    migrations_are_idempotent,
    enrollment_creates_the_device_and_its_key,
    enrollment_refuses_a_wrong_secret,
    enrollment_refuses_an_unknown_secret,
    enrollment_refuses_an_expired_secret,
    enrollment_refuses_a_used_up_secret,
    enrollment_refuses_a_key_already_enrolled,
    revocation_covers_the_device_and_its_keys,
    first_report_is_stored_and_updates_the_device,
    same_report_again_is_a_duplicate,
    same_sequence_other_digest_is_a_conflict,
    sequence_below_the_stored_one_is_a_conflict,
    gap_sets_the_sequence_gap_flag_for_good,
    wrong_prev_digest_sets_the_chain_broken_flag_for_good,
    reports_of_one_device_in_one_batch_see_each_other,
    batch_mixing_devices,
    failed_batch_stores_nothing,
    envelope_comes_back_byte_for_byte,
    latest_verdicts_follow_the_highest_sequence,
    purge_keeps_the_latest_report_of_each_device,
    policy_revisions_increase,
    audit_log_lists_newest_first,
    concurrent_writers_store_each_sequence_once,
}

// ---------------------------------------------------------------------------
// Harness.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty, migrated store; the temporary directory (SQLite) lives as
/// long as this does.
struct TestStore {
    store: Store,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

const POSTGRES_URL_VARIABLE: &str = "PALISADE_TEST_POSTGRES_URL";

async fn fresh_store(backend: Backend) -> TestStore {
    let (url, dir) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}", dir.path().join("collector.db").display());
            (url, Some(dir))
        }
        Backend::Postgres => (fresh_postgres_database().await, None),
    };
    let store = Store::open(&url)
        .await
        .unwrap_or_else(|err| panic!("opening {url}: {err}"));
    assert_eq!(
        store.kind(),
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );
    TestStore {
        store,
        url,
        _dir: dir,
    }
}

/// Creates a database with a random name on the test server and returns its
/// URL.
async fn fresh_postgres_database() -> String {
    let server_url = std::env::var(POSTGRES_URL_VARIABLE).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VARIABLE} is not set, so the PostgreSQL half of this suite cannot \
             run. tests/run sets it; by hand:\n  \
             export {POSTGRES_URL_VARIABLE}=$(tests/pg/start-postgres.sh /tmp/palisade-pg)\n  \
             cargo test -p palisade-collector --test store\n  \
             tests/pg/stop-postgres.sh /tmp/palisade-pg"
        )
    });
    let name = format!("palisade_test_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&server_url)
        .await
        .unwrap_or_else(|err| {
            panic!("connecting to {server_url} ({POSTGRES_URL_VARIABLE}): {err}")
        });
    // A database name cannot be a bind parameter; this one is ours and made
    // of [a-z0-9_] only.
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|err| panic!("CREATE DATABASE {name}: {err}"));
    admin.close().await.ok();
    with_database(&server_url, &name)
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A fixed instant plus `seconds`, on whole milliseconds like the database.
fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_750_000_000_000 + seconds * 1000).expect("in range")
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn hex_digest(text: &str) -> String {
    hex::encode(sha256(text))
}

fn secret(
    id: &str,
    secret: &str,
    max_uses: Option<u32>,
    expires_at: Option<DateTime<Utc>>,
) -> NewEnrollmentSecret {
    NewEnrollmentSecret {
        id: id.to_owned(),
        secret_hash: sha256(secret),
        label: format!("label of {id}"),
        max_uses,
        expires_at,
        created_at: at(0),
        created_by: "admin".to_owned(),
    }
}

fn enrollment(secret_id: &str, secret: &str, device_id: &str, key_id: &str) -> EnrollDevice {
    EnrollDevice {
        secret_id: secret_id.to_owned(),
        presented_hash: sha256(secret),
        device_id: device_id.to_owned(),
        key_id: key_id.to_owned(),
        public_key: sha256(key_id),
        hostname: format!("{device_id}.enrolled"),
        os_name: "Debian GNU/Linux".to_owned(),
        os_version: "12".to_owned(),
        kernel_version: "6.1.0".to_owned(),
        arch: "x86_64".to_owned(),
        agent_version: "0.1.0".to_owned(),
        at: at(10),
    }
}

/// An enrolled device: its id and key id.
#[derive(Debug, Clone)]
struct Device {
    id: String,
    key_id: String,
}

async fn enrolled(store: &Store, name: &str) -> Device {
    let secret_id = format!("sec_{name}");
    store
        .create_enrollment_secret(&secret(&secret_id, name, None, None))
        .await
        .expect("create secret");
    let device = Device {
        id: format!("dev_{name}"),
        key_id: format!("key_{name}"),
    };
    let outcome = store
        .enroll_device(&enrollment(&secret_id, name, &device.id, &device.key_id))
        .await
        .expect("enroll");
    assert_eq!(outcome, Ok(()));
    device
}

fn verdict(rule: &str, status: CheckStatus) -> IncomingVerdict {
    IncomingVerdict {
        rule_id: rule.to_owned(),
        status,
        mode: "audit".to_owned(),
        summary: format!("{rule} is {}", status.as_str()),
        evidence_json: format!(r#"{{"rule": "{rule}",  "spaced":  true}}"#),
        fix: format!("fix {rule}"),
    }
}

/// The digest of a device's report `sequence` in chain `variant`; reports of
/// one variant link to each other.
fn digest_of(device: &Device, sequence: u64, variant: u32) -> String {
    if sequence == 0 {
        return String::new();
    }
    hex_digest(&format!("{}/{sequence}/{variant}", device.id))
}

/// Report `sequence` of `device`, correctly linked to `sequence - 1` of the
/// same variant, issued at `sequence` minutes and received a second later.
fn linked_report(device: &Device, sequence: u64, variant: u32) -> IncomingReport {
    let minutes = i64::try_from(sequence).expect("small") * 60;
    IncomingReport {
        device_id: device.id.clone(),
        key_id: device.key_id.clone(),
        sequence,
        digest: digest_of(device, sequence, variant),
        prev_digest: digest_of(device, sequence - 1, variant),
        issued_at: at(minutes),
        received_at: at(minutes + 1),
        envelope: format!("envelope {}/{sequence}/{variant}", device.id).into_bytes(),
        hostname: format!("{}.reported.{sequence}", device.id),
        os_name: "Debian GNU/Linux".to_owned(),
        os_version: format!("12.{sequence}"),
        agent_version: "0.2.0".to_owned(),
        policy_id: "baseline".to_owned(),
        policy_version: 3,
        verdicts: vec![
            verdict("screen_lock", CheckStatus::Pass),
            verdict("disk_encryption", CheckStatus::Fail),
        ],
    }
}

fn report(device: &Device, sequence: u64) -> IncomingReport {
    linked_report(device, sequence, 0)
}

const STORED: StoreOutcome = StoreOutcome::Stored {
    sequence_gap: false,
    chain_broken: false,
};

async fn store(store: &Store, batch: &[IncomingReport]) -> Vec<StoreOutcome> {
    store
        .store_reports(batch)
        .await
        .unwrap_or_else(|err| panic!("store_reports: {err}"))
}

async fn secret_uses(store: &Store, id: &str) -> u32 {
    store
        .list_enrollment_secrets()
        .await
        .expect("list secrets")
        .into_iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("secret {id} is listed"))
        .uses
}

/// Asserts that a refused enrollment left no trace.
async fn assert_nothing_enrolled(store: &Store, request: &EnrollDevice) {
    assert_eq!(
        store.device(&request.device_id).await.expect("device"),
        None
    );
    assert_eq!(store.device_key(&request.key_id).await.expect("key"), None);
}

// ---------------------------------------------------------------------------
// Migrations and enrollment.

async fn migrations_are_idempotent(backend: Backend) {
    let db = fresh_store(backend).await;
    db.create_enrollment_secret(&secret("sec_a", "a", None, None))
        .await
        .unwrap();
    // Opening again runs the migrations again: nothing to do, nothing lost.
    let again = Store::open(&db.url).await.expect("second open");
    let third = Store::open(&db.url).await.expect("third open");
    assert_eq!(again.list_enrollment_secrets().await.unwrap().len(), 1);
    assert_eq!(third.list_enrollment_secrets().await.unwrap().len(), 1);
}

async fn enrollment_creates_the_device_and_its_key(backend: Backend) {
    let db = fresh_store(backend).await;
    let expires = at(3600);
    db.create_enrollment_secret(&secret("sec_a", "s3cret", Some(5), Some(expires)))
        .await
        .unwrap();
    let request = enrollment("sec_a", "s3cret", "dev_1", "key_1");
    assert_eq!(db.enroll_device(&request).await.unwrap(), Ok(()));

    let secrets = db.list_enrollment_secrets().await.unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].id, "sec_a");
    assert_eq!(secrets[0].label, "label of sec_a");
    assert_eq!(secrets[0].max_uses, Some(5));
    assert_eq!(secrets[0].uses, 1);
    assert_eq!(secrets[0].expires_at, Some(expires));
    assert_eq!(secrets[0].created_at, at(0));
    assert_eq!(secrets[0].created_by, "admin");

    let key = db.device_key("key_1").await.unwrap().expect("key stored");
    assert_eq!(key.key_id, "key_1");
    assert_eq!(key.device_id, "dev_1");
    assert_eq!(key.public_key, request.public_key);
    assert_eq!(key.revoked_at, None);

    let device = db.device("dev_1").await.unwrap().expect("device stored");
    assert_eq!(device.hostname, "dev_1.enrolled");
    assert_eq!(device.kernel_version, "6.1.0");
    assert_eq!(device.arch, "x86_64");
    assert_eq!(device.enrollment_secret_id, "sec_a");
    assert_eq!(device.enrolled_at, request.at);
    assert_eq!(device.last_seen_at, None);
    assert_eq!(device.last_sequence, None);
    assert_eq!(device.policy_id, None);
    assert!(!device.sequence_gap && !device.chain_broken);
    assert_eq!(db.device_key("key_unknown").await.unwrap(), None);
}

async fn enrollment_refuses_a_wrong_secret(backend: Backend) {
    let db = fresh_store(backend).await;
    db.create_enrollment_secret(&secret("sec_a", "right", None, None))
        .await
        .unwrap();
    let request = enrollment("sec_a", "wrong", "dev_1", "key_1");
    assert_eq!(
        db.enroll_device(&request).await.unwrap(),
        Err(EnrollRefusal::WrongSecret)
    );
    assert_eq!(secret_uses(&db, "sec_a").await, 0);
    assert_nothing_enrolled(&db, &request).await;
}

async fn enrollment_refuses_an_unknown_secret(backend: Backend) {
    let db = fresh_store(backend).await;
    let request = enrollment("sec_nope", "anything", "dev_1", "key_1");
    assert_eq!(
        db.enroll_device(&request).await.unwrap(),
        Err(EnrollRefusal::UnknownSecret)
    );
    assert_nothing_enrolled(&db, &request).await;
}

async fn enrollment_refuses_an_expired_secret(backend: Backend) {
    let db = fresh_store(backend).await;
    db.create_enrollment_secret(&secret("sec_a", "s", None, Some(at(100))))
        .await
        .unwrap();
    // At the expiry instant the secret is already expired.
    let mut request = enrollment("sec_a", "s", "dev_1", "key_1");
    request.at = at(100);
    assert_eq!(
        db.enroll_device(&request).await.unwrap(),
        Err(EnrollRefusal::SecretExpired)
    );
    assert_eq!(secret_uses(&db, "sec_a").await, 0);
    assert_nothing_enrolled(&db, &request).await;
    // A millisecond earlier it works.
    request.at = at(100) - chrono::Duration::milliseconds(1);
    assert_eq!(db.enroll_device(&request).await.unwrap(), Ok(()));
}

async fn enrollment_refuses_a_used_up_secret(backend: Backend) {
    let db = fresh_store(backend).await;
    db.create_enrollment_secret(&secret("sec_once", "s", Some(1), None))
        .await
        .unwrap();
    let first = enrollment("sec_once", "s", "dev_1", "key_1");
    assert_eq!(db.enroll_device(&first).await.unwrap(), Ok(()));
    let second = enrollment("sec_once", "s", "dev_2", "key_2");
    assert_eq!(
        db.enroll_device(&second).await.unwrap(),
        Err(EnrollRefusal::SecretUsedUp)
    );
    assert_eq!(secret_uses(&db, "sec_once").await, 1);
    assert_nothing_enrolled(&db, &second).await;
}

async fn enrollment_refuses_a_key_already_enrolled(backend: Backend) {
    let db = fresh_store(backend).await;
    db.create_enrollment_secret(&secret("sec_a", "a", None, None))
        .await
        .unwrap();
    db.create_enrollment_secret(&secret("sec_b", "b", None, None))
        .await
        .unwrap();
    assert_eq!(
        db.enroll_device(&enrollment("sec_a", "a", "dev_1", "key_1"))
            .await
            .unwrap(),
        Ok(())
    );
    // The same key again, through another valid secret, as another device.
    let again = enrollment("sec_b", "b", "dev_2", "key_1");
    assert_eq!(
        db.enroll_device(&again).await.unwrap(),
        Err(EnrollRefusal::KeyAlreadyEnrolled)
    );
    assert_eq!(secret_uses(&db, "sec_b").await, 0);
    assert_eq!(db.device("dev_2").await.unwrap(), None);
    let key = db.device_key("key_1").await.unwrap().expect("first key");
    assert_eq!(key.device_id, "dev_1");
}

async fn revocation_covers_the_device_and_its_keys(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    let other = enrolled(&db, "b").await;
    assert!(db.revoke_device(&device.id, at(500)).await.unwrap());
    let key = db.device_key(&device.key_id).await.unwrap().expect("key");
    assert_eq!(key.revoked_at, Some(at(500)));
    assert_eq!(
        db.device(&device.id)
            .await
            .unwrap()
            .expect("device")
            .revoked_at,
        Some(at(500))
    );
    // Revoking again keeps the first time.
    assert!(db.revoke_device(&device.id, at(900)).await.unwrap());
    let key = db.device_key(&device.key_id).await.unwrap().expect("key");
    assert_eq!(key.revoked_at, Some(at(500)));
    // Other devices are untouched; an unknown device is reported as such.
    let other_key = db.device_key(&other.key_id).await.unwrap().expect("key");
    assert_eq!(other_key.revoked_at, None);
    assert!(!db.revoke_device("dev_nope", at(500)).await.unwrap());
}

// ---------------------------------------------------------------------------
// Reports and the chain.

async fn first_report_is_stored_and_updates_the_device(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    let first = report(&device, 1);
    assert_eq!(store(&db, std::slice::from_ref(&first)).await, [STORED]);
    assert_eq!(db.count_reports().await.unwrap(), 1);

    let row = db.device(&device.id).await.unwrap().expect("device");
    assert_eq!(row.last_sequence, Some(1));
    assert_eq!(row.last_digest.as_deref(), Some(first.digest.as_str()));
    assert_eq!(row.last_seen_at, Some(first.received_at));
    assert_eq!(row.hostname, first.hostname);
    assert_eq!(row.os_version, "12.1");
    assert_eq!(row.agent_version, "0.2.0");
    assert_eq!(row.policy_id.as_deref(), Some("baseline"));
    assert_eq!(row.policy_version, Some(3));
    // What a report does not carry stays as enrolled.
    assert_eq!(row.kernel_version, "6.1.0");
    assert!(!row.sequence_gap && !row.chain_broken);
}

async fn same_report_again_is_a_duplicate(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    let first = report(&device, 1);
    assert_eq!(store(&db, std::slice::from_ref(&first)).await, [STORED]);
    assert_eq!(
        store(&db, std::slice::from_ref(&first)).await,
        [StoreOutcome::Duplicate]
    );
    assert_eq!(db.count_reports().await.unwrap(), 1);
}

async fn same_sequence_other_digest_is_a_conflict(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    let first = report(&device, 1);
    store(&db, std::slice::from_ref(&first)).await;
    let rewritten = linked_report(&device, 1, 1);
    assert_eq!(
        store(&db, &[rewritten]).await,
        [StoreOutcome::Conflict(
            ConflictReason::SequenceTakenByAnotherDigest
        )]
    );
    assert_eq!(db.count_reports().await.unwrap(), 1);
    assert_eq!(
        db.report_envelope(&device.id, 1).await.unwrap(),
        Some(first.envelope)
    );
}

async fn sequence_below_the_stored_one_is_a_conflict(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    store(&db, &[report(&device, 1), report(&device, 3)]).await;
    // 2 was never stored, but 3 was: the chain cannot go back.
    assert_eq!(
        store(&db, &[report(&device, 2)]).await,
        [StoreOutcome::Conflict(ConflictReason::SequenceBelowStored)]
    );
    assert_eq!(db.count_reports().await.unwrap(), 2);
    assert_eq!(db.report_envelope(&device.id, 2).await.unwrap(), None);
}

async fn gap_sets_the_sequence_gap_flag_for_good(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    store(&db, &[report(&device, 1)]).await;
    assert_eq!(
        store(&db, &[report(&device, 4)]).await,
        [StoreOutcome::Stored {
            sequence_gap: true,
            chain_broken: false
        }]
    );
    let row = db.device(&device.id).await.unwrap().expect("device");
    assert!(row.sequence_gap);
    assert!(!row.chain_broken);
    assert_eq!(row.last_sequence, Some(4));
    // A clean successor does not clear it.
    assert_eq!(store(&db, &[report(&device, 5)]).await, [STORED]);
    let row = db.device(&device.id).await.unwrap().expect("device");
    assert!(row.sequence_gap);
    assert_eq!(row.last_sequence, Some(5));
}

async fn wrong_prev_digest_sets_the_chain_broken_flag_for_good(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    store(&db, &[report(&device, 1)]).await;
    // Report 2 of another history: its prev_digest is not the stored 1.
    assert_eq!(
        store(&db, &[linked_report(&device, 2, 7)]).await,
        [StoreOutcome::Stored {
            sequence_gap: false,
            chain_broken: true
        }]
    );
    let row = db.device(&device.id).await.unwrap().expect("device");
    assert!(row.chain_broken);
    assert!(!row.sequence_gap);
    assert_eq!(store(&db, &[linked_report(&device, 3, 7)]).await, [STORED]);
    let row = db.device(&device.id).await.unwrap().expect("device");
    assert!(row.chain_broken);
    assert_eq!(row.last_digest, Some(digest_of(&device, 3, 7)));
}

async fn reports_of_one_device_in_one_batch_see_each_other(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    let batch = [
        report(&device, 1),
        report(&device, 2),
        report(&device, 2),
        linked_report(&device, 2, 1),
        report(&device, 3),
        report(&device, 5),
        report(&device, 4),
    ];
    assert_eq!(
        store(&db, &batch).await,
        [
            STORED,
            STORED,
            StoreOutcome::Duplicate,
            StoreOutcome::Conflict(ConflictReason::SequenceTakenByAnotherDigest),
            STORED,
            StoreOutcome::Stored {
                sequence_gap: true,
                chain_broken: false
            },
            StoreOutcome::Conflict(ConflictReason::SequenceBelowStored),
        ]
    );
    assert_eq!(db.count_reports().await.unwrap(), 4);
    let row = db.device(&device.id).await.unwrap().expect("device");
    assert_eq!(row.last_sequence, Some(5));
    assert!(row.sequence_gap);
    assert_eq!(row.hostname, batch[5].hostname);
}

async fn batch_mixing_devices(backend: Backend) {
    let db = fresh_store(backend).await;
    let a = enrolled(&db, "a").await;
    let b = enrolled(&db, "b").await;
    let c = enrolled(&db, "c").await;
    store(&db, &[report(&c, 1)]).await;
    let batch = [
        report(&b, 1),
        report(&a, 1),
        report(&c, 1),
        report(&b, 2),
        linked_report(&c, 2, 9),
        report(&a, 2),
    ];
    assert_eq!(
        store(&db, &batch).await,
        [
            STORED,
            STORED,
            StoreOutcome::Duplicate,
            STORED,
            StoreOutcome::Stored {
                sequence_gap: false,
                chain_broken: true
            },
            STORED,
        ]
    );
    assert_eq!(db.count_reports().await.unwrap(), 6);
    for (device, chain_broken) in [(&a, false), (&b, false), (&c, true)] {
        let row = db.device(&device.id).await.unwrap().expect("device");
        assert_eq!(row.last_sequence, Some(2), "{}", device.id);
        assert_eq!(row.chain_broken, chain_broken, "{}", device.id);
        assert_eq!(row.hostname, format!("{}.reported.2", device.id));
    }
}

async fn failed_batch_stores_nothing(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    let ghost = Device {
        id: "dev_ghost".to_owned(),
        key_id: "key_ghost".to_owned(),
    };
    // A report of a device that does not exist fails the whole batch, and
    // the transaction leaves no trace of the valid report before it.
    let result = db
        .store_reports(&[report(&device, 1), report(&ghost, 1)])
        .await;
    assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
    let mut huge = report(&device, 2);
    huge.sequence = u64::MAX;
    let result = db.store_reports(&[report(&device, 1), huge]).await;
    assert!(
        matches!(result, Err(StoreError::ValueOutOfRange { .. })),
        "{result:?}"
    );
    assert_eq!(db.count_reports().await.unwrap(), 0);
    let row = db.device(&device.id).await.unwrap().expect("device");
    assert_eq!(row.last_sequence, None);
    assert!(db.latest_verdicts(&device.id).await.unwrap().is_empty());
    // The store still works afterwards.
    assert_eq!(store(&db, &[report(&device, 1)]).await, [STORED]);
}

async fn envelope_comes_back_byte_for_byte(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    let mut first = report(&device, 1);
    // Not UTF-8, NUL bytes, trailing whitespace: stored as received.
    let mut bytes: Vec<u8> = (0..=255u8).collect();
    bytes.extend_from_slice(b"{\"payload\": \"x\"}\r\n \t\0\xff\xfe");
    first.envelope = bytes.clone();
    store(&db, &[first]).await;
    assert_eq!(
        db.report_envelope(&device.id, 1).await.unwrap(),
        Some(bytes)
    );
    assert_eq!(db.report_envelope(&device.id, 2).await.unwrap(), None);
    assert_eq!(db.report_envelope("dev_nope", 1).await.unwrap(), None);
    assert_eq!(
        db.report_envelope(&device.id, u64::MAX).await.unwrap(),
        None
    );
}

async fn latest_verdicts_follow_the_highest_sequence(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    let mut r1 = report(&device, 1);
    r1.verdicts = vec![
        verdict("screen_lock", CheckStatus::Pass),
        verdict("usb_storage", CheckStatus::Fail),
        verdict("password_policy", CheckStatus::Unknown),
    ];
    store(&db, std::slice::from_ref(&r1)).await;
    let latest = db.latest_verdicts(&device.id).await.unwrap();
    let rules: Vec<&str> = latest.iter().map(|v| v.rule_id.as_str()).collect();
    assert_eq!(rules, ["password_policy", "screen_lock", "usb_storage"]);
    let usb = &latest[2];
    assert_eq!(usb.status, CheckStatus::Fail);
    assert_eq!(usb.mode, "audit");
    assert_eq!(usb.summary, "usb_storage is fail");
    assert_eq!(
        usb.evidence_json,
        r#"{"rule": "usb_storage",  "spaced":  true}"#
    );
    assert_eq!(usb.fix, "fix usb_storage");
    assert_eq!(usb.status_since, r1.issued_at);
    assert_eq!(usb.updated_at, r1.received_at);
    assert_eq!(usb.report_sequence, 1);

    // Report 2: screen_lock unchanged (keeps its status_since), usb_storage
    // now passes (status_since moves), password_policy no longer reported
    // (its stale row goes).
    let mut r2 = report(&device, 2);
    r2.verdicts = vec![
        verdict("screen_lock", CheckStatus::Pass),
        verdict("usb_storage", CheckStatus::Pass),
    ];
    store(&db, std::slice::from_ref(&r2)).await;
    let latest: HashMap<String, _> = db
        .latest_verdicts(&device.id)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.rule_id.clone(), v))
        .collect();
    assert_eq!(latest.len(), 2);
    assert_eq!(latest["screen_lock"].status_since, r1.issued_at);
    assert_eq!(latest["screen_lock"].updated_at, r2.received_at);
    assert_eq!(latest["screen_lock"].report_sequence, 2);
    assert_eq!(latest["usb_storage"].status, CheckStatus::Pass);
    assert_eq!(latest["usb_storage"].status_since, r2.issued_at);

    // A batch of 3 and 4: the verdicts are 4's, but screen_lock has failed
    // since 3 however the reports were batched, and usb_storage has passed
    // since 2. A duplicate or a conflict changes nothing.
    let mut r3 = report(&device, 3);
    r3.verdicts = vec![
        verdict("screen_lock", CheckStatus::Fail),
        verdict("usb_storage", CheckStatus::Pass),
    ];
    let mut r4 = report(&device, 4);
    r4.verdicts = vec![
        verdict("screen_lock", CheckStatus::Fail),
        verdict("usb_storage", CheckStatus::Pass),
    ];
    let mut conflicting = linked_report(&device, 4, 1);
    conflicting.verdicts = vec![verdict("screen_lock", CheckStatus::Error)];
    store(&db, &[r3.clone(), r4.clone(), r2.clone(), conflicting]).await;
    let latest: HashMap<String, _> = db
        .latest_verdicts(&device.id)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.rule_id.clone(), v))
        .collect();
    assert_eq!(latest["screen_lock"].status, CheckStatus::Fail);
    assert_eq!(latest["screen_lock"].status_since, r3.issued_at);
    assert_eq!(latest["screen_lock"].report_sequence, 4);
    assert_eq!(latest["usb_storage"].status_since, r2.issued_at);
    assert_eq!(latest["usb_storage"].updated_at, r4.received_at);

    // Another device's verdicts are its own.
    let other = enrolled(&db, "b").await;
    assert!(db.latest_verdicts(&other.id).await.unwrap().is_empty());
}

async fn purge_keeps_the_latest_report_of_each_device(backend: Backend) {
    let db = fresh_store(backend).await;
    let a = enrolled(&db, "a").await;
    let b = enrolled(&db, "b").await;
    let c = enrolled(&db, "c").await;
    // Received at 1, 2, 3 minutes (+1 s) for sequences 1, 2, 3.
    store(
        &db,
        &[
            report(&a, 1),
            report(&a, 2),
            report(&a, 3),
            report(&b, 1),
            report(&c, 1),
            report(&c, 2),
        ],
    )
    .await;
    let mut late = report(&c, 3);
    late.received_at = at(10_000);
    store(&db, &[late]).await;

    // Everything received before 5000 s goes, except each device's newest.
    assert_eq!(db.purge_reports_before(at(5000)).await.unwrap(), 4);
    assert_eq!(db.count_reports().await.unwrap(), 3);
    for (device, kept) in [(&a, 3), (&b, 1), (&c, 3)] {
        for sequence in 1..=3 {
            let envelope = db.report_envelope(&device.id, sequence).await.unwrap();
            assert_eq!(
                envelope.is_some(),
                sequence == kept,
                "{} {sequence}",
                device.id
            );
        }
    }
    // Purging again deletes nothing more; the chain head is unchanged, so a
    // purged sequence sent again is below the head, not new.
    assert_eq!(db.purge_reports_before(at(5000)).await.unwrap(), 0);
    assert_eq!(
        store(&db, &[report(&a, 1)]).await,
        [StoreOutcome::Conflict(ConflictReason::SequenceBelowStored)]
    );
}

// ---------------------------------------------------------------------------
// Policy and audit.

fn new_policy(version: u64, created_at: DateTime<Utc>) -> NewPolicy {
    let text = format!("[policy]\nid = \"baseline\"\nversion = {version}\n");
    NewPolicy {
        policy_id: "baseline".to_owned(),
        policy_version: version,
        digest: hex_digest(&text),
        text,
        envelope: format!("{{\"payloadType\":\"policy\",\"v\":{version}}}").into_bytes(),
        created_at,
        created_by: "admin".to_owned(),
    }
}

async fn policy_revisions_increase(backend: Backend) {
    let db = fresh_store(backend).await;
    assert_eq!(db.current_policy().await.unwrap(), None);
    let first = db.save_policy(&new_policy(1, at(1))).await.unwrap();
    assert_eq!(db.current_policy().await.unwrap(), Some(first.clone()));
    // Saved with an older clock: the revision, not the time, says which is
    // current.
    let second = db.save_policy(&new_policy(2, at(0))).await.unwrap();
    assert!(second.revision > first.revision);
    assert_eq!(second.policy_version, 2);
    assert_eq!(second.text, new_policy(2, at(0)).text);
    assert_eq!(db.current_policy().await.unwrap(), Some(second.clone()));
    let third = db.save_policy(&new_policy(1, at(2))).await.unwrap();
    assert!(third.revision > second.revision);
    assert_eq!(db.current_policy().await.unwrap(), Some(third));
}

async fn audit_log_lists_newest_first(backend: Backend) {
    let db = fresh_store(backend).await;
    assert!(db.audit_log(10).await.unwrap().is_empty());
    let entry = |seconds: i64, action: &str| AuditEntry {
        at: at(seconds),
        actor: "admin".to_owned(),
        action: action.to_owned(),
        target: "dev_1".to_owned(),
        details_json: format!(r#"{{"n": "{action}"}}"#),
    };
    let entries = [
        entry(1, "secret.create"),
        entry(3, "policy.set"),
        entry(2, "device.revoke"),
        // The same instant as the one before: appending order decides.
        entry(2, "exception.grant"),
    ];
    for e in &entries {
        db.append_audit(e).await.unwrap();
    }
    let listed = db.audit_log(10).await.unwrap();
    let expected = vec![
        entries[1].clone(),
        entries[3].clone(),
        entries[2].clone(),
        entries[0].clone(),
    ];
    assert_eq!(listed, expected);
    assert_eq!(db.audit_log(2).await.unwrap(), expected[..2]);
    assert!(db.audit_log(0).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// Concurrency.

/// Eight writers, half of them through a second `Store` on the same database
/// (a second collector, or a second process on the SQLite file), each
/// sending every sequence of four devices in its own device order, in one of
/// two competing histories. Whatever interleaving happens: no error, each
/// (device, sequence) stored exactly once, and every report answered
/// `Stored` is the one in the database.
async fn concurrent_writers_store_each_sequence_once(backend: Backend) {
    const DEVICES: usize = 4;
    const SEQUENCES: u64 = 25;
    const WRITERS: usize = 8;

    let db = fresh_store(backend).await;
    let second = Store::open(&db.url).await.expect("second store");
    let mut devices = Vec::new();
    for n in 0..DEVICES {
        devices.push(enrolled(&db, &format!("c{n}")).await);
    }

    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = if writer % 2 == 0 {
            db.store.clone()
        } else {
            second.clone()
        };
        let devices = devices.clone();
        writers.spawn(async move {
            let variant = u32::try_from(writer % 2).expect("small");
            let mut answered = Vec::new();
            for sequence in 1..=SEQUENCES {
                let batch: Vec<IncomingReport> = (0..DEVICES)
                    .map(|k| linked_report(&devices[(writer + k) % DEVICES], sequence, variant))
                    .collect();
                let outcomes = store
                    .store_reports(&batch)
                    .await
                    .unwrap_or_else(|err| panic!("writer {writer} sequence {sequence}: {err}"));
                answered.extend(batch.into_iter().zip(outcomes));
            }
            answered
        });
    }
    let mut stored = HashSet::new();
    let mut stored_count = 0u64;
    while let Some(answered) = writers.join_next().await {
        for (report, outcome) in answered.expect("writer task") {
            if let StoreOutcome::Stored { .. } = outcome {
                stored_count += 1;
                assert!(
                    stored.insert((report.device_id.clone(), report.sequence)),
                    "{} {} answered Stored twice",
                    report.device_id,
                    report.sequence
                );
                assert_eq!(
                    db.report_envelope(&report.device_id, report.sequence)
                        .await
                        .unwrap(),
                    Some(report.envelope.clone()),
                    "the stored envelope of {} {} is the one answered Stored",
                    report.device_id,
                    report.sequence
                );
            }
        }
    }
    let expected = u64::try_from(DEVICES).expect("small") * SEQUENCES;
    assert_eq!(stored_count, expected);
    assert_eq!(db.count_reports().await.unwrap(), expected);
    for device in &devices {
        let row = db.device(&device.id).await.unwrap().expect("device");
        assert_eq!(row.last_sequence, Some(SEQUENCES));
    }
}
