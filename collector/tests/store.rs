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
use palisade_collector::store::chain::ConflictReason;
use palisade_collector::store::{
    AuditEntry, DeviceQuery, DeviceSort, DeviceStatus, DeviceStatusCounts, EnrollDevice,
    EnrollRefusal, Enrolled, ExceptionFilter, FleetSummary, IncomingReport, IncomingVerdict,
    NewApiToken, NewEnrollmentSecret, NewException, NewPolicy, Role, RuleFilter, Store, StoreError,
    StoreOutcome,
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
    compliance_trend_counts_each_device_by_its_last_report_of_the_day,
    migrations_are_idempotent,
    enrollment_creates_the_device_and_its_key,
    enrollment_refuses_a_wrong_secret,
    enrollment_refuses_an_unknown_secret,
    enrollment_refuses_an_expired_secret,
    enrollment_refuses_a_used_up_secret,
    enrollment_refuses_a_key_already_enrolled,
    a_repeated_enrollment_gets_its_device_back,
    enrollment_refuses_a_revoked_secret,
    an_enrollment_is_audited_with_it,
    revocation_covers_the_device_and_its_keys,
    first_report_is_stored_and_updates_the_device,
    same_report_again_is_a_duplicate,
    report_of_a_device_revoked_before_its_batch_is_not_stored,
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
    api_tokens_are_created_found_listed_and_revoked,
    device_listing_filters,
    device_listing_sorts_both_ways,
    device_listing_pages,
    device_search_matches_hostile_text_literally,
    device_detail_has_verdicts_keys_history_and_exceptions,
    exceptions_turn_a_failure_into_excepted_until_they_expire,
    exceptions_are_listed_by_device_and_activity,
    exception_for_an_unknown_device_stores_nothing,
    fleet_summary_counts_the_fleet,
    devices_by_status_adds_up_to_every_device,
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
        peer: "192.0.2.7".to_owned(),
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
    assert_eq!(outcome, Ok(Enrolled::New));
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
        console_user: None,
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
    assert_eq!(db.enroll_device(&request).await.unwrap(), Ok(Enrolled::New));

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
    assert_eq!(db.enroll_device(&request).await.unwrap(), Ok(Enrolled::New));
}

async fn enrollment_refuses_a_used_up_secret(backend: Backend) {
    let db = fresh_store(backend).await;
    db.create_enrollment_secret(&secret("sec_once", "s", Some(1), None))
        .await
        .unwrap();
    let first = enrollment("sec_once", "s", "dev_1", "key_1");
    assert_eq!(db.enroll_device(&first).await.unwrap(), Ok(Enrolled::New));
    let second = enrollment("sec_once", "s", "dev_2", "key_2");
    assert_eq!(
        db.enroll_device(&second).await.unwrap(),
        Err(EnrollRefusal::SecretUsedUp)
    );
    assert_eq!(secret_uses(&db, "sec_once").await, 1);
    assert_nothing_enrolled(&db, &second).await;
}

async fn enrollment_refuses_a_revoked_secret(backend: Backend) {
    let db = fresh_store(backend).await;
    db.create_enrollment_secret(&secret("sec_a", "s", Some(5), None))
        .await
        .unwrap();
    let first = enrollment("sec_a", "s", "dev_1", "key_1");
    assert_eq!(db.enroll_device(&first).await.unwrap(), Ok(Enrolled::New));
    assert!(db.revoke_enrollment_secret("sec_a", at(20)).await.unwrap());
    // Again: the first time is kept.
    assert!(db.revoke_enrollment_secret("sec_a", at(30)).await.unwrap());
    assert!(
        !db.revoke_enrollment_secret("sec_nope", at(30))
            .await
            .unwrap()
    );
    let info = db.enrollment_secret("sec_a").await.unwrap().expect("kept");
    assert_eq!(info.revoked_at, Some(at(20)));
    assert_eq!(info.state(at(40)).as_str(), "revoked");
    assert_eq!(db.list_enrollment_secrets().await.unwrap()[0], info);
    assert_eq!(db.enrollment_secret("sec_nope").await.unwrap(), None);

    let second = enrollment("sec_a", "s", "dev_2", "key_2");
    assert_eq!(
        db.enroll_device(&second).await.unwrap(),
        Err(EnrollRefusal::SecretRevoked)
    );
    // A wrong random part is still that, revoked or not.
    let wrong = enrollment("sec_a", "not s", "dev_2", "key_2");
    assert_eq!(
        db.enroll_device(&wrong).await.unwrap(),
        Err(EnrollRefusal::WrongSecret)
    );
    assert_eq!(secret_uses(&db, "sec_a").await, 1);
    assert_nothing_enrolled(&db, &second).await;
    // What it enrolled stays enrolled.
    let device = db.device("dev_1").await.unwrap().expect("still there");
    assert_eq!(device.revoked_at, None);
}

async fn an_enrollment_is_audited_with_it(backend: Backend) {
    let db = fresh_store(backend).await;
    db.create_enrollment_secret(&secret("sec_a", "s", None, None))
        .await
        .unwrap();
    assert_eq!(
        db.enroll_device(&enrollment("sec_a", "s", "dev_1", "key_1"))
            .await
            .unwrap(),
        Ok(Enrolled::New)
    );
    let refused = enrollment("sec_a", "wrong", "dev_2", "key_2");
    assert!(db.enroll_device(&refused).await.unwrap().is_err());
    let log = db.audit_log(10).await.unwrap();
    assert_eq!(
        log.len(),
        1,
        "a refusal writes nothing in the store: {log:?}"
    );
    assert_eq!(log[0].action, "device.enroll");
    assert_eq!(log[0].actor, "secret:sec_a");
    assert_eq!(log[0].target, "dev_1");
    let details: serde_json::Value = serde_json::from_str(&log[0].details_json).unwrap();
    assert_eq!(details["secret_id"], "sec_a");
    assert_eq!(details["hostname"], "dev_1.enrolled");
    assert_eq!(details["peer"], "192.0.2.7");
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
        Ok(Enrolled::New)
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

async fn a_repeated_enrollment_gets_its_device_back(backend: Backend) {
    let db = fresh_store(backend).await;
    // Single use: the retry must not be refused as "used up" by its own
    // first, lost, success.
    db.create_enrollment_secret(&secret("sec_a", "a", Some(1), None))
        .await
        .unwrap();
    let first = enrollment("sec_a", "a", "dev_1", "key_1");
    assert_eq!(db.enroll_device(&first).await.unwrap(), Ok(Enrolled::New));
    // The agent retries with the same key and secret; the handler proposes
    // a fresh device id each time.
    let retry = enrollment("sec_a", "a", "dev_2", "key_1");
    assert_eq!(
        db.enroll_device(&retry).await.unwrap(),
        Ok(Enrolled::Existing {
            device_id: "dev_1".to_owned()
        })
    );
    assert_eq!(secret_uses(&db, "sec_a").await, 1, "no second use counted");
    assert_eq!(db.device("dev_2").await.unwrap(), None);
    let log = db.audit_log(10).await.unwrap();
    assert_eq!(log[0].action, "device.enroll_repeated", "{log:?}");
    assert_eq!(log[0].target, "dev_1");

    // The right key with a wrong secret is still refused.
    let wrong = enrollment("sec_a", "not-a", "dev_3", "key_1");
    assert_eq!(
        db.enroll_device(&wrong).await.unwrap(),
        Err(EnrollRefusal::WrongSecret)
    );
    // Once the device is revoked, its key enrolls no more.
    assert!(db.revoke_device("dev_1", at(900)).await.unwrap());
    assert_eq!(
        db.enroll_device(&retry).await.unwrap(),
        Err(EnrollRefusal::KeyAlreadyEnrolled)
    );
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

/// Ingest checks the key before batching; a revoke that commits in between
/// is seen inside the batch's transaction, and only that device's report is
/// refused.
async fn report_of_a_device_revoked_before_its_batch_is_not_stored(backend: Backend) {
    let db = fresh_store(backend).await;
    let revoked = enrolled(&db, "a").await;
    let other = enrolled(&db, "b").await;
    assert!(db.revoke_device(&revoked.id, at(500)).await.unwrap());
    assert_eq!(
        store(&db, &[report(&revoked, 1), report(&other, 1)]).await,
        [StoreOutcome::Revoked, STORED]
    );
    assert_eq!(db.count_reports().await.unwrap(), 1);
    assert_eq!(db.report_envelope(&revoked.id, 1).await.unwrap(), None);
    let device = db.device(&revoked.id).await.unwrap().expect("device");
    assert_eq!(device.last_sequence, None);
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

/// The overview's trend: per UTC day, the devices that reported and those
/// whose *last* report that day had no failing check, whatever order the
/// reports arrive in (a spooled backlog arrives late and in batches).
async fn compliance_trend_counts_each_device_by_its_last_report_of_the_day(backend: Backend) {
    let db = fresh_store(backend).await;
    let a = enrolled(&db, "a").await;
    let b = enrolled(&db, "b").await;
    // Midnight UTC of a day after `at(0)`.
    let midnight = (1_750_000_000 / 86_400 + 1) * 86_400;
    let day = |n: i64| DateTime::from_timestamp(midnight + n * 86_400, 0).expect("in range");
    let with = |device: &Device, sequence: u64, issued: DateTime<Utc>, fail: bool| {
        let mut r = report(device, sequence);
        r.issued_at = issued;
        r.received_at = issued;
        r.verdicts = vec![verdict(
            "disk_encryption",
            if fail {
                CheckStatus::Fail
            } else {
                CheckStatus::Pass
            },
        )];
        r
    };
    // Day 0: a fails in the morning and passes by evening; b fails.
    // Day 1: a fails; b passes, in two batches.
    store(
        &db,
        &[with(&a, 1, day(0) + chrono::TimeDelta::hours(8), true)],
    )
    .await;
    store(
        &db,
        &[
            with(&a, 2, day(0) + chrono::TimeDelta::hours(18), false),
            with(&b, 1, day(0) + chrono::TimeDelta::hours(9), true),
        ],
    )
    .await;
    store(
        &db,
        &[with(&a, 3, day(1) + chrono::TimeDelta::hours(8), true)],
    )
    .await;
    store(
        &db,
        &[with(&b, 2, day(1) + chrono::TimeDelta::hours(8), false)],
    )
    .await;

    let trend = db
        .compliance_trend(day(0), day(1) + chrono::TimeDelta::hours(23))
        .await
        .unwrap();
    let rows: Vec<(i64, u64, u64)> = trend
        .iter()
        .map(|d| {
            (
                (d.day - day(0).date_naive()).num_days(),
                d.reporting,
                d.compliant,
            )
        })
        .collect();
    assert_eq!(rows, [(0, 2, 1), (1, 2, 1)]);
    // A day outside the range is left out.
    let first_only = db
        .compliance_trend(day(0), day(0) + chrono::TimeDelta::hours(23))
        .await
        .unwrap();
    assert_eq!(first_only.len(), 1);

    // Retention takes the rollup's whole days before the cutoff's day with
    // the reports they were made from; the cutoff's own day stays.
    db.purge_reports_before(day(1) + chrono::TimeDelta::hours(12))
        .await
        .unwrap();
    let after_purge = db
        .compliance_trend(day(0), day(1) + chrono::TimeDelta::hours(23))
        .await
        .unwrap();
    let days: Vec<i64> = after_purge
        .iter()
        .map(|d| (d.day - day(0).date_naive()).num_days())
        .collect();
    assert_eq!(days, [1]);
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

// ---------------------------------------------------------------------------
// API tokens.

async fn api_tokens_are_created_found_listed_and_revoked(backend: Backend) {
    let db = fresh_store(backend).await;
    assert_eq!(db.api_token("0123456789abcdef").await.unwrap(), None);
    let admin = NewApiToken {
        id: "0123456789abcdef".to_owned(),
        token_hash: sha256("admin random"),
        role: Role::Admin,
        label: "ci pipeline".to_owned(),
        created_at: at(1),
    };
    let viewer = NewApiToken {
        id: "fedcba9876543210".to_owned(),
        token_hash: sha256("viewer random"),
        role: Role::Viewer,
        label: String::new(),
        created_at: at(2),
    };
    db.create_api_token(&admin).await.unwrap();
    db.create_api_token(&viewer).await.unwrap();
    // The same id twice is refused by the primary key.
    assert!(db.create_api_token(&admin).await.is_err());

    let stored = db.api_token(&admin.id).await.unwrap().expect("stored");
    assert_eq!(stored.info.role, Role::Admin);
    assert_eq!(stored.info.label, "ci pipeline");
    assert_eq!(stored.info.created_at, at(1));
    assert_eq!(stored.info.revoked_at, None);
    assert!(stored.hash_matches(&sha256("admin random")));
    assert!(!stored.hash_matches(&sha256("viewer random")));

    let listed = db.list_api_tokens().await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [viewer.id.as_str(), admin.id.as_str()], "newest first");
    assert_eq!(listed[0].role, Role::Viewer);

    assert!(db.revoke_api_token(&admin.id, at(50)).await.unwrap());
    assert!(db.revoke_api_token(&admin.id, at(90)).await.unwrap());
    let revoked = db.api_token(&admin.id).await.unwrap().expect("still there");
    assert_eq!(
        revoked.info.revoked_at,
        Some(at(50)),
        "the first time stays"
    );
    assert_eq!(
        db.api_token(&viewer.id)
            .await
            .unwrap()
            .expect("viewer")
            .info
            .revoked_at,
        None
    );
    assert!(
        !db.revoke_api_token("0000000000000000", at(50))
            .await
            .unwrap()
    );
}

// ---------------------------------------------------------------------------
// The fleet: listing, detail, summary, exceptions.

/// Enrolls `name` (device `dev_<name>`) as `hostname` at `at(enrolled)`.
async fn enrolled_as(store: &Store, name: &str, hostname: &str, enrolled: i64) -> Device {
    let secret_id = format!("sec_{name}");
    store
        .create_enrollment_secret(&secret(&secret_id, name, None, None))
        .await
        .expect("create secret");
    let device = Device {
        id: format!("dev_{name}"),
        key_id: format!("key_{name}"),
    };
    let mut request = enrollment(&secret_id, name, &device.id, &device.key_id);
    request.hostname = hostname.to_owned();
    request.at = at(enrolled);
    assert_eq!(
        store.enroll_device(&request).await.expect("enroll"),
        Ok(Enrolled::New)
    );
    device
}

/// Report 1 of `device` as `hostname` on `os_name`, received at `at(received)`.
async fn reports_once(
    store: &Store,
    device: &Device,
    hostname: &str,
    os_name: &str,
    verdicts: &[(&str, CheckStatus)],
    received: i64,
) {
    let mut first = report(device, 1);
    first.hostname = hostname.to_owned();
    first.os_name = os_name.to_owned();
    first.os_version = "12".to_owned();
    first.issued_at = at(received - 1);
    first.received_at = at(received);
    first.verdicts = verdicts.iter().map(|(r, s)| verdict(r, *s)).collect();
    assert_eq!(self::store(store, &[first]).await, [STORED]);
}

const DEBIAN: &str = "Debian GNU/Linux";

/// Five devices:
/// - alpha: Debian, all pass, seen at 100 → pass
/// - bravo: Ubuntu, screen_lock fails, seen at 200 → fail
/// - charlie: Debian, screen_lock unknown, seen at 300 → unknown
/// - delta: Debian (as enrolled), never reported → unknown
/// - echo: Fedora, usb_storage error, seen at 400, revoked → unknown
///
/// Enrolled at 1 to 5 seconds in reverse alphabetical order.
async fn five_devices(db: &Store) -> [Device; 5] {
    let alpha = enrolled_as(db, "a", "Alpha", 5).await;
    let bravo = enrolled_as(db, "b", "bravo", 4).await;
    let charlie = enrolled_as(db, "c", "charlie", 3).await;
    let delta = enrolled_as(db, "d", "delta", 2).await;
    let echo = enrolled_as(db, "e", "echo", 1).await;
    use CheckStatus::{Error, Fail, Pass, Unknown};
    reports_once(
        db,
        &alpha,
        "Alpha",
        DEBIAN,
        &[("screen_lock", Pass), ("disk_encryption", Pass)],
        100,
    )
    .await;
    reports_once(
        db,
        &bravo,
        "bravo",
        "Ubuntu",
        &[("screen_lock", Fail), ("disk_encryption", Pass)],
        200,
    )
    .await;
    reports_once(
        db,
        &charlie,
        "charlie",
        DEBIAN,
        &[("screen_lock", Unknown), ("disk_encryption", Pass)],
        300,
    )
    .await;
    reports_once(
        db,
        &echo,
        "echo",
        "Fedora",
        &[("screen_lock", Pass), ("usb_storage", Error)],
        400,
    )
    .await;
    assert!(db.revoke_device(&echo.id, at(450)).await.unwrap());
    [alpha, bravo, charlie, delta, echo]
}

/// The hostnames of the devices `query` lists, in order.
async fn hostnames(db: &Store, query: &DeviceQuery) -> Vec<String> {
    let page = db
        .list_devices(query)
        .await
        .unwrap_or_else(|err| panic!("list_devices {query:?}: {err}"));
    page.devices
        .into_iter()
        .map(|d| d.device.hostname)
        .collect()
}

async fn device_listing_filters(backend: Backend) {
    let db = fresh_store(backend).await;
    five_devices(&db).await;
    let base = DeviceQuery::new(at(1000));
    let with = |change: &dyn Fn(&mut DeviceQuery)| {
        let mut query = base.clone();
        change(&mut query);
        query
    };
    let cases: Vec<(&str, DeviceQuery, &[&str])> = vec![
        (
            "all",
            base.clone(),
            &["Alpha", "bravo", "charlie", "delta", "echo"],
        ),
        (
            "pass",
            with(&|q| q.status = Some(DeviceStatus::Pass)),
            &["Alpha"],
        ),
        (
            "fail",
            with(&|q| q.status = Some(DeviceStatus::Fail)),
            &["bravo"],
        ),
        (
            "unknown (no verdicts, unknown, error)",
            with(&|q| q.status = Some(DeviceStatus::Unknown)),
            &["charlie", "delta", "echo"],
        ),
        (
            "has a screen_lock verdict",
            with(&|q| {
                q.rule = Some(RuleFilter {
                    rule_id: "screen_lock".into(),
                    status: None,
                })
            }),
            &["Alpha", "bravo", "charlie", "echo"],
        ),
        (
            "fails screen_lock",
            with(&|q| {
                q.rule = Some(RuleFilter {
                    rule_id: "screen_lock".into(),
                    status: Some(CheckStatus::Fail),
                })
            }),
            &["bravo"],
        ),
        (
            "usb_storage error",
            with(&|q| {
                q.rule = Some(RuleFilter {
                    rule_id: "usb_storage".into(),
                    status: Some(CheckStatus::Error),
                })
            }),
            &["echo"],
        ),
        (
            "os",
            with(&|q| q.os = Some(DEBIAN.into())),
            &["Alpha", "charlie", "delta"],
        ),
        ("os is exact", with(&|q| q.os = Some("debian".into())), &[]),
        (
            "stale: seen (or enrolled) before 200",
            with(&|q| q.stale_before = Some(at(200))),
            &["Alpha", "delta"],
        ),
        (
            "seen since 200",
            with(&|q| q.seen_since = Some(at(200))),
            &["bravo", "charlie", "echo"],
        ),
        ("revoked", with(&|q| q.revoked = Some(true)), &["echo"]),
        (
            "active",
            with(&|q| q.revoked = Some(false)),
            &["Alpha", "bravo", "charlie", "delta"],
        ),
        (
            "filters combine",
            with(&|q| {
                q.status = Some(DeviceStatus::Unknown);
                q.os = Some(DEBIAN.into());
                q.revoked = Some(false);
            }),
            &["charlie", "delta"],
        ),
    ];
    for (what, query, expected) in cases {
        assert_eq!(hostnames(&db, &query).await, expected, "{what}");
        let page = db.list_devices(&query).await.unwrap();
        assert_eq!(page.total, expected.len() as u64, "{what}: total");
    }

    // Each listing carries the device's statuses.
    let page = db.list_devices(&base).await.unwrap();
    let bravo = &page.devices[1];
    assert_eq!(bravo.status, DeviceStatus::Fail);
    assert_eq!(
        bravo.rules,
        [
            ("disk_encryption".to_owned(), CheckStatus::Pass),
            ("screen_lock".to_owned(), CheckStatus::Fail)
        ]
    );
    assert_eq!(bravo.device.os_name, "Ubuntu");
    assert_eq!(bravo.device.last_seen_at, Some(at(200)));
    let delta = &page.devices[3];
    assert_eq!(delta.status, DeviceStatus::Unknown);
    assert!(delta.rules.is_empty());
    assert!(page.devices[4].device.revoked_at.is_some());
}

async fn device_listing_sorts_both_ways(backend: Backend) {
    let db = fresh_store(backend).await;
    five_devices(&db).await;
    let cases: [(DeviceSort, [&str; 5]); 5] = [
        // Case-insensitive: "Alpha" before "bravo".
        (
            DeviceSort::Hostname,
            ["Alpha", "bravo", "charlie", "delta", "echo"],
        ),
        // Never seen counts as oldest.
        (
            DeviceSort::LastSeen,
            ["delta", "Alpha", "bravo", "charlie", "echo"],
        ),
        (
            DeviceSort::Os,
            ["Alpha", "charlie", "delta", "echo", "bravo"],
        ),
        // pass, unknown, fail; then by hostname.
        (
            DeviceSort::Status,
            ["Alpha", "charlie", "delta", "echo", "bravo"],
        ),
        (
            DeviceSort::EnrolledAt,
            ["echo", "delta", "charlie", "bravo", "Alpha"],
        ),
    ];
    for (sort, ascending) in cases {
        let mut query = DeviceQuery::new(at(1000));
        query.sort = sort;
        assert_eq!(hostnames(&db, &query).await, ascending, "{sort:?}");
        query.descending = true;
        let mut descending = ascending;
        descending.reverse();
        assert_eq!(
            hostnames(&db, &query).await,
            descending,
            "{sort:?} descending"
        );
    }
}

async fn device_listing_pages(backend: Backend) {
    let db = fresh_store(backend).await;
    five_devices(&db).await;
    let mut query = DeviceQuery::new(at(1000));
    query.per_page = 2;
    let expected: [&[&str]; 4] = [&["Alpha", "bravo"], &["charlie", "delta"], &["echo"], &[]];
    for (index, names) in expected.iter().enumerate() {
        query.page = u32::try_from(index).unwrap() + 1;
        let page = db.list_devices(&query).await.unwrap();
        assert_eq!(page.total, 5, "page {}", query.page);
        let listed: Vec<&str> = page
            .devices
            .iter()
            .map(|d| d.device.hostname.as_str())
            .collect();
        assert_eq!(listed, *names, "page {}", query.page);
    }
    // Paging holds with filters and another order.
    query.status = Some(DeviceStatus::Unknown);
    query.sort = DeviceSort::LastSeen;
    query.descending = true;
    query.page = 2;
    let page = db.list_devices(&query).await.unwrap();
    assert_eq!(page.total, 3);
    let listed: Vec<&str> = page
        .devices
        .iter()
        .map(|d| d.device.hostname.as_str())
        .collect();
    assert_eq!(listed, ["delta"]);
    // The store clamps what the API layer should already have refused.
    query = DeviceQuery::new(at(1000));
    query.page = 0;
    query.per_page = 0;
    assert_eq!(hostnames(&db, &query).await, ["Alpha"]);
}

async fn device_search_matches_hostile_text_literally(backend: Backend) {
    let db = fresh_store(backend).await;
    let names = &EVERY_SEARCH_HOSTNAME[..7];
    for (index, hostname) in names.iter().enumerate() {
        enrolled_as(&db, &format!("s{index}"), hostname, 1).await;
    }
    let fedora = enrolled_as(&db, "f", "workstation", 1).await;
    reports_once(&db, &fedora, "workstation", "Fedora Linux", &[], 50).await;

    let cases: [(&str, &[&str]); 12] = [
        ("%", &["ward-7%laptop"]),
        ("_", &["ward_7"]),
        ("ward", &["ward-7%laptop", "ward_7", "WARD7"]),
        ("Ward_", &["ward_7"]),
        ("' OR 1=1 --", &[]),
        ("' OR '1'='1", &[]),
        ("'", &["o'brien-pc"]),
        ("<script>", &["<script>alert(1)</script>"]),
        ("\\", &["back\\slash"]),
        ("k\\s", &["back\\slash"]),
        ("FEDORA", &["workstation"]),
        ("", &EVERY_SEARCH_HOSTNAME),
    ];
    for (search, expected) in cases {
        let mut query = DeviceQuery::new(at(1000));
        query.search = Some(search.to_owned());
        query.per_page = 50;
        let mut found = hostnames(&db, &query).await;
        found.sort();
        let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        expected.sort();
        assert_eq!(found, expected, "search {search:?}");
    }
    // Nothing was harmed.
    assert_eq!(
        db.list_devices(&DeviceQuery::new(at(1000)))
            .await
            .unwrap()
            .total,
        8
    );
}

/// The hostnames of the search test: seven enrolled, then one reported from
/// Fedora.
const EVERY_SEARCH_HOSTNAME: [&str; 8] = [
    "ward-7%laptop",
    "ward_7",
    "WARD7",
    "o'brien-pc",
    "<script>alert(1)</script>",
    "back\\slash",
    "plain",
    "workstation",
];

async fn device_detail_has_verdicts_keys_history_and_exceptions(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    let other = enrolled(&db, "b").await;
    assert_eq!(db.device_detail("dev_nope", at(0), 10).await.unwrap(), None);

    // Before any report: no verdicts, no history, unknown.
    let empty = db
        .device_detail(&device.id, at(100), 10)
        .await
        .unwrap()
        .expect("detail");
    assert_eq!(empty.status, DeviceStatus::Unknown);
    assert!(empty.verdicts.is_empty() && empty.reports.is_empty());
    assert_eq!(empty.keys.len(), 1);
    assert_eq!(empty.keys[0].key_id, device.key_id);
    assert_eq!(empty.keys[0].created_at, at(10));

    // Reports 1, 2 and 4: a gap before 4.
    let r1 = report(&device, 1);
    let r2 = report(&device, 2);
    let mut r4 = report(&device, 4);
    r4.verdicts = vec![
        verdict("disk_encryption", CheckStatus::Fail),
        verdict("screen_lock", CheckStatus::Fail),
        verdict("usb_storage", CheckStatus::Pass),
    ];
    store(&db, &[r1.clone(), r2.clone()]).await;
    store(&db, std::slice::from_ref(&r4)).await;
    store(&db, &[report(&other, 1)]).await;
    let exception = db
        .grant_exception(&NewException {
            device_id: device.id.clone(),
            rule_id: "disk_encryption".to_owned(),
            until: at(5000),
            reason: "replacement laptop on order".to_owned(),
            approver: "Dr Jones".to_owned(),
            created_at: at(300),
        })
        .await
        .unwrap()
        .expect("device exists");

    let detail = db
        .device_detail(&device.id, at(400), 10)
        .await
        .unwrap()
        .expect("detail");
    assert_eq!(detail.device.device_id, device.id);
    assert!(detail.device.sequence_gap);
    assert!(!detail.device.chain_broken);
    assert_eq!(detail.status, DeviceStatus::Fail, "screen_lock still fails");
    let history: Vec<(u64, bool)> = detail
        .reports
        .iter()
        .map(|r| (r.sequence, r.sequence_gap))
        .collect();
    assert_eq!(history, [(4, true), (2, false), (1, false)]);
    assert_eq!(detail.reports[0].digest, r4.digest);
    assert_eq!(detail.reports[0].prev_digest, r4.prev_digest);
    assert_eq!(detail.reports[0].issued_at, r4.issued_at);
    assert_eq!(detail.reports[0].received_at, r4.received_at);
    assert_eq!(detail.reports[1].digest, r2.digest);
    let summary: serde_json::Value = serde_json::from_str(&detail.reports[0].summary_json).unwrap();
    assert_eq!(summary["fail"], 2, "{summary}");

    let rules: Vec<(&str, CheckStatus, CheckStatus, Option<u64>)> = detail
        .verdicts
        .iter()
        .map(|v| {
            (
                v.verdict.rule_id.as_str(),
                v.verdict.status,
                v.status,
                v.exception_id,
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            (
                "disk_encryption",
                CheckStatus::Fail,
                CheckStatus::Excepted,
                Some(exception.id)
            ),
            ("screen_lock", CheckStatus::Fail, CheckStatus::Fail, None),
            ("usb_storage", CheckStatus::Pass, CheckStatus::Pass, None),
        ]
    );
    let disk = &detail.verdicts[0].verdict;
    assert_eq!(disk.summary, "disk_encryption is fail");
    assert_eq!(
        disk.evidence_json,
        r#"{"rule": "disk_encryption",  "spaced":  true}"#
    );
    assert_eq!(disk.fix, "fix disk_encryption");
    assert_eq!(disk.status_since, r1.issued_at);
    assert_eq!(detail.exceptions, std::slice::from_ref(&exception));

    // History is limited to the newest N; the exception is gone once expired.
    let later = db
        .device_detail(&device.id, at(5000), 2)
        .await
        .unwrap()
        .expect("detail");
    let history: Vec<u64> = later.reports.iter().map(|r| r.sequence).collect();
    assert_eq!(history, [4, 2]);
    assert!(later.exceptions.is_empty());
    assert_eq!(later.verdicts[0].status, CheckStatus::Fail);
    assert_eq!(later.verdicts[0].exception_id, None);

    // Revocation shows on the device and its key.
    db.revoke_device(&device.id, at(6000)).await.unwrap();
    let revoked = db
        .device_detail(&device.id, at(6000), 2)
        .await
        .unwrap()
        .expect("detail");
    assert_eq!(revoked.device.revoked_at, Some(at(6000)));
    assert_eq!(revoked.keys[0].revoked_at, Some(at(6000)));
}

/// The device's status as every view reports it at `when`: listing, detail,
/// summary and metrics must agree.
async fn status_everywhere(db: &Store, device: &Device, when: DateTime<Utc>) -> DeviceStatus {
    let mut query = DeviceQuery::new(when);
    query.search = Some(format!("{}.", device.id));
    let page = db.list_devices(&query).await.unwrap();
    assert_eq!(page.devices.len(), 1);
    let listed = page.devices[0].status;
    let detail = db
        .device_detail(&device.id, when, 5)
        .await
        .unwrap()
        .expect("detail");
    assert_eq!(listed, detail.status, "listing and detail agree at {when}");
    for (rule, status) in &page.devices[0].rules {
        let verdict = detail
            .verdicts
            .iter()
            .find(|v| &v.verdict.rule_id == rule)
            .expect("same rules");
        assert_eq!(*status, verdict.status, "{rule} at {when}");
    }
    listed
}

async fn exceptions_turn_a_failure_into_excepted_until_they_expire(backend: Backend) {
    let db = fresh_store(backend).await;
    let device = enrolled(&db, "a").await;
    let other = enrolled(&db, "b").await;
    // Both fail disk_encryption and pass screen_lock (the report helper).
    store(&db, &[report(&device, 1), report(&other, 1)]).await;
    let grant = |rule: &str, device: &Device, until: i64| NewException {
        device_id: device.id.clone(),
        rule_id: rule.to_owned(),
        until: at(until),
        reason: "clinical trial kit".to_owned(),
        approver: "IT security".to_owned(),
        created_at: at(100),
    };
    db.grant_exception(&grant("disk_encryption", &device, 1000))
        .await
        .unwrap()
        .expect("granted");
    // An exception on a rule that passes changes nothing.
    db.grant_exception(&grant("screen_lock", &other, 1000))
        .await
        .unwrap()
        .expect("granted");

    let before = at(999);
    assert_eq!(
        status_everywhere(&db, &device, before).await,
        DeviceStatus::Pass
    );
    assert_eq!(
        status_everywhere(&db, &other, before).await,
        DeviceStatus::Fail
    );
    let summary = db
        .fleet_summary(before, chrono::TimeDelta::days(365))
        .await
        .unwrap();
    assert_eq!((summary.compliant, summary.failing), (1, 1));
    assert_eq!(summary.failing_by_rule, [("disk_encryption".to_owned(), 1)]);
    let counts = db.devices_by_status(before).await.unwrap();
    assert_eq!((counts.pass, counts.fail), (1, 1));
    let mut excepted = DeviceQuery::new(before);
    excepted.rule = Some(RuleFilter {
        rule_id: "disk_encryption".into(),
        status: Some(CheckStatus::Excepted),
    });
    assert_eq!(
        hostnames(&db, &excepted).await,
        [format!("{}.reported.1", device.id)]
    );
    // The stored verdict is still the one the device signed.
    let stored = db.latest_verdicts(&device.id).await.unwrap();
    assert_eq!(stored[0].status, CheckStatus::Fail);

    // At `until` it has expired: the failure shows again everywhere.
    let after = at(1000);
    assert_eq!(
        status_everywhere(&db, &device, after).await,
        DeviceStatus::Fail
    );
    let summary = db
        .fleet_summary(after, chrono::TimeDelta::days(365))
        .await
        .unwrap();
    assert_eq!((summary.compliant, summary.failing), (0, 2));
    assert_eq!(summary.failing_by_rule, [("disk_encryption".to_owned(), 2)]);
    assert_eq!(db.devices_by_status(after).await.unwrap().fail, 2);
    excepted.at = after;
    assert!(hostnames(&db, &excepted).await.is_empty());
}

async fn exceptions_are_listed_by_device_and_activity(backend: Backend) {
    let db = fresh_store(backend).await;
    let a = enrolled(&db, "a").await;
    let b = enrolled(&db, "b").await;
    assert!(
        db.list_exceptions(&ExceptionFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let mut granted = Vec::new();
    for (device, rule, until, created) in [
        (&a, "disk_encryption", 500, 10),
        (&a, "usb_storage", 2000, 20),
        (&b, "disk_encryption", 2000, 30),
    ] {
        granted.push(
            db.grant_exception(&NewException {
                device_id: device.id.clone(),
                rule_id: rule.to_owned(),
                until: at(until),
                reason: format!("reason for {rule}"),
                approver: "approver".to_owned(),
                created_at: at(created),
            })
            .await
            .unwrap()
            .expect("granted"),
        );
    }
    assert!(granted[1].id > granted[0].id && granted[2].id > granted[1].id);
    assert_eq!(granted[0].reason, "reason for disk_encryption");
    assert!(granted[0].is_active(at(499)) && !granted[0].is_active(at(500)));

    let ids = |list: Vec<palisade_collector::store::ExceptionRecord>| -> Vec<u64> {
        list.into_iter().map(|e| e.id).collect()
    };
    let all = db
        .list_exceptions(&ExceptionFilter::default())
        .await
        .unwrap();
    assert_eq!(all[2], granted[0], "listed as stored");
    assert_eq!(
        ids(all),
        [granted[2].id, granted[1].id, granted[0].id],
        "newest first"
    );
    let of_a = ExceptionFilter {
        device_id: Some(a.id.clone()),
        active_at: None,
    };
    assert_eq!(
        ids(db.list_exceptions(&of_a).await.unwrap()),
        [granted[1].id, granted[0].id]
    );
    let active = ExceptionFilter {
        device_id: None,
        active_at: Some(at(1000)),
    };
    assert_eq!(
        ids(db.list_exceptions(&active).await.unwrap()),
        [granted[2].id, granted[1].id]
    );
    let active_of_a = ExceptionFilter {
        device_id: Some(a.id.clone()),
        active_at: Some(at(1000)),
    };
    assert_eq!(
        ids(db.list_exceptions(&active_of_a).await.unwrap()),
        [granted[1].id]
    );
}

async fn exception_for_an_unknown_device_stores_nothing(backend: Backend) {
    let db = fresh_store(backend).await;
    let refused = db
        .grant_exception(&NewException {
            device_id: "dev_nope".to_owned(),
            rule_id: "disk_encryption".to_owned(),
            until: at(100),
            reason: "r".to_owned(),
            approver: "a".to_owned(),
            created_at: at(1),
        })
        .await
        .unwrap();
    assert_eq!(refused, None);
    assert!(
        db.list_exceptions(&ExceptionFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn fleet_summary_counts_the_fleet(backend: Backend) {
    let db = fresh_store(backend).await;
    assert_eq!(
        db.fleet_summary(at(0), chrono::TimeDelta::hours(1))
            .await
            .unwrap(),
        FleetSummary::default()
    );
    five_devices(&db).await;
    // Stale: not seen within 800 s of 1000, i.e. before 200 (bravo, seen at
    // exactly 200, is not); delta counts from its enrollment.
    let summary = db
        .fleet_summary(at(1000), chrono::TimeDelta::seconds(800))
        .await
        .unwrap();
    assert_eq!(
        summary,
        FleetSummary {
            devices: 4,
            compliant: 1,
            failing: 1,
            unknown: 2,
            stale: 2,
            revoked: 1,
            failing_by_rule: vec![("screen_lock".to_owned(), 1)],
        }
    );
}

async fn devices_by_status_adds_up_to_every_device(backend: Backend) {
    let db = fresh_store(backend).await;
    assert_eq!(
        db.devices_by_status(at(0)).await.unwrap(),
        DeviceStatusCounts::default()
    );
    five_devices(&db).await;
    assert_eq!(
        db.devices_by_status(at(1000)).await.unwrap(),
        DeviceStatusCounts {
            pass: 1,
            fail: 1,
            unknown: 2,
            revoked: 1
        }
    );
}
