//! A real `palisade-agent run` process for tests, with its log read line by
//! line so a test can wait for what the agent says it did (with a deadline)
//! instead of sleeping.

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
        let mut child = Command::new(binary("palisade-agent"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("PALISADE_LOG", "info")
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

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM, then wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = run(Path::new("/bin/kill"), &["-TERM", &pid], &[]);
        self.child.wait().ok().and_then(|status| status.code())
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
