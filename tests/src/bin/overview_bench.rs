//! `overview_bench`: how long the dashboard's overview (`/`) takes with a
//! large fleet (results in BENCHMARKS.md, "Dashboard overview, 10,000
//! devices").
//!
//! It starts a real `palisade-collector serve` on 127.0.0.1 with a fresh
//! SQLite database (the release build when there is one, else the debug
//! build; it says which), loads `--devices` simulated devices with a month
//! of daily reports through the fleet simulator (`palisade_tests::fleet`,
//! over HTTPS, not timed), logs in through the login form, then requests `/`
//! `--requests` times one after another and reports the server's own time
//! (`Server-Timing: app;dur=`) and the client's (request sent to body read)
//! as min, median, p95 and max; the device list (`/devices`) likewise, for
//! comparison. The aim is under 200 ms of server time for the overview.
//!
//! It only ever connects to the collector it starts, and every loop is
//! bounded by a count.
//!
//! `cargo build --release -p palisade-collector && cargo run --release -p palisade-tests --bin overview_bench`

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use palisade_tests::browser::{DashboardSession, create_user, server_timing_ms};
use palisade_tests::fleet::{DEFAULT_CONCURRENCY, FleetOptions, run_fleet};

/// The password of the benchmark's dashboard user (a throwaway database).
const PASSWORD: &str = "overview-bench-password";

/// How long the collector may take to start listening (migrations on a
/// fresh SQLite file take milliseconds).
const START_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
#[command(about = "Measure the dashboard overview's time with a large simulated fleet")]
struct Args {
    /// Simulated devices.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Days of history per device.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Hours between two reports of one device.
    #[arg(long, default_value_t = 24)]
    interval_hours: u32,
    /// Requests of `/` measured (one more first, to warm up, reported on
    /// its own).
    #[arg(long, default_value_t = 50)]
    requests: usize,
    /// Reports in flight at once while loading.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY * 2)]
    concurrency: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the collector's state here instead of a temporary directory
    /// (it must not exist yet).
    #[arg(long, value_name = "DIR")]
    keep_state: Option<PathBuf>,
}

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("overview_bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.devices > 0, "--devices must be at least 1");
    ensure!(args.requests > 0, "--requests must be at least 1");
    palisade_tests::install_crypto_provider();
    let (collector_bin, profile) = collector_binary()?;
    eprintln!(
        "overview_bench: {} build of the collector ({}); {} cores, load average {}",
        profile,
        collector_bin.display(),
        std::thread::available_parallelism().map_or(1, usize::from),
        load_average()
    );

    let temporary = tempfile::tempdir().context("cannot make a temporary directory")?;
    let state_dir = match &args.keep_state {
        Some(dir) => {
            ensure!(
                !dir.exists(),
                "--keep-state {} exists already",
                dir.display()
            );
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make {}", dir.display()))?;
            dir.clone()
        }
        None => temporary.path().to_path_buf(),
    };
    let mut collector = Collector::start(&collector_bin, &state_dir)?;
    let state = state_dir.display().to_string();
    let store = ["--state-dir", state.as_str()];
    let made = create_user(&collector_bin, &store, "bench", "admin", PASSWORD);
    ensure!(made.exit_code == Some(0), "{}", made.dump());
    let uses = args.devices.to_string();
    let mut secret_args = vec!["secret", "create", "--uses", uses.as_str()];
    secret_args.extend_from_slice(&store);
    let secret = palisade_tests::run(&collector_bin, &secret_args, &[]);
    ensure!(secret.exit_code == Some(0), "{}", secret.dump());
    let ca_pem = std::fs::read(state_dir.join("tls/cert.pem")).context("no certificate")?;

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    eprintln!(
        "overview_bench: loading {} devices with {} days of reports every {} h",
        args.devices, args.days, args.interval_hours
    );
    let fleet = runtime.block_on(run_fleet(&FleetOptions {
        collector_url: collector.url.clone(),
        ca_pem: ca_pem.clone(),
        secret: secret.stdout.trim().to_owned(),
        count: args.devices,
        days: args.days,
        interval_hours: args.interval_hours,
        seed: args.seed,
        concurrency: args.concurrency,
    }));
    let fleet = match fleet {
        Ok(fleet) => fleet,
        Err(err) => bail!("{err:#}\n--- collector log ---\n{}", collector.log()),
    };
    eprintln!("overview_bench: {}", fleet.summary_line(args.days));
    let database_bytes = std::fs::metadata(state_dir.join("collector.db")).map_or(0, |m| m.len());

    let load_before = load_average();
    let measured = runtime.block_on(async {
        let session = DashboardSession::login(&collector.url, &ca_pem, "bench", PASSWORD).await?;
        let overview = measure(&session, "/", args.requests, args.devices).await?;
        let devices = measure(&session, "/devices", args.requests.min(20), args.devices).await?;
        anyhow::Ok((overview, devices))
    });
    let load_after = load_average();
    let exit = collector.stop();
    let (overview, devices) = match measured {
        Ok(measured) => measured,
        Err(err) => bail!("{err:#}\n--- collector log ---\n{}", collector.log()),
    };
    ensure!(exit == Some(0), "the collector exited with {exit:?}");

    println!(
        "collector: {profile} build; {} devices, {} reports (every {} h over {} days), \
         SQLite database {:.0} MiB; loaded in {:.0} s ({:.0} reports/s)",
        fleet.enrolled,
        fleet.reports(),
        args.interval_hours,
        args.days,
        database_bytes as f64 / (1024.0 * 1024.0),
        fleet.elapsed.as_secs_f64(),
        fleet.reports() as f64 / fleet.elapsed.as_secs_f64().max(0.001),
    );
    println!("load average before the requests: {load_before}; after: {load_after}");
    println!("CPU: {}", cpu_model());
    println!();
    println!(
        "| page | requests | first (cold) server / client | server min | median | p95 | max | client min | median | p95 | max |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (page, timings) in [
        ("`/` (overview)", &overview),
        ("`/devices` (first page)", &devices),
    ] {
        let server = sorted(timings.runs.iter().map(|(s, _)| *s));
        let client = sorted(timings.runs.iter().map(|(_, c)| *c));
        println!(
            "| {page} | {} | {:.1} / {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            timings.runs.len(),
            timings.first.0,
            timings.first.1,
            server[0],
            percentile(&server, 0.5),
            percentile(&server, 0.95),
            server[server.len() - 1],
            client[0],
            percentile(&client, 0.5),
            percentile(&client, 0.95),
            client[client.len() - 1],
        );
    }
    let median = percentile(&sorted(overview.runs.iter().map(|(s, _)| *s)), 0.5);
    let p95 = percentile(&sorted(overview.runs.iter().map(|(s, _)| *s)), 0.95);
    println!();
    println!(
        "aim: overview under 200 ms of server time: {} (median {median:.1} ms, p95 {p95:.1} ms)",
        if p95 < 200.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

/// (server ms, client ms) of the first request and of the measured ones.
#[derive(Debug)]
struct Timings {
    first: (f64, f64),
    runs: Vec<(f64, f64)>,
}

/// Requests `path` once to warm up, then `count` times one after another;
/// checks each answer is the page with `devices` devices counted on it
/// (for the overview) or at least a 200 page.
async fn measure(
    session: &DashboardSession,
    path: &str,
    count: usize,
    devices: usize,
) -> anyhow::Result<Timings> {
    let mut first = None;
    let mut runs = Vec::with_capacity(count);
    for _ in 0..=count {
        let sent = Instant::now();
        let response = session.get(path).await?;
        let status = response.status();
        let server = server_timing_ms(response.headers())
            .with_context(|| format!("{path} has no Server-Timing: app;dur= header"))?;
        let body = response.text().await?;
        let client = sent.elapsed().as_secs_f64() * 1000.0;
        ensure!(status == 200, "{path} answered {status}: {body}");
        if path == "/" {
            let total = count_total(&body).context("the overview has no #count-total")?;
            // The fleet plus nothing else: the collector is fresh.
            ensure!(
                total == devices,
                "the overview counts {total} devices, not {devices}"
            );
        }
        match first {
            None => first = Some((server, client)),
            Some(_) => runs.push((server, client)),
        }
    }
    Ok(Timings {
        first: first.unwrap_or_default(),
        runs,
    })
}

/// The number in `id="count-total"`.
fn count_total(html: &str) -> Option<usize> {
    let at = html.find("id=\"count-total\"")?;
    let open = at + html[at..].find('>')? + 1;
    let close = open + html[open..].find('<')?;
    html[open..close].trim().parse().ok()
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values
}

/// Nearest-rank percentile of sorted, non-empty `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    let rank = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// The collector binary: release when built, else debug.
fn collector_binary() -> anyhow::Result<(PathBuf, &'static str)> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    // target/<profile>/overview_bench
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("this executable is not in a cargo target directory")?;
    for profile in ["release", "debug"] {
        let path = target.join(profile).join("palisade-collector");
        if path.is_file() {
            return Ok((path, profile));
        }
    }
    bail!(
        "palisade-collector is not built in {}: run `cargo build --release -p palisade-collector`",
        target.display()
    )
}

/// A collector process of this benchmark.
struct Collector {
    child: Child,
    url: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Collector {
    fn start(binary: &Path, state_dir: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--self-signed-tls",
                "--state-dir",
            ])
            .arg(state_dir)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("PALISADE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let writer = std::sync::Arc::clone(&log);
        let (url_tx, url_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("palisade-collector listening on ") {
                    let _ = url_tx.send(url.trim().to_owned());
                }
                if let Ok(mut log) = writer.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        match url_rx.recv_timeout(START_DEADLINE) {
            Ok(url) => Ok(Self { child, url, log }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                bail!("the collector did not start listening\n--- log ---\n{log}")
            }
        }
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM, then the exit code.
    fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = palisade_tests::run(Path::new("/bin/kill"), &["-TERM", &pid], &[]);
        self.child.wait().ok().and_then(|status| status.code())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
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
        .unwrap_or_else(|| "unknown".into())
}
