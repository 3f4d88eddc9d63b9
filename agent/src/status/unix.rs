//! The Unix socket: bind with the right modes, accept with limits, read the
//! peer's uid, answer.

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
    Response, ServeOptions, StatusError, protocol::answer,
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
async fn read_request_line(stream: &mut UnixStream, max: usize) -> std::io::Result<RequestLine> {
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
