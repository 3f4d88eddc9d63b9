//! `agent_soak`: the agent daemon's memory and CPU per check cycle, over
//! many cycles (issue 4; results in BENCHMARKS.md).
//!
//! It starts a real `palisade-collector serve` and a real `palisade-agent
//! run` (release builds) on 127.0.0.1 in a temporary directory, enrolls the
//! agent, and then drives check cycles through the status socket's
//! `check_now` instead of waiting for the interval: each cycle fetches the
//! policy, runs the four rules against this machine, spools a signed report
//! and delivers it, and the next cycle is asked for only once the collector
//! has acknowledged the report. At the default interval of 900 s an hour is
//! 4 cycles, too few to show a leak; the default 1,000 cycles are about ten
//! days of a laptop's cycles.
//!
//! At each checkpoint it reads the daemon's `VmRSS`, `VmHWM` (peak resident)
//! and `Threads` from `/proc/PID/status` and its user + system CPU time from
//! `/proc/PID/stat`, and prints a Markdown table with the machine's load.
//! It must run as root (`check_now` is root-only) and only on Linux.
//!
//! ```text
//! cargo build --release -p palisade-agent -p palisade-collector
//! cargo run --release -p palisade-tests --bin agent_soak
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use palisade_tests::agent::{self as agent_harness, RunningAgent};
use palisade_tests::collector::RunningCollector;

/// Linux reports process CPU time in clock ticks of `USER_HZ`, which is 100
/// on every architecture Linux supports (`sysconf(_SC_CLK_TCK)`).
const USER_HZ: f64 = 100.0;

/// The issue's aim for the daemon's resident memory.
const AIM_RSS_KIB: u64 = 15 * 1024;

/// The default interval, to translate cycles into time on a laptop.
const INTERVAL_SECONDS: u64 = 900;

#[derive(Debug, Parser)]
#[command(about = "Measure the agent daemon's memory and CPU per check cycle")]
struct Args {
    /// Check cycles in all, the first included.
    #[arg(long, default_value_t = 1000)]
    cycles: u64,
    /// Cycles after which to sample, besides the first and the last.
    #[arg(long, value_delimiter = ',', default_value = "4,10,100,250,500,750")]
    checkpoints: Vec<u64>,
    /// The longest one cycle and its delivery may take before the run is
    /// abandoned.
    #[arg(long, default_value_t = 60)]
    cycle_deadline_seconds: u64,
}

/// The daemon as `/proc` saw it after a number of cycles.
#[derive(Debug, Clone, Copy)]
struct Sample {
    cycles: u64,
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
    cpu_ticks: u64,
    elapsed: Duration,
}

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agent_soak: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.cycles >= 1, "--cycles must be at least 1");
    let deadline = Duration::from_secs(args.cycle_deadline_seconds);
    let load_before = load_average();

    let collector_dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let agent_dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let collector = RunningCollector::start(collector_dir.path(), None);
    let secret = collector.create_secret(&["--uses", "1"]);
    let config = agent_dir.path().join("agent.toml");
    let socket = agent_dir.path().join("agent.sock");
    // Defaults everywhere but the paths: the daemon measured is the one
    // that ships.
    std::fs::write(
        &config,
        format!(
            "collector_url = \"{}\"\nca_file = \"{}\"\nstate_dir = \"{}\"\nsocket_path = \"{}\"\n\
             interval_seconds = {INTERVAL_SECONDS}\n",
            collector.url,
            collector.state_dir.join("tls/cert.pem").display(),
            agent_dir.path().join("state").display(),
            socket.display(),
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let config_arg = config.to_str().context("the temporary path is not UTF-8")?;
    let enrolled = palisade_tests::agent(&["enroll", "--config", config_arg, "--secret", &secret]);
    if enrolled.exit_code != Some(0) {
        bail!("enrollment failed\n{}", enrolled.dump());
    }

    let started = Instant::now();
    let daemon = RunningAgent::start(&config);
    let pid = daemon.pid();
    let mut samples = Vec::new();
    // The first cycle runs at start.
    let mut newest = daemon.wait_for_cycle_after(0, deadline);
    daemon.wait_for_acknowledged(newest, deadline);
    samples.push(sample(pid, 1, started)?);
    let mut done = 1;
    while done < args.cycles {
        agent_harness::check_now(&socket)?;
        let sequence = daemon.wait_for_cycle_after(newest, deadline);
        ensure!(
            sequence == newest + 1,
            "expected report {} from the requested cycle, the daemon spooled {sequence} \
             (a cycle it was not asked for would skew the numbers)",
            newest + 1
        );
        daemon.wait_for_acknowledged(sequence, deadline);
        newest = sequence;
        done += 1;
        if args.checkpoints.contains(&done) || done == args.cycles {
            samples.push(sample(pid, done, started)?);
            eprintln!("agent_soak: {done} cycles");
        }
    }
    let load_after = load_average();
    let status = agent_harness::status(&socket)?;
    ensure!(
        status["spool"]["pending_reports"] == 0,
        "the spool is not empty at the end: {status}"
    );
    drop(daemon);
    drop(collector);

    print_results(&samples, &load_before, &load_after);
    Ok(())
}

fn sample(pid: u32, cycles: u64, started: Instant) -> anyhow::Result<Sample> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{path} has no {name}"))
    };
    Ok(Sample {
        cycles,
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        threads: field("Threads:")?,
        cpu_ticks: process_cpu_ticks(pid)?,
        elapsed: started.elapsed(),
    })
}

/// User + system CPU time of a process in ticks, from `/proc/PID/stat`
/// (fields 14 and 15, counted after the parenthesised command name, which
/// may itself hold spaces).
fn process_cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path} has no command name"))?;
    // After the name: state is field 3, so utime (14) is the 12th.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("{path} field {} is not a number", index + 3))
    };
    Ok(ticks(11)? + ticks(12)?)
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
        .unwrap_or_else(|| "unknown".to_owned())
}

fn print_results(samples: &[Sample], load_before: &str, load_after: &str) {
    println!(
        "| after cycle | time at 900 s a cycle | VmRSS | VmHWM (peak) | threads | CPU since start |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    for sample in samples {
        println!(
            "| {} | {} | {} | {} | {} | {:.0} ms |",
            sample.cycles,
            laptop_time(sample.cycles),
            mib(sample.rss_kib),
            mib(sample.hwm_kib),
            sample.threads,
            ticks_ms(sample.cpu_ticks),
        );
    }
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return;
    };
    println!();
    if let Some(hour) = samples.iter().find(|s| s.cycles == 4) {
        per_cycle("cycles 2–4 (the first hour)", first, hour);
        per_cycle(&format!("cycles 5–{}", last.cycles), hour, last);
    }
    per_cycle(&format!("cycles 2–{}", last.cycles), first, last);
    println!(
        "first cycle, start-up included: {:.0} ms of CPU",
        ticks_ms(first.cpu_ticks)
    );
    let peak = samples.iter().map(|s| s.hwm_kib).max().unwrap_or_default();
    let growth = last.rss_kib as i64 - first.rss_kib as i64;
    println!(
        "resident after cycle 1: {}, after {}: {} ({growth:+} KiB); peak {}",
        mib(first.rss_kib),
        last.cycles,
        mib(last.rss_kib),
        mib(peak)
    );
    println!(
        "aim: under {} resident: {}",
        mib(AIM_RSS_KIB),
        if peak < AIM_RSS_KIB { "met" } else { "MISSED" }
    );
    println!(
        "wall time {:.0} s; load average before {load_before}, after {load_after}",
        last.elapsed.as_secs_f64()
    );
}

fn per_cycle(label: &str, from: &Sample, to: &Sample) {
    let cycles = to.cycles.saturating_sub(from.cycles);
    if cycles == 0 {
        return;
    }
    let ms = ticks_ms(to.cpu_ticks.saturating_sub(from.cpu_ticks)) / cycles as f64;
    let wall = (to.elapsed - from.elapsed).as_secs_f64() / cycles as f64;
    println!("{label}: {ms:.2} ms of CPU per cycle ({wall:.2} s wall per cycle)");
}

fn ticks_ms(ticks: u64) -> f64 {
    ticks as f64 * 1000.0 / USER_HZ
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// How long a laptop takes to run this many cycles at the default interval.
fn laptop_time(cycles: u64) -> String {
    let seconds = cycles * INTERVAL_SECONDS;
    if seconds < 2 * 3600 {
        format!("{} min", seconds / 60)
    } else if seconds < 2 * 86_400 {
        format!("{:.0} h", seconds as f64 / 3600.0)
    } else {
        format!("{:.1} days", seconds as f64 / 86_400.0)
    }
}
