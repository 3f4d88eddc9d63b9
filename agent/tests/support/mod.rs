//! The host-root harness the agent's binary tests share: a temp dir holding
//! a copy of a fixture tree as `root/`, runs of the real `palisade-agent`
//! through the agent's own command runner (environment cleared, output
//! captured, a timeout), and on a failed assertion the command, its output
//! and the files of the tree.
//!
//! Each test file that uses it says `mod support;`; not every file uses every
//! helper, hence the `dead_code` allowance.
#![allow(dead_code)]
// The helpers are test code: a panic here is a failed test, as clippy.toml
// allows inside `#[test]` functions.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use palisade_agent::sys::{CommandOutput, CommandSpec, Host};
use serde_json::Value;

/// A temp dir holding a host root (`root/`) and room for policy files and
/// state beside it.
#[derive(Debug)]
pub struct Tree {
    pub temp: tempfile::TempDir,
}

impl Tree {
    /// An empty host root.
    pub fn empty() -> Self {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(temp.path().join("root")).unwrap();
        Self { temp }
    }

    /// A copy of the fixture tree `fixtures/scenario`.
    pub fn from_fixture(fixtures: &str, scenario: &str) -> Self {
        let tree = Self::empty();
        tree.add_fixture(fixtures, scenario);
        tree
    }

    /// Copies another fixture tree on top (e.g. a kmod configuration).
    pub fn add_fixture(&self, fixtures: &str, scenario: &str) {
        copy_tree(&Path::new(fixtures).join(scenario), &self.root());
    }

    pub fn root(&self) -> PathBuf {
        self.temp.path().join("root")
    }

    /// A directory beside the root, outside it.
    pub fn outside(&self, name: &str) -> PathBuf {
        self.temp.path().join(name)
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.root().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.root().join(relative))
            .unwrap_or_else(|err| panic!("cannot read {relative}: {err}"))
    }

    /// Writes a policy file beside the root; returns its path.
    pub fn policy_file(&self, text: &str) -> PathBuf {
        let path = self.temp.path().join("policy.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs the agent with these arguments.
    pub fn run_agent(&self, args: &[String]) -> Run {
        let mut command = CommandSpec::new(env!("CARGO_BIN_EXE_palisade-agent"));
        for arg in args {
            command = command.arg(arg.as_str());
        }
        let output = Host::system().run(&command).unwrap();
        Run {
            command: command.display(),
            output,
            tree: listing(&self.root()),
        }
    }

    /// `check --rule RULE --json --host-root ROOT [--policy FILE]`.
    pub fn check(&self, rule: &str, policy: Option<&Path>) -> Run {
        let mut args = vec![
            "check".to_owned(),
            "--rule".to_owned(),
            rule.to_owned(),
            "--json".to_owned(),
            "--host-root".to_owned(),
            self.root().display().to_string(),
        ];
        if let Some(policy) = policy {
            args.push("--policy".to_owned());
            args.push(policy.display().to_string());
        }
        self.run_agent(&args)
    }
}

/// What a run printed, with what is needed to explain a failure.
#[derive(Debug)]
pub struct Run {
    pub command: String,
    pub output: CommandOutput,
    pub tree: Vec<String>,
}

impl Run {
    pub fn explain(&self) -> String {
        format!(
            "command: {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}\nfiles:\n{}",
            self.command,
            self.output.exit_code,
            self.output.stdout,
            self.output.stderr,
            self.tree.join("\n")
        )
    }

    /// Asserts the exit code and the verdict of the only check in the JSON
    /// report; returns the check's JSON.
    pub fn expect_check(&self, rule: &str, exit_code: i32, status: &str) -> Value {
        assert_eq!(self.output.exit_code, Some(exit_code), "{}", self.explain());
        let report: Value = serde_json::from_str(&self.output.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err})\n{}", self.explain()));
        let checks = report["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 1, "{}", self.explain());
        let check = checks[0].clone();
        assert_eq!(check["id"], rule, "{}", self.explain());
        assert_eq!(check["status"], status, "{}", self.explain());
        check
    }

    pub fn expect_summary(&self, check: &Value, parts: &[&str]) {
        let summary = check["summary"].as_str().unwrap();
        for part in parts {
            assert!(
                summary.contains(part),
                "summary lacks {part:?}\n{}",
                self.explain()
            );
        }
    }

    /// Asserts the exit code.
    pub fn expect_exit(&self, exit_code: i32) -> &Self {
        assert_eq!(self.output.exit_code, Some(exit_code), "{}", self.explain());
        self
    }
}

pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `root` with its first line, sorted, for failure output.
pub fn listing(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let relative = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                files.push(format!("{relative}: {}", text.lines().next().unwrap_or("")));
            }
        }
    }
    files.sort();
    files
}

/// One entry of a [`snapshot`]: a directory, or a file's bytes; with the mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Directory { mode: u32 },
    File { mode: u32, bytes: Vec<u8> },
}

/// Every directory and file under `root` with its mode and bytes: two equal
/// snapshots mean the tree is byte-identical.
pub fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.insert(relative, Entry::Directory { mode });
                pending.push(path);
            } else {
                out.insert(
                    relative,
                    Entry::File {
                        mode,
                        bytes: std::fs::read(&path).unwrap(),
                    },
                );
            }
        }
    }
    out
}

/// The differences between two snapshots, one line each, for a failure.
pub fn snapshot_diff(before: &BTreeMap<String, Entry>, after: &BTreeMap<String, Entry>) -> String {
    let mut lines = Vec::new();
    for (path, entry) in before {
        match after.get(path) {
            None => lines.push(format!("- {path} (gone)")),
            Some(other) if other != entry => lines.push(format!("~ {path} (changed)")),
            _ => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        lines.push(format!("+ {path} (new)"));
    }
    lines.join("\n")
}
