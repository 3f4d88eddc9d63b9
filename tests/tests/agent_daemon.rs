//! The real agent daemon against the real collector over HTTPS: enrollment,
//! signed reports delivered and stored, an outage survived through the
//! spool with the chain intact, and an outage longer than the spool holds,
//! whose losses the collector is told about.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::Path;
use std::time::Duration;

use palisade_collector::store::Store;
use palisade_tests::agent::{self as agent_harness, RunningAgent};
use palisade_tests::collector::RunningCollector;
use palisade_tests::{agent, run};

/// Deliveries go over loopback in milliseconds; a minute only ever matters
/// when something is broken.
const DEADLINE: Duration = Duration::from_secs(60);

fn write_config(dir: &Path, collector: &RunningCollector) -> std::path::PathBuf {
    agent_harness::write_config(dir, collector, "")
}

/// `write_config` with more keys appended.
fn write_config_with(dir: &Path, collector: &RunningCollector, extra: &str) -> std::path::PathBuf {
    agent_harness::write_config(dir, collector, extra)
}

/// The device id `palisade-agent identity` prints.
fn device_id(config: &str) -> String {
    let identity = agent(&["identity", "--config", config]);
    identity
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("device id:"))
        .unwrap_or_else(|| panic!("no device id\n{}", identity.dump()))
        .trim()
        .to_owned()
}

/// The `(sequence, details.count)` of each `spool_dropped` event in a
/// signed report envelope.
fn spool_dropped_counts(envelope_json: &[u8]) -> Vec<(u64, u64)> {
    let envelope = palisade_shared::Envelope::from_json(envelope_json, 1 << 20).unwrap();
    let report =
        palisade_shared::Report::from_json(&envelope.payload_unverified().unwrap()).unwrap();
    report
        .events
        .iter()
        .filter(|event| event.kind == palisade_shared::report::EventKind::SpoolDropped)
        .map(|event| (report.sequence, event.details["count"].as_u64().unwrap()))
        .collect()
}

/// No file in the agent's state directory holds `secret`.
fn assert_no_state_file_holds(state_dir: &Path, secret: &str) {
    for entry in std::fs::read_dir(state_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{} holds the secret",
                path.display()
            );
        }
    }
}

fn acknowledged(sequence: u64) -> impl Fn(&str) -> bool {
    move |line: &str| {
        line.contains("report acknowledged by the collector")
            && line.contains(&format!("sequence={sequence}"))
    }
}

/// A silent install: the daemon's first start finds no enrollment, takes
/// the secret from `PALISADE_ENROLL_SECRET`, enrolls and delivers its first
/// report, logging one JSON object per line (`--log-format json`). The
/// secret is in neither the log nor the state directory.
#[test]
fn first_start_enrolls_from_the_environment_and_logs_json() {
    let collector_dir = tempfile::tempdir().unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let collector = RunningCollector::start(collector_dir.path(), None);
    let secret = collector.create_secret(&["--uses", "1"]);
    let config = write_config(agent_dir.path(), &collector);

    let mut daemon = RunningAgent::start_with_env(
        &config,
        &["--log-format", "json"],
        &[("PALISADE_ENROLL_SECRET", &secret)],
    );
    let acknowledged_line = daemon.wait_for("report 1 acknowledged as JSON", DEADLINE, |line| {
        serde_json::from_str::<serde_json::Value>(line).is_ok_and(|entry| {
            entry["fields"]["message"] == "report acknowledged by the collector"
                && entry["fields"]["sequence"] == 1
        })
    });
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let log = daemon.log();
    for line in log.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON log line ({err}): {line}"));
        assert!(entry["level"].is_string(), "{line}");
        assert!(entry["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        log.lines().any(|line| line.contains("\"enrolled\"")),
        "{log}"
    );
    assert!(!log.contains(&secret), "the secret reached the log");
    assert_no_state_file_holds(&agent_dir.path().join("state"), &secret);
    // The acknowledged report is stored as the enrolled device's first.
    let device_id = device_id(config.to_str().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Store::open(&collector.database_url).await.unwrap();
        let device = store.device(&device_id).await.unwrap().unwrap();
        assert_eq!(device.last_sequence, Some(1), "{acknowledged_line}");
    });
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
    assert_no_state_file_holds(&agent_dir.path().join("state"), &secret);
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

/// The smallest spool the config allows (`spool_max_reports`).
const SPOOL_BOUND: u64 = 10;
/// Cycles made while the collector is down: more than the spool holds, and
/// few enough (under twice the bound) that every drop is still counted by a
/// report that survives in the spool (see the assertion on the counts).
const OUTAGE_CYCLES: u64 = 15;

#[test]
fn an_outage_longer_than_the_spool_drops_the_oldest_and_the_collector_hears_of_it() {
    let collector_dir = tempfile::tempdir().unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let mut collector = RunningCollector::start(collector_dir.path(), None);
    let address = collector.address().to_owned();
    let secret = collector.create_secret(&["--uses", "1"]);
    // A retry at most every second and no pacing of the backlog, so the
    // test waits on the collector coming back, not on the defaults.
    let config = write_config_with(
        agent_dir.path(),
        &collector,
        &format!(
            "spool_max_reports = {SPOOL_BOUND}\nbackoff_max_seconds = 1\n\
             backlog_reports_per_second = 1000\nconnect_timeout_seconds = 1\n"
        ),
    );
    let config_arg = config.to_str().unwrap();
    let socket = agent_dir.path().join("agent.sock");
    let enrolled = agent(&["enroll", "--config", config_arg, "--secret", &secret]);
    assert_eq!(enrolled.exit_code, Some(0), "{}", enrolled.dump());
    let device_id = device_id(config_arg);

    // The collector goes away before the daemon's first report.
    assert_eq!(collector.stop(), Some(0));
    let mut daemon = RunningAgent::start(&config);
    // The first cycle runs at start; each check_now asks for one more.
    let mut newest = daemon.wait_for_cycle_after(0, DEADLINE);
    while newest < OUTAGE_CYCLES {
        agent::check_now(&socket).unwrap_or_else(|err| panic!("{err:#}\n{}", daemon.log()));
        newest = daemon.wait_for_cycle_after(newest, DEADLINE);
    }
    assert_eq!(newest, OUTAGE_CYCLES, "only the requested cycles ran");

    // The spool holds exactly its bound: the newest reports; the oldest
    // were dropped.
    let kept: Vec<u64> = (newest - SPOOL_BOUND + 1..=newest).collect();
    let dropped = newest - SPOOL_BOUND;
    let status = agent::status(&socket).unwrap();
    assert_eq!(
        status["spool"]["pending_reports"], SPOOL_BOUND,
        "{status:#}"
    );
    assert_eq!(
        status["spool"]["oldest_pending_sequence"], kept[0],
        "{status:#}"
    );
    assert!(status["delivery"]["last_error"].is_string(), "{status:#}");
    let listed = agent(&["spool", "list", "--config", config_arg]);
    let listed_sequences: Vec<u64> = listed
        .stdout
        .lines()
        .map(|line| line.split('\t').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(listed_sequences, kept, "{}", listed.dump());
    let spool_dir = agent_dir.path().join("state/spool");
    let spooled: Vec<Vec<u8>> = kept
        .iter()
        .map(|sequence| std::fs::read(spool_dir.join(format!("{sequence:020}.dsse.json"))).unwrap())
        .collect();

    // The collector comes back on its address with its database: the
    // backlog goes in order, then one more cycle carries the last drop.
    let collector = RunningCollector::start_on(collector_dir.path(), None, &address);
    for &sequence in &kept {
        daemon.wait_for_acknowledged(sequence, DEADLINE);
    }
    agent::check_now(&socket).unwrap();
    let last = daemon.wait_for_cycle_after(newest, DEADLINE);
    assert_eq!(last, newest + 1, "{}", daemon.log());
    daemon.wait_for_acknowledged(last, DEADLINE);
    let status = agent::status(&socket).unwrap();
    assert_eq!(status["spool"]["pending_reports"], 0, "{status:#}");
    assert!(
        status["spool"]["oldest_pending_sequence"].is_null(),
        "{status:#}"
    );
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(&collector.database_url).await.unwrap();
        for sequence in 1..=dropped {
            assert_eq!(
                store.report_envelope(&device_id, sequence).await.unwrap(),
                None,
                "report {sequence} was dropped, yet stored"
            );
        }
        let mut stored = Vec::new();
        for sequence in kept[0]..=last {
            let envelope = store.report_envelope(&device_id, sequence).await.unwrap();
            stored.push(envelope.unwrap_or_else(|| panic!("report {sequence} is not stored")));
        }
        assert_eq!(
            stored[..kept.len()],
            spooled[..],
            "the collector stored the spooled envelopes byte for byte"
        );

        // Each drop is counted once by the next report, and the counts of
        // the reports that survived add up to every report dropped. (A
        // count carried by a report that is itself dropped later is lost
        // with it; with fewer than twice the bound there is none.)
        let counts: Vec<(u64, u64)> = stored
            .iter()
            .flat_map(|envelope| spool_dropped_counts(envelope))
            .collect();
        let expected: Vec<(u64, u64)> = (SPOOL_BOUND + 2..=last).map(|k| (k, 1)).collect();
        assert_eq!(counts, expected, "which reports carry spool_dropped");
        assert_eq!(counts.iter().map(|(_, count)| count).sum::<u64>(), dropped);

        // The gap is flagged, on the device and on the report after it;
        // the chain itself is not called broken.
        let device = store.device(&device_id).await.unwrap().unwrap();
        assert!(device.sequence_gap, "{device:?}");
        assert!(!device.chain_broken, "{device:?}");
        assert_eq!(device.last_sequence, Some(last), "{device:?}");
        let detail = store
            .device_detail(&device_id, chrono::Utc::now(), 100)
            .await
            .unwrap()
            .unwrap();
        let flagged: Vec<(u64, bool)> = detail
            .reports
            .iter()
            .rev()
            .map(|report| (report.sequence, report.sequence_gap))
            .collect();
        let expected: Vec<(u64, bool)> = (kept[0]..=last)
            .map(|sequence| (sequence, sequence == kept[0]))
            .collect();
        assert_eq!(flagged, expected, "{}", collector.log());
    });
}
