//! The real agent daemon killed with SIGKILL again and again while it
//! spools reports for a collector that is down, restarted after every
//! kill; then the collector comes back and the agent delivers everything.
//!
//! The kills land at random moments (`PALISADE_KILL_SEED`, printed), most
//! of them in or around a spool write: the seeded RNG picks, for each run
//! of the agent, one of
//!
//! - a moment during its start (opening and repairing the spool, the first
//!   cycle), up to [`MAX_START_BEFORE_KILL`] after the spawn;
//! - the n-th change in the spool directory after a `check_now`, as inotify
//!   reports them (creating, writing, closing, renaming the entry's
//!   temporary file and then the chain state's): a kill inside `append`;
//! - a moment up to [`MAX_CYCLE_BEFORE_KILL`] after a `check_now`.
//!
//! `PALISADE_KILLS` sets how many (30 by default; 100 for the run
//! recorded in RELIABILITY.md).
//!
//! The rule the spool's design gives (agent/src/spool/mod.rs, "Crashes"):
//! a report is spooled once its entry is renamed into place, and its
//! sequence is taken only then. A kill before that loses that one cycle's
//! report, which nobody was ever told of, and frees its sequence for the
//! next; a kill after it keeps the report even if the chain state was not
//! yet written (the next start adopts the entry). So at most one cycle is
//! lost per kill and the chain never has a hole. What is asserted:
//!
//! - the agent started after every kill (it was still running at the next);
//! - no run ever logged a sequence another run had logged, and the logged
//!   sequences only go up;
//! - no start found a torn or foreign entry (nothing quarantined, no
//!   `corrupt/`), and at least one start repaired an interrupted write (a
//!   temporary file removed or an entry adopted), so kills did land mid-write;
//! - the spool then holds exactly 1..=n, a whole signed chain, with at most
//!   one report per kill that no run logged (written, then killed before
//!   the log line);
//! - the collector, back on its port and database, stores 1..=n+1 (the
//!   final start's cycle too) in order, byte for byte as spooled, once
//!   each, its chain whole and the device row flagging no gap or break.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};
use palisade_collector::store::Store;
use palisade_shared::envelope::verifying_key_from_base64;
use palisade_tests::agent;
use palisade_tests::agent::{self as agent_harness, RunningAgent, logged_sequence};
use palisade_tests::collector::RunningCollector;
use palisade_tests::durability::{KillPlan, assert_whole_chain, integrity_check, stored_reports};
use rand::Rng as _;

/// Loopback, a near-empty host root and a local disk: a minute only matters
/// when something is broken.
const DEADLINE: Duration = Duration::from_secs(60);
/// A start (key, spool repair, status socket, first cycle on an empty host
/// root) takes tens of milliseconds here; kills up to this long after the
/// spawn land anywhere in it.
const MAX_START_BEFORE_KILL: Duration = Duration::from_millis(60);
/// A requested cycle on the host root and its append (two fsynced writes)
/// take a few milliseconds; up to this long after `check_now` covers it and
/// a little after.
const MAX_CYCLE_BEFORE_KILL: Duration = Duration::from_millis(15);
/// An append is two atomic writes (the entry, then the chain state), each
/// about five changes in the directory; a kill at one of the first ten
/// lands somewhere inside it.
const MAX_SPOOL_CHANGES_BEFORE_KILL: usize = 10;

/// The agent's spool directory as the kernel reports changes to it
/// (inotify, through `notify`): waiting on these, not on a clock, is how a
/// kill lands inside a write.
struct SpoolChanges {
    spool: PathBuf,
    changes: mpsc::Receiver<notify::Result<notify::Event>>,
    _watcher: notify::RecommendedWatcher,
}

impl SpoolChanges {
    /// Watches everything under `state_dir`, where the daemon makes `spool/`.
    fn new(state_dir: &Path) -> Self {
        let (sender, changes) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(sender).unwrap();
        watcher.watch(state_dir, RecursiveMode::Recursive).unwrap();
        Self {
            spool: state_dir.join("spool"),
            changes,
            _watcher: watcher,
        }
    }

    fn is_spool_change(&self, event: &notify::Result<notify::Event>) -> bool {
        event.as_ref().is_ok_and(|event| {
            event
                .paths
                .iter()
                .any(|path| path.parent() == Some(self.spool.as_path()))
        })
    }

    /// Forgets the changes seen so far.
    fn forget(&self) {
        while self.changes.try_recv().is_ok() {}
    }

    /// Returns at the `count`-th change in the spool directory.
    fn wait_for_changes(&self, count: usize, agent: &RunningAgent) {
        let end = Instant::now() + DEADLINE;
        let mut seen = 0;
        while seen < count {
            let left = end.saturating_duration_since(Instant::now());
            let event = self.changes.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "only {seen} of {count} spool changes\n--- log ---\n{}",
                    agent.log()
                )
            });
            if self.is_spool_change(&event) {
                seen += 1;
            }
        }
    }

    /// Returns at `until`, the moment of the next kill, having followed the
    /// spool's changes meanwhile.
    fn follow_until(&self, until: Instant) {
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if self.changes.recv_timeout(left).is_err() {
                break;
            }
        }
    }
}

/// How the spool was repaired at one start, from its `Recovery` log line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Repairs {
    temp_files_removed: u64,
    adopted: u64,
    damaged: Vec<String>,
}

/// Reads the daemon's "spool recovered" line (the `Recovery` in Debug form).
fn repairs_in(log: &str) -> Repairs {
    let Some(line) = log
        .lines()
        .find(|line| line.contains("spool recovered from an interrupted run"))
    else {
        return Repairs::default();
    };
    let field = |name: &str| -> &str {
        let (_, rest) = line
            .split_once(&format!("{name}: "))
            .unwrap_or_else(|| panic!("no {name} in {line}"));
        let end = if rest.starts_with('[') {
            rest.find(']').unwrap() + 1
        } else {
            rest.find([',', ' ', '}']).unwrap()
        };
        &rest[..end]
    };
    let listed = |text: &str| {
        text.trim_matches(['[', ']'])
            .split(", ")
            .filter(|s| !s.is_empty())
            .count() as u64
    };
    let mut damaged = Vec::new();
    for name in ["quarantined", "unknown_files"] {
        if field(name) != "[]" {
            damaged.push(format!("{name}: {}", field(name)));
        }
    }
    Repairs {
        temp_files_removed: field("temp_files_removed").parse().unwrap(),
        adopted: listed(field("adopted")),
        damaged,
    }
}

/// The sequences a run's log says were spooled, in order.
fn spooled_sequences(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|line| line.contains("check cycle spooled a report"))
        .filter_map(logged_sequence)
        .collect()
}

fn first_cycle_spooled(daemon: &RunningAgent) {
    daemon.wait_for_cycle_after(0, DEADLINE);
}

#[test]
fn the_agent_killed_while_spooling_loses_no_report_and_leaves_no_gap() {
    let mut plan = KillPlan::from_env("agent_kill_loop");
    let started = Instant::now();
    let collector_dir = tempfile::tempdir().unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let mut collector = RunningCollector::start(collector_dir.path(), None);
    let address = collector.address().to_owned();
    let secret = collector.create_secret(&["--uses", "1"]);
    // Retries at most a second apart and no pacing of the backlog, so the
    // delivery at the end waits on the collector, not on the defaults.
    let config = agent_harness::write_config(
        agent_dir.path(),
        &collector,
        "backoff_max_seconds = 1\nconnect_timeout_seconds = 1\nbacklog_reports_per_second = 1000\n",
    );
    let config_arg = config.to_str().unwrap();
    let socket = agent_dir.path().join("agent.sock");
    let root = agent_dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let daemon_args = ["--host-root", root.to_str().unwrap()];
    let enrolled = agent(&["enroll", "--config", config_arg, "--secret", &secret]);
    assert_eq!(enrolled.exit_code, Some(0), "{}", enrolled.dump());
    let identity = agent(&["identity", "--config", config_arg]);
    let field = |name: &str| {
        identity
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name}\n{}", identity.dump()))
            .trim()
            .to_owned()
    };
    let device_id = field("device id:");
    let key = verifying_key_from_base64(&field("public key:")).unwrap();
    let state_dir = agent_dir.path().join("state");
    let spool_changes = SpoolChanges::new(&state_dir);

    // The collector is away: every report stays in the spool.
    assert_eq!(collector.stop(), Some(0));
    let mut logs = Vec::new();
    for kill in 1..=plan.kills {
        let mut daemon = RunningAgent::start_with(&config, &daemon_args);
        match plan.rng.gen_range(0..3) {
            0 => {
                let delay = plan.rng.gen_range(Duration::ZERO..=MAX_START_BEFORE_KILL);
                spool_changes.follow_until(Instant::now() + delay);
            }
            mode => {
                first_cycle_spooled(&daemon);
                spool_changes.forget();
                agent_harness::check_now(&socket).unwrap();
                if mode == 1 {
                    let changes = plan.rng.gen_range(1..=MAX_SPOOL_CHANGES_BEFORE_KILL);
                    spool_changes.wait_for_changes(changes, &daemon);
                } else {
                    let delay = plan.rng.gen_range(Duration::ZERO..=MAX_CYCLE_BEFORE_KILL);
                    spool_changes.follow_until(Instant::now() + delay);
                }
            }
        }
        let exited = daemon.kill();
        assert!(
            exited.is_none(),
            "the agent had exited by itself ({exited:?}) before kill {kill} (seed {})\n{}",
            plan.seed,
            daemon.log()
        );
        logs.push(daemon.log());
    }

    // Once more, to the end of its first cycle, and a clean stop: what the
    // spool holds now is what the collector must end up with.
    let mut daemon = RunningAgent::start_with(&config, &daemon_args);
    first_cycle_spooled(&daemon);
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    logs.push(daemon.log());
    let kill_loop_time = started.elapsed();

    let repairs: Vec<Repairs> = logs.iter().map(|log| repairs_in(log)).collect();
    let damaged: Vec<&Repairs> = repairs.iter().filter(|r| !r.damaged.is_empty()).collect();
    assert!(
        damaged.is_empty(),
        "torn or foreign spool files (seed {}): {damaged:?}",
        plan.seed
    );
    assert!(
        !state_dir.join("spool/corrupt").exists(),
        "a spool entry was quarantined (seed {})",
        plan.seed
    );
    let starts_removing_temp = repairs.iter().filter(|r| r.temp_files_removed > 0).count();
    let starts_adopting = repairs.iter().filter(|r| r.adopted > 0).count();
    assert!(
        starts_removing_temp + starts_adopting > 0,
        "no kill landed inside a spool write (seed {})",
        plan.seed
    );
    let logged: Vec<u64> = logs.iter().flat_map(|log| spooled_sequences(log)).collect();
    assert!(
        logged.windows(2).all(|pair| pair[0] < pair[1]),
        "a sequence was spooled twice or out of order (seed {}): {logged:?}",
        plan.seed
    );

    let listed = agent(&["spool", "list", "--config", config_arg]);
    let spooled: Vec<(i64, Vec<u8>)> = listed
        .stdout
        .lines()
        .map(|line| {
            let sequence: u64 = line.split('\t').next().unwrap().parse().unwrap();
            let name = format!("{sequence:020}.dsse.json");
            let bytes = std::fs::read(state_dir.join("spool").join(name)).unwrap();
            (sequence as i64, bytes)
        })
        .collect();
    let written = assert_whole_chain(&device_id, &key, &spooled);
    assert_eq!(
        logged.last(),
        Some(&written),
        "the last run logged the newest report"
    );
    let unlogged = written - logged.len() as u64;
    assert!(
        unlogged <= plan.kills as u64,
        "{unlogged} reports spooled but never logged, more than one per kill"
    );

    // The collector comes back on its port and database.
    let collector = RunningCollector::start_on(collector_dir.path(), None, &address);
    let mut daemon = RunningAgent::start_with(&config, &daemon_args);
    for sequence in 1..=written + 1 {
        daemon.wait_for_acknowledged(sequence, DEADLINE);
    }
    let status = agent_harness::status(&socket).unwrap();
    assert_eq!(status["spool"]["pending_reports"], 0, "{status:#}");
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let delivered_at = started.elapsed();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        assert_eq!(integrity_check(&collector.database_url).await, ["ok"]);
        let stored = stored_reports(&collector.database_url).await;
        let rows = &stored[&device_id];
        assert_eq!(assert_whole_chain(&device_id, &key, rows), written + 1);
        assert_eq!(
            rows[..spooled.len()],
            spooled[..],
            "the collector stored the spooled envelopes byte for byte"
        );
        let store = Store::open(&collector.database_url).await.unwrap();
        assert_eq!(store.count_reports().await.unwrap(), written + 1);
        let device = store.device(&device_id).await.unwrap().unwrap();
        assert!(!device.sequence_gap && !device.chain_broken, "{device:?}");
    });
    let listed_after = agent(&["spool", "list", "--config", config_arg]);
    assert!(
        listed_after.stdout.contains("the spool is empty"),
        "{}",
        listed_after.dump()
    );

    println!(
        "agent_kill_loop: {} kills in {:.1} s; {starts_removing_temp} starts removed an \
         interrupted write's temporary file, {starts_adopting} adopted an entry written just \
         before the kill; {written} reports spooled ({unlogged} never logged: killed between \
         the write and the log line), all {} delivered in order {:.1} s after the start",
        plan.kills,
        kill_loop_time.as_secs_f64(),
        written + 1,
        delivered_at.as_secs_f64()
    );
}
