//! The socket's wire protocol: one JSON request line in, one answer line
//! out, and the pure answer to each request.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::{
    AgentStatus, MAX_CONNECTIONS, MAX_REQUEST_BYTES, READ_TIMEOUT, ROOT_UID, STATUS_SCHEMA_VERSION,
    WRITE_TIMEOUT,
};

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
    pub(super) fn error(error: ErrorCode, message: impl Into<String>) -> Self {
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
    #[error("status is served only on Unix and Windows")]
    Unsupported,
}

impl StatusError {
    /// For `map_err`: `action` on `path` failed with an I/O error.
    pub(super) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// Whether a peer with this uid may ask for changes. `None` (the kernel
/// could not say who it is) is refused: fail closed.
pub fn may_request_changes(peer_uid: Option<u32>) -> bool {
    peer_uid == Some(ROOT_UID)
}

/// Who is at the other end of a connection, as the operating system (never
/// the client) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A Unix socket peer's uid (`SO_PEERCRED`, `getpeereid`).
    Uid(u32),
    /// A named-pipe client, from its token (`ImpersonateNamedPipeClient`):
    /// whether it is SYSTEM or an elevated Administrator.
    WindowsToken { system_or_administrator: bool },
}

impl Peer {
    /// Root on Unix, SYSTEM or an elevated Administrator on Windows.
    pub fn may_request_changes(self) -> bool {
        match self {
            Self::Uid(uid) => may_request_changes(Some(uid)),
            Self::WindowsToken {
                system_or_administrator,
            } => system_or_administrator,
        }
    }
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
pub(super) fn answer(
    line: &[u8],
    peer: impl FnOnce() -> Option<Peer>,
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
    let peer = peer();
    if !peer.is_some_and(Peer::may_request_changes) {
        tracing::info!(?peer, request = ?change, "refused a change request from an unprivileged peer");
        return Response::error(
            ErrorCode::Forbidden,
            "only root (on Windows an Administrator) may ask the agent to change anything; \
             reading status is open to all (try `sudo palisade-agent …`, or an elevated prompt)",
        );
    }
    match requests.try_send(change) {
        // Full: a request is already queued, and it will do what this one
        // asks; accepting both as one keeps a looping client from queueing
        // cycles.
        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::info!(?peer, request = ?change, "change request accepted over the status socket");
            Response::Accepted(Accepted { accepted: change })
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Response::error(
            ErrorCode::Unavailable,
            "the agent is not taking change requests now (it may be stopping)",
        ),
    }
}
