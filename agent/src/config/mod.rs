//! The daemon's configuration file, `agent.toml`: where the collector is,
//! where the agent keeps its state, and how it paces itself.
//!
//! The file says how the agent runs; the policy says what it enforces (house
//! style 15). Every key is optional, has a documented default, and is
//! described in `config/agent.toml`, which a test keeps in step with this
//! parser. Parsing is `toml-span` with one `TableHelper`, like
//! `shared/src/policy.rs`: unknown keys and bad values are errors, and every
//! one is reported at once with its key and line
//! ([`palisade_shared::diagnostics`]).
//!
//! This module only reads text into a typed [`AgentConfig`]; it does not
//! open the files or sockets the config names, and it does not read
//! `PALISADE_ENROLL_SECRET` (the daemon does, at first start). Paths are
//! required to be absolute, because a service's working directory is
//! whatever the service manager picked.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_shared::diagnostics::{self, Diagnostics};
use palisade_shared::pin::CaPin;
use zeroize::Zeroizing;

use crate::spool;

mod parse;

// ---------------------------------------------------------------------------
// Defaults, each with where its number comes from. config/agent.toml repeats
// these for operators; `defaults_match_the_documented_file` keeps them equal.

/// 900 s (15 min). The daemon also runs the checks at once when a file its
/// rules read changes or a USB device comes or goes, so the interval is the
/// backstop for what it cannot watch, and the longest a dashboard entry is
/// stale. It matches the baseline's 900 s screen-lock limit, so a device is
/// never out of date on the dashboard for longer than it may sit unlocked.
/// Fleet cost: 96 reports a day of about 5 KiB each; 10,000 devices send
/// about 11 reports a second on average.
pub const DEFAULT_INTERVAL_SECONDS: u64 = 900;
/// Below a minute the checks (which start external tools) become a steady
/// load on the laptop for no gain; above a day the device looks stale.
const INTERVAL_SECONDS_RANGE: RangeInclusive<u64> = 60..=86_400;

/// The spool's bounds; their defaults and reasons are in [`crate::spool`].
/// At least 10 reports, so an outage of a few cycles is always survived.
const SPOOL_MAX_REPORTS_RANGE: RangeInclusive<u64> = 10..=1_000_000;
/// At least 1 MiB, so the spool always holds several envelopes of the
/// largest size the collector accepts (256 KiB).
const SPOOL_MAX_BYTES_RANGE: RangeInclusive<u64> = 1024 * 1024..=4 * 1024 * 1024 * 1024;

/// 30 s for a whole request: a report is a few KiB, so even a poor hotel
/// network sends it in seconds; a collector that has not answered in 30 s is
/// treated as down and the report stays spooled.
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: u64 = 30;
const REQUEST_TIMEOUT_SECONDS_RANGE: RangeInclusive<u64> = 1..=600;

/// 10 s to connect (TCP and TLS): several round trips on a slow mobile link,
/// while an unreachable collector (captive portal, no route) is given up on
/// quickly.
pub const DEFAULT_CONNECT_TIMEOUT_SECONDS: u64 = 10;
const CONNECT_TIMEOUT_SECONDS_RANGE: RangeInclusive<u64> = 1..=120;

/// 300 s: the longest wait between retries once backoff has grown. A device
/// sees a collector back from an outage within five minutes, and 10,000
/// devices retrying at the cap, spread by jitter, average about 33 requests
/// a second: no storm.
pub const DEFAULT_BACKOFF_MAX_SECONDS: u64 = 300;
const BACKOFF_MAX_SECONDS_RANGE: RangeInclusive<u64> = 1..=86_400;

/// 2 reports a second while sending a backlog. A typical outage (a night,
/// about 40 reports) drains in 20 s; a full spool of 10,000 in under an
/// hour and a half; and a fleet reconnecting together adds at most twice its
/// size in requests a second, not everything at once.
pub const DEFAULT_BACKLOG_REPORTS_PER_SECOND: f64 = 2.0;
const BACKLOG_REPORTS_PER_SECOND_RANGE: RangeInclusive<f64> = 0.01..=1000.0;

/// 4 hours between reminders about the same failing rule: about twice a
/// working day, often enough not to be forgotten, rare enough not to be
/// dismissed unread. The nudge helper shortens it as a deadline nears.
pub const DEFAULT_NUDGE_INTERVAL_HOURS: u64 = 4;
const NUDGE_INTERVAL_HOURS_RANGE: RangeInclusive<u64> = 1..=168;

/// Office hours, local time. Outside them the nudge helper stays quiet
/// unless a deadline has passed.
pub const DEFAULT_WORKING_HOURS: &str = "08:00-18:00";

/// The configuration of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The collector's base URL; `None` until enrollment supplies one.
    pub collector_url: Option<CollectorUrl>,
    /// A PEM file of CA certificates to trust for the collector instead of
    /// the system roots.
    pub ca_file: Option<PathBuf>,
    /// The collector's pinned certificate key (`sha256/…`), for a silent
    /// install that cannot ship a CA file; exclusive with `ca_file`.
    pub ca_pin: Option<CaPin>,
    /// The enrollment secret for a silent install.
    pub enroll_secret: Option<EnrollSecret>,
    pub interval_seconds: u64,
    pub state_dir: PathBuf,
    /// A unix socket path, or a named pipe (`\\.\pipe\…`) on Windows.
    pub socket_path: PathBuf,
    pub spool_max_reports: u64,
    pub spool_max_bytes: u64,
    pub request_timeout_seconds: u64,
    pub connect_timeout_seconds: u64,
    pub backoff_max_seconds: u64,
    pub backlog_reports_per_second: f64,
    pub nudge_interval_hours: u64,
    pub working_hours: WorkingHours,
    pub log_format: LogFormat,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            collector_url: None,
            ca_file: None,
            ca_pin: None,
            enroll_secret: None,
            interval_seconds: DEFAULT_INTERVAL_SECONDS,
            state_dir: default_state_dir(),
            socket_path: default_socket_path(),
            spool_max_reports: spool::DEFAULT_SPOOL_MAX_REPORTS,
            spool_max_bytes: spool::DEFAULT_SPOOL_MAX_BYTES,
            request_timeout_seconds: DEFAULT_REQUEST_TIMEOUT_SECONDS,
            connect_timeout_seconds: DEFAULT_CONNECT_TIMEOUT_SECONDS,
            backoff_max_seconds: DEFAULT_BACKOFF_MAX_SECONDS,
            backlog_reports_per_second: DEFAULT_BACKLOG_REPORTS_PER_SECOND,
            nudge_interval_hours: DEFAULT_NUDGE_INTERVAL_HOURS,
            working_hours: WorkingHours::OFFICE,
            log_format: LogFormat::Text,
        }
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every problem in the file, rendered `FILE:LINE:COLUMN: key: message`.
    #[error("{}", render_invalid(.path, .diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Diagnostics,
    },
}

fn render_invalid(path: &Path, diagnostics: &Diagnostics) -> String {
    diagnostics::render_file_problems("config", path, diagnostics)
}

/// Where the configuration comes from: a file (or the system default, if
/// it exists) with the command line's overrides on top. The daemon keeps it
/// to read the file again when it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSource {
    /// `--config FILE`; `None` means the system path, if it exists.
    pub file: Option<PathBuf>,
    /// `--state-dir DIR`, already absolute.
    pub state_dir: Option<PathBuf>,
    /// `--socket PATH`.
    pub socket: Option<PathBuf>,
}

impl ConfigSource {
    /// The file that is (or would be) read.
    pub fn path(&self) -> PathBuf {
        self.file.clone().unwrap_or_else(default_config_path)
    }

    /// Reads the configuration: the file (the default path only if it
    /// exists) with the overrides applied.
    pub fn load(&self) -> Result<AgentConfig, ConfigError> {
        let mut config = match &self.file {
            Some(path) => AgentConfig::load(path)?,
            None => {
                let path = default_config_path();
                if path.exists() {
                    AgentConfig::load(&path)?
                } else {
                    AgentConfig::default()
                }
            }
        };
        if let Some(dir) = &self.state_dir {
            config.state_dir = dir.clone();
        }
        if let Some(socket) = &self.socket {
            config.socket_path = socket.clone();
        }
        Ok(config)
    }
}

impl AgentConfig {
    /// Parses and validates a config document, reporting every problem with
    /// its line.
    pub fn parse(text: &str) -> Result<Self, Diagnostics> {
        diagnostics::parse_toml::<Self>(text)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        diagnostics::utf8_text(bytes)
            .and_then(|text| Self::parse(&text))
            .map_err(|diagnostics| ConfigError::Invalid {
                path: path.to_path_buf(),
                diagnostics,
            })
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_seconds)
    }

    pub fn backoff_max(&self) -> Duration {
        Duration::from_secs(self.backoff_max_seconds)
    }

    pub fn nudge_interval(&self) -> Duration {
        Duration::from_secs(self.nudge_interval_hours * 3600)
    }

    /// The spool directory inside the state directory.
    pub fn spool_dir(&self) -> PathBuf {
        self.state_dir.join("spool")
    }

    pub fn spool_limits(&self) -> spool::SpoolLimits {
        spool::SpoolLimits {
            max_reports: self.spool_max_reports,
            max_bytes: self.spool_max_bytes,
        }
    }
}

/// Where the config file is read from when no `--config` is given (design
/// §8).
pub fn default_config_path() -> PathBuf {
    if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/Palisade/agent.toml")
    } else if cfg!(windows) {
        program_data().join("Palisade").join("agent.toml")
    } else {
        PathBuf::from("/etc/palisade/agent.toml")
    }
}

/// The state directory (device key, enrollment, spool, last policy) by
/// default (design §8).
pub fn default_state_dir() -> PathBuf {
    if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/Palisade/state")
    } else if cfg!(windows) {
        program_data().join("Palisade").join("state")
    } else {
        PathBuf::from("/var/lib/palisade")
    }
}

/// The status socket by default (design §8); a named pipe on Windows.
pub fn default_socket_path() -> PathBuf {
    if cfg!(target_os = "macos") {
        PathBuf::from("/var/run/palisade/agent.sock")
    } else if cfg!(windows) {
        PathBuf::from(r"\\.\pipe\palisade-agent")
    } else {
        PathBuf::from("/run/palisade/agent.sock")
    }
}

/// `%ProgramData%\Palisade`: the config file, and the default state
/// directory inside it (Windows only; `state_dir` protects both).
pub fn default_data_dir() -> PathBuf {
    program_data().join("Palisade")
}

/// `%ProgramData%`, which is `C:\ProgramData` unless Windows was installed
/// elsewhere: the known folder Windows reports, not the environment
/// variable, which a service's environment may set otherwise
/// (`sys::known_folder`).
fn program_data() -> PathBuf {
    #[cfg(windows)]
    if let Some(folder) = crate::sys::known_folder::program_data() {
        return folder;
    }
    std::env::var_os("ProgramData")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
}

/// A collector URL that is safe to send reports to: `https://`, or
/// `http://` to a loopback address (tests, a collector on the same machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorUrl(url::Url);

impl CollectorUrl {
    /// Parses and checks a collector URL; the error is a sentence for the
    /// operator.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|err| format!("{text:?} is not a URL: {err}"))?;
        let Some(host) = url.host() else {
            return Err(format!("{text:?} has no host"));
        };
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(format!(
                    "{text:?} is plain http to a host that is not loopback; reports and \
                     enrollment secrets must travel over https (http is allowed only for \
                     127.0.0.0/8, ::1 and localhost)"
                ));
            }
            other => return Err(format!("{text:?} has scheme {other:?}; use https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{text:?} carries a user name or password; the agent authenticates with its key"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?} has a ?query or #fragment; give the collector's base URL"
            ));
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for CollectorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        // The url crate lowercases domain names.
        url::Host::Domain(name) => *name == "localhost",
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// The enrollment secret. Never shown: `Debug` prints a placeholder, there is
/// no `Display`, and the memory is wiped when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollSecret(Zeroizing<String>);

impl EnrollSecret {
    pub fn new(secret: String) -> Self {
        Self(Zeroizing::new(secret))
    }

    /// The secret itself, to put in the signed enrollment request and
    /// nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EnrollSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrollSecret(<redacted>)")
    }
}

/// A daily window of local time, e.g. `08:00-18:00`. The end may be before
/// the start for a window across midnight (`22:00-06:00`, night shifts), and
/// may be `24:00`; `00:00-24:00` is the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingHours {
    /// Minutes after midnight, 0..1440.
    pub start_minute: u16,
    /// Minutes after midnight, 0..=1440; the window excludes it.
    pub end_minute: u16,
}

impl WorkingHours {
    /// [`DEFAULT_WORKING_HOURS`].
    pub const OFFICE: Self = Self {
        start_minute: 8 * 60,
        end_minute: 18 * 60,
    };

    pub fn parse(text: &str) -> Result<Self, String> {
        let problem =
            || format!("{text:?} is not a window of local time like \"08:00-18:00\" (HH:MM-HH:MM)");
        let (start, end) = text.split_once('-').ok_or_else(problem)?;
        let start = parse_clock(start.trim()).ok_or_else(problem)?;
        let end = parse_clock(end.trim()).ok_or_else(problem)?;
        if start == 1440 {
            return Err(format!(
                "{text:?} starts at 24:00; start the window at 00:00"
            ));
        }
        if start == end {
            return Err(format!(
                "{text:?} is empty; use \"00:00-24:00\" for the whole day"
            ));
        }
        Ok(Self {
            start_minute: start,
            end_minute: end,
        })
    }

    /// Whether `minute` minutes after midnight falls inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start_minute < self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }
}

impl fmt::Display for WorkingHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_minute / 60,
            self.start_minute % 60,
            self.end_minute / 60,
            self.end_minute % 60
        )
    }
}

/// `HH:MM` as minutes after midnight; `24:00` is 1440.
fn parse_clock(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return None;
    }
    let hours: u16 = hours.parse().ok()?;
    let minutes: u16 = minutes.parse().ok()?;
    match (hours, minutes) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(hours * 60 + minutes),
        _ => None,
    }
}

/// How the daemon writes its log to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

#[cfg(test)]
mod tests;
