//! Reading the TOML: one flat table, every key optional. Each problem is
//! pushed onto the helper's error list and reading goes on, so all are
//! reported together, each with its line and column.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use palisade_shared::diagnostics::invalid;
use palisade_shared::pin::CaPin;
use toml_span::de_helpers::TableHelper;
use toml_span::value::ValueInner;
use toml_span::{DeserError, Deserialize, Span, Spanned, Value};

use super::{
    AgentConfig, BACKLOG_REPORTS_PER_SECOND_RANGE, BACKOFF_MAX_SECONDS_RANGE,
    CONNECT_TIMEOUT_SECONDS_RANGE, CollectorUrl, DEFAULT_BACKLOG_REPORTS_PER_SECOND,
    DEFAULT_BACKOFF_MAX_SECONDS, DEFAULT_CONNECT_TIMEOUT_SECONDS, DEFAULT_INTERVAL_SECONDS,
    DEFAULT_NUDGE_INTERVAL_HOURS, DEFAULT_REQUEST_TIMEOUT_SECONDS, EnrollSecret,
    INTERVAL_SECONDS_RANGE, LogFormat, NUDGE_INTERVAL_HOURS_RANGE, REQUEST_TIMEOUT_SECONDS_RANGE,
    SPOOL_MAX_BYTES_RANGE, SPOOL_MAX_REPORTS_RANGE, WorkingHours,
};
use crate::spool;

impl<'de> Deserialize<'de> for AgentConfig {
    fn deserialize(value: &mut Value<'de>) -> Result<Self, DeserError> {
        let mut th = TableHelper::new(value)?;
        let defaults = Self::default();

        let collector_url = checked(&mut th, "collector_url", |s: &String| {
            CollectorUrl::parse(s)
        });
        let ca_file = checked(&mut th, "ca_file", |s: &String| absolute_path(s));
        let ca_pin = take_string(&mut th, "ca_pin").and_then(|pin| {
            let problem = match pin.value.parse::<CaPin>() {
                Ok(_) if ca_file.is_some() => {
                    "cannot be set together with ca_file: the pin replaces the CA file; keep one"
                        .to_owned()
                }
                Ok(parsed) => return Some(parsed),
                Err(err) => err.to_string(),
            };
            th.errors.push(invalid(pin.span, problem));
            None
        });
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
            ca_pin,
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
