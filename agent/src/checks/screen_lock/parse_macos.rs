//! Reads the macOS tools' text for `screen_lock`: `sysadminctl -screenLock
//! status`, `defaults read` of one integer key, and a managed preferences
//! plist. Pure and compiled on every OS, so Linux CI tests it against the
//! fixtures in `agent/tests/fixtures/macos/screen_lock/`.

use std::io::Cursor;

use super::{MacScreenLockDelay, ManagedScreenSaver, RegistryRead};

/// `sysadminctl -screenLock status` logs one line to stderr, behind a
/// timestamp and the process name, e.g. `2023-05-01 10:00:00.000
/// sysadminctl[612:4501] screenLock delay is 300 seconds`. The forms known:
/// `screenLock delay is immediate`, `… is N seconds`, and `screenLock is
/// off`; a negative delay (`-1 seconds`, printed on some releases when the
/// password is not required) is off too. Anything else is an error, so an
/// unfamiliar release is `unknown`, not a guess.
pub fn parse_sysadminctl_screen_lock(output: &str) -> Result<MacScreenLockDelay, String> {
    for line in output.lines() {
        if line.contains("screenLock is off") {
            return Ok(MacScreenLockDelay::Off);
        }
        let Some((_, rest)) = line.split_once("screenLock delay is ") else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with("immediate") {
            return Ok(MacScreenLockDelay::Immediate);
        }
        let number = rest.strip_suffix("seconds").unwrap_or(rest).trim();
        let number = number.strip_suffix("second").unwrap_or(number).trim();
        return match number.parse::<f64>() {
            Ok(seconds) if seconds < 0.0 => Ok(MacScreenLockDelay::Off),
            // Whole seconds: the setting's choices are 5 s to 8 h.
            Ok(seconds) if seconds.is_finite() => {
                Ok(MacScreenLockDelay::Seconds(seconds.ceil() as u64))
            }
            _ => Err(format!("unrecognised screenLock delay: {rest:?}")),
        };
    }
    Err(format!(
        "sysadminctl printed no screenLock status: {:?}",
        output.trim()
    ))
}

/// `defaults read DOMAIN KEY` of an integer: the number on stdout when set;
/// exit 1 with "does not exist" on stderr when the key (or the domain) is not
/// set, which is `Absent`; anything else is `Unreadable`.
pub fn parse_defaults_integer(
    exit_code: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> RegistryRead<i64> {
    if exit_code == Some(0) {
        let text = stdout.trim();
        return match text.parse::<i64>() {
            Ok(value) => RegistryRead::Value(value),
            // `defaults write … -float` stores a real; the idle time is
            // whole seconds, so the fraction is dropped upwards (later).
            Err(_) => match text.parse::<f64>() {
                Ok(value) if value.is_finite() => RegistryRead::Value(value.ceil() as i64),
                _ => RegistryRead::Unreadable(format!("not an integer: {text:?}")),
            },
        };
    }
    if stderr.contains("does not exist") {
        return RegistryRead::Absent;
    }
    RegistryRead::Unreadable(format!(
        "defaults exited with {exit_code:?}: {}",
        stderr.trim()
    ))
}

/// A managed preferences plist for `com.apple.screensaver` (XML or binary;
/// profiles are installed as binary). Keys of the wrong type are errors:
/// what macOS does with them is not documented.
pub fn parse_managed_screensaver(bytes: &[u8]) -> Result<ManagedScreenSaver, String> {
    let value = plist::Value::from_reader(Cursor::new(bytes))
        .map_err(|err| format!("not a property list: {err}"))?;
    let dict = value
        .as_dictionary()
        .ok_or_else(|| "the property list is not a dictionary".to_owned())?;
    let mut managed = ManagedScreenSaver::default();
    if let Some(value) = dict.get("idleTime") {
        managed.idle_time = Some(plist_number(value, "idleTime")?.ceil() as i64);
    }
    if let Some(value) = dict.get("askForPassword") {
        managed.ask_for_password = Some(match value {
            plist::Value::Boolean(on) => *on,
            other => plist_number(other, "askForPassword")? != 0.0,
        });
    }
    if let Some(value) = dict.get("askForPasswordDelay") {
        managed.ask_for_password_delay = Some(plist_number(value, "askForPasswordDelay")?);
    }
    Ok(managed)
}

fn plist_number(value: &plist::Value, key: &str) -> Result<f64, String> {
    match value {
        plist::Value::Integer(number) => number
            .as_signed()
            .map(|n| n as f64)
            .ok_or_else(|| format!("{key} is out of range")),
        plist::Value::Real(number) if number.is_finite() => Ok(*number),
        other => Err(format!("{key} is not a number: {other:?}")),
    }
}
