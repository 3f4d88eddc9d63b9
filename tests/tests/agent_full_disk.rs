//! The real agent on a disk that is full (a real 4 MiB tmpfs holding its
//! state, filled to the last byte): it starts, runs its checks and shows
//! them on the status socket (which the nudge helper reads), counts each
//! cycle whose report it could not write, and delivers the reports already
//! spooled, which frees space. The next report that gets through carries
//! how many cycles were lost and since when, as a `cycles_unrecorded`
//! event. Before the fix it exited while opening the spool when that had
//! to write, and a cycle whose report could not be written was lost
//! without a trace and without its verdicts on the status socket.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::time::Duration;

use chrono::{DateTime, Utc};
use palisade_collector::store::Store;
use palisade_shared::report::EventKind;
use palisade_shared::{Envelope, Report};
use palisade_tests::agent;
use palisade_tests::agent::{self as agent_harness, RunningAgent};
use palisade_tests::collector::RunningCollector;
use palisade_tests::small_disk::SmallDisk;

/// Everything here is on loopback and a tmpfs; a minute only matters when
/// something is broken.
const DEADLINE: Duration = Duration::from_secs(60);

/// Reports spooled before the disk fills: their deletion after delivery
/// is the room the next report is written in.
const SPOOLED_BEFORE: u64 = 3;

/// Cycles asked for while the disk is full.
const LOST_CYCLES: u64 = 2;

fn lost_cycle_logged(line: &str) -> bool {
    line.contains("cannot write this cycle's report")
}

#[test]
fn on_a_full_disk_the_agent_checks_delivers_and_then_reports_the_cycles_it_lost() {
    let disk = SmallDisk::mount("4m");
    let collector_dir = tempfile::tempdir().unwrap();
    let mut collector = RunningCollector::start(collector_dir.path(), None);
    let address = collector.address().to_owned();
    let secret = collector.create_secret(&[]);
    let agent_dir = disk.path().join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    let config = agent_harness::write_config(
        &agent_dir,
        &collector,
        "backoff_max_seconds = 1\nconnect_timeout_seconds = 1\n",
    );
    let config_arg = config.to_str().unwrap();
    let socket = agent_dir.join("agent.sock");
    let enrolled = agent(&["enroll", "--config", config_arg, "--secret", &secret]);
    assert_eq!(enrolled.exit_code, Some(0), "{}", enrolled.dump());

    // The collector is away while a few reports are spooled.
    assert_eq!(collector.stop(), Some(0));
    let mut daemon = RunningAgent::start(&config);
    let mut newest = daemon.wait_for_cycle_after(0, DEADLINE);
    while newest < SPOOLED_BEFORE {
        agent_harness::check_now(&socket).unwrap();
        newest = daemon.wait_for_cycle_after(newest, DEADLINE);
    }
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());

    // The disk fills up, after a crash left the chain state behind the
    // entries (here as far behind as it goes: no state file), so opening the
    // spool must write a state and cannot. The agent starts anyway.
    std::fs::remove_file(agent_dir.join("state/spool/spool-state.json")).unwrap();
    let filler = disk.fill();
    let before_loss = Utc::now();
    let mut daemon = RunningAgent::start(&config);
    daemon.wait_for("the repair it cannot save", DEADLINE, |line| {
        line.contains("cannot save the repaired spool state")
    });
    daemon.wait_for("the first lost cycle", DEADLINE, lost_cycle_logged);
    for _ in 1..LOST_CYCLES {
        agent_harness::check_now(&socket).unwrap();
        daemon.wait_for("another lost cycle", DEADLINE, lost_cycle_logged);
    }
    let status = agent_harness::status(&socket).unwrap();
    assert_eq!(
        status["checks"].as_array().map(Vec::len),
        Some(4),
        "the checks ran on the full disk: {status:#}"
    );
    assert_eq!(
        status["spool"]["unrecorded_cycles"], LOST_CYCLES,
        "{status:#}"
    );
    assert_eq!(
        status["spool"]["pending_reports"], SPOOLED_BEFORE,
        "{status:#}"
    );
    assert!(
        std::fs::metadata(&filler).unwrap().len() > 0,
        "the disk is still full"
    );

    // The collector comes back: the spool drains, which frees the room
    // the next report is written in.
    let collector = RunningCollector::start_on(collector_dir.path(), None, &address);
    for sequence in 1..=SPOOLED_BEFORE {
        daemon.wait_for_acknowledged(sequence, DEADLINE);
    }
    agent_harness::check_now(&socket).unwrap();
    let carrying = daemon.wait_for_cycle_after(SPOOLED_BEFORE, DEADLINE);
    assert_eq!(carrying, SPOOLED_BEFORE + 1, "{}", daemon.log());
    daemon.wait_for_acknowledged(carrying, DEADLINE);
    let status = agent_harness::status(&socket).unwrap();
    assert_eq!(status["spool"]["unrecorded_cycles"], 0, "{status:#}");
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());

    let device_id = agent(&["identity", "--config", config_arg])
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("device id:"))
        .unwrap()
        .trim()
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = runtime.block_on(async {
        let store = Store::open(&collector.database_url).await.unwrap();
        store
            .report_envelope(&device_id, carrying)
            .await
            .unwrap()
            .unwrap()
    });
    let envelope = Envelope::from_json(&stored, 1 << 20).unwrap();
    let report = Report::from_json(&envelope.payload_unverified().unwrap()).unwrap();
    let lost: Vec<_> = report
        .events
        .iter()
        .filter(|event| event.kind == EventKind::CyclesUnrecorded)
        .collect();
    assert_eq!(lost.len(), 1, "{:#?}", report.events);
    assert_eq!(lost[0].details["count"], LOST_CYCLES, "{:#?}", lost[0]);
    let since: DateTime<Utc> = lost[0].details["since"].as_str().unwrap().parse().unwrap();
    assert!(
        since >= before_loss && since <= lost[0].at,
        "since {since} is not the first lost cycle (after {before_loss}, before {})",
        lost[0].at
    );
}
