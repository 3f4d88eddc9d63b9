//! `./demo`, the README's first command, run as a user runs it: the script
//! starts a collector on SQLite with a self-signed certificate, makes the
//! dashboard user, enrolls the real agent and runs it, and prints the
//! dashboard's address and login; Ctrl-C stops both.
//!
//! Two things differ from a person's run, both through the script's own
//! environment knobs: it uses this test build's binaries
//! (`PALISADE_DEMO_BIN_DIR`) instead of building release ones, and the agent
//! checks a small host tree (`PALISADE_DEMO_HOST_ROOT`) instead of this
//! machine, so that running the tests never changes the machine (the
//! baseline policy enforces screen lock and USB blocking).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed assertion

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use palisade_tests::collector::{client_trusting, csrf_field};
use palisade_tests::{binary, repo_root};
use reqwest::StatusCode;
use serde_json::Value;

/// Starting takes a few seconds (migrations, enrollment, argon2 for the
/// user); the deadline only bounds a broken run.
const DEADLINE: Duration = Duration::from_secs(120);

/// The demo script, its output line by line, and everything it printed.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    output: String,
}

impl Demo {
    fn start(state: &Path, host_root: &Path, port: u16) -> Self {
        let bin_dir = binary("palisade-agent").parent().unwrap().to_path_buf();
        let mut child = Command::new("bash")
            .arg(repo_root().join("demo"))
            .env("PALISADE_DEMO_DIR", state)
            .env("PALISADE_DEMO_PORT", port.to_string())
            .env("PALISADE_DEMO_BIN_DIR", bin_dir)
            .env("PALISADE_DEMO_HOST_ROOT", host_root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, like a job in a terminal: Ctrl-C is
            // SIGINT to the whole group.
            .process_group(0)
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            lines,
            output: String::new(),
        }
    }

    /// Reads output until a line satisfies `wanted`; that line.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.output.push_str(&line);
                    self.output.push('\n');
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("./demo never printed {what}:\n{}", self.output),
            }
        }
    }

    /// The value after `label` on the line that starts with it.
    fn printed(&self, label: &str) -> String {
        self.output
            .lines()
            .find_map(|line| line.trim_start().strip_prefix(label))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{}", self.output))
    }

    /// Ctrl-C: SIGINT to the script's process group.
    fn interrupt(&self) {
        let group = format!("-{}", self.child.id());
        let sent = Command::new("kill")
            .args(["-INT", "--", &group])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the script to exit, reading the rest of its output.
    fn exit_status(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        // The pipes close when the script and everything it started are
        // gone; then it has exited or is about to.
        while let Ok(line) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.output.push_str(&line);
            self.output.push('\n');
        }
        assert!(
            Instant::now() < end,
            "./demo did not stop after Ctrl-C:\n{}",
            self.output
        );
        self.child.wait().unwrap()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().map_while(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn the_demo_runs_a_collector_and_an_enrolled_agent_and_ctrl_c_stops_both() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("demo-state");
    let host_root = dir.path().join("root");
    for sub in [
        "etc/security/pwquality.conf.d",
        "etc/pam.d",
        "sys/class/block",
    ] {
        std::fs::create_dir_all(host_root.join(sub)).unwrap();
    }
    let port = free_port();
    let mut demo = Demo::start(&state, &host_root, port);
    demo.wait_for("the dashboard's password", |line| {
        line.trim_start().starts_with("Password")
    });

    // What it printed: the dashboard's URL and login, the agent's identity.
    let url = demo.printed("Dashboard");
    assert_eq!(url, format!("https://127.0.0.1:{port}/"), "{}", demo.output);
    assert_eq!(demo.printed("Log in as"), "admin");
    let password = demo.printed("Password");
    let password_file = state.join("collector/admin-password");
    assert_eq!(
        std::fs::read_to_string(&password_file).unwrap().trim(),
        password
    );
    assert_eq!(
        std::fs::metadata(&password_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let agent_line = demo.printed("agent");
    let device_id = agent_line
        .split_whitespace()
        .find(|word| word.starts_with("dev_"))
        .unwrap_or_else(|| panic!("no device id in {agent_line:?}"))
        .to_owned();

    // The dashboard answers over HTTPS with the printed certificate, and the
    // printed login works.
    let collector_state = state.join("collector");
    let browser = client_trusting(&collector_state)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = browser
        .get(format!("{url}login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_field(&form);
    let login = browser
        .post(format!("{url}login"))
        .form(&[
            ("username", "admin"),
            ("password", password.as_str()),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let devices = browser.get(format!("{url}devices")).send().await.unwrap();
    assert_eq!(devices.status(), StatusCode::OK);
    assert!(
        devices.text().await.unwrap().contains(&device_id),
        "the enrolled agent is on the devices page"
    );

    // The script waits for the agent's first delivery before it prints the
    // login, so the device has its signed report by now.
    assert!(
        demo.output
            .contains("the agent checked this machine and delivered its first signed report"),
        "{}",
        demo.output
    );
    let token = std::fs::read_to_string(state.join("collector/admin-token")).unwrap();
    let api = client_trusting(&collector_state).build().unwrap();
    let detail: Value = api
        .get(format!("{url}api/v1/devices/{device_id}"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["device"]["last_sequence"], 1, "{detail}");
    assert_eq!(detail["device"]["revoked_at"], Value::Null);

    // Ctrl-C stops the collector and the agent, and the script says so.
    let state_text = state.to_str().unwrap();
    let running = processes_mentioning(state_text);
    assert!(
        running.len() >= 2,
        "the collector and the agent run under {state_text}: {running:?}"
    );
    demo.interrupt();
    let status = demo.exit_status();
    assert_eq!(status.code(), Some(130), "{}", demo.output);
    assert!(
        demo.output.contains("stopped; the state is kept in"),
        "{}",
        demo.output
    );
    assert_eq!(processes_mentioning(state_text), Vec::<u32>::new());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
