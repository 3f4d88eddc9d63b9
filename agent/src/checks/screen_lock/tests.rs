//! Tests of the screen_lock parsers (against the captured fixtures in
//! `agent/tests/fixtures/linux/screen_lock/`) and of the evaluator (one
//! table, one helper). The real-gsettings path is exercised end to end by
//! `agent/tests/screen_lock_dconf.rs`.

use std::collections::BTreeMap;

use palisade_shared::policy::{RuleSettings, ScreenLockPolicy};
use palisade_shared::report::{CheckStatus, Mode};

use super::*;
use crate::sys::Host;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/linux/screen_lock"
);

fn fixture(relative: &str) -> String {
    let path = format!("{FIXTURES}/{relative}");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {path}: {err}"))
}

// --- logind ------------------------------------------------------------------------

#[test]
fn logind_gnome_wayland_session_is_parsed_and_graphical() {
    let session = parse_logind_session(&fixture("logind/run/systemd/sessions/2"));
    assert_eq!(
        session,
        LogindSession {
            id: String::new(),
            user: Some("alice".into()),
            uid: Some(1000),
            session_type: Some("wayland".into()),
            class: Some("user".into()),
            state: Some("active".into()),
            active: Some(true),
            remote: Some(false),
            desktop: Some("gnome".into()),
            seat: Some("seat0".into()),
            scope: Some("session-2.scope".into()),
        }
    );
    assert!(session.is_graphical());
}

#[test]
fn logind_fixture_sessions_graphical_or_not() {
    for (id, user, desktop, graphical) in [
        ("2", "alice", Some("gnome"), true),
        ("3", "bob", Some("KDE"), true),
        ("4", "carol", None, false),       // text console
        ("5", "dave", None, false),        // ssh
        ("c1", "Debian-gdm", None, false), // the login greeter
    ] {
        let session = parse_logind_session(&fixture(&format!("logind/run/systemd/sessions/{id}")));
        assert_eq!(session.user.as_deref(), Some(user), "session {id}");
        assert_eq!(session.desktop.as_deref(), desktop, "session {id}");
        assert_eq!(session.is_graphical(), graphical, "session {id}");
    }
}

#[test]
fn graphical_needs_graphical_type_user_class_and_not_closing() {
    let base = parse_logind_session(&fixture("logind/run/systemd/sessions/2"));
    let with = |change: fn(&mut LogindSession)| {
        let mut session = base.clone();
        change(&mut session);
        session.is_graphical()
    };
    assert!(with(|s| s.session_type = Some("x11".into())));
    assert!(with(|s| s.session_type = Some("mir".into())));
    assert!(with(|s| s.state = Some("online".into())));
    assert!(with(|s| s.state = Some("opening".into())));
    assert!(!with(|s| s.session_type = Some("tty".into())));
    assert!(!with(|s| s.session_type = Some("unspecified".into())));
    assert!(!with(|s| s.session_type = None));
    assert!(!with(|s| s.class = Some("greeter".into())));
    assert!(!with(|s| s.class = Some("lock-screen".into())));
    assert!(!with(|s| s.class = Some("background".into())));
    assert!(!with(|s| s.state = Some("closing".into())));
}

#[test]
fn logind_sessions_directory_is_read_through_the_host_root() {
    let host = Host::with_root(format!("{FIXTURES}/logind"));
    let sessions = read_logind_sessions(&host)
        .expect("readable")
        .expect("directory exists");
    let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["2", "3", "4", "5", "c1"]);
    let graphical: Vec<&str> = sessions
        .iter()
        .filter(|s| s.is_graphical())
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(graphical, ["2", "3"]);
}

#[test]
fn absent_logind_directory_is_none() {
    let tree = tempfile::tempdir().unwrap();
    let host = Host::with_root(tree.path());
    assert_eq!(read_logind_sessions(&host).unwrap(), None);
}

/// logind keeps a FIFO `<id>.ref` next to each state file; opening it
/// blocks. Regression: the probe must never open it.
#[test]
#[allow(clippy::disallowed_methods)] // the test's own short child process
fn logind_ref_fifo_is_never_opened() {
    let tree = tempfile::tempdir().unwrap();
    let sessions = tree.path().join("run/systemd/sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    std::fs::write(sessions.join("2"), fixture("logind/run/systemd/sessions/2")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(sessions.join("2.ref"))
        .status()
        .unwrap();
    assert!(made.success());
    let host = Host::with_root(tree.path());
    let read = read_logind_sessions(&host).unwrap().unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id, "2");
}

#[test]
fn cgroup_membership_of_a_session_scope() {
    let greeter = "0::/user.slice/user-117.slice/session-c1.scope\n";
    assert!(cgroup_contains_unit(greeter, "session-c1.scope"));
    assert!(!cgroup_contains_unit(greeter, "session-c.scope"));
    assert!(!cgroup_contains_unit(greeter, "session-2.scope"));
    // cgroup v1 lists one line per hierarchy.
    let v1 = "12:pids:/user.slice/user-1000.slice/session-2.scope\n\
              1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n";
    assert!(cgroup_contains_unit(v1, "session-2.scope"));
    assert!(!cgroup_contains_unit("", "session-2.scope"));
}

#[test]
fn display_server_process_names() {
    for name in [
        "Xorg\n",
        "Xwayland",
        "gnome-shell",
        "kwin_wayland",
        "kwin_x11",
        "sway",
        "weston",
    ] {
        assert!(is_display_server_process(name), "{name:?}");
    }
    for name in ["Xvfb", "bash", "gnome-session-b", "xorg", ""] {
        assert!(!is_display_server_process(name), "{name:?}");
    }
}

// --- passwd --------------------------------------------------------------------------

#[test]
fn passwd_fixture_gives_names_uids_and_homes() {
    let entries = parse_passwd(&fixture("extra/passwd/debian-12-container"));
    let find = |name: &str| entries.iter().find(|e| e.name == name).cloned();
    assert_eq!(
        find("root"),
        Some(PasswdEntry {
            name: "root".into(),
            uid: 0,
            home: "/root".into()
        })
    );
    assert_eq!(
        find("nobody").map(|e| (e.uid, e.home)),
        Some((65534, "/nonexistent".into()))
    );
    assert_eq!(
        find("cloudsdk").map(|e| e.home),
        Some("/home/cloudsdk".into())
    );
    assert_eq!(entries.len(), 24);
}

#[test]
fn passwd_skips_comments_nis_and_malformed_lines() {
    let entries = parse_passwd(
        "# comment\n\n+@netgroup::::::\n-bob::::::\nbroken:x:1\nbaduid:x:abc:1::/h:/bin/sh\n\
         alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\r\n",
    );
    assert_eq!(
        entries,
        [PasswdEntry {
            name: "alice".into(),
            uid: 1000,
            home: "/home/alice".into()
        }]
    );
}

#[test]
fn user_names_passed_to_commands_must_be_plain() {
    assert!(is_plain_user_name("alice"));
    assert!(is_plain_user_name("Debian-gdm"));
    assert!(is_plain_user_name("jane.doe@corp"));
    for bad in ["", "-u", "a b", "a/b", "a:b", "a\nb"] {
        assert!(!is_plain_user_name(bad), "{bad:?}");
    }
}

// --- desktop -------------------------------------------------------------------------

#[test]
fn desktop_families() {
    use DesktopFamily::{Gnome, Kde, Unsupported};
    for (desktop, family) in [
        ("gnome", Gnome),
        ("GNOME", Gnome),
        ("gnome-xorg", Gnome),
        ("ubuntu", Gnome),
        ("ubuntu:GNOME", Gnome),
        ("pop:GNOME", Gnome),
        ("Unity", Gnome),
        ("gnome-flashback-metacity", Gnome),
        ("KDE", Kde),
        ("plasma", Kde),
        ("plasmawayland", Kde),
        ("KDE-Plasma", Kde),
        ("kubuntu", Kde),
        // Names that contain a GNOME word but lock with something else.
        ("Lubuntu", Unsupported),
        ("xubuntu", Unsupported),
        ("ubuntu-budgie", Unsupported),
        ("budgie-desktop", Unsupported),
        ("cinnamon", Unsupported),
        ("MATE", Unsupported),
        ("XFCE", Unsupported),
        ("COSMIC", Unsupported),
        ("", Unsupported),
    ] {
        assert_eq!(desktop_family(desktop), family, "{desktop:?}");
    }
}

// --- gsettings -----------------------------------------------------------------------

#[test]
fn gsettings_fixture_outputs_parse() {
    use GsettingsValue::{Boolean, Uint32};
    for (file, value) in [
        (
            "gnome/typed-300/gsettings/system-db-only/gsettings-idle-delay.txt",
            Uint32(300),
        ),
        (
            "gnome/typed-300/gsettings/system-db-only/gsettings-lock-delay.txt",
            Uint32(0),
        ),
        (
            "gnome/typed-300/gsettings/system-db-only/gsettings-lock-enabled.txt",
            Boolean(true),
        ),
        (
            "gnome/cis-ansible-lockdown/gsettings/system-db+user-override/gsettings-idle-delay.txt",
            Uint32(1800),
        ),
        (
            "gnome/cis-ansible-lockdown/gsettings/system-db+user-override/gsettings-lock-delay.txt",
            Uint32(5),
        ),
        (
            "gnome/cis-ansible-lockdown/gsettings/system-db+user-override/gsettings-lock-enabled.txt",
            Boolean(false),
        ),
        (
            "gnome/defaults/gsettings/no-system-db/gsettings-idle-delay.txt",
            Uint32(300),
        ),
        // The admin guide's untyped 180 is ignored by GSettings: the default shows.
        (
            "gnome/admin-guide-untyped/gsettings/system-db-only/gsettings-idle-delay.txt",
            Uint32(300),
        ),
    ] {
        let stdout = fixture(file);
        assert_eq!(parse_gsettings_value(&stdout), Some(value), "{file}");
        assert_eq!(
            classify_gsettings_output(Some(0), &stdout, ""),
            Ok(value),
            "{file}"
        );
    }
}

#[test]
fn gsettings_value_parser_rejects_what_it_does_not_know() {
    for text in [
        "300",
        "int32 300",
        "uint32 -1",
        "uint32 ",
        "'true'",
        "",
        "uint32 4294967296",
    ] {
        assert_eq!(parse_gsettings_value(text), None, "{text:?}");
    }
    assert_eq!(
        parse_gsettings_value("uint32 4294967295\n"),
        Some(GsettingsValue::Uint32(u32::MAX))
    );
}

/// Runs the classifier on a captured run: `<case>.stdout.txt`,
/// `.stderr.txt`, `.exitcode.txt`.
fn classify_captured(case: &str) -> Result<GsettingsValue, String> {
    let exit_code = fixture(&format!("{case}.exitcode.txt")).trim().parse().ok();
    classify_gsettings_output(
        exit_code,
        &fixture(&format!("{case}.stdout.txt")),
        &fixture(&format!("{case}.stderr.txt")),
    )
}

#[test]
fn gsettings_captured_failures_are_never_values() {
    for (case, reason) in [
        (
            "gnome/no-schema/gsettings-idle-delay",
            "no GSettings schemas",
        ),
        (
            "extra/gsettings-failures/no-such-schema",
            "schema is not installed",
        ),
        ("extra/gsettings-failures/no-such-key", "no such key"),
        // These three exit 0 and print a value: only stderr gives them away.
        (
            "extra/gsettings-failures/missing-dconf-module",
            "'memory' GSettings backend",
        ),
        (
            "extra/gsettings-failures/relative-dconf-profile",
            "null configuration",
        ),
        (
            "extra/gsettings-failures/unusable-runtime-dir",
            "dconf will not work properly",
        ),
    ] {
        let outcome = classify_captured(case);
        let Err(message) = outcome else {
            panic!("{case}: expected an error, got {outcome:?}");
        };
        assert!(message.contains(reason), "{case}: {message}");
    }
    assert_eq!(
        classify_captured("extra/gsettings-failures/ok-uint32"),
        Ok(GsettingsValue::Uint32(0))
    );
}

#[test]
fn gsettings_memory_backend_message_is_recognised() {
    // GLib's own wording when no backend is chosen at all.
    let stderr = "GLib-GIO-Message: 10:00:00.000: Using the 'memory' GSettings backend.  \
                  Your settings will not be saved or shared with other applications.";
    let outcome = classify_gsettings_output(Some(0), "uint32 300\n", stderr);
    assert!(
        matches!(&outcome, Err(m) if m.contains("memory")),
        "{outcome:?}"
    );
}

#[test]
fn gsettings_exit_status_and_unknown_warnings() {
    /// (exit code, stdout, stderr, the value or a fragment of the reason)
    type GsettingsCase<'a> = (
        Option<i32>,
        &'a str,
        &'a str,
        Result<GsettingsValue, &'a str>,
    );
    let cases: [GsettingsCase<'_>; 5] = [
        (Some(0), "true\n", "", Ok(GsettingsValue::Boolean(true))),
        (Some(1), "", "", Err("exited with code 1")),
        (
            Some(127),
            "",
            "runuser: failed to execute gsettings: No such file or directory",
            Err("code 127: runuser"),
        ),
        (None, "uint32 300\n", "", Err("signal")),
        (
            Some(0),
            "uint32 300\n",
            "some new warning\nsecond line",
            Err("cannot be trusted: some new warning"),
        ),
    ];
    for (exit_code, stdout, stderr, expected) in cases {
        let outcome = classify_gsettings_output(exit_code, stdout, stderr);
        match (expected, &outcome) {
            (Ok(value), Ok(got)) => assert_eq!(*got, value),
            (Err(fragment), Err(message)) => assert!(message.contains(fragment), "{message}"),
            _ => panic!("{exit_code:?} {stdout:?} {stderr:?}: {outcome:?}"),
        }
    }
    let garbage = classify_gsettings_output(Some(0), "@mu nothing\n", "");
    assert!(
        matches!(&garbage, Err(m) if m.contains("not a uint32")),
        "{garbage:?}"
    );
}

#[test]
fn dconf_profiles_system_databases() {
    assert_eq!(
        dconf_profile_system_databases(&fixture("gnome/typed-300/etc/dconf/profile/user")),
        ["local"]
    );
    assert!(
        dconf_profile_system_databases("user-db:user\n# system-db:old\nfile-db:/x/local\n")
            .is_empty()
    );
}

// --- gsettings invocation (live and host-root) ---------------------------------------

fn alice() -> PasswdEntry {
    PasswdEntry {
        name: "alice".into(),
        uid: 1000,
        home: "/home/alice".into(),
    }
}

#[test]
fn live_root_agent_runs_gsettings_as_the_user_through_runuser() {
    let host = Host::system();
    let context = ProbeContext {
        host: &host,
        live: true,
        agent_uid: Some(0),
    };
    let invocation = gsettings_invocation(&context, &alice()).unwrap();
    let spec = invocation.command(GNOME_IDLE_DELAY);
    assert_eq!(spec.program, "runuser");
    assert_eq!(
        spec.args,
        [
            "-u",
            "alice",
            "--",
            "gsettings",
            "get",
            "org.gnome.desktop.session",
            "idle-delay"
        ]
    );
    let env: BTreeMap<&str, &str> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env.get("HOME"), Some(&"/home/alice"));
    assert_eq!(env.get("XDG_RUNTIME_DIR"), Some(&"/run/user/1000"));
    assert_eq!(env.get("GSETTINGS_BACKEND"), Some(&"dconf"));
    assert_eq!(env.get("DCONF_PROFILE"), None);
    assert!(env.contains_key("PATH"));
}

#[test]
fn live_agent_as_the_same_user_runs_gsettings_directly() {
    let host = Host::system();
    let context = ProbeContext {
        host: &host,
        live: true,
        agent_uid: Some(1000),
    };
    let spec = gsettings_invocation(&context, &alice())
        .unwrap()
        .command(GNOME_LOCK_ENABLED);
    assert_eq!(spec.program, "gsettings");
    assert_eq!(
        spec.args,
        ["get", "org.gnome.desktop.screensaver", "lock-enabled"]
    );
}

#[test]
fn live_agent_without_root_cannot_read_another_user() {
    let host = Host::system();
    for (agent_uid, reason) in [
        (Some(1001), "without root"),
        (None, "which user the agent runs as"),
    ] {
        let context = ProbeContext {
            host: &host,
            live: true,
            agent_uid,
        };
        let outcome = gsettings_invocation(&context, &alice());
        assert!(
            matches!(&outcome, Err(m) if m.contains(reason)),
            "{agent_uid:?}: {outcome:?}"
        );
    }
}

#[test]
fn host_root_never_switches_user_and_maps_paths_into_the_tree() {
    let tree = tempfile::tempdir().unwrap();
    let profile = tree.path().join("etc/dconf/profile/user");
    std::fs::create_dir_all(profile.parent().unwrap()).unwrap();
    std::fs::write(&profile, "user-db:user\nfile-db:/somewhere/local\n").unwrap();
    let host = Host::with_root(tree.path());
    let context = ProbeContext {
        host: &host,
        live: false,
        agent_uid: None,
    };
    let spec = gsettings_invocation(&context, &alice())
        .unwrap()
        .command(GNOME_IDLE_DELAY);
    assert_eq!(spec.program, "gsettings");
    let root = tree.path().to_str().unwrap();
    let env: BTreeMap<&str, &str> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env.get("HOME").copied(),
        Some(format!("{root}/home/alice").as_str())
    );
    assert_eq!(
        env.get("XDG_CONFIG_HOME").copied(),
        Some(format!("{root}/home/alice/.config").as_str())
    );
    assert_eq!(
        env.get("XDG_RUNTIME_DIR").copied(),
        Some(format!("{root}/run/user/1000").as_str())
    );
    assert_eq!(
        env.get("DCONF_PROFILE").copied(),
        Some(format!("{root}/etc/dconf/profile/user").as_str())
    );
}

// --- kscreenlockerrc -------------------------------------------------------------------

fn kde_file(relative: &str) -> KConfigDaemonGroup {
    parse_kscreenlockerrc(&fixture(relative))
}

fn entry(value: &str) -> KConfigEntry {
    KConfigEntry {
        value: Some(value.into()),
        immutable: false,
    }
}

fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, KConfigEntry> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), entry(value)))
        .collect()
}

#[test]
fn kscreenlockerrc_fixtures_parse() {
    for (file, expected_entries, group_immutable) in [
        (
            "kde/user/tomjo2000-timeout15/.config/kscreenlockerrc",
            entries(&[("Timeout", "15")]),
            false,
        ),
        (
            "kde/user/richguk-lockgrace45/.config/kscreenlockerrc",
            entries(&[("LockGrace", "45")]),
            false,
        ),
        (
            "kde/user/chasinglogic-autolock-false/.config/kscreenlockerrc",
            entries(&[("Autolock", "false")]),
            false,
        ),
        (
            "kde/user/seineeloquenz-no-daemon-group/.config/kscreenlockerrc",
            entries(&[]),
            false,
        ),
        (
            "kde/user/kdefix-lockgrace300/.config/kscreenlockerrc",
            entries(&[("LockGrace", "300"), ("Timeout", "15")]),
            false,
        ),
        (
            "kde/system/aosc-autolock15/etc/xdg/kscreenlockerrc",
            entries(&[("Autolock", "true"), ("Timeout", "15")]),
            false,
        ),
        (
            "kde/system/kde-bigscreen-autolock-false/etc/xdg/kscreenlockerrc",
            entries(&[("Autolock", "false")]),
            false,
        ),
        (
            "kde/system/solydk-timeout30/etc/xdg/kscreenlockerrc",
            entries(&[("Timeout", "30")]),
            false,
        ),
        // The marker after the value is not a marker: it is part of the value.
        (
            "kde/system/andersrh-malformed-immutable/etc/xdg/kscreenlockerrc",
            entries(&[("Autolock", "false[$i]"), ("LockOnResume", "false[$i]")]),
            false,
        ),
        (
            "kde/system/kiosk-group-immutable/etc/xdg/kscreenlockerrc",
            entries(&[
                ("Autolock", "true"),
                ("Timeout", "5"),
                ("LockOnResume", "true"),
                ("LockGrace", "0"),
                ("RequirePassword", "true"),
            ]),
            true,
        ),
    ] {
        let parsed = kde_file(file);
        assert_eq!(parsed.entries, expected_entries, "{file}");
        assert_eq!(parsed.group_immutable, group_immutable, "{file}");
        assert!(!parsed.file_immutable, "{file}");
        assert!(parsed.unresolved_keys.is_empty(), "{file}");
    }
}

#[test]
fn kscreenlockerrc_markers_and_subgroups() {
    let parsed = parse_kscreenlockerrc(
        "[$i]\n[Daemon]\n Timeout = 10 \nLockGrace[$i]=3\nAutolock[$d]\nLock[$ie]=true\n\
         Timeout[de]=20\n[Daemon][Extra]\nTimeout=99\n[Greeter]\nTimeout=98\n",
    );
    assert!(parsed.file_immutable);
    assert!(!parsed.group_immutable);
    assert_eq!(parsed.entries["Timeout"], entry("10"));
    assert_eq!(
        parsed.entries["LockGrace"],
        KConfigEntry {
            value: Some("3".into()),
            immutable: true
        }
    );
    assert_eq!(
        parsed.entries["Autolock"],
        KConfigEntry {
            value: None,
            immutable: false
        }
    );
    assert_eq!(parsed.unresolved_keys, ["Lock[$ie]", "Timeout[de]"]);
    // `[$i]` after a group header is not a file marker.
    assert!(!parse_kscreenlockerrc("[Greeter]\n[$i]\n").file_immutable);
}

/// Resolves system then user file, parsed from text.
fn resolve_texts(system: Option<&str>, user: Option<&str>) -> Result<KdeLockSettings, String> {
    let system = system.map(parse_kscreenlockerrc);
    let user = user.map(parse_kscreenlockerrc);
    resolve_kde_settings(&[
        ("/etc/xdg/kscreenlockerrc", system.as_ref()),
        ("/home/bob/.config/kscreenlockerrc", user.as_ref()),
    ])
}

fn resolve_fixtures(system: Option<&str>, user: Option<&str>) -> Result<KdeLockSettings, String> {
    let system = system.map(|case| fixture(&format!("kde/system/{case}/etc/xdg/kscreenlockerrc")));
    let user = user.map(|case| fixture(&format!("kde/user/{case}/.config/kscreenlockerrc")));
    resolve_texts(system.as_deref(), user.as_deref())
}

/// (autolock, timeout minutes, lock, grace seconds, require password)
type KdeValues = (bool, f64, bool, i64, bool);

fn values(settings: &KdeLockSettings) -> KdeValues {
    (
        settings.autolock,
        settings.timeout_minutes,
        settings.lock,
        settings.lock_grace_seconds,
        settings.require_password,
    )
}

#[test]
fn kde_cascade_over_fixture_combinations() {
    let cases: [(Option<&str>, Option<&str>, KdeValues); 7] = [
        (None, None, (true, 5.0, true, 5, true)),
        (
            None,
            Some("seineeloquenz-no-daemon-group"),
            (true, 5.0, true, 5, true),
        ),
        (
            None,
            Some("tomjo2000-timeout15"),
            (true, 15.0, true, 5, true),
        ),
        (Some("solydk-timeout30"), None, (true, 30.0, true, 5, true)),
        // A mutable system file: the user's LockGrace joins the system's Timeout.
        (
            Some("aosc-autolock15"),
            Some("richguk-lockgrace45"),
            (true, 15.0, true, 45, true),
        ),
        // The user's Autolock=false beats a mutable system Autolock... and a
        // system Autolock=false stays when the user says nothing.
        (
            Some("kde-bigscreen-autolock-false"),
            Some("tomjo2000-timeout15"),
            (false, 15.0, true, 5, true),
        ),
        // `[Daemon][$i]`: the user's Timeout=15 is ignored, and so is any key
        // the system file leaves out.
        (
            Some("kiosk-group-immutable"),
            Some("kdefix-lockgrace300"),
            (true, 5.0, true, 0, true),
        ),
    ];
    for (system, user, expected) in cases {
        let settings = resolve_fixtures(system, user)
            .unwrap_or_else(|err| panic!("{system:?} {user:?}: {err}"));
        assert_eq!(values(&settings), expected, "{system:?} {user:?}");
    }
}

#[test]
fn kde_origins_name_the_deciding_file() {
    let settings =
        resolve_fixtures(Some("kiosk-group-immutable"), Some("tomjo2000-timeout15")).unwrap();
    assert_eq!(
        settings.origins["Timeout"],
        "/etc/xdg/kscreenlockerrc (immutable in /etc/xdg/kscreenlockerrc)"
    );
    let settings = resolve_fixtures(None, Some("tomjo2000-timeout15")).unwrap();
    assert_eq!(
        settings.origins["Timeout"],
        "/home/bob/.config/kscreenlockerrc"
    );
    assert_eq!(settings.origins["LockGrace"], "default");
}

#[test]
fn kde_key_and_file_immutability_and_deletion() {
    // A key marked immutable in the system file.
    let settings = resolve_texts(
        Some("[Daemon]\nTimeout[$i]=10\nLockGrace=1\n"),
        Some("[Daemon]\nTimeout=60\nLockGrace=2\n"),
    )
    .unwrap();
    assert_eq!(
        (settings.timeout_minutes, settings.lock_grace_seconds),
        (10.0, 2)
    );
    // A whole system file marked immutable.
    let settings = resolve_texts(
        Some("[$i]\n[Daemon]\nTimeout=10\n"),
        Some("[Daemon]\nTimeout=60\nLockGrace=99\n"),
    )
    .unwrap();
    assert_eq!(
        (settings.timeout_minutes, settings.lock_grace_seconds),
        (10.0, 5)
    );
    // `[$d]` in the user file brings the default back.
    let settings = resolve_texts(
        Some("[Daemon]\nTimeout=60\n"),
        Some("[Daemon]\nTimeout[$d]\n"),
    )
    .unwrap();
    assert_eq!(settings.timeout_minutes, 5.0);
    assert!(settings.origins["Timeout"].starts_with("default (deleted in"));
    // KConfig's Timeout is a Double.
    let settings = resolve_texts(None, Some("[Daemon]\nTimeout=0.5\n")).unwrap();
    assert_eq!(settings.timeout_minutes, 0.5);
}

#[test]
fn kde_values_kde_would_misread_are_errors() {
    for (system, user, fragment) in [
        // KConfig reads `false[$i]` as true: its author meant false.
        (
            Some(fixture(
                "kde/system/andersrh-malformed-immutable/etc/xdg/kscreenlockerrc",
            )),
            None,
            "Autolock=\"false[$i]\"",
        ),
        (
            None,
            Some("[Daemon]\nTimeout=soon\n".to_owned()),
            "Timeout=\"soon\"",
        ),
        (
            None,
            Some("[Daemon]\nTimeout=inf\n".to_owned()),
            "Timeout=\"inf\"",
        ),
        (
            None,
            Some("[Daemon]\nLockGrace=2.5\n".to_owned()),
            "LockGrace=\"2.5\"",
        ),
        (
            None,
            Some("[Daemon]\nRequirePassword=maybe\n".to_owned()),
            "RequirePassword",
        ),
        (
            None,
            Some("[Daemon]\nTimeout[de]=30\n".to_owned()),
            "Timeout[de]",
        ),
        (
            None,
            Some("[Daemon]\nTimeout[$e]=$(echo 30)\n".to_owned()),
            "Timeout[$e]",
        ),
    ] {
        let outcome = resolve_texts(system.as_deref(), user.as_deref());
        assert!(
            matches!(&outcome, Err(m) if m.contains(fragment)),
            "{system:?} {user:?}: {outcome:?}"
        );
    }
}

// --- evaluator -----------------------------------------------------------------------------

const POLICY_SECONDS: u32 = 900;

pub(super) fn policy(max_idle_seconds: u32) -> ScreenLockPolicy {
    ScreenLockPolicy {
        settings: RuleSettings {
            mode: Mode::Audit,
            grace_days: 14,
        },
        max_idle_seconds,
    }
}

fn logind(id: &str, user: &str, desktop: &str) -> LogindSession {
    LogindSession {
        id: id.into(),
        user: Some(user.into()),
        uid: Some(1000),
        session_type: Some("wayland".into()),
        class: Some("user".into()),
        state: Some("active".into()),
        active: Some(true),
        remote: Some(false),
        desktop: Some(desktop.into()),
        seat: Some("seat0".into()),
        scope: Some(format!("session-{id}.scope")),
    }
}

fn gnome(
    idle: u32,
    lock_enabled: bool,
    lock_delay: u32,
    disabled: bool,
) -> Result<LockSettings, String> {
    Ok(LockSettings::Gnome(GnomeLockSettings {
        idle_delay_seconds: idle,
        lock_enabled,
        lock_delay_seconds: lock_delay,
        lock_screen_disabled: disabled,
        source: "gsettings".into(),
    }))
}

fn kde(
    (autolock, timeout_minutes, lock, grace, require_password): KdeValues,
) -> Result<LockSettings, String> {
    Ok(LockSettings::Kde(KdeLockSettings {
        autolock,
        timeout_minutes,
        lock,
        lock_grace_seconds: grace,
        require_password,
        origins: BTreeMap::new(),
    }))
}

fn one_session(settings: Result<LockSettings, String>) -> ScreenLockFacts {
    let desktop = match &settings {
        Ok(LockSettings::Kde(_)) => "KDE",
        _ => "GNOME",
    };
    ScreenLockFacts::Linux(LinuxLockFacts {
        sessions: vec![SessionFacts {
            session: logind("2", "alice", desktop),
            settings,
        }],
        logind_session_count: Some(1),
        display_servers: Vec::new(),
    })
}

fn display_server(name: &str, session: Option<(&str, &str)>) -> DisplayServerProcess {
    DisplayServerProcess {
        pid: 4242,
        name: name.into(),
        session_id: session.map(|(id, _)| id.into()),
        session_class: session.map(|(_, class)| class.into()),
    }
}

fn no_session(
    logind_count: Option<usize>,
    display_servers: Vec<DisplayServerProcess>,
) -> ScreenLockFacts {
    ScreenLockFacts::Linux(LinuxLockFacts {
        sessions: Vec::new(),
        logind_session_count: logind_count,
        display_servers,
    })
}

/// One evaluator case: what the facts were, what the verdict must be, and a
/// fragment each of summary and fix must contain.
struct Case {
    name: &'static str,
    facts: ScreenLockFacts,
    max_idle_seconds: u32,
    status: CheckStatus,
    summary_contains: &'static str,
    fix_contains: &'static str,
}

fn check(case: &Case) {
    let verdict = evaluate(&case.facts, &policy(case.max_idle_seconds));
    assert_eq!(verdict.status, case.status, "{}: {verdict:?}", case.name);
    assert!(
        verdict.summary.contains(case.summary_contains),
        "{}: summary {:?} lacks {:?}",
        case.name,
        verdict.summary,
        case.summary_contains
    );
    assert!(
        verdict.fix.contains(case.fix_contains),
        "{}: fix {:?} lacks {:?}",
        case.name,
        verdict.fix,
        case.fix_contains
    );
    if case.status != CheckStatus::Fail {
        assert!(
            verdict.fix.is_empty(),
            "{}: fix {:?}",
            case.name,
            verdict.fix
        );
    }
    assert_eq!(
        verdict.evidence["max_idle_seconds"], case.max_idle_seconds,
        "{}",
        case.name
    );
}

#[test]
fn evaluator_table() {
    use CheckStatus::{Fail, NotApplicable, Pass, Unknown};
    let case = |name, facts, status, summary_contains, fix_contains| Case {
        name,
        facts,
        max_idle_seconds: POLICY_SECONDS,
        status,
        summary_contains,
        fix_contains,
    };
    let two = |first: Result<LockSettings, String>, second: Result<LockSettings, String>| {
        ScreenLockFacts::Linux(LinuxLockFacts {
            sessions: vec![
                SessionFacts {
                    session: logind("2", "alice", "GNOME"),
                    settings: first,
                },
                SessionFacts {
                    session: logind("3", "bob", "KDE"),
                    settings: second,
                },
            ],
            logind_session_count: Some(2),
            display_servers: Vec::new(),
        })
    };
    let cases = [
        // No session.
        case(
            "no logind, no display server",
            no_session(None, vec![]),
            NotApplicable,
            "no graphical session",
            "",
        ),
        case(
            "empty logind, no display server",
            no_session(Some(0), vec![]),
            NotApplicable,
            "no graphical session",
            "",
        ),
        case(
            "greeter's display server only",
            no_session(
                Some(1),
                vec![display_server("gnome-shell", Some(("c1", "greeter")))],
            ),
            NotApplicable,
            "no graphical session",
            "",
        ),
        case(
            "display server, no logind",
            no_session(None, vec![display_server("Xorg", None)]),
            Unknown,
            "(Xorg, pid 4242) but there is no logind session directory",
            "",
        ),
        case(
            "display server, no graphical session",
            no_session(Some(2), vec![display_server("Xorg", None)]),
            Unknown,
            "logind lists no graphical user session",
            "",
        ),
        case(
            "startx from a text console",
            no_session(Some(1), vec![display_server("Xorg", Some(("4", "user")))]),
            Unknown,
            "(Xorg, pid 4242, in session 4)",
            "",
        ),
        // GNOME thresholds: idle + lock delay against 900.
        case(
            "gnome 899",
            one_session(gnome(840, true, 59, false)),
            Pass,
            "after 899 s idle for alice; the policy allows 900 s",
            "",
        ),
        case(
            "gnome 900",
            one_session(gnome(900, true, 0, false)),
            Pass,
            "after 900 s idle for alice",
            "",
        ),
        case(
            "gnome 901",
            one_session(gnome(840, true, 61, false)),
            Fail,
            "screen locks after 901 s idle for alice; the policy allows 900 s",
            "Blank Screen Delay to 15 minutes or less",
        ),
        case(
            "gnome 1800",
            one_session(gnome(1800, true, 0, false)),
            Fail,
            "screen locks after 1800 s idle for alice; the policy allows 900 s",
            "Automatic Screen Lock on",
        ),
        case(
            "gnome idle 0",
            one_session(gnome(0, true, 0, false)),
            Fail,
            "screen never locks for alice: idle-delay is 0",
            "Blank Screen Delay",
        ),
        case(
            "gnome lock disabled",
            one_session(gnome(300, false, 0, false)),
            Fail,
            "never locks for alice: lock-enabled is false",
            "Blank Screen Delay",
        ),
        case(
            "gnome lockdown",
            one_session(gnome(300, true, 0, true)),
            Fail,
            "disable-lock-screen is true",
            "ask IT to remove",
        ),
        // KDE thresholds: Timeout minutes + LockGrace seconds against 900.
        case(
            "kde 899",
            one_session(kde((true, 14.0, true, 59, true))),
            Pass,
            "after 899 s idle for alice",
            "",
        ),
        case(
            "kde 900",
            one_session(kde((true, 14.0, true, 60, true))),
            Pass,
            "after 900 s idle for alice",
            "",
        ),
        case(
            "kde 901",
            one_session(kde((true, 14.0, true, 61, true))),
            Fail,
            "screen locks after 901 s idle for alice",
            "Lock screen automatically after 14 minutes",
        ),
        case(
            "kde defaults",
            one_session(kde((true, 5.0, true, 5, true))),
            Pass,
            "after 305 s idle",
            "",
        ),
        case(
            "kde half a minute",
            one_session(kde((true, 0.5, true, 0, true))),
            Pass,
            "after 30 s idle",
            "",
        ),
        case(
            "kde autolock off",
            one_session(kde((false, 5.0, true, 5, true))),
            Fail,
            "never locks for alice: Autolock is false",
            "Screen Locking",
        ),
        case(
            "kde timeout 0",
            one_session(kde((true, 0.0, true, 5, true))),
            Fail,
            "Timeout is 0",
            "Screen Locking",
        ),
        case(
            "kde lock off",
            one_session(kde((true, 5.0, false, 5, true))),
            Fail,
            "Lock is false",
            "Screen Locking",
        ),
        case(
            "kde no password",
            one_session(kde((true, 5.0, true, 5, false))),
            Fail,
            "RequirePassword is false",
            "Screen Locking",
        ),
        case(
            "kde negative grace",
            one_session(kde((true, 5.0, true, -1, true))),
            Fail,
            "LockGrace is negative",
            "Screen Locking",
        ),
        // Unreadable sessions.
        case(
            "unreadable",
            one_session(Err("gsettings is not installed".into())),
            Unknown,
            "could not read the screen lock settings of alice (session 2): gsettings is not installed",
            "",
        ),
        case(
            "pass and unknown",
            two(gnome(300, true, 0, false), Err("no home".into())),
            Unknown,
            "bob (session 3): no home",
            "",
        ),
        case(
            "fail and unknown",
            two(gnome(1800, true, 0, false), Err("no home".into())),
            Fail,
            "1800 s idle for alice",
            "Blank Screen Delay",
        ),
        case(
            "both pass",
            two(gnome(300, true, 0, false), kde((true, 5.0, true, 5, true))),
            Pass,
            "after 300 s idle for alice, after 305 s idle for bob",
            "",
        ),
        case(
            "both fail, both fixes",
            two(
                gnome(1800, true, 0, false),
                kde((false, 5.0, true, 5, true)),
            ),
            Fail,
            "1800 s idle for alice; screen never locks for bob",
            "Screen Locking",
        ),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn fix_text_follows_the_policy() {
    for (max, fragment) in [
        (900, "15 minutes or less"),
        (600, "10 minutes or less"),
        (60, "1 minute or less"),
        (
            30,
            "the shortest time offered (the policy allows only 30 s)",
        ),
    ] {
        check(&Case {
            name: "fix text",
            facts: one_session(gnome(3600, true, 0, false)),
            max_idle_seconds: max,
            status: CheckStatus::Fail,
            summary_contains: "",
            fix_contains: fragment,
        });
    }
    // KDE adds its 5 s of default grace, so 900 s leaves 14 whole minutes.
    let verdict = evaluate(&one_session(kde((true, 60.0, true, 5, true))), &policy(900));
    assert!(verdict.fix.contains("after 14 minutes"), "{}", verdict.fix);
}

#[test]
fn evidence_per_session() {
    let verdict = evaluate(
        &one_session(gnome(600, true, 30, false)),
        &policy(POLICY_SECONDS),
    );
    let session = &verdict.evidence["sessions"][0];
    assert_eq!(session["session"], "2");
    assert_eq!(session["user"], "alice");
    assert_eq!(session["desktop"], "GNOME");
    assert_eq!(session["desktop_family"], "gnome");
    assert_eq!(session["status"], "locks_in_time");
    assert_eq!(session["effective_seconds"], 630);
    assert_eq!(session["values"]["idle-delay"], 600);
    assert_eq!(session["values"]["lock-delay"], 30);
    assert_eq!(session["values"]["lock-enabled"], true);
    assert_eq!(session["source"], "gsettings");

    let verdict = evaluate(
        &one_session(kde((false, 5.0, true, 5, true))),
        &policy(POLICY_SECONDS),
    );
    let session = &verdict.evidence["sessions"][0];
    assert_eq!(session["status"], "never_locks");
    assert_eq!(session["effective_seconds"], serde_json::Value::Null);
    assert_eq!(session["values"]["Autolock"], false);

    let verdict = evaluate(&one_session(Err("why".into())), &policy(POLICY_SECONDS));
    let session = &verdict.evidence["sessions"][0];
    assert_eq!(session["status"], "unknown");
    assert_eq!(session["detail"], "why");
}

// ---------------------------------------------------------------------------
// Windows: the evaluator over registry values (the probe itself runs under
// Wine in tests/tests/windows_agent.rs).

fn saver(active: &str, secure: &str, timeout: &str, exe: &str) -> ScreenSaverValues {
    let value = |text: &str| match text {
        "-" => RegistryRead::Absent,
        "!" => RegistryRead::Unreadable("Access is denied. (os error 5)".into()),
        text => RegistryRead::Value(text.to_owned()),
    };
    ScreenSaverValues {
        active: value(active),
        secure: value(secure),
        timeout: value(timeout),
        executable: value(exe),
    }
}

fn unset() -> ScreenSaverValues {
    saver("-", "-", "-", "-")
}

fn windows(
    limit: RegistryRead<u32>,
    users: &[(ScreenSaverValues, ScreenSaverValues)],
) -> ScreenLockFacts {
    ScreenLockFacts::Windows(WindowsLockFacts {
        inactivity_limit: limit,
        users: users
            .iter()
            .enumerate()
            .map(|(n, (policy, user))| WindowsUserScreenSaver {
                sid: format!("S-1-5-21-1-2-3-{}", 1000 + n),
                policy: policy.clone(),
                user: user.clone(),
            })
            .collect(),
    })
}

#[test]
fn windows_evaluator_table() {
    use CheckStatus::{Fail, NotApplicable, Pass, Unknown};
    use RegistryRead::{Absent, Unreadable, Value};
    let scr = r"C:\Windows\System32\scrnsave.scr";
    let good = saver("1", "1", "600", scr);
    let case = |name, facts, status, summary_contains, fix_contains| Case {
        name,
        facts,
        max_idle_seconds: POLICY_SECONDS,
        status,
        summary_contains,
        fix_contains,
    };
    let cases = [
        case(
            "a machine limit within the policy passes for everyone",
            windows(Value(600), &[(unset(), saver("0", "0", "0", "-"))]),
            Pass,
            "after 600 s idle (machine inactivity limit)",
            "",
        ),
        case(
            "a machine limit within the policy passes with no one logged on",
            windows(Value(900), &[]),
            Pass,
            "machine inactivity limit",
            "",
        ),
        case(
            "no one logged on and no limit",
            windows(Absent, &[]),
            NotApplicable,
            "no one is logged on",
            "",
        ),
        case(
            "the user's secure screen saver locks in time",
            windows(Absent, &[(unset(), good.clone())]),
            Pass,
            "after 600 s idle for S-1-5-21-1-2-3-1000",
            "",
        ),
        case(
            "policy takes precedence over the user's own value",
            windows(Absent, &[(saver("-", "-", "3600", "-"), good.clone())]),
            Fail,
            "screen locks after 3600 s idle",
            "Machine inactivity limit",
        ),
        case(
            "a policy can make a user's insecure saver secure",
            windows(
                Absent,
                &[(saver("-", "1", "-", "-"), saver("1", "0", "300", scr))],
            ),
            Pass,
            "after 300 s idle",
            "",
        ),
        case(
            "a screen saver without the password does not lock",
            windows(Absent, &[(unset(), saver("1", "0", "300", scr))]),
            Fail,
            "ScreenSaverIsSecure is 0",
            "On resume, display logon screen",
        ),
        case(
            "no screen saver chosen never locks",
            windows(Absent, &[(unset(), saver("1", "1", "300", "-"))]),
            Fail,
            "no screen saver is chosen",
            "",
        ),
        case(
            "screen saver off never locks",
            windows(Absent, &[(unset(), saver("0", "1", "300", scr))]),
            Fail,
            "ScreenSaveActive is 0",
            "",
        ),
        case(
            "a machine limit of 0 is no limit",
            windows(Value(0), &[(unset(), saver("1", "1", "0", scr))]),
            Fail,
            "ScreenSaveTimeOut is 0",
            "",
        ),
        case(
            "a machine limit too long fails when the saver never locks",
            windows(Value(3600), &[(unset(), saver("0", "-", "-", scr))]),
            Fail,
            "screen locks after 3600 s idle",
            "",
        ),
        case(
            "the earlier of limit and saver decides",
            windows(Value(3600), &[(unset(), saver("1", "1", "300", scr))]),
            Pass,
            "after 300 s idle",
            "",
        ),
        case(
            "an unset value with no documented default is unknown, never pass",
            windows(Absent, &[(unset(), saver("1", "-", "300", scr))]),
            Unknown,
            "ScreenSaverIsSecure is not set",
            "",
        ),
        case(
            "an unreadable policy key is unknown",
            windows(Absent, &[(saver("!", "-", "-", "-"), good.clone())]),
            Unknown,
            "cannot read ScreenSaveActive (policy key)",
            "",
        ),
        case(
            "an unreadable machine limit is unknown unless the saver locks in time",
            windows(
                Unreadable("Access is denied.".into()),
                &[(unset(), saver("1", "-", "300", scr))],
            ),
            Unknown,
            "InactivityTimeoutSecs",
            "",
        ),
        case(
            "an unreadable machine limit is decided by a saver in time",
            windows(
                Unreadable("Access is denied.".into()),
                &[(unset(), good.clone())],
            ),
            Pass,
            "after 600 s idle",
            "",
        ),
        case(
            "a timeout that is not a number is unknown",
            windows(Absent, &[(unset(), saver("1", "1", "ten minutes", scr))]),
            Unknown,
            "not a number of seconds",
            "",
        ),
        case(
            "one failing user of two fails the device",
            windows(
                Absent,
                &[
                    (unset(), good.clone()),
                    (unset(), saver("1", "1", "1200", scr)),
                ],
            ),
            Fail,
            "screen locks after 1200 s idle for S-1-5-21-1-2-3-1001",
            "",
        ),
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn only_peoples_hives_are_read() {
    for hive in [
        "S-1-5-21-3623811015-3361044348-30300820-1013",
        "S-1-12-1-1234-5678-91011-1213",
    ] {
        assert!(is_person_hive(hive), "{hive}");
    }
    for hive in [
        ".DEFAULT",
        "S-1-5-18",
        "S-1-5-19",
        "S-1-5-20",
        "S-1-5-21-3623811015-3361044348-30300820-1013_Classes",
    ] {
        assert!(!is_person_hive(hive), "{hive}");
    }
}
