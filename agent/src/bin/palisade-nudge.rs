//! `palisade-nudge`: the nudge helper alone, the same as `palisade-agent
//! nudge`. It exists for Windows, where the Run key starts it at every
//! logon: built for the GUI subsystem, it opens no console window, which
//! `palisade-agent.exe` (a console program, for its CLI) would. Linux and
//! macOS may start either.
#![cfg_attr(windows, windows_subsystem = "windows")]

use std::process::ExitCode;

use clap::Parser;
use palisade_agent::cli::{exit, nudge};

/// Shows desktop notifications for the failing rules the daemon reports.
#[derive(Debug, Parser)]
#[command(name = "palisade-nudge", version)]
struct NudgeCli {
    #[command(flatten)]
    args: nudge::NudgeArgs,
}

fn main() -> ExitCode {
    let cli = NudgeCli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| anyhow::anyhow!("cannot start the async runtime: {err}"))
        .and_then(|runtime| runtime.block_on(nudge::run(&cli.args)));
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("palisade-nudge: {err:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}
