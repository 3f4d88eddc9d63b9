//! Assembling a report document from check results and host facts.
//!
//! Signing and sequencing belong to the daemon; this module only fills in the
//! schema, so `palisade-agent check --json` and the daemon print the same
//! shape.

use chrono::Utc;
use palisade_shared::report::{AgentInfo, CheckResult, HostInfo, REPORT_SCHEMA_VERSION};
use palisade_shared::{DeviceId, Policy, Report};

/// The agent as it names itself in reports.
pub fn agent_info() -> AgentInfo {
    AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        os: std::env::consts::OS.to_owned(),
    }
}

/// Facts that help IT recognise the machine, from sysinfo. A value sysinfo
/// cannot read is reported as `unknown` rather than guessed.
pub fn host_info() -> HostInfo {
    let or_unknown = |value: Option<String>| value.unwrap_or_else(|| "unknown".to_owned());
    HostInfo {
        hostname: or_unknown(sysinfo::System::host_name()),
        os_name: or_unknown(sysinfo::System::name()),
        os_version: or_unknown(sysinfo::System::os_version()),
        kernel_version: or_unknown(sysinfo::System::kernel_version()),
        arch: std::env::consts::ARCH.to_owned(),
        console_user: None,
    }
}

/// An unsigned report that is not part of any chain (sequence 0), as
/// `palisade-agent check --json` prints it.
pub fn standalone_report(policy: &Policy, checks: Vec<CheckResult>) -> Report {
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        device_id: DeviceId::unenrolled(),
        sequence: 0,
        issued_at: Utc::now(),
        prev_digest: String::new(),
        agent: agent_info(),
        host: host_info(),
        policy: policy.reference(),
        checks,
        events: Vec::new(),
    }
}
