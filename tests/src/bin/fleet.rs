//! `fleet`: enrolls simulated laptops with a collector and sends each a
//! month of signed, backdated posture reports, so the dashboard has a fleet
//! to show (the demo's `--fleet N`).
//!
//! ```text
//! fleet --collector https://127.0.0.1:8443 --ca-file demo-state/collector/tls/cert.pem \
//!       --secret pls_… --count 50 [--days 30] [--seed 1]
//! ```
//!
//! Devices run Windows 11, macOS 14/15, Debian, Ubuntu and Fedora; most
//! improve over the month, some stay failing, about 5% stop reporting days
//! ago (see `palisade_tests::fleet` for what the collector makes of that).
//! The same `--seed` gives the same fleet. It prints one summary line on
//! stdout; errors on stderr, exit code 1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, ensure};
use clap::Parser;
use palisade_tests::fleet::{DEFAULT_CONCURRENCY, FleetOptions, run_fleet};

#[derive(Debug, Parser)]
#[command(
    name = "fleet",
    about = "Enroll simulated devices with a collector and send each a backdated history of reports"
)]
struct Args {
    /// The collector, `https://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    collector: String,
    /// The PEM certificate to trust for the collector (the demo's is
    /// `<state>/collector/tls/cert.pem`).
    #[arg(long, value_name = "PEM")]
    ca_file: PathBuf,
    /// An enrollment secret with at least COUNT uses left.
    #[arg(long, env = "PALISADE_FLEET_SECRET", hide_env_values = true)]
    secret: String,
    /// How many devices to simulate.
    #[arg(long, value_name = "N")]
    count: usize,
    /// How many days back the histories start.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Hours between two reports of one device.
    #[arg(long, default_value_t = 24)]
    interval_hours: u32,
    /// The same seed gives the same hostnames, users, platforms and
    /// histories (the keys are always new).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
}

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fleet: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.count > 0, "--count must be at least 1");
    ensure!(args.days > 0, "--days must be at least 1");
    ensure!(
        args.interval_hours > 0,
        "--interval-hours must be at least 1"
    );
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let ca_pem = std::fs::read(&args.ca_file)
        .with_context(|| format!("cannot read --ca-file {}", args.ca_file.display()))?;
    let options = FleetOptions {
        collector_url: args.collector,
        ca_pem,
        secret: args.secret.trim().to_owned(),
        count: args.count,
        days: args.days,
        interval_hours: args.interval_hours,
        seed: args.seed,
        concurrency: args.concurrency,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let run = runtime.block_on(run_fleet(&options))?;
    println!("{}", run.summary_line(options.days));
    Ok(())
}
