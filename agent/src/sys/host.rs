//! The agent's window on the machine: file reads under a host root, and one
//! command runner that times out, captures and logs.
//!
//! Every probe reads Linux files through [`Host::read`] and friends, so a test
//! (or `palisade-agent check --host-root DIR`) can point the probes at a
//! prepared tree instead of `/`. Every external command goes through
//! [`Host::run`], so none can hang a check cycle or escape the log.
//!
//! This module decides nothing about compliance.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt as _;

/// How long one external command may run. The slowest probe command seen is
/// `gsettings` starting cold, about 50 ms; five seconds leaves a wide margin
/// for a loaded laptop while a stuck tool still cannot stall a cycle.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Output beyond this is cut: no probe needs more, and a runaway tool must not
/// fill the agent's memory.
const MAX_CAPTURED_BYTES: usize = 1024 * 1024;

/// Where the probes look.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
    command_timeout: Duration,
}

impl Host {
    /// The machine the agent runs on.
    pub fn system() -> Self {
        Self::with_root("/")
    }

    /// A prepared tree standing in for `/`.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    /// Whether the probes read the live system rather than a prepared tree.
    /// Probes that must act as another user or ask a daemon only do so then.
    pub fn is_live_system(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The path of an absolute Linux path under the host root.
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    pub fn read(&self, absolute: &str) -> io::Result<String> {
        std::fs::read_to_string(self.path(absolute))
    }

    /// Reads a file that may legitimately be absent: `Ok(None)` when it does
    /// not exist, an error for anything else (permission denied must not look
    /// like "not configured").
    pub fn read_optional(&self, absolute: &str) -> io::Result<Option<String>> {
        match std::fs::read_to_string(self.path(absolute)) {
            Ok(text) => Ok(Some(text)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    pub fn exists(&self, absolute: &str) -> bool {
        self.path(absolute).exists()
    }

    /// The names in a directory, sorted; `Ok(None)` when it does not exist.
    pub fn list_dir(&self, absolute: &str) -> io::Result<Option<Vec<String>>> {
        let entries = match std::fs::read_dir(self.path(absolute)) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let mut names = Vec::new();
        for entry in entries {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(Some(names))
    }

    /// Runs a command with the host's timeout.
    pub fn run(&self, command: &CommandSpec) -> Result<CommandOutput, CommandError> {
        run_command(command, self.command_timeout)
    }
}

/// A command to run: program, arguments, and environment. The environment is
/// cleared first, so a probe sees only what it asked for.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Text written to the command's standard input, which is otherwise
    /// empty (`scutil` reads its commands there and has no flag for them).
    pub stdin: Option<String>,
}

impl CommandSpec {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())],
            stdin: None,
        }
    }

    pub fn stdin(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(text.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How the command reads in a log line or an evidence field.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The exit code; `None` when a signal ended it.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{command}` is not installed")]
    NotFound { command: String },
    #[error("cannot run `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` did not finish within {} s", timeout.as_secs())]
    TimedOut { command: String, timeout: Duration },
}

fn run_command(spec: &CommandSpec, timeout: Duration) -> Result<CommandOutput, CommandError> {
    let started = Instant::now();
    let mut child = Command::new(&spec.program)
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => CommandError::NotFound {
                command: spec.program.clone(),
            },
            _ => CommandError::Spawn {
                command: spec.display(),
                source,
            },
        })?;

    // Written from a thread, so a command that does not read its input
    // cannot block the runner; the pipe closes when the thread ends.
    if let (Some(text), Some(mut pipe)) = (spec.stdin.clone(), child.stdin.take()) {
        std::thread::spawn(move || {
            use std::io::Write as _;
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    // Drain both pipes while waiting, so a chatty command cannot block on a
    // full pipe and look like a hang.
    let stdout = child.stdout.take().map(spawn_reader);
    let stderr = child.stderr.take().map(spawn_reader);
    let status = match child.wait_timeout(timeout) {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            // Kill and reap; the readers finish when the pipes close.
            let _ = child.kill();
            let _ = child.wait();
            tracing::warn!(command = %spec.display(), "command timed out");
            return Err(CommandError::TimedOut {
                command: spec.display(),
                timeout,
            });
        }
    };
    let collect = |reader: Option<std::thread::JoinHandle<Vec<u8>>>| {
        reader
            .and_then(|handle| handle.join().ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    };
    let output = CommandOutput {
        exit_code: status.code(),
        stdout: collect(stdout),
        stderr: collect(stderr),
    };
    tracing::debug!(
        command = %spec.display(),
        exit_code = ?output.exit_code,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "ran command"
    );
    Ok(output)
}

fn spawn_reader(pipe: impl io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut pipe = pipe;
        let mut bytes = Vec::new();
        let _ = (&mut pipe)
            .take(MAX_CAPTURED_BYTES as u64)
            .read_to_end(&mut bytes);
        // Keep draining past the cap so the command is not blocked on a full pipe.
        let _ = io::copy(&mut pipe, &mut io::sink());
        bytes
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// `scutil` takes its command on standard input; the runner must hand
    /// it over and close the pipe, or the tool waits for ever.
    #[test]
    fn standard_input_reaches_the_command_and_is_closed() {
        let command = CommandSpec::new("/bin/cat").stdin("show State:/Users/ConsoleUser\n");
        let output = Host::system().run(&command).unwrap();
        assert!(output.success());
        assert_eq!(output.stdout, "show State:/Users/ConsoleUser\n");
    }

    #[test]
    fn without_standard_input_the_command_reads_nothing() {
        let output = Host::system().run(&CommandSpec::new("/bin/cat")).unwrap();
        assert!(output.success());
        assert_eq!(output.stdout, "");
    }
}
