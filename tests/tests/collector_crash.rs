//! Durability: kill the collector with SIGKILL while many devices are sending
//! reports; afterwards every report that was answered with a 2xx is in the
//! database, byte for byte. Run against SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Utc;
use palisade_collector::store::Store;
use palisade_tests::collector::RunningCollector;
use palisade_tests::databases::{Backend, database_for};
use palisade_tests::device::SimulatedDevice;
use tokio::sync::{Mutex, Notify};

const DEVICES: usize = 40;
const REPORTS_PER_DEVICE: u64 = 50;
/// Kill once this many reports have been acknowledged: far enough in that
/// batches are being committed, early enough that many are still in flight.
const KILL_AFTER_ACKS: usize = 300;

/// (device id, sequence, envelope bytes) of a report answered with 2xx.
type AckedReport = (String, u64, Vec<u8>);

async fn acknowledged_reports_survive_sigkill(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database = database_for(backend, "crash");
    let mut collector = RunningCollector::start(dir.path(), database.as_deref());
    let client = collector.client();
    let secret = collector.create_secret(&[]);

    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let mut device = SimulatedDevice::new(&format!("crash-{i:03}"));
        let envelope = device.enroll_envelope(&secret, Utc::now());
        let response = client
            .post(format!("{}/api/v1/enroll", collector.url))
            .body(envelope.to_json())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        device.device_id = Some(body["device_id"].as_str().unwrap().to_owned());
        devices.push(device);
    }

    let acked: Arc<Mutex<Vec<AckedReport>>> = Arc::default();
    let ack_count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let url = format!("{}/api/v1/reports", collector.url);
    let mut senders = Vec::new();
    for mut device in devices {
        let (client, url, acked, ack_count, enough) = (
            client.clone(),
            url.clone(),
            acked.clone(),
            ack_count.clone(),
            enough.clone(),
        );
        senders.push(tokio::spawn(async move {
            for _ in 0..REPORTS_PER_DEVICE {
                let body = device.next_envelope().to_json();
                let Ok(response) = client.post(&url).body(body.clone()).send().await else {
                    return; // the collector is gone
                };
                if !response.status().is_success() {
                    return;
                }
                let device_id = device.device_id.clone().unwrap();
                acked.lock().await.push((device_id, device.sequence, body));
                if ack_count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER_ACKS {
                    enough.notify_one();
                }
            }
        }));
    }
    enough.notified().await;
    collector.kill();
    for sender in senders {
        sender.await.unwrap();
    }

    let acked = acked.lock().await;
    assert!(acked.len() >= KILL_AFTER_ACKS);
    assert!(
        acked.len() < DEVICES * REPORTS_PER_DEVICE as usize,
        "the kill came after every report was sent; the test proved nothing"
    );
    let store = Store::open(&collector.database_url).await.unwrap();
    let mut missing = Vec::new();
    for (device_id, sequence, body) in acked.iter() {
        let stored = store.report_envelope(device_id, *sequence).await.unwrap();
        if stored.as_deref() != Some(body.as_slice()) {
            missing.push(format!("{device_id}#{sequence}"));
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );

    // And the collector starts again on the same database.
    drop(store);
    let restarted = RunningCollector::start(dir.path(), database.as_deref());
    assert!(restarted.url.starts_with("https://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_reports_survive_sigkill() {
    acknowledged_reports_survive_sigkill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_reports_survive_sigkill() {
    acknowledged_reports_survive_sigkill(Backend::Postgres).await;
}
