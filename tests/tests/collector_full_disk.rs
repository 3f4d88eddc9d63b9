//! The SQLite collector on a disk that fills up and then gets room again:
//! while writes fail, enrollments and reports are answered with an error
//! (never a 2xx),
//! `/healthz` and `/readyz` answer 503 and the metrics count the failed
//! commits; once space returns the same process stores reports again,
//! without a restart, and is healthy again. The disk is a real 4 MiB tmpfs mounted for the test (this needs
//! root, which tests/run has), filled with a file and then emptied.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use chrono::Utc;
use palisade_tests::collector::RunningCollector;
use palisade_tests::device::SimulatedDevice;
use palisade_tests::small_disk::SmallDisk;

#[tokio::test]
async fn a_full_disk_refuses_reports_and_the_collector_recovers_when_space_returns() {
    let disk = SmallDisk::mount("4m");
    let collector = RunningCollector::start(&disk.path().join("state"), None);
    let client = collector.client();
    let secret = collector.create_secret(&[]);
    let mut device = SimulatedDevice::new("full-disk");
    let enrolled = client
        .post(format!("{}/api/v1/enroll", collector.url))
        .body(device.enroll_envelope(&secret, Utc::now()).to_json())
        .send()
        .await
        .unwrap();
    assert_eq!(enrolled.status(), 201);
    let body: serde_json::Value = enrolled.json().await.unwrap();
    device.device_id = Some(body["device_id"].as_str().unwrap().to_owned());

    let reports = format!("{}/api/v1/reports", collector.url);
    let send = async |device: &mut SimulatedDevice| {
        client
            .post(&reports)
            .body(device.next_envelope().to_json())
            .send()
            .await
            .unwrap()
            .status()
    };
    assert!(
        send(&mut device).await.is_success(),
        "before the disk fills"
    );
    let get = async |path: &str| {
        let response = client
            .get(format!("{}{path}", collector.url))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    for path in ["/healthz", "/readyz"] {
        assert_eq!(get(path).await, (200, "ok\n".to_owned()), "{path}");
    }

    let filler = disk.fill();
    // An enrollment is refused too, and makes the collector unhealthy
    // before any report has failed.
    let newcomer = SimulatedDevice::new("full-disk-newcomer");
    let refused = client
        .post(format!("{}/api/v1/enroll", collector.url))
        .body(newcomer.enroll_envelope(&secret, Utc::now()).to_json())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(refused, 503, "an enrollment on a full disk");
    assert_eq!(get("/readyz").await.0, 503, "after a failed enrollment");
    // A real agent keeps a refused report in its spool and sends it again;
    // this device simply moves on to its next sequence each time.
    for _ in 0..5 {
        let status = send(&mut device).await;
        assert!(
            !status.is_success(),
            "a report was acknowledged on a full disk: {status}"
        );
    }

    for path in ["/healthz", "/readyz"] {
        let (status, body) = get(path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(
            body.starts_with("unhealthy: the database has refused writes since "),
            "{path}: {body}"
        );
    }
    let (_, metrics) = get("/metrics").await;
    assert!(
        metrics.contains("palisade_store_write_failures_total 6"),
        "{metrics}"
    );

    // Before the fix, every write after the first failed commit failed with
    // "begin_with at non-zero transaction depth" until a restart.
    std::fs::remove_file(filler).unwrap();
    let status = send(&mut device).await;
    assert!(
        status.is_success(),
        "space is back but the report was refused: {status}\n{}",
        collector.log()
    );
    for path in ["/healthz", "/readyz"] {
        assert_eq!(get(path).await, (200, "ok\n".to_owned()), "{path}");
    }
}
