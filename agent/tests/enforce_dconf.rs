//! `palisade-agent enforce --rule screen_lock` on host roots, with the real
//! `dconf` and `gsettings`: the enforced value is what gsettings reads, the
//! user cannot change it, the check passes, a second run changes nothing,
//! and `--undo` gives the tree back byte for byte.
//!
//! Each tree holds a logind session of the current user, `/etc/passwd`, and
//! for GNOME the user's own dconf database compiled with `dconf compile`
//! (as in screen_lock_dconf.rs). Originals are kept in a state directory
//! beside the tree, never inside it. Needs `dconf` (dconf-cli), the dconf
//! GSettings module, `gsettings` and the GNOME schemas, which `tests/run`
//! installs.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use palisade_agent::sys::{CommandOutput, CommandSpec, Host};
use support::{Entry, Run, Tree, snapshot, snapshot_diff};

const HOME: &str = "home/alice";
const SESSION: &str = "[org/gnome/desktop/session]\n";

/// A host root with one graphical session of the current user.
fn session_tree(session_type: &str, desktop: &str) -> Tree {
    let tree = Tree::empty();
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let user = format!("user{uid}");
    tree.write(
        "etc/passwd",
        &format!("{user}:x:{uid}:{uid}:Alice:/{HOME}:/bin/bash\n"),
    );
    std::fs::create_dir_all(tree.root().join("proc")).unwrap();
    tree.write(
        "run/systemd/sessions/2",
        &format!(
            "UID={uid}\nUSER={user}\nACTIVE=1\nSTATE=active\nREMOTE=0\nTYPE={session_type}\n\
             CLASS=user\nSCOPE=session-2.scope\nSEAT=seat0\nDESKTOP={desktop}\n"
        ),
    );
    tree
}

/// A GNOME session whose user has switched the idle delay off.
fn gnome_tree() -> Tree {
    let tree = session_tree("wayland", "GNOME");
    tree.write("etc/dconf/profile/user", "user-db:user\n");
    let keyfiles = tree.outside("keyfiles/user");
    std::fs::create_dir_all(&keyfiles).unwrap();
    std::fs::write(
        keyfiles.join("user"),
        format!("{SESSION}idle-delay=uint32 0\n"),
    )
    .unwrap();
    dconf_compile(
        &tree.root().join(format!("{HOME}/.config/dconf/user")),
        &keyfiles,
    );
    tree
}

fn dconf_compile(database: &Path, keyfile_dir: &Path) {
    std::fs::create_dir_all(database.parent().unwrap()).unwrap();
    let output = Host::system()
        .run(
            &CommandSpec::new("dconf")
                .arg("compile")
                .arg(database.display().to_string())
                .arg(keyfile_dir.display().to_string()),
        )
        .unwrap();
    assert!(output.success(), "dconf compile failed: {}", output.stderr);
}

fn policy(tree: &Tree) -> PathBuf {
    tree.policy_file(
        "[policy]\nid = \"t\"\nversion = 1\n[rules.screen_lock]\nmode = \"enforce\"\n\
         max_idle_seconds = 300\n",
    )
}

fn enforce(tree: &Tree, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec![
        "enforce".into(),
        "--rule".into(),
        "screen_lock".into(),
        "--policy".into(),
        policy(tree).display().to_string(),
        "--host-root".into(),
        tree.root().display().to_string(),
        "--state-dir".into(),
        tree.outside("state").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    tree.run_agent(&args)
}

fn undo(tree: &Tree) -> Run {
    tree.run_agent(&[
        "enforce".into(),
        "--undo".into(),
        "screen_lock".into(),
        "--host-root".into(),
        tree.root().display().to_string(),
        "--state-dir".into(),
        tree.outside("state").display().to_string(),
    ])
}

fn check_status(tree: &Tree) -> (String, Run) {
    let run = tree.check("screen_lock", Some(&policy(tree)));
    let report: serde_json::Value = serde_json::from_str(&run.output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err})\n{}", run.explain()));
    let status = report["checks"][0]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, run)
}

/// The tree without the dconf runtime files that reading settings creates
/// under `run/user` (not the enforcer's doing).
fn tree_state(tree: &Tree) -> BTreeMap<String, Entry> {
    snapshot(&tree.root())
        .into_iter()
        .filter(|(path, _)| !path.starts_with("run/user"))
        .collect()
}

/// gsettings as a user of the enforced machine would run it: the system
/// database as a `file-db:` behind a fresh user database.
fn gsettings(tree: &Tree, args: &[&str]) -> CommandOutput {
    let profile = tree.outside("gsettings-profile");
    std::fs::write(
        &profile,
        format!(
            "user-db:user\nfile-db:{}\n",
            tree.root().join("etc/dconf/db/local").display()
        ),
    )
    .unwrap();
    let config = tree.outside("xdg-config");
    let runtime = tree.outside("xdg-runtime");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(&runtime).unwrap();
    let mut command = CommandSpec::new("gsettings")
        .env("DCONF_PROFILE", profile.display().to_string())
        .env("XDG_CONFIG_HOME", config.display().to_string())
        .env("XDG_RUNTIME_DIR", runtime.display().to_string())
        .env("HOME", tree.outside("home").display().to_string())
        .env("GSETTINGS_BACKEND", "dconf");
    for arg in args {
        command = command.arg(*arg);
    }
    Host::system().run(&command).unwrap()
}

#[test]
fn gnome_value_is_enforced_locked_and_undone_byte_for_byte() {
    let tree = gnome_tree();
    let (status, run) = check_status(&tree);
    assert_eq!(status, "fail", "{}", run.explain());
    let before = tree_state(&tree);

    let run = enforce(&tree, &[]);
    run.expect_exit(0);
    assert!(
        run.output
            .stdout
            .contains("screen_lock: applied (re-check: pass)"),
        "{}",
        run.explain()
    );
    for change in [
        "write /etc/dconf/profile/user",
        "create /etc/dconf/db/local.d/99-palisade-screenlock",
        "create /etc/dconf/db/local.d/locks/99-palisade-screenlock",
        "run dconf compile",
        "create /etc/xdg/kscreenlockerrc",
    ] {
        assert!(
            run.output.stdout.contains(change),
            "{change}\n{}",
            run.explain()
        );
    }

    let get = gsettings(&tree, &["get", "org.gnome.desktop.session", "idle-delay"]);
    assert_eq!(get.stdout.trim(), "uint32 300", "{get:?}");
    let writable = gsettings(
        &tree,
        &["writable", "org.gnome.desktop.session", "idle-delay"],
    );
    assert_eq!(writable.stdout.trim(), "false", "{writable:?}");
    let set = gsettings(
        &tree,
        &["set", "org.gnome.desktop.session", "idle-delay", "0"],
    );
    assert!(!set.success(), "a locked key must refuse a change: {set:?}");
    let get = gsettings(&tree, &["get", "org.gnome.desktop.session", "idle-delay"]);
    assert_eq!(get.stdout.trim(), "uint32 300", "{get:?}");
    let lock = gsettings(
        &tree,
        &["get", "org.gnome.desktop.screensaver", "lock-enabled"],
    );
    assert_eq!(lock.stdout.trim(), "true", "{lock:?}");

    // The user's own 0 is still in their database, and loses.
    let (status, run) = check_status(&tree);
    assert_eq!(status, "pass", "{}", run.explain());

    // Idempotent: nothing left to do, nothing touched.
    let enforced = tree_state(&tree);
    let run = enforce(&tree, &[]);
    run.expect_exit(0);
    assert!(
        run.output
            .stdout
            .contains("screen_lock: already compliant (re-check: pass)"),
        "{}",
        run.explain()
    );
    let after_second = tree_state(&tree);
    assert!(
        enforced == after_second,
        "{}",
        snapshot_diff(&enforced, &after_second)
    );

    let run = undo(&tree);
    run.expect_exit(0);
    let after_undo = tree_state(&tree);
    assert!(
        before == after_undo,
        "undo left differences:\n{}\n{}",
        snapshot_diff(&before, &after_undo),
        run.explain()
    );
    assert!(!tree.outside("state/enforce/screen_lock").exists());
}

/// A machine with its own profile (another line, a restrictive mode), its
/// own keyfile and an already compiled database: enforcement adds to them
/// and undo restores each byte and mode.
#[test]
fn existing_profile_and_database_are_restored_exactly() {
    use std::os::unix::fs::PermissionsExt as _;
    let tree = gnome_tree();
    let site_keyfiles = tree.outside("keyfiles/site.d");
    std::fs::create_dir_all(&site_keyfiles).unwrap();
    std::fs::write(
        site_keyfiles.join("00-site"),
        "[org/gnome/desktop/interface]\nclock-show-seconds=true\n",
    )
    .unwrap();
    let site = tree.root().join("etc/dconf/db/site");
    dconf_compile(&site, &site_keyfiles);
    let profile = format!("# site profile\nuser-db:user\nfile-db:{}\n", site.display());
    tree.write("etc/dconf/profile/user", &profile);
    std::fs::set_permissions(
        tree.root().join("etc/dconf/profile/user"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    tree.write(
        "etc/dconf/db/local.d/00-site",
        "[org/gnome/desktop/background]\nshow-desktop-icons=false\n",
    );
    dconf_compile(
        &tree.root().join("etc/dconf/db/local"),
        &tree.root().join("etc/dconf/db/local.d"),
    );
    let before = tree_state(&tree);

    let run = enforce(&tree, &[]);
    run.expect_exit(0);
    assert!(
        run.output.stdout.contains("applied (re-check: pass)"),
        "{}",
        run.explain()
    );
    let written = tree.read("etc/dconf/profile/user");
    assert_eq!(
        written,
        format!(
            "# site profile\nuser-db:user\nfile-db:{}\nfile-db:{}\n",
            tree.root().join("etc/dconf/db/local").display(),
            site.display()
        )
    );
    let mode = std::fs::metadata(tree.root().join("etc/dconf/profile/user"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "an edited file keeps its mode");
    assert_ne!(tree_state(&tree), before);

    undo(&tree).expect_exit(0);
    let after = tree_state(&tree);
    assert!(before == after, "{}", snapshot_diff(&before, &after));
}

const KSCREENLOCKERRC: &str = "# the site's own file\n[Greeter]\nTheme=org.kde.breeze\n\n\
                               [Daemon]\nTimeout=30\nLockOnResume=false\nExtra=kept\n\n\
                               [Greeter][Wallpaper][org.kde.image][General]\nImage=/x.png\n";

#[test]
fn kde_file_keeps_other_groups_wins_over_the_user_and_keeps_the_first_original() {
    let tree = session_tree("x11", "KDE");
    tree.write("etc/xdg/kscreenlockerrc", KSCREENLOCKERRC);
    // The user turned locking off in their own file.
    tree.write(
        &format!("{HOME}/.config/kscreenlockerrc"),
        "[Daemon]\nAutolock=false\nTimeout=60\n",
    );
    let (status, run) = check_status(&tree);
    assert_eq!(status, "fail", "{}", run.explain());
    let before = tree_state(&tree);

    let run = enforce(&tree, &[]);
    run.expect_exit(0);
    assert!(
        run.output.stdout.contains("applied (re-check: pass)"),
        "{}",
        run.explain()
    );
    let written = tree.read("etc/xdg/kscreenlockerrc");
    assert_eq!(
        written,
        "# the site's own file\n[Greeter]\nTheme=org.kde.breeze\n\n[Daemon][$i]\nAutolock=true\n\
         LockOnResume=true\nLock=true\nRequirePassword=true\nLockGrace=0\nTimeout=5\n\
         Extra=kept\n\n[Greeter][Wallpaper][org.kde.image][General]\nImage=/x.png\n"
    );

    let run = enforce(&tree, &[]);
    assert!(
        run.output.stdout.contains("already compliant"),
        "{}",
        run.explain()
    );
    // The undo record still holds the file as it was before the first run.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tree.outside("state/enforce/screen_lock/manifest.json")).unwrap(),
    )
    .unwrap();
    let entry = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/etc/xdg/kscreenlockerrc")
        .unwrap()
        .clone();
    use base64::Engine as _;
    let original = base64::engine::general_purpose::STANDARD
        .decode(entry["bytes_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(original, KSCREENLOCKERRC.as_bytes());

    undo(&tree).expect_exit(0);
    let after = tree_state(&tree);
    assert!(before == after, "{}", snapshot_diff(&before, &after));
}

/// The daemon's entry point: only `enforce`-mode failures are acted on, and
/// the result carries the re-check's verdict and the outcome.
#[test]
fn enforce_failing_applies_rechecks_and_reports() {
    use palisade_agent::enforce::{EnforceContext, enforce_failing};
    use palisade_shared::Policy;
    use palisade_shared::report::{CheckStatus, EnforcementResult, EventKind};

    let tree = session_tree("x11", "KDE");
    tree.write(
        &format!("{HOME}/.config/kscreenlockerrc"),
        "[Daemon]\nAutolock=false\n",
    );
    let host = Host::with_root(tree.root());
    let state = tree.outside("state");
    let text = |mode: &str| {
        format!(
            "[policy]\nid = \"t\"\nversion = 1\n[rules.screen_lock]\nmode = \"{mode}\"\n\
             max_idle_seconds = 300\n"
        )
    };

    // Audit mode: reported, never changed.
    let audit = Policy::parse(&text("audit")).unwrap();
    let mut results = palisade_agent::checks::run_checks(&host, &audit, None);
    assert_eq!(results[0].status, CheckStatus::Fail);
    let ctx = EnforceContext {
        host: &host,
        policy: &audit,
        state_dir: &state,
        dry_run: false,
    };
    assert!(enforce_failing(&ctx, &mut results).is_empty());
    assert_eq!(results[0].enforcement, None);
    assert!(!tree.root().join("etc/xdg/kscreenlockerrc").exists());

    let enforce = Policy::parse(&text("enforce")).unwrap();
    let mut results = palisade_agent::checks::run_checks(&host, &enforce, None);
    assert_eq!(results[0].status, CheckStatus::Fail);
    let ctx = EnforceContext {
        policy: &enforce,
        ..ctx
    };
    let events = enforce_failing(&ctx, &mut results);
    let outcome = results[0].enforcement.clone().unwrap();
    assert_eq!(outcome.result, EnforcementResult::Applied, "{outcome:?}");
    assert_eq!(outcome.recheck_status, CheckStatus::Pass);
    assert!(
        outcome
            .changes
            .contains(&"create /etc/xdg/kscreenlockerrc".to_owned())
    );
    assert_eq!(
        results[0].status,
        CheckStatus::Pass,
        "{}",
        results[0].summary
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Enforced);
    assert_eq!(events[0].details["result"], "applied");
}
