//! The status socket: the daemon's latest verdicts and state, served as JSON
//! to any local user, and the one door through which root may ask it to do
//! something (today: run a check cycle now).
//!
//! This module owns the status document ([`AgentStatus`]), the board the
//! daemon writes it to ([`StatusBoard`]), the server ([`serve`],
//! [`StatusListener`]), the client the CLI and the nudge helper use
//! ([`query`], [`fetch_status`], [`request_check_now`]) and the summary
//! `palisade-agent status` prints ([`render_human`]). It does not run checks,
//! touch the spool or decide anything: the daemon fills the board and acts
//! on the [`ChangeRequest`]s this module hands it.
//!
//! # Wire format
//!
//! One connection carries one exchange: the client writes one JSON object on
//! one line (at most [`MAX_REQUEST_BYTES`] bytes before the newline), the
//! server answers with one JSON object on one line and closes.
//!
//! | request                     | answer                                          |
//! |-----------------------------|-------------------------------------------------|
//! | `{"request":"status"}`      | the [`AgentStatus`] document                    |
//! | `{"request":"check_now"}`   | `{"accepted":"check_now"}` (root only)          |
//! | anything else               | `{"error":"bad_request","message":"…"}`         |
//!
//! Other errors: `forbidden` (a change request from a non-root peer),
//! `timeout` (no complete line within [`READ_TIMEOUT`]), `busy` (already
//! [`MAX_CONNECTIONS`] clients), `unavailable` (the daemon no longer takes
//! change requests, e.g. while stopping). See [`ErrorCode`].
//!
//! # Why the socket is mode 0666
//!
//! Every local user must be able to read status: the nudge helper runs as
//! the person at the keyboard and tells them what is wrong. That is safe
//! because the read side exposes only non-secret posture state: the same
//! verdicts, summaries and fixes the report carries to IT, plus the public
//! key's id and where the key is kept, never the key, the enrollment secret,
//! or the spool's contents. Changes are gated by the peer's credentials as
//! the kernel reports them (`SO_PEERCRED`, `getpeereid`), which a client
//! cannot forge: only uid 0 may ask for one. A hostile local user can at
//! worst occupy connection slots, each for at most [`READ_TIMEOUT`], which
//! delays other status readers but never the checks or the reports.
//!
//! On Windows the socket will be a named pipe (`\\.\pipe\palisade-agent`);
//! until that is written, [`serve`] and [`query`] return
//! [`StatusError::Unsupported`] there.
//!
//! The status document is a local wire format (the CLI and the nudge helper
//! may be other builds than the daemon), so it is `Serialize`, versioned by
//! [`STATUS_SCHEMA_VERSION`] and `deny_unknown_fields` like the shared wire
//! types.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use palisade_shared::report::{CheckResult, CheckStatus, Event};
use palisade_shared::{DeviceId, KeyId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::identity::Identity;
use crate::policy::CurrentPolicy;
use crate::spool::Spool;

/// The only status document version this agent writes and reads. A daemon
/// that adds a field must raise it; a client refuses a version it does not
/// know rather than misread it.
pub const STATUS_SCHEMA_VERSION: u32 = 1;

/// The longest request line accepted, newline excluded. The longest valid
/// request today (`{"request":"check_now"}`) is 23 bytes; 4 KiB leaves room
/// for requests with arguments later, while [`MAX_CONNECTIONS`] clients can
/// make the daemon hold at most 256 KiB of request buffers.
pub const MAX_REQUEST_BYTES: usize = 4096;

/// How long a client has to send its whole request line. A local client
/// writes it in its first system call; 5 s is ample even on a loaded laptop
/// and bounds how long a silent or trickling client holds a slot.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client has to take its answer. A status document is a few KiB
/// and fits in the socket buffer, so this only matters for an answer larger
/// than that sent to a client that never reads.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once. Each logged-in user's nudge helper and an
/// occasional `palisade-agent status` need a handful; 64 bounds the daemon's
/// file descriptors and memory against a local user opening connections in
/// a loop. Beyond it a client gets `busy` at once instead of waiting.
pub const MAX_CONNECTIONS: usize = 64;

/// How long [`query`] waits for the whole exchange. The daemon answers from
/// memory without waiting on a check cycle, so anything near this means it
/// is stuck.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer [`query`] reads. A status with four rules' evidence is
/// a few KiB; 1 MiB stops a broken or impostor server from filling the
/// client's memory.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Events kept on the board for the nudge helper. A helper polling every
/// few seconds never misses one; 32 covers a burst of USB inserts.
pub const RECENT_EVENTS_KEPT: usize = 32;

/// The one uid allowed to change anything: root.
const ROOT_UID: u32 = 0;

/// After a failed `accept` (almost always EMFILE: out of file descriptors)
/// the loop pauses this long, because retrying at once would spin a core
/// while nothing has been freed.
#[cfg(unix)]
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------
// The status document

/// What the daemon knows about itself and the device, as served on the
/// status socket (`{"request":"status"}`) and printed by
/// `palisade-agent status --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentStatus {
    /// Always [`STATUS_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The daemon's semantic version, e.g. `0.1.0`.
    pub agent_version: String,
    /// When this daemon process started.
    pub started_at: DateTime<Utc>,
    /// The collector-assigned device id; `null` until enrolled.
    pub device_id: Option<DeviceId>,
    /// The id of the device's public signing key (hex SHA-256).
    pub key_id: KeyId,
    /// Where the private key is kept, as a person reads it, e.g.
    /// `file /var/lib/palisade/device.key (0600)` or `macOS Keychain`.
    pub key_store: String,
    /// The collector the device is enrolled with; `null` until enrolled.
    pub collector_url: Option<String>,
    /// The policy in force; `null` until the daemon has loaded one.
    pub policy: Option<PolicyStatus>,
    /// When the latest check cycle finished; `null` before the first.
    pub last_cycle_at: Option<DateTime<Utc>>,
    /// The latest cycle's verdicts, in report order.
    pub checks: Vec<CheckResult>,
    /// Things the daemon did or saw that the person at the keyboard should
    /// hear about (a USB stick blocked, a setting enforced), newest last,
    /// at most [`RECENT_EVENTS_KEPT`]. The nudge helper shows each once.
    #[serde(default)]
    pub recent_events: Vec<Event>,
    pub spool: SpoolStatus,
    pub delivery: DeliveryStatus,
}

/// The policy in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyStatus {
    pub id: String,
    pub version: u64,
    /// Where it came from, e.g. `built-in baseline` or `last good policy
    /// from the collector`.
    pub source: String,
}

/// The reports waiting to be delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolStatus {
    /// How many signed reports are in the spool.
    pub pending_reports: u64,
    /// Their total size on disk.
    pub pending_bytes: u64,
    /// The sequence number of the oldest, which is sent next; `null` when
    /// the spool is empty.
    pub oldest_pending_sequence: Option<u64>,
}

/// How delivery to the collector is going.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryStatus {
    /// When the collector last acknowledged a report; `null` if it has not
    /// since the daemon started.
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// Why the latest attempt failed; `null` when it succeeded (or none has
    /// failed yet).
    pub last_error: Option<String>,
    /// When that attempt failed.
    pub last_error_at: Option<DateTime<Utc>>,
}

impl AgentStatus {
    /// The status at daemon start: identity known, everything else still to
    /// come.
    pub fn starting(identity: &Identity, started_at: DateTime<Utc>) -> Self {
        Self {
            schema_version: STATUS_SCHEMA_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at,
            device_id: None,
            key_id: identity.key_id(),
            key_store: identity.store.to_string(),
            collector_url: None,
            policy: None,
            last_cycle_at: None,
            checks: Vec::new(),
            recent_events: Vec::new(),
            spool: SpoolStatus::default(),
            delivery: DeliveryStatus::default(),
        }
    }
}

/// Where the daemon publishes its status. Cheap to clone: every clone
/// writes to the same board, so the loop and the sender task can each hold
/// one.
#[derive(Clone, Debug)]
pub struct StatusBoard {
    sender: watch::Sender<AgentStatus>,
}

impl StatusBoard {
    pub fn new(initial: AgentStatus) -> Self {
        Self {
            sender: watch::Sender::new(initial),
        }
    }

    /// A reader for [`serve`]; it always sees the latest value.
    pub fn subscribe(&self) -> watch::Receiver<AgentStatus> {
        self.sender.subscribe()
    }

    /// A copy of the current status.
    pub fn current(&self) -> AgentStatus {
        self.sender.borrow().clone()
    }

    /// Changes the status in place. Readers see the change on their next
    /// request; this never blocks on them.
    pub fn update(&self, change: impl FnOnce(&mut AgentStatus)) {
        // `send_modify` updates the value even when no one is subscribed.
        self.sender.send_modify(change);
    }

    /// The device enrolled (or its enrollment record was loaded).
    pub fn set_enrollment(&self, device_id: &DeviceId, collector_url: &str) {
        self.update(|status| {
            status.device_id = Some(device_id.clone());
            status.collector_url = Some(collector_url.to_owned());
        });
    }

    /// A policy came into force.
    pub fn set_policy(&self, current: &CurrentPolicy) {
        let policy = PolicyStatus {
            id: current.policy.id.clone(),
            version: current.policy.version,
            source: current.source.to_owned(),
        };
        self.update(|status| status.policy = Some(policy));
    }

    /// A check cycle finished with these verdicts.
    pub fn set_cycle(&self, finished_at: DateTime<Utc>, checks: Vec<CheckResult>) {
        self.update(|status| {
            status.last_cycle_at = Some(finished_at);
            status.checks = checks;
        });
    }

    /// Something happened that the user should hear about; the oldest is
    /// forgotten once more than [`RECENT_EVENTS_KEPT`] are held.
    pub fn record_event(&self, event: Event) {
        self.update(|status| {
            status.recent_events.push(event);
            let excess = status
                .recent_events
                .len()
                .saturating_sub(RECENT_EVENTS_KEPT);
            status.recent_events.drain(..excess);
        });
    }

    /// The spool changed (a report appended, acknowledged or dropped).
    pub fn set_spool(&self, spool: &Spool) {
        let counts = SpoolStatus {
            pending_reports: spool.len() as u64,
            pending_bytes: spool.total_bytes(),
            oldest_pending_sequence: spool.oldest(),
        };
        self.update(|status| status.spool = counts);
    }

    /// The collector acknowledged a report.
    pub fn record_delivered(&self, at: DateTime<Utc>) {
        self.update(|status| {
            status.delivery.last_delivered_at = Some(at);
            status.delivery.last_error = None;
            status.delivery.last_error_at = None;
        });
    }

    /// A delivery attempt failed (it will be retried, or the report was
    /// refused for good).
    pub fn record_delivery_failed(&self, at: DateTime<Utc>, reason: impl Into<String>) {
        let reason = reason.into();
        self.update(|status| {
            status.delivery.last_error = Some(reason);
            status.delivery.last_error_at = Some(at);
        });
    }
}

// ---------------------------------------------------------------------------
// Requests and answers

/// A request line.
///
/// The variants are empty structs rather than unit variants so that
/// `deny_unknown_fields` applies to them: `{"request":"status","x":1}` is
/// refused, not silently read as `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// `{"request":"status"}`: read the [`AgentStatus`]. Anyone may.
    Status {},
    /// `{"request":"check_now"}`: run a check cycle now. Root only.
    CheckNow {},
}

impl Request {
    /// The change this request asks for, if it asks for one.
    pub fn change(self) -> Option<ChangeRequest> {
        match self {
            Self::Status {} => None,
            Self::CheckNow {} => Some(ChangeRequest::CheckNow),
        }
    }

    /// The request as sent on the wire, without the newline.
    pub fn to_json(self) -> String {
        match self {
            Self::Status {} => r#"{"request":"status"}"#.to_owned(),
            Self::CheckNow {} => r#"{"request":"check_now"}"#.to_owned(),
        }
    }
}

/// What a root client asked the daemon to do; [`serve`] sends these on its
/// `requests` channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeRequest {
    /// Run a check cycle now instead of waiting for the next tick.
    CheckNow,
}

/// An answer line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// The answer to `status`: the document itself.
    Status(Box<AgentStatus>),
    /// The answer to a change request the daemon took.
    Accepted(Accepted),
    Error(ErrorResponse),
}

/// `{"accepted":"check_now"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    pub accepted: ChangeRequest,
}

/// `{"error":"forbidden","message":"…"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorResponse {
    pub error: ErrorCode,
    /// A sentence for a person; not for matching.
    pub message: String,
}

/// Why the server did not do what was asked. Stable: clients match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not one JSON request line this server knows, or too long.
    BadRequest,
    /// A change request from a peer that is not root.
    Forbidden,
    /// No complete request line within [`READ_TIMEOUT`].
    Timeout,
    /// Already [`MAX_CONNECTIONS`] clients; try again.
    Busy,
    /// The daemon does not take change requests now (it is stopping).
    Unavailable,
    /// A bug in the daemon; the message says what.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Forbidden => "forbidden",
            Self::Timeout => "timeout",
            Self::Busy => "busy",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Response {
    fn error(error: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error(ErrorResponse {
            error,
            message: message.into(),
        })
    }

    /// The answer line, without the newline.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, numbers, times and string-keyed maps only: serde_json
        // cannot fail on these, but a bug must still produce an answer.
        serde_json::to_vec(self).unwrap_or_else(|err| {
            let fallback = Self::error(
                ErrorCode::Internal,
                format!("cannot encode the answer: {err}"),
            );
            serde_json::to_vec(&fallback).unwrap_or_default()
        })
    }

    /// Reads an answer to `request`. An `error` object is an answer to any
    /// request; otherwise the shape must be the one `request` gets, and a
    /// status document must have a schema version this agent knows.
    pub fn parse(request: Request, line: &[u8]) -> Result<Self, StatusError> {
        let value: serde_json::Value = serde_json::from_slice(line)
            .map_err(|err| StatusError::Protocol(format!("not JSON: {err}")))?;
        if value.get("error").is_some() {
            return serde_json::from_value(value)
                .map(Self::Error)
                .map_err(|err| StatusError::Protocol(format!("bad error answer: {err}")));
        }
        match request {
            Request::Status {} => {
                let version = value.get("schema_version").and_then(|v| v.as_u64());
                if version != Some(u64::from(STATUS_SCHEMA_VERSION)) {
                    return Err(StatusError::Protocol(format!(
                        "the agent sent status schema version {}, this command reads only version {STATUS_SCHEMA_VERSION} \
                         (are the daemon and this command different versions?)",
                        version.map_or("(none)".to_owned(), |v| v.to_string())
                    )));
                }
                serde_json::from_value(value)
                    .map(|status| Self::Status(Box::new(status)))
                    .map_err(|err| StatusError::Protocol(format!("bad status document: {err}")))
            }
            Request::CheckNow {} => serde_json::from_value(value)
                .map(Self::Accepted)
                .map_err(|err| StatusError::Protocol(format!("bad answer to check_now: {err}"))),
        }
    }

    /// The status document, or the server's refusal as an error.
    pub fn into_status(self) -> Result<AgentStatus, StatusError> {
        match self {
            Self::Status(status) => Ok(*status),
            Self::Error(refusal) => Err(StatusError::Refused {
                code: refusal.error,
                message: refusal.message,
            }),
            Self::Accepted(_) => Err(StatusError::Protocol(
                "the agent answered a status request with an acceptance".to_owned(),
            )),
        }
    }
}

/// Why the status socket could not be served or queried. Callers match on
/// this: the CLI turns `NotRunning` into advice, the nudge helper into
/// "waiting for the agent".
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("the agent is not running (no socket at {})", path.display())]
    NotRunning { path: PathBuf },
    #[error(
        "the agent is not running (nothing listens on {}; the socket was left by an earlier run)",
        path.display()
    )]
    NotListening { path: PathBuf },
    #[error("cannot connect to the agent at {}: permission denied", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("the agent did not answer within {} s on {}", after.as_secs(), path.display())]
    Timeout { path: PathBuf, after: Duration },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent's answer cannot be read: {0}")]
    Protocol(String),
    #[error("the agent refused the request ({code}): {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("another agent is already serving status at {}", path.display())]
    AlreadyServing { path: PathBuf },
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
    #[error("named-pipe status is not implemented yet on Windows")]
    Unsupported,
}

/// Whether a peer with this uid may ask for changes. `None` (the kernel
/// could not say who it is) is refused: fail closed.
pub fn may_request_changes(peer_uid: Option<u32>) -> bool {
    peer_uid == Some(ROOT_UID)
}

/// Limits for one server; [`ServeOptions::default`] is what the daemon
/// uses, tests shorten the timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    pub max_request_bytes: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_request_bytes: MAX_REQUEST_BYTES,
            read_timeout: READ_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

// ---------------------------------------------------------------------------
// Server and client entry points

/// Serves status at `socket_path` until `shutdown` resolves, then removes
/// the socket. Binds first ([`StatusListener::bind`]): an error there is
/// returned at once; after that, no client can make it return.
pub async fn serve(
    socket_path: &Path,
    board: watch::Receiver<AgentStatus>,
    requests: mpsc::Sender<ChangeRequest>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StatusError> {
    let listener = StatusListener::bind(socket_path)?;
    listener
        .serve(board, requests, ServeOptions::default(), shutdown)
        .await;
    Ok(())
}

/// Sends one request and reads the answer, within [`QUERY_TIMEOUT`].
pub async fn query(socket_path: &Path, request: &Request) -> Result<Response, StatusError> {
    query_within(socket_path, request, QUERY_TIMEOUT).await
}

/// [`query`] for `status`, with a refusal turned into an error.
pub async fn fetch_status(socket_path: &Path) -> Result<AgentStatus, StatusError> {
    query(socket_path, &Request::Status {}).await?.into_status()
}

/// [`query`] for `check_now`, with a refusal turned into an error.
pub async fn request_check_now(socket_path: &Path) -> Result<(), StatusError> {
    match query(socket_path, &Request::CheckNow {}).await? {
        Response::Accepted(_) => Ok(()),
        Response::Error(refusal) => Err(StatusError::Refused {
            code: refusal.error,
            message: refusal.message,
        }),
        Response::Status(_) => Err(StatusError::Protocol(
            "the agent answered check_now with a status document".to_owned(),
        )),
    }
}

/// [`query`] with a chosen deadline for the whole exchange.
pub async fn query_within(
    socket_path: &Path,
    request: &Request,
    deadline: Duration,
) -> Result<Response, StatusError> {
    #[cfg(unix)]
    {
        match tokio::time::timeout(deadline, unix::exchange(socket_path, *request)).await {
            Ok(result) => result,
            Err(_) => Err(StatusError::Timeout {
                path: socket_path.to_owned(),
                after: deadline,
            }),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (socket_path, request, deadline);
        Err(StatusError::Unsupported)
    }
}

/// A bound status socket, not yet serving. Binding apart from serving lets
/// the daemon report a bad socket path at start, and lets tests know the
/// socket exists before they connect.
#[derive(Debug)]
pub struct StatusListener {
    #[cfg(unix)]
    inner: unix::Bound,
    #[cfg(not(unix))]
    never: std::convert::Infallible,
}

impl StatusListener {
    /// Creates the socket at `socket_path`, mode 0666: makes the parent
    /// directory (0755) if it is missing, and replaces a socket left by an
    /// earlier run. Refuses to replace a socket another process still
    /// listens on, or a file that is not a socket. Must be called inside a
    /// tokio runtime.
    pub fn bind(socket_path: &Path) -> Result<Self, StatusError> {
        #[cfg(unix)]
        {
            unix::Bound::bind(socket_path).map(|inner| Self { inner })
        }
        #[cfg(not(unix))]
        {
            let _ = socket_path;
            Err(StatusError::Unsupported)
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        #[cfg(unix)]
        {
            &self.inner.path
        }
        #[cfg(not(unix))]
        {
            match self.never {}
        }
    }

    /// Answers clients until `shutdown` resolves, each connection in its own
    /// task. One client's error never stops the loop. The socket file is
    /// removed when this returns or is dropped (if it is still the one
    /// bound here).
    pub async fn serve(
        self,
        board: watch::Receiver<AgentStatus>,
        requests: mpsc::Sender<ChangeRequest>,
        options: ServeOptions,
        shutdown: impl Future<Output = ()>,
    ) {
        #[cfg(unix)]
        {
            unix::serve(self.inner, board, requests, options, shutdown).await;
        }
        #[cfg(not(unix))]
        {
            let _ = (board, requests, options, shutdown);
            match self.never {}
        }
    }
}

// ---------------------------------------------------------------------------
// The answer to one request: pure but for the board read and the channel.

/// Parses one request line (newline stripped).
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(
            r#"empty request: send one JSON object on one line, e.g. {"request":"status"}"#
                .to_owned(),
        );
    }
    serde_json::from_slice(line).map_err(|err| {
        format!(r#"{err}; the requests are {{"request":"status"}} and {{"request":"check_now"}}"#)
    })
}

/// The answer to one request line from a peer with `peer_uid`.
// Only the unix server calls it until the named-pipe server exists.
#[cfg_attr(not(unix), allow(dead_code))]
fn answer(
    line: &[u8],
    peer_uid: impl FnOnce() -> Option<u32>,
    board: &watch::Receiver<AgentStatus>,
    requests: &mpsc::Sender<ChangeRequest>,
) -> Response {
    let request = match parse_request(line) {
        Ok(request) => request,
        Err(message) => return Response::error(ErrorCode::BadRequest, message),
    };
    let Some(change) = request.change() else {
        return Response::Status(Box::new(board.borrow().clone()));
    };
    let uid = peer_uid();
    if !may_request_changes(uid) {
        tracing::info!(peer_uid = ?uid, request = ?change, "refused a change request from a non-root peer");
        return Response::error(
            ErrorCode::Forbidden,
            "only root may ask the agent to change anything; reading status is open to all \
             (try `sudo palisade-agent …`)",
        );
    }
    match requests.try_send(change) {
        // Full: a request is already queued, and it will do what this one
        // asks; accepting both as one keeps a looping client from queueing
        // cycles.
        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::info!(peer_uid = ?uid, request = ?change, "change request accepted over the status socket");
            Response::Accepted(Accepted { accepted: change })
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Response::error(
            ErrorCode::Unavailable,
            "the agent is not taking change requests now (it may be stopping)",
        ),
    }
}

// ---------------------------------------------------------------------------
// The human summary

/// The summary `palisade-agent status` prints, ending with a newline.
pub fn render_human(status: &AgentStatus) -> String {
    render_human_at(status, Utc::now())
}

/// [`render_human`] as of `now` (relative times are computed from it).
pub fn render_human_at(status: &AgentStatus, now: DateTime<Utc>) -> String {
    use std::fmt::Write as _;

    // `write!` to a String cannot fail; the results are ignored below.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Palisade agent {}, running since {}",
        status.agent_version,
        when(status.started_at, now)
    );
    out.push('\n');

    let field = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "  {name:<12}{value}");
    };
    let _ = writeln!(out, "Device");
    let device = match &status.device_id {
        Some(id) => id.to_string(),
        None => "not enrolled yet".to_owned(),
    };
    field(&mut out, "device id", &device);
    field(&mut out, "key id", status.key_id.as_str());
    field(&mut out, "key store", &status.key_store);
    field(
        &mut out,
        "collector",
        status.collector_url.as_deref().unwrap_or("none yet"),
    );
    let policy = match &status.policy {
        Some(policy) => format!(
            "{} version {} ({})",
            policy.id, policy.version, policy.source
        ),
        None => "not loaded yet".to_owned(),
    };
    field(&mut out, "policy", &policy);
    out.push('\n');

    match status.last_cycle_at {
        None => {
            let _ = writeln!(
                out,
                "Checks: none yet (the first check cycle has not finished)"
            );
        }
        Some(at) => {
            let _ = writeln!(out, "Checks, last run {}", when(at, now));
            if status.checks.is_empty() {
                let _ = writeln!(out, "  (the policy enables no rule)");
            }
            let id_width = status
                .checks
                .iter()
                .map(|check| check.id.as_str().len())
                .max()
                .unwrap_or(0);
            for check in &status.checks {
                let _ = writeln!(
                    out,
                    "  {:<14}  {:<id_width$}  {}",
                    status_word(check.status),
                    check.id.as_str(),
                    check.summary
                );
                let indent = " ".repeat(2 + 14 + 2 + id_width + 2);
                let needs_action = matches!(check.status, CheckStatus::Fail);
                if needs_action && !check.fix.is_empty() {
                    let _ = writeln!(out, "{indent}fix: {}", check.fix);
                }
                if let Some(deadline) = check.deadline.filter(|_| needs_action) {
                    let _ = writeln!(out, "{indent}deadline: {}", when(deadline, now));
                }
            }
        }
    }
    out.push('\n');

    let _ = writeln!(out, "Reports");
    let spool = match (
        status.spool.pending_reports,
        status.spool.oldest_pending_sequence,
    ) {
        (0, _) => "empty: every report has been delivered".to_owned(),
        (count, oldest) => format!(
            "{count} report{} waiting to be sent ({} bytes{})",
            if count == 1 { "" } else { "s" },
            status.spool.pending_bytes,
            oldest.map_or(String::new(), |seq| format!(", oldest #{seq}")),
        ),
    };
    field(&mut out, "spool", &spool);
    let delivered = match status.delivery.last_delivered_at {
        Some(at) => when(at, now),
        None => "not yet since the agent started".to_owned(),
    };
    field(&mut out, "delivered", &delivered);
    if let Some(error) = &status.delivery.last_error {
        let line = match status.delivery.last_error_at {
            Some(at) => format!("{}: {error}", when(at, now)),
            None => error.clone(),
        };
        field(&mut out, "last error", &line);
    }
    out
}

/// The status as a word a person reads at a glance; the failing ones in
/// capitals so they stand out in a column of "pass".
fn status_word(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "FAIL",
        CheckStatus::Unknown => "UNKNOWN",
        CheckStatus::Error => "ERROR",
        CheckStatus::NotApplicable => "not applicable",
        CheckStatus::Excepted => "excepted",
    }
}

/// `2025-06-02 09:14:03 UTC (3 min ago)`.
fn when(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let stamp = at.format("%Y-%m-%d %H:%M:%S UTC");
    let delta = now.signed_duration_since(at);
    let relative = match delta.to_std() {
        Ok(past) => format!("{} ago", span(past)),
        Err(_) => match (-delta).to_std() {
            Ok(future) => format!("in {}", span(future)),
            Err(_) => "now".to_owned(),
        },
    };
    format!("{stamp} ({relative})")
}

/// A duration to the precision a person wants: `45 s`, `12 min`,
/// `3 h 5 min`, `4 days`.
fn span(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..172_800 => {
            let minutes = (seconds % 3600) / 60;
            if minutes == 0 {
                format!("{} h", seconds / 3600)
            } else {
                format!("{} h {} min", seconds / 3600, minutes)
            }
        }
        _ => format!("{} days", seconds / 86_400),
    }
}

// ---------------------------------------------------------------------------
// Unix sockets

#[cfg(unix)]
mod unix {
    use std::io::ErrorKind;
    use std::os::unix::fs::{
        DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
    };
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::{UnixListener, UnixStream};
    use tokio::sync::{Semaphore, mpsc, watch};
    use tokio::task::JoinSet;

    use super::{
        ACCEPT_ERROR_PAUSE, AgentStatus, ChangeRequest, ErrorCode, MAX_RESPONSE_BYTES, Request,
        Response, ServeOptions, StatusError, answer,
    };

    /// The socket file: any local user may connect (see the module doc).
    const SOCKET_MODE: u32 = 0o666;
    /// A parent directory made here: others must be able to reach the socket.
    const PARENT_MODE: u32 = 0o755;

    #[derive(Debug)]
    pub(super) struct Bound {
        listener: UnixListener,
        pub(super) path: PathBuf,
        /// The socket file's (device, inode), so shutdown removes only the
        /// file bound here, never one a later agent put in its place.
        identity: (u64, u64),
    }

    impl Bound {
        pub(super) fn bind(path: &Path) -> Result<Self, StatusError> {
            let io = |action: &'static str, path: &Path| {
                let path = path.to_owned();
                move |source| StatusError::Io {
                    action,
                    path,
                    source,
                }
            };
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !parent.exists() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(PARENT_MODE)
                        .create(parent)
                        .map_err(io("create the socket directory", parent))?;
                }
            }
            remove_stale_socket(path)?;
            let listener = UnixListener::bind(path).map_err(io("listen on", path))?;
            // The socket is created with the process umask (0755 for a
            // root daemon: others cannot connect), so it is never more open
            // than intended before this line.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
                .map_err(io("set the mode of", path))?;
            let metadata = std::fs::symlink_metadata(path).map_err(io("inspect", path))?;
            tracing::info!(path = %path.display(), "status socket listening");
            Ok(Self {
                listener,
                path: path.to_owned(),
                identity: (metadata.dev(), metadata.ino()),
            })
        }
    }

    /// The socket file goes with the listener, however serving ends: a
    /// clean shutdown, the task being dropped with the runtime, or a
    /// listener bound and never served. Only SIGKILL leaves it, and the
    /// next start removes it as stale.
    impl Drop for Bound {
        fn drop(&mut self) {
            let ours = std::fs::symlink_metadata(&self.path)
                .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
            if ours {
                if let Err(err) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %err, "cannot remove the status socket");
                }
            }
        }
    }

    /// Makes way for a new socket at `path`: nothing there is fine; a
    /// socket nobody listens on (left by a crash) is removed; a live socket
    /// or any other kind of file is refused, because the daemon runs as
    /// root and a mistyped `socket_path` must not delete a file.
    fn remove_stale_socket(path: &Path) -> Result<(), StatusError> {
        let metadata = match std::fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(StatusError::Io {
                    action: "inspect",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        if !metadata.file_type().is_socket() {
            return Err(StatusError::NotASocket {
                path: path.to_owned(),
            });
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => Err(StatusError::AlreadyServing {
                path: path.to_owned(),
            }),
            Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "removing a status socket left by an earlier run");
                std::fs::remove_file(path).map_err(|source| StatusError::Io {
                    action: "remove the stale socket",
                    path: path.to_owned(),
                    source,
                })
            }
            Err(source) => Err(StatusError::Io {
                action: "check whether an agent listens on",
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub(super) async fn serve(
        bound: Bound,
        board: watch::Receiver<AgentStatus>,
        requests: mpsc::Sender<ChangeRequest>,
        options: ServeOptions,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let slots = Arc::new(Semaphore::new(options.max_connections));
        // Dropping the set at the end aborts connections still in progress.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(finished) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(err) = finished {
                        tracing::error!(error = %err, "a status connection task failed");
                    }
                }
                accepted = bound.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                            refuse_busy(&stream, options.max_connections);
                            continue;
                        };
                        let (board, requests, options) = (board.clone(), requests.clone(), options.clone());
                        connections.spawn(async move {
                            handle_connection(stream, &board, &requests, &options).await;
                            drop(slot);
                        });
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot accept a status connection");
                        tokio::select! {
                            () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                            () = &mut shutdown => break,
                        }
                    }
                },
            }
        }
        drop(connections);
        tracing::info!(path = %bound.path.display(), "status socket closed");
        drop(bound);
    }

    /// Tells a client over the limit so, without waiting on it: the answer
    /// is small and goes into the socket buffer, or is lost with the
    /// connection.
    fn refuse_busy(stream: &UnixStream, limit: usize) {
        tracing::debug!(limit, "status socket busy; refusing a connection");
        let mut line = Response::error(
            ErrorCode::Busy,
            format!("the agent is already serving {limit} status clients; try again"),
        )
        .to_json();
        line.push(b'\n');
        let _ = stream.try_write(&line);
    }

    /// One exchange: read a bounded line within the deadline, answer, close.
    async fn handle_connection(
        mut stream: UnixStream,
        board: &watch::Receiver<AgentStatus>,
        requests: &mpsc::Sender<ChangeRequest>,
        options: &ServeOptions,
    ) {
        let read = read_request_line(&mut stream, options.max_request_bytes);
        let response = match tokio::time::timeout(options.read_timeout, read).await {
            Err(_) => Response::error(
                ErrorCode::Timeout,
                format!(
                    "no complete request line within {} ms",
                    options.read_timeout.as_millis()
                ),
            ),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "cannot read a status request");
                return;
            }
            Ok(Ok(RequestLine::TooLarge)) => Response::error(
                ErrorCode::BadRequest,
                format!(
                    "the request is larger than {} bytes",
                    options.max_request_bytes
                ),
            ),
            Ok(Ok(RequestLine::Complete(line))) => {
                let peer_uid = || match stream.peer_cred() {
                    Ok(cred) => Some(cred.uid()),
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot read the status client's credentials");
                        None
                    }
                };
                answer(&line, peer_uid, board, requests)
            }
        };
        if let Response::Error(refusal) = &response {
            tracing::debug!(error = %refusal.error, message = %refusal.message, "status request refused");
        }
        let mut line = response.to_json();
        line.push(b'\n');
        let write = async {
            stream.write_all(&line).await?;
            stream.shutdown().await
        };
        match tokio::time::timeout(options.write_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::debug!(error = %err, "cannot answer a status client"),
            Err(_) => tracing::debug!("a status client did not take its answer in time"),
        }
    }

    enum RequestLine {
        /// The line without its newline (or all a client sent before
        /// closing its side).
        Complete(Vec<u8>),
        TooLarge,
    }

    /// Reads up to `max` bytes and a newline; never buffers more than
    /// `max + 1` bytes, whatever the client sends.
    async fn read_request_line(
        stream: &mut UnixStream,
        max: usize,
    ) -> std::io::Result<RequestLine> {
        let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
        let mut reader = BufReader::new(stream.take(limit));
        let mut line = Vec::with_capacity(max.min(256));
        reader.read_until(b'\n', &mut line).await?;
        if line.last() == Some(&b'\n') {
            line.pop();
            return Ok(RequestLine::Complete(line));
        }
        if line.len() > max {
            return Ok(RequestLine::TooLarge);
        }
        Ok(RequestLine::Complete(line))
    }

    /// The client side of one exchange.
    pub(super) async fn exchange(path: &Path, request: Request) -> Result<Response, StatusError> {
        let mut stream = UnixStream::connect(path).await.map_err(|err| {
            let path = path.to_owned();
            match err.kind() {
                ErrorKind::NotFound => StatusError::NotRunning { path },
                ErrorKind::ConnectionRefused => StatusError::NotListening { path },
                ErrorKind::PermissionDenied => StatusError::PermissionDenied { path },
                _ => StatusError::Io {
                    action: "connect to",
                    path,
                    source: err,
                },
            }
        })?;
        let io = |action: &'static str| {
            let path = path.to_owned();
            move |source| StatusError::Io {
                action,
                path,
                source,
            }
        };
        let mut line = request.to_json().into_bytes();
        line.push(b'\n');
        stream
            .write_all(&line)
            .await
            .map_err(io("send a request to"))?;
        let limit = u64::try_from(MAX_RESPONSE_BYTES)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let mut reader = BufReader::new((&mut stream).take(limit));
        let mut answer = Vec::new();
        reader
            .read_until(b'\n', &mut answer)
            .await
            .map_err(io("read the answer from"))?;
        if answer.last() == Some(&b'\n') {
            answer.pop();
        } else if answer.len() > MAX_RESPONSE_BYTES {
            return Err(StatusError::Protocol(format!(
                "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        if answer.is_empty() {
            return Err(StatusError::Protocol(
                "the agent closed the connection without answering (it may be stopping)".to_owned(),
            ));
        }
        Response::parse(request, &answer)
    }
}

#[cfg(test)]
mod tests;
