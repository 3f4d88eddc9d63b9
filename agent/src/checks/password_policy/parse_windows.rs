//! Pure parsers of the two texts Windows gives about its local password
//! policy, and the step from what they say to [`WindowsPasswordFacts`]' terms:
//!
//! - the INF file `secedit /export /cfg FILE /areas SECURITYPOLICY` writes
//!   (UTF-16LE with a byte-order mark; UTF-8 is accepted too, as files
//!   copied around are often re-encoded): its `[System Access]` section is
//!   the only place "Password must meet complexity requirements" can be
//!   read without the LSA's private API;
//! - the English output of `net accounts`, kept as evidence and as a
//!   fallback. Other languages translate the labels; this parser does not
//!   guess them, so any layout it does not know is an error.
//!
//! A key the text does not have is `None`, never a default: secedit leaves
//! out `LockoutDuration` and `ResetLockoutCount` when lockout is off, and a
//! made-up 30 minutes would be a lie in the evidence. Nothing here touches
//! the machine; the fixtures they are tested on are listed in
//! `agent/tests/fixtures/windows/password_policy/SOURCES.md`.
//!
//! [`WindowsPasswordFacts`]: super::WindowsPasswordFacts

use super::{
    WindowsAccountPolicy, WindowsLockoutPolicy, WindowsPasswordFacts, WindowsPolicySource,
};

/// The `[System Access]` keys of a secedit export this rule reads, as
/// written (secedit's units: days for ages, minutes for lockout times).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeceditSystemAccess {
    pub minimum_password_length: Option<i64>,
    /// 1 on, 0 off.
    pub password_complexity: Option<i64>,
    /// Days; -1 (and 0, per the policy's own help text) never expire.
    pub maximum_password_age: Option<i64>,
    pub minimum_password_age: Option<i64>,
    pub password_history_size: Option<i64>,
    /// Failed logons before lockout; 0 never locks out.
    pub lockout_bad_count: Option<i64>,
    /// Minutes; -1 means until an administrator unlocks the account.
    pub lockout_duration: Option<i64>,
    pub reset_lockout_count: Option<i64>,
    /// "Store passwords using reversible encryption": 1 on.
    pub clear_text_password: Option<i64>,
}

/// Why a secedit export could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeceditParseError {
    #[error("the export is not valid {encoding}")]
    Encoding { encoding: &'static str },
    #[error("the export contains NUL characters, as UTF-16 read without its byte-order mark would")]
    UnmarkedUtf16,
    #[error("the export has no [System Access] section")]
    NoSystemAccess,
    #[error("line {line}: expected `key = value` in [System Access], found `{text}`")]
    NotAKeyValue { line: usize, text: String },
    #[error("line {line}: {key} is `{value}`, not a whole number")]
    NotANumber {
        line: usize,
        key: &'static str,
        value: String,
    },
    #[error("line {line}: {key} appears a second time (first on line {first})")]
    Duplicate {
        line: usize,
        key: &'static str,
        first: usize,
    },
    #[error("line {line}: `{text}` comes before any [section]")]
    OutsideSection { line: usize, text: String },
}

/// Turns the bytes secedit wrote into text: UTF-16LE after its byte-order
/// mark (what secedit writes), or UTF-8 with or without one.
pub fn decode_secedit_export(bytes: &[u8]) -> Result<String, SeceditParseError> {
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        if rest.len() % 2 != 0 {
            return Err(SeceditParseError::Encoding {
                encoding: "UTF-16LE",
            });
        }
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        return String::from_utf16(&units).map_err(|_| SeceditParseError::Encoding {
            encoding: "UTF-16LE",
        });
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        // secedit never writes big-endian; say so rather than misread it.
        return Err(SeceditParseError::Encoding {
            encoding: "UTF-16LE or UTF-8 (it is marked UTF-16BE)",
        });
    }
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    let text = std::str::from_utf8(bytes)
        .map_err(|_| SeceditParseError::Encoding { encoding: "UTF-8" })?;
    if text.contains('\0') {
        return Err(SeceditParseError::UnmarkedUtf16);
    }
    Ok(text.to_owned())
}

/// Reads `[System Access]` from the text of a secedit export. Other
/// sections (`[Registry Values]`, `[Privilege Rights]`, ...) are skipped
/// unread: this rule does not judge them, and a console paste can wrap
/// their long lines. Inside `[System Access]` every line must be
/// `key = value`; keys this rule does not use (`NewGuestName`, ...) are
/// ignored, and the ones it uses must be whole numbers.
pub fn parse_secedit_export(text: &str) -> Result<SeceditSystemAccess, SeceditParseError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut parsed = SeceditSystemAccess::default();
    let mut first_seen: Vec<(&'static str, usize)> = Vec::new();
    let mut section: Option<&str> = None;
    let mut saw_system_access = false;
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            saw_system_access |= name.eq_ignore_ascii_case("System Access");
            section = Some(name);
            continue;
        }
        let Some(current) = section else {
            return Err(SeceditParseError::OutsideSection {
                line: line_number,
                text: line.to_owned(),
            });
        };
        if !current.eq_ignore_ascii_case("System Access") {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(SeceditParseError::NotAKeyValue {
                line: line_number,
                text: line.to_owned(),
            });
        };
        let (key, value) = (key.trim(), value.trim());
        let Some((name, slot)) = system_access_slot(&mut parsed, key) else {
            continue;
        };
        if let Some(&(_, first)) = first_seen.iter().find(|(seen, _)| *seen == name) {
            return Err(SeceditParseError::Duplicate {
                line: line_number,
                key: name,
                first,
            });
        }
        first_seen.push((name, line_number));
        let number = value
            .parse::<i64>()
            .map_err(|_| SeceditParseError::NotANumber {
                line: line_number,
                key: name,
                value: value.to_owned(),
            })?;
        *slot = Some(number);
    }
    if !saw_system_access {
        return Err(SeceditParseError::NoSystemAccess);
    }
    Ok(parsed)
}

/// The field a `[System Access]` key fills, with the key's spelling;
/// `None` for keys this rule does not read. secedit's keys are compared
/// without case, as its INF reader does.
fn system_access_slot<'p>(
    parsed: &'p mut SeceditSystemAccess,
    key: &str,
) -> Option<(&'static str, &'p mut Option<i64>)> {
    let slots: [(&'static str, &'p mut Option<i64>); 9] = [
        ("MinimumPasswordLength", &mut parsed.minimum_password_length),
        ("PasswordComplexity", &mut parsed.password_complexity),
        ("MaximumPasswordAge", &mut parsed.maximum_password_age),
        ("MinimumPasswordAge", &mut parsed.minimum_password_age),
        ("PasswordHistorySize", &mut parsed.password_history_size),
        ("LockoutBadCount", &mut parsed.lockout_bad_count),
        ("LockoutDuration", &mut parsed.lockout_duration),
        ("ResetLockoutCount", &mut parsed.reset_lockout_count),
        ("ClearTextPassword", &mut parsed.clear_text_password),
    ];
    slots
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
}

/// The probe's facts from what `NetUserModalsGet` (levels 0 and 3) and
/// secedit's export gave: the API's numbers when it answered; the export's
/// when it failed and the export has them all; else the API's error (the
/// one a reader can look up). Complexity comes only from the export.
pub fn windows_facts(
    accounts_from_api: Result<WindowsAccountPolicy, String>,
    lockout_from_api: Result<WindowsLockoutPolicy, String>,
    export: Result<SeceditSystemAccess, String>,
) -> WindowsPasswordFacts {
    let (accounts, accounts_source) =
        with_export_fallback(accounts_from_api, &export, account_policy_from_export);
    let (lockout, lockout_source) =
        with_export_fallback(lockout_from_api, &export, lockout_policy_from_export);
    let complexity = export
        .as_ref()
        .map_err(Clone::clone)
        .and_then(complexity_from_export);
    let reversible_encryption = export
        .as_ref()
        .ok()
        .and_then(|access| access.clear_text_password)
        .map(|value| value != 0);
    WindowsPasswordFacts {
        accounts,
        accounts_source,
        lockout,
        lockout_source,
        complexity,
        reversible_encryption,
    }
}

fn with_export_fallback<T>(
    from_api: Result<T, String>,
    export: &Result<SeceditSystemAccess, String>,
    convert: fn(&SeceditSystemAccess) -> Result<T, String>,
) -> (Result<T, String>, WindowsPolicySource) {
    match (from_api, export) {
        (Ok(value), _) => (Ok(value), WindowsPolicySource::NetUserModalsGet),
        (Err(net_api_error), Ok(access)) => match convert(access) {
            Ok(value) => (
                Ok(value),
                WindowsPolicySource::SeceditExport { net_api_error },
            ),
            Err(_) => (Err(net_api_error), WindowsPolicySource::NetUserModalsGet),
        },
        (Err(net_api_error), Err(_)) => (Err(net_api_error), WindowsPolicySource::NetUserModalsGet),
    }
}

const SECONDS_PER_DAY: i64 = 86_400;
const SECONDS_PER_MINUTE: i64 = 60;

/// lmaccess.h's `TIMEQ_FOREVER`, which `NetUserModalsGet` gives for a
/// lockout that lasts until an administrator ends it; secedit writes -1.
const TIMEQ_FOREVER: u32 = u32::MAX;

/// "Password must meet complexity requirements" from an export: `1` on,
/// `0` off, anything else (or no key) is a reason it is unknown.
pub fn complexity_from_export(access: &SeceditSystemAccess) -> Result<bool, String> {
    match access.password_complexity {
        Some(1) => Ok(true),
        Some(0) => Ok(false),
        Some(other) => Err(format!(
            "secedit's export gives PasswordComplexity = {other}, neither 0 nor 1"
        )),
        None => Err("secedit's export has no PasswordComplexity".to_owned()),
    }
}

/// The account policy in `NetUserModalsGet` level 0's terms, when the
/// export has all four keys; used only when that call failed.
pub fn account_policy_from_export(
    access: &SeceditSystemAccess,
) -> Result<WindowsAccountPolicy, String> {
    let key = |value: Option<i64>, name: &str| {
        value.ok_or_else(|| format!("secedit's export has no {name}"))
    };
    let length = key(access.minimum_password_length, "MinimumPasswordLength")?;
    let max_age = key(access.maximum_password_age, "MaximumPasswordAge")?;
    let min_age = key(access.minimum_password_age, "MinimumPasswordAge")?;
    let history = key(access.password_history_size, "PasswordHistorySize")?;
    Ok(WindowsAccountPolicy {
        min_password_length: non_negative(length, "MinimumPasswordLength")?,
        max_password_age_seconds: match max_age {
            // -1 is what secedit writes for "never"; 0 means the same in
            // the Local Security Policy's own help ("passwords never expire").
            -1 | 0 => None,
            days => Some(seconds(days, SECONDS_PER_DAY, "MaximumPasswordAge")?),
        },
        min_password_age_seconds: seconds(min_age, SECONDS_PER_DAY, "MinimumPasswordAge")?,
        password_history_length: non_negative(history, "PasswordHistorySize")?,
    })
}

/// The lockout policy in `NetUserModalsGet` level 3's terms, when the
/// export has all three keys (it has only `LockoutBadCount` while lockout
/// is off, and then this says so instead of inventing the other two).
pub fn lockout_policy_from_export(
    access: &SeceditSystemAccess,
) -> Result<WindowsLockoutPolicy, String> {
    let key = |value: Option<i64>, name: &str| {
        value.ok_or_else(|| format!("secedit's export has no {name}"))
    };
    let threshold = key(access.lockout_bad_count, "LockoutBadCount")?;
    let duration = key(access.lockout_duration, "LockoutDuration")?;
    let window = key(access.reset_lockout_count, "ResetLockoutCount")?;
    Ok(WindowsLockoutPolicy {
        threshold: non_negative(threshold, "LockoutBadCount")?,
        duration_seconds: match duration {
            -1 => TIMEQ_FOREVER,
            minutes => seconds(minutes, SECONDS_PER_MINUTE, "LockoutDuration")?,
        },
        observation_window_seconds: seconds(window, SECONDS_PER_MINUTE, "ResetLockoutCount")?,
    })
}

fn non_negative(value: i64, name: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("secedit's export gives {name} = {value}"))
}

fn seconds(value: i64, unit: i64, name: &str) -> Result<u32, String> {
    value
        .checked_mul(unit)
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(|| format!("secedit's export gives {name} = {value}"))
}

/// `net accounts`' numbers. `None` stands for the word Windows prints
/// instead of a number ("Never", "Unlimited", "None"): no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetAccounts {
    pub force_logoff_minutes: Option<u32>,
    pub min_password_age_days: Option<u32>,
    pub max_password_age_days: Option<u32>,
    pub min_password_length: Option<u32>,
    pub password_history_length: Option<u32>,
    pub lockout_threshold: Option<u32>,
    pub lockout_duration_minutes: Option<u32>,
    pub lockout_observation_window_minutes: Option<u32>,
    /// `WORKSTATION`, `SERVER`, `PRIMARY`, `BACKUP`; absent from some
    /// captures.
    pub computer_role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetAccountsParseError {
    #[error(
        "line {line}: `{text}` is not a line of English `net accounts` output (other languages \
         are not read)"
    )]
    UnknownLine { line: usize, text: String },
    #[error("line {line}: `{label}` is `{value}`, neither a number nor Never/Unlimited/None")]
    BadValue {
        line: usize,
        label: &'static str,
        value: String,
    },
    #[error("line {line}: `{label}` appears a second time")]
    Duplicate { line: usize, label: &'static str },
    #[error("no `{label}` line: not the English `net accounts` layout")]
    Missing { label: &'static str },
}

/// The labels of the eight numeric lines, as English Windows prints them
/// (from Windows 2000 to 11; the captures in SOURCES.md span 2003 to 11).
const NET_ACCOUNTS_LABELS: [&str; 8] = [
    "Force user logoff how long after time expires?:",
    "Minimum password age (days):",
    "Maximum password age (days):",
    "Minimum password length:",
    "Length of password history maintained:",
    "Lockout threshold:",
    "Lockout duration (minutes):",
    "Lockout observation window (minutes):",
];
const COMPUTER_ROLE_LABEL: &str = "Computer role:";

/// Reads English `net accounts` output. Besides the policy lines it knows
/// the closing "The command completed successfully" and the `/domain`
/// preamble "The request will be processed at a domain controller ...";
/// any other line is an error, so a translated or changed layout is never
/// half read.
pub fn parse_net_accounts(text: &str) -> Result<NetAccounts, NetAccountsParseError> {
    let mut values: [Option<(usize, Option<u32>)>; 8] = [None; 8];
    let mut computer_role = None;
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw.trim();
        if line.is_empty()
            || line.starts_with("The command completed successfully")
            || line.starts_with("The request will be processed at a domain controller")
        {
            continue;
        }
        if let Some(role) = line.strip_prefix(COMPUTER_ROLE_LABEL) {
            if computer_role.is_some() {
                return Err(NetAccountsParseError::Duplicate {
                    line: line_number,
                    label: COMPUTER_ROLE_LABEL,
                });
            }
            computer_role = Some(role.trim().to_owned());
            continue;
        }
        let Some((slot, label, value)) = NET_ACCOUNTS_LABELS
            .iter()
            .enumerate()
            .find_map(|(slot, label)| line.strip_prefix(label).map(|v| (slot, *label, v.trim())))
        else {
            return Err(NetAccountsParseError::UnknownLine {
                line: line_number,
                text: line.to_owned(),
            });
        };
        if values[slot].is_some() {
            return Err(NetAccountsParseError::Duplicate {
                line: line_number,
                label,
            });
        }
        let number = match value {
            "Never" | "Unlimited" | "None" => None,
            digits => Some(
                digits
                    .parse::<u32>()
                    .map_err(|_| NetAccountsParseError::BadValue {
                        line: line_number,
                        label,
                        value: digits.to_owned(),
                    })?,
            ),
        };
        values[slot] = Some((line_number, number));
    }
    let mut numbers = [None; 8];
    for (slot, label) in NET_ACCOUNTS_LABELS.iter().enumerate() {
        let Some((_, number)) = values[slot] else {
            return Err(NetAccountsParseError::Missing { label });
        };
        numbers[slot] = number;
    }
    let [
        force_logoff_minutes,
        min_password_age_days,
        max_password_age_days,
        min_password_length,
        password_history_length,
        lockout_threshold,
        lockout_duration_minutes,
        lockout_observation_window_minutes,
    ] = numbers;
    Ok(NetAccounts {
        force_logoff_minutes,
        min_password_age_days,
        max_password_age_days,
        min_password_length,
        password_history_length,
        lockout_threshold,
        lockout_duration_minutes,
        lockout_observation_window_minutes,
        computer_role,
    })
}

#[cfg(test)]
#[path = "tests_parse_windows.rs"]
mod tests;
