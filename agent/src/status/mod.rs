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
//! On Windows the socket is a named pipe (`\\.\pipe\palisade-agent`,
//! `windows.rs`): its DACL lets interactive users read and write data but
//! not create instances of the pipe, and a change request is allowed when
//! the client's token (read by impersonating it) is SYSTEM or an elevated
//! Administrator (`sys::pipe`).
//!
//! The status document is a local wire format (the CLI and the nudge helper
//! may be other builds than the daemon), so it is `Serialize`, versioned by
//! [`STATUS_SCHEMA_VERSION`] and `deny_unknown_fields` like the shared wire
//! types.

mod board;
mod client;
mod connection;
mod protocol;
mod render;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

use std::time::Duration;

pub use board::*;
pub use client::*;
pub use protocol::*;
pub use render::*;

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
#[cfg(any(unix, windows))]
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests;
