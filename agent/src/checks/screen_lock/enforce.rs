//! Enforcer for `screen_lock`: the system-wide, locked settings of GNOME
//! (a dconf system database) and KDE Plasma (`/etc/xdg/kscreenlockerrc`)
//! on Linux; on Windows the machine inactivity limit (see [`native_plan`]),
//! each change recorded in the undo journal first. Elsewhere it refuses.
//!
//! GNOME. The check reads, through gsettings, `org.gnome.desktop.session
//! idle-delay`, `org.gnome.desktop.screensaver lock-enabled` and
//! `lock-delay`, and `org.gnome.desktop.lockdown disable-lock-screen`. All
//! four are set in a keyfile of the `local` system database and *locked*
//! (dconf's `locks/` directory), so a user's own value is ignored and
//! `gsettings writable` says false:
//!
//! - `/etc/dconf/profile/user` gets `system-db:local` right after its
//!   `user-db:` line (created as `user-db:user` + `system-db:local` when
//!   missing; every other line is kept). Under a host root the line is
//!   `file-db:<root>/etc/dconf/db/local` instead: dconf resolves `system-db:`
//!   names under the real `/etc`, never under a host root (the check refuses
//!   such a profile there for that reason);
//! - `/etc/dconf/db/local.d/99-palisade-screenlock` and
//!   `/etc/dconf/db/local.d/locks/99-palisade-screenlock`. `dconf compile`
//!   merges a directory's keyfiles in name order with the *later* file
//!   winning (measured with dconf 0.40), so `99-` keeps another keyfile of
//!   the same database from overriding these values;
//! - the database is compiled: `dconf update` on the live system (it also
//!   tells running sessions), `dconf compile <root>/etc/dconf/db/local
//!   <root>/etc/dconf/db/local.d` under a host root (same bytes, and the
//!   real `/etc` is never touched). Only when a keyfile changed or the
//!   database is older than its keyfiles (dconf update's own test).
//!
//! Without `dconf` installed there is no GNOME to configure, and the GNOME
//! part is left out with a note.
//!
//! KDE. `/etc/xdg/kscreenlockerrc` gets a `[Daemon][$i]` group (KConfig's
//! kiosk marker: the user's `~/.config/kscreenlockerrc` cannot change the
//! group's keys) with `Autolock=true`, `LockOnResume=true`, `Lock=true`,
//! `RequirePassword=true`, `LockGrace=0` and `Timeout` in whole minutes
//! (rounded down, at least 1: KDE's smallest). Other groups and other keys
//! of the group are kept.

use palisade_shared::policy::ScreenLockPolicy;

use crate::enforce::plan::{Plan, Step, absolute_host_path, write_if_different};
use crate::sys::{CommandSpec, Host};

pub const DCONF_PROFILE: &str = "/etc/dconf/profile/user";
pub const DCONF_DB: &str = "/etc/dconf/db/local";
pub const DCONF_KEYFILE_DIR: &str = "/etc/dconf/db/local.d";
pub const DCONF_KEYFILE: &str = "/etc/dconf/db/local.d/99-palisade-screenlock";
pub const DCONF_LOCKS: &str = "/etc/dconf/db/local.d/locks/99-palisade-screenlock";
pub const KSCREENLOCKERRC: &str = "/etc/xdg/kscreenlockerrc";

/// The directories `Host::run` searches (its cleared PATH); `dconf` must be
/// in one of them to compile anything.
const COMMAND_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Plans the screen lock settings for `policy`: the Linux desktops' files
/// (on Linux, and under a host root on any OS), the machine inactivity
/// limit on a live Windows, and nothing on a live system without an
/// enforcer yet (a refusal, so nothing is written where it means nothing).
pub fn plan(host: &Host, policy: &ScreenLockPolicy) -> anyhow::Result<Plan> {
    if Plan::is_foreign_live_system(host) {
        return native_plan(policy);
    }
    let mut plan = Plan::default();
    plan_gnome(host, policy, &mut plan)?;
    plan_kde(host, policy, &mut plan)?;
    Ok(plan)
}

fn plan_gnome(host: &Host, policy: &ScreenLockPolicy, plan: &mut Plan) -> anyhow::Result<()> {
    if !COMMAND_DIRS
        .iter()
        .any(|dir| std::path::Path::new(dir).join("dconf").is_file())
    {
        plan.notes.push(
            "dconf is not installed, so there is no GNOME to configure (GNOME part skipped)".into(),
        );
        return Ok(());
    }
    let database_line = if host.is_live_system() {
        "system-db:local".to_owned()
    } else {
        format!("file-db:{}", absolute_host_path(host, DCONF_DB)?)
    };
    let profile = host
        .read_optional(DCONF_PROFILE)
        .map_err(|err| anyhow::anyhow!("cannot read {DCONF_PROFILE}: {err}"))?;
    let new_profile = profile_with_database(profile.as_deref(), &database_line);
    write_if_different(host, plan, DCONF_PROFILE, new_profile)?;

    let keyfile_changed = write_if_different(host, plan, DCONF_KEYFILE, gnome_keyfile(policy))?;
    let locks_changed = write_if_different(host, plan, DCONF_LOCKS, gnome_locks())?;
    if keyfile_changed || locks_changed || database_is_stale(host) {
        let command = if host.is_live_system() {
            CommandSpec::new("dconf").arg("update")
        } else {
            CommandSpec::new("dconf")
                .arg("compile")
                .arg(absolute_host_path(host, DCONF_DB)?)
                .arg(absolute_host_path(host, DCONF_KEYFILE_DIR)?)
        };
        plan.steps.push(Step::Run {
            command,
            writes: vec![DCONF_DB.to_owned()],
        });
    }
    Ok(())
}

/// The keyfile: every key the check reads, with the value that passes.
pub fn gnome_keyfile(policy: &ScreenLockPolicy) -> String {
    format!(
        "# Managed by palisade-agent (rule screen_lock). `palisade-agent enforce --undo \
         screen_lock` restores what was here before.\n\
         # The screen blanks after idle-delay seconds and locks lock-delay seconds later; the \
         policy allows {max} s in all.\n\
         [org/gnome/desktop/session]\n\
         idle-delay=uint32 {max}\n\
         \n\
         [org/gnome/desktop/screensaver]\n\
         lock-enabled=true\n\
         lock-delay=uint32 0\n\
         \n\
         [org/gnome/desktop/lockdown]\n\
         disable-lock-screen=false\n",
        max = policy.max_idle_seconds
    )
}

/// The locks: users cannot change any of the keys above.
pub fn gnome_locks() -> String {
    "# Managed by palisade-agent (rule screen_lock): users cannot change these keys.\n\
     /org/gnome/desktop/session/idle-delay\n\
     /org/gnome/desktop/screensaver/lock-enabled\n\
     /org/gnome/desktop/screensaver/lock-delay\n\
     /org/gnome/desktop/lockdown/disable-lock-screen\n"
        .to_owned()
}

/// The profile with `database_line` right after the first `user-db:` line
/// (so it outranks every other system database), or first when there is no
/// user database. A profile that already names it is returned unchanged.
pub fn profile_with_database(profile: Option<&str>, database_line: &str) -> String {
    let Some(text) = profile else {
        return format!("user-db:user\n{database_line}\n");
    };
    if text.lines().any(|line| line.trim() == database_line) {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut inserted = false;
    for line in text.split_inclusive('\n') {
        out.push_str(line);
        if !inserted && line.trim_start().starts_with("user-db:") {
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(database_line);
            out.push('\n');
            inserted = true;
        }
    }
    if inserted {
        out
    } else {
        format!("{database_line}\n{text}")
    }
}

/// Whether the compiled database is missing or older than a file of its
/// keyfile directory (what `dconf update` looks at).
fn database_is_stale(host: &Host) -> bool {
    let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified());
    let Ok(database) = modified(&host.path(DCONF_DB)) else {
        return true;
    };
    let mut newest = None;
    for dir in [DCONF_KEYFILE_DIR, &format!("{DCONF_KEYFILE_DIR}/locks")] {
        let dir = host.path(dir);
        for path in std::iter::once(dir.clone()).chain(
            std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        ) {
            if let Ok(time) = modified(&path) {
                newest = Some(newest.map_or(time, |n: std::time::SystemTime| n.max(time)));
            }
        }
    }
    newest.is_some_and(|newest| newest > database)
}

fn plan_kde(host: &Host, policy: &ScreenLockPolicy, plan: &mut Plan) -> anyhow::Result<()> {
    let current = host
        .read_optional(KSCREENLOCKERRC)
        .map_err(|err| anyhow::anyhow!("cannot read {KSCREENLOCKERRC}: {err}"))?;
    let minutes = kde_timeout_minutes(policy.max_idle_seconds);
    if u64::from(minutes) * 60 > u64::from(policy.max_idle_seconds) {
        plan.notes.push(format!(
            "KDE locks after whole minutes only: Timeout={minutes} is {} s, more than the \
             policy's {} s",
            minutes * 60,
            policy.max_idle_seconds
        ));
    }
    let new = kscreenlockerrc_with_daemon_group(current.as_deref(), minutes);
    write_if_different(host, plan, KSCREENLOCKERRC, new)?;
    Ok(())
}

/// KDE's `Timeout` for a limit in seconds: whole minutes, rounded down, at
/// least 1 (0 would mean "never").
pub fn kde_timeout_minutes(max_idle_seconds: u32) -> u32 {
    (max_idle_seconds / 60).max(1)
}

/// The `[Daemon]` keys the enforcer sets, in the order written.
fn kde_daemon_keys(minutes: u32) -> [(&'static str, String); 6] {
    [
        ("Autolock", "true".to_owned()),
        ("LockOnResume", "true".to_owned()),
        ("Lock", "true".to_owned()),
        ("RequirePassword", "true".to_owned()),
        ("LockGrace", "0".to_owned()),
        ("Timeout", minutes.to_string()),
    ]
}

/// `kscreenlockerrc` with an immutable `[Daemon][$i]` group holding the
/// enforced keys. Other groups, comments and other `[Daemon]` keys are kept
/// as they were; the enforced keys' old lines (with any flags or locale
/// suffix) are dropped, and a second `[Daemon]` group further down is folded
/// into the first so that none can override it.
pub fn kscreenlockerrc_with_daemon_group(current: Option<&str>, minutes: u32) -> String {
    let keys = kde_daemon_keys(minutes);
    let enforced = |line: &str| {
        let key = line.split(['=', '[']).next().unwrap_or_default().trim();
        keys.iter().any(|(k, _)| *k == key)
    };
    let group_lines: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let Some(text) = current else {
        return format!(
            "# Managed by palisade-agent (rule screen_lock): [$i] makes the group immutable.\n\
             [Daemon][$i]\n{}\n",
            group_lines.join("\n")
        );
    };
    let mut out = String::new();
    let mut in_daemon = false;
    let mut written = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && !trimmed.starts_with("[$") {
            // `[Daemon]` or `[Daemon][$i]`; `[Daemon][Sub]` is another group.
            let segments: Vec<&str> = trimmed
                .split(['[', ']'])
                .filter(|s| !s.trim().is_empty())
                .collect();
            in_daemon = matches!(segments.as_slice(), ["Daemon"] | ["Daemon", "$i"]);
            if in_daemon {
                if !written {
                    out.push_str("[Daemon][$i]\n");
                    for group_line in &group_lines {
                        out.push_str(group_line);
                        out.push('\n');
                    }
                    written = true;
                }
                continue;
            }
        }
        if in_daemon && enforced(trimmed) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !written {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str("[Daemon][$i]\n");
        for group_line in &group_lines {
            out.push_str(group_line);
            out.push('\n');
        }
    }
    out
}

/// Windows: "Interactive logon: Machine inactivity limit"
/// (`InactivityTimeoutSecs`), which locks every session after that many
/// seconds without input, whoever is logged on and whatever their screen
/// saver says. Set to the policy's `max_idle_seconds` only when it is
/// absent, 0 (no limit) or longer: a stricter value IT set is kept.
#[cfg(windows)]
fn native_plan(policy: &ScreenLockPolicy) -> anyhow::Result<Plan> {
    use anyhow::Context as _;

    use super::windows::{INACTIVITY_TIMEOUT, SYSTEM_POLICIES};
    use crate::sys::registry::{self, Hive};

    let wanted = policy.max_idle_seconds;
    let current = registry::read_dword(Hive::LocalMachine, SYSTEM_POLICIES, INACTIVITY_TIMEOUT)
        .with_context(|| format!(r"cannot read HKLM\{SYSTEM_POLICIES}\{INACTIVITY_TIMEOUT}"))?;
    let mut plan = Plan::default();
    match current {
        Some(seconds) if seconds > 0 && seconds <= wanted => plan.notes.push(format!(
            "the machine inactivity limit is already {seconds} s"
        )),
        _ => plan.steps.push(Step::SetRegistryDword {
            key: SYSTEM_POLICIES.to_owned(),
            name: INACTIVITY_TIMEOUT.to_owned(),
            value: wanted,
            current,
        }),
    }
    Ok(plan)
}

#[cfg(not(windows))]
fn native_plan(_policy: &ScreenLockPolicy) -> anyhow::Result<Plan> {
    Ok(Plan::no_enforcer_yet("screen lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_gets_the_database_after_the_user_db() {
        assert_eq!(
            profile_with_database(None, "system-db:local"),
            "user-db:user\nsystem-db:local\n"
        );
        assert_eq!(
            profile_with_database(Some("user-db:user\nsystem-db:site\n"), "system-db:local"),
            "user-db:user\nsystem-db:local\nsystem-db:site\n"
        );
        assert_eq!(
            profile_with_database(Some("system-db:site"), "system-db:local"),
            "system-db:local\nsystem-db:site"
        );
        let done = "user-db:user\nsystem-db:local\n";
        assert_eq!(profile_with_database(Some(done), "system-db:local"), done);
    }

    #[test]
    fn kde_timeout_rounds_down_to_at_least_one_minute() {
        assert_eq!(kde_timeout_minutes(900), 15);
        assert_eq!(kde_timeout_minutes(959), 15);
        assert_eq!(kde_timeout_minutes(59), 1);
    }

    #[test]
    fn kscreenlockerrc_keeps_other_groups_and_keys() {
        let before = "[Greeter]\nTheme=breeze\n\n[Daemon]\nTimeout[$i]=30\nFoo=bar\nAutolock=false\n\n[Daemon][Bar]\nx=1\n";
        let after = kscreenlockerrc_with_daemon_group(Some(before), 15);
        assert_eq!(
            after,
            "[Greeter]\nTheme=breeze\n\n[Daemon][$i]\nAutolock=true\nLockOnResume=true\nLock=true\n\
             RequirePassword=true\nLockGrace=0\nTimeout=15\nFoo=bar\n\n[Daemon][Bar]\nx=1\n"
        );
        // Idempotent.
        assert_eq!(kscreenlockerrc_with_daemon_group(Some(&after), 15), after);
    }
}
