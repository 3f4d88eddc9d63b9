//! The collector's configuration: `/etc/palisade/collector.toml` (or
//! `--config FILE`), overridden by flags, with defaults that make a collector
//! run with no file at all.
//!
//! The file says what to serve and where to keep it; flags say how to run
//! this instance. Every problem in the file is reported at once with its
//! line (the policy parser's diagnostics are reused). This module reads the
//! file and nothing else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use palisade_shared::diagnostics::{self, invalid};
use toml_span::de_helpers::TableHelper;
use toml_span::{DeserError, Deserialize, Value};

/// Where the config file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/palisade/collector.toml";
/// Where state lives when nothing says otherwise (design §8).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/palisade-collector";
/// 8443: the conventional unprivileged HTTPS port, so the collector needs no
/// capability to bind it. Loopback by default: exposing it is a decision.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// 256 KiB: see `palisade_shared::envelope::DEFAULT_MAX_ENVELOPE_BYTES`.
pub const DEFAULT_MAX_BODY_BYTES: usize = palisade_shared::envelope::DEFAULT_MAX_ENVELOPE_BYTES;
/// Five minutes of clock skew: laptops without NTP drift, and Kerberos's
/// long-standing default tolerance is the same five minutes.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u32 = 300;
/// Raw reports are kept 90 days, the latest per device for ever: long enough
/// for an incident investigation to look back a quarter (forensic
/// readiness), short enough not to keep data "longer than needed".
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// A laptop in use reports every 15 minutes; one silent for a whole day
/// (a working day and a night) is off, broken, or has lost its agent.
pub const DEFAULT_STALE_AFTER_HOURS: u32 = 24;

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub database_url: String,
    /// Where `database_url` was set, for messages: `--database-url`,
    /// `database_url in FILE`, or the default.
    pub database_url_from: String,
    pub tls: TlsSetting,
    pub max_body_bytes: usize,
    pub clock_skew_seconds: u32,
    pub retention_days: u32,
    /// A device that has not reported for this long is stale on the
    /// dashboard.
    pub stale_after_hours: u32,
    /// The policy to serve when the store has none yet; `None`: the built-in
    /// baseline.
    pub policy_file: Option<PathBuf>,
    /// The URL devices reach this collector at (behind a load balancer it
    /// is not the listen address), for the install command lines; checked
    /// by [`crate::installers::parse_collector_url`].
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetting {
    /// Certificate chain and private key, PEM.
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// Make (once) and use a self-signed certificate in the state directory:
    /// for the demo and tests only.
    SelfSigned,
    /// Plain HTTP: refused unless the listen address is loopback.
    None,
}

/// Flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub self_signed_tls: bool,
}

/// The file's contents, every key optional. Public only so that its parser
/// ([`FileConfig::parse`]) can be fuzzed; [`CollectorConfig::load`] is how
/// the collector reads it.
#[derive(Debug, Default)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    state_dir: Option<PathBuf>,
    database_url: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    clock_skew_seconds: Option<u32>,
    retention_days: Option<u32>,
    stale_after_hours: Option<u32>,
    policy_file: Option<PathBuf>,
    public_url: Option<String>,
}

impl<'de> Deserialize<'de> for FileConfig {
    fn deserialize(value: &mut Value<'de>) -> Result<Self, DeserError> {
        let mut th = TableHelper::new(value)?;
        let listen = th
            .optional_s::<String>("listen")
            .and_then(|s| match s.value.parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    th.errors.push(invalid(
                        s.span,
                        format!("{:?} is not an address like 127.0.0.1:8443", s.value),
                    ));
                    None
                }
            });
        // A path in the file is read by a service whose working directory
        // is not the operator's: only an absolute one means what it says.
        let path = |th: &mut TableHelper<'de>, key: &'static str| {
            let s = th.optional_s::<String>(key)?;
            if Path::new(&s.value).is_absolute() {
                Some(PathBuf::from(s.value))
            } else {
                th.errors.push(invalid(
                    s.span,
                    format!("{:?} is a relative path; give an absolute one", s.value),
                ));
                None
            }
        };
        let state_dir = path(&mut th, "state_dir");
        // Checked here, not first when the store opens, so the mistake is
        // placed in the file (and nothing is made before it is found).
        let database_url = th.optional_s::<String>("database_url").and_then(|s| {
            if crate::store::is_supported_url(&s.value) {
                Some(s.value)
            } else {
                th.errors.push(invalid(
                    s.span,
                    format!("{:?} is not a sqlite:// or postgres:// URL", s.value),
                ));
                None
            }
        });
        let cert_file = path(&mut th, "cert_file");
        let key_file = path(&mut th, "key_file");
        let policy_file = path(&mut th, "policy_file");
        let public_url = th.optional_s::<String>("public_url").and_then(|s| {
            match crate::installers::parse_collector_url(&s.value) {
                Ok(url) => Some(url),
                Err(problem) => {
                    th.errors
                        .push(invalid(s.span, format!("{:?} {problem}", s.value)));
                    None
                }
            }
        });
        let bounded = |th: &mut TableHelper<'de>, key: &'static str, min: i64, max: i64| {
            let value = th.optional_s::<i64>(key)?;
            if (min..=max).contains(&value.value) {
                Some(value.value)
            } else {
                th.errors.push(invalid(
                    value.span,
                    format!("must be between {min} and {max}, got {}", value.value),
                ));
                None
            }
        };
        // 1 KiB to 16 MiB: below 1 KiB no report fits; above 16 MiB a single
        // request could pin real memory.
        let max_body_bytes =
            bounded(&mut th, "max_body_bytes", 1024, 16 * 1024 * 1024).map(|v| v as usize);
        let clock_skew_seconds =
            bounded(&mut th, "clock_skew_seconds", 0, 86_400).map(|v| v as u32);
        let retention_days = bounded(&mut th, "retention_days", 1, 36_500).map(|v| v as u32);
        let stale_after_hours = bounded(&mut th, "stale_after_hours", 1, 8_760).map(|v| v as u32);
        th.finalize(None)?;
        Ok(Self {
            listen,
            state_dir,
            database_url,
            cert_file,
            key_file,
            max_body_bytes,
            clock_skew_seconds,
            retention_days,
            stale_after_hours,
            policy_file,
            public_url,
        })
    }
}

impl FileConfig {
    /// Parses and validates a config document, reporting every problem with
    /// its line.
    pub fn parse(text: &str) -> Result<Self, diagnostics::Diagnostics> {
        diagnostics::parse_toml::<Self>(text)
    }
}

impl CollectorConfig {
    /// Reads the file (if any) and applies the flags.
    pub fn load(overrides: &Overrides) -> anyhow::Result<Self> {
        let file_path = match &overrides.config {
            Some(path) => Some(path.clone()),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Some(PathBuf::from(DEFAULT_CONFIG_PATH))
            }
            None => None,
        };
        let file = match &file_path {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let listen = match overrides.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN.parse().context("default listen address")?,
        };
        let state_dir = overrides
            .state_dir
            .clone()
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let (database_url, database_url_from) = match (&overrides.database_url, file.database_url) {
            (Some(url), _) => (url.clone(), "--database-url".to_owned()),
            (None, Some(url)) => {
                let file = file_path
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
                (url, format!("database_url in {}", file.display()))
            }
            (None, None) => (
                format!("sqlite://{}", state_dir.join("collector.db").display()),
                "the default: collector.db in the state directory".to_owned(),
            ),
        };
        let tls = match (file.cert_file, file.key_file, overrides.self_signed_tls) {
            (_, _, true) => TlsSetting::SelfSigned,
            (Some(cert_file), Some(key_file), false) => TlsSetting::Files {
                cert_file,
                key_file,
            },
            (None, None, false) => TlsSetting::None,
            _ => bail!("cert_file and key_file must be set together"),
        };
        if tls == TlsSetting::None && !listen.ip().is_loopback() {
            bail!(
                "refusing to serve plain HTTP on {listen}: set cert_file and key_file, \
                 or listen on a loopback address"
            );
        }
        Ok(Self {
            listen,
            state_dir,
            database_url,
            database_url_from,
            tls,
            max_body_bytes: file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            clock_skew_seconds: file
                .clock_skew_seconds
                .unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS),
            retention_days: file.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
            stale_after_hours: file.stale_after_hours.unwrap_or(DEFAULT_STALE_AFTER_HOURS),
            policy_file: file.policy_file,
            public_url: file.public_url,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    diagnostics::utf8_text(bytes)
        .and_then(|text| FileConfig::parse(&text))
        .map_err(|errors| {
            anyhow::anyhow!(diagnostics::render_file_problems("config", path, &errors))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/collector.toml");

    #[test]
    fn the_documented_example_parses_to_the_defaults() {
        let file: FileConfig = diagnostics::parse_toml(EXAMPLE).unwrap();
        assert_eq!(file.listen, Some(DEFAULT_LISTEN.parse().unwrap()));
        assert_eq!(file.max_body_bytes, Some(DEFAULT_MAX_BODY_BYTES));
        assert_eq!(file.clock_skew_seconds, Some(DEFAULT_CLOCK_SKEW_SECONDS));
        assert_eq!(file.retention_days, Some(DEFAULT_RETENTION_DAYS));
        assert_eq!(file.stale_after_hours, Some(DEFAULT_STALE_AFTER_HOURS));
        assert_eq!(
            file.state_dir.as_deref(),
            Some(Path::new(DEFAULT_STATE_DIR))
        );
    }

    #[test]
    fn every_key_the_parser_knows_is_documented_in_the_example() {
        for key in [
            "listen",
            "state_dir",
            "database_url",
            "cert_file",
            "key_file",
            "max_body_bytes",
            "clock_skew_seconds",
            "retention_days",
            "stale_after_hours",
            "policy_file",
            "public_url",
        ] {
            assert!(
                EXAMPLE.contains(&format!("{key} = ")),
                "{key} is not documented"
            );
        }
    }

    #[test]
    fn every_mistake_in_a_file_is_reported_with_its_line() {
        let text = "listen = \"nowhere\"\nmax_body_bytes = 5\ncolour = \"red\"\n\
                    public_url = \"http://palisade.example.org\"\n";
        let errors = diagnostics::parse_toml::<FileConfig>(text).unwrap_err();
        let lines: Vec<(usize, &str)> = errors
            .0
            .iter()
            .map(|d| (d.line, d.key_path.as_str()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (1, "listen"),
                (2, "max_body_bytes"),
                (3, "colour"),
                (4, "public_url")
            ],
            "{errors}"
        );
    }

    #[test]
    fn plain_http_off_loopback_is_refused() {
        let overrides = Overrides {
            listen: Some("0.0.0.0:8443".parse().unwrap()),
            state_dir: Some(PathBuf::from("/tmp/x")),
            config: Some(PathBuf::from("/dev/null")),
            ..Overrides::default()
        };
        let err = CollectorConfig::load(&overrides).unwrap_err();
        assert!(
            err.to_string().contains("refusing to serve plain HTTP"),
            "{err}"
        );
    }
}
