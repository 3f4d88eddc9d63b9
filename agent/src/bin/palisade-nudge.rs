//! `palisade-nudge`: the nudge helper alone, the same as `palisade-agent
//! nudge`. It exists for Windows, where the Run key starts it at every
//! logon: built for the GUI subsystem, it opens no console window, which
//! `palisade-agent.exe` (a console program, for its CLI) would. Linux and
//! macOS may start either.
//!
//! With no console there is no stderr to read, so on Windows it logs to
//! `%LOCALAPPDATA%\Palisade\nudge.log` unless `--log-file` says otherwise;
//! elsewhere it logs to stderr unless `--log-file` is given. A log past
//! `cli::log_file::MAX_LOG_BYTES` is moved aside at start.
#![cfg_attr(windows, windows_subsystem = "windows")]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use clap::Parser;
use palisade_agent::cli::log_file::open_log;
use palisade_agent::cli::{exit, nudge};
use palisade_shared::error_text::describe;

/// Shows desktop notifications for the failing rules the daemon reports.
#[derive(Debug, Parser)]
#[command(name = "palisade-nudge", version)]
struct NudgeCli {
    #[command(flatten)]
    args: nudge::NudgeArgs,
    /// Append the log here instead of writing it to stderr [default on
    /// Windows: %LOCALAPPDATA%\Palisade\nudge.log].
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = NudgeCli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let log_file = cli.log_file.clone().or_else(default_log_file);
    let mut log_problem = None;
    match log_file.as_deref().map(open_log) {
        Some(Ok(file)) => logger.with_writer(Mutex::new(file)).init(),
        Some(Err(err)) => {
            log_problem = Some(err);
            logger.with_writer(std::io::stderr).init();
        }
        None => logger.with_writer(std::io::stderr).init(),
    }
    if let Some(err) = log_problem {
        tracing::warn!(target: "palisade_agent::nudge", error = %describe(&*err), "logging to stderr instead");
    }
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| anyhow::anyhow!("cannot start the async runtime: {err}"))
        .and_then(|runtime| runtime.block_on(nudge::run(&cli.args)));
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // Under the library's target, so `PALISADE_LOG=palisade_agent=…`
            // filters it with the rest of the helper's lines.
            tracing::error!(target: "palisade_agent::nudge", error = %describe(&*err), "palisade-nudge stopped");
            eprintln!("palisade-nudge: {}", describe(&*err));
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Where the log goes when `--log-file` is not given: on Windows a file in
/// the user's local application data; elsewhere stderr (`None`).
fn default_log_file() -> Option<PathBuf> {
    if cfg!(windows) {
        std::env::var_os("LOCALAPPDATA")
            .map(|dir| PathBuf::from(dir).join("Palisade").join("nudge.log"))
    } else {
        None
    }
}
