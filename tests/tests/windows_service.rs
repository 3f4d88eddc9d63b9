//! The Windows agent as a real Windows service, under Wine: the prefix's
//! Service Control Manager starts `palisade-agent.exe service` (`sc create`,
//! `net start`), the service enrolls with a real collector on loopback from
//! the secret in its config (a silent install) and its first report, from
//! the Windows probes, is stored by the collector.
//!
//! Wine's stop control is unreliable (test-environments.md), so the test
//! does not assert a clean stop: dropping the prefix ends its wineserver,
//! and with it the service.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::Path;
use std::time::{Duration, Instant};

use palisade_collector::store::Store;
use palisade_shared::report::CheckStatus;
use palisade_tests::collector::RunningCollector;
use palisade_tests::wine::{WinePrefix, windows_agent, windows_path};

/// The service's first start under Wine (a cold exe, TLS, enrollment, the
/// checks) takes seconds; two minutes only ever matters when something is
/// broken, and then the test fails with the service's log.
const DEADLINE: Duration = Duration::from_secs(120);

/// How often the test looks again while it waits.
const POLL: Duration = Duration::from_millis(250);

const SERVICE: &str = "PalisadeAgent";

/// The agent's config for Windows paths: TOML literal strings, so the
/// backslashes are taken as they are.
fn windows_config(dir: &Path, collector: &RunningCollector, secret: &str) -> String {
    format!(
        "collector_url = \"{}\"\nca_file = '{}'\nstate_dir = '{}'\nenroll_secret = \"{secret}\"\ninterval_seconds = 3600\n",
        collector.url,
        windows_path(&collector.state_dir.join("tls/cert.pem")),
        windows_path(&dir.join("state")),
    )
}

/// Everything a failed wait needs: the service's log and the collector's.
fn dump(state_dir: &Path, collector: &RunningCollector) -> String {
    let log = std::fs::read_to_string(state_dir.join("agent.log"))
        .unwrap_or_else(|err| format!("(no service log: {err})"));
    format!(
        "--- service log ---\n{log}\n--- collector log ---\n{}",
        collector.log()
    )
}

/// Polls until the collector has stored a report from the device the
/// service enrolled as; returns its device id.
fn wait_for_stored_report(state_dir: &Path, collector: &RunningCollector) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime
        .block_on(Store::open(&collector.database_url))
        .unwrap();
    let end = Instant::now() + DEADLINE;
    loop {
        let enrolled = std::fs::read(state_dir.join("enrollment.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|record| record["device_id"].as_str().map(str::to_owned));
        if let Some(device_id) = enrolled {
            let device = runtime.block_on(store.device(&device_id)).unwrap();
            if device.is_some_and(|d| d.last_sequence >= Some(1)) {
                return device_id;
            }
        }
        assert!(
            Instant::now() < end,
            "no report from the service reached the collector within {DEADLINE:?}\n{}",
            dump(state_dir, collector)
        );
        std::thread::sleep(POLL);
    }
}

#[test]
fn the_service_started_by_the_scm_enrolls_and_delivers_a_windows_report() {
    let collector_dir = tempfile::tempdir().unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let collector = RunningCollector::start(collector_dir.path(), None);
    let secret = collector.create_secret(&["--uses", "1"]);
    let config = agent_dir.path().join("agent.toml");
    std::fs::write(
        &config,
        windows_config(agent_dir.path(), &collector, &secret),
    )
    .unwrap();
    let state_dir = agent_dir.path().join("state");

    let prefix = WinePrefix::new();
    let command_line = format!(
        "\"{}\" service --config \"{}\"",
        windows_path(&windows_agent()),
        windows_path(&config)
    );
    prefix.create_and_start_service(SERVICE, &command_line);

    let device_id = wait_for_stored_report(&state_dir, &collector);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let verdicts = runtime.block_on(async {
        let store = Store::open(&collector.database_url).await.unwrap();
        store.latest_verdicts(&device_id).await.unwrap()
    });
    // The report came from the Windows probes: a fresh prefix has no
    // screen saver, and Wine's account policy API is not implemented.
    let status_of = |rule: &str| {
        verdicts
            .iter()
            .find(|v| v.rule_id == rule)
            .map(|v| v.status)
            .unwrap_or_else(|| panic!("no {rule} verdict in {verdicts:?}"))
    };
    assert_eq!(status_of("screen_lock"), CheckStatus::Fail, "{verdicts:?}");
    assert_eq!(
        status_of("password_policy"),
        CheckStatus::Unknown,
        "{verdicts:?}"
    );
    let log = std::fs::read_to_string(state_dir.join("agent.log")).unwrap();
    assert!(log.contains("service starting"), "{log}");
    assert!(!log.contains(&secret), "the secret reached the log");
}
