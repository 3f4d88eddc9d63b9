//! `/etc/login.defs` as shadow-utils reads it, for the password-ageing keys.
//!
//! Pure: text in, values out. It decides nothing; note that these values are
//! the defaults `useradd` gives new accounts, and `passwd` itself takes its
//! length rules from PAM (`PASS_MIN_LEN` is "OBSOLETED BY PAM" on Debian).

use std::collections::BTreeMap;

/// The keys kept for the verdict and the evidence.
pub const PASSWORD_AGEING_KEYS: [&str; 4] = [
    "PASS_MAX_DAYS",
    "PASS_MIN_DAYS",
    "PASS_WARN_AGE",
    "PASS_MIN_LEN",
];

/// One key's raw value and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginDefsValue {
    /// The text shadow takes as the value.
    pub raw: String,
    pub line: usize,
}

impl LoginDefsValue {
    /// The number shadow's `getdef_num` makes of the value (any C `int`), or
    /// `None` when it rejects it: it then logs "configuration error" and uses
    /// the caller's default, which for `PASS_MAX_DAYS` is -1, no expiry.
    pub fn number(&self) -> Option<i64> {
        parse_c_long_any_base(&self.raw).filter(|n| i32::try_from(*n).is_ok())
    }
}

/// The password-ageing keys of a login.defs file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginDefs {
    pub values: BTreeMap<String, LoginDefsValue>,
}

impl LoginDefs {
    pub fn get(&self, key: &str) -> Option<&LoginDefsValue> {
        self.values.get(key)
    }
}

/// Parses login.defs as shadow's `def_load` (lib/getdef.c) does: a line whose
/// first non-blank character is `#` is a comment; the name runs to the first
/// blank; the value starts after blanks and an opening `"` and ends at the
/// next `"` or the end of the line, trailing white space removed. A `#` later
/// on the line is part of the value (so `PASS_MAX_DAYS 90 # note` is not a
/// number to shadow). A key that appears twice keeps its last value.
pub fn parse_login_defs(text: &str) -> LoginDefs {
    let mut values = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches(|c: char| c.is_ascii_whitespace());
        let name_start = line.trim_start_matches([' ', '\t']);
        if name_start.is_empty() || name_start.starts_with('#') {
            continue;
        }
        let Some(name_end) = name_start.find([' ', '\t']) else {
            // One field only: shadow skips it.
            continue;
        };
        let name = &name_start[..name_end];
        let value = name_start[name_end + 1..].trim_start_matches([' ', '\t', '"']);
        let value = value.split('"').next().unwrap_or_default();
        if PASSWORD_AGEING_KEYS.contains(&name) {
            values.insert(
                name.to_owned(),
                LoginDefsValue {
                    raw: value.to_owned(),
                    line: index + 1,
                },
            );
        }
    }
    LoginDefs { values }
}

/// C `strtol(text, &end, 0)` as shadow's `getlong` uses it: optional leading
/// white space and sign, `0x` for hexadecimal, a leading `0` for octal, and
/// nothing after the digits.
fn parse_c_long_any_base(text: &str) -> Option<i64> {
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let (radix, digits) = if let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        (16, hex)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        (8, &unsigned[1..])
    } else {
        (10, unsigned)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i64::from_str_radix(digits, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}
