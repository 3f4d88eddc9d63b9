//! The Unix socket: bind with the right modes, accept with limits, read the
//! peer's uid, answer.

use std::io::ErrorKind;
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::connection::{self, busy_line, handle_connection};
use super::{
    ACCEPT_ERROR_PAUSE, AgentStatus, ChangeRequest, Peer, Request, Response, ServeOptions,
    StatusError,
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
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(PARENT_MODE)
                    .create(parent)
                    .map_err(StatusError::io("create the socket directory", parent))?;
            }
        }
        remove_stale_socket(path)?;
        let listener = UnixListener::bind(path).map_err(StatusError::io("listen on", path))?;
        // The socket is created with the process umask (0755 for a
        // root daemon: others cannot connect), so it is never more open
        // than intended before this line.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(StatusError::io("set the mode of", path))?;
        let metadata = std::fs::symlink_metadata(path).map_err(StatusError::io("inspect", path))?;
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
                        let _closed = handle_connection(stream, peer_uid, &board, &requests, &options).await;
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
    let _ = stream.try_write(&busy_line(limit));
}

/// The peer's uid as the kernel reports it.
fn peer_uid(stream: &UnixStream) -> Option<Peer> {
    match stream.peer_cred() {
        Ok(cred) => Some(Peer::Uid(cred.uid())),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the status client's credentials");
            None
        }
    }
}

/// The client side of one exchange.
pub(super) async fn exchange(path: &Path, request: Request) -> Result<Response, StatusError> {
    let stream = UnixStream::connect(path).await.map_err(|err| {
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
    connection::exchange_on(stream, path, request).await
}
