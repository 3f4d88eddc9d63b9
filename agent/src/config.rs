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

use palisade_shared::diagnostics::{self, Diagnostics, invalid};
use toml_span::de_helpers::TableHelper;
use toml_span::value::ValueInner;
use toml_span::{DeserError, Deserialize, Span, Spanned, Value};
use zeroize::Zeroizing;

use crate::spool;

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
    let count = diagnostics.0.len();
    format!(
        "config file {} has {count} problem{}:\n{}",
        path.display(),
        if count == 1 { "" } else { "s" },
        diagnostics.render_for_file(&path.display().to_string())
    )
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|diagnostics| ConfigError::Invalid {
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

/// `%ProgramData%`, which is `C:\ProgramData` unless Windows was installed
/// elsewhere.
fn program_data() -> PathBuf {
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

// ---------------------------------------------------------------------------
// Reading the TOML: one flat table, every key optional. Each problem is
// pushed onto the helper's error list and reading goes on, so all are
// reported together.

impl<'de> Deserialize<'de> for AgentConfig {
    fn deserialize(value: &mut Value<'de>) -> Result<Self, DeserError> {
        let mut th = TableHelper::new(value)?;
        let defaults = Self::default();

        let collector_url = checked(&mut th, "collector_url", |s: &String| {
            CollectorUrl::parse(s)
        });
        let ca_file = checked(&mut th, "ca_file", |s: &String| absolute_path(s));
        let enroll_secret = checked(&mut th, "enroll_secret", |s: &String| {
            if s.is_empty() {
                Err("is empty; leave the key out when there is no secret".to_owned())
            } else if s.trim() != s {
                Err(
                    "has spaces or line breaks at its start or end; paste the secret alone"
                        .to_owned(),
                )
            } else {
                Ok(EnrollSecret::new(s.clone()))
            }
        });
        let interval_seconds = bounded(
            &mut th,
            "interval_seconds",
            DEFAULT_INTERVAL_SECONDS,
            INTERVAL_SECONDS_RANGE,
        );
        let state_dir = checked(&mut th, "state_dir", |s: &String| absolute_path(s))
            .unwrap_or(defaults.state_dir);
        let socket_path = checked(&mut th, "socket_path", |s: &String| socket_path(s))
            .unwrap_or(defaults.socket_path);
        let spool_max_reports = bounded(
            &mut th,
            "spool_max_reports",
            spool::DEFAULT_SPOOL_MAX_REPORTS,
            SPOOL_MAX_REPORTS_RANGE,
        );
        let spool_max_bytes = bounded(
            &mut th,
            "spool_max_bytes",
            spool::DEFAULT_SPOOL_MAX_BYTES,
            SPOOL_MAX_BYTES_RANGE,
        );
        let request_timeout_seconds = bounded(
            &mut th,
            "request_timeout_seconds",
            DEFAULT_REQUEST_TIMEOUT_SECONDS,
            REQUEST_TIMEOUT_SECONDS_RANGE,
        );
        let connect_timeout = optional_bounded(
            &mut th,
            "connect_timeout_seconds",
            CONNECT_TIMEOUT_SECONDS_RANGE,
        );
        let connect_timeout_seconds = match connect_timeout {
            Some(connect) if connect.value > request_timeout_seconds => {
                th.errors.push(invalid(
                    connect.span,
                    format!(
                        "is {}, longer than request_timeout_seconds ({request_timeout_seconds}), \
                         which already bounds the whole request including the connect",
                        connect.value
                    ),
                ));
                request_timeout_seconds
            }
            Some(connect) => connect.value,
            None => DEFAULT_CONNECT_TIMEOUT_SECONDS.min(request_timeout_seconds),
        };
        let backoff_max_seconds = bounded(
            &mut th,
            "backoff_max_seconds",
            DEFAULT_BACKOFF_MAX_SECONDS,
            BACKOFF_MAX_SECONDS_RANGE,
        );
        let backlog_reports_per_second = rate(&mut th, "backlog_reports_per_second");
        let nudge_interval_hours = bounded(
            &mut th,
            "nudge_interval_hours",
            DEFAULT_NUDGE_INTERVAL_HOURS,
            NUDGE_INTERVAL_HOURS_RANGE,
        );
        let working_hours = checked(&mut th, "working_hours", |s: &String| {
            WorkingHours::parse(s)
        })
        .unwrap_or(WorkingHours::OFFICE);
        let log_format = checked(&mut th, "log_format", |s: &String| match s.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "{other:?} is not a log format; use \"text\" or \"json\""
            )),
        })
        .unwrap_or(LogFormat::Text);

        th.finalize(None)?;
        Ok(Self {
            collector_url,
            ca_file,
            enroll_secret,
            interval_seconds,
            state_dir,
            socket_path,
            spool_max_reports,
            spool_max_bytes,
            request_timeout_seconds,
            connect_timeout_seconds,
            backoff_max_seconds,
            backlog_reports_per_second,
            nudge_interval_hours,
            working_hours,
            log_format,
        })
    }
}

/// Reads an optional string key and converts it with `check`, recording the
/// error at the value when it fails.
fn checked<T>(
    th: &mut TableHelper<'_>,
    key: &'static str,
    check: impl FnOnce(&String) -> Result<T, String>,
) -> Option<T> {
    let value = take_string(th, key)?;
    match check(&value.value) {
        Ok(converted) => Some(converted),
        Err(message) => {
            th.errors.push(invalid(value.span, message));
            None
        }
    }
}

fn bounded(
    th: &mut TableHelper<'_>,
    key: &'static str,
    default: u64,
    range: RangeInclusive<u64>,
) -> u64 {
    optional_bounded(th, key, range).map_or(default, |value| value.value)
}

fn optional_bounded(
    th: &mut TableHelper<'_>,
    key: &'static str,
    range: RangeInclusive<u64>,
) -> Option<Spanned<u64>> {
    let value = take_integer(th, key)?;
    match u64::try_from(value.value) {
        Ok(number) if range.contains(&number) => Some(Spanned::with_span(number, value.span)),
        _ => {
            th.errors
                .push(out_of_range(value.span, value.value, &range));
            None
        }
    }
}

// The two readers below give their own messages for a value of the wrong
// type ("must be an integer, found a string"), where toml-span's own error
// would only say "wanted".

/// Takes an optional string key; a value of another type is recorded as an
/// error and read as absent.
fn take_string(th: &mut TableHelper<'_>, key: &'static str) -> Option<Spanned<String>> {
    let (_, mut value) = th.take(key)?;
    let span = value.span;
    match value.take() {
        ValueInner::String(text) => Some(Spanned::with_span(text.into_owned(), span)),
        other => {
            th.errors.push(invalid(
                span,
                format!(
                    "must be a string in quotes, found {}",
                    article(other.type_str())
                ),
            ));
            None
        }
    }
}

/// Takes an optional integer key, likewise.
fn take_integer(th: &mut TableHelper<'_>, key: &'static str) -> Option<Spanned<i64>> {
    let (_, mut value) = th.take(key)?;
    let span = value.span;
    match value.take() {
        ValueInner::Integer(number) => Some(Spanned::with_span(number, span)),
        other => {
            th.errors.push(invalid(
                span,
                format!(
                    "must be a whole number, found {}",
                    article(other.type_str())
                ),
            ));
            None
        }
    }
}

fn article(type_name: &str) -> String {
    match type_name {
        "integer" | "array" => format!("an {type_name}"),
        other => format!("a {other}"),
    }
}

fn out_of_range(
    span: Span,
    got: impl fmt::Display,
    range: &RangeInclusive<u64>,
) -> toml_span::Error {
    invalid(
        span,
        format!(
            "must be between {} and {}, got {got}",
            range.start(),
            range.end()
        ),
    )
}

/// A rate: a TOML integer or float (`2` and `0.5` both read naturally).
fn rate(th: &mut TableHelper<'_>, key: &'static str) -> f64 {
    let Some((_, mut value)) = th.take(key) else {
        return DEFAULT_BACKLOG_REPORTS_PER_SECOND;
    };
    let span = value.span;
    let number = match value.take() {
        // Any i64 a person would write converts exactly.
        ValueInner::Integer(integer) => integer as f64,
        ValueInner::Float(float) => float,
        other => {
            th.errors.push(invalid(
                span,
                format!(
                    "must be a number of reports a second such as 2 or 0.5, found {}",
                    article(other.type_str())
                ),
            ));
            return DEFAULT_BACKLOG_REPORTS_PER_SECOND;
        }
    };
    // `contains` is false for NaN, so `nan` is refused here too.
    if BACKLOG_REPORTS_PER_SECOND_RANGE.contains(&number) {
        number
    } else {
        th.errors.push(invalid(
            span,
            format!(
                "must be between {} and {}, got {number}",
                BACKLOG_REPORTS_PER_SECOND_RANGE.start(),
                BACKLOG_REPORTS_PER_SECOND_RANGE.end()
            ),
        ));
        DEFAULT_BACKLOG_REPORTS_PER_SECOND
    }
}

fn absolute_path(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!(
            "{text:?} is a relative path; give an absolute one (a service's working directory \
             is not under your control)"
        ))
    }
}

fn socket_path(text: &str) -> Result<PathBuf, String> {
    if cfg!(windows) {
        if text.starts_with(r"\\.\pipe\") && text.len() > r"\\.\pipe\".len() {
            Ok(PathBuf::from(text))
        } else {
            Err(format!(
                "{text:?} is not a named pipe; on Windows give one like \"\\\\.\\pipe\\palisade-agent\""
            ))
        }
    } else {
        absolute_path(text)
    }
}

#[cfg(test)]
mod tests;
