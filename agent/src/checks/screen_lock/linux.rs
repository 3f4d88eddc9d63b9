//! The Linux probe of `screen_lock`: finds the graphical sessions (logind's
//! state files, else the display-server processes), then reads each
//! session's GNOME (gsettings as the user, dconf) or KDE (kscreenlockerrc)
//! settings through [`Host`], and hands the text to the pure parsers in
//! `parse.rs`. Judges nothing.

use super::parse::{
    DesktopFamily, GsettingsValue, KConfigDaemonGroup, PasswdEntry, classify_gsettings_output,
    dconf_profile_system_databases, desktop_family, parse_kscreenlockerrc, parse_logind_session,
    parse_passwd, resolve_kde_settings,
};
use super::{
    DisplayServerProcess, GnomeLockSettings, KdeLockSettings, LinuxLockFacts, LockSettings,
    LogindSession, ScreenLockFacts, SessionFacts,
};
use crate::checks::ProbeError;
use crate::sys::{CommandSpec, Host};

// Probe (Linux): find the sessions, then read each one's settings.

/// Where logind keeps one state file per session.
pub(super) const LOGIND_SESSIONS_DIR: &str = "/run/systemd/sessions";

pub(super) fn probe(host: &Host) -> Result<ScreenLockFacts, ProbeError> {
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
        return Ok(ScreenLockFacts::Linux(LinuxLockFacts {
            sessions: Vec::new(),
            logind_session_count,
            display_servers,
        }));
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
    Ok(ScreenLockFacts::Linux(LinuxLockFacts {
        sessions,
        logind_session_count,
        display_servers: Vec::new(),
    }))
}

/// What every per-session read needs to know about how the probe runs.
pub(super) struct ProbeContext<'h> {
    pub(super) host: &'h Host,
    pub(super) live: bool,
    /// The agent's own uid on the live system (`None` with a host root, or if
    /// it cannot be told).
    pub(super) agent_uid: Option<u32>,
}

/// The sessions logind lists, for the report's console user; `None` when
/// they cannot be read (no logind, or not allowed).
pub(crate) fn logind_sessions(host: &Host) -> Option<Vec<LogindSession>> {
    read_logind_sessions(host).ok().flatten()
}

/// Every session file logind lists; `None` when the directory does not exist.
pub(super) fn read_logind_sessions(host: &Host) -> Result<Option<Vec<LogindSession>>, ProbeError> {
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
pub(super) const DISPLAY_SERVER_PROCESS_NAMES: [&str; 18] = [
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

pub(super) fn find_display_servers(
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

pub(super) fn read_session_settings(
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
pub(super) fn find_account(
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

pub(super) fn lookup_account_with_getent(host: &Host, user: &str) -> Result<PasswdEntry, String> {
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
pub(super) fn is_plain_user_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// The agent's own uid: the owner of `/proc/self`.
#[cfg(unix)]
pub(super) fn agent_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self")
        .ok()
        .map(|metadata| metadata.uid())
}

#[cfg(not(unix))]
pub(super) fn agent_uid() -> Option<u32> {
    None
}

// --- GNOME -----------------------------------------------------------------

/// The keys read for GNOME, as (schema, key).
pub(super) const GNOME_IDLE_DELAY: (&str, &str) = ("org.gnome.desktop.session", "idle-delay");
pub(super) const GNOME_LOCK_ENABLED: (&str, &str) =
    ("org.gnome.desktop.screensaver", "lock-enabled");
pub(super) const GNOME_LOCK_DELAY: (&str, &str) = ("org.gnome.desktop.screensaver", "lock-delay");
pub(super) const GNOME_DISABLE_LOCK_SCREEN: (&str, &str) =
    ("org.gnome.desktop.lockdown", "disable-lock-screen");

/// How to run gsettings for one user.
#[derive(Debug, Clone)]
pub(super) struct GsettingsInvocation {
    /// Run through `runuser -u <user> --` (live system, agent is root).
    pub(super) run_as: Option<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) description: String,
}

impl GsettingsInvocation {
    pub(super) fn command(&self, (schema, key): (&str, &str)) -> CommandSpec {
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

pub(super) fn read_gnome_settings(
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

pub(super) fn wrong_type((schema, key): (&str, &str), wanted: &str, got: GsettingsValue) -> String {
    format!(
        "`gsettings get {schema} {key}` gave {got:?}, not a {wanted}: the schema is not the one this probe knows"
    )
}

pub(super) fn gsettings_invocation(
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
pub(super) const DCONF_USER_PROFILE: &str = "/etc/dconf/profile/user";

/// Where dconf looks for the `user` profile when DCONF_PROFILE is unset
/// (dconf-engine-profile.c: the runtime profile, then /etc, then the data
/// dirs, which default to /usr/local/share and /usr/share).
pub(super) const LIVE_DCONF_PROFILE_FALLBACKS: [&str; 4] = [
    "/run/dconf/user",
    "/etc/dconf/profile/user",
    "/usr/local/share/dconf/profile/user",
    "/usr/share/dconf/profile/user",
];

/// A path under the host root as an absolute string for a child's
/// environment. It must be absolute: `--host-root .` would otherwise give
/// `DCONF_PROFILE=./etc/…`, which dconf takes for a profile *name* and
/// answers with schema defaults.
pub(super) fn host_path_string(host: &Host, absolute: &str) -> Result<String, String> {
    let relative_to_root = host.path(absolute);
    let path = std::path::absolute(&relative_to_root)
        .map_err(|err| format!("cannot make {} absolute: {err}", relative_to_root.display()))?;
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the path {} is not UTF-8", path.display()))
}

// --- KDE -------------------------------------------------------------------

/// The system-wide KConfig file (XDG_CONFIG_DIRS defaults to /etc/xdg).
pub(super) const KDE_SYSTEM_CONFIG: &str = "/etc/xdg/kscreenlockerrc";

pub(super) fn read_kde_settings(
    host: &Host,
    account: &PasswdEntry,
) -> Result<KdeLockSettings, String> {
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
