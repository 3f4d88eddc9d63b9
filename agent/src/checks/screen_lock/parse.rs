//! The parsers of `screen_lock`: pure functions from logind's session files,
//! `/etc/passwd`, gsettings output, dconf profiles and kscreenlockerrc to
//! facts, and KScreenLocker's defaults. Compiled and tested on every OS;
//! they read nothing themselves.

use std::collections::BTreeMap;

use super::{KdeLockSettings, LogindSession};

/// Parses a logind session state file (`KEY=value` lines, written by
/// `session_save()` in systemd's logind-session.c). The id is the file name,
/// so it is left empty here.
pub fn parse_logind_session(text: &str) -> LogindSession {
    let mut session = LogindSession::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let text = || (!value.is_empty()).then(|| value.to_owned());
        match key.trim() {
            "USER" => session.user = text(),
            "UID" => session.uid = value.parse().ok(),
            "TYPE" => session.session_type = text(),
            "CLASS" => session.class = text(),
            "STATE" => session.state = text(),
            "ACTIVE" => session.active = parse_logind_flag(value),
            "REMOTE" => session.remote = parse_logind_flag(value),
            "DESKTOP" => session.desktop = text(),
            "SEAT" => session.seat = text(),
            "SCOPE" => session.scope = text(),
            _ => {}
        }
    }
    session
}

pub(super) fn parse_logind_flag(value: &str) -> Option<bool> {
    match value {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub home: String,
}

/// Parses `/etc/passwd` (or `getent passwd` output):
/// `name:password:uid:gid:gecos:home:shell`. Comments, blank lines, NIS
/// `+`/`-` lines and malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            if line.is_empty() || line.starts_with('#') || line.starts_with(['+', '-']) {
                return None;
            }
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 || fields[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: fields[0].to_owned(),
                uid: fields[2].parse().ok()?,
                home: fields[5].to_owned(),
            })
        })
        .collect()
}

/// Which screen locker a session's desktop uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesktopFamily {
    /// gnome-shell (and Ubuntu's, Unity's and Pop!_OS's GNOME sessions),
    /// driven by the `org.gnome.desktop.*` GSettings keys.
    Gnome,
    /// Plasma's kscreenlocker, driven by `kscreenlockerrc`.
    Kde,
    Unsupported,
}

/// Desktops whose names contain a GNOME word but that lock with something
/// else (`ubuntu-budgie`, `Lubuntu`, MATE, Cinnamon's own schema…).
pub(super) const OTHER_DESKTOP_WORDS: [&str; 14] = [
    "budgie", "mate", "cinnamon", "xfce", "lxqt", "lxde", "lubuntu", "xubuntu", "cosmic",
    "pantheon", "deepin", "sway", "i3", "hyprland",
];

/// The family of a logind `DESKTOP` value, case-insensitively. The value is
/// split into words (on `:`, `-`, `_`, `;`, `/` and spaces) so that `Lubuntu`
/// or `ubuntu-budgie` are not taken for Ubuntu's GNOME session.
pub fn desktop_family(desktop: &str) -> DesktopFamily {
    let lower = desktop.to_lowercase();
    let words: Vec<&str> = lower
        .split([':', '-', '_', ';', '/', ' '])
        .filter(|word| !word.is_empty())
        .collect();
    let has = |candidates: &[&str]| words.iter().any(|word| candidates.contains(word));
    if has(&["kde", "plasma", "plasmawayland", "plasmax11", "kubuntu"]) {
        DesktopFamily::Kde
    } else if has(&OTHER_DESKTOP_WORDS) {
        DesktopFamily::Unsupported
    } else if has(&["gnome", "ubuntu", "unity", "pop"]) {
        DesktopFamily::Gnome
    } else {
        DesktopFamily::Unsupported
    }
}

/// A value `gsettings get` printed, in GVariant text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsettingsValue {
    Uint32(u32),
    Boolean(bool),
}

/// Parses the text of one `gsettings get` answer: `uint32 300`, `true`,
/// `false`. A uint32 always carries its type annotation (GVariant prints
/// every integer type but int32 that way), so a bare number is rejected: it
/// would mean a schema other than the one this rule knows.
pub fn parse_gsettings_value(stdout: &str) -> Option<GsettingsValue> {
    let text = stdout.trim();
    match text {
        "true" => Some(GsettingsValue::Boolean(true)),
        "false" => Some(GsettingsValue::Boolean(false)),
        _ => text
            .strip_prefix("uint32 ")
            .and_then(|number| number.trim().parse().ok())
            .map(GsettingsValue::Uint32),
    }
}

/// Judges one finished `gsettings get`: its value, or why it cannot be
/// trusted. Any complaint on stderr disqualifies the answer, because the ways
/// gsettings degrades all keep exit code 0 and print a plausible value:
/// without the dconf module it falls back to the in-memory backend and
/// prints schema defaults; without a readable profile dconf uses its "null
/// configuration" and does the same.
pub fn classify_gsettings_output(
    exit_code: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> Result<GsettingsValue, String> {
    let stderr = stderr.trim();
    if let Some(reason) = known_gsettings_failure(stderr) {
        return Err(reason.to_owned());
    }
    match exit_code {
        Some(0) => {}
        Some(code) => {
            return Err(format!(
                "exited with code {code}{}",
                first_line_suffix(stderr)
            ));
        }
        None => return Err("was ended by a signal".to_owned()),
    }
    if !stderr.is_empty() {
        return Err(format!(
            "printed warnings, so its answer cannot be trusted{}",
            first_line_suffix(stderr)
        ));
    }
    parse_gsettings_value(stdout).ok_or_else(|| {
        format!(
            "printed {:?}, which is not a uint32 or a boolean",
            stdout.trim()
        )
    })
}

/// Recognised stderr messages, with a reason a person can act on.
pub(super) fn known_gsettings_failure(stderr: &str) -> Option<&'static str> {
    let lower = stderr.to_lowercase();
    if lower.contains("no schemas installed") {
        Some("failed: no GSettings schemas are installed (gsettings-desktop-schemas)")
    } else if lower.contains("no such schema") {
        Some("failed: the schema is not installed (gsettings-desktop-schemas)")
    } else if lower.contains("no such key") {
        Some("failed: this version of the schema has no such key")
    } else if (lower.contains("memory") && lower.contains("backend"))
        || lower.contains("can't find module 'dconf'")
    {
        Some(
            "fell back to the 'memory' GSettings backend (the dconf module, \
             dconf-gsettings-backend, is missing), which reports schema defaults, not the \
             user's settings",
        )
    } else if lower.contains("null configuration") {
        Some(
            "ran with dconf's null configuration (its profile could not be opened), which \
             reports schema defaults, not the user's settings",
        )
    } else if lower.contains("dconf will not work properly") {
        Some("warned that dconf will not work properly (its runtime directory is unusable)")
    } else {
        None
    }
}

pub(super) fn first_line_suffix(stderr: &str) -> String {
    /// Enough of a message to recognise it in a report line.
    const MAX_CHARS: usize = 200;
    match stderr.lines().map(str::trim).find(|line| !line.is_empty()) {
        Some(line) => format!(": {}", line.chars().take(MAX_CHARS).collect::<String>()),
        None => String::new(),
    }
}

/// The `system-db:NAME` databases a dconf profile names.
pub fn dconf_profile_system_databases(profile: &str) -> Vec<String> {
    profile
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("system-db:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// The `[Daemon]` group of one `kscreenlockerrc`, as KConfig reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KConfigDaemonGroup {
    /// `[$i]` before the first group: every group of the file is immutable.
    pub file_immutable: bool,
    /// `[Daemon][$i]`.
    pub group_immutable: bool,
    pub entries: BTreeMap<String, KConfigEntry>,
    /// `[Daemon]` keys written in a form this parser does not resolve (a
    /// locale suffix, `$e` shell expansion): the value KDE uses is unknown.
    pub unresolved_keys: Vec<String>,
}

/// One `Key=value` of the `[Daemon]` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KConfigEntry {
    /// `None` for `Key[$d]`, which deletes the key: KDE falls back to the
    /// default even if a system file set it.
    pub value: Option<String>,
    /// `Key[$i]=…`: files read later cannot change it.
    pub immutable: bool,
}

/// The group this rule reads.
pub(super) const KDE_DAEMON_GROUP: &str = "Daemon";

/// Parses the `[Daemon]` group of a `kscreenlockerrc` the way KConfig's INI
/// backend does: `#` comments, `[Group]` headers (`[Daemon][$i]` makes the
/// group immutable, a lone `[$i]` before any group the whole file),
/// `Key[$flags]=value` with whitespace trimmed, later lines overriding
/// earlier ones. A marker written after the value (`Autolock=false[$i]`) is
/// not a marker to KConfig: it stays part of the value.
pub fn parse_kscreenlockerrc(text: &str) -> KConfigDaemonGroup {
    let mut parsed = KConfigDaemonGroup::default();
    // `None` before the first group header.
    let mut current_group: Option<Vec<String>> = None;
    for raw_line in text.lines() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            let segments = bracket_segments(line);
            match segments.as_slice() {
                [only] if only == "$i" && current_group.is_none() => parsed.file_immutable = true,
                [name, flag] if flag == "$i" && name == KDE_DAEMON_GROUP => {
                    parsed.group_immutable = true;
                    current_group = Some(vec![name.clone()]);
                }
                _ => current_group = Some(segments),
            }
            continue;
        }
        let in_daemon = current_group
            .as_deref()
            .is_some_and(|group| group.len() == 1 && group[0] == KDE_DAEMON_GROUP);
        if !in_daemon {
            continue;
        }
        let (key_part, value) = match line.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim())),
            None => (line, None),
        };
        let (key, options) = match key_part.find('[') {
            Some(at) => (key_part[..at].trim(), bracket_segments(&key_part[at..])),
            None => (key_part, Vec::new()),
        };
        if key.is_empty() {
            continue;
        }
        let mut immutable = false;
        let mut deleted = false;
        let mut unresolved = false;
        for option in &options {
            match option.strip_prefix('$') {
                Some(flags) => {
                    immutable |= flags.contains('i');
                    deleted |= flags.contains('d');
                    unresolved |= flags.contains('e');
                }
                // A locale suffix (`Timeout[de]`): KConfig may pick it over
                // the plain key depending on the session's language.
                None => unresolved = true,
            }
        }
        if unresolved {
            parsed.unresolved_keys.push(key_part.to_owned());
            continue;
        }
        let value = if deleted {
            None
        } else {
            match value {
                Some(value) => Some(value.to_owned()),
                // A line without `=` and without `[$d]` is ignored by KConfig.
                None => continue,
            }
        };
        parsed
            .entries
            .insert(key.to_owned(), KConfigEntry { value, immutable });
    }
    parsed
}

/// `[a][b]` → `["a", "b"]`. Text outside brackets is ignored.
pub(super) fn bracket_segments(text: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            break;
        };
        segments.push(after[..close].to_owned());
        rest = &after[close + 1..];
    }
    segments
}

/// KScreenLocker's defaults, from its kscreenlockersettings.kcfg (captured in
/// the fixtures): Autolock true, Timeout 5 minutes, Lock true, LockGrace 5
/// seconds, RequirePassword true.
pub(super) const KDE_DEFAULT_AUTOLOCK: bool = true;
pub(super) const KDE_DEFAULT_TIMEOUT_MINUTES: f64 = 5.0;
pub(super) const KDE_DEFAULT_LOCK: bool = true;
pub(super) const KDE_DEFAULT_LOCK_GRACE_SECONDS: i64 = 5;
pub(super) const KDE_DEFAULT_REQUIRE_PASSWORD: bool = true;

/// Resolves the `[Daemon]` values over KConfig's cascade. `files` are in
/// reading order, least specific first (system, then user), each with its
/// path; `None` when that file does not exist. A file that marks the group,
/// the key or itself immutable stops later files from changing the key.
pub fn resolve_kde_settings(
    files: &[(&str, Option<&KConfigDaemonGroup>)],
) -> Result<KdeLockSettings, String> {
    for (path, group) in files {
        if let Some(group) = group {
            if let Some(key) = group.unresolved_keys.first() {
                return Err(format!(
                    "{path} sets {key} in [Daemon], a form (locale suffix or $e expansion) \
                     whose value this probe cannot resolve"
                ));
            }
        }
    }
    let mut origins = BTreeMap::new();
    let mut resolve = |key: &str| -> Option<String> {
        let mut value = None;
        let mut origin = "default".to_owned();
        for (path, group) in files {
            let Some(group) = group else { continue };
            let entry = group.entries.get(key);
            if let Some(entry) = entry {
                value = entry.value.clone();
                origin = match &entry.value {
                    Some(_) => (*path).to_owned(),
                    None => format!("default (deleted in {path})"),
                };
            }
            let locked = group.file_immutable
                || group.group_immutable
                || entry.is_some_and(|entry| entry.immutable);
            if locked {
                origin = format!("{origin} (immutable in {path})");
                break;
            }
        }
        origins.insert(key.to_owned(), origin);
        value
    };
    let autolock = resolve("Autolock");
    let timeout = resolve("Timeout");
    let lock = resolve("Lock");
    let lock_grace = resolve("LockGrace");
    let require_password = resolve("RequirePassword");

    Ok(KdeLockSettings {
        autolock: kconfig_bool("Autolock", autolock.as_deref(), KDE_DEFAULT_AUTOLOCK)?,
        timeout_minutes: match timeout.as_deref() {
            None => KDE_DEFAULT_TIMEOUT_MINUTES,
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|minutes| minutes.is_finite())
                .ok_or_else(|| format!("Timeout={text:?} is not a number of minutes"))?,
        },
        lock: kconfig_bool("Lock", lock.as_deref(), KDE_DEFAULT_LOCK)?,
        lock_grace_seconds: match lock_grace.as_deref() {
            None => KDE_DEFAULT_LOCK_GRACE_SECONDS,
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| format!("LockGrace={text:?} is not a whole number of seconds"))?,
        },
        require_password: kconfig_bool(
            "RequirePassword",
            require_password.as_deref(),
            KDE_DEFAULT_REQUIRE_PASSWORD,
        )?,
        origins,
    })
}

/// KConfig reads every value but `false`, `no`, `off` and `0` as true, so a
/// typo like `Autolock=false[$i]` silently means *true*. Only the usual
/// spellings are accepted here; anything else is reported, because its
/// author plainly meant something KDE does not do.
pub(super) fn kconfig_bool(key: &str, value: Option<&str>, default: bool) -> Result<bool, String> {
    let Some(text) = value else {
        return Ok(default);
    };
    match text.to_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!(
            "{key}={text:?} is not a boolean KConfig spelling (KDE would read it as true, which \
             its author likely did not mean)"
        )),
    }
}

/// Whether an `HKEY_USERS` subkey is the hive of a person who may be at the
/// screen: a local or domain account (`S-1-5-21-…`) or an Entra ID account
/// (`S-1-12-1-…`). Not `.DEFAULT`, not the service accounts (`S-1-5-18`,
/// `-19`, `-20`), not the `…_Classes` keys beside each user's hive.
pub fn is_person_hive(name: &str) -> bool {
    (name.starts_with("S-1-5-21-") || name.starts_with("S-1-12-1-")) && !name.ends_with("_Classes")
}
