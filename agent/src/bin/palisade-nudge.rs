//! `palisade-nudge`: the nudge helper alone, the same as `palisade-agent
//! nudge`. It exists for Windows, where the Run key starts it at every
//! logon: built for the GUI subsystem, it opens no console window, which
//! `palisade-agent.exe` (a console program, for its CLI) would. Linux and
//! macOS may start either.
//!
//! With no console there is no stderr to read, so on Windows it logs to
//! `%LOCALAPPDATA%\Palisade\nudge.log` unless `--log-file` says otherwise;
//! elsewhere it logs to stderr unless `--log-file` is given.
#![cfg_attr(windows, windows_subsystem = "windows")]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use clap::Parser;
use palisade_agent::cli::{exit, nudge};

/// A log file past this size is moved to `<name>.old` when the helper
/// starts (one generation kept), so a helper that warns every minute for
/// months cannot fill the user's disk.
const MAX_LOG_BYTES: u64 = 1024 * 1024;

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
        tracing::warn!(target: "palisade_agent::nudge", error = %format!("{err:#}"), "logging to stderr instead");
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
            tracing::error!(target: "palisade_agent::nudge", error = %format!("{err:#}"), "palisade-nudge stopped");
            eprintln!("palisade-nudge: {err:#}");
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

/// Opens `path` for appending, making its directory and moving an
/// oversized old log aside first.
fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    use anyhow::Context as _;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the log directory {}", parent.display()))?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
        let mut old = path.as_os_str().to_owned();
        old.push(".old");
        std::fs::rename(path, &old)
            .with_context(|| format!("cannot move the full log {} aside", path.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the log file {}", path.display()))
}
