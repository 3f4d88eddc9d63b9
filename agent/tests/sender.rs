//! The sender (`daemon::sender`) over real HTTPS, against a test server that
//! can be told how to answer each request: a status code, no answer at all
//! (held past the client's request timeout), or the connection dropped half
//! way through the request body.
//!
//! The client is the agent's own (`daemon::http::client`) built from a parsed
//! `agent.toml` whose `ca_file` is the test CA made here with rcgen, and the
//! spool is a real one holding real signed report envelopes. The server
//! records every request it reads on a channel, and the tests wait on that
//! channel (or on the status board) with a deadline; nothing sleeps.
//!
//! Backoff timings are not asserted: `backoff_max_seconds = 1` keeps each
//! retry under a second, and `sender::backoff` has its own unit test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed assertion

use std::collections::VecDeque;
use std::io::{BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use ed25519_dalek::SigningKey;
use palisade_agent::config::AgentConfig;
use palisade_agent::daemon::{enroll, http, sender};
use palisade_agent::identity::{Identity, KeyStore};
use palisade_agent::spool::{Spool, SpoolLimits};
use palisade_agent::status::{AgentStatus, StatusBoard};
use palisade_agent::sys::Host;
use palisade_shared::envelope::{DEFAULT_MAX_ENVELOPE_BYTES, REPORT_PAYLOAD_TYPE};
use palisade_shared::{DeviceId, Envelope, Policy, Report};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::{mpsc, watch};

/// Everything here happens on loopback in milliseconds, plus at most a
/// second of request timeout and a second of backoff per retry; a deadline
/// this long only matters when something is broken.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The tests

#[tokio::test]
async fn a_2xx_removes_the_report_and_the_board_records_the_delivery() {
    let ca = TestCa::new();
    let mut server = TestServer::start(&ca.server_identity());
    let fixture = Fixture::new(&ca, &server);
    let spooled = fixture.spool_reports(1);
    assert_eq!(fixture.board.current().delivery.last_delivered_at, None);

    fixture.drain().await;

    let seen = server.next_request().await;
    assert_eq!(seen.answer, Answer::ok());
    assert_eq!(
        seen.body, spooled[0].1,
        "the bytes sent are the spooled bytes"
    );
    assert!(fixture.pending().is_empty(), "acknowledged, so removed");
    let status = fixture.board.current();
    assert!(status.delivery.last_delivered_at.is_some(), "{status:?}");
    assert_eq!(status.delivery.last_error, None, "{status:?}");
    assert_eq!(status.spool.pending_reports, 0, "{status:?}");
    assert_eq!(status.spool.oldest_pending_sequence, None, "{status:?}");
}

#[tokio::test]
async fn a_5xx_keeps_the_report_and_the_backlog_goes_in_order_once_the_collector_answers() {
    let ca = TestCa::new();
    let mut server = TestServer::start(&ca.server_identity());
    server.script([
        Answer::Status(503, r#"{"error":"unavailable","message":"store busy"}"#),
        Answer::Status(500, r#"{"error":"internal","message":"oops"}"#),
    ]);
    let fixture = Fixture::new(&ca, &server);
    let spooled = fixture.spool_reports(3);

    fixture.drain().await;

    // Report 1 twice refused with a 5xx, then all three in order: the
    // retried bytes are the spooled bytes, so report 1 stayed in the spool.
    let seen = server.requests(5).await;
    let answers: Vec<_> = seen.iter().map(|s| s.answer.clone()).collect();
    assert_eq!(
        answers,
        [
            Answer::Status(503, r#"{"error":"unavailable","message":"store busy"}"#),
            Answer::Status(500, r#"{"error":"internal","message":"oops"}"#),
            Answer::ok(),
            Answer::ok(),
            Answer::ok(),
        ]
    );
    let sent: Vec<&[u8]> = seen.iter().map(|s| s.body.as_slice()).collect();
    let expected: Vec<&[u8]> = [0, 0, 0, 1, 2]
        .iter()
        .map(|&i| spooled[i].1.as_slice())
        .collect();
    assert_eq!(sent, expected, "sequences {:?}", sequences(&seen));
    assert!(fixture.pending().is_empty());
    assert!(
        server.nothing_more_seen(),
        "nothing sent after the spool emptied"
    );
}

#[tokio::test]
async fn a_held_request_times_out_and_the_report_is_retried() {
    let ca = TestCa::new();
    let mut server = TestServer::start(&ca.server_identity());
    server.script([Answer::Hold]);
    let fixture = Fixture::new(&ca, &server);
    let spooled = fixture.spool_reports(2);
    let mut board = fixture.board.subscribe();
    let drain = fixture.spawn_drain();

    let held = server.next_request().await;
    assert_eq!((held.answer, sequence_of(&held.body)), (Answer::Hold, 1));
    // The client gives up after request_timeout_seconds and says why.
    let error = wait_for_error(&mut board).await;
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(fixture.pending(), [1, 2], "a timed-out report stays");

    drain.finish().await;
    let retried = server.requests(2).await;
    assert_eq!(retried[0].body, spooled[0].1, "report 1 again, unchanged");
    assert_eq!(retried[1].body, spooled[1].1);
    assert!(fixture.pending().is_empty());
}

#[tokio::test]
async fn a_connection_dropped_mid_request_keeps_the_report_for_a_retry() {
    let ca = TestCa::new();
    let mut server = TestServer::start(&ca.server_identity());
    server.script([Answer::DropMidRequest]);
    let fixture = Fixture::new(&ca, &server);
    let spooled = fixture.spool_reports(2);
    let mut board = fixture.board.subscribe();
    let drain = fixture.spawn_drain();

    let dropped = server.next_request().await;
    assert_eq!(dropped.answer, Answer::DropMidRequest);
    assert!(
        !dropped.body.is_empty() && spooled[0].1.starts_with(&dropped.body),
        "the server read only the start of report 1"
    );
    let error = wait_for_error(&mut board).await;
    assert!(error.contains("error sending request"), "{error}");
    assert_eq!(fixture.pending(), [1, 2], "an unanswered report stays");

    drain.finish().await;
    let retried = server.requests(2).await;
    assert_eq!(retried[0].body, spooled[0].1, "report 1 again, whole");
    assert_eq!(retried[1].body, spooled[1].1);
    assert!(fixture.pending().is_empty());
}

#[tokio::test]
async fn a_4xx_drops_the_report_with_its_reason_and_the_next_report_still_goes() {
    let ca = TestCa::new();
    let mut server = TestServer::start(&ca.server_identity());
    let revoked = r#"{"error":"key_revoked","message":"this device key has been revoked"}"#;
    server.script([Answer::Status(401, revoked)]);
    let fixture = Fixture::new(&ca, &server);
    let first = fixture.spool_reports(1);

    fixture.drain().await;

    let refused = server.next_request().await;
    assert_eq!(refused.answer, Answer::Status(401, revoked));
    assert_eq!(refused.body, first[0].1);
    assert!(fixture.pending().is_empty(), "refused for good, so dropped");
    let status = fixture.board.current();
    let error = status.delivery.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("report 1 refused for good with HTTP 401")
            && error.contains("this device key has been revoked"),
        "{status:?}"
    );
    assert_eq!(status.delivery.last_delivered_at, None, "{status:?}");

    // The next report is not stuck behind the refused one.
    let second = fixture.spool_reports(1);
    fixture.drain().await;
    let delivered = server.next_request().await;
    assert_eq!(
        (delivered.answer, &delivered.body),
        (Answer::ok(), &second[0].1)
    );
    assert_eq!(sequence_of(&delivered.body), 2);
    assert!(fixture.pending().is_empty());
    assert!(fixture.board.current().delivery.last_delivered_at.is_some());
}

#[tokio::test]
async fn a_4xx_in_the_middle_of_a_backlog_drops_only_that_report() {
    let ca = TestCa::new();
    let mut server = TestServer::start(&ca.server_identity());
    let conflict = r#"{"error":"sequence_conflict","message":"taken"}"#;
    server.script([Answer::ok(), Answer::Status(409, conflict), Answer::ok()]);
    let fixture = Fixture::new(&ca, &server);
    let spooled = fixture.spool_reports(3);

    fixture.drain().await;

    let seen = server.requests(3).await;
    assert_eq!(sequences(&seen), [1, 2, 3], "one attempt each, in order");
    for (seen, (_, bytes)) in seen.iter().zip(&spooled) {
        assert_eq!(&seen.body, bytes);
    }
    assert!(fixture.pending().is_empty());
    assert!(
        server.nothing_more_seen(),
        "the refused report is not retried"
    );
}

#[tokio::test]
async fn a_server_certificate_not_signed_by_ca_file_is_not_trusted() {
    let trusted = TestCa::new();
    let impostor = TestCa::named("an impostor's CA");
    let mut server = TestServer::start(&impostor.server_identity());
    let fixture = Fixture::new(&trusted, &server);
    fixture.spool_reports(1);
    let mut board = fixture.board.subscribe();
    let drain = fixture.spawn_drain();

    let error = wait_for_error(&mut board).await;
    assert!(error.contains("certificate"), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");
    match server.next().await {
        Seen::HandshakeFailed(reason) => assert!(reason.contains("alert"), "{reason}"),
        Seen::Request(request) => panic!("a request got through: {request:?}"),
    }
    drain.stop().await;
    assert_eq!(fixture.pending(), [1], "not delivered, so still spooled");
    assert_eq!(fixture.board.current().delivery.last_delivered_at, None);
}

#[test]
fn plain_http_to_a_collector_off_loopback_is_refused_by_the_config() {
    for url in [
        "http://collector.example.org",
        "http://10.1.2.3:8443",
        "http://[2001:db8::1]",
    ] {
        let problems = AgentConfig::parse(&format!("collector_url = \"{url}\"\n"))
            .expect_err(url)
            .to_string();
        assert!(
            problems.contains("collector_url") && problems.contains("must travel over https"),
            "{url}: {problems}"
        );
    }
    for url in [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://[::1]:8080",
        "https://collector.example.org",
    ] {
        let config = AgentConfig::parse(&format!("collector_url = \"{url}\"\n"));
        assert!(config.is_ok(), "{url}: {config:?}");
    }
}

// ---------------------------------------------------------------------------
// A certificate authority and the server's certificate, made with rcgen.

struct TestCa {
    certificate: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A server's chain and private key.
struct ServerIdentity {
    chain: Vec<CertificateDer<'static>>,
    key_pkcs8: Vec<u8>,
}

impl TestCa {
    fn new() -> Self {
        Self::named("palisade sender test CA")
    }

    fn named(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        Self { certificate, key }
    }

    fn pem(&self) -> String {
        self.certificate.pem()
    }

    /// A leaf certificate for 127.0.0.1, signed by this CA.
    fn server_identity(&self) -> ServerIdentity {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = params
            .signed_by(&key, &self.certificate, &self.key)
            .unwrap();
        ServerIdentity {
            chain: vec![leaf.der().clone()],
            key_pkcs8: key.serialize_der(),
        }
    }
}

// ---------------------------------------------------------------------------
// The test server: blocking rustls over std sockets, one thread per
// connection, HTTP/1.1 with keep-alive, answering each request as scripted.

/// How to answer one request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// This status and JSON body.
    Status(u16, &'static str),
    /// Read the request, then never answer: wait until the client gives up
    /// and closes the connection.
    Hold,
    /// Read the headers and half the body, then close the connection.
    DropMidRequest,
}

impl Answer {
    /// What the collector answers a stored report with.
    fn ok() -> Self {
        Self::Status(200, r#"{"status":"stored"}"#)
    }
}

/// One request as the server read it, and how it answered.
#[derive(Debug)]
struct SeenRequest {
    answer: Answer,
    /// The body, or for [`Answer::DropMidRequest`] the part read.
    body: Vec<u8>,
}

#[derive(Debug)]
enum Seen {
    Request(SeenRequest),
    /// A TLS handshake failed; the client's alert, as rustls words it.
    HandshakeFailed(String),
}

struct TestServer {
    /// `https://127.0.0.1:PORT`
    url: String,
    /// Answers for the next requests, in order; an empty script answers
    /// [`Answer::ok`].
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl TestServer {
    fn start(identity: &ServerIdentity) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                identity.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8.clone())),
            )
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let accept_script = Arc::clone(&script);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                // The test is over once it stopped listening.
                if seen_tx.is_closed() {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (config, script, seen_tx) = (
                    Arc::clone(&config),
                    Arc::clone(&accept_script),
                    seen_tx.clone(),
                );
                std::thread::spawn(move || serve_connection(stream, config, &script, &seen_tx));
            }
        });
        Self { url, script, seen }
    }

    fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().extend(answers);
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(DEADLINE, self.seen.recv())
            .await
            .unwrap_or_else(|_| panic!("the server saw nothing within {DEADLINE:?}"))
            .expect("the server thread is gone")
    }

    async fn next_request(&mut self) -> SeenRequest {
        match self.next().await {
            Seen::Request(request) => request,
            Seen::HandshakeFailed(reason) => panic!("a TLS handshake failed: {reason}"),
        }
    }

    async fn requests(&mut self, count: usize) -> Vec<SeenRequest> {
        let mut requests = Vec::with_capacity(count);
        for _ in 0..count {
            requests.push(self.next_request().await);
        }
        requests
    }

    /// Whether nothing else reached the server (checked once the sender has
    /// returned, so nothing can still be on its way).
    fn nothing_more_seen(&mut self) -> bool {
        self.seen.try_recv().is_err()
    }
}

fn serve_connection(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    script: &Mutex<VecDeque<Answer>>,
    seen: &mpsc::UnboundedSender<Seen>,
) {
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    while tls.conn.is_handshaking() {
        if let Err(err) = tls.conn.complete_io(&mut tls.sock) {
            let _ = seen.send(Seen::HandshakeFailed(err.to_string()));
            return;
        }
    }
    let mut reader = BufReader::new(tls);
    // One request after another on the kept-alive connection, until the
    // client closes it.
    while let Some(content_length) = read_head(&mut reader) {
        let answer = script
            .lock()
            .ok()
            .and_then(|mut script| script.pop_front())
            .unwrap_or_else(Answer::ok);
        let wanted = match answer {
            Answer::DropMidRequest => content_length / 2,
            _ => content_length,
        };
        let mut body = vec![0; wanted];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let _ = seen.send(Seen::Request(SeenRequest {
            answer: answer.clone(),
            body,
        }));
        match answer {
            Answer::Status(code, text) => {
                let response = format!(
                    "HTTP/1.1 {code} Scripted\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\n\r\n{text}",
                    text.len()
                );
                let tls = reader.get_mut();
                if tls.write_all(response.as_bytes()).is_err() || tls.flush().is_err() {
                    return;
                }
            }
            Answer::Hold => {
                // Blocks until the client's timeout closes the connection.
                let mut sink = [0; 1024];
                while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            Answer::DropMidRequest => {
                let _ = reader.get_ref().sock.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Reads a request line and headers; returns the content length, or `None`
/// when the client closed the connection (or sent something unreadable).
fn read_head(reader: &mut impl std::io::BufRead) -> Option<usize> {
    let mut content_length = 0;
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if first {
            first = false;
            if !line.starts_with("POST /api/v1/reports HTTP/1.1") {
                return None;
            }
            continue;
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Some(content_length);
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().ok()?;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The agent's side: config, client, spool, board and sender.

struct Fixture {
    _dir: tempfile::TempDir,
    spool: Arc<Mutex<Spool>>,
    key: SigningKey,
    policy: Policy,
    /// An empty host tree: the reports' host facts do not matter here.
    host: Host,
    board: StatusBoard,
    sender: sender::Sender,
}

impl Fixture {
    /// A sender built as the daemon builds it, from a parsed config that
    /// trusts `ca` and points at `server`.
    fn new(ca: &TestCa, server: &TestServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("collector-ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let config = AgentConfig::parse(&format!(
            "collector_url = \"{}\"\n\
             ca_file = \"{}\"\n\
             state_dir = \"{}\"\n\
             request_timeout_seconds = 1\n\
             connect_timeout_seconds = 1\n\
             backoff_max_seconds = 1\n\
             backlog_reports_per_second = 1000\n",
            server.url,
            ca_file.display(),
            dir.path().join("state").display(),
        ))
        .unwrap();
        let client = http::client(&config).unwrap();
        let collector = config.collector_url.clone().unwrap();
        let reports_url = enroll::endpoint(&collector, "api/v1/reports").unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let identity = Identity {
            key: key.clone(),
            store: KeyStore::file_in(&config.state_dir),
        };
        let board = StatusBoard::new(AgentStatus::starting(&identity, Utc::now()));
        let sender = sender::Sender::new(
            client,
            reports_url,
            config.backoff_max(),
            config.backlog_reports_per_second,
            board.clone(),
        );
        let spool = Spool::open(&config.spool_dir(), SpoolLimits::default()).unwrap();
        board.set_spool(&spool);
        let policy = Policy::parse(palisade_agent::cli::BASELINE_POLICY).unwrap();
        let host = Host::with_root(dir.path().join("host"));
        Self {
            _dir: dir,
            spool: Arc::new(Mutex::new(spool)),
            key,
            policy,
            host,
            board,
            sender,
        }
    }

    /// Spools `count` signed reports as a check cycle does; returns each
    /// one's sequence and envelope bytes.
    fn spool_reports(&self, count: usize) -> Vec<(u64, Vec<u8>)> {
        let mut spool = self.spool.lock().unwrap();
        let spooled = (0..count)
            .map(|_| {
                let mut report =
                    palisade_agent::report::standalone_report(&self.host, &self.policy, Vec::new());
                report.device_id = DeviceId::new("dev_sender_test");
                spool.next_link().apply_to(&mut report, Utc::now());
                let envelope =
                    Envelope::sign(REPORT_PAYLOAD_TYPE, &report.to_payload(), &self.key).to_json();
                let appended = spool.append(&envelope).unwrap();
                (appended.sequence, envelope)
            })
            .collect();
        self.board.set_spool(&spool);
        spooled
    }

    fn pending(&self) -> Vec<u64> {
        self.spool.lock().unwrap().pending()
    }

    /// Drains the spool and returns once it is empty.
    async fn drain(&self) {
        let (_stop_tx, mut stop) = watch::channel(false);
        tokio::time::timeout(DEADLINE, self.sender.drain(&self.spool, &mut stop))
            .await
            .unwrap_or_else(|_| panic!("the spool did not drain within {DEADLINE:?}"));
    }

    /// Drains the spool in a task, to look at it while the sender works.
    fn spawn_drain(&self) -> RunningDrain {
        let (stop_tx, mut stop) = watch::channel(false);
        let (sender, spool) = (self.sender.clone(), Arc::clone(&self.spool));
        let task = tokio::spawn(async move { sender.drain(&spool, &mut stop).await });
        RunningDrain { stop_tx, task }
    }
}

struct RunningDrain {
    stop_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningDrain {
    /// Waits for the drain to empty the spool and return.
    async fn finish(self) {
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .unwrap_or_else(|_| panic!("the spool did not drain within {DEADLINE:?}"))
            .unwrap();
    }

    /// Stops the drain, as the daemon does at shutdown.
    async fn stop(self) {
        self.stop_tx.send(true).unwrap();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .unwrap_or_else(|_| panic!("the sender did not stop within {DEADLINE:?}"))
            .unwrap();
    }
}

/// Waits until the board records a failed delivery; returns its reason.
async fn wait_for_error(board: &mut watch::Receiver<AgentStatus>) -> String {
    let status = tokio::time::timeout(
        DEADLINE,
        board.wait_for(|status| status.delivery.last_error.is_some()),
    )
    .await
    .unwrap_or_else(|_| panic!("no delivery failed within {DEADLINE:?}"))
    .unwrap();
    status.delivery.last_error.clone().unwrap_or_default()
}

fn sequence_of(envelope_json: &[u8]) -> u64 {
    let envelope = Envelope::from_json(envelope_json, DEFAULT_MAX_ENVELOPE_BYTES).unwrap();
    Report::from_json(&envelope.payload_unverified().unwrap())
        .unwrap()
        .sequence
}

fn sequences(seen: &[SeenRequest]) -> Vec<u64> {
    seen.iter().map(|s| sequence_of(&s.body)).collect()
}
