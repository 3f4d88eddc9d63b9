//! The agent's Debian and RPM packages (`packaging/build deb rpm`), installed
//! for real: dpkg and rpm unpack them into a throwaway root and run their
//! maintainer scripts chrooted there, under busybox's sh with only the
//! applets the scripts may call. The silent settings come from the
//! environment and from the preseed file, as on a laptop; the assertions
//! are on the files left behind, their modes, the config as the packaged
//! agent reads it, and where the enrollment secret is (only in the state
//! directory's `enroll-secret`). No systemd runs in the root, so the
//! scripts' service steps are skipped there; the unit itself is verified.
//!
//! The packages are found through `PALISADE_TEST_DEB` and
//! `PALISADE_TEST_RPM`, which `tests/run` sets after building them.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use palisade_tests::{Finished, repo_root, run};

const URL: &str = "https://posture.example.org";
const SECRET: &str = "pls_4f2a9c_Zk3pQ9sT7uVwX1yB";
const PIN: &str = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
const BUILD: &str = "PALISADE_BINARIES_DIR=target/debug packaging/build deb rpm";
/// Everything the maintainer scripts run (packaging/linux/maintainer*.sh):
/// the root has these as busybox applets and nothing else, so a script that
/// starts needing another command fails here.
const APPLETS: &[&str] = &["sh", "cp", "mv", "rm", "mkdir", "chmod", "rmdir"];
const CONFIG: &str = "/etc/palisade/agent.toml";
const PRESEED: &str = "/etc/palisade/install.conf";
const STATE: &str = "/var/lib/palisade";
const SECRET_FILE: &str = "/var/lib/palisade/enroll-secret";
const BINARY: &str = "/usr/bin/palisade-agent";
const DESKTOP: &str = "/etc/xdg/autostart/palisade-nudge.desktop";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Deb,
    Rpm,
}

impl Format {
    fn package(self) -> PathBuf {
        let var = match self {
            Format::Deb => "PALISADE_TEST_DEB",
            Format::Rpm => "PALISADE_TEST_RPM",
        };
        let path = std::env::var_os(var).unwrap_or_else(|| {
            panic!(
                "{var} is not set: build the packages with `{BUILD}` and set PALISADE_TEST_DEB \
                 and PALISADE_TEST_RPM to their absolute paths (tests/run does both)"
            )
        });
        let path = PathBuf::from(path);
        assert!(
            path.is_absolute() && path.is_file(),
            "{var}={} is not an absolute path to a file: run `{BUILD}`",
            path.display()
        );
        path
    }

    /// Debian 12 ships units under /lib, Fedora and RHEL under /usr/lib.
    fn unit(self) -> &'static str {
        match self {
            Format::Deb => "/lib/systemd/system/palisade-agent.service",
            Format::Rpm => "/usr/lib/systemd/system/palisade-agent.service",
        }
    }
}

/// A minimal system for one package manager: busybox, /dev/null and an
/// empty package database.
struct Root {
    dir: tempfile::TempDir,
    format: Format,
}

impl Root {
    fn new(format: Format) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = Root { dir, format };
        std::fs::create_dir_all(root.path("/bin")).unwrap();
        std::fs::copy("/bin/busybox", root.path("/bin/busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", root.path(&format!("/bin/{applet}"))).unwrap();
        }
        std::fs::create_dir_all(root.path("/dev")).unwrap();
        let null = root.path("/dev/null");
        let made = run(
            Path::new("/usr/bin/mknod"),
            &["-m", "666", null.to_str().unwrap(), "c", "1", "3"],
            &[],
        );
        assert_eq!(made.exit_code, Some(0), "{}", made.dump());
        match format {
            Format::Deb => {
                for dir in ["info", "updates"] {
                    std::fs::create_dir_all(root.path(&format!("/var/lib/dpkg/{dir}"))).unwrap();
                }
                for file in ["status", "available"] {
                    std::fs::write(root.path(&format!("/var/lib/dpkg/{file}")), "").unwrap();
                }
            }
            Format::Rpm => {
                let init = root.package_manager(&["--initdb"], &[]);
                assert_eq!(init.exit_code, Some(0), "{}", init.dump());
            }
        }
        root
    }

    /// A path inside the root.
    fn path(&self, path: &str) -> PathBuf {
        self.dir.path().join(path.trim_start_matches('/'))
    }

    /// dpkg or rpm on this root. Dependencies are not installed here (the
    /// agent runs on the host's libc), so they are not checked.
    fn package_manager(&self, args: &[&str], env: &[(&str, &str)]) -> Finished {
        let root = self.dir.path().to_str().unwrap();
        let mut all = match self.format {
            Format::Deb => vec![format!("--root={root}"), "--force-depends".to_owned()],
            Format::Rpm => vec![format!("--root={root}"), "--dbpath=/var/lib/rpm".to_owned()],
        };
        all.extend(args.iter().map(|arg| (*arg).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let program = match self.format {
            Format::Deb => "/usr/bin/dpkg",
            Format::Rpm => "/usr/bin/rpm",
        };
        let finished = run(Path::new(program), &all, env);
        assert!(
            !finished.stdout.contains(SECRET) && !finished.stderr.contains(SECRET),
            "the secret was printed\n{}",
            finished.dump()
        );
        finished
    }

    fn install(&self, env: &[(&str, &str)]) -> Finished {
        let package = self.format.package();
        let package = package.to_str().unwrap();
        match self.format {
            Format::Deb => self.package_manager(&["--install", package], env),
            // A second install of the same package is rpm's upgrade path.
            Format::Rpm if self.path(BINARY).exists() => {
                self.package_manager(&["--reinstall", "--nodeps", package], env)
            }
            Format::Rpm => self.package_manager(&["--install", "--nodeps", package], env),
        }
    }

    fn remove(&self) -> Finished {
        match self.format {
            Format::Deb => self.package_manager(&["--remove", "palisade-agent"], &[]),
            Format::Rpm => self.package_manager(&["--erase", "--nodeps", "palisade-agent"], &[]),
        }
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.path(path))
            .unwrap_or_else(|err| panic!("cannot read {path} in the root: {err}"))
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.path(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A path's mode bits in octal and its owner, as `0644 0:0`; panics
    /// when the path is absent.
    fn mode_and_owner(&self, path: &str) -> String {
        let meta = std::fs::symlink_metadata(self.path(path))
            .unwrap_or_else(|err| panic!("{path} is not in the root: {err}"));
        format!("{:04o} {}:{}", meta.mode() & 0o7777, meta.uid(), meta.gid())
    }

    /// The files in the root whose bytes hold `needle`, as root paths.
    fn files_containing(&self, needle: &str) -> Vec<String> {
        palisade_tests::files_containing(self.dir.path(), needle)
            .iter()
            .map(|path| format!("/{}", path.strip_prefix(self.dir.path()).unwrap().display()))
            .collect()
    }
}

fn assert_succeeded(finished: &Finished) {
    assert_eq!(finished.exit_code, Some(0), "{}", finished.dump());
}

/// Every shipped file, with its mode and owner, and the same bytes as the
/// repository's; the unit as systemd reads it.
fn assert_files_installed(root: &Root) {
    let unit = root.format.unit();
    let shipped = [
        (BINARY, "0755 0:0", None),
        (
            unit,
            "0644 0:0",
            Some("packaging/linux/palisade-agent.service"),
        ),
        (
            DESKTOP,
            "0644 0:0",
            Some("packaging/linux/palisade-nudge.desktop"),
        ),
        (
            "/usr/share/doc/palisade-agent/copyright",
            "0644 0:0",
            Some("packaging/linux/copyright"),
        ),
        (
            "/usr/share/doc/palisade-agent/examples/agent.toml",
            "0644 0:0",
            Some("config/agent.toml"),
        ),
    ];
    for (path, mode, source) in shipped {
        assert_eq!(root.mode_and_owner(path), mode, "{path}");
        if let Some(source) = source {
            let want = std::fs::read_to_string(repo_root().join(source)).unwrap();
            assert_eq!(root.read(path), want, "{path} differs from {source}");
        }
    }
    if root.format == Format::Deb {
        let changelog = "/usr/share/doc/palisade-agent/changelog.gz";
        assert_eq!(root.mode_and_owner(changelog), "0644 0:0");
    }

    // systemd-analyze needs the program named by ExecStart on this system:
    // a copy of the installed unit runs the installed binary.
    let dir = tempfile::tempdir().unwrap();
    let installed_binary = root.path(BINARY);
    let copy = dir.path().join("palisade-agent.service");
    let text = root.read(unit);
    assert!(text.contains(&format!("ExecStart={BINARY} ")), "{text}");
    std::fs::write(
        &copy,
        text.replace(BINARY, installed_binary.to_str().unwrap()),
    )
    .unwrap();
    let verified = run(
        Path::new("/usr/bin/systemd-analyze"),
        &["verify", copy.to_str().unwrap()],
        &[],
    );
    assert_succeeded(&verified);
    assert_eq!(verified.stderr.trim(), "", "{}", verified.dump());
}

/// The installed agent loads the config (`spool list` reads and validates
/// all of it before looking at the empty state directory), and the same
/// command refuses a config with a bad pin, so acceptance means something.
fn assert_agent_accepts_config(root: &Root) {
    let agent = root.path(BINARY);
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("state");
    let load = |config: &Path| {
        run(
            &agent,
            &[
                "spool",
                "list",
                "--config",
                config.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ],
            &[],
        )
    };
    let accepted = load(&root.path(CONFIG));
    assert_succeeded(&accepted);
    assert!(
        accepted.stdout.contains("the spool is empty"),
        "{}",
        accepted.dump()
    );
    let bad = scratch.path().join("bad.toml");
    std::fs::write(&bad, root.read(CONFIG).replace(PIN, "sha256/not-a-pin")).unwrap();
    let refused = load(&bad);
    assert_ne!(refused.exit_code, Some(0), "{}", refused.dump());
    assert!(refused.stderr.contains("ca_pin"), "{}", refused.dump());
}

/// The config's top-level `key = "value"` lines for `key`.
fn config_lines(root: &Root, key: &str) -> Vec<String> {
    let prefix = format!("{key} = ");
    root.read(CONFIG)
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

fn assert_secret_only_in_state(root: &Root) {
    assert_eq!(root.mode_and_owner(STATE), "0700 0:0");
    assert_eq!(root.mode_and_owner(SECRET_FILE), "0600 0:0");
    assert_eq!(root.read(SECRET_FILE), format!("{SECRET}\n"));
    assert_eq!(root.files_containing(SECRET), vec![SECRET_FILE.to_owned()]);
}

/// Install from the environment, upgrade (the same package again, nothing
/// given) keeping identity and config, then remove: the files go, the
/// state and the config stay.
fn silent_install_upgrade_remove(format: Format) -> Root {
    let root = Root::new(format);
    let env = [
        ("PALISADE_COLLECTOR_URL", URL),
        ("PALISADE_ENROLL_SECRET", SECRET),
        ("PALISADE_CA_PIN", PIN),
    ];
    assert_succeeded(&root.install(&env));
    assert_files_installed(&root);
    assert_eq!(
        config_lines(&root, "collector_url"),
        [format!("collector_url = \"{URL}\"")]
    );
    assert_eq!(
        config_lines(&root, "ca_pin"),
        [format!("ca_pin = \"{PIN}\"")]
    );
    assert_eq!(root.mode_and_owner(CONFIG), "0644 0:0");
    assert_agent_accepts_config(&root);
    assert_secret_only_in_state(&root);

    // The agent enrolled: the secret is gone, the device key is there.
    std::fs::remove_file(root.path(SECRET_FILE)).unwrap();
    root.write("/var/lib/palisade/device.key", "the device's identity");
    let config_before = root.read(CONFIG);
    assert_succeeded(&root.install(&[]));
    assert_files_installed(&root);
    assert_eq!(root.read(CONFIG), config_before);
    assert_eq!(
        root.read("/var/lib/palisade/device.key"),
        "the device's identity"
    );
    assert!(!root.path(SECRET_FILE).exists());

    assert_succeeded(&root.remove());
    for gone in [BINARY, format.unit()] {
        assert!(!root.path(gone).exists(), "{gone} is still there");
    }
    // dpkg keeps conffiles until purge (the entry's TryExec then skips it);
    // rpm removes an unmodified %config file.
    assert_eq!(root.path(DESKTOP).exists(), format == Format::Deb);
    assert_eq!(root.read(CONFIG), config_before);
    assert_eq!(
        root.read("/var/lib/palisade/device.key"),
        "the device's identity"
    );
    root
}

#[test]
fn the_deb_installs_silently_upgrades_removes_and_purges() {
    let root = silent_install_upgrade_remove(Format::Deb);
    assert_succeeded(&root.package_manager(&["--purge", "palisade-agent"], &[]));
    for gone in [CONFIG, "/etc/palisade", STATE, DESKTOP] {
        assert!(
            !root.path(gone).exists(),
            "{gone} is still there after purge"
        );
    }
}

#[test]
fn the_rpm_installs_silently_upgrades_and_erases() {
    silent_install_upgrade_remove(Format::Rpm);
}

/// The preseed file, with comments, blanks and quotes; the environment's URL
/// wins over the file's; an existing config keeps its other lines and gets
/// its collector_url replaced; the file held the secret, so it is deleted.
fn preseed_install(format: Format) {
    let root = Root::new(format);
    root.write(
        PRESEED,
        &format!(
            "# Palisade silent install\n\n  COLLECTOR_URL = https://from-the-file.example\n\
             ENROLL_SECRET=\"{SECRET}\"\n\tCA_PIN={PIN}\n"
        ),
    );
    root.write(
        CONFIG,
        "# kept\ninterval_seconds = 600\ncollector_url = \"https://old.example\"\n",
    );
    assert_succeeded(&root.install(&[("PALISADE_COLLECTOR_URL", URL)]));
    assert!(
        !root.path(PRESEED).exists(),
        "{PRESEED} still holds the secret"
    );
    assert_eq!(
        root.read(CONFIG),
        format!("# kept\ninterval_seconds = 600\ncollector_url = \"{URL}\"\nca_pin = \"{PIN}\"\n")
    );
    assert_agent_accepts_config(&root);
    assert_secret_only_in_state(&root);
}

#[test]
fn the_deb_reads_the_preseed_file_and_deletes_it() {
    preseed_install(Format::Deb);
}

#[test]
fn the_rpm_reads_the_preseed_file_and_deletes_it() {
    preseed_install(Format::Rpm);
}

/// A preseed line with an unknown key stops the install before anything is
/// unpacked (deb preinst, rpm %pre), naming the file and the line, and the
/// secret is written nowhere.
fn bad_preseed(format: Format) {
    let root = Root::new(format);
    let preseed = format!("# line 1\nENROLL_SECRET={SECRET}\nCOLLECTOR_ULR={URL}\n");
    root.write(PRESEED, &preseed);
    let failed = root.install(&[]);
    assert_ne!(failed.exit_code, Some(0), "{}", failed.dump());
    assert!(
        failed
            .stderr
            .contains(&format!("{PRESEED}:3: unknown key 'COLLECTOR_ULR'")),
        "{}",
        failed.dump()
    );
    for absent in [BINARY, STATE, CONFIG] {
        assert!(!root.path(absent).exists(), "{absent} was installed");
    }
    assert_eq!(
        root.read(PRESEED),
        preseed,
        "the administrator's file was changed"
    );
    assert_eq!(root.files_containing(SECRET), vec![PRESEED.to_owned()]);
}

#[test]
fn a_bad_preseed_line_is_named_and_the_deb_installs_nothing() {
    bad_preseed(Format::Deb);
}

#[test]
fn a_bad_preseed_line_is_named_and_the_rpm_installs_nothing() {
    bad_preseed(Format::Rpm);
}

#[test]
fn a_value_that_would_break_the_config_is_refused() {
    let root = Root::new(Format::Deb);
    let failed = root.install(&[("PALISADE_COLLECTOR_URL", "https://x.example/\"a")]);
    assert_ne!(failed.exit_code, Some(0), "{}", failed.dump());
    assert!(
        failed
            .stderr
            .contains("COLLECTOR_URL must not contain a quote"),
        "{}",
        failed.dump()
    );
    assert!(!root.path(CONFIG).exists());

    // A pin beside the administrator's ca_file would make the agent refuse
    // its config: refused before anything is unpacked.
    let config = "ca_file = \"/etc/palisade/ca.pem\"\n";
    root.write(CONFIG, config);
    let failed = root.install(&[("PALISADE_CA_PIN", PIN)]);
    assert_ne!(failed.exit_code, Some(0), "{}", failed.dump());
    assert!(failed.stderr.contains("sets ca_file"), "{}", failed.dump());
    assert_eq!(root.read(CONFIG), config);
    assert!(!root.path(BINARY).exists());
}

/// lintian finds no error in the deb (its deliberate override is in
/// packaging/linux/lintian-overrides), and every maintainer script of
/// both packages is POSIX sh by dash, busybox and shellcheck.
#[test]
fn lintian_passes_and_the_maintainer_scripts_are_posix_sh() {
    let deb = Format::Deb.package();
    let deb = deb.to_str().unwrap();
    let lintian = run(
        Path::new("/usr/bin/lintian"),
        &["--fail-on", "error", deb],
        &[],
    );
    assert_succeeded(&lintian);
    assert!(
        !lintian.stdout.lines().any(|line| line.starts_with("E:")),
        "{}",
        lintian.dump()
    );

    let scratch = tempfile::tempdir().unwrap();
    let control = scratch.path().join("control");
    assert_succeeded(&run(
        Path::new("/usr/bin/dpkg-deb"),
        &["--control", deb, control.to_str().unwrap()],
        &[],
    ));
    let mut scripts: Vec<PathBuf> = ["preinst", "postinst", "prerm", "postrm"]
        .iter()
        .map(|name| control.join(name))
        .collect();
    let rpm = Format::Rpm.package();
    for tag in ["PREIN", "POSTIN", "PREUN", "POSTUN"] {
        let query = format!("%{{{tag}}}");
        let scriptlet = run(
            Path::new("/usr/bin/rpm"),
            &[
                "--query",
                "--package",
                "--queryformat",
                &query,
                rpm.to_str().unwrap(),
            ],
            &[],
        );
        assert_succeeded(&scriptlet);
        assert!(
            scriptlet.stdout.starts_with("#!/bin/sh\n"),
            "{}",
            scriptlet.dump()
        );
        let file = scratch.path().join(tag);
        std::fs::write(&file, &scriptlet.stdout).unwrap();
        scripts.push(file);
    }
    for script in &scripts {
        let script = script.to_str().unwrap();
        for (program, args) in [
            ("/bin/busybox", vec!["sh", "-n", script]),
            ("/bin/dash", vec!["-n", script]),
            ("/usr/bin/shellcheck", vec!["--shell=sh", script]),
        ] {
            let checked = run(Path::new(program), &args, &[]);
            assert_succeeded(&checked);
            assert_eq!(checked.stdout.trim(), "", "{}", checked.dump());
            assert_eq!(checked.stderr.trim(), "", "{}", checked.dump());
        }
    }
}

/// The two packages ship the same files with the same modes and owners
/// (one staged tree): all but the unit's directory and what only Debian
/// has (its changelog, lintian's overrides).
#[test]
fn the_deb_and_the_rpm_ship_the_same_files() {
    let deb = Format::Deb.package();
    let listed = run(
        Path::new("/usr/bin/dpkg-deb"),
        &["--contents", deb.to_str().unwrap()],
        &[],
    );
    assert_succeeded(&listed);
    let debian_only = ["/usr/share/doc/palisade-agent/changelog.gz"];
    let mut deb_files: Vec<String> = listed
        .stdout
        .lines()
        .filter(|line| line.starts_with('-'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5].trim_start_matches('.');
            let path = path.replace(Format::Deb.unit(), Format::Rpm.unit());
            format!("{} {} {path}", fields[0], fields[1].replace('/', ":"))
        })
        .filter(|line| !debian_only.iter().any(|only| line.ends_with(only)))
        .filter(|line| !line.contains("/usr/share/lintian/"))
        .collect();
    let rpm = Format::Rpm.package();
    let query = "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]";
    let listed = run(
        Path::new("/usr/bin/rpm"),
        &["-qp", "--queryformat", query, rpm.to_str().unwrap()],
        &[],
    );
    assert_succeeded(&listed);
    let mut rpm_files: Vec<String> = listed
        .stdout
        .lines()
        .filter(|line| line.starts_with('-'))
        .map(str::to_owned)
        .collect();
    deb_files.sort();
    rpm_files.sort();
    assert_eq!(deb_files.len(), 5, "{deb_files:#?}");
    assert_eq!(deb_files, rpm_files);
}
