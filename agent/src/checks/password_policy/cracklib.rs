//! pam_cracklib's settings: the older quality module some hardening guides
//! still install (see the cstallar and vultr fixtures). It is evaluated as
//! pam_pwquality is, since libpwquality grew out of it and keeps its length
//! rule (`simple()`: length plus credits must reach `minlen`), with three
//! differences that decide verdicts:
//! - it reads only its own arguments, never pwquality.conf;
//! - its defaults give a credit of 1 per character class (`CO_DIG_CREDIT` …
//!   `CO_OTH_CREDIT`) with `minlen` 9 (`CO_MIN_LENGTH`), so by default eight
//!   characters of three classes pass, and `minlen=15` alone lets eleven;
//! - it parses numbers with `strtol` and raises `minlen` to 5
//!   (`CO_MIN_LENGTH_BASE`), so `minlen=abc` means 5, not the default.
//!
//! The constants are those of `modules/pam_cracklib/pam_cracklib.c` in
//! Linux-PAM 1.3.1, the last release that shipped the module. Pure.

use super::pwquality::{PwqualitySettings, Setting, SettingSource};

const CRACKLIB_DEFAULT_MINLEN: i64 = 9;
const CRACKLIB_MINLEN_FLOOR: i64 = 5;
const CRACKLIB_DEFAULT_CREDIT: i64 = 1;
/// `minclass` above the four classes is lowered to four.
const CRACKLIB_CLASS_COUNT: i64 = 4;

/// The settings of a `pam_cracklib.so` line with these arguments.
pub fn cracklib_settings(arguments: &[String], file: &str, line: usize) -> PwqualitySettings {
    let default = |value| Setting {
        value,
        source: SettingSource::CracklibDefault,
    };
    let mut settings = PwqualitySettings {
        minlen: default(CRACKLIB_DEFAULT_MINLEN),
        dcredit: default(CRACKLIB_DEFAULT_CREDIT),
        ucredit: default(CRACKLIB_DEFAULT_CREDIT),
        lcredit: default(CRACKLIB_DEFAULT_CREDIT),
        ocredit: default(CRACKLIB_DEFAULT_CREDIT),
        minclass: default(0),
        // No `enforcing` option: a rejected password is always refused.
        enforcing: default(1),
        enforce_for_root: Setting {
            value: false,
            source: SettingSource::CracklibDefault,
        },
        local_users_only: Setting {
            value: false,
            source: SettingSource::CracklibDefault,
        },
        dictcheck: default(1),
    };
    let set = |value| Setting {
        value,
        source: SettingSource::CracklibArgument {
            file: file.to_owned(),
            line,
        },
    };
    for argument in arguments {
        let (name, value) = argument.split_once('=').unwrap_or((argument.as_str(), ""));
        match name {
            "minlen" => settings.minlen = set(strtol(value).max(CRACKLIB_MINLEN_FLOOR)),
            "dcredit" => settings.dcredit = set(strtol(value)),
            "ucredit" => settings.ucredit = set(strtol(value)),
            "lcredit" => settings.lcredit = set(strtol(value)),
            "ocredit" => settings.ocredit = set(strtol(value)),
            "minclass" => settings.minclass = set(strtol(value).min(CRACKLIB_CLASS_COUNT)),
            "enforce_for_root" => {
                settings.enforce_for_root = Setting {
                    value: true,
                    source: SettingSource::CracklibArgument {
                        file: file.to_owned(),
                        line,
                    },
                }
            }
            _ => {}
        }
    }
    settings
}

/// C's `strtol(text, _, 10)`: leading blanks, a sign and digits, as far
/// as they go; 0 when there are none; saturating where C clamps to
/// `LONG_MIN`/`LONG_MAX`.
fn strtol(text: &str) -> i64 {
    let text = text.trim_start();
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut value: i64 = 0;
    for digit in digits.bytes().take_while(u8::is_ascii_digit) {
        value = value
            .saturating_mul(10)
            .saturating_add(i64::from(digit - b'0'));
    }
    if negative { -value } else { value }
}

#[cfg(test)]
mod tests {
    use super::super::pwquality::shortest_accepted_length;
    use super::*;

    fn shortest(arguments: &str) -> i64 {
        let arguments: Vec<String> = arguments.split_whitespace().map(str::to_owned).collect();
        shortest_accepted_length(&cracklib_settings(
            &arguments,
            "/etc/pam.d/common-password",
            25,
        ))
    }

    #[test]
    fn the_default_credits_shorten_the_minimum() {
        // minlen 9, a credit of 1 per class: five characters of four
        // classes reach 9 (5 + 4).
        assert_eq!(shortest(""), 5);
        // The usual "minlen=15": eleven characters, one of each class.
        assert_eq!(shortest("retry=3 minlen=15"), 11);
        // Credits off: the minimum is minlen.
        assert_eq!(
            shortest("minlen=15 dcredit=0 ucredit=0 lcredit=0 ocredit=0"),
            15
        );
        // Negative credits require characters and give no credit.
        assert_eq!(
            shortest("minlen=15 dcredit=-1 ucredit=-1 lcredit=-1 ocredit=-1"),
            15
        );
    }

    #[test]
    fn numbers_are_read_as_strtol_reads_them() {
        assert_eq!(strtol("12"), 12);
        assert_eq!(strtol("-1"), -1);
        assert_eq!(strtol("12abc"), 12);
        assert_eq!(strtol("abc"), 0);
        assert_eq!(strtol(""), 0);
        let settings = cracklib_settings(&["minlen=abc".to_owned()], "f", 1);
        assert_eq!(settings.minlen.value, CRACKLIB_MINLEN_FLOOR);
        let settings = cracklib_settings(&["minclass=9".to_owned()], "f", 1);
        assert_eq!(settings.minclass.value, 4);
    }

    #[test]
    fn sources_name_the_cracklib_line() {
        let settings =
            cracklib_settings(&["minlen=14".to_owned()], "/etc/pam.d/common-password", 25);
        assert_eq!(
            settings.minlen.source.to_string(),
            "the pam_cracklib argument in /etc/pam.d/common-password line 25"
        );
        assert_eq!(
            settings.dcredit.source.to_string(),
            "the pam_cracklib default"
        );
    }
}
