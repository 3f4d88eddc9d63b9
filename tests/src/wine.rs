//! Windows under Wine, for the tests of the Windows agent: a fresh Wine
//! prefix per test (its own registry, its own `C:`), `reg.exe` to set and
//! read values, and the cross-built `palisade-agent.exe`.
//!
//! The exe is built by `tests/windows/build-agent-exe.sh` (mingw-w64, a real
//! link) and found through `PALISADE_TEST_WINDOWS_AGENT`, which `tests/run`
//! sets. Beside it lies the `bcryptprimitives.dll` stand-in that Wine 8
//! needs to start any Rust program (see `tests/windows/bcryptprimitives.c`).

use std::path::{Path, PathBuf};

use crate::Finished;

const WINE: &str = "/usr/bin/wine";
const WINEBOOT: &str = "/usr/bin/wineboot";
const WINESERVER: &str = "/usr/bin/wineserver";

/// The Windows agent built for the tests.
pub fn windows_agent() -> PathBuf {
    let path = std::env::var_os("PALISADE_TEST_WINDOWS_AGENT").unwrap_or_else(|| {
        panic!(
            "PALISADE_TEST_WINDOWS_AGENT is not set: run the tests with tests/run, which \
             cross-builds palisade-agent.exe and sets it"
        )
    });
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{} is not built", path.display());
    path
}

/// A Wine prefix that lives as long as the test; its wineserver is stopped
/// when it is dropped.
#[derive(Debug)]
pub struct WinePrefix {
    dir: tempfile::TempDir,
}

impl WinePrefix {
    /// Creates and boots a new prefix (`wineboot -i`, a few seconds).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("no temp dir: {err}"));
        let prefix = Self { dir };
        let booted = prefix.run(Path::new(WINEBOOT), &["-i"]);
        assert_eq!(
            booted.exit_code,
            Some(0),
            "wineboot failed\n{}",
            booted.dump()
        );
        prefix
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WINEPREFIX", self.path().display().to_string()),
            ("WINEDEBUG", "-all".to_owned()),
            // The stand-in beside the exe first, Wine's own for the rest.
            ("WINEDLLOVERRIDES", "bcryptprimitives=n,b".to_owned()),
            ("HOME", self.path().display().to_string()),
        ]
    }

    /// Runs `program` and waits for it alone. Its output goes to files,
    /// not pipes: the Wine programs it starts (services.exe, winedevice,
    /// a service) inherit the handles and outlive it, so a pipe would not
    /// reach its end until the wineserver stops.
    fn run(&self, program: &Path, args: &[&str]) -> Finished {
        let command_line = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| (*a).to_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        let stdout = tempfile::tempfile().unwrap_or_else(|err| panic!("no temp file: {err}"));
        let stderr = tempfile::tempfile().unwrap_or_else(|err| panic!("no temp file: {err}"));
        #[allow(clippy::disallowed_methods)] // the test's own child; the runner bounds its time
        let status = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(self.env())
            .stdin(std::process::Stdio::null())
            .stdout(stdout.try_clone().unwrap_or_else(|err| panic!("{err}")))
            .stderr(stderr.try_clone().unwrap_or_else(|err| panic!("{err}")))
            .status()
            .unwrap_or_else(|err| panic!("cannot run {command_line}: {err}"));
        let read = |mut file: std::fs::File| {
            use std::io::{Read as _, Seek as _};
            let mut text = String::new();
            let _ = file.rewind();
            let _ = file.read_to_string(&mut text);
            text
        };
        Finished {
            command_line,
            exit_code: status.code(),
            stdout: read(stdout),
            stderr: read(stderr),
        }
    }

    /// Starts a Windows program in the background, its stdout and stderr
    /// appended to `log` (whose directory must exist); it is killed when
    /// the returned guard drops, and with the prefix's wineserver.
    pub fn spawn_wine(&self, args: &[&str], log: &Path) -> Background {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", log.display()));
        let child = std::process::Command::new(WINE)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(self.env())
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap_or_else(|err| panic!("{err}")))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start wine {args:?}: {err}"));
        Background(child)
    }

    /// Runs a Windows program (`reg`, or a path to an exe).
    pub fn wine(&self, args: &[&str]) -> Finished {
        self.run(Path::new(WINE), args)
    }

    /// Runs the Windows agent with `args`.
    pub fn agent(&self, args: &[&str]) -> Finished {
        let exe = windows_agent();
        let exe = exe.display().to_string();
        let mut all = vec![exe.as_str()];
        all.extend_from_slice(args);
        self.wine(&all)
    }

    /// `reg add KEY /v NAME /t TYPE /d DATA /f`, asserting it worked.
    pub fn reg_add(&self, key: &str, name: &str, kind: &str, data: &str) {
        let done = self.wine(&["reg", "add", key, "/v", name, "/t", kind, "/d", data, "/f"]);
        assert_eq!(done.exit_code, Some(0), "reg add failed\n{}", done.dump());
    }

    /// `reg delete KEY /v NAME /f`, asserting it worked.
    pub fn reg_delete(&self, key: &str, name: &str) {
        let done = self.wine(&["reg", "delete", key, "/v", name, "/f"]);
        assert_eq!(
            done.exit_code,
            Some(0),
            "reg delete failed\n{}",
            done.dump()
        );
    }

    /// The data of a value as `reg query` prints it, or `None` when the
    /// value is absent.
    pub fn reg_query(&self, key: &str, name: &str) -> Option<String> {
        let done = self.wine(&["reg", "query", key, "/v", name]);
        if done.exit_code != Some(0) {
            return None;
        }
        // `    NAME    REG_DWORD    0x258`
        done.stdout.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(name)).then(|| words.skip(1).collect::<Vec<_>>().join(" "))
        })
    }
}

/// The Windows path Wine gives a Linux path: drive `Z:` is the Linux root,
/// so `/tmp/x/y` is `Z:\tmp\x\y`.
pub fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display().to_string().replace('/', "\\"))
}

impl WinePrefix {
    /// `sc create NAME binPath= COMMAND_LINE` then `net start NAME`,
    /// asserting both worked: the prefix's Service Control Manager runs
    /// the service as Windows would.
    pub fn create_and_start_service(&self, name: &str, command_line: &str) {
        let created = self.wine(&["sc", "create", name, "binPath=", command_line]);
        assert_eq!(
            created.exit_code,
            Some(0),
            "sc create failed\n{}",
            created.dump()
        );
        self.settle();
        let started = self.wine(&["net", "start", name]);
        assert_eq!(
            started.exit_code,
            Some(0),
            "net start failed\n{}",
            started.dump()
        );
    }
}

impl WinePrefix {
    /// Waits until the prefix's wineserver has exited (a few seconds after
    /// its last program), so the next program starts a fresh session.
    ///
    /// Needed before installing a service: in the session `wineboot -i`
    /// began, services.exe does not find a service created since
    /// (`OpenServiceW` answers 1060, "does not exist", right after
    /// `CreateServiceW` succeeded), so `net start` fails and an MSI's
    /// StartServices rolls the install back. A services.exe started in a
    /// later session does not have the problem.
    pub fn settle(&self) {
        let settled = self.run(Path::new(WINESERVER), &["-w"]);
        assert_eq!(settled.exit_code, Some(0), "{}", settled.dump());
    }

    /// Puts the `bcryptprimitives.dll` stand-in into `C:\windows\system32`,
    /// for Rust programs installed elsewhere than beside it (by an MSI).
    pub fn install_stand_in_system_wide(&self) {
        let stand_in = windows_agent().with_file_name("bcryptprimitives.dll");
        let target = self
            .path()
            .join("drive_c/windows/system32/bcryptprimitives.dll");
        std::fs::copy(&stand_in, &target).unwrap_or_else(|err| {
            panic!(
                "cannot copy {} to {}: {err}",
                stand_in.display(),
                target.display()
            )
        });
    }

    /// The prefix's `C:` drive.
    pub fn drive_c(&self) -> PathBuf {
        self.path().join("drive_c")
    }
}

impl Default for WinePrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for WinePrefix {
    fn drop(&mut self) {
        let _ = self.run(Path::new(WINESERVER), &["-k"]);
    }
}

/// A Windows program running in the background ([`WinePrefix::spawn_wine`]).
#[derive(Debug)]
pub struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
