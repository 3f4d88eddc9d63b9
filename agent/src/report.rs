//! Assembling a report document from check results and host facts.
//!
//! Signing and sequencing belong to the daemon; this module only fills in the
//! schema, so `palisade-agent check --json` and the daemon print the same
//! shape.

use chrono::Utc;
use palisade_shared::report::{AgentInfo, CheckResult, HostInfo, REPORT_SCHEMA_VERSION};
use palisade_shared::{DeviceId, Policy, Report};

use crate::checks::screen_lock::LogindSession;
use crate::sys::Host;

/// The agent as it names itself in reports.
pub fn agent_info() -> AgentInfo {
    AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        os: std::env::consts::OS.to_owned(),
    }
}

/// Facts that help IT recognise the machine, from sysinfo, and the person
/// using it from logind (read under `host`'s root). A value that cannot be
/// read is reported as `unknown` (or, for the user, left out) rather than
/// guessed.
pub fn host_info(host: &Host) -> HostInfo {
    let or_unknown = |value: Option<String>| value.unwrap_or_else(|| "unknown".to_owned());
    HostInfo {
        hostname: or_unknown(sysinfo::System::host_name()),
        os_name: or_unknown(sysinfo::System::name()),
        os_version: or_unknown(sysinfo::System::os_version()),
        kernel_version: or_unknown(sysinfo::System::kernel_version()),
        arch: std::env::consts::ARCH.to_owned(),
        console_user: crate::checks::screen_lock::logind_sessions(host)
            .and_then(|sessions| console_user(&sessions)),
    }
}

/// The person at the machine: the user of the active local graphical
/// session, else of an active local text console; remote (ssh) sessions and
/// greeters do not count, since IT wants whose laptop it is.
pub fn console_user(sessions: &[LogindSession]) -> Option<String> {
    let local_user_session = |session: &&LogindSession| {
        session.active == Some(true)
            && session.remote != Some(true)
            && session.class.as_deref().is_none_or(|class| class == "user")
            && session.user.is_some()
    };
    let graphical = |session: &&LogindSession| {
        matches!(
            session.session_type.as_deref(),
            Some("x11" | "wayland" | "mir")
        )
    };
    sessions
        .iter()
        .filter(local_user_session)
        .find(graphical)
        .or_else(|| sessions.iter().find(local_user_session))
        .and_then(|session| session.user.clone())
}

/// An unsigned report that is not part of any chain (sequence 0), as
/// `palisade-agent check --json` prints it.
pub fn standalone_report(host: &Host, policy: &Policy, checks: Vec<CheckResult>) -> Report {
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        device_id: DeviceId::unenrolled(),
        sequence: 0,
        issued_at: Utc::now(),
        prev_digest: String::new(),
        agent: agent_info(),
        host: host_info(host),
        policy: policy.reference(),
        checks,
        events: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user: &str, kind: &str, active: bool, remote: bool) -> LogindSession {
        LogindSession {
            user: Some(user.to_owned()),
            session_type: Some(kind.to_owned()),
            class: Some("user".to_owned()),
            active: Some(active),
            remote: Some(remote),
            ..LogindSession::default()
        }
    }

    #[test]
    fn the_console_user_is_the_active_local_desktop_user() {
        let sessions = [
            session("admin", "tty", true, true),
            session("nurse", "tty", true, false),
            session("doctor", "wayland", true, false),
        ];
        assert_eq!(console_user(&sessions).as_deref(), Some("doctor"));
        assert_eq!(console_user(&sessions[..2]).as_deref(), Some("nurse"));
        // Only a remote session, or an inactive one: nobody is at the machine.
        assert_eq!(console_user(&sessions[..1]), None);
        assert_eq!(
            console_user(&[session("doctor", "x11", false, false)]),
            None
        );
    }
}
