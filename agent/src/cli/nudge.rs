//! `palisade-agent nudge`: flags, config and clock for the nudge helper
//! ([`crate::nudge`]), which runs in each person's desktop session.
//!
//! The config file is read only for `nudge_interval_hours`,
//! `working_hours` and `socket_path`; a user who cannot read it (it may be
//! root's alone) gets the defaults, logged at info, never a refusal: a
//! reminder on the default schedule is better than none.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;

use crate::cli::exit;
use crate::config::{self, AgentConfig, ConfigError};
use crate::nudge::{self, Clock, NudgeOptions, schedule::NudgeSettings};

#[derive(Debug, Args)]
pub struct NudgeArgs {
    /// One pass (read status, show what is due, remember it), then exit.
    /// Without it the helper polls every minute and reacts to its buttons
    /// until SIGTERM.
    #[arg(long)]
    pub once: bool,
    /// The daemon's status socket [default: `socket_path` from the config].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The agent config, for `nudge_interval_hours`, `working_hours` and
    /// `socket_path` [default: the system agent.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where to remember what was shown and snoozed
    /// [default: $XDG_STATE_HOME/palisade/nudge.json].
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Test only: the time is this instant (RFC 3339, e.g.
    /// 2026-11-23T10:00:00Z) for the whole run instead of the system time.
    /// Local time for working hours still comes from TZ.
    #[arg(long, hide = true, value_name = "RFC3339")]
    pub now: Option<DateTime<Utc>>,
}

/// Runs the helper; returns the exit code.
pub async fn run(args: &NudgeArgs) -> anyhow::Result<u8> {
    let config = load_config(args.config.as_deref());
    let memory_path = args
        .state_file
        .clone()
        .or_else(|| nudge::memory::default_memory_path(|name| std::env::var_os(name)));
    if memory_path.is_none() {
        tracing::warn!("no HOME or XDG_STATE_HOME; nudges are remembered only while running");
    }
    let options = NudgeOptions {
        socket_path: args.socket.clone().unwrap_or(config.socket_path.clone()),
        memory_path,
        settings: NudgeSettings::from_config(&config),
        clock: args.now.map_or_else(Clock::system, Clock::fixed),
    };
    if args.once {
        let outcome = nudge::run_once(options).await?;
        tracing::info!(shown = outcome.shown, "nudge pass done");
        return Ok(exit::COMPLIANT);
    }
    nudge::run_loop(options, super::shutdown_signal()?).await;
    Ok(exit::COMPLIANT)
}

/// The config, or the defaults when it cannot be used (logged).
fn load_config(path: Option<&std::path::Path>) -> AgentConfig {
    let default_path = config::default_config_path();
    let path = path.unwrap_or(&default_path);
    match AgentConfig::load(path) {
        Ok(config) => config,
        Err(ConfigError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "no agent config; nudging with the defaults");
            AgentConfig::default()
        }
        Err(err @ ConfigError::Read { .. }) => {
            tracing::info!(error = %err, "nudging with the default schedule");
            AgentConfig::default()
        }
        Err(err @ ConfigError::Invalid { .. }) => {
            tracing::warn!(error = %err, "nudging with the default schedule");
            AgentConfig::default()
        }
    }
}
