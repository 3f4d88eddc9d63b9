//! libpwquality's settings as pam_pwquality sees them: the configuration
//! files, the module arguments that override them, and the shortest password
//! those settings accept.
//!
//! Everything here is pure and models libpwquality 1.4.5 (Debian 12, and the
//! 1.4.x line of Ubuntu 20.04+, RHEL 8/9 and Fedora), checked against the
//! library itself through its Python binding: see the numbers in the tests.
//! This module reads no file and decides nothing about compliance.

use std::fmt;

/// pwquality.conf(5) and `PWQ_BASE_MIN_LENGTH` in libpwquality's
/// `src/pwqprivate.h`: "Cannot be set to lower value than 6"; the library
/// raises a smaller `minlen` to 6 when it is set.
pub const PWQUALITY_MIN_LENGTH_FLOOR: i64 = 6;

/// `PWQ_NUM_CLASSES` in `src/pwqprivate.h`: digits, upper, lower, other. A
/// larger `minclass` is lowered to this.
pub const PWQUALITY_CLASS_COUNT: i64 = 4;

/// `PWQSETTINGS_MAX_LINELEN` in `src/settings.c`: `fgets` reads 1023 bytes;
/// a longer line makes the file "malformed" and the library stops reading.
const PWQUALITY_MAX_LINE_BYTES: usize = 1023;

/// `char name[80]` in `pwquality_set_option`: a longer option name is an
/// unknown setting.
const PWQUALITY_MAX_OPTION_NAME: usize = 79;

/// Where one setting's value came from, for the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingSource {
    /// libpwquality's built-in default.
    Default,
    /// A line of a pwquality configuration file.
    File { path: String, line: usize },
    /// An argument on a `pam_pwquality.so` line.
    PamArgument { file: String, line: usize },
    /// pam_cracklib's built-in default (it reads no configuration file).
    CracklibDefault,
    /// An argument on a `pam_cracklib.so` line.
    CracklibArgument { file: String, line: usize },
}

impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("the libpwquality default"),
            Self::File { path, line } => write!(f, "{path} line {line}"),
            Self::PamArgument { file, line } => {
                write!(f, "the pam_pwquality argument in {file} line {line}")
            }
            Self::CracklibDefault => f.write_str("the pam_cracklib default"),
            Self::CracklibArgument { file, line } => {
                write!(f, "the pam_cracklib argument in {file} line {line}")
            }
        }
    }
}

/// One setting's effective value and its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: SettingSource,
}

impl<T> Setting<T> {
    pub(super) fn default_value(value: T) -> Self {
        Self {
            value,
            source: SettingSource::Default,
        }
    }
}

/// The settings that decide the verdict, plus a few shown as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PwqualitySettings {
    /// The length score a password must reach (already raised to 6).
    pub minlen: Setting<i64>,
    /// Credits: N > 0 lets up to N characters of the class count twice;
    /// N < 0 requires at least -N characters of the class.
    pub dcredit: Setting<i64>,
    pub ucredit: Setting<i64>,
    pub lcredit: Setting<i64>,
    pub ocredit: Setting<i64>,
    /// Classes a password must mix (already lowered to 4; 0 or less: none).
    pub minclass: Setting<i64>,
    /// 0 makes pam_pwquality print a warning and accept the password.
    pub enforcing: Setting<i64>,
    /// Without it, root may set any password (pam_pwquality only warns).
    pub enforce_for_root: Setting<bool>,
    /// With it, users missing from /etc/passwd (LDAP, SSSD) are not checked.
    pub local_users_only: Setting<bool>,
    /// 0 turns the cracklib dictionary check off.
    pub dictcheck: Setting<i64>,
}

impl Default for PwqualitySettings {
    /// libpwquality 1.4.5's defaults (`PWQ_DEFAULT_*` in `src/pwqprivate.h`),
    /// which the shipped pwquality.conf repeats in its comments
    /// (`# minlen = 8`, `# dcredit = 0` … `# minclass = 0`, `# enforcing = 1`;
    /// see the debian-12-pwquality fixture). Before 1.3.0 the defaults were
    /// minlen 9 with credits of 1; no supported distribution ships that.
    fn default() -> Self {
        Self {
            minlen: Setting::default_value(8),
            dcredit: Setting::default_value(0),
            ucredit: Setting::default_value(0),
            lcredit: Setting::default_value(0),
            ocredit: Setting::default_value(0),
            minclass: Setting::default_value(0),
            enforcing: Setting::default_value(1),
            enforce_for_root: Setting::default_value(false),
            local_users_only: Setting::default_value(false),
            dictcheck: Setting::default_value(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SettingKind {
    Integer,
    Text,
    /// Present means on, whatever value follows.
    Flag,
}

/// Every setting libpwquality 1.4.5 knows (`s_map` in `src/settings.c`). Any
/// other name is an error, and in a configuration file an error stops the
/// library reading (see [`read_pwquality_files`]).
const KNOWN_SETTINGS: [(&str, SettingKind); 20] = [
    ("difok", SettingKind::Integer),
    ("minlen", SettingKind::Integer),
    ("dcredit", SettingKind::Integer),
    ("ucredit", SettingKind::Integer),
    ("lcredit", SettingKind::Integer),
    ("ocredit", SettingKind::Integer),
    ("minclass", SettingKind::Integer),
    ("maxrepeat", SettingKind::Integer),
    ("maxclassrepeat", SettingKind::Integer),
    ("maxsequence", SettingKind::Integer),
    ("gecoscheck", SettingKind::Integer),
    ("dictcheck", SettingKind::Integer),
    ("usercheck", SettingKind::Integer),
    ("usersubstr", SettingKind::Integer),
    ("enforcing", SettingKind::Integer),
    ("retry", SettingKind::Integer),
    ("badwords", SettingKind::Text),
    ("dictpath", SettingKind::Text),
    ("enforce_for_root", SettingKind::Flag),
    ("local_users_only", SettingKind::Flag),
];

impl PwqualitySettings {
    /// Applies one `name`/`value` pair as libpwquality's `set_name_value`
    /// does: names are case-insensitive, integers are whole base-10 numbers
    /// (C `strtol`, nothing after the digits), `minlen` is raised to 6 and
    /// `minclass` lowered to 4.
    pub fn apply(&mut self, name: &str, value: &str, source: SettingSource) -> Result<(), String> {
        let lowered = name.to_ascii_lowercase();
        let Some((known, kind)) = KNOWN_SETTINGS.iter().find(|(n, _)| *n == lowered) else {
            return Err(format!("unknown setting {name:?}"));
        };
        match kind {
            SettingKind::Text => Ok(()),
            SettingKind::Flag => {
                let on = Setting {
                    value: true,
                    source,
                };
                match *known {
                    "enforce_for_root" => self.enforce_for_root = on,
                    "local_users_only" => self.local_users_only = on,
                    _ => {}
                }
                Ok(())
            }
            SettingKind::Integer => {
                let number = parse_c_int(value)
                    .ok_or_else(|| format!("bad integer value {value:?} for {known}"))?;
                let set = |value: i64| Setting {
                    value,
                    source: source.clone(),
                };
                match *known {
                    "minlen" => self.minlen = set(number.max(PWQUALITY_MIN_LENGTH_FLOOR)),
                    "dcredit" => self.dcredit = set(number),
                    "ucredit" => self.ucredit = set(number),
                    "lcredit" => self.lcredit = set(number),
                    "ocredit" => self.ocredit = set(number),
                    "minclass" => self.minclass = set(number.min(PWQUALITY_CLASS_COUNT)),
                    "enforcing" => self.enforcing = set(number),
                    "dictcheck" => self.dictcheck = set(number),
                    _ => {}
                }
                Ok(())
            }
        }
    }

    /// The four credits in the order digits, upper, lower, other.
    pub fn credits(&self) -> [i64; 4] {
        [
            self.dcredit.value,
            self.ucredit.value,
            self.lcredit.value,
            self.ocredit.value,
        ]
    }

    /// The credit settings that are positive, by name, for explanations.
    pub fn positive_credits(&self) -> Vec<(&'static str, &Setting<i64>)> {
        [
            ("dcredit", &self.dcredit),
            ("ucredit", &self.ucredit),
            ("lcredit", &self.lcredit),
            ("ocredit", &self.ocredit),
        ]
        .into_iter()
        .filter(|(_, setting)| setting.value > 0)
        .collect()
    }
}

/// C `strtol(value, &end, 10)` as libpwquality uses it: leading white space
/// and a sign are allowed, nothing may follow the digits, and the value must
/// lie strictly between `INT_MIN` and `INT_MAX`.
fn parse_c_int(value: &str) -> Option<i64> {
    let trimmed = value.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, digits) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude: i64 = digits.parse().ok()?;
    let number = if negative { -magnitude } else { magnitude };
    (number > i64::from(i32::MIN) && number < i64::from(i32::MAX)).then_some(number)
}

/// One meaningful line of a pwquality configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfLine {
    Setting {
        line: usize,
        name: String,
        value: String,
    },
    /// A line libpwquality rejects as malformed (too long).
    Malformed { line: usize, reason: String },
}

/// Splits a pwquality configuration file into settings the way libpwquality
/// 1.4.5's `read_config_file` does: `#` starts a comment anywhere on a line;
/// the name ends at white space or `=`; one `=` and white space around it
/// are skipped; the rest of the line is the value (`minlen 14`, `minlen=14`
/// and `minlen = 14` all work, `minlen == 14` has the value `= 14`). A bare
/// name has an empty value.
pub fn parse_pwquality_conf(text: &str) -> Vec<ConfLine> {
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        // `lines()` drops the newline; fgets needs room for it too.
        if raw.len() + 1 > PWQUALITY_MAX_LINE_BYTES {
            lines.push(ConfLine::Malformed {
                line: number,
                reason: format!("line is longer than {PWQUALITY_MAX_LINE_BYTES} bytes"),
            });
            continue;
        }
        let content = raw.split('#').next().unwrap_or_default();
        let content = content.trim_matches(|c: char| c.is_ascii_whitespace());
        if content.is_empty() {
            continue;
        }
        let name_end = content
            .find(|c: char| c.is_ascii_whitespace() || c == '=')
            .unwrap_or(content.len());
        let name = &content[..name_end];
        let mut rest = &content[name_end..];
        let mut seen_equals = false;
        if let Some(after) = rest.strip_prefix('=') {
            seen_equals = true;
            rest = after;
        } else if !rest.is_empty() {
            rest = &rest[1..];
        }
        loop {
            if let Some(after) = rest.strip_prefix(|c: char| c.is_ascii_whitespace()) {
                rest = after;
            } else if let Some(after) = rest.strip_prefix('=').filter(|_| !seen_equals) {
                seen_equals = true;
                rest = after;
            } else {
                break;
            }
        }
        lines.push(ConfLine::Setting {
            line: number,
            name: name.to_owned(),
            value: rest.to_owned(),
        });
    }
    lines
}

/// The settings the configuration files produce, and what was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PwqualityConfig {
    pub settings: PwqualitySettings,
    /// The files applied, in order.
    pub files_read: Vec<String>,
    /// Where libpwquality stopped reading because of an error, if it did:
    /// nothing after this point (in this file or any later one) applies.
    pub stopped_at: Option<String>,
}

/// The files in the order libpwquality 1.3–1.4.5 reads them for its default
/// configuration: pwquality.conf(5) says it "first reads all *.conf files
/// from the /etc/security/pwquality.conf.d directory in ASCII sorted order",
/// then `/etc/security/pwquality.conf`, each file overriding the earlier
/// ones. So the main file wins over the drop-ins (checked with the library:
/// `minlen = 9` in the main file beat `minlen = 14` in a drop-in).
///
/// `drop_in_names` is the directory listing; every name ending in `.conf` is
/// read, dot-files included (checked with the library).
pub fn pwquality_file_order(drop_in_names: &[String]) -> Vec<String> {
    let mut names: Vec<&String> = drop_in_names
        .iter()
        .filter(|name| name.ends_with(".conf"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| format!("{PWQUALITY_DROP_IN_DIR}/{name}"))
        .chain(std::iter::once(PWQUALITY_MAIN_FILE.to_owned()))
        .collect()
}

pub const PWQUALITY_MAIN_FILE: &str = "/etc/security/pwquality.conf";
pub const PWQUALITY_DROP_IN_DIR: &str = "/etc/security/pwquality.conf.d";

/// Applies the files (path, text) in order, over the defaults. As in
/// libpwquality's `pwquality_read_config`, the first unknown setting, bad
/// number or malformed line stops the reading: the library returns an error
/// that pam_pwquality only logs, and checks passwords with what it had read
/// so far (checked with the library: a line `bogus = 1` before `minlen = 14`
/// left minlen at 8, and stopped the later files too).
pub fn read_pwquality_files(files: &[(String, String)]) -> PwqualityConfig {
    let mut settings = PwqualitySettings::default();
    let mut files_read = Vec::new();
    for (path, text) in files {
        files_read.push(path.clone());
        for line in parse_pwquality_conf(text) {
            let stopped = match line {
                ConfLine::Malformed { line, reason } => {
                    Some(format!("{path} line {line}: {reason}"))
                }
                ConfLine::Setting { line, name, value } => settings
                    .apply(
                        &name,
                        &value,
                        SettingSource::File {
                            path: path.clone(),
                            line,
                        },
                    )
                    .err()
                    .map(|error| format!("{path} line {line}: {error}")),
            };
            if let Some(stopped_at) = stopped {
                return PwqualityConfig {
                    settings,
                    files_read,
                    stopped_at: Some(stopped_at),
                };
            }
        }
    }
    PwqualityConfig {
        settings,
        files_read,
        stopped_at: None,
    }
}

/// What pam_pwquality made of its module arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentOutcome {
    pub settings: PwqualitySettings,
    /// Arguments pam_pwquality logs as "unknown or broken option" and ignores.
    pub ignored: Vec<String>,
    /// A `conf=` argument: later libpwquality versions read another file
    /// then, which this model does not follow.
    pub custom_config: Option<String>,
}

/// Applies pam_pwquality's arguments over the configuration, as
/// `_pam_parse` in libpwquality 1.4.5's `src/pam_pwquality.c` does:
/// pam_pwquality(8) says "The module arguments override the settings in the
/// configuration file". A few arguments belong to the module itself and are
/// skipped (matched by prefix, as the C code's `strncmp` does); a broken one
/// is logged and ignored, the others still apply.
pub fn apply_pam_arguments(
    base: &PwqualitySettings,
    arguments: &[String],
    file: &str,
    line: usize,
) -> ArgumentOutcome {
    const MODULE_OWN_PREFIXES: [&str; 7] = [
        "type=",
        "difignore=",
        "reject_username",
        "authtok_type",
        "use_authtok",
        "use_first_pass",
        "try_first_pass",
    ];
    let mut settings = base.clone();
    let mut ignored = Vec::new();
    let mut custom_config = None;
    for argument in arguments {
        if argument == "debug" || MODULE_OWN_PREFIXES.iter().any(|p| argument.starts_with(p)) {
            continue;
        }
        if let Some(path) = argument.strip_prefix("conf=") {
            custom_config = Some(path.to_owned());
            continue;
        }
        let (name, value) = argument.split_once('=').unwrap_or((argument.as_str(), ""));
        let result = if name.len() > PWQUALITY_MAX_OPTION_NAME {
            Err("option name too long".to_owned())
        } else {
            settings.apply(
                name,
                value,
                SettingSource::PamArgument {
                    file: file.to_owned(),
                    line,
                },
            )
        };
        if let Err(error) = result {
            ignored.push(format!("{argument} ({error})"));
        }
    }
    ArgumentOutcome {
        settings,
        ignored,
        custom_config,
    }
}

/// The length of the shortest password these settings accept: the
/// guaranteed minimum length.
///
/// libpwquality's length rule (`simple()` in `src/check.c`; pam_pwquality(8)
/// and pwquality.conf(5) under `minlen` and `Xcredit`): a password passes
/// when its length plus its credits reaches `minlen`. For each class with a
/// positive credit N, each of the first N characters of that class adds one
/// credit; a negative credit -N instead requires N characters of the class
/// and gives no credit; `minclass` requires that many different classes.
/// So with `minlen` 12 and all four credits at 1, eight characters with one
/// of each class pass (8 + 4 = 12): the usual shortcut is
/// `minlen - (sum of positive credits)`.
///
/// That shortcut is only right while there are fewer credits than
/// characters; this computes the exact minimum. With `c` credited
/// characters, `R` required characters (the negative credits) and `e`
/// classes still needed after the required ones, the shortest length is
/// `R + c + max(0, minlen - R - 2c, e - min(c, P))` (`P` = number of classes
/// with a positive credit, each of which a credited character covers), taken
/// at the best `c` between 0 and the sum of positive credits. The minimum of
/// this piecewise-linear function lies at a breakpoint, so only those are
/// tried: a `minlen` of two billion costs no more than one of 12.
///
/// `minlen` is raised to 6 when it is set, but the result can be shorter than
/// 6: `minlen` 6 with `dcredit = 1` accepts `Abcd1` (measured with the
/// library). cracklib's own "too short" check is not counted, because
/// `dictcheck = 0` turns it off.
pub fn shortest_accepted_length(settings: &PwqualitySettings) -> i64 {
    // Already at its floor: libpwquality raises it to 6 as it reads it, and
    // pam_cracklib to 5 (`cracklib.rs`).
    let minlen = settings.minlen.value;
    let credits = settings.credits();
    let required: i64 = credits.iter().filter(|c| **c < 0).map(|c| -c).sum();
    let creditable: i64 = credits.iter().filter(|c| **c > 0).sum();
    let classes_required = credits.iter().filter(|c| **c < 0).count() as i64;
    let classes_with_credit = credits.iter().filter(|c| **c > 0).count() as i64;
    let minclass = settings.minclass.value.clamp(0, PWQUALITY_CLASS_COUNT);
    let classes_still_needed = (minclass - classes_required).max(0);

    let length_with = |credited: i64| {
        required
            + credited
            + 0.max(minlen - required - 2 * credited)
                .max(classes_still_needed - credited.min(classes_with_credit))
    };
    let half = (minlen - required).div_euclid(2);
    let half_shifted =
        (minlen - required - classes_still_needed + classes_with_credit).div_euclid(2);
    let breakpoints = [
        0,
        creditable,
        classes_with_credit,
        classes_still_needed,
        minlen - required - classes_still_needed,
        half,
        half + 1,
        half_shifted,
        half_shifted + 1,
    ];
    breakpoints
        .iter()
        .flat_map(|point| [point - 1, *point, point + 1])
        .map(|credited| credited.clamp(0, creditable))
        .map(length_with)
        .min()
        .unwrap_or(minlen)
}

#[cfg(test)]
pub(super) fn brute_force_shortest_length(settings: &PwqualitySettings) -> i64 {
    // Already at its floor: libpwquality raises it to 6 as it reads it, and
    // pam_cracklib to 5 (`cracklib.rs`).
    let minlen = settings.minlen.value;
    let credits = settings.credits();
    let minclass = settings.minclass.value.clamp(0, PWQUALITY_CLASS_COUNT);
    for length in 0..200_i64 {
        for digits in 0..=length {
            for upper in 0..=(length - digits) {
                for lower in 0..=(length - digits - upper) {
                    let other = length - digits - upper - lower;
                    let counts = [digits, upper, lower, other];
                    let mut score = length;
                    let mut ok = true;
                    for (count, credit) in counts.iter().zip(credits) {
                        if credit >= 0 {
                            score += (*count).min(credit);
                        } else if *count < -credit {
                            ok = false;
                        }
                    }
                    let classes = counts.iter().filter(|c| **c > 0).count() as i64;
                    if ok && score >= minlen && classes >= minclass {
                        return length;
                    }
                }
            }
        }
    }
    i64::MAX
}
