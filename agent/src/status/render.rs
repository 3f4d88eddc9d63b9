//! The human summary `palisade-agent status` prints.

use std::time::Duration;

use chrono::{DateTime, Utc};
use palisade_shared::report::CheckStatus;

use super::AgentStatus;

/// The summary `palisade-agent status` prints, ending with a newline.
pub fn render_human(status: &AgentStatus) -> String {
    render_human_at(status, Utc::now())
}

/// [`render_human`] as of `now` (relative times are computed from it).
pub fn render_human_at(status: &AgentStatus, now: DateTime<Utc>) -> String {
    use std::fmt::Write as _;

    // `write!` to a String cannot fail; the results are ignored below.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Palisade agent {}, running since {}",
        status.agent_version,
        when(status.started_at, now)
    );
    out.push('\n');

    let field = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "  {name:<12}{value}");
    };
    let _ = writeln!(out, "Device");
    let device = match &status.device_id {
        Some(id) => id.to_string(),
        None => "not enrolled yet".to_owned(),
    };
    field(&mut out, "device id", &device);
    field(&mut out, "key id", status.key_id.as_str());
    field(&mut out, "key store", &status.key_store);
    field(
        &mut out,
        "collector",
        status.collector_url.as_deref().unwrap_or("none yet"),
    );
    let policy = match &status.policy {
        Some(policy) => format!(
            "{} version {} ({})",
            policy.id, policy.version, policy.source
        ),
        None => "not loaded yet".to_owned(),
    };
    field(&mut out, "policy", &policy);
    out.push('\n');

    match status.last_cycle_at {
        None => {
            let _ = writeln!(
                out,
                "Checks: none yet (the first check cycle has not finished)"
            );
        }
        Some(at) => {
            let _ = writeln!(out, "Checks, last run {}", when(at, now));
            if status.checks.is_empty() {
                let _ = writeln!(out, "  (the policy enables no rule)");
            }
            let id_width = status
                .checks
                .iter()
                .map(|check| check.id.as_str().len())
                .max()
                .unwrap_or(0);
            for check in &status.checks {
                let _ = writeln!(
                    out,
                    "  {:<14}  {:<id_width$}  {}",
                    status_word(check.status),
                    check.id.as_str(),
                    check.summary
                );
                let indent = " ".repeat(2 + 14 + 2 + id_width + 2);
                let needs_action = matches!(check.status, CheckStatus::Fail);
                if needs_action && !check.fix.is_empty() {
                    let _ = writeln!(out, "{indent}fix: {}", check.fix);
                }
                if let Some(deadline) = check.deadline.filter(|_| needs_action) {
                    let _ = writeln!(out, "{indent}deadline: {}", when(deadline, now));
                }
            }
        }
    }
    out.push('\n');

    let _ = writeln!(out, "Reports");
    let spool = match (
        status.spool.pending_reports,
        status.spool.oldest_pending_sequence,
    ) {
        (0, _) => "empty: every report has been delivered".to_owned(),
        (count, oldest) => format!(
            "{count} report{} waiting to be sent ({} bytes{})",
            if count == 1 { "" } else { "s" },
            status.spool.pending_bytes,
            oldest.map_or(String::new(), |seq| format!(", oldest #{seq}")),
        ),
    };
    field(&mut out, "spool", &spool);
    if let Some(since) = status.spool.unrecorded_since {
        let count = status.spool.unrecorded_cycles;
        let lost = format!(
            "{count} cycle{} not written since {} (is the disk full?)",
            if count == 1 { "" } else { "s" },
            when(since, now),
        );
        field(&mut out, "unrecorded", &lost);
    }
    let delivered = match status.delivery.last_delivered_at {
        Some(at) => when(at, now),
        None => "not yet since the agent started".to_owned(),
    };
    field(&mut out, "delivered", &delivered);
    if let Some(error) = &status.delivery.last_error {
        let line = match status.delivery.last_error_at {
            Some(at) => format!("{}: {error}", when(at, now)),
            None => error.clone(),
        };
        field(&mut out, "last error", &line);
    }
    out
}

/// The status as a word a person reads at a glance; the failing ones in
/// capitals so they stand out in a column of "pass".
fn status_word(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "FAIL",
        CheckStatus::Unknown => "UNKNOWN",
        CheckStatus::Error => "ERROR",
        CheckStatus::NotApplicable => "not applicable",
        CheckStatus::Excepted => "excepted",
    }
}

/// `2025-06-02 09:14:03 UTC (3 min ago)`.
pub(super) fn when(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let stamp = at.format("%Y-%m-%d %H:%M:%S UTC");
    let delta = now.signed_duration_since(at);
    let relative = match delta.to_std() {
        Ok(past) => format!("{} ago", span(past)),
        Err(_) => match (-delta).to_std() {
            Ok(future) => format!("in {}", span(future)),
            Err(_) => "now".to_owned(),
        },
    };
    format!("{stamp} ({relative})")
}

/// A duration to the precision a person wants: `45 s`, `12 min`,
/// `3 h 5 min`, `4 days`.
pub(super) fn span(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..172_800 => {
            let minutes = (seconds % 3600) / 60;
            if minutes == 0 {
                format!("{} h", seconds / 3600)
            } else {
                format!("{} h {} min", seconds / 3600, minutes)
            }
        }
        _ => format!("{} days", seconds / 86_400),
    }
}
