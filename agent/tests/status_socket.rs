//! The status socket over a real unix socket in a temporary directory:
//! status for anyone, `check_now` for root only (a client really running as
//! another uid), and a server that keeps answering whatever one client does
//! (garbage, an oversize line, silence, too many connections).
//!
//! These tests run as root (as the test environment does): the non-root
//! client is this test binary re-executed as uid 65534 through
//! `std::os::unix::process::CommandExt::uid`, so no extra tool is needed.
//! Not running as root is a failure, never a skip.

#![cfg(unix)]
// Test code: a panic is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use palisade_agent::status::{
    self, AgentStatus, ChangeRequest, DeliveryStatus, ErrorCode, PolicyStatus, Request, Response,
    ServeOptions, SpoolStatus, StatusBoard, StatusError, StatusListener,
};
use palisade_shared::report::{CheckResult, CheckStatus, Mode};
use palisade_shared::{DeviceId, KeyId, RuleId};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long any one awaited event may take before the test fails. Generous,
/// because a loaded CI machine is slow; the events themselves take ms.
const DEADLINE: Duration = Duration::from_secs(10);

/// The uid and gid of `nobody` on Debian; any uid but 0 would do.
const NOBODY: u32 = 65534;

/// Where the re-executed client finds its socket and request.
const CLIENT_SOCKET_ENV: &str = "PALISADE_TEST_STATUS_CLIENT_SOCKET";
const CLIENT_REQUEST_ENV: &str = "PALISADE_TEST_STATUS_CLIENT_REQUEST";
/// The prefix of the client's answer line on its stdout, among libtest's.
const CLIENT_ANSWER_PREFIX: &str = "STATUS-CLIENT-ANSWER ";

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {DEADLINE:?}"))
}

fn sample_status() -> AgentStatus {
    AgentStatus {
        schema_version: status::STATUS_SCHEMA_VERSION,
        agent_version: "0.1.0".to_owned(),
        started_at: Utc.with_ymd_and_hms(2025, 6, 2, 7, 0, 0).unwrap(),
        device_id: Some(DeviceId::new("dev_7f3a")),
        key_id: KeyId::parse(&"cd".repeat(32)).unwrap(),
        key_store: "file /var/lib/palisade/device.key (0600)".to_owned(),
        collector_url: Some("https://posture.example.org/".to_owned()),
        policy: Some(PolicyStatus {
            id: "baseline".to_owned(),
            version: 3,
            source: "built-in baseline".to_owned(),
        }),
        last_cycle_at: Some(Utc.with_ymd_and_hms(2025, 6, 2, 9, 59, 0).unwrap()),
        checks: vec![CheckResult {
            id: RuleId::new("screen_lock"),
            status: CheckStatus::Fail,
            mode: Mode::Nudge,
            summary: "screen locks after 1800 s idle; policy allows 900 s".to_owned(),
            evidence: serde_json::json!({ "idle_delay_s": 1800, "source": "dconf" })
                .as_object()
                .unwrap()
                .clone(),
            fix: "Settings → Privacy → Screen Lock: 15 minutes or less.".to_owned(),
            probe_duration_us: 812,
            enforcement: None,
            first_failed_at: None,
            deadline: None,
        }],
        recent_events: Vec::new(),
        spool: SpoolStatus {
            pending_reports: 1,
            pending_bytes: 2048,
            oldest_pending_sequence: Some(12),
            ..SpoolStatus::default()
        },
        delivery: DeliveryStatus::default(),
    }
}

/// A status server on a socket in a fresh temporary directory, with the
/// daemon's ends of the board and the request channel.
struct Server {
    temp: tempfile::TempDir,
    socket: PathBuf,
    board: StatusBoard,
    changes: mpsc::Receiver<ChangeRequest>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(options: ServeOptions) -> Self {
        let temp = tempfile::tempdir().unwrap();
        // Under directories that do not exist yet: bind makes them.
        let socket = temp.path().join("run").join("palisade").join("agent.sock");
        let board = StatusBoard::new(sample_status());
        let (requests, changes) = mpsc::channel(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = StatusListener::bind(&socket).unwrap();
        let reader = board.subscribe();
        let task = tokio::spawn(listener.serve(reader, requests, options, async {
            let _ = stopped.await;
        }));
        Self {
            temp,
            socket,
            board,
            changes,
            stop,
            task,
        }
    }

    async fn query(&self, request: Request) -> Response {
        within("query", status::query(&self.socket, &request))
            .await
            .unwrap()
    }

    async fn assert_still_serving(&self) {
        let got = self.query(Request::Status {}).await;
        assert_eq!(got, Response::Status(Box::new(self.board.current())));
    }

    async fn shut_down(self) {
        self.stop.send(()).unwrap();
        within("shutdown", self.task).await.unwrap();
        assert!(!self.socket.exists(), "the socket is removed at shutdown");
    }
}

/// Connects without the client library, to send what a broken or hostile
/// client would.
async fn connect(socket: &Path) -> UnixStream {
    within("connect", UnixStream::connect(socket))
        .await
        .unwrap()
}

/// Reads everything the server sends until it closes. A reset after the
/// answer counts as the close: Linux resets the connection when the server
/// closes with request bytes it did not read (an oversize request).
async fn read_all(stream: &mut UnixStream) -> String {
    let mut answer = Vec::new();
    within("answer", async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(err) => panic!("reading the answer: {err}"),
            }
        }
    })
    .await;
    String::from_utf8(answer).unwrap()
}

/// Sends raw bytes, closes the sending side, and returns the server's whole
/// answer. The server may answer and close before reading everything (a
/// busy server, an oversize request): a failed send is then no error.
async fn raw_exchange(socket: &Path, bytes: &[u8]) -> String {
    let mut stream = connect(socket).await;
    let sent = within("send", async {
        stream.write_all(bytes).await?;
        stream.shutdown().await
    })
    .await;
    if let Err(err) = sent {
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "sending: {err}"
        );
    }
    read_all(&mut stream).await
}

/// The error code of a one-line error answer.
fn error_code(answer: &str) -> String {
    assert!(answer.ends_with('\n'), "one line: {answer:?}");
    assert_eq!(answer.matches('\n').count(), 1, "one line: {answer:?}");
    let value: serde_json::Value = serde_json::from_str(answer).unwrap();
    assert!(value["message"].is_string(), "{answer}");
    value["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn status_answers_exactly_what_the_board_holds() {
    let server = Server::start(ServeOptions::default()).await;
    let got = server.query(Request::Status {}).await;
    assert_eq!(got, Response::Status(Box::new(sample_status())));

    // On the wire: the bare document, one line, then the server closes.
    let answer = raw_exchange(&server.socket, b"{\"request\":\"status\"}\n").await;
    let expected = serde_json::to_string(&sample_status()).unwrap() + "\n";
    assert_eq!(answer, expected);

    let fetched = within("fetch", status::fetch_status(&server.socket))
        .await
        .unwrap();
    assert_eq!(fetched, sample_status());
    server.shut_down().await;
}

#[tokio::test]
async fn a_board_update_is_visible_on_the_next_query() {
    let server = Server::start(ServeOptions::default()).await;
    server.assert_still_serving().await;
    let finished = Utc.with_ymd_and_hms(2025, 6, 2, 10, 5, 0).unwrap();
    server.board.set_cycle(finished, Vec::new());
    server
        .board
        .record_delivery_failed(finished, "HTTP 503: maintenance");
    let Response::Status(seen) = server.query(Request::Status {}).await else {
        panic!("not a status answer");
    };
    assert_eq!(seen.last_cycle_at, Some(finished));
    assert!(seen.checks.is_empty());
    assert_eq!(
        seen.delivery.last_error.as_deref(),
        Some("HTTP 503: maintenance")
    );
    assert_eq!(*seen, server.board.current());
    server.shut_down().await;
}

#[tokio::test]
async fn check_now_from_root_reaches_the_daemon() {
    let mut server = Server::start(ServeOptions::default()).await;
    let got = server.query(Request::CheckNow {}).await;
    assert_eq!(
        got,
        Response::Accepted(status::Accepted {
            accepted: ChangeRequest::CheckNow
        }),
        "these tests must run as root"
    );
    let received = within("change request", server.changes.recv()).await;
    assert_eq!(received, Some(ChangeRequest::CheckNow));

    within("check_now", status::request_check_now(&server.socket))
        .await
        .unwrap();
    let received = within("change request", server.changes.recv()).await;
    assert_eq!(received, Some(ChangeRequest::CheckNow));
    server.shut_down().await;
}

/// Not a test on its own: the body of the non-root client that
/// `check_now_from_another_user_is_forbidden_but_status_is_open` runs (this
/// binary, re-executed as uid 65534). Without its environment it returns at
/// once.
#[test]
fn nonroot_client_helper() {
    use std::io::{BufRead as _, Write as _};

    let (Some(socket), Some(request)) = (
        std::env::var_os(CLIENT_SOCKET_ENV),
        std::env::var_os(CLIENT_REQUEST_ENV),
    ) else {
        return;
    };
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    let mut line = request.into_string().unwrap();
    line.push('\n');
    stream.write_all(line.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut answer)
        .unwrap();
    println!("{CLIENT_ANSWER_PREFIX}{}", answer.trim_end());
}

/// Runs `request` through [`nonroot_client_helper`] as uid and gid 65534
/// with no supplementary groups, and returns the answer line.
async fn exchange_as_nobody(temp: &Path, socket: &Path, request: &str) -> String {
    // A copy of this binary the other user can surely execute, wherever the
    // target directory is (it may sit under a 0700 home).
    let client = temp.join("status-client");
    if !client.exists() {
        std::fs::copy(std::env::current_exe().unwrap(), &client).unwrap();
        std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut command = tokio::process::Command::new(&client);
    command
        .args([
            "nonroot_client_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env(CLIENT_SOCKET_ENV, socket)
        .env(CLIENT_REQUEST_ENV, request)
        // Dropping privileges needs root; std also clears the supplementary
        // groups (setgroups) because it is told a uid.
        .uid(NOBODY)
        .gid(NOBODY)
        .kill_on_drop(true);
    let output = within("client as nobody", command.output())
        .await
        .unwrap_or_else(|err| {
            panic!(
                "cannot run {} as uid {NOBODY} (are the tests root?): {err}",
                client.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client as uid {NOBODY} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
        .lines()
        // libtest may print "test … ... " on the same line first.
        .find_map(|line| {
            line.split_once(CLIENT_ANSWER_PREFIX)
                .map(|(_, answer)| answer)
        })
        .unwrap_or_else(|| {
            panic!("no answer from the client\nstdout:\n{stdout}\nstderr:\n{stderr}")
        })
        .to_owned()
}

#[tokio::test]
async fn check_now_from_another_user_is_forbidden_but_status_is_open() {
    let mut server = Server::start(ServeOptions::default()).await;
    // The other user must reach the socket: tempdir makes its root 0700.
    for dir in server.socket.ancestors().skip(1) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if dir == server.temp.path() {
            break;
        }
    }
    let temp = server.temp.path().to_owned();

    let answer = exchange_as_nobody(&temp, &server.socket, r#"{"request":"check_now"}"#).await;
    assert_eq!(error_code(&format!("{answer}\n")), "forbidden", "{answer}");
    assert!(
        server.changes.try_recv().is_err(),
        "a refused request never reaches the daemon"
    );

    // Reading is open to every local user: that is what mode 0666 is for.
    let answer = exchange_as_nobody(&temp, &server.socket, r#"{"request":"status"}"#).await;
    let seen: AgentStatus = serde_json::from_str(&answer).unwrap();
    assert_eq!(seen, server.board.current());

    server.shut_down().await;
}

#[tokio::test]
async fn malformed_and_unknown_requests_get_bad_request_and_the_server_goes_on() {
    let server = Server::start(ServeOptions::default()).await;
    for request in [
        &b"{\"request\":\n"[..],
        b"not json at all\n",
        b"{\"request\":\"reboot\"}\n",
        b"{\"request\":\"status\",\"also\":\"this\"}\n",
        b"{\"command\":\"status\"}\n",
        b"\xff\xfe\n",
        b"\n",
        // Closing its side without a newline still ends the request.
        b"{\"request\":",
        b"",
        b"   ",
    ] {
        let answer = raw_exchange(&server.socket, request).await;
        assert_eq!(
            error_code(&answer),
            "bad_request",
            "{:?}",
            String::from_utf8_lossy(request)
        );
        server.assert_still_serving().await;
    }

    // A client that hangs up at once, or never reads its answer, is no
    // concern of the next one.
    drop(connect(&server.socket).await);
    let mut rude = connect(&server.socket).await;
    rude.write_all(b"{\"request\":\"status\"}\n").await.unwrap();
    drop(rude);
    server.assert_still_serving().await;
    server.shut_down().await;
}

#[tokio::test]
async fn an_oversize_request_is_refused_and_one_at_the_limit_is_served() {
    let server = Server::start(ServeOptions::default()).await;
    let limit = status::MAX_REQUEST_BYTES;

    // Whitespace is valid JSON padding: exactly the limit, then the newline.
    let mut at_limit = b"{\"request\":\"status\"}".to_vec();
    at_limit.resize(limit, b' ');
    at_limit.push(b'\n');
    let answer = raw_exchange(&server.socket, &at_limit).await;
    let seen: AgentStatus = serde_json::from_str(&answer).unwrap();
    assert_eq!(seen, server.board.current());

    let mut over = b"{\"request\":\"status\"}".to_vec();
    over.resize(limit + 1, b' ');
    over.push(b'\n');
    let answer = raw_exchange(&server.socket, &over).await;
    assert_eq!(error_code(&answer), "bad_request");
    assert!(
        answer.contains(&format!("larger than {limit} bytes")),
        "{answer}"
    );

    // A client streaming a megabyte without a newline is answered after
    // the limit, not read to the end.
    let mut flood = connect(&server.socket).await;
    let (mut flood_read, mut flood_write) = flood.split();
    let junk = vec![b'x'; 1024 * 1024];
    let (_, answer) = within("flood", async {
        tokio::join!(
            // The server stops reading after the limit and closes, so this
            // write ends with an error once the socket buffers are full.
            flood_write.write_all(&junk),
            async {
                let mut answer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match flood_read.read(&mut chunk).await {
                        Ok(0) => break,
                        Ok(n) => answer.extend_from_slice(&chunk[..n]),
                        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
                        Err(err) => panic!("reading the answer: {err}"),
                    }
                }
                String::from_utf8(answer).unwrap()
            },
        )
    })
    .await;
    assert_eq!(error_code(&answer), "bad_request");
    drop(flood);
    server.assert_still_serving().await;
    server.shut_down().await;
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_others() {
    // The default limits, so the silent client is still within its
    // 5 s while the others are served.
    let server = Server::start(ServeOptions::default()).await;
    let mut silent = connect(&server.socket).await;
    let mut trickling = connect(&server.socket).await;
    trickling.write_all(b"{\"requ").await.unwrap();

    server.assert_still_serving().await;
    let mut other = [0u8; 1];
    for (name, stream) in [("silent", &mut silent), ("trickling", &mut trickling)] {
        match stream.try_read(&mut other) {
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            result => panic!("the {name} client should still be waiting, got {result:?}"),
        }
    }
    server.shut_down().await;
}

#[tokio::test]
async fn a_silent_client_is_told_timeout_and_let_go() {
    let server = Server::start(ServeOptions {
        read_timeout: Duration::from_millis(200),
        ..ServeOptions::default()
    })
    .await;
    let mut silent = connect(&server.socket).await;
    let mut trickling = connect(&server.socket).await;
    trickling.write_all(b"{\"requ").await.unwrap();
    for stream in [&mut silent, &mut trickling] {
        let answer = read_all(stream).await;
        assert_eq!(error_code(&answer), "timeout", "{answer}");
    }
    server.assert_still_serving().await;
    server.shut_down().await;
}

#[tokio::test]
async fn clients_over_the_limit_are_told_busy_at_once() {
    let server = Server::start(ServeOptions {
        max_connections: 1,
        ..ServeOptions::default()
    })
    .await;
    // Accepted first (connections are accepted in order), it holds the only
    // slot while it says nothing.
    let mut holder = connect(&server.socket).await;
    let answer = raw_exchange(&server.socket, b"{\"request\":\"status\"}\n").await;
    assert_eq!(error_code(&answer), "busy", "{answer}");

    holder
        .write_all(b"{\"request\":\"status\"}\n")
        .await
        .unwrap();
    let answer = read_all(&mut holder).await;
    let seen: AgentStatus = serde_json::from_str(&answer).unwrap();
    assert_eq!(seen, server.board.current());
    server.shut_down().await;
}

#[tokio::test]
async fn the_socket_is_open_to_all_and_its_directory_is_made() {
    let server = Server::start(ServeOptions::default()).await;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&server.socket), 0o666);
    assert_eq!(mode(server.socket.parent().unwrap()), 0o755);
    server.shut_down().await;
}

#[tokio::test]
async fn a_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not() {
    let temp = tempfile::tempdir().unwrap();
    let socket = temp.path().join("agent.sock");

    // Left by a crashed agent: the file stays, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let err = within("query", status::query(&socket, &Request::Status {}))
        .await
        .unwrap_err();
    assert!(matches!(err, StatusError::NotListening { .. }), "{err}");
    let listener = StatusListener::bind(&socket).unwrap();
    assert_eq!(listener.path(), socket);
    drop(listener);
    assert!(!socket.exists(), "a listener takes its socket file with it");

    // Another agent is serving there.
    let live = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let err = StatusListener::bind(&socket).unwrap_err();
    assert!(matches!(err, StatusError::AlreadyServing { .. }), "{err}");
    assert!(socket.exists());
    drop(live);
    std::fs::remove_file(&socket).unwrap();

    // A mistyped socket_path must never delete a file.
    std::fs::write(&socket, "precious").unwrap();
    let err = StatusListener::bind(&socket).unwrap_err();
    assert!(matches!(err, StatusError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
}

#[tokio::test]
async fn serve_binds_serves_and_cleans_up() {
    let temp = tempfile::tempdir().unwrap();
    let socket = temp.path().join("agent.sock");
    let board = StatusBoard::new(sample_status());
    let (requests, _changes) = mpsc::channel(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = status::serve(&socket, board.subscribe(), requests, async {
        let _ = stopped.await;
    });
    let client = async {
        let got = status::fetch_status(&socket).await;
        stop.send(()).unwrap();
        got
    };
    // `biased`: the server is polled first, so it has bound before the
    // client connects.
    let (served, fetched) = within("serve and fetch", async {
        tokio::join!(
            async {
                tokio::select! {
                    biased;
                    served = server => served,
                }
            },
            client
        )
    })
    .await;
    served.unwrap();
    assert_eq!(fetched.unwrap(), board.current());
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

#[tokio::test]
async fn a_query_without_an_agent_says_it_is_not_running() {
    let temp = tempfile::tempdir().unwrap();
    let socket = temp.path().join("agent.sock");
    let err = within("query", status::query(&socket, &Request::Status {}))
        .await
        .unwrap_err();
    assert!(matches!(err, StatusError::NotRunning { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the agent is not running (no socket at {})",
            socket.display()
        )
    );
}

#[tokio::test]
async fn a_server_that_never_answers_makes_the_query_time_out() {
    let temp = tempfile::tempdir().unwrap();
    let socket = temp.path().join("agent.sock");
    let _mute = tokio::net::UnixListener::bind(&socket).unwrap();
    let err = status::query_within(&socket, &Request::Status {}, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, StatusError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("did not answer"), "{err}");
}

#[tokio::test]
async fn a_refusal_reaches_the_caller_as_an_error() {
    let mut server = Server::start(ServeOptions::default()).await;
    // The daemon has stopped taking requests.
    server.changes.close();
    let err = within("check_now", status::request_check_now(&server.socket))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StatusError::Refused {
                code: ErrorCode::Unavailable,
                ..
            }
        ),
        "{err:?}"
    );
    server.shut_down().await;
}

#[tokio::test]
async fn a_dropped_server_removes_its_socket_but_never_a_successor() {
    let server = Server::start(ServeOptions::default()).await;
    server.task.abort();
    let aborted = within("abort", server.task).await.unwrap_err();
    assert!(aborted.is_cancelled());
    assert!(
        !server.socket.exists(),
        "an aborted server removes its socket"
    );

    // Another agent's socket now sits at the path: leaving must not take it.
    let socket = server.temp.path().join("agent.sock");
    let ours = StatusListener::bind(&socket).unwrap();
    std::fs::remove_file(&socket).unwrap();
    let successor = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(ours);
    assert!(socket.exists(), "the successor's socket stays");
    drop(successor);
}
