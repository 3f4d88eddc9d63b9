//! The named pipe (`\\.\pipe\palisade-agent`): instances with the DACL of
//! `sys::pipe` (people read, SYSTEM and Administrators change), one
//! exchange per connection through `connection.rs`, the client's rights
//! read from its token.
//!
//! A named pipe server is one instance per client: the loop waits for a
//! client on one instance, creates the next before serving it, and at
//! most [`ServeOptions::max_connections`] are served at once (the rest are
//! told `busy`). A pipe has no file to clean up; the name disappears with
//! its last instance.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::windows::named_pipe::NamedPipeServer;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::connection::{self, busy_line, handle_connection};
use super::{
    ACCEPT_ERROR_PAUSE, AgentStatus, ChangeRequest, Peer, QUERY_TIMEOUT, Request, Response,
    ServeOptions, StatusError,
};
use crate::sys::acl::SecurityDescriptor;
use crate::sys::pipe;

/// `ERROR_ACCESS_DENIED`: what creating the first instance of a name
/// answers when another process already serves it.
const ERROR_ACCESS_DENIED: i32 = 5;
/// `ERROR_PIPE_BUSY`: every instance is taken; the client waits and tries
/// again.
const ERROR_PIPE_BUSY: i32 = 231;

#[derive(Debug)]
pub(super) struct Bound {
    first: NamedPipeServer,
    security: SecurityDescriptor,
    name: OsString,
    pub(super) path: PathBuf,
}

impl Bound {
    pub(super) fn bind(path: &Path) -> Result<Self, StatusError> {
        let security =
            pipe::pipe_security().map_err(StatusError::io("describe the security of", path))?;
        let name = path.as_os_str().to_owned();
        let first = pipe::create_instance(&name, true, &security).map_err(|err| {
            if err.raw_os_error() == Some(ERROR_ACCESS_DENIED) {
                StatusError::AlreadyServing {
                    path: path.to_owned(),
                }
            } else {
                StatusError::io("create the pipe", path)(err)
            }
        })?;
        tracing::info!(pipe = %path.display(), "status pipe listening");
        Ok(Self {
            first,
            security,
            name,
            path: path.to_owned(),
        })
    }
}

/// The client's rights, from its token.
fn pipe_client(pipe: &NamedPipeServer) -> Option<Peer> {
    match pipe::client_is_system_or_administrator(pipe) {
        Ok(system_or_administrator) => Some(Peer::WindowsToken {
            system_or_administrator,
        }),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the status client's token");
            None
        }
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
    let mut connections = JoinSet::new();
    let Bound {
        first,
        security,
        name,
        path,
    } = bound;
    let mut waiting = first;
    loop {
        let connected = tokio::select! {
            () = &mut shutdown => break,
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(err) = finished {
                    tracing::error!(error = %err, "a status connection task failed");
                }
                continue;
            }
            connected = waiting.connect() => connected,
        };
        if let Err(err) = connected {
            tracing::warn!(error = %err, "cannot accept a status client");
            let _ = waiting.disconnect();
            tokio::select! {
                () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                () = &mut shutdown => break,
            }
            continue;
        }
        // The next instance exists before this client is served, so a
        // second client never finds the name gone.
        let next = match pipe::create_instance(&name, false, &security) {
            Ok(next) => next,
            Err(err) => {
                tracing::error!(error = %err, "cannot create the next status pipe instance; status stops");
                break;
            }
        };
        let mut client = std::mem::replace(&mut waiting, next);
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            let _ = client.write_all(&busy_line(options.max_connections)).await;
            continue;
        };
        let (board, requests, options) = (board.clone(), requests.clone(), options.clone());
        connections.spawn(async move {
            let client = handle_connection(client, pipe_client, &board, &requests, &options).await;
            if let Some(client) = client {
                wait_for_hang_up(client, &options).await;
            }
            drop(slot);
        });
    }
    drop(connections);
    tracing::info!(pipe = %path.display(), "status pipe closed");
}

/// Closing a pipe's server end discards what the client has not read yet,
/// so the server waits (at most the write deadline) until the client,
/// having read its answer, closes its end.
async fn wait_for_hang_up(mut client: NamedPipeServer, options: &ServeOptions) {
    let mut sink = [0u8; 64];
    let drained = async {
        while let Ok(read) = client.read(&mut sink).await {
            if read == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(options.write_timeout, drained).await;
}

/// How long a client waits before trying a busy pipe again. Not a
/// synchronisation sleep: ERROR_PIPE_BUSY has no event to wait on (tokio's
/// named-pipe client documents the same retry loop), and the server makes
/// its next instance at once, so one short pause is almost always enough;
/// `QUERY_TIMEOUT` bounds the whole loop.
const PIPE_BUSY_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

pub(super) async fn exchange(path: &Path, request: Request) -> Result<Response, StatusError> {
    let name = path.as_os_str();
    let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
    let client = loop {
        match pipe::open_client(name) {
            Ok(client) => break client,
            Err(err) if err.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                // Every instance is between clients; the server makes the
                // next one at once.
                if tokio::time::Instant::now() >= deadline {
                    return Err(StatusError::Io {
                        action: "connect to",
                        path: path.to_owned(),
                        source: err,
                    });
                }
                tokio::time::sleep(PIPE_BUSY_RETRY).await;
            }
            Err(err) => {
                let path = path.to_owned();
                return Err(match err.kind() {
                    std::io::ErrorKind::NotFound => StatusError::NotRunning { path },
                    std::io::ErrorKind::PermissionDenied => StatusError::PermissionDenied { path },
                    _ => StatusError::Io {
                        action: "connect to",
                        path,
                        source: err,
                    },
                });
            }
        }
    };
    connection::exchange_on(client, path, request).await
}
