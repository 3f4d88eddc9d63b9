//! Harness for end-to-end tests over the real `palisade-agent` and
//! `palisade-collector` binaries: find the built binaries, run them with a
//! scrubbed environment, and keep the command line and output so a failing
//! assertion shows everything needed to understand it.
//!
//! The binaries are those `cargo build --workspace --bins` left next to the
//! test executable; `tests/run` builds them before running the tests.

pub mod agent;
pub mod browser;
pub mod collector;
pub mod databases;
pub mod device;
pub mod durability;
pub mod fleet;
pub mod log_watch;
pub mod module_graph;
pub mod small_disk;
pub mod wine;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Installs the ring TLS provider for this test process (the same single
/// provider the binaries use); later calls are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The path of a workspace binary built for the same profile as this test
/// (or as this harness binary, such as `ingest_bench`).
pub fn binary(name: &str) -> PathBuf {
    // A test executable lives in target/<profile>/deps/; a binary of this
    // crate (the benchmark) in target/<profile>/ itself.
    let exe = std::env::current_exe().unwrap_or_default();
    let exe_dir = exe.parent().unwrap_or(Path::new(""));
    let profile_dir = if exe_dir.file_name().is_some_and(|n| n == "deps") {
        exe_dir.parent().unwrap_or(exe_dir)
    } else {
        exe_dir
    }
    .to_path_buf();
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins` first (tests/run does)",
        path.display()
    );
    path
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A finished command, kept whole for assertion messages.
#[derive(Debug)]
pub struct Finished {
    pub command_line: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Everything about the run, for an assertion message.
    pub fn dump(&self) -> String {
        format!(
            "command: {}\nexit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command_line, self.exit_code, self.stdout, self.stderr
        )
    }

    /// Stdout parsed as JSON; panics with the dump when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err})\n{}", self.dump()))
    }
}

/// Runs `program` with `args` and only PATH (plus `env`) in its environment.
pub fn run(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let command_line = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    #[allow(clippy::disallowed_methods)] // the test's own child; the runner bounds its time
    let output = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command_line}: {err}"));
    Finished {
        command_line,
        exit_code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `palisade-agent` with `args`.
pub fn agent(args: &[&str]) -> Finished {
    run(&binary("palisade-agent"), args, &[])
}

/// The check of `rule` in a report document, panicking with the document
/// when it is missing.
pub fn check_of<'a>(report: &'a serde_json::Value, rule: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["id"] == rule))
        .unwrap_or_else(|| panic!("no {rule} check in {report:#}"))
}

/// The regular files under `dir` whose bytes contain `needle`, for the
/// installer tests' "the secret is nowhere else" (symbolic links and device
/// nodes are not followed or read).
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
            let path = entry.path();
            let kind = entry
                .file_type()
                .unwrap_or_else(|err| panic!("cannot stat {}: {err}", path.display()));
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
                if bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
                {
                    found.push(path);
                }
            }
        }
    }
    found.sort();
    found
}
