//! Long file: one benchmark binary that measures ingest and both of its limits in one run, so the numbers compare.
//! `ingest_bench`: the collector's ingest throughput next to its two limits,
//! all measured on this machine in one run (issue 5; results in
//! BENCHMARKS.md).
//!
//! 1. **Verification limit**: `verify_strict` over the DSSE pre-authentication
//!    encoding of real signed reports, one thread per core. Also the whole
//!    CPU work the ingest handler does before the store (parse the envelope,
//!    decode, verify, parse and validate the report, hash it), same threads.
//! 2. **Store limit**: `Store::store_reports` on its own with the same rows
//!    (the envelopes the devices would send, turned into `IncomingReport`s as
//!    the handler does) in batches of the group-commit size, one writer, into
//!    a fresh SQLite file and a fresh PostgreSQL database, with the durability
//!    settings the collector runs with (the store sets them at open).
//! 3. **End to end**: a real `palisade-collector serve` (release build) over
//!    HTTPS on 127.0.0.1; the devices are enrolled over the API first (not
//!    timed), then every device sends its chain of pre-signed reports on its
//!    own connection, all devices at once.
//!
//! It prints a Markdown table and the verdict of the aim: ingest at
//! least half of the slower of the two limits. It only ever connects to
//! 127.0.0.1 (the collector it starts and the PostgreSQL server it is given),
//! and every loop is bounded by a count and by `--time-cap-seconds`.
//!
//! Build the collector first: `cargo build --release -p palisade-collector`,
//! then `cargo run --release -p palisade-tests --bin ingest_bench`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use chrono::Utc;
use clap::Parser;
use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use palisade_collector::ingest::batcher::MAX_BATCH;
use palisade_collector::secrets;
use palisade_collector::store::{
    EnrollDevice, IncomingReport, IncomingVerdict, NewEnrollmentSecret, Store, StoreOutcome,
};
use palisade_shared::envelope::{
    Envelope, KeyId, REPORT_PAYLOAD_TYPE, pre_authentication_encoding, sha256_hex,
};
use palisade_shared::report::{CheckResult, CheckStatus, Mode};
use palisade_shared::{Report, RuleId};
use palisade_tests::collector::RunningCollector;
use palisade_tests::databases::fresh_postgres_database_on;
use palisade_tests::device::SimulatedDevice;
use serde_json::json;

/// Linux reports process CPU time in clock ticks of `USER_HZ`, which is 100
/// on every architecture Linux supports (`sysconf(_SC_CLK_TCK)`).
const USER_HZ: f64 = 100.0;

/// Enrollments in flight at once: enough to keep the store's writer busy
/// without making the (untimed) setup a benchmark of its own.
const ENROLL_CONCURRENCY: usize = 32;

/// Devices whose reports the verification threads cycle through: many keys,
/// so no cache holds one key's precomputed tables; a few reports each.
const VERIFY_DEVICES: usize = 64;
const VERIFY_REPORTS_PER_DEVICE: usize = 16;

#[derive(Debug, Parser)]
#[command(about = "Measure the collector's ingest rate next to its verification and store limits")]
struct Args {
    /// A PostgreSQL server (`postgres://…/postgres`) on which to create fresh
    /// databases; without it the PostgreSQL rows are skipped.
    #[arg(long, env = "PALISADE_TEST_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Simulated devices sending at once.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Reports each device sends (its chain, sequences 1..=N).
    #[arg(long, default_value_t = 10)]
    reports_per_device: usize,
    /// No device starts a new request after this long into a timed phase.
    #[arg(long, default_value_t = 20)]
    time_cap_seconds: u64,
    /// How long the verification threads run.
    #[arg(long, default_value_t = 3)]
    verify_seconds: u64,
    /// Reports per `store_reports` call in the store-only measurement
    /// (default: the collector's group-commit limit).
    #[arg(long, default_value_t = MAX_BATCH)]
    store_batch: usize,
    /// Record the collector with `perf record -g` during each end-to-end
    /// phase, into DIR/perf-<store>.data.
    #[arg(long, value_name = "DIR")]
    perf_dir: Option<PathBuf>,
    /// How often each measurement runs; the best run is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run the end-to-end phase only for this store (`sqlite` or
    /// `postgres`; `none` for none); the limits are always measured.
    #[arg(long)]
    only: Option<String>,
}

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ingest_bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.devices > 0, "--devices must be at least 1");
    ensure!(
        args.reports_per_device > 0,
        "--reports-per-device must be at least 1"
    );
    ensure!(args.store_batch > 0, "--store-batch must be at least 1");
    ensure!(args.runs > 0, "--runs must be at least 1");
    palisade_tests::install_crypto_provider();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let load_before = load_average();
    eprintln!("ingest_bench: {cores} cores, load average {load_before}");

    let payload_bytes = bench_report(&SimulatedDevice::new("sample"))
        .to_payload()
        .len();
    let envelope_bytes = sign(&mut SimulatedDevice::new("sample")).0.len();

    let mut stores = vec![("SQLite", None)];
    match &args.postgres_url {
        Some(server) => stores.push(("PostgreSQL", Some(server.as_str()))),
        None => eprintln!("ingest_bench: no --postgres-url: PostgreSQL is skipped"),
    }
    // Every measurement is repeated, interleaved with the others, and the
    // best run counts: other work on the machine only ever slows a run down.
    let mut verify_runs = Vec::new();
    let mut results: Vec<StoreRuns> = stores
        .iter()
        .map(|(name, _)| StoreRuns {
            name,
            store: Vec::new(),
            ingest: Vec::new(),
        })
        .collect();
    for run in 1..=args.runs {
        eprintln!("ingest_bench: run {run}: verification on {cores} threads");
        verify_runs.push(verification_limit(
            cores,
            Duration::from_secs(args.verify_seconds),
        )?);
        for ((name, server), runs) in stores.iter().zip(&mut results) {
            eprintln!("ingest_bench: run {run}: {name} store on its own");
            let store_dir = tempfile::tempdir().context("cannot make a temporary directory")?;
            let url = match server {
                Some(server) => fresh_postgres_database_on(server, "ingest_bench_store"),
                None => format!("sqlite://{}", store_dir.path().join("store.db").display()),
            };
            runs.store.push(runtime.block_on(store_limit(&url, &args))?);
            drop(store_dir);

            let kind = if server.is_some() {
                "postgres"
            } else {
                "sqlite"
            };
            if args
                .only
                .as_deref()
                .is_none_or(|only| only.eq_ignore_ascii_case(kind))
            {
                eprintln!("ingest_bench: run {run}: {name} end to end");
                runs.ingest
                    .push(end_to_end(&runtime, name, *server, &args)?);
            }
        }
    }
    let load_after = load_average();

    print_results(&ResultsPage {
        args: &args,
        cores,
        cpu: cpu_model(),
        load_before,
        load_after,
        payload_bytes,
        envelope_bytes,
        verify: &verify_runs,
        stores: &results,
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// The report every simulated device sends.

/// A report of about 3 KiB: the four rules with evidence shaped like the
/// agent's (`palisade-agent check --json` on the Debian 12 CI machine gives
/// 3.8 KiB of compact JSON).
fn bench_report(device: &SimulatedDevice) -> Report {
    let mut report = device.next_report(Utc::now());
    report.checks = vec![
        bench_check(
            RuleId::SCREEN_LOCK,
            CheckStatus::Pass,
            "the screen locks after 300 s idle",
            json!({
                "display_servers": ["Xwayland", "gnome-shell"],
                "logind_sessions": 1,
                "idle_delay_seconds": {"source": "dconf /org/gnome/desktop/session/idle-delay", "value": 300},
                "lock_enabled": {"source": "dconf /org/gnome/desktop/screensaver/lock-enabled", "value": true},
                "lock_delay_seconds": {"source": "dconf /org/gnome/desktop/screensaver/lock-delay", "value": 0},
                "max_idle_seconds": 900
            }),
            "",
        ),
        bench_check(
            RuleId::DISK_ENCRYPTION,
            CheckStatus::Fail,
            "1 of 2 persistent mounts are not encrypted: /home",
            json!({
                "include_swap": true,
                "mounts": [
                    {"detail": "reaches nvme0n1p3 through dm-crypt (LUKS2, aes-xts-plain64)", "device": "dm-1",
                     "fs_type": "ext4", "mount_point": "/", "source": "/dev/mapper/vg-root", "status": "encrypted"},
                    {"detail": "reaches nvme0n1p4 without dm-crypt", "device": "nvme0n1p4",
                     "fs_type": "ext4", "mount_point": "/home", "source": "/dev/nvme0n1p4", "status": "not_encrypted"}
                ]
            }),
            "Encrypt the disk with LUKS: back up your files, then reinstall choosing \"Guided - use entire \
             disk and set up encrypted LVM\" (or ask IT for the encrypted build). An agent cannot encrypt a \
             disk in place.",
        ),
        bench_check(
            RuleId::PASSWORD_POLICY,
            CheckStatus::Fail,
            "password quality is not enforced by PAM: pam_pwquality is not in the password stack \
             (/etc/pam.d/common-password)",
            json!({
                "login_defs": {"path": "/etc/login.defs", "state": "read", "values": {
                    "PASS_MAX_DAYS": {"line": 165, "value": "99999"},
                    "PASS_MIN_DAYS": {"line": 166, "value": "0"},
                    "PASS_WARN_AGE": {"line": 167, "value": "7"}}},
                "min_length_required": 12,
                "pam_family": "debian",
                "pam_stacks": [{"files_read": ["/etc/pam.d/common-password"], "password_lines": [
                    {"line": "password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt",
                     "location": "/etc/pam.d/common-password line 25"},
                    {"line": "password\trequisite\t\t\tpam_deny.so", "location": "/etc/pam.d/common-password line 27"},
                    {"line": "password\trequired\t\t\tpam_permit.so", "location": "/etc/pam.d/common-password line 31"}],
                    "pwquality_lines": [], "root": "/etc/pam.d/common-password"}],
                "pwquality_settings_from_files": {
                    "minlen": {"source": "the libpwquality default", "value": 8},
                    "minclass": {"source": "the libpwquality default", "value": 0},
                    "dictcheck": {"source": "the libpwquality default", "value": 1}}
            }),
            "Ask IT to install the password-quality policy package (libpam-pwquality with the \
             organisation's settings).",
        ),
        bench_check(
            RuleId::USB_STORAGE,
            CheckStatus::Pass,
            "USB mass storage is blocked: usb-storage is blacklisted and usbguard is active",
            json!({
                "usb_storage_module": {"loaded": false, "blacklisted_in": "/etc/modprobe.d/palisade-usb.conf"},
                "usbguard": {"active": true, "implicit_policy_target": "block"},
                "mounted_usb_storage": []
            }),
            "",
        ),
    ];
    report
}

fn bench_check(
    id: &str,
    status: CheckStatus,
    summary: &str,
    evidence: serde_json::Value,
    fix: &str,
) -> CheckResult {
    CheckResult {
        id: RuleId::new(id),
        status,
        mode: Mode::Audit,
        summary: summary.into(),
        evidence: match evidence {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
        fix: fix.into(),
        probe_duration_us: 950,
        enforcement: None,
        first_failed_at: None,
        deadline: None,
    }
}

/// Signs the device's next report and advances its chain: the envelope as
/// sent, and the report it carries.
fn sign(device: &mut SimulatedDevice) -> (Vec<u8>, Report) {
    let report = bench_report(device);
    let envelope = device.sign_and_advance(&report);
    (envelope.to_json(), report)
}

/// The row the ingest handler hands to the batcher for this envelope
/// (collector/src/server/reports.rs, `accept`).
fn incoming_report(
    device_id: &str,
    key_id: &str,
    body: Vec<u8>,
    report: &Report,
) -> IncomingReport {
    IncomingReport {
        device_id: device_id.to_owned(),
        key_id: key_id.to_owned(),
        sequence: report.sequence,
        digest: sha256_hex(&report.to_payload()),
        prev_digest: report.prev_digest.clone(),
        issued_at: report.issued_at,
        received_at: Utc::now(),
        envelope: body,
        hostname: report.host.hostname.clone(),
        os_name: report.host.os_name.clone(),
        os_version: report.host.os_version.clone(),
        agent_version: report.agent.version.clone(),
        console_user: report.host.console_user.clone(),
        policy_id: report.policy.id.clone(),
        policy_version: report.policy.version,
        verdicts: report
            .checks
            .iter()
            .map(|check| IncomingVerdict {
                rule_id: check.id.as_str().to_owned(),
                status: check.status,
                mode: check.mode.as_str().to_owned(),
                summary: check.summary.clone(),
                evidence_json: serde_json::Value::Object(check.evidence.clone()).to_string(),
                fix: check.fix.clone(),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// 1. Verification.

#[derive(Debug)]
struct VerifyResult {
    threads: usize,
    /// `verify_strict` alone, reports per second.
    raw_per_second: f64,
    /// Envelope parse + verify + report parse + digest, reports per second.
    handler_per_second: f64,
}

struct VerifySample {
    key: VerifyingKey,
    pae: Vec<u8>,
    signature: Signature,
    body: Vec<u8>,
}

fn verification_limit(threads: usize, duration: Duration) -> anyhow::Result<VerifyResult> {
    let mut samples = Vec::new();
    let mut keys = HashMap::new();
    for i in 0..VERIFY_DEVICES {
        let mut device = SimulatedDevice::new(&format!("verify-{i:03}"));
        device.device_id = Some(format!("dev_verify_{i:03}"));
        let key = device.key.verifying_key();
        keys.insert(KeyId::of(&key), key);
        for _ in 0..VERIFY_REPORTS_PER_DEVICE {
            let (body, report) = sign(&mut device);
            let pae = pre_authentication_encoding(REPORT_PAYLOAD_TYPE, &report.to_payload());
            // Ed25519 signatures are deterministic: this is the envelope's.
            let signature = device.key.sign(&pae);
            samples.push(VerifySample {
                key,
                pae,
                signature,
                body,
            });
        }
    }
    let samples = Arc::new(samples);
    let keys = Arc::new(keys);

    let raw = run_on_threads(threads, duration, &samples, |sample| {
        sample
            .key
            .verify_strict(&sample.pae, &sample.signature)
            .is_ok()
    });
    let handler = run_on_threads(threads, duration, &samples, |sample| {
        let Ok(envelope) = Envelope::from_json(&sample.body, usize::MAX) else {
            return false;
        };
        let Ok(verified) = envelope.verify(REPORT_PAYLOAD_TYPE, |id| keys.get(id).copied()) else {
            return false;
        };
        let digest = sha256_hex(&verified.payload);
        Report::from_json(&verified.payload).is_ok() && !digest.is_empty()
    });
    Ok(VerifyResult {
        threads,
        raw_per_second: raw?,
        handler_per_second: handler?,
    })
}

/// Runs `work` over the samples on `threads` threads for `duration`; every
/// call must return true. Returns calls per second, all threads together.
fn run_on_threads(
    threads: usize,
    duration: Duration,
    samples: &Arc<Vec<VerifySample>>,
    work: impl Fn(&VerifySample) -> bool + Sync,
) -> anyhow::Result<f64> {
    let start_line = Barrier::new(threads + 1);
    let (counts, elapsed) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let (start_line, work) = (&start_line, &work);
                scope.spawn(move || {
                    start_line.wait();
                    let started = Instant::now();
                    let (mut done, mut failed) = (0u64, 0u64);
                    let mut index = thread * samples.len() / threads;
                    while started.elapsed() < duration {
                        // Check the clock once per 64 calls, not per call.
                        for _ in 0..64 {
                            let sample = &samples[index % samples.len()];
                            if !std::hint::black_box(work(sample)) {
                                failed += 1;
                            }
                            index += 1;
                            done += 1;
                        }
                    }
                    (done, failed, started.elapsed())
                })
            })
            .collect();
        start_line.wait();
        let mut counts = (0u64, 0u64);
        let mut elapsed = Duration::ZERO;
        for handle in handles {
            if let Ok((done, failed, took)) = handle.join() {
                counts.0 += done;
                counts.1 += failed;
                elapsed = elapsed.max(took);
            }
        }
        (counts, elapsed)
    });
    ensure!(
        counts.1 == 0,
        "{} of {} verifications failed",
        counts.1,
        counts.0
    );
    Ok(counts.0 as f64 / elapsed.as_secs_f64())
}

// ---------------------------------------------------------------------------
// 2. The store on its own.

#[derive(Debug)]
struct StoreResult {
    reports: usize,
    batch: usize,
    per_second: f64,
    /// Time of one `store_reports` call.
    batch_p50: Duration,
    batch_p99: Duration,
    /// CPU seconds this process used (all of SQLite's work; for PostgreSQL
    /// only the client side).
    own_cpu: f64,
    /// CPU seconds of the PostgreSQL backends serving the database.
    postgres_cpu: Option<f64>,
    /// How the SQLite writer thread spent the phase (SQLite only).
    sqlite_writer: Option<ThreadShare>,
    /// Share of the whole machine's CPU time that was busy.
    machine_busy: f64,
}

async fn store_limit(url: &str, args: &Args) -> anyhow::Result<StoreResult> {
    let store = Store::open(url)
        .await
        .with_context(|| format!("cannot open the store at {url}"))?;
    let secret = secrets::generate("pls");
    store
        .create_enrollment_secret(&NewEnrollmentSecret {
            id: secret.id.clone(),
            secret_hash: secret.hash,
            label: "ingest_bench".into(),
            max_uses: None,
            expires_at: None,
            created_at: Utc::now(),
            created_by: "ingest_bench".into(),
        })
        .await?;

    // Enroll every device through the store, a few at a time (not timed).
    let mut devices = Vec::with_capacity(args.devices);
    let mut enrolling = tokio::task::JoinSet::new();
    for i in 0..args.devices {
        let mut device = SimulatedDevice::new(&format!("store-{i:05}"));
        let device_id = format!("dev_{:032x}", rand::random::<u128>());
        device.device_id = Some(device_id.clone());
        let key = device.key.verifying_key();
        let request = EnrollDevice {
            secret_id: secret.id.clone(),
            presented_hash: secret.hash,
            device_id,
            key_id: KeyId::of(&key).as_str().to_owned(),
            public_key: key.to_bytes(),
            hostname: device.hostname.clone(),
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            kernel_version: "6.1.0-26-amd64".into(),
            arch: "x86_64".into(),
            agent_version: "0.1.0".into(),
            at: Utc::now(),
            peer: "127.0.0.1".into(),
        };
        let store = store.clone();
        enrolling.spawn(async move { store.enroll_device(&request).await });
        devices.push(device);
        while enrolling.len() >= ENROLL_CONCURRENCY {
            finish_one_enrollment(&mut enrolling).await?;
        }
    }
    while !enrolling.is_empty() {
        finish_one_enrollment(&mut enrolling).await?;
    }

    // The rows, round by round: every batch holds many devices, as the
    // batcher's do when a fleet reports at once.
    let mut rows = Vec::with_capacity(args.devices * args.reports_per_device);
    for _ in 0..args.reports_per_device {
        for device in &mut devices {
            let (body, report) = sign(device);
            let key_id = KeyId::of(&device.key.verifying_key());
            let device_id = device.device_id.clone().unwrap_or_default();
            rows.push(incoming_report(&device_id, key_id.as_str(), body, &report));
        }
    }

    let cap = Duration::from_secs(args.time_cap_seconds);
    let own_cpu_before = process_cpu_seconds(std::process::id())?;
    let postgres_database = url.starts_with("postgres").then_some(url);
    let postgres_before = postgres_backends_cpu(postgres_database)?;
    let sqlite_before = sqlite_threads(std::process::id());
    let machine_before = machine_cpu_ticks()?;
    let started = Instant::now();
    let mut batch_times = Vec::new();
    let mut stored = 0;
    for batch in rows.chunks(args.store_batch) {
        if started.elapsed() > cap {
            break;
        }
        let batch_started = Instant::now();
        let outcomes = store.store_reports(batch).await?;
        batch_times.push(batch_started.elapsed());
        for outcome in outcomes {
            ensure!(
                outcome
                    == StoreOutcome::Stored {
                        sequence_gap: false,
                        chain_broken: false
                    },
                "a report was not stored cleanly: {outcome:?}"
            );
            stored += 1;
        }
    }
    let elapsed = started.elapsed();
    let own_cpu = process_cpu_seconds(std::process::id())? - own_cpu_before;
    let postgres_cpu = postgres_since(&postgres_before, postgres_database)?;
    let sqlite_writer =
        sqlite_writer_share(&sqlite_before, &sqlite_threads(std::process::id()), elapsed);
    let machine_after = machine_cpu_ticks()?;
    batch_times.sort_unstable();
    Ok(StoreResult {
        reports: stored,
        batch: args.store_batch,
        per_second: stored as f64 / elapsed.as_secs_f64(),
        own_cpu,
        postgres_cpu,
        sqlite_writer,
        machine_busy: busy_share(machine_before, machine_after),
        batch_p50: percentile(&batch_times, 0.50),
        batch_p99: percentile(&batch_times, 0.99),
    })
}

async fn finish_one_enrollment(
    enrolling: &mut tokio::task::JoinSet<
        Result<
            Result<palisade_collector::store::Enrolled, palisade_collector::store::EnrollRefusal>,
            palisade_collector::store::StoreError,
        >,
    >,
) -> anyhow::Result<()> {
    if let Some(joined) = enrolling.join_next().await {
        match joined?? {
            Ok(_) => {}
            Err(refusal) => bail!("the store refused an enrollment: {refusal:?}"),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. End to end.

#[derive(Debug)]
struct IngestResult {
    sent: usize,
    created: usize,
    /// Answers other than 201, by status (0: no answer).
    refused: HashMap<u16, usize>,
    elapsed: Duration,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// CPU seconds used during the timed phase.
    collector_cpu: f64,
    client_cpu: f64,
    /// CPU seconds of the PostgreSQL backends serving the collector's
    /// database (`None` for SQLite, which works inside the collector).
    postgres_cpu: Option<f64>,
    /// How the collector's SQLite writer thread spent the phase.
    sqlite_writer: Option<ThreadShare>,
    /// Share of the whole machine's CPU time that was busy.
    machine_busy: f64,
    /// Reports in the database afterwards.
    stored: u64,
    /// Group commits during the timed phase, and the largest.
    commits: usize,
    largest_batch: usize,
}

#[derive(Debug, Default)]
struct DeviceRun {
    latencies: Vec<Duration>,
    created: usize,
    refused: HashMap<u16, usize>,
}

fn end_to_end(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    postgres_server: Option<&str>,
    args: &Args,
) -> anyhow::Result<IngestResult> {
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let database =
        postgres_server.map(|server| fresh_postgres_database_on(server, "ingest_bench_e2e"));
    // The batcher logs each commit's size at debug level.
    let mut collector = RunningCollector::start_logging(
        dir.path(),
        database.as_deref(),
        "info,palisade_collector::ingest::batcher=debug",
    );
    let secret = collector.create_secret(&["--label", "ingest_bench"]);
    let url = collector.url.clone();

    // Enroll over the API (not timed), then sign every report in advance so
    // the timed phase spends no client CPU on signatures.
    let devices = runtime.block_on(enroll_over_api(&collector, &secret, args.devices))?;
    let mut work = Vec::with_capacity(devices.len());
    for mut device in devices {
        let mut bodies = Vec::with_capacity(args.reports_per_device);
        for _ in 0..args.reports_per_device {
            bodies.push(sign(&mut device).0);
        }
        // One client per device, so one connection (and one TLS handshake,
        // inside the timed phase) per device, as with real agents.
        work.push((collector.client(), bodies));
    }

    let perf = match &args.perf_dir {
        Some(dir) => Some(start_perf(dir, name, collector.pid())?),
        None => None,
    };
    let batches_before = committed_batches(&collector.log()).len();
    let collector_cpu_before = process_cpu_seconds(collector.pid())?;
    let client_cpu_before = process_cpu_seconds(std::process::id())?;
    let postgres_before = postgres_backends_cpu(database.as_deref())?;
    let sqlite_before = sqlite_threads(collector.pid());
    let machine_before = machine_cpu_ticks()?;
    let cap = Duration::from_secs(args.time_cap_seconds);
    let (runs, elapsed) = runtime.block_on(send_all(&url, work, cap))?;
    let sqlite_writer =
        sqlite_writer_share(&sqlite_before, &sqlite_threads(collector.pid()), elapsed);
    let collector_cpu = process_cpu_seconds(collector.pid())? - collector_cpu_before;
    let client_cpu = process_cpu_seconds(std::process::id())? - client_cpu_before;
    let postgres_cpu = postgres_since(&postgres_before, database.as_deref())?;
    let machine_after = machine_cpu_ticks()?;
    if let Some(perf) = perf {
        stop_perf(perf)?;
    }

    let exit = collector.stop();
    let batches: Vec<usize> = committed_batches(&collector.log())
        .into_iter()
        .skip(batches_before)
        .collect();
    ensure!(
        exit == Some(0),
        "the collector exited with {exit:?}\n--- log ---\n{}",
        collector.log()
    );
    let stored = runtime.block_on(async {
        let store = Store::open(&collector.database_url).await?;
        store.count_reports().await
    })?;

    let mut latencies = Vec::new();
    let mut created = 0;
    let mut refused: HashMap<u16, usize> = HashMap::new();
    for run in runs {
        latencies.extend(run.latencies);
        created += run.created;
        for (status, n) in run.refused {
            *refused.entry(status).or_default() += n;
        }
    }
    latencies.sort_unstable();
    Ok(IngestResult {
        sent: latencies.len() + refused.get(&0).copied().unwrap_or(0),
        created,
        refused,
        elapsed,
        per_second: created as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
        collector_cpu,
        client_cpu,
        postgres_cpu,
        sqlite_writer,
        machine_busy: busy_share(machine_before, machine_after),
        stored,
        commits: batches.len(),
        largest_batch: batches.iter().copied().max().unwrap_or(0),
    })
}

async fn enroll_over_api(
    collector: &RunningCollector,
    secret: &str,
    count: usize,
) -> anyhow::Result<Vec<SimulatedDevice>> {
    let client = collector.client();
    let url = format!("{}/api/v1/enroll", collector.url);
    let mut enrolling = tokio::task::JoinSet::new();
    let mut devices = Vec::with_capacity(count);
    for i in 0..count {
        let device = SimulatedDevice::new(&format!("bench-{i:05}"));
        let body = device.enroll_envelope(secret, Utc::now()).to_json();
        let (client, url) = (client.clone(), url.clone());
        enrolling.spawn(async move {
            let response = client.post(&url).body(body).send().await?;
            let status = response.status();
            let answer: serde_json::Value = response.json().await?;
            ensure!(status == 201, "enrollment answered {status}: {answer}");
            let device_id = answer["device_id"]
                .as_str()
                .context("no device_id in the enrollment answer")?
                .to_owned();
            Ok::<_, anyhow::Error>((device, device_id))
        });
        while enrolling.len() >= ENROLL_CONCURRENCY || (i + 1 == count && !enrolling.is_empty()) {
            if let Some(joined) = enrolling.join_next().await {
                let (mut device, device_id) = joined??;
                device.device_id = Some(device_id);
                devices.push(device);
            }
        }
    }
    Ok(devices)
}

/// Every device sends its reports in order, all devices at once; returns
/// each device's run and the time from the start until the last answer.
async fn send_all(
    url: &str,
    work: Vec<(reqwest::Client, Vec<Vec<u8>>)>,
    cap: Duration,
) -> anyhow::Result<(Vec<DeviceRun>, Duration)> {
    let url = format!("{url}/api/v1/reports");
    let start_line = Arc::new(tokio::sync::Barrier::new(work.len() + 1));
    let mut senders = Vec::with_capacity(work.len());
    for (client, bodies) in work {
        let (url, start_line) = (url.clone(), start_line.clone());
        senders.push(tokio::spawn(async move {
            start_line.wait().await;
            let started = Instant::now();
            let mut run = DeviceRun::default();
            for body in bodies {
                if started.elapsed() > cap {
                    break;
                }
                let sent_at = Instant::now();
                let status = match client.post(&url).body(body).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // Read the whole answer: the latency is until the
                        // device has its acknowledgement.
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                if status != 0 {
                    run.latencies.push(sent_at.elapsed());
                }
                if status == 201 {
                    run.created += 1;
                } else {
                    *run.refused.entry(status).or_default() += 1;
                    // A refused link breaks the device's chain; stop it.
                    break;
                }
            }
            (run, Instant::now())
        }));
    }
    start_line.wait().await;
    let started = Instant::now();
    let mut runs = Vec::with_capacity(senders.len());
    let mut last = started;
    for sender in senders {
        let (run, finished) = sender.await?;
        last = last.max(finished);
        runs.push(run);
    }
    Ok((runs, last - started))
}

// ---------------------------------------------------------------------------
// Measuring the machine.

/// User plus system CPU seconds a process has used so far.
fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let after_name = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path} has no command name"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file; field 3 is index 0.
    let ticks = |index: usize| -> anyhow::Result<f64> {
        let field = fields
            .get(index)
            .with_context(|| format!("{path} is too short"))?;
        Ok(field.parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / USER_HZ)
}

/// How a thread spent a phase, as shares of its wall time.
#[derive(Debug, Clone, Copy)]
struct ThreadShare {
    on_cpu: f64,
    /// Runnable but waiting for a CPU (another thread had it).
    waiting: f64,
}

/// (on-CPU, waiting-for-a-CPU) nanoseconds so far of every `sqlx-sqlite`
/// thread of process `pid`, by thread id, from `/proc/PID/task/TID/schedstat`.
/// One of them is the SQLite store's only writer connection.
fn sqlite_threads(pid: u32) -> HashMap<u32, (u64, u64)> {
    let mut threads = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let is_sqlite = std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|comm| comm.starts_with("sqlx-sqlite"));
        let times = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|text| {
                let mut fields = text.split_whitespace().map(str::parse::<u64>);
                Some((fields.next()?.ok()?, fields.next()?.ok()?))
            });
        if let (true, Some(times)) = (is_sqlite, times) {
            threads.insert(tid, times);
        }
    }
    threads
}

/// The SQLite writer's share of `wall` between two [`sqlite_threads`]
/// snapshots: the thread that was on a CPU longest (the readers only look up
/// keys).
fn sqlite_writer_share(
    before: &HashMap<u32, (u64, u64)>,
    after: &HashMap<u32, (u64, u64)>,
    wall: Duration,
) -> Option<ThreadShare> {
    let wall = wall.as_nanos() as f64;
    after
        .iter()
        .map(|(tid, (on_cpu, waiting))| {
            let (on_cpu_before, waiting_before) = before.get(tid).copied().unwrap_or((0, 0));
            (
                on_cpu.saturating_sub(on_cpu_before),
                waiting.saturating_sub(waiting_before),
            )
        })
        .max_by_key(|(on_cpu, _)| *on_cpu)
        .filter(|_| wall > 0.0)
        .map(|(on_cpu, waiting)| ThreadShare {
            on_cpu: on_cpu as f64 / wall,
            waiting: waiting as f64 / wall,
        })
}

/// CPU seconds so far of each PostgreSQL backend serving the database at
/// `database_url`, by process id; empty for `None`. A backend's process
/// title names its database (`postgres: USER DATABASE HOST(PORT) STATE`).
/// The server's shared processes (WAL writer, checkpointer) are not counted.
fn postgres_backends_cpu(database_url: Option<&str>) -> anyhow::Result<HashMap<u32, f64>> {
    let mut backends = HashMap::new();
    let Some(url) = database_url else {
        return Ok(backends);
    };
    let database = url.rsplit_once('/').map_or(url, |(_, name)| name);
    let needle = format!("postgres: postgres {database} ");
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).starts_with(&needle) {
            // A backend may exit between the two reads; skip it then.
            if let Ok(seconds) = process_cpu_seconds(pid) {
                backends.insert(pid, seconds);
            }
        }
    }
    Ok(backends)
}

/// CPU seconds the database's backends used since `before` (backends that
/// started since count whole).
fn postgres_since(
    before: &HashMap<u32, f64>,
    database_url: Option<&str>,
) -> anyhow::Result<Option<f64>> {
    if database_url.is_none() {
        return Ok(None);
    }
    let after = postgres_backends_cpu(database_url)?;
    Ok(Some(
        after
            .iter()
            .map(|(pid, seconds)| seconds - before.get(pid).copied().unwrap_or(0.0))
            .sum(),
    ))
}

/// The sizes of the group commits the collector has logged so far.
fn committed_batches(log: &str) -> Vec<usize> {
    log.lines()
        .filter(|line| line.contains("committed report batch"))
        .filter_map(|line| {
            let (_, rest) = line.split_once("batch=")?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// (busy, total) ticks of all CPUs since boot, from /proc/stat.
fn machine_cpu_ticks() -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let line = text
        .lines()
        .next()
        .filter(|line| line.starts_with("cpu "))
        .context("/proc/stat has no cpu line")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    ensure!(values.len() == 8, "/proc/stat cpu line is too short");
    // user nice system idle iowait irq softirq steal
    let idle = values[3] + values[4];
    let total: u64 = values.iter().sum();
    Ok((total - idle, total))
}

/// The busy share of the machine's CPU time between two `machine_cpu_ticks`.
fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let busy = after.0.saturating_sub(before.0) as f64;
    let total = after.1.saturating_sub(before.1) as f64;
    if total > 0.0 { busy / total } else { 0.0 }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn start_perf(dir: &Path, name: &str, pid: u32) -> anyhow::Result<std::process::Child> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let output = dir.join(format!("perf-{}.data", name.to_ascii_lowercase()));
    std::process::Command::new("perf")
        // DWARF call graphs: the release profile keeps no frame pointers.
        .args([
            "record",
            "-q",
            "-F",
            "499",
            "--call-graph",
            "dwarf,16384",
            "-o",
        ])
        .arg(&output)
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot start perf")
}

fn stop_perf(mut perf: std::process::Child) -> anyhow::Result<()> {
    let pid = perf.id().to_string();
    let _ = palisade_tests::run(Path::new("/bin/kill"), &["-INT", &pid], &[]);
    perf.wait().context("perf did not stop")?;
    Ok(())
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------
// The page.

/// One store's runs: the store on its own, and end to end.
#[derive(Debug)]
struct StoreRuns {
    name: &'static str,
    store: Vec<StoreResult>,
    ingest: Vec<IngestResult>,
}

struct ResultsPage<'a> {
    args: &'a Args,
    cores: usize,
    cpu: String,
    load_before: String,
    load_after: String,
    payload_bytes: usize,
    envelope_bytes: usize,
    verify: &'a [VerifyResult],
    stores: &'a [StoreRuns],
}

/// The run with the highest `rate`, and every run's rate in run order.
fn best<T>(runs: &[T], rate: impl Fn(&T) -> f64) -> Option<(&T, String)> {
    let best = runs.iter().max_by(|a, b| rate(a).total_cmp(&rate(b)))?;
    let all = runs
        .iter()
        .map(|run| thousands(rate(run)))
        .collect::<Vec<_>>()
        .join(" / ");
    Some((best, all))
}

fn print_results(page: &ResultsPage<'_>) {
    let args = page.args;
    println!(
        "Machine: {} cores ({}); load average {} before, {} after.",
        page.cores, page.cpu, page.load_before, page.load_after
    );
    println!(
        "Reports: {} B payload, {} B envelope; {} devices x {} reports each; time cap {} s; best of {} runs.",
        page.payload_bytes,
        page.envelope_bytes,
        args.devices,
        args.reports_per_device,
        args.time_cap_seconds,
        args.runs
    );
    println!();
    println!("| measurement | store | reports/s (best) | every run | p50 | p99 |");
    println!("|---|---|---:|---|---:|---:|");
    let threads = page.verify.first().map_or(0, |v| v.threads);
    let raw = best(page.verify, |v| v.raw_per_second);
    if let Some((verify, all)) = &raw {
        println!(
            "| Ed25519 `verify_strict` of report PAEs, {threads} threads | — | {} | {all} | | |",
            thousands(verify.raw_per_second)
        );
    }
    if let Some((verify, all)) = best(page.verify, |v| v.handler_per_second) {
        println!(
            "| parse envelope + verify + parse report + digest (no TLS, HTTP, store), {threads} threads | — | {} | {all} | | |",
            thousands(verify.handler_per_second)
        );
    }
    for runs in page.stores {
        if let Some((store, all)) = best(&runs.store, |s| s.per_second) {
            println!(
                "| `store_reports`, batches of {}, one writer (p50/p99 per batch) | {} | {} | {all} | {} | {} |",
                store.batch,
                runs.name,
                thousands(store.per_second),
                millis(store.batch_p50),
                millis(store.batch_p99),
            );
        }
    }
    for runs in page.stores {
        if let Some((ingest, all)) = best(&runs.ingest, |i| i.per_second) {
            println!(
                "| HTTPS ingest, {} devices at once (p50/p99 per request) | {} | {} | {all} | {} | {} |",
                args.devices,
                runs.name,
                thousands(ingest.per_second),
                millis(ingest.p50),
                millis(ingest.p99),
            );
        }
    }

    println!();
    println!("CPU per report in the best runs (user + system time from /proc):");
    println!();
    println!("| run | store | CPU µs per report | machine busy | SQLite writer thread | notes |");
    println!("|---|---|---|---:|---|---|");
    for runs in page.stores {
        if let Some((store, _)) = best(&runs.store, |s| s.per_second) {
            println!(
                "| store on its own | {} | {} | {:.0}% | {} | {} reports |",
                runs.name,
                cpu_per_report(
                    &[
                        ("bench process", Some(store.own_cpu)),
                        ("PostgreSQL backends", store.postgres_cpu),
                    ],
                    store.reports
                ),
                store.machine_busy * 100.0,
                thread_share(store.sqlite_writer),
                store.reports
            );
        }
        if let Some((ingest, _)) = best(&runs.ingest, |i| i.per_second) {
            let refused = if ingest.refused.is_empty() {
                "none refused".to_owned()
            } else {
                let mut statuses: Vec<_> = ingest.refused.iter().collect();
                statuses.sort();
                statuses
                    .iter()
                    .map(|(status, n)| format!("{n}x {status}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "| end to end | {} | {} | {:.0}% | {} | {} of {} got 201 in {:.2} s ({refused}), {} in the database; {} group commits (largest {}); slowest answer {} |",
                runs.name,
                cpu_per_report(
                    &[
                        ("collector", Some(ingest.collector_cpu)),
                        ("PostgreSQL backends", ingest.postgres_cpu),
                        ("client", Some(ingest.client_cpu)),
                    ],
                    ingest.created
                ),
                ingest.machine_busy * 100.0,
                thread_share(ingest.sqlite_writer),
                ingest.created,
                ingest.sent,
                ingest.elapsed.as_secs_f64(),
                ingest.stored,
                ingest.commits,
                ingest.largest_batch,
                millis(ingest.max),
            );
        }
    }

    println!();
    let Some((verify, _)) = raw else { return };
    for runs in page.stores {
        let (Some((store, _)), Some((ingest, _))) = (
            best(&runs.store, |s| s.per_second),
            best(&runs.ingest, |i| i.per_second),
        ) else {
            println!("- {}: end to end not measured.", runs.name);
            continue;
        };
        let limit = verify.raw_per_second.min(store.per_second);
        let which = if verify.raw_per_second <= store.per_second {
            "verification"
        } else {
            "the store"
        };
        let aim = limit / 2.0;
        println!(
            "- {}: ingest {} reports/s; aim ≥ {} (half of the slower limit, {which} at {}): {} ({:.0}% of the limit).",
            runs.name,
            thousands(ingest.per_second),
            thousands(aim),
            thousands(limit),
            if ingest.per_second >= aim {
                "**met**"
            } else {
                "**not met**"
            },
            100.0 * ingest.per_second / limit
        );
    }
}

/// `on a CPU 60%, waiting for one 30%` of the phase, or a dash.
fn thread_share(share: Option<ThreadShare>) -> String {
    share.map_or("—".into(), |share| {
        format!(
            "on a CPU {:.0}%, waiting for one {:.0}%",
            share.on_cpu * 100.0,
            share.waiting * 100.0
        )
    })
}

/// `collector 700 µs, client 170 µs`: CPU microseconds per report of each
/// process that was measured.
fn cpu_per_report(parts: &[(&str, Option<f64>)], reports: usize) -> String {
    parts
        .iter()
        .filter_map(|(who, seconds)| {
            let seconds = (*seconds)?;
            let micros = if reports == 0 {
                0.0
            } else {
                seconds * 1e6 / reports as f64
            };
            Some(format!("{who} {micros:.0} µs"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn millis(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// A rate rounded to a whole number, with thousands separated by commas.
fn thousands(value: f64) -> String {
    let whole = value.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
