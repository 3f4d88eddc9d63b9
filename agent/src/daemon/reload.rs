//! Reading the config file again when it changes: a bad file is refused
//! with every problem logged, and of a good one the settings that a
//! running daemon cannot take are named as waiting for a restart.

use crate::config::{AgentConfig, ConfigSource};

/// Reads the config file again. A bad new file is logged with every problem
/// and refused: the daemon keeps the config in force. Settings that cannot
/// change under a running daemon are named in a warning.
pub(super) fn reload(source: &ConfigSource, current: &AgentConfig) -> Option<AgentConfig> {
    let new = match source.load() {
        Ok(new) => new,
        Err(err) => {
            // One log line, every problem in it: `FILE:LINE:COLUMN: key: ...`.
            let problems = err.to_string().replace('\n', "; ");
            tracing::error!(error = %problems, "the changed config is refused; keeping the one in force");
            return None;
        }
    };
    if new == *current {
        return None;
    }
    let at_restart = restart_only_changes(current, &new);
    if !at_restart.is_empty() {
        tracing::warn!(keys = ?at_restart, "these settings take effect when the agent restarts");
    }
    tracing::info!(path = %source.path().display(), "config reloaded");
    Some(new)
}

/// Settings the running daemon has built into open files and sockets.
fn restart_only_changes(old: &AgentConfig, new: &AgentConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.state_dir != new.state_dir {
        keys.push("state_dir");
    }
    if old.socket_path != new.socket_path {
        keys.push("socket_path");
    }
    if old.log_format != new.log_format {
        keys.push("log_format");
    }
    if old.collector_url != new.collector_url {
        // After enrollment the collector is the one enrolled with.
        keys.push("collector_url");
    }
    keys
}

/// Whether the sender must be rebuilt.
pub(super) fn delivery_changed(old: &AgentConfig, new: &AgentConfig) -> bool {
    old.ca_file != new.ca_file
        || old.ca_pin != new.ca_pin
        || old.request_timeout_seconds != new.request_timeout_seconds
        || old.connect_timeout_seconds != new.connect_timeout_seconds
        || old.backoff_max_seconds != new.backoff_max_seconds
        || old.backlog_reports_per_second != new.backlog_reports_per_second
}
