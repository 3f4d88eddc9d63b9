//! `palisade-agent nudge` end to end: the real binary reads a real status
//! socket and shows notifications on a real (private) D-Bus session bus,
//! where a test notification server records every `Notify` call.
//!
//! Each test starts its own `dbus-daemon` (never the machine's bus), a
//! notification server on it (`support_notifications`), and a status
//! socket serving a crafted `AgentStatus`. `--once` passes run with a fixed
//! clock (`--now`) and `TZ=UTC`, so working hours and intervals are exact.
//! A `--once` pass returns only after each `Notify` was answered, and the
//! server records a call before answering, so after the process exits the
//! recorded calls are complete: nothing is waited for by sleeping.

#![cfg(all(unix, not(target_os = "macos")))]
// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support_notifications;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use palisade_agent::status::{
    self, AgentStatus, DeliveryStatus, ServeOptions, SpoolStatus, StatusBoard, StatusListener,
};
use palisade_shared::report::{CheckResult, CheckStatus, Event, EventKind, Mode};
use palisade_shared::{KeyId, RuleId};
use support_notifications::{NotificationServer, NotifyCall, SessionBus};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};

/// How long any awaited event may take before the test fails. Generous for
/// a loaded CI machine; the events themselves take milliseconds.
const DEADLINE: Duration = Duration::from_secs(20);

const URGENCY_NORMAL: Option<u8> = Some(1);
const URGENCY_CRITICAL: Option<u8> = Some(2);

fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
        .unwrap()
}

fn check(rule: &str, status: CheckStatus, mode: Mode) -> CheckResult {
    CheckResult {
        id: RuleId::new(rule),
        status,
        mode,
        summary: format!("{rule} summary from the evaluator"),
        evidence: serde_json::Map::new(),
        fix: format!("{rule} fix from the evaluator"),
        probe_duration_us: 1,
        enforcement: None,
        first_failed_at: None,
        deadline: None,
    }
}

fn agent_status(checks: Vec<CheckResult>, recent_events: Vec<Event>) -> AgentStatus {
    AgentStatus {
        schema_version: status::STATUS_SCHEMA_VERSION,
        agent_version: "0.1.0".to_owned(),
        started_at: at(23, 7, 0),
        device_id: None,
        key_id: KeyId::parse(&"cd".repeat(32)).unwrap(),
        key_store: "file /var/lib/palisade/device.key (0600)".to_owned(),
        collector_url: None,
        policy: None,
        last_cycle_at: Some(at(23, 9, 59)),
        checks,
        recent_events,
        spool: SpoolStatus::default(),
        delivery: DeliveryStatus::default(),
    }
}

/// A bus, a notification server, a status socket and a state file, all in
/// one temporary directory.
struct Fixture {
    temp: tempfile::TempDir,
    bus: SessionBus,
    server: NotificationServer,
    socket: PathBuf,
    state_file: PathBuf,
    board: StatusBoard,
    stop: Option<oneshot::Sender<()>>,
    /// Run `palisade-nudge` (the helper alone, as Windows' Run key starts
    /// it) instead of `palisade-agent nudge`.
    standalone: bool,
}

struct Run {
    success: bool,
    stderr: String,
}

impl Fixture {
    async fn start(status: AgentStatus) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let bus = SessionBus::start(DEADLINE).await;
        let server = NotificationServer::start(&bus).await;
        let socket = temp.path().join("run/agent.sock");
        let board = StatusBoard::new(status);
        let (requests, _changes) = mpsc::channel(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = StatusListener::bind(&socket).unwrap();
        tokio::spawn(listener.serve(
            board.subscribe(),
            requests,
            ServeOptions::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let state_file = temp.path().join("state/palisade/nudge.json");
        Self {
            temp,
            bus,
            server,
            socket,
            state_file,
            board,
            stop: Some(stop),
            standalone: false,
        }
    }

    /// The helper's command with a scrubbed environment: only the private
    /// bus, UTC, and a PATH holding nothing but `bin/` of the temp dir.
    fn command(&self, now: DateTime<Utc>, extra: &[&str]) -> tokio::process::Command {
        self.command_at_socket(&self.socket, now, extra)
    }

    fn command_at_socket(
        &self,
        socket: &Path,
        now: DateTime<Utc>,
        extra: &[&str],
    ) -> tokio::process::Command {
        let mut command = if self.standalone {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_palisade-nudge"))
        } else {
            let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_palisade-agent"));
            agent.arg("nudge");
            agent
        };
        command
            .arg("--socket")
            .arg(socket)
            .arg("--state-file")
            .arg(&self.state_file)
            .arg("--config")
            .arg(self.temp.path().join("agent.toml"))
            .arg("--now")
            .arg(now.to_rfc3339())
            .args(extra)
            .env_clear()
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus.address)
            .env("TZ", "UTC")
            .env("HOME", self.temp.path())
            .env("PATH", self.temp.path().join("bin"))
            .env("PALISADE_LOG", "palisade_agent=debug")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// `nudge --once` at `now`; returns what the server received.
    async fn once(&mut self, now: DateTime<Utc>) -> Vec<NotifyCall> {
        let run = self.run_once(now).await;
        assert!(run.success, "nudge --once at {now} failed:\n{}", run.stderr);
        self.server.take_calls()
    }

    async fn run_once(&self, now: DateTime<Utc>) -> Run {
        let output = tokio::time::timeout(DEADLINE, self.command(now, &["--once"]).output())
            .await
            .expect("nudge --once finished in time")
            .expect("nudge --once ran");
        Run {
            success: output.status.success(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn write_config(&self, text: &str) {
        std::fs::write(self.temp.path().join("agent.toml"), text).unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn summaries(calls: &[NotifyCall]) -> Vec<&str> {
    calls.iter().map(|call| call.summary.as_str()).collect()
}

fn mixed_rules() -> Vec<CheckResult> {
    vec![
        check("screen_lock", CheckStatus::Fail, Mode::Nudge),
        check("disk_encryption", CheckStatus::Fail, Mode::Enforce),
        check("password_policy", CheckStatus::Pass, Mode::Nudge),
        check("usb_storage", CheckStatus::Fail, Mode::Audit),
    ]
}

#[tokio::test]
async fn failing_rules_are_shown_once_per_interval_and_never_in_quiet_hours() {
    let mut fixture = Fixture::start(agent_status(mixed_rules(), Vec::new())).await;

    let first = fixture.once(at(23, 10, 0)).await;
    assert_eq!(summaries(&first), ["Screen lock", "Disk encryption"]);
    let disk = &first[1];
    assert_eq!(disk.app_name, "Palisade");
    assert_eq!(disk.urgency, URGENCY_NORMAL);
    assert!(
        disk.body
            .contains("Disk_encryption summary from the evaluator."),
        "{}",
        disk.body
    );
    assert!(
        disk.body
            .contains("A lost laptop without it exposes every patient record on it."),
        "{}",
        disk.body
    );
    assert!(
        disk.body
            .contains("To fix: Disk_encryption fix from the evaluator."),
        "{}",
        disk.body
    );
    assert!(
        disk.actions.is_empty(),
        "--once offers no buttons: {:?}",
        disk.actions
    );

    assert!(
        fixture.once(at(23, 11, 0)).await.is_empty(),
        "within the interval"
    );
    assert_eq!(
        summaries(&fixture.once(at(23, 14, 0)).await),
        ["Screen lock", "Disk encryption"],
        "the 4 h interval has passed"
    );
    assert!(
        fixture.once(at(23, 19, 0)).await.is_empty(),
        "19:00 is outside 08:00-18:00 although the interval has passed"
    );
}

/// Windows' Run key starts `palisade-nudge`, the same helper built without
/// a console window; it takes the same flags and shows the same thing.
#[tokio::test]
async fn the_standalone_helper_is_the_same_helper() {
    let mut fixture = Fixture::start(agent_status(mixed_rules(), Vec::new())).await;
    fixture.standalone = true;
    let first = fixture.once(at(23, 10, 0)).await;
    assert_eq!(summaries(&first), ["Screen lock", "Disk encryption"]);
    assert!(
        fixture.once(at(23, 11, 0)).await.is_empty(),
        "it remembers what it showed, as `palisade-agent nudge` does"
    );
}

#[tokio::test]
async fn the_config_sets_interval_and_working_hours() {
    let mut fixture = Fixture::start(agent_status(mixed_rules(), Vec::new())).await;
    fixture.write_config("nudge_interval_hours = 1\nworking_hours = \"20:00-02:00\"\n");
    assert!(
        fixture.once(at(23, 10, 0)).await.is_empty(),
        "10:00 is outside 20:00-02:00"
    );
    assert_eq!(fixture.once(at(23, 23, 0)).await.len(), 2);
    assert_eq!(fixture.once(at(24, 0, 0)).await.len(), 2, "1 h interval");
}

#[tokio::test]
async fn overdue_rule_is_shown_in_quiet_hours_as_critical() {
    let mut overdue = check("screen_lock", CheckStatus::Fail, Mode::Nudge);
    overdue.deadline = Some(at(22, 12, 0));
    let mut pending = check("disk_encryption", CheckStatus::Fail, Mode::Nudge);
    pending.deadline = Some(at(30, 12, 0));
    let mut fixture = Fixture::start(agent_status(vec![overdue, pending], Vec::new())).await;

    let calls = fixture.once(at(23, 22, 0)).await;
    assert_eq!(
        summaries(&calls),
        ["Screen lock"],
        "only the overdue one at 22:00"
    );
    assert_eq!(calls[0].urgency, URGENCY_CRITICAL);
    assert!(
        calls[0].body.ends_with("Overdue since Sun 22 Nov."),
        "{}",
        calls[0].body
    );

    assert!(
        fixture.once(at(23, 23, 0)).await.is_empty(),
        "outside working hours an overdue rule keeps the full 4 h interval"
    );

    let morning = fixture.once(at(24, 9, 0)).await;
    assert_eq!(summaries(&morning), ["Screen lock", "Disk encryption"]);
    assert_eq!(morning[0].urgency, URGENCY_CRITICAL);
    assert_eq!(morning[1].urgency, URGENCY_NORMAL);
    assert!(
        morning[1].body.ends_with("Fix by Mon 30 Nov."),
        "{}",
        morning[1].body
    );
    assert_eq!(
        summaries(&fixture.once(at(24, 10, 0)).await),
        ["Screen lock"],
        "overdue in working hours: every 4 h / 4 = 1 h"
    );
}

#[tokio::test]
async fn a_blocked_usb_device_is_shown_exactly_once() {
    let event = Event {
        kind: EventKind::UsbDeviceBlocked,
        at: at(23, 9, 59),
        details: serde_json::json!({
            "vendor_id": "0781",
            "product_id": "5567",
            "product": "Cruzer Blade",
            "sysfs_path": "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2",
        })
        .as_object()
        .cloned()
        .unwrap(),
    };
    let compliant = vec![check("usb_storage", CheckStatus::Pass, Mode::Enforce)];
    let mut fixture = Fixture::start(agent_status(compliant, vec![event])).await;

    let calls = fixture.once(at(23, 10, 0)).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0]
            .body
            .starts_with("USB storage blocked: Cruzer Blade (0781:5567) — patient data"),
        "{}",
        calls[0].body
    );
    assert!(fixture.once(at(23, 10, 1)).await.is_empty(), "not repeated");
}

#[tokio::test]
async fn passing_again_clears_memory() {
    let failing = vec![check("screen_lock", CheckStatus::Fail, Mode::Nudge)];
    let mut fixture = Fixture::start(agent_status(failing.clone(), Vec::new())).await;
    assert_eq!(fixture.once(at(23, 10, 0)).await.len(), 1);
    fixture
        .board
        .update(|status| status.checks[0].status = CheckStatus::Pass);
    assert!(
        fixture.once(at(23, 10, 30)).await.is_empty(),
        "none while compliant"
    );
    fixture.board.update(|status| status.checks = failing);
    assert_eq!(
        fixture.once(at(23, 11, 0)).await.len(),
        1,
        "a new failure is shown at once, within the old interval"
    );
}

#[tokio::test]
async fn a_corrupt_memory_file_is_replaced_not_fatal() {
    let failing = vec![check("screen_lock", CheckStatus::Fail, Mode::Nudge)];
    let mut fixture = Fixture::start(agent_status(failing, Vec::new())).await;
    std::fs::create_dir_all(fixture.state_file.parent().unwrap()).unwrap();
    std::fs::write(&fixture.state_file, "{ this is not json").unwrap();
    let run = fixture.run_once(at(23, 10, 0)).await;
    assert!(run.success, "{}", run.stderr);
    assert!(
        run.stderr.contains("starting with an empty nudge memory"),
        "{}",
        run.stderr
    );
    assert_eq!(fixture.server.take_calls().len(), 1);
    let memory: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fixture.state_file).unwrap()).unwrap();
    assert_eq!(
        memory["rules"]["screen_lock"]["last_shown_at"],
        "2026-11-23T10:00:00Z"
    );
}

#[tokio::test]
async fn once_without_a_daemon_is_an_error() {
    let fixture = Fixture::start(agent_status(Vec::new(), Vec::new())).await;
    let absent = fixture.temp.path().join("absent.sock");
    let mut command = fixture.command_at_socket(&absent, at(23, 10, 0), &["--once"]);
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("the agent is not running"), "{stderr}");
}

/// The standalone helper has no console on Windows, so it can log to a
/// file: the reason it stopped is there, and a full log is moved aside.
#[tokio::test]
async fn the_standalone_helper_logs_to_a_file_when_asked() {
    let mut fixture = Fixture::start(agent_status(Vec::new(), Vec::new())).await;
    fixture.standalone = true;
    let log = fixture.temp.path().join("logs/nudge.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, vec![b'x'; 1024 * 1024 + 1]).unwrap();
    let absent = fixture.temp.path().join("absent.sock");
    let log_arg = log.to_str().unwrap();
    let mut command =
        fixture.command_at_socket(&absent, at(23, 10, 0), &["--once", "--log-file", log_arg]);
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(!output.status.success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("the agent is not running"), "{logged}");
    let old = fixture.temp.path().join("logs/nudge.log.old");
    assert_eq!(std::fs::metadata(old).unwrap().len(), 1024 * 1024 + 1);
}

/// The loop offers buttons; "Snooze for a day" silences the rule (remembered
/// across runs) and "Open settings" starts the settings program.
#[tokio::test]
async fn buttons_snooze_and_open_settings() {
    let checks = vec![
        check("screen_lock", CheckStatus::Fail, Mode::Nudge),
        check("password_policy", CheckStatus::Fail, Mode::Nudge),
    ];
    let mut fixture = Fixture::start(agent_status(checks, Vec::new())).await;
    let bin = fixture.temp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = fixture.temp.path().join("opened");
    let opened_pipe = settings_fifo(&opened);
    write_script(
        &bin.join("gnome-control-center"),
        &format!("#!/bin/sh\necho \"$@\" > {}\n", opened.display()),
    );

    let mut helper = fixture
        .command(at(23, 10, 0), &[])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = LogLines::follow(helper.stderr.take().unwrap());

    let first = fixture.server.next_call(DEADLINE).await;
    let second = fixture.server.next_call(DEADLINE).await;
    assert_eq!(
        [first.summary.as_str(), second.summary.as_str()],
        ["Screen lock", "Password"]
    );
    assert_eq!(
        first.actions,
        ["settings", "Open settings", "snooze", "Snooze for a day"]
    );

    press_until_logged(
        &fixture.server,
        &mut log,
        first.id,
        "snooze",
        "rule snoozed",
    )
    .await;
    press_until_logged(
        &fixture.server,
        &mut log,
        second.id,
        "settings",
        "opened settings",
    )
    .await;
    helper.kill().await.unwrap();

    // The snooze was remembered: after the interval only the other rule.
    fixture.server.take_calls();
    assert_eq!(summaries(&fixture.once(at(23, 14, 30)).await), ["Password"]);
    // The settings program was started with the panel for passwords.
    let mut opened_args = String::new();
    tokio::time::timeout(
        DEADLINE,
        BufReader::new(opened_pipe).read_line(&mut opened_args),
    )
    .await
    .expect("the settings program ran")
    .unwrap();
    assert_eq!(opened_args.trim(), "users");
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A FIFO the fake settings program writes its arguments to, opened now
/// (read-write, so it never reads as ended before the program writes).
fn settings_fifo(path: &Path) -> tokio::net::unix::pipe::Receiver {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
    tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .unwrap()
}

/// The helper's stderr, line by line, as it comes.
struct LogLines {
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl LogLines {
    fn follow(stderr: tokio::process::ChildStderr) -> Self {
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `within` for a line containing `needle`.
    async fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        let give_up = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(give_up, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return true;
                    }
                }
                Ok(None) => panic!("helper exited; its log:\n{}", self.seen.join("\n")),
                Err(_) => return false,
            }
        }
    }
}

/// Presses a button and waits for the helper to log that it acted. The
/// helper subscribes to `ActionInvoked` just after its `Notify` returns, so
/// a press made at once can come before it listens (a person is never that
/// fast); such a press is lost, so it is repeated, each time waiting on the
/// log line, until the overall deadline.
async fn press_until_logged(
    server: &NotificationServer,
    log: &mut LogLines,
    id: u32,
    action: &str,
    logged: &str,
) {
    let start = tokio::time::Instant::now();
    while start.elapsed() < DEADLINE {
        server.invoke_action(id, action).await;
        if log.wait_for(logged, Duration::from_millis(500)).await {
            return;
        }
    }
    panic!(
        "pressing {action:?} was never acted on; log:\n{}",
        log.seen.join("\n")
    );
}
