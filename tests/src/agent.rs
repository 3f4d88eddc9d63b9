//! A real `palisade-agent run` process for tests, with its log read line by
//! line so a test can wait for what the agent says it did (with a deadline)
//! instead of sleeping, and the status socket's client side (`status`,
//! `check_now`) to drive cycles without waiting for the interval.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::{binary, run};

/// A running agent daemon.
#[derive(Debug)]
pub struct RunningAgent {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<String>>,
}

impl RunningAgent {
    /// Starts `palisade-agent run --config CONFIG`.
    pub fn start(config: &Path) -> Self {
        Self::start_with(config, &[])
    }

    /// Starts `palisade-agent run --config CONFIG EXTRA...` (e.g. the hidden
    /// `--host-root DIR`).
    pub fn start_with(config: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(config, extra, &[])
    }

    /// [`Self::start_with`] with these environment variables added to the
    /// scrubbed environment (e.g. `PALISADE_ENROLL_SECRET`).
    pub fn start_with_env(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(binary("palisade-agent"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(extra)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("PALISADE_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start the agent: {err}"));
        let stderr = child
            .stderr
            .take()
            .unwrap_or_else(|| panic!("no stderr pipe"));
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let log_writer = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = log_writer.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, log }
    }

    /// Waits until the agent logs a line for which `wanted` is true.
    pub fn wait_for(
        &self,
        what: &str,
        deadline: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "the agent never logged {what} within {deadline:?}\n--- log ---\n{}",
                    self.log()
                ),
            }
        }
    }

    /// Waits until the agent logs that a check cycle spooled a report with
    /// a sequence above `after`; returns that sequence.
    pub fn wait_for_cycle_after(&self, after: u64, deadline: Duration) -> u64 {
        let line = self.wait_for(
            &format!("a check cycle spooling a report after {after}"),
            deadline,
            |line| {
                line.contains("check cycle spooled a report")
                    && logged_sequence(line).is_some_and(|sequence| sequence > after)
            },
        );
        logged_sequence(&line).unwrap_or_default()
    }

    /// Waits until the agent logs that the collector acknowledged report
    /// `sequence`. Lines are consumed in order, so waiting for 1 and then 2
    /// also shows that 1 was acknowledged first.
    pub fn wait_for_acknowledged(&self, sequence: u64, deadline: Duration) {
        self.wait_for(
            &format!("report {sequence} acknowledged"),
            deadline,
            |line| {
                line.contains("report acknowledged by the collector")
                    && logged_sequence(line) == Some(sequence)
            },
        );
    }

    /// The process id, to read its memory and CPU time from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGKILL, then wait for the exit and for the rest of the log (what
    /// it wrote just before the kill). Returns the exit status if the agent
    /// had already exited by itself: a kill test must see that it was
    /// still running.
    pub fn kill(&mut self) -> Option<std::process::ExitStatus> {
        let exited = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader ends, dropping its sender, once the pipe is empty.
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the killed agent's log never ended\n{}", self.log())
                }
            }
        }
        exited
    }

    /// SIGTERM, then wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = run(Path::new("/bin/kill"), &["-TERM", &pid], &[]);
        self.child.wait().ok().and_then(|status| status.code())
    }
}

/// The `sequence=N` field of a daemon log line (text format).
pub fn logged_sequence(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once(" sequence=")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// How long a status socket exchange may take: the daemon answers from
/// memory, so this only matters when it is stuck (`status::QUERY_TIMEOUT`).
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// One exchange on the agent's status socket: `request` (a JSON object) on
/// one line out, the answer line back as JSON. A failure is an error with
/// the socket's path, so a benchmark can report it and a test can panic.
pub fn status_exchange(socket: &Path, request: &str) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    use std::io::{Read as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    stream.set_read_timeout(Some(STATUS_TIMEOUT))?;
    stream.set_write_timeout(Some(STATUS_TIMEOUT))?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .with_context(|| format!("cannot send a request to {}", socket.display()))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .with_context(|| format!("no answer from {}", socket.display()))?;
    serde_json::from_slice(&answer).with_context(|| {
        format!(
            "the answer from {} is not JSON: {}",
            socket.display(),
            String::from_utf8_lossy(&answer)
        )
    })
}

/// The daemon's status document (`{"request":"status"}`).
pub fn status(socket: &Path) -> anyhow::Result<serde_json::Value> {
    status_exchange(socket, r#"{"request":"status"}"#)
}

/// Asks the daemon for a check cycle now (`{"request":"check_now"}`). Only
/// root may: the daemon checks the peer's credentials.
pub fn check_now(socket: &Path) -> anyhow::Result<()> {
    let answer = status_exchange(socket, r#"{"request":"check_now"}"#)?;
    anyhow::ensure!(
        answer == serde_json::json!({"accepted": "check_now"}),
        "check_now was not accepted (the tests must run as root): {answer}"
    );
    Ok(())
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config of a test agent in `dir`, enrolled to `collector`: its CA,
/// state directory and socket under `dir`, an hour's interval (so every
/// other cycle is one the test asked for), then the `extra` lines.
pub fn config_text(
    dir: &Path,
    collector: &crate::collector::RunningCollector,
    extra: &str,
) -> String {
    format!(
        "collector_url = \"{}\"\nca_file = \"{}\"\nstate_dir = \"{}\"\nsocket_path = \"{}\"\ninterval_seconds = 3600\n{extra}",
        collector.url,
        collector.state_dir.join("tls/cert.pem").display(),
        dir.join("state").display(),
        dir.join("agent.sock").display(),
    )
}

/// Writes [`config_text`] to `dir/agent.toml` and returns its path.
pub fn write_config(
    dir: &Path,
    collector: &crate::collector::RunningCollector,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, config_text(dir, collector, extra))
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    path
}
