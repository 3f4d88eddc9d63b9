//! The real agent daemon against the real collector over HTTPS: enrollment,
//! signed reports delivered and stored, and an outage survived through the
//! spool with the chain intact.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::Path;
use std::time::Duration;

use palisade_collector::store::{Store, StoreBackend as _};
use palisade_tests::agent::RunningAgent;
use palisade_tests::collector::RunningCollector;
use palisade_tests::{agent, run};

/// Deliveries go over loopback in milliseconds; a minute only ever matters
/// when something is broken.
const DEADLINE: Duration = Duration::from_secs(60);

fn write_config(dir: &Path, collector: &RunningCollector) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "collector_url = \"{}\"\nca_file = \"{}\"\nstate_dir = \"{}\"\nsocket_path = \"{}\"\ninterval_seconds = 3600\n",
            collector.url,
            collector.state_dir.join("tls/cert.pem").display(),
            dir.join("state").display(),
            dir.join("agent.sock").display(),
        ),
    )
    .unwrap();
    path
}

fn acknowledged(sequence: u64) -> impl Fn(&str) -> bool {
    move |line: &str| {
        line.contains("report acknowledged by the collector")
            && line.contains(&format!("sequence={sequence}"))
    }
}

#[test]
fn the_agent_enrolls_reports_and_survives_an_outage() {
    let collector_dir = tempfile::tempdir().unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let mut collector = RunningCollector::start(collector_dir.path(), None);
    let address = collector.address().to_owned();
    let secret = collector.create_secret(&["--uses", "1"]);
    let config = write_config(agent_dir.path(), &collector);
    let config_arg = config.to_str().unwrap();

    // Enroll; the secret is never written to the agent's state.
    let enrolled = agent(&["enroll", "--config", config_arg, "--secret", &secret]);
    assert_eq!(enrolled.exit_code, Some(0), "{}", enrolled.dump());
    assert!(
        enrolled.stdout.starts_with("enrolled as dev_"),
        "{}",
        enrolled.dump()
    );
    for entry in std::fs::read_dir(agent_dir.path().join("state")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&secret),
                "{} holds the secret",
                path.display()
            );
        }
    }
    let identity = agent(&["identity", "--config", config_arg]);
    assert!(
        identity.stdout.contains("device id:   dev_"),
        "{}",
        identity.dump()
    );

    // The daemon's first cycle is delivered and stored.
    let mut daemon = RunningAgent::start(&config);
    daemon.wait_for("report 1 acknowledged", DEADLINE, acknowledged(1));
    // The status socket serves the latest verdicts while the daemon runs.
    let status = agent(&["status", "--config", config_arg, "--json"]);
    let status_json = status.json();
    assert!(
        status_json["device_id"]
            .as_str()
            .unwrap()
            .starts_with("dev_"),
        "{}",
        status.dump()
    );
    assert_eq!(
        status_json["checks"].as_array().unwrap().len(),
        4,
        "{}",
        status.dump()
    );
    let readable = agent(&["status", "--config", config_arg]);
    assert!(
        readable.stdout.contains("disk_encryption"),
        "{}",
        readable.dump()
    );
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());

    // Collector down: the next cycle's report waits in the spool.
    assert_eq!(collector.stop(), Some(0));
    let mut daemon = RunningAgent::start(&config);
    daemon.wait_for("a failed delivery", DEADLINE, |line| {
        line.contains("cannot deliver report; will retry") && line.contains("sequence=2")
    });
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let spooled = agent(&["spool", "list", "--config", config_arg]);
    assert!(spooled.stdout.starts_with("2\t"), "{}", spooled.dump());

    // Collector back on the same address: the backlog goes first, in order.
    let collector = RunningCollector::start_on(collector_dir.path(), None, &address);
    let mut daemon = RunningAgent::start(&config);
    daemon.wait_for("report 2 acknowledged", DEADLINE, acknowledged(2));
    daemon.wait_for("report 3 acknowledged", DEADLINE, acknowledged(3));
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let empty = agent(&["spool", "list", "--config", config_arg]);
    assert!(
        empty.stdout.contains("the spool is empty"),
        "{}",
        empty.dump()
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(&collector.database_url).await.unwrap();
        assert_eq!(
            store.count_reports().await.unwrap(),
            3,
            "{}",
            collector.log()
        );
        let device_id = identity
            .stdout
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("device id:")
            .trim()
            .to_owned();
        let device = store.device(&device_id).await.unwrap().unwrap();
        assert!(!device.sequence_gap && !device.chain_broken, "{device:?}");
    });
}

#[test]
fn report_out_writes_a_signed_envelope_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("report.json");
    let state_arg = state.to_str().unwrap();
    let result = agent(&[
        "report",
        "--state-dir",
        state_arg,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        matches!(result.exit_code, Some(0 | 1 | 3)),
        "{}",
        result.dump()
    );
    let envelope =
        palisade_shared::Envelope::from_json(&std::fs::read(&out).unwrap(), 1 << 20).unwrap();
    let identity = agent(&["identity", "--state-dir", state_arg]);
    let public = identity
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("public key:"))
        .unwrap()
        .trim()
        .to_owned();
    let key = palisade_shared::envelope::verifying_key_from_base64(&public).unwrap();
    let id = palisade_shared::KeyId::of(&key);
    let verified = envelope
        .verify(palisade_shared::envelope::REPORT_PAYLOAD_TYPE, |k| {
            (k == &id).then_some(key)
        })
        .unwrap();
    let report = palisade_shared::Report::from_json(&verified.payload).unwrap();
    assert_eq!(
        report.sequence, 0,
        "a report written to a file is outside the chain"
    );
    let listed = run(
        &palisade_tests::binary("palisade-agent"),
        &["spool", "list", "--state-dir", state_arg],
        &[],
    );
    assert!(
        listed.stdout.contains("the spool is empty"),
        "report --out must not spool: {}",
        listed.dump()
    );
}
