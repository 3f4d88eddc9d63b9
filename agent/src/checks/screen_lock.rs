//! Rule `screen_lock`: every graphical session locks its screen within the
//! policy's `max_idle_seconds` of idle time (idle delay plus lock delay).
//!
//! Linux probe. The settings are per user, so the probe starts from the
//! people at the screen: logind's state files `/run/systemd/sessions/*` name
//! each session's user, type, class and desktop. For each graphical user
//! session it reads that user's *effective* settings:
//!
//! - GNOME: `gsettings get` with the dconf backend, for
//!   `org.gnome.desktop.session idle-delay`, `org.gnome.desktop.screensaver
//!   lock-enabled` and `lock-delay`, and `org.gnome.desktop.lockdown
//!   disable-lock-screen` (gnome-shell refuses to lock at all when it is set).
//!   gsettings applies the system databases and their locks over the user's
//!   database and ignores values of the wrong type, so its answer is what
//!   gnome-shell sees; reading the keyfiles in `/etc/dconf` would not be (the
//!   GNOME admin guide's own untyped `idle-delay=180` is ignored by GSettings,
//!   see the fixtures' SOURCES.md). On the live system the probe runs
//!   gsettings as the session's user (`runuser`, which needs root); with a
//!   host root it never switches users and points HOME, XDG_CONFIG_HOME,
//!   XDG_RUNTIME_DIR and DCONF_PROFILE into the tree.
//! - KDE Plasma: `kscreenlockerrc` `[Daemon]` (`Autolock`, `Timeout`,
//!   `LockGrace`, and `Lock`/`RequirePassword`, either of which turns the
//!   lock into a screen anyone can dismiss), the user's file over
//!   `/etc/xdg/kscreenlockerrc` unless the system file marks the group, the
//!   key or the whole file immutable (`[$i]`), as KConfig resolves them.
//!
//! No graphical session, and no display server process in `/proc`, is
//! `not_applicable`. A display server that logind does not account for (no
//! logind at all, or X started from a text console) is `unknown`: someone may
//! be at a screen the probe cannot see. Anything the probe cannot read (a
//! desktop it does not know, a missing tool, gsettings falling back to its
//! in-memory backend, which reports schema defaults, not the user's values)
//! is `unknown` with the reason, never `pass`.
//!
//! Known limits, each of which a session's own environment could move: a
//! `DCONF_PROFILE` or `XDG_CONFIG_HOME` set inside the session, and KDE
//! distributions that add directories to `XDG_CONFIG_DIRS` (the probe reads
//! `/etc/xdg` only). gnome-shell also waits out a 10 s fade before locking
//! when lock-delay is shorter; the policy's "idle delay plus lock delay"
//! leaves it out, as GNOME's Settings does.
//!
//! This module reads; it changes nothing (enforcement lives in `enforce/`).
//! macOS and Windows probes are not written yet: there the rule reports
//! `unknown`.

use std::collections::BTreeMap;

use palisade_shared::Policy;
use palisade_shared::policy::ScreenLockPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::{ProbeError, Rule, Verdict};
use crate::sys::{CommandSpec, Host};

#[derive(Debug)]
pub struct ScreenLock;

/// What the probe found: the graphical sessions and each one's settings, or,
/// when there is none, the display servers seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScreenLockFacts {
    /// Graphical user sessions from logind, with the settings read for each.
    pub sessions: Vec<SessionFacts>,
    /// How many session files logind lists (graphical or not); `None` when
    /// `/run/systemd/sessions` does not exist.
    pub logind_session_count: Option<usize>,
    /// Display server processes, looked for only when logind lists no
    /// graphical user session.
    pub display_servers: Vec<DisplayServerProcess>,
}

/// One graphical session and what could be read of its lock settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionFacts {
    pub session: LogindSession,
    /// The settings, or why they could not be read.
    pub settings: Result<LockSettings, String>,
}

/// One logind session state file, `/run/systemd/sessions/<id>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogindSession {
    /// The file name, which is the session id.
    pub id: String,
    pub user: Option<String>,
    pub uid: Option<u32>,
    /// `TYPE`: unspecified, tty, x11, wayland, mir, web.
    pub session_type: Option<String>,
    /// `CLASS`: user, greeter, lock-screen, background.
    pub class: Option<String>,
    /// `STATE`: opening, online, active, closing.
    pub state: Option<String>,
    pub active: Option<bool>,
    pub remote: Option<bool>,
    /// `DESKTOP`, from the display manager's XDG_SESSION_DESKTOP.
    pub desktop: Option<String>,
    pub seat: Option<String>,
    /// `SCOPE`, the systemd scope unit holding the session's processes.
    pub scope: Option<String>,
}

impl LogindSession {
    /// A session someone sits in front of: a graphical type, a user's own
    /// session (not the login greeter or a lock screen), not on its way out.
    pub fn is_graphical(&self) -> bool {
        let graphical_type = matches!(
            self.session_type.as_deref(),
            Some("x11" | "wayland" | "mir")
        );
        graphical_type
            && self.class.as_deref() == Some("user")
            && self.state.as_deref() != Some("closing")
    }
}

/// A running process that draws a screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayServerProcess {
    pub pid: u32,
    /// `/proc/<pid>/comm`.
    pub name: String,
    /// The logind session whose scope holds the process, if any.
    pub session_id: Option<String>,
    /// That session's class (`greeter` for a login screen).
    pub session_class: Option<String>,
}

/// The effective lock settings of one session.
#[derive(Debug, Clone, PartialEq)]
pub enum LockSettings {
    Gnome(GnomeLockSettings),
    Kde(KdeLockSettings),
}

/// GNOME's effective values, as gsettings reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GnomeLockSettings {
    /// `org.gnome.desktop.session idle-delay`: seconds before the session is
    /// idle and the screen blanks; 0 is never.
    pub idle_delay_seconds: u32,
    /// `org.gnome.desktop.screensaver lock-enabled`.
    pub lock_enabled: bool,
    /// `org.gnome.desktop.screensaver lock-delay`: seconds after blanking
    /// before the lock.
    pub lock_delay_seconds: u32,
    /// `org.gnome.desktop.lockdown disable-lock-screen`.
    pub lock_screen_disabled: bool,
    /// How the values were read, for the evidence.
    pub source: String,
}

/// KDE's effective `[Daemon]` values after the KConfig cascade.
#[derive(Debug, Clone, PartialEq)]
pub struct KdeLockSettings {
    pub autolock: bool,
    /// Minutes of idle before the locker starts (a Double in KConfig).
    pub timeout_minutes: f64,
    /// `Lock`: false makes every lock a grace period without end.
    pub lock: bool,
    /// Seconds after the locker starts during which activity unlocks without
    /// a password.
    pub lock_grace_seconds: i64,
    pub require_password: bool,
    /// Where each value came from: a file path, or `default`.
    pub origins: BTreeMap<String, String>,
}

impl Rule for ScreenLock {
    /// The system dconf profile and databases (where a lock is set and
    /// locked) and KDE's system-wide kscreenlockerrc. A user's own settings
    /// live in their home and are re-read at the next interval.
    fn watched_paths(&self) -> &'static [&'static str] {
        &["/etc/dconf", "/etc/xdg/kscreenlockerrc"]
    }

    type Policy = ScreenLockPolicy;
    type Facts = ScreenLockFacts;

    fn id(&self) -> &'static str {
        palisade_shared::RuleId::SCREEN_LOCK
    }

    fn policy<'p>(&self, policy: &'p Policy) -> Option<&'p Self::Policy> {
        policy.screen_lock.as_ref()
    }

    fn probe(&self, host: &Host, _policy: &Self::Policy) -> Result<ScreenLockFacts, ProbeError> {
        if cfg!(target_os = "linux") || !host.is_live_system() {
            probe_linux(host)
        } else {
            Err(ProbeError::Undeterminable(format!(
                "no screen lock probe for {} yet",
                std::env::consts::OS
            )))
        }
    }

    fn evaluate(&self, facts: &ScreenLockFacts, policy: &Self::Policy) -> Verdict {
        evaluate(facts, policy)
    }
}

// ---------------------------------------------------------------------------
// Probe (Linux): find the sessions, then read each one's settings.

/// Where logind keeps one state file per session.
const LOGIND_SESSIONS_DIR: &str = "/run/systemd/sessions";

fn probe_linux(host: &Host) -> Result<ScreenLockFacts, ProbeError> {
    let (all_sessions, logind_session_count) = match read_logind_sessions(host)? {
        Some(sessions) => {
            let count = sessions.len();
            (sessions, Some(count))
        }
        None => (Vec::new(), None),
    };
    let graphical: Vec<LogindSession> = all_sessions
        .iter()
        .filter(|session| session.is_graphical())
        .cloned()
        .collect();
    if graphical.is_empty() {
        let display_servers = find_display_servers(host, &all_sessions)?;
        return Ok(ScreenLockFacts {
            sessions: Vec::new(),
            logind_session_count,
            display_servers,
        });
    }

    let accounts = match host.read_optional("/etc/passwd") {
        Ok(text) => Ok(text.as_deref().map(parse_passwd).unwrap_or_default()),
        Err(err) => Err(format!("cannot read /etc/passwd: {err}")),
    };
    let context = ProbeContext {
        host,
        live: host.is_live_system(),
        agent_uid: if host.is_live_system() {
            agent_uid()
        } else {
            None
        },
    };
    let sessions = graphical
        .into_iter()
        .map(|session| {
            let settings = read_session_settings(&context, &session, &accounts);
            SessionFacts { session, settings }
        })
        .collect();
    Ok(ScreenLockFacts {
        sessions,
        logind_session_count,
        display_servers: Vec::new(),
    })
}

/// What every per-session read needs to know about how the probe runs.
struct ProbeContext<'h> {
    host: &'h Host,
    live: bool,
    /// The agent's own uid on the live system (`None` with a host root, or if
    /// it cannot be told).
    agent_uid: Option<u32>,
}

/// The sessions logind lists, for the report's console user; `None` when
/// they cannot be read (no logind, or not allowed).
pub(crate) fn logind_sessions(host: &Host) -> Option<Vec<LogindSession>> {
    read_logind_sessions(host).ok().flatten()
}

/// Every session file logind lists; `None` when the directory does not exist.
fn read_logind_sessions(host: &Host) -> Result<Option<Vec<LogindSession>>, ProbeError> {
    let names = match host.list_dir(LOGIND_SESSIONS_DIR) {
        Ok(Some(names)) => names,
        Ok(None) => return Ok(None),
        Err(err) => {
            return Err(ProbeError::Undeterminable(format!(
                "cannot list {LOGIND_SESSIONS_DIR}: {err}"
            )));
        }
    };
    let mut sessions = Vec::new();
    for name in names {
        let path = format!("{LOGIND_SESSIONS_DIR}/{name}");
        // Next to each state file logind keeps `<id>.ref`, a FIFO: opening it
        // would block the probe, so only regular files are read.
        let is_regular_file = std::fs::symlink_metadata(host.path(&path))
            .map(|metadata| metadata.is_file())
            .unwrap_or(false);
        if !is_regular_file || name.contains('.') {
            continue;
        }
        match host.read_optional(&path) {
            Ok(Some(text)) => {
                let mut session = parse_logind_session(&text);
                session.id = name;
                sessions.push(session);
            }
            // The session ended between listing and reading.
            Ok(None) => {}
            Err(err) => {
                return Err(ProbeError::Undeterminable(format!(
                    "cannot read {path}: {err}"
                )));
            }
        }
    }
    Ok(Some(sessions))
}

/// Process names (`/proc/<pid>/comm`, at most 15 characters) of X servers and
/// Wayland compositors. Xvfb and Xvnc are left out on purpose: they draw no
/// physical screen, so nobody can walk away from one.
const DISPLAY_SERVER_PROCESS_NAMES: [&str; 18] = [
    "Xorg",
    "X",
    "Xwayland",
    "gnome-shell",
    "mutter",
    "kwin_wayland",
    "kwin_x11",
    "sway",
    "weston",
    "Hyprland",
    "labwc",
    "wayfire",
    "river",
    "niri",
    "cosmic-comp",
    "enlightenment",
    "cage",
    "gamescope",
];

/// Whether a process name is a display server's.
pub fn is_display_server_process(comm: &str) -> bool {
    DISPLAY_SERVER_PROCESS_NAMES.contains(&comm.trim())
}

fn find_display_servers(
    host: &Host,
    sessions: &[LogindSession],
) -> Result<Vec<DisplayServerProcess>, ProbeError> {
    let names = match host.list_dir("/proc") {
        Ok(Some(names)) => names,
        // Without /proc there is no telling what runs: that is not "nothing".
        Ok(None) => {
            return Err(ProbeError::Undeterminable(
                "/proc does not exist, so running display servers cannot be looked for".into(),
            ));
        }
        Err(err) => {
            return Err(ProbeError::Undeterminable(format!(
                "cannot list /proc: {err}"
            )));
        }
    };
    let mut found = Vec::new();
    for name in names {
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        // Processes come and go while we look; one that vanished is skipped.
        let Ok(Some(comm)) = host.read_optional(&format!("/proc/{pid}/comm")) else {
            continue;
        };
        if !is_display_server_process(&comm) {
            continue;
        }
        let cgroup = host
            .read_optional(&format!("/proc/{pid}/cgroup"))
            .ok()
            .flatten()
            .unwrap_or_default();
        let owner = sessions.iter().find(|session| {
            session
                .scope
                .as_deref()
                .is_some_and(|scope| cgroup_contains_unit(&cgroup, scope))
        });
        found.push(DisplayServerProcess {
            pid,
            name: comm.trim().to_owned(),
            session_id: owner.map(|session| session.id.clone()),
            session_class: owner.and_then(|session| session.class.clone()),
        });
    }
    Ok(found)
}

/// Whether a `/proc/<pid>/cgroup` text places the process inside a systemd
/// unit (`0::/user.slice/user-117.slice/session-c1.scope`).
pub fn cgroup_contains_unit(cgroup: &str, unit: &str) -> bool {
    cgroup.lines().any(|line| {
        line.splitn(3, ':')
            .nth(2)
            .is_some_and(|path| path.split('/').any(|component| component == unit))
    })
}

fn read_session_settings(
    context: &ProbeContext<'_>,
    session: &LogindSession,
    accounts: &Result<Vec<PasswdEntry>, String>,
) -> Result<LockSettings, String> {
    let desktop = session.desktop.as_deref().unwrap_or_default();
    let family = desktop_family(desktop);
    if family == DesktopFamily::Unsupported {
        return Err(if desktop.is_empty() {
            "logind names no desktop for this session, so its screen locker is unknown".to_owned()
        } else {
            format!("no screen lock probe for the {desktop:?} desktop yet")
        });
    }
    let account = find_account(context, session, accounts)?;
    match family {
        DesktopFamily::Gnome => read_gnome_settings(context, &account).map(LockSettings::Gnome),
        DesktopFamily::Kde => read_kde_settings(context.host, &account).map(LockSettings::Kde),
        DesktopFamily::Unsupported => Err(format!("no screen lock probe for {desktop:?} yet")),
    }
}

/// The session's account: from `/etc/passwd`, or on the live system from
/// `getent` (directory users from LDAP or SSSD are not in the file).
fn find_account(
    context: &ProbeContext<'_>,
    session: &LogindSession,
    accounts: &Result<Vec<PasswdEntry>, String>,
) -> Result<PasswdEntry, String> {
    let user = session
        .user
        .as_deref()
        .ok_or("logind names no user for this session")?;
    let uid = session
        .uid
        .ok_or_else(|| format!("logind gives no uid for {user}"))?;
    if !is_plain_user_name(user) {
        return Err(format!(
            "{user:?} is not a user name this probe will pass on"
        ));
    }
    let from_file = match accounts {
        Ok(entries) => entries.iter().find(|entry| entry.name == user).cloned(),
        Err(_) => None,
    };
    let account = match from_file {
        Some(account) => account,
        None if context.live => lookup_account_with_getent(context.host, user)?,
        None => {
            return Err(match accounts {
                Ok(_) => format!("{user} is not in /etc/passwd, so their home is unknown"),
                Err(reason) => reason.clone(),
            });
        }
    };
    if account.uid != uid {
        return Err(format!(
            "the account database gives {user} uid {}, logind says {uid}",
            account.uid
        ));
    }
    Ok(account)
}

fn lookup_account_with_getent(host: &Host, user: &str) -> Result<PasswdEntry, String> {
    let spec = CommandSpec::new("getent").arg("passwd").arg(user);
    let output = host
        .run(&spec)
        .map_err(|err| format!("{user} is not in /etc/passwd and {err}"))?;
    if !output.success() {
        return Err(format!(
            "{user} is not in /etc/passwd and `getent passwd {user}` does not know them"
        ));
    }
    parse_passwd(&output.stdout)
        .into_iter()
        .find(|entry| entry.name == user)
        .ok_or_else(|| format!("`getent passwd {user}` printed no entry for {user}"))
}

/// A user name safe to hand to `runuser -u` and `getent`: no option-like
/// leading dash, no separators, no whitespace.
fn is_plain_user_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// The agent's own uid: the owner of `/proc/self`.
#[cfg(unix)]
fn agent_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self")
        .ok()
        .map(|metadata| metadata.uid())
}

#[cfg(not(unix))]
fn agent_uid() -> Option<u32> {
    None
}

// --- GNOME -----------------------------------------------------------------

/// The keys read for GNOME, as (schema, key).
const GNOME_IDLE_DELAY: (&str, &str) = ("org.gnome.desktop.session", "idle-delay");
const GNOME_LOCK_ENABLED: (&str, &str) = ("org.gnome.desktop.screensaver", "lock-enabled");
const GNOME_LOCK_DELAY: (&str, &str) = ("org.gnome.desktop.screensaver", "lock-delay");
const GNOME_DISABLE_LOCK_SCREEN: (&str, &str) =
    ("org.gnome.desktop.lockdown", "disable-lock-screen");

/// How to run gsettings for one user.
#[derive(Debug, Clone)]
struct GsettingsInvocation {
    /// Run through `runuser -u <user> --` (live system, agent is root).
    run_as: Option<String>,
    env: Vec<(String, String)>,
    description: String,
}

impl GsettingsInvocation {
    fn command(&self, (schema, key): (&str, &str)) -> CommandSpec {
        let mut spec = match &self.run_as {
            Some(user) => CommandSpec::new("runuser")
                .arg("-u")
                .arg(user.as_str())
                .arg("--")
                .arg("gsettings"),
            None => CommandSpec::new("gsettings"),
        };
        spec = spec.arg("get").arg(schema).arg(key);
        for (name, value) in &self.env {
            spec = spec.env(name.as_str(), value.as_str());
        }
        spec
    }
}

fn read_gnome_settings(
    context: &ProbeContext<'_>,
    account: &PasswdEntry,
) -> Result<GnomeLockSettings, String> {
    let invocation = gsettings_invocation(context, account)?;
    let read = |schema_key: (&str, &str)| -> Result<GsettingsValue, String> {
        let (schema, key) = schema_key;
        let output = context
            .host
            .run(&invocation.command(schema_key))
            .map_err(|err| err.to_string())?;
        classify_gsettings_output(output.exit_code, &output.stdout, &output.stderr)
            .map_err(|reason| format!("`gsettings get {schema} {key}` {reason}"))
    };
    let uint = |schema_key: (&str, &str)| match read(schema_key)? {
        GsettingsValue::Uint32(value) => Ok(value),
        other => Err(wrong_type(schema_key, "uint32", other)),
    };
    let boolean = |schema_key: (&str, &str)| match read(schema_key)? {
        GsettingsValue::Boolean(value) => Ok(value),
        other => Err(wrong_type(schema_key, "boolean", other)),
    };
    Ok(GnomeLockSettings {
        idle_delay_seconds: uint(GNOME_IDLE_DELAY)?,
        lock_enabled: boolean(GNOME_LOCK_ENABLED)?,
        lock_delay_seconds: uint(GNOME_LOCK_DELAY)?,
        lock_screen_disabled: boolean(GNOME_DISABLE_LOCK_SCREEN)?,
        source: invocation.description,
    })
}

fn wrong_type((schema, key): (&str, &str), wanted: &str, got: GsettingsValue) -> String {
    format!(
        "`gsettings get {schema} {key}` gave {got:?}, not a {wanted}: the schema is not the one this probe knows"
    )
}

fn gsettings_invocation(
    context: &ProbeContext<'_>,
    account: &PasswdEntry,
) -> Result<GsettingsInvocation, String> {
    let user = account.name.as_str();
    let uid = account.uid;
    if context.live {
        let agent_uid = context
            .agent_uid
            .ok_or("cannot tell which user the agent runs as")?;
        let run_as = if agent_uid == uid {
            None
        } else if agent_uid == 0 {
            Some(user.to_owned())
        } else {
            return Err("cannot read another user's settings without root".to_owned());
        };
        let description = match &run_as {
            Some(_) => format!("gsettings (dconf backend) run as {user} through runuser"),
            None => format!("gsettings (dconf backend) run as {user}"),
        };
        return Ok(GsettingsInvocation {
            run_as,
            env: vec![
                ("HOME".into(), account.home.clone()),
                ("XDG_RUNTIME_DIR".into(), format!("/run/user/{uid}")),
                ("GSETTINGS_BACKEND".into(), "dconf".into()),
            ],
            description,
        });
    }

    // Host-root mode: the tree's files, this machine's gsettings and schemas,
    // and never another user's identity.
    let home = host_path_string(context.host, &account.home)?;
    // dconf keeps a change-notification file under XDG_RUNTIME_DIR and
    // creates the directory if needed; inside the tree it touches nothing of
    // the machine the agent runs on.
    let runtime_dir = host_path_string(context.host, &format!("/run/user/{uid}"))?;
    let mut env = vec![
        ("HOME".to_owned(), home.clone()),
        ("XDG_CONFIG_HOME".to_owned(), format!("{home}/.config")),
        ("XDG_RUNTIME_DIR".to_owned(), runtime_dir),
        ("GSETTINGS_BACKEND".to_owned(), "dconf".to_owned()),
    ];
    let profile = match context.host.read_optional(DCONF_USER_PROFILE) {
        Ok(profile) => profile,
        Err(err) => return Err(format!("cannot read {DCONF_USER_PROFILE}: {err}")),
    };
    let description = match profile {
        Some(text) => {
            // dconf looks `system-db:NAME` up under its compiled-in /etc, never
            // under the host root: it would read this machine's database.
            if let Some(name) = dconf_profile_system_databases(&text).first() {
                return Err(format!(
                    "the host root's dconf profile names system-db:{name}, which dconf would read \
                     from this machine's /etc/dconf/db, not the host root's; use file-db: paths"
                ));
            }
            let profile_path = host_path_string(context.host, DCONF_USER_PROFILE)?;
            env.push(("DCONF_PROFILE".to_owned(), profile_path.clone()));
            format!("gsettings (dconf backend) with DCONF_PROFILE={profile_path} and HOME={home}")
        }
        None => {
            // Without DCONF_PROFILE dconf falls back to this machine's own
            // profile, if it has one: refuse rather than mix two systems.
            if let Some(leak) = LIVE_DCONF_PROFILE_FALLBACKS
                .iter()
                .find(|path| std::path::Path::new(path).exists())
            {
                return Err(format!(
                    "the host root has no {DCONF_USER_PROFILE}, and dconf would use this \
                     machine's {leak} instead"
                ));
            }
            format!(
                "gsettings (dconf backend, default profile: user database only) with HOME={home}"
            )
        }
    };
    Ok(GsettingsInvocation {
        run_as: None,
        env,
        description,
    })
}

/// The dconf profile for user sessions.
const DCONF_USER_PROFILE: &str = "/etc/dconf/profile/user";

/// Where dconf looks for the `user` profile when DCONF_PROFILE is unset
/// (dconf-engine-profile.c: the runtime profile, then /etc, then the data
/// dirs, which default to /usr/local/share and /usr/share).
const LIVE_DCONF_PROFILE_FALLBACKS: [&str; 4] = [
    "/run/dconf/user",
    "/etc/dconf/profile/user",
    "/usr/local/share/dconf/profile/user",
    "/usr/share/dconf/profile/user",
];

/// A path under the host root as an absolute string for a child's
/// environment. It must be absolute: `--host-root .` would otherwise give
/// `DCONF_PROFILE=./etc/…`, which dconf takes for a profile *name* and
/// answers with schema defaults.
fn host_path_string(host: &Host, absolute: &str) -> Result<String, String> {
    let relative_to_root = host.path(absolute);
    let path = std::path::absolute(&relative_to_root)
        .map_err(|err| format!("cannot make {} absolute: {err}", relative_to_root.display()))?;
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the path {} is not UTF-8", path.display()))
}

// --- KDE -------------------------------------------------------------------

/// The system-wide KConfig file (XDG_CONFIG_DIRS defaults to /etc/xdg).
const KDE_SYSTEM_CONFIG: &str = "/etc/xdg/kscreenlockerrc";

fn read_kde_settings(host: &Host, account: &PasswdEntry) -> Result<KdeLockSettings, String> {
    let user_path = format!(
        "{}/.config/kscreenlockerrc",
        account.home.trim_end_matches('/')
    );
    let read = |path: &str| -> Result<Option<KConfigDaemonGroup>, String> {
        host.read_optional(path)
            .map(|text| text.as_deref().map(parse_kscreenlockerrc))
            .map_err(|err| format!("cannot read {path}: {err}"))
    };
    let system = read(KDE_SYSTEM_CONFIG)?;
    let user = read(&user_path)?;
    resolve_kde_settings(&[
        (KDE_SYSTEM_CONFIG, system.as_ref()),
        (user_path.as_str(), user.as_ref()),
    ])
}

// ---------------------------------------------------------------------------
// Parsers: pure, tested against captured files.

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

fn parse_logind_flag(value: &str) -> Option<bool> {
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
const OTHER_DESKTOP_WORDS: [&str; 14] = [
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
fn known_gsettings_failure(stderr: &str) -> Option<&'static str> {
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

fn first_line_suffix(stderr: &str) -> String {
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
const KDE_DAEMON_GROUP: &str = "Daemon";

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
fn bracket_segments(text: &str) -> Vec<String> {
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
const KDE_DEFAULT_AUTOLOCK: bool = true;
const KDE_DEFAULT_TIMEOUT_MINUTES: f64 = 5.0;
const KDE_DEFAULT_LOCK: bool = true;
const KDE_DEFAULT_LOCK_GRACE_SECONDS: i64 = 5;
const KDE_DEFAULT_REQUIRE_PASSWORD: bool = true;

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
fn kconfig_bool(key: &str, value: Option<&str>, default: bool) -> Result<bool, String> {
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

// ---------------------------------------------------------------------------
// Evaluation: pure.

/// How one session's lock behaves.
#[derive(Debug, Clone, PartialEq)]
enum SessionOutcome {
    /// The screen locks this many seconds after the last input.
    LocksAfter(u64),
    /// The screen never locks on its own; the reason names the setting.
    NeverLocks(String),
    /// The settings could not be read.
    Unknown(String),
}

fn session_outcome(settings: &Result<LockSettings, String>) -> SessionOutcome {
    match settings {
        Err(reason) => SessionOutcome::Unknown(reason.clone()),
        Ok(LockSettings::Gnome(gnome)) => gnome_outcome(gnome),
        Ok(LockSettings::Kde(kde)) => kde_outcome(kde),
    }
}

/// gnome-shell blanks the screen after `idle-delay` and locks `lock-delay`
/// later. (It also waits for a 10 s fade, `STANDARD_FADE_TIME` in
/// screenShield.js, when lock-delay is shorter; the policy's definition,
/// idle delay plus lock delay, leaves that out, as GNOME's Settings does.)
fn gnome_outcome(gnome: &GnomeLockSettings) -> SessionOutcome {
    if gnome.lock_screen_disabled {
        SessionOutcome::NeverLocks(
            "org.gnome.desktop.lockdown disable-lock-screen is true, so GNOME refuses to lock"
                .into(),
        )
    } else if gnome.idle_delay_seconds == 0 {
        SessionOutcome::NeverLocks(
            "idle-delay is 0, so the session never goes idle and the screen never locks".into(),
        )
    } else if !gnome.lock_enabled {
        SessionOutcome::NeverLocks(
            "lock-enabled is false, so the screen blanks but does not lock".into(),
        )
    } else {
        SessionOutcome::LocksAfter(
            u64::from(gnome.idle_delay_seconds) + u64::from(gnome.lock_delay_seconds),
        )
    }
}

/// kscreenlocker starts the locker after `Timeout` minutes when `Autolock`
/// is on, and asks for the password once `LockGrace` seconds have passed.
/// `Lock=false`, `RequirePassword=false` or a negative grace make the locker
/// dismissable without a password for ever (ksldapp.cpp: "grace time lasts
/// forever", `--nolock`).
fn kde_outcome(kde: &KdeLockSettings) -> SessionOutcome {
    if !kde.autolock {
        SessionOutcome::NeverLocks("Autolock is false, so the screen never locks on its own".into())
    } else if kde.timeout_minutes <= 0.0 {
        SessionOutcome::NeverLocks("Timeout is 0, so the screen never locks on its own".into())
    } else if !kde.lock {
        SessionOutcome::NeverLocks(
            "Lock is false, so the locker can be dismissed without a password".into(),
        )
    } else if !kde.require_password {
        SessionOutcome::NeverLocks(
            "RequirePassword is false, so the locker can be dismissed without a password".into(),
        )
    } else if kde.lock_grace_seconds < 0 {
        SessionOutcome::NeverLocks(
            "LockGrace is negative, so the password grace period never ends".into(),
        )
    } else {
        // `as` saturates for absurdly large values, which still fail.
        let timeout_seconds = (kde.timeout_minutes * 60.0).ceil() as u64;
        let grace_seconds = u64::try_from(kde.lock_grace_seconds).unwrap_or(0);
        SessionOutcome::LocksAfter(timeout_seconds.saturating_add(grace_seconds))
    }
}

/// Decides the rule from the facts.
pub fn evaluate(facts: &ScreenLockFacts, policy: &ScreenLockPolicy) -> Verdict {
    let max_seconds = u64::from(policy.max_idle_seconds);
    if facts.sessions.is_empty() {
        return evaluate_without_sessions(facts, policy);
    }

    let judged: Vec<(&SessionFacts, SessionOutcome)> = facts
        .sessions
        .iter()
        .map(|session| (session, session_outcome(&session.settings)))
        .collect();
    let evidence: Vec<Value> = judged
        .iter()
        .map(|(session, outcome)| session_evidence(session, outcome, max_seconds))
        .collect();

    let user_of = |session: &SessionFacts| {
        session
            .session
            .user
            .clone()
            .unwrap_or_else(|| format!("session {}", session.session.id))
    };
    let mut failures = Vec::new();
    let mut unknowns = Vec::new();
    let mut passes = Vec::new();
    let mut fixes: Vec<String> = Vec::new();
    for (session, outcome) in &judged {
        let user = user_of(session);
        match outcome {
            SessionOutcome::LocksAfter(seconds) if *seconds <= max_seconds => {
                passes.push(format!("after {seconds} s idle for {user}"));
            }
            SessionOutcome::LocksAfter(seconds) => {
                failures.push(format!("screen locks after {seconds} s idle for {user}"));
                push_unique(&mut fixes, fix_for(&session.settings, policy));
            }
            SessionOutcome::NeverLocks(reason) => {
                failures.push(format!("screen never locks for {user}: {reason}"));
                push_unique(&mut fixes, fix_for(&session.settings, policy));
            }
            SessionOutcome::Unknown(reason) => {
                unknowns.push(format!("{user} (session {}): {reason}", session.session.id));
            }
        }
    }

    let verdict = if !failures.is_empty() {
        Verdict::new(
            CheckStatus::Fail,
            format!("{}; the policy allows {max_seconds} s", failures.join("; ")),
        )
        .with_fix(fixes.join(" "))
    } else if !unknowns.is_empty() {
        Verdict::new(
            CheckStatus::Unknown,
            format!(
                "could not read the screen lock settings of {}",
                unknowns.join("; ")
            ),
        )
    } else {
        Verdict::new(
            CheckStatus::Pass,
            format!(
                "screen locks {}; the policy allows {max_seconds} s",
                passes.join(", ")
            ),
        )
    };
    verdict
        .with_evidence("sessions", evidence)
        .with_evidence("max_idle_seconds", policy.max_idle_seconds)
}

fn evaluate_without_sessions(facts: &ScreenLockFacts, policy: &ScreenLockPolicy) -> Verdict {
    // A login screen's display server belongs to the greeter, whose lock is
    // not a user's business; any other is a screen someone may be using.
    let unaccounted: Vec<&DisplayServerProcess> = facts
        .display_servers
        .iter()
        .filter(|process| process.session_class.as_deref() != Some("greeter"))
        .collect();
    let display_server_evidence: Vec<Value> = facts
        .display_servers
        .iter()
        .map(|process| {
            json!({
                "pid": process.pid,
                "name": process.name,
                "session": process.session_id,
                "session_class": process.session_class,
            })
        })
        .collect();
    let verdict = if unaccounted.is_empty() {
        Verdict::new(CheckStatus::NotApplicable, "no graphical session")
    } else {
        let names: Vec<String> = unaccounted
            .iter()
            .map(|process| match &process.session_id {
                Some(id) => format!("{}, pid {}, in session {id}", process.name, process.pid),
                None => format!("{}, pid {}", process.name, process.pid),
            })
            .collect();
        let where_logind = match facts.logind_session_count {
            None => "there is no logind session directory",
            Some(_) => "logind lists no graphical user session",
        };
        Verdict::new(
            CheckStatus::Unknown,
            format!(
                "a display server runs ({}) but {where_logind}, so whose screen it is cannot \
                 be told",
                names.join("; ")
            ),
        )
    };
    verdict
        .with_evidence(
            "logind_sessions",
            facts.logind_session_count.map_or(Value::Null, Value::from),
        )
        .with_evidence("display_servers", display_server_evidence)
        .with_evidence("max_idle_seconds", policy.max_idle_seconds)
}

fn session_evidence(session: &SessionFacts, outcome: &SessionOutcome, max_seconds: u64) -> Value {
    let logind = &session.session;
    let (status, effective_seconds, detail) = match outcome {
        SessionOutcome::LocksAfter(seconds) if *seconds <= max_seconds => {
            ("locks_in_time", Some(*seconds), String::new())
        }
        SessionOutcome::LocksAfter(seconds) => ("locks_too_late", Some(*seconds), String::new()),
        SessionOutcome::NeverLocks(reason) => ("never_locks", None, reason.clone()),
        SessionOutcome::Unknown(reason) => ("unknown", None, reason.clone()),
    };
    let (values, source) = match &session.settings {
        Ok(LockSettings::Gnome(gnome)) => (
            json!({
                "idle-delay": gnome.idle_delay_seconds,
                "lock-enabled": gnome.lock_enabled,
                "lock-delay": gnome.lock_delay_seconds,
                "disable-lock-screen": gnome.lock_screen_disabled,
            }),
            Value::from(gnome.source.clone()),
        ),
        Ok(LockSettings::Kde(kde)) => (
            json!({
                "Autolock": kde.autolock,
                "Timeout": kde.timeout_minutes,
                "Lock": kde.lock,
                "LockGrace": kde.lock_grace_seconds,
                "RequirePassword": kde.require_password,
            }),
            json!(kde.origins),
        ),
        Err(_) => (Value::Null, Value::Null),
    };
    let family = match &session.settings {
        Ok(LockSettings::Gnome(_)) => "gnome",
        Ok(LockSettings::Kde(_)) => "kde",
        Err(_) => match desktop_family(logind.desktop.as_deref().unwrap_or_default()) {
            DesktopFamily::Gnome => "gnome",
            DesktopFamily::Kde => "kde",
            DesktopFamily::Unsupported => "unsupported",
        },
    };
    json!({
        "session": logind.id,
        "user": logind.user,
        "uid": logind.uid,
        "type": logind.session_type,
        "desktop": logind.desktop,
        "desktop_family": family,
        "seat": logind.seat,
        "remote": logind.remote,
        "active": logind.active,
        "status": status,
        "effective_seconds": effective_seconds,
        "detail": detail,
        "values": values,
        "source": source,
    })
}

/// The fix for one failing session, in the words of its desktop's settings.
fn fix_for(settings: &Result<LockSettings, String>, policy: &ScreenLockPolicy) -> String {
    let max = policy.max_idle_seconds;
    match settings {
        Ok(LockSettings::Gnome(gnome)) if gnome.lock_screen_disabled => {
            "GNOME's lock screen is switched off for everyone by \
             org.gnome.desktop.lockdown disable-lock-screen: ask IT to remove that setting \
             from /etc/dconf."
                .to_owned()
        }
        Ok(LockSettings::Gnome(_)) => format!(
            "Settings > Privacy > Screen Lock: set Blank Screen Delay to {} or less, turn \
             Automatic Screen Lock on and set Automatic Screen Lock Delay to \"Screen Turns \
             Off\". If these cannot be changed, IT has locked them in /etc/dconf: ask them.",
            minutes_phrase(max)
        ),
        Ok(LockSettings::Kde(_)) => format!(
            "System Settings > Screen Locking: Lock screen automatically after {}, keep \
             \"Allow unlocking without password for\" at {KDE_DEFAULT_LOCK_GRACE_SECONDS} \
             seconds or less, and leave the password required.",
            // KDE adds its grace seconds to the timeout.
            minutes_phrase(
                max.saturating_sub(u32::try_from(KDE_DEFAULT_LOCK_GRACE_SECONDS).unwrap_or(0))
            )
        ),
        Err(_) => String::new(),
    }
}

/// Whole minutes that fit within `seconds`, as a phrase.
fn minutes_phrase(seconds: u32) -> String {
    match seconds / 60 {
        0 => format!("the shortest time offered (the policy allows only {seconds} s)"),
        1 => "1 minute".to_owned(),
        minutes => format!("{minutes} minutes"),
    }
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !item.is_empty() && !list.contains(&item) {
        list.push(item);
    }
}

#[cfg(test)]
mod tests;
