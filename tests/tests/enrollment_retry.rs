//! Enrollment is retry-safe, with the real agent and the real collector:
//! when the collector committed an enrollment but the agent never got the
//! answer (a crash after the commit, a cut connection), the agent still has
//! its key and no enrollment record, and enrolling again with the same key
//! and secret gives it the same device, even though the secret had one use.
//! And refusals of an already-enrolled key (409) do not count towards the
//! per-address failure limit, so a laptop stuck on one does not lock out
//! the other laptops behind the same address.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use palisade_collector::server::failure_limit::MAX_FAILURES_PER_WINDOW;
use palisade_tests::agent;
use palisade_tests::agent::write_config;
use palisade_tests::collector::RunningCollector;

/// `enrolled as dev_…` → the device id.
fn enrolled_device(stdout: &str) -> String {
    stdout
        .strip_prefix("enrolled as ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("not an enrollment: {stdout}"))
        .to_owned()
}

#[test]
fn a_lost_enrollment_answer_is_retried_into_the_same_device() {
    let collector_dir = tempfile::tempdir().unwrap();
    let collector = RunningCollector::start(collector_dir.path(), None);
    let secret = collector.create_secret(&["--uses", "1"]);
    let agent_dir = tempfile::tempdir().unwrap();
    let config = write_config(agent_dir.path(), &collector, "");
    let config = config.to_str().unwrap();

    let first = agent(&["enroll", "--config", config, "--secret", &secret]);
    assert_eq!(first.exit_code, Some(0), "{}", first.dump());
    let device = enrolled_device(&first.stdout);

    // The answer "was lost": the agent kept its key but has no record.
    std::fs::remove_file(agent_dir.path().join("state/enrollment.json")).unwrap();
    let retry = agent(&["enroll", "--config", config, "--secret", &secret]);
    assert_eq!(retry.exit_code, Some(0), "{}", retry.dump());
    assert_eq!(enrolled_device(&retry.stdout), device);
    assert_eq!(collector.only_device()["device"]["device_id"], device);
}

#[test]
fn refusals_of_an_enrolled_key_do_not_lock_out_the_address() {
    let collector_dir = tempfile::tempdir().unwrap();
    let collector = RunningCollector::start(collector_dir.path(), None);
    let first_secret = collector.create_secret(&[]);
    let other_secret = collector.create_secret(&[]);
    let stuck_dir = tempfile::tempdir().unwrap();
    let stuck = write_config(stuck_dir.path(), &collector, "");
    let stuck = stuck.to_str().unwrap();
    let enrolled = agent(&["enroll", "--config", stuck, "--secret", &first_secret]);
    assert_eq!(enrolled.exit_code, Some(0), "{}", enrolled.dump());

    // The same key through another secret is refused, more times than the
    // limit allows failures.
    for _ in 0..=MAX_FAILURES_PER_WINDOW {
        let refused = agent(&["enroll", "--config", stuck, "--secret", &other_secret]);
        assert_eq!(refused.exit_code, Some(2), "{}", refused.dump());
        assert!(
            refused.stderr.contains("HTTP 409") && refused.stderr.contains("key_already_enrolled"),
            "{}",
            refused.dump()
        );
    }
    // Another laptop from the same address still enrolls.
    let neighbour_dir = tempfile::tempdir().unwrap();
    let neighbour = write_config(neighbour_dir.path(), &collector, "");
    let joined = agent(&[
        "enroll",
        "--config",
        neighbour.to_str().unwrap(),
        "--secret",
        &other_secret,
    ]);
    assert_eq!(joined.exit_code, Some(0), "{}", joined.dump());
}
