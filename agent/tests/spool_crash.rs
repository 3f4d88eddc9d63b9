//! Kills a process that is appending to the spool with SIGKILL at random
//! points, many times, and checks after every kill that the spool is whole:
//! every file a complete envelope that verifies, no duplicate or reordered
//! sequence, the hash chain unbroken, numbering continuing without reuse,
//! and every report the writer announced as durable either still there,
//! acknowledged, or dropped by the bound and counted.
//!
//! The process is `agent/examples/spool_writer.rs`, built by `cargo test`
//! (and by this test if it is missing or stale). It prints a line after each
//! step; the test waits on those lines (never on a clock) and kills the
//! writer after a random number of them, so the kill lands wherever the
//! writer happens to be in its next append or acknowledgement.
//!
//! On failure the message names the random seed (`SPOOL_CRASH_SEED=<n>`
//! replays it), the round, the writer's recent output and the directory.

// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use palisade_agent::durable;
use palisade_agent::spool::{self, Spool, SpoolLimits};
use palisade_shared::envelope::{DEFAULT_MAX_ENVELOPE_BYTES, REPORT_PAYLOAD_TYPE, sha256_hex};
use palisade_shared::report::EventKind;
use palisade_shared::{Envelope, Report};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

const SEED: [u8; 32] = [42; 32];
/// How long one line from the writer may take. An append is about 15 ms on
/// the CI disk; a minute means the writer is stuck, not slow.
const LINE_DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn sigkill_at_random_points_leaves_a_whole_spool() {
    let seed = std::env::var("SPOOL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut rng = StdRng::seed_from_u64(seed);
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("spool");
    // A small bound and one acknowledgement per two appends: the spool
    // fills, so kills land in evictions as well as appends and acks.
    let limits = SpoolLimits {
        max_reports: 25,
        max_bytes: 1 << 30,
    };
    let mut ledger = Ledger::default();
    let mut recoveries = 0;
    const ROUNDS: usize = 36;
    for round in 0..ROUNDS {
        let lines = rng.gen_range(1..=40);
        let kill_fraction = rng.gen_range(0.0..1.2);
        let context = format!(
            "SPOOL_CRASH_SEED={seed}, round {round}, killed {kill_fraction:.2} appends after \
             {lines} lines"
        );
        let output = run_writer_and_kill(
            &dir,
            limits,
            &["--ack-every", "2"],
            lines,
            kill_fraction,
            temp.path(),
        );
        ledger.record(&output, &context);
        let found = check_spool(&dir, limits, &mut ledger, &output, &context);
        let recovery = &found.recovery;
        recoveries += usize::from(
            !recovery.adopted.is_empty()
                || recovery.temp_files_removed > 0
                || recovery.evictions_completed > 0,
        );
    }
    // About a third of the kills land inside an append; if none did, the
    // test exercised nothing but clean stops.
    assert!(recoveries > 0, "no kill landed inside an append");
    assert!(
        ledger.durable.len() > ROUNDS * 5,
        "the writer made too little progress to test anything: {} reports",
        ledger.durable.len()
    );
    assert!(ledger.acked.len() > 10, "no acknowledgement was exercised");
    assert!(ledger.max_evicted_seen > 0, "the bound was never reached");
}

#[test]
fn small_bound_drops_the_oldest_and_the_count_survives_a_kill() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("spool");
    let limits = SpoolLimits {
        max_reports: 10,
        max_bytes: 1 << 30,
    };
    let mut ledger = Ledger::default();
    // No acknowledgements: the collector is down. 30 reports into room for 10.
    let output = run_writer_and_kill(&dir, limits, &[], 30, 0.5, temp.path());
    ledger.record(&output, "first run");
    let spool_after = check_spool(&dir, limits, &mut ledger, &output, "first run");
    let newest = *ledger.durable.keys().last().unwrap();
    assert!(newest >= 30);
    // The ten newest are kept, whatever the kill interrupted.
    let pending = &spool_after.pending;
    assert_eq!(pending.len(), 10, "{pending:?}");
    assert!(*pending.first().unwrap() > 1);
    let unreported = spool_after.dropped_unreported;
    assert!(
        unreported >= 1,
        "the last append dropped one and no report carried it yet"
    );

    // Restarted, the next report carries exactly that count.
    let output = run_writer(&dir, limits, &["--limit", "1"], temp.path());
    ledger.record(&output, "second run");
    let next = *ledger.durable.keys().last().unwrap();
    assert_eq!(ledger.carried[&next], unreported, "{output:?}");
    let envelope = fs::read(dir.join(spool::entry_name(next))).unwrap();
    let report = verified_report(&envelope).unwrap();
    let events: Vec<_> = report
        .events
        .iter()
        .filter(|event| event.kind == EventKind::SpoolDropped)
        .collect();
    assert_eq!(events.len(), 1, "{:?}", report.events);
    assert_eq!(events[0].details["count"], serde_json::json!(unreported));
    check_spool(&dir, limits, &mut ledger, &output, "second run");
}

/// What the writer said, across all its runs on one spool.
#[derive(Default)]
struct Ledger {
    /// Every report announced durable: sequence → payload digest.
    durable: BTreeMap<u64, String>,
    /// The drop count each report carried (from the writer's line, or read
    /// from the spool for a report whose line the kill cut off).
    carried: BTreeMap<u64, u64>,
    acked: HashSet<u64>,
    /// An acknowledgement begun but not seen to finish.
    acking: Option<u64>,
    max_evicted_seen: u64,
}

impl Ledger {
    fn record(&mut self, output: &[String], context: &str) {
        for line in output {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["opened", ..] | ["done", ..] => {}
                ["durable", sequence, digest, carried, evicted] => {
                    let sequence: u64 = sequence.parse().unwrap();
                    let carried: u64 = carried.strip_prefix("carried=").unwrap().parse().unwrap();
                    if let Some(earlier) = self.durable.insert(sequence, (*digest).to_owned()) {
                        panic!(
                            "{context}: sequence {sequence} announced twice \
                             ({earlier}, then {digest})\n{}",
                            tail(output)
                        );
                    }
                    self.carried.insert(sequence, carried);
                    let evicted = evicted.strip_prefix("evicted=").unwrap();
                    if let Some(newest) = evicted.split(',').filter_map(|s| s.parse().ok()).max() {
                        self.max_evicted_seen = self.max_evicted_seen.max(newest);
                    }
                }
                ["acking", sequence] => self.acking = Some(sequence.parse().unwrap()),
                ["acked", sequence] => {
                    let sequence: u64 = sequence.parse().unwrap();
                    assert_eq!(self.acking.take(), Some(sequence), "{context}");
                    self.acked.insert(sequence);
                }
                _ => panic!("{context}: unexpected line from the writer: {line:?}"),
            }
        }
    }
}

/// The spool as the test found it after a kill.
struct Found {
    pending: Vec<u64>,
    dropped_unreported: u64,
    recovery: spool::Recovery,
}

/// Every check, after one kill. Reads the directory raw first (what the
/// crash left), then opens the spool (what recovery makes of it).
fn check_spool(
    dir: &Path,
    limits: SpoolLimits,
    ledger: &mut Ledger,
    output: &[String],
    context: &str,
) -> Found {
    macro_rules! fail {
        ($($message:tt)*) => {
            panic!(
                "{context}: {}\n--- writer output (last lines) ---\n{}\n--- spool directory ---\n{}",
                format!($($message)*),
                tail(output),
                listing(dir)
            )
        };
    }

    // 1. Raw: every entry is a whole envelope that verifies, whose report
    //    has the sequence of its name. Only temp files may be partial.
    let mut raw: BTreeMap<u64, Report> = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name == spool::STATE_FILE_NAME || durable::is_temp_file_name(&name) {
            continue;
        }
        let Some(sequence) = spool::parse_entry_name(&name) else {
            fail!("unexpected file {name}");
        };
        let bytes = fs::read(dir.join(&name)).unwrap();
        let report = verified_report(&bytes).unwrap_or_else(|err| fail!("{name}: {err}"));
        if report.sequence != sequence {
            fail!("{name} holds report {}", report.sequence);
        }
        let digest = payload_digest(&bytes);
        match ledger.durable.get(&sequence) {
            Some(announced) if *announced != digest => {
                fail!("{name} is not the report announced as durable under that number")
            }
            _ => {}
        }
        let carried = report
            .events
            .iter()
            .filter(|event| event.kind == EventKind::SpoolDropped)
            .map(|event| event.details["count"].as_u64().unwrap())
            .sum();
        ledger.carried.insert(sequence, carried);
        raw.insert(sequence, report);
    }

    // 2. Recovered: open as the daemon would at its next start.
    let spool = Spool::open(dir, limits).unwrap_or_else(|err| fail!("open: {err}"));
    if !spool.recovery().quarantined.is_empty() {
        fail!("recovery quarantined {:?}", spool.recovery().quarantined);
    }
    let pending = spool.pending();
    let link = spool.next_link();
    let last = link.sequence - 1;

    // Contiguous, in order, ending at the newest report ever spooled: acks
    // and evictions both take the oldest, so nothing is missing inside.
    if let (Some(&first), Some(&newest)) = (pending.first(), pending.last()) {
        if pending != (first..=newest).collect::<Vec<_>>() {
            fail!("pending entries are not contiguous: {pending:?}");
        }
        if newest != last {
            fail!("newest entry {newest}, but next sequence {}", link.sequence);
        }
    }
    // The chain: each entry's prev_digest is the digest of the one before,
    // and the next report will link to the newest.
    for window in pending.windows(2) {
        let previous = payload_digest(&spool.read(window[0]).unwrap());
        let report = &raw[&window[1]];
        if report.prev_digest != previous {
            fail!("report {} does not link to {}", window[1], window[0]);
        }
    }
    if let Some(&newest) = pending.last() {
        if link.prev_digest != payload_digest(&spool.read(newest).unwrap()) {
            fail!("the next link does not point at the newest report");
        }
    }
    // Numbering goes on from every report ever announced: no reuse.
    if let Some((&announced, _)) = ledger.durable.last_key_value() {
        if last < announced {
            fail!(
                "next sequence {} would reuse announced {announced}",
                link.sequence
            );
        }
    }

    // An acknowledgement the kill interrupted: done if the file is gone.
    if let Some(sequence) = ledger.acking.take() {
        if !pending.contains(&sequence) {
            ledger.acked.insert(sequence);
        }
    }
    // Nothing announced durable is missing unless acknowledged or dropped.
    let lowest_pending = pending.first().copied().unwrap_or(link.sequence);
    for &sequence in ledger.durable.keys() {
        if sequence >= lowest_pending && !pending.contains(&sequence) {
            fail!("durable report {sequence} is missing");
        }
    }
    // And every drop is counted exactly once: the reports below the lowest
    // pending one that were not acknowledged are the ones the bound
    // dropped; the counts carried by the reports that were not dropped
    // (delivered or still pending: a dropped report's count is lost with it
    // and must be counted again) plus the count not yet reported must add
    // up to them.
    let removed = lowest_pending - 1;
    let acked = ledger.acked.iter().filter(|&&s| s < lowest_pending).count() as u64;
    let dropped = removed - acked;
    let reported: u64 = (1..=last)
        .filter(|s| ledger.acked.contains(s) || pending.contains(s))
        .map(|s| {
            *ledger
                .carried
                .get(&s)
                .unwrap_or_else(|| fail!("no record of what report {s} carried"))
        })
        .sum();
    if reported + spool.dropped_unreported() != dropped {
        fail!(
            "{dropped} reports were dropped, but reports carry {reported} and {} are unreported",
            spool.dropped_unreported()
        );
    }
    Found {
        pending,
        dropped_unreported: spool.dropped_unreported(),
        recovery: spool.recovery().clone(),
    }
}

fn verified_report(envelope_json: &[u8]) -> Result<Report, String> {
    let key = SigningKey::from_bytes(&SEED).verifying_key();
    let envelope = Envelope::from_json(envelope_json, DEFAULT_MAX_ENVELOPE_BYTES)
        .map_err(|e| e.to_string())?;
    let verified = envelope
        .verify(REPORT_PAYLOAD_TYPE, |_| Some(key))
        .map_err(|e| e.to_string())?;
    Report::from_json(&verified.payload).map_err(|e| e.to_string())
}

fn payload_digest(envelope_json: &[u8]) -> String {
    let envelope = Envelope::from_json(envelope_json, DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
    sha256_hex(&envelope.payload_unverified().unwrap())
}

// ---------------------------------------------------------------------------
// Running the writer.

/// Runs the writer until it has printed `durable_lines` "durable" lines,
/// then kills it with SIGKILL at the next "durable" line or after
/// `kill_fraction` of the time one append has been taking, whichever comes
/// first, and returns everything it printed.
///
/// Killing right at a line would almost always hit the writer between two
/// steps; the random wait spreads the kills over the inside of the append
/// (temp file, rename, state write, evictions). It is measured in appends,
/// not milliseconds, so it fits a slow disk and a fast one alike.
fn run_writer_and_kill(
    dir: &Path,
    limits: SpoolLimits,
    extra: &[&str],
    durable_lines: usize,
    kill_fraction: f64,
    logs: &Path,
) -> Vec<String> {
    let (mut child, lines) = spawn_writer(dir, limits, extra, logs);
    let mut output = Vec::new();
    let mut durable_at = Vec::new();
    while durable_at.len() < durable_lines {
        let line = next_line(&lines, &mut child, &output, logs);
        if line.starts_with("durable ") {
            durable_at.push(Instant::now());
        }
        output.push(line);
    }
    let one_append = match (durable_at.first(), durable_at.last()) {
        (Some(first), Some(last)) if durable_at.len() > 1 => {
            (*last - *first) / (durable_at.len() as u32 - 1)
        }
        // Only one line seen: about one append on the CI disk.
        _ => Duration::from_millis(12),
    };
    let kill_at = Instant::now() + one_append.mul_f64(kill_fraction);
    while let Ok(line) = lines.recv_timeout(kill_at.saturating_duration_since(Instant::now())) {
        let durable = line.starts_with("durable ");
        output.push(line);
        if durable {
            break;
        }
    }
    // `Child::kill` is SIGKILL on unix: no destructor, no flush, no cleanup.
    child.kill().unwrap();
    child.wait().unwrap();
    // Whatever it printed before dying was still printed after its step.
    output.extend(lines.iter());
    output
}

/// Runs the writer to its natural end (with `--limit`).
fn run_writer(dir: &Path, limits: SpoolLimits, extra: &[&str], logs: &Path) -> Vec<String> {
    let (mut child, lines) = spawn_writer(dir, limits, extra, logs);
    let mut output = Vec::new();
    loop {
        let line = next_line(&lines, &mut child, &output, logs);
        let done = line.starts_with("done ");
        output.push(line);
        if done {
            break;
        }
    }
    assert!(child.wait().unwrap().success(), "{}", stderr_of(logs));
    output
}

fn spawn_writer(
    dir: &Path,
    limits: SpoolLimits,
    extra: &[&str],
    logs: &Path,
) -> (Child, Receiver<String>) {
    let stderr = fs::File::create(logs.join("writer.stderr")).unwrap();
    let mut child = Command::new(writer_binary())
        .arg("--dir")
        .arg(dir)
        .args(["--seed", &hex::encode(SEED)])
        .args(["--max-reports", &limits.max_reports.to_string()])
        .args(["--max-bytes", &limits.max_bytes.to_string()])
        .args(extra)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (child, receiver)
}

fn next_line(
    lines: &Receiver<String>,
    child: &mut Child,
    output: &[String],
    logs: &Path,
) -> String {
    let deadline = Instant::now() + LINE_DEADLINE;
    match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(line) => line,
        Err(RecvTimeoutError::Disconnected) => panic!(
            "the writer exited early ({:?})\n{}\nstderr:\n{}",
            child.wait(),
            tail(output),
            stderr_of(logs)
        ),
        Err(RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            panic!(
                "the writer printed nothing for {LINE_DEADLINE:?}\n{}\nstderr:\n{}",
                tail(output),
                stderr_of(logs)
            )
        }
    }
}

/// The example binary, built by `cargo test` next to this test's own
/// binary. It is built here too, once per test run, because
/// `cargo test --test spool_crash` builds no examples and a binary left from
/// an earlier build would test old code.
fn writer_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/spool_crash-<hash> → target/<profile>
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
            let mut build = Command::new(env!("CARGO"));
            build.args([
                "build",
                "--quiet",
                "-p",
                "palisade-agent",
                "--example",
                "spool_writer",
            ]);
            if profile_dir
                .file_name()
                .is_some_and(|name| name == "release")
            {
                build.arg("--release");
            }
            let status = build
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap();
            assert!(
                status.success(),
                "cargo build --example spool_writer failed"
            );
            let binary = profile_dir
                .join("examples")
                .join(format!("spool_writer{}", std::env::consts::EXE_SUFFIX));
            assert!(binary.exists(), "no {}", binary.display());
            binary
        })
        .clone()
}

fn tail(output: &[String]) -> String {
    let start = output.len().saturating_sub(12);
    output[start..].join("\n")
}

fn stderr_of(logs: &Path) -> String {
    fs::read_to_string(logs.join("writer.stderr")).unwrap_or_default()
}

fn listing(dir: &Path) -> String {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let state = fs::read_to_string(dir.join(spool::STATE_FILE_NAME)).unwrap_or_default();
    format!("{}\n{}: {state}", names.join("\n"), spool::STATE_FILE_NAME)
}
