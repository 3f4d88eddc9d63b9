//! The command line: one module per subcommand, and the exit codes they share.

pub mod check;
pub mod daemon;
pub mod enforce;
pub mod log_file;
pub mod nudge;
#[cfg(windows)]
pub mod service;

use std::path::Path;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use palisade_shared::Policy;

pub use crate::policy::BASELINE_POLICY;

/// Exit codes, documented in `palisade-agent --help`.
pub mod exit {
    /// Every checked rule passes (or does not apply, or is excepted).
    pub const COMPLIANT: u8 = 0;
    /// At least one rule fails.
    pub const NON_COMPLIANT: u8 = 1;
    /// The command could not run: bad flags, a bad policy file.
    pub const USAGE: u8 = 2;
    /// No rule fails, but at least one could not be determined.
    pub const UNDETERMINED: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(
    name = "palisade-agent",
    version,
    about = "Palisade endpoint posture agent",
    after_help = "Exit codes of `check`: 0 compliant, 1 a rule fails, 3 no failure but \
                  something could not be determined, 2 the command could not run."
)]
pub struct Cli {
    /// Log format on stderr (the daemon logs at info, other commands at warn;
    /// PALISADE_LOG overrides the level).
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormatArg,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check this machine once against the policy and print the verdicts.
    Check(check::CheckArgs),
    /// Enforce the policy's rules on this machine (or show what would change,
    /// or undo a rule's changes).
    Enforce(enforce::EnforceArgs),
    /// Run the daemon: check, report, deliver, until SIGTERM.
    Run(daemon::RunArgs),
    /// Enroll this device with a collector.
    Enroll(daemon::EnrollArgs),
    /// Run the checks once and write the signed report to a file, without sending it.
    Report(daemon::ReportArgs),
    /// Show what the running agent last found, and how delivery is going.
    Status(daemon::StatusArgs),
    /// Print the device id, key id and public key.
    Identity(daemon::IdentityArgs),
    /// Inspect the spool of reports waiting to be sent.
    #[command(subcommand)]
    Spool(daemon::SpoolCommand),
    /// Show this desktop session's user what to fix, as notifications (run at login).
    Nudge(nudge::NudgeArgs),
    /// Run the daemon as a Windows service (the Service Control Manager
    /// starts this; in a console use `run`).
    #[cfg(windows)]
    Service(service::ServiceArgs),
}

impl Command {
    /// Whether this command logs to stderr (everything but the Windows
    /// service, which has none and sets up its own log file).
    pub fn logs_to_stderr(&self) -> bool {
        #[cfg(windows)]
        {
            !matches!(self, Self::Service(_))
        }
        #[cfg(not(windows))]
        {
            true
        }
    }
}

/// Reads and validates a policy file; every problem is reported as
/// `FILE:LINE:COLUMN: KEY: message`.
pub fn load_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    let Some(path) = path else {
        return Policy::parse(BASELINE_POLICY).map_err(|errors| {
            anyhow::anyhow!("the built-in baseline policy is invalid:\n{errors}")
        });
    };
    let (_, policy) = Policy::load_file(path)?;
    Ok(policy)
}

/// For the long-running commands (`run`, `nudge`): registers the SIGTERM
/// and SIGINT handlers now, before anything is announced, so a signal that
/// arrives early is not met by the default action (which would kill the
/// process in the middle of a write), and returns the future that resolves
/// at the first of them.
pub(crate) fn shutdown_signal()
-> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("shutting down: finishing the work in progress");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: finishing the work in progress");
        })
    }
}
