//! `palisade-agent check --rule screen_lock` against real dconf databases and
//! the real `gsettings`, through a host root.
//!
//! Each test builds a tree in a temporary directory: a logind session file,
//! `/etc/passwd`, a user database compiled with `dconf compile` into the
//! user's `~/.config/dconf/user`, and optionally a system database (with its
//! `locks/`) compiled into `etc/dconf/db/local` and named by an
//! `etc/dconf/profile/user` profile as a `file-db:` (dconf resolves
//! `system-db:` names under the real /etc, never under a host root). Then it
//! runs the built binary and reads the JSON report. KDE sessions need no tool:
//! their `kscreenlockerrc` files are written into the tree.
//!
//! Needs `dconf` (dconf-cli), the dconf GSettings module
//! (dconf-gsettings-backend), `gsettings` (libglib2.0-bin) and the GNOME
//! schemas (gsettings-desktop-schemas); `tests/run` installs them in CI. The
//! tests change nothing outside their temporary directories.
#![cfg(target_os = "linux")] // dconf, gsettings and logind are Linux's
#![allow(clippy::expect_used)] // a panic in a test is a failed assertion

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

/// The home directory the tree's `/etc/passwd` gives the session's user.
const HOME: &str = "/home/alice";

/// One prepared host root.
struct Tree {
    dir: TempDir,
    user: String,
    uid: u32,
}

/// What one run of the agent printed.
struct CheckRun {
    exit_code: Option<i32>,
    report: Value,
    dump: String,
}

impl CheckRun {
    /// The screen_lock result.
    fn result(&self) -> &Value {
        &self.report["checks"][0]
    }

    fn status(&self) -> &str {
        self.result()["status"].as_str().unwrap_or_default()
    }

    /// The evidence of the first (only) session.
    fn session(&self) -> &Value {
        &self.result()["evidence"]["sessions"][0]
    }

    /// Asserts status and exit code, dumping everything on failure.
    fn assert_outcome(&self, status: &str, exit_code: i32) {
        assert_eq!(
            (self.status(), self.exit_code),
            (status, Some(exit_code)),
            "unexpected outcome\n{}",
            self.dump
        );
    }
}

impl Tree {
    /// A tree with `/etc/passwd` and an empty `/proc`, but no session.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        let uid = std::fs::metadata("/proc/self")
            .expect("stat /proc/self")
            .uid();
        let user = current_user_name(uid);
        let tree = Self { dir, user, uid };
        // The session's user first: when the tests run as root, that is root
        // itself, with the test's home.
        let mut passwd = format!(
            "{}:x:{}:{}:Alice:{HOME}:/bin/bash\n",
            tree.user, tree.uid, tree.uid
        );
        if tree.uid != 0 {
            passwd.push_str("root:x:0:0:root:/root:/bin/bash\n");
        }
        tree.write("etc/passwd", &passwd);
        std::fs::create_dir_all(tree.path("proc")).expect("create proc");
        tree
    }

    /// A tree with one active graphical session of the current user.
    fn with_session(session_type: &str, desktop: &str) -> Self {
        let tree = Self::new();
        tree.write(
            "run/systemd/sessions/2",
            &format!(
                "# This is private data. Do not parse.\nUID={uid}\nUSER={user}\nACTIVE=1\n\
                 IS_DISPLAY=1\nSTATE=active\nREMOTE=0\nTYPE={session_type}\n\
                 ORIGINAL_TYPE={session_type}\nCLASS=user\nSCOPE=session-2.scope\n\
                 FIFO=/run/systemd/sessions/2.ref\nSEAT=seat0\nTTY=tty2\nSERVICE=gdm-password\n\
                 DESKTOP={desktop}\nVTNR=2\nLEADER=1412\n",
                uid = tree.uid,
                user = tree.user,
            ),
        );
        tree
    }

    /// A GNOME session with a profile naming only the user database (as
    /// dconf's built-in default does), so that the machine running the tests
    /// cannot lend the tree its own /etc/dconf/profile/user.
    fn gnome() -> Self {
        let tree = Self::with_session("wayland", "GNOME");
        tree.write("etc/dconf/profile/user", "user-db:user\n");
        tree
    }

    fn kde() -> Self {
        Self::with_session("x11", "KDE")
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("path has a parent")).expect("create dirs");
        std::fs::write(&path, text).expect("write file");
    }

    /// Compiles a keyfile into the user's dconf database.
    fn user_db(&self, keyfile: &str) -> &Self {
        let keyfile_dir = self.path("keyfiles/user");
        write_file(&keyfile_dir.join("user"), keyfile);
        let database = self.path(&format!("{}/.config/dconf/user", &HOME[1..]));
        dconf_compile(&database, &keyfile_dir);
        self
    }

    /// Compiles a system database (and optional locks) into
    /// `etc/dconf/db/local` and writes a profile naming it as a file-db.
    fn system_db(&self, keyfile: &str, locks: Option<&str>) -> &Self {
        let keyfile_dir = self.path("keyfiles/local.d");
        write_file(&keyfile_dir.join("00-screensaver"), keyfile);
        if let Some(locks) = locks {
            write_file(&keyfile_dir.join("locks/screensaver"), locks);
        }
        let database = self.path("etc/dconf/db/local");
        dconf_compile(&database, &keyfile_dir);
        self.write(
            "etc/dconf/profile/user",
            &format!("user-db:user\nfile-db:{}\n", database.display()),
        );
        self
    }

    /// Runs `palisade-agent check --rule screen_lock --json --host-root <tree>`.
    fn check(&self) -> CheckRun {
        self.check_with_root_argument(false)
    }

    /// The same, run from inside the tree as `--host-root .` when `relative`.
    #[allow(clippy::disallowed_methods)] // the test's own child; the test runner bounds its time
    fn check_with_root_argument(&self, relative: bool) -> CheckRun {
        let mut command = Command::new(env!("CARGO_BIN_EXE_palisade-agent"));
        command
            .args(["check", "--rule", "screen_lock", "--json", "--host-root"])
            .env_remove("PALISADE_LOG");
        if relative {
            command.arg(".").current_dir(self.dir.path());
        } else {
            command.arg(self.dir.path());
        }
        let output = command.output().expect("run palisade-agent");
        let dump = self.dump(&command, &output);
        let report = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON: {err}\n{dump}"));
        CheckRun {
            exit_code: output.status.code(),
            report,
            dump,
        }
    }

    /// The command, its output and the tree's files, for a failed assertion.
    fn dump(&self, command: &Command, output: &Output) -> String {
        let mut text = format!(
            "command: {command:?}\nexit: {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- tree\n",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        for path in walk(self.dir.path()) {
            let shown = path.strip_prefix(self.dir.path()).unwrap_or(&path);
            let _ = writeln!(text, "{}", shown.display());
            if !path.starts_with(self.path("keyfiles")) && !path.starts_with(self.path("run")) {
                if let Ok(content) = std::fs::read_to_string(&path) {
                    let _ = writeln!(text, "{}", indent(&content));
                }
            }
        }
        text
    }
}

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("path has a parent")).expect("create dirs");
    std::fs::write(path, text).expect("write file");
}

#[allow(clippy::disallowed_methods)] // the test's own child; the test runner bounds its time
fn dconf_compile(database: &Path, keyfile_dir: &Path) {
    std::fs::create_dir_all(database.parent().expect("db has a parent")).expect("create dirs");
    let output = Command::new("dconf")
        .arg("compile")
        .arg(database)
        .arg(keyfile_dir)
        .output()
        .expect("run dconf compile (install dconf-cli)");
    assert!(
        output.status.success(),
        "dconf compile {} {} failed: {}",
        database.display(),
        keyfile_dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The name of this process's user from the machine's own passwd file, so the
/// session file names a real account as logind would.
fn current_user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 7 && fields[2] == uid.to_string()).then(|| fields[0].to_owned())
        })
        .unwrap_or_else(|| format!("user{uid}"))
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

const SESSION: &str = "[org/gnome/desktop/session]\n";
const SCREENSAVER: &str = "[org/gnome/desktop/screensaver]\n";

// --- GNOME ---------------------------------------------------------------------

#[test]
fn user_idle_delay_of_1800_fails_and_names_the_user_and_seconds() {
    let tree = Tree::gnome();
    tree.user_db(&format!("{SESSION}idle-delay=uint32 1800\n"));
    let run = tree.check();
    run.assert_outcome("fail", 1);
    assert_eq!(run.session()["values"]["idle-delay"], 1800, "{}", run.dump);
    assert_eq!(run.session()["effective_seconds"], 1800, "{}", run.dump);
    assert_eq!(run.session()["status"], "locks_too_late", "{}", run.dump);
    let summary = run.result()["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!("1800 s idle for {}", tree.user)) && summary.contains("900 s"),
        "{summary}"
    );
    let fix = run.result()["fix"].as_str().unwrap_or_default();
    assert!(fix.contains("Blank Screen Delay to 15 minutes"), "{fix}");
}

#[test]
fn user_idle_delay_of_300_with_lock_enabled_passes() {
    let tree = Tree::gnome();
    tree.user_db(&format!(
        "{SESSION}idle-delay=uint32 300\n\n{SCREENSAVER}lock-enabled=true\n"
    ));
    let run = tree.check();
    run.assert_outcome("pass", 0);
    assert_eq!(run.session()["effective_seconds"], 300, "{}", run.dump);
    assert_eq!(
        run.session()["values"]["lock-enabled"],
        true,
        "{}",
        run.dump
    );
}

#[test]
fn locked_system_value_wins_over_the_users_zero() {
    let tree = Tree::gnome();
    tree.user_db(&format!("{SESSION}idle-delay=uint32 0\n"));
    tree.system_db(
        &format!("{SESSION}idle-delay=uint32 300\n"),
        Some("/org/gnome/desktop/session/idle-delay\n"),
    );
    let run = tree.check();
    run.assert_outcome("pass", 0);
    assert_eq!(run.session()["values"]["idle-delay"], 300, "{}", run.dump);
    let source = run.session()["source"].as_str().unwrap_or_default();
    assert!(source.contains("DCONF_PROFILE="), "{source}");
}

/// Regression: with `--host-root .` the profile path was passed on relative,
/// dconf took it for a profile name, fell back to its null configuration and
/// gsettings printed the schema default (300, a pass) instead of the locked
/// 1800.
#[test]
fn relative_host_root_still_applies_the_system_db() {
    let tree = Tree::gnome();
    tree.user_db(&format!("{SESSION}idle-delay=uint32 300\n"));
    tree.system_db(
        &format!("{SESSION}idle-delay=uint32 1800\n"),
        Some("/org/gnome/desktop/session/idle-delay\n"),
    );
    let run = tree.check_with_root_argument(true);
    run.assert_outcome("fail", 1);
    assert_eq!(run.session()["values"]["idle-delay"], 1800, "{}", run.dump);
}

#[test]
fn unlocked_system_value_loses_to_the_users_zero() {
    let tree = Tree::gnome();
    tree.user_db(&format!("{SESSION}idle-delay=uint32 0\n"));
    tree.system_db(&format!("{SESSION}idle-delay=uint32 300\n"), None);
    let run = tree.check();
    run.assert_outcome("fail", 1);
    assert_eq!(run.session()["values"]["idle-delay"], 0, "{}", run.dump);
    assert_eq!(run.session()["status"], "never_locks", "{}", run.dump);
}

#[test]
fn lock_enabled_false_fails() {
    let tree = Tree::gnome();
    tree.user_db(&format!(
        "{SESSION}idle-delay=uint32 300\n\n{SCREENSAVER}lock-enabled=false\n"
    ));
    let run = tree.check();
    run.assert_outcome("fail", 1);
    assert_eq!(run.session()["status"], "never_locks", "{}", run.dump);
    let detail = run.session()["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("lock-enabled is false"), "{detail}");
}

#[test]
fn lockdown_disable_lock_screen_fails_even_with_short_delays() {
    let tree = Tree::gnome();
    tree.user_db(&format!("{SESSION}idle-delay=uint32 300\n"));
    tree.system_db(
        "[org/gnome/desktop/lockdown]\ndisable-lock-screen=true\n",
        None,
    );
    let run = tree.check();
    run.assert_outcome("fail", 1);
    assert_eq!(
        run.session()["values"]["disable-lock-screen"],
        true,
        "{}",
        run.dump
    );
}

/// Idle delay plus lock delay against the baseline's 900 s: 899 and 900
/// pass, 901 fails.
#[test]
fn thresholds_around_900_seconds() {
    for (lock_delay, status, exit_code) in [(59, "pass", 0), (60, "pass", 0), (61, "fail", 1)] {
        let tree = Tree::gnome();
        tree.user_db(&format!(
            "{SESSION}idle-delay=uint32 840\n\n{SCREENSAVER}lock-delay=uint32 {lock_delay}\n"
        ));
        let run = tree.check();
        run.assert_outcome(status, exit_code);
        assert_eq!(
            run.session()["effective_seconds"],
            840 + lock_delay,
            "{}",
            run.dump
        );
    }
}

/// gsettings prints a plausible value and exits 0 even when dconf complains
/// it cannot work properly; the agent must not trust that answer.
#[test]
fn gsettings_warning_on_stderr_is_unknown() {
    let tree = Tree::gnome();
    tree.user_db(&format!("{SESSION}idle-delay=uint32 300\n"));
    // A file where dconf wants its runtime directory.
    tree.write(&format!("run/user/{}", tree.uid), "not a directory\n");
    let run = tree.check();
    run.assert_outcome("unknown", 3);
    let detail = run.session()["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("dconf will not work properly"), "{detail}");
}

/// dconf reads `system-db:NAME` from the real /etc/dconf/db, not from the
/// host root: such a profile must not be half-applied.
#[test]
fn host_root_profile_naming_a_system_db_is_unknown() {
    let tree = Tree::gnome();
    tree.user_db(&format!("{SESSION}idle-delay=uint32 300\n"));
    tree.write("etc/dconf/profile/user", "user-db:user\nsystem-db:local\n");
    let run = tree.check();
    run.assert_outcome("unknown", 3);
    let detail = run.session()["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("system-db:local"), "{detail}");
}

#[test]
fn unsupported_desktop_is_unknown_and_named() {
    let tree = Tree::with_session("x11", "XFCE");
    let run = tree.check();
    run.assert_outcome("unknown", 3);
    let summary = run.result()["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("XFCE"), "{summary}");
}

// --- No session --------------------------------------------------------------

#[test]
fn no_sessions_and_no_display_server_is_not_applicable() {
    let tree = Tree::new();
    let run = tree.check();
    run.assert_outcome("not_applicable", 0);
    assert_eq!(
        run.result()["summary"],
        "no graphical session",
        "{}",
        run.dump
    );
}

#[test]
fn display_server_without_logind_session_is_unknown() {
    let tree = Tree::new();
    tree.write("proc/4242/comm", "Xorg\n");
    tree.write(
        "proc/4242/cgroup",
        "0::/system.slice/display-manager.service\n",
    );
    let run = tree.check();
    run.assert_outcome("unknown", 3);
    let summary = run.result()["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("(Xorg, pid 4242)"), "{summary}");
}

/// At the login screen only the greeter's display server runs: nobody is
/// logged in, so the rule does not apply.
#[test]
fn greeter_display_server_alone_is_not_applicable() {
    let tree = Tree::new();
    tree.write(
        "run/systemd/sessions/c1",
        "UID=117\nUSER=Debian-gdm\nACTIVE=0\nIS_DISPLAY=1\nSTATE=online\nREMOTE=0\n\
         TYPE=wayland\nCLASS=greeter\nSCOPE=session-c1.scope\nSEAT=seat0\n",
    );
    tree.write("proc/1046/comm", "gnome-shell\n");
    tree.write(
        "proc/1046/cgroup",
        "0::/user.slice/user-117.slice/session-c1.scope\n",
    );
    let run = tree.check();
    run.assert_outcome("not_applicable", 0);
    assert_eq!(
        run.result()["evidence"]["display_servers"][0]["session_class"],
        "greeter",
        "{}",
        run.dump
    );
}

// --- KDE -------------------------------------------------------------------------

const USER_KSCREENLOCKERRC: &str = "home/alice/.config/kscreenlockerrc";
const SYSTEM_KSCREENLOCKERRC: &str = "etc/xdg/kscreenlockerrc";

#[test]
fn kde_defaults_pass() {
    let tree = Tree::kde();
    let run = tree.check();
    run.assert_outcome("pass", 0);
    // 5 minutes plus 5 seconds of grace.
    assert_eq!(run.session()["effective_seconds"], 305, "{}", run.dump);
}

#[test]
fn kde_user_timeout_of_30_minutes_fails() {
    let tree = Tree::kde();
    tree.write(USER_KSCREENLOCKERRC, "[Daemon]\nTimeout=30\n");
    let run = tree.check();
    run.assert_outcome("fail", 1);
    assert_eq!(run.session()["effective_seconds"], 1805, "{}", run.dump);
    assert_eq!(
        run.session()["source"]["Timeout"],
        "/home/alice/.config/kscreenlockerrc",
        "{}",
        run.dump
    );
}

#[test]
fn kde_immutable_system_group_wins_over_the_user() {
    let tree = Tree::kde();
    tree.write(
        SYSTEM_KSCREENLOCKERRC,
        "[Daemon][$i]\nAutolock=true\nTimeout=5\n",
    );
    tree.write(
        USER_KSCREENLOCKERRC,
        "[Daemon]\nTimeout=30\nAutolock=false\n",
    );
    let run = tree.check();
    run.assert_outcome("pass", 0);
    assert_eq!(run.session()["effective_seconds"], 305, "{}", run.dump);
}

#[test]
fn kde_user_overrides_a_mutable_system_file() {
    let tree = Tree::kde();
    tree.write(
        SYSTEM_KSCREENLOCKERRC,
        "[Daemon]\nAutolock=true\nTimeout=5\n",
    );
    tree.write(USER_KSCREENLOCKERRC, "[Daemon]\nAutolock=false\n");
    let run = tree.check();
    run.assert_outcome("fail", 1);
    assert_eq!(run.session()["status"], "never_locks", "{}", run.dump);
}
