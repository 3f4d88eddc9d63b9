//! The macOS package's payload and install scripts (`packaging/macos/`),
//! checked on Linux, where there is no pkgbuild, no launchd and no Mac.
//!
//! The payload is staged by `packaging/macos/stage-payload.sh`, the same
//! script `build-pkg.sh` runs on a Mac before pkgbuild and
//! `packaging/build macos-layout` runs here; the test calls it directly into
//! a temporary directory (with the stub binary), so no cargo runs inside it.
//! The plists are read by a real plist parser, Python's `plistlib` (what
//! `plutil -lint` would refuse, it refuses). The scripts are run as macOS
//! Installer runs them, as root with `$3` the target volume, in a temporary
//! root (`PALISADE_INSTALL_ROOT`), under dash, busybox sh and bash in POSIX
//! mode (macOS's /bin/sh is bash or dash), with a fake `launchctl` and a fake
//! `scutil` first on PATH: there is no launchd here, so what is checked is
//! what the scripts ask launchd to do, not that launchd does it.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use palisade_tests::{Finished, binary, files_containing, repo_root, run};

const BINARY: &str = "/usr/local/bin/palisade-agent";
const DAEMON_PLIST: &str = "Library/LaunchDaemons/org.palisade.agent.plist";
const NUDGE_PLIST: &str = "Library/LaunchAgents/org.palisade.nudge.plist";
const SUPPORT_DIR: &str = "Library/Application Support/Palisade";

const SECRET: &str = "enroll-7c1f0e9a4b2d8e63-only-in-the-secret-file";
const URL: &str = "https://palisade.example.org:8443";
const PIN: &str = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

/// The shells a pkg's scripts may meet: macOS's /bin/sh is bash in POSIX
/// mode or dash; busybox is the strictest small one here.
const SHELLS: &[(&str, &[&str])] = &[
    ("/bin/dash", &[]),
    ("/bin/busybox", &["sh"]),
    ("/bin/bash", &["--posix"]),
];

/// A staged payload, a temporary target volume and the fake tools.
struct Install {
    dir: tempfile::TempDir,
}

impl Install {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let stage = dir.path().join("stage");
        let staged = run(
            Path::new("/bin/sh"),
            &[
                repo_root()
                    .join("packaging/macos/stage-payload.sh")
                    .to_str()
                    .unwrap(),
                stage.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(staged.exit_code, Some(0), "{}", staged.dump());
        std::fs::create_dir_all(dir.path().join("volume").join(SUPPORT_DIR)).unwrap();
        let bin = dir.path().join("fake-bin");
        std::fs::create_dir(&bin).unwrap();
        // launchctl records each call, one line of arguments, and like the
        // real one refuses to bootstrap a plist that is not there.
        let log = dir.path().join("launchctl.log");
        write_script(
            &bin.join("launchctl"),
            &format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >>'{}'\n\
                 if [ \"$1\" = bootstrap ] && [ ! -f \"$3\" ]; then exit 5; fi\n",
                log.display()
            ),
        );
        // scutil's answer when alice (uid 501) is logged in at the console.
        write_script(
            &bin.join("scutil"),
            "#!/bin/sh\ncat <<'EOF'\n<dictionary> {\n  GID : 20\n  Name : alice\n  \
             SessionInfo : <array> {\n    0 : <dictionary> {\n      \
             kCGSSessionUserIDKey : 501\n    }\n  }\n  UID : 501\n}\nEOF\n",
        );
        Self { dir }
    }

    fn stage(&self) -> PathBuf {
        self.dir.path().join("stage")
    }

    /// The target volume: the payload copied in, as Installer does before
    /// postinstall.
    fn volume(&self) -> PathBuf {
        self.dir.path().join("volume")
    }

    fn copy_payload(&self) {
        let copied = run(
            Path::new("/bin/cp"),
            &[
                "-R",
                &format!("{}/.", self.stage().join("root").display()),
                self.volume().to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(copied.exit_code, Some(0), "{}", copied.dump());
    }

    fn support(&self, name: &str) -> PathBuf {
        self.volume().join(SUPPORT_DIR).join(name)
    }

    fn write_preseed(&self, text: &str) {
        std::fs::write(self.support("install.conf"), text).unwrap();
    }

    fn launchctl_calls(&self) -> Vec<String> {
        match std::fs::read_to_string(self.dir.path().join("launchctl.log")) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Runs a script as Installer would on the running system (`$3` = "/"),
    /// its paths moved under the temporary volume.
    fn script(&self, name: &str, shell: (&str, &[&str]), env: &[(&str, &str)]) -> Finished {
        let volume = self.volume();
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.fake_bin());
        let mut all_env = vec![
            ("PATH", path.as_str()),
            ("PALISADE_INSTALL_ROOT", volume.to_str().unwrap()),
        ];
        all_env.extend_from_slice(env);
        self.script_with(name, shell, "/", &all_env)
    }

    fn script_with(
        &self,
        name: &str,
        (shell, shell_args): (&str, &[&str]),
        target_volume: &str,
        env: &[(&str, &str)],
    ) -> Finished {
        let script = self.stage().join("scripts").join(name);
        let mut args: Vec<&str> = shell_args.to_vec();
        args.extend([
            script.to_str().unwrap(),
            "/tmp/palisade-agent.pkg",
            "/",
            target_volume,
            "/",
        ]);
        run(Path::new(shell), &args, env)
    }

    fn fake_bin(&self) -> String {
        self.dir.path().join("fake-bin").display().to_string()
    }
}

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A plist parsed by Python's plistlib, as JSON.
fn parse_plist(path: &Path) -> serde_json::Value {
    let parsed = run(
        Path::new("/usr/bin/python3"),
        &[
            "-c",
            "import json, plistlib, sys\n\
             with open(sys.argv[1], 'rb') as f:\n    print(json.dumps(plistlib.load(f)))",
            path.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(parsed.exit_code, Some(0), "{}", parsed.dump());
    parsed.json()
}

/// The macOS value of one of the agent's `default_*` path functions, read
/// from agent/src/config/mod.rs (this crate does not link the agent, and
/// the value is behind `cfg!(target_os = "macos")`).
fn agent_macos_default(function: &str) -> String {
    let source = std::fs::read_to_string(repo_root().join("agent/src/config/mod.rs")).unwrap();
    let body = &source[source
        .find(&format!("pub fn {function}()"))
        .unwrap_or_else(|| panic!("no {function} in the agent's config"))..];
    let macos = &body[body.find("target_os = \"macos\"").unwrap()..];
    let quoted = &macos[macos.find("PathBuf::from(\"").unwrap() + "PathBuf::from(\"".len()..];
    quoted[..quoted.find('"').unwrap()].to_owned()
}

/// The agent reads the config file as postinstall left it: `spool list`
/// parses and validates the whole file and touches nothing.
fn assert_the_agent_accepts(config: &Path) {
    let state = tempfile::tempdir().unwrap();
    let listed = run(
        &binary("palisade-agent"),
        &[
            "spool",
            "list",
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state.path().join("state").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(listed.exit_code, Some(0), "{}", listed.dump());
}

#[test]
fn the_plists_parse_and_start_the_staged_binary() {
    let install = Install::new();
    let payload = install.stage().join("root");
    let config_path = agent_macos_default("default_config_path");
    assert_eq!(
        config_path,
        "/Library/Application Support/Palisade/agent.toml"
    );
    for (plist, args) in [
        (DAEMON_PLIST, vec!["run", "--config", config_path.as_str()]),
        (NUDGE_PLIST, vec!["nudge"]),
    ] {
        let file = payload.join(plist);
        let parsed = parse_plist(&file);
        let stem = file.file_stem().unwrap().to_str().unwrap();
        assert_eq!(parsed["Label"], stem, "{plist}: {parsed:#}");
        let program: Vec<&str> = parsed["ProgramArguments"]
            .as_array()
            .unwrap_or_else(|| panic!("{plist} has no ProgramArguments"))
            .iter()
            .map(|arg| arg.as_str().unwrap())
            .collect();
        assert_eq!(program[0], BINARY, "{plist}");
        assert!(
            payload.join(BINARY.trim_start_matches('/')).is_file(),
            "{BINARY} is not in the payload"
        );
        assert_eq!(program[1..], args, "{plist}");
        assert_eq!(parsed["RunAtLoad"], true, "{plist}");
        assert_eq!(parsed["KeepAlive"], true, "{plist}");
        // The arguments after the program are the agent's own (the Linux
        // build accepts the same command line).
        let mut help_args = args.clone();
        help_args.push("--help");
        let help = run(&binary("palisade-agent"), &help_args, &[]);
        assert_eq!(help.exit_code, Some(0), "{}", help.dump());
    }

    let daemon = parse_plist(&payload.join(DAEMON_PLIST));
    assert!(daemon.get("UserName").is_none(), "the daemon runs as root");
    let log = daemon["StandardErrorPath"].as_str().unwrap();
    assert!(log.starts_with("/Library/Logs/Palisade/"), "{log}");
    let nudge = parse_plist(&payload.join(NUDGE_PLIST));
    assert_eq!(nudge["LimitLoadToSessionType"], "Aqua");
}

#[test]
fn the_scripts_are_posix_sh_and_build_pkg_refuses_linux() {
    let install = Install::new();
    let scripts = install.stage().join("scripts");
    for name in ["preinstall", "postinstall", "preseed.sh"] {
        let script = scripts.join(name);
        for (shell, shell_args) in SHELLS {
            let mut args = shell_args.to_vec();
            args.extend(["-n", script.to_str().unwrap()]);
            let checked = run(Path::new(shell), &args, &[]);
            assert_eq!(checked.exit_code, Some(0), "{}", checked.dump());
        }
    }
    for name in ["preinstall", "postinstall"] {
        let script = scripts.join(name);
        let text = std::fs::read_to_string(&script).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{name}");
        let mode = std::fs::metadata(&script).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{name}");
    }

    let build = run(&repo_root().join("packaging/macos/build-pkg.sh"), &[], &[]);
    assert_eq!(build.exit_code, Some(1), "{}", build.dump());
    assert!(build.stderr.contains("macOS only"), "{}", build.dump());
}

#[test]
fn postinstall_applies_install_conf_and_bootstraps_the_daemon() {
    let state_dir = agent_macos_default("default_state_dir");
    for shell in SHELLS {
        let install = Install::new();
        install.copy_payload();
        install.write_preseed(&format!(
            "# dropped by a Jamf policy\r\nCOLLECTOR_URL={URL}\r\n\r\n  ENROLL_SECRET = \"{SECRET}\"\r\nCA_PIN={PIN}"
        ));
        let finished = install.script("postinstall", *shell, &[]);
        assert_eq!(finished.exit_code, Some(0), "{}", finished.dump());
        assert!(!finished.stdout.contains(SECRET) && !finished.stderr.contains(SECRET));

        let config = std::fs::read_to_string(install.support("agent.toml")).unwrap();
        let lines: Vec<&str> = config.lines().collect();
        assert!(
            lines.contains(&format!("collector_url = \"{URL}\"").as_str()),
            "{config}"
        );
        assert!(
            lines.contains(&format!("ca_pin = \"{PIN}\"").as_str()),
            "{config}"
        );
        // The agent must know every key written (ca_pin since its CA-pin
        // change).
        assert_the_agent_accepts(&install.support("agent.toml"));

        let state = install.volume().join(state_dir.trim_start_matches('/'));
        let secret_file = state.join("enroll-secret");
        assert_eq!(
            std::fs::read_to_string(&secret_file).unwrap(),
            format!("{SECRET}\n")
        );
        let metadata = std::fs::metadata(&secret_file).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        assert_eq!((metadata.uid(), metadata.gid()), (0, 0));
        let state_mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(state_mode & 0o777, 0o700);
        assert!(!install.support("install.conf").exists());
        assert_eq!(
            files_containing(&install.volume(), SECRET),
            vec![secret_file],
            "{shell:?}"
        );
        assert!(install.volume().join("Library/Logs/Palisade").is_dir());

        let volume = install.volume();
        assert_eq!(
            install.launchctl_calls(),
            vec![
                "enable system/org.palisade.agent".to_owned(),
                format!("bootstrap system {}/{DAEMON_PLIST}", volume.display()),
                format!("bootstrap gui/501 {}/{NUDGE_PLIST}", volume.display()),
            ],
            "{shell:?}"
        );

        // An upgrade: preinstall stops both before the payload is replaced.
        let upgrade = install.script("preinstall", *shell, &[]);
        assert_eq!(upgrade.exit_code, Some(0), "{}", upgrade.dump());
        assert_eq!(
            install.launchctl_calls()[3..],
            [
                "bootout system/org.palisade.agent",
                "bootout gui/501/org.palisade.nudge"
            ]
        );
    }
}

#[test]
fn a_bad_install_conf_line_fails_naming_the_file_and_line() {
    for (preseed, line, says) in [
        (
            format!("ENROLL_SECRET={SECRET}\n# typo\nENROL_SECRET={SECRET}\n"),
            3,
            "unknown key 'ENROL_SECRET'",
        ),
        (format!("\n{SECRET}\n"), 2, "not KEY=VALUE"),
        (
            format!("ENROLL_SECRET={SECRET}\nCOLLECTOR_URL=https://a\"b\n"),
            0,
            "COLLECTOR_URL must not contain a quote",
        ),
    ] {
        for script in ["preinstall", "postinstall"] {
            let install = Install::new();
            install.copy_payload();
            install.write_preseed(&preseed);
            let finished = install.script(script, SHELLS[1], &[]);
            assert_eq!(finished.exit_code, Some(1), "{}", finished.dump());
            let conf = install.support("install.conf");
            if line > 0 {
                let at = format!("{}:{line}: ", conf.display());
                assert!(finished.stderr.contains(&at), "{at}\n{}", finished.dump());
            }
            assert!(
                finished.stderr.contains(says),
                "{says}\n{}",
                finished.dump()
            );
            assert!(!finished.stderr.contains(SECRET), "{}", finished.dump());
            assert_eq!(files_containing(&install.volume(), SECRET), vec![conf]);
            assert_eq!(install.launchctl_calls(), Vec::<String>::new());
        }
    }
}

#[test]
fn an_existing_agent_toml_keeps_its_other_keys_and_the_environment_wins() {
    let install = Install::new();
    install.copy_payload();
    let before = "# IT's own settings\ninterval_seconds = 600\n\
                  collector_url = \"https://old.example.org\"\nlog_format = \"json\"\n";
    std::fs::write(install.support("agent.toml"), before).unwrap();
    std::fs::set_permissions(
        install.support("agent.toml"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    install.write_preseed("COLLECTOR_URL=https://from-the-file.example.org\n");
    let finished = install.script("postinstall", SHELLS[0], &[("PALISADE_COLLECTOR_URL", URL)]);
    assert_eq!(finished.exit_code, Some(0), "{}", finished.dump());
    let after = std::fs::read_to_string(install.support("agent.toml")).unwrap();
    assert_eq!(
        after,
        before.replace("https://old.example.org", URL),
        "only collector_url changed, and to the environment's URL"
    );
    let mode = std::fs::metadata(install.support("agent.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_the_agent_accepts(&install.support("agent.toml"));
    // No secret was given: none is written.
    assert!(
        !install
            .volume()
            .join(SUPPORT_DIR)
            .join("state/enroll-secret")
            .exists()
    );
}

#[test]
fn installing_onto_another_volume_writes_files_and_leaves_launchd_alone() {
    let install = Install::new();
    install.copy_payload();
    install.write_preseed(&format!("ENROLL_SECRET={SECRET}\n"));
    let path = format!("{}:/usr/bin:/bin", install.fake_bin());
    let volume = install.volume();
    // $3 is the volume itself, as Installer passes a non-boot target.
    let finished = install.script_with(
        "postinstall",
        SHELLS[0],
        volume.to_str().unwrap(),
        &[("PATH", &path)],
    );
    assert_eq!(finished.exit_code, Some(0), "{}", finished.dump());
    assert!(install.support("state/enroll-secret").is_file());
    assert!(install.support("agent.toml").is_file());
    assert_eq!(install.launchctl_calls(), Vec::<String>::new());
}
