//! The entry points: [`serve`] for the daemon, [`query`] and its helpers for
//! `palisade-agent status`, the nudge helper and tests.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

#[cfg(unix)]
use super::unix as transport;
#[cfg(windows)]
use super::windows as transport;
use super::{
    AgentStatus, ChangeRequest, QUERY_TIMEOUT, Request, Response, ServeOptions, StatusError,
};

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
    #[cfg(any(unix, windows))]
    {
        match tokio::time::timeout(deadline, transport::exchange(socket_path, *request)).await {
            Ok(result) => result,
            Err(_) => Err(StatusError::Timeout {
                path: socket_path.to_owned(),
                after: deadline,
            }),
        }
    }
    #[cfg(not(any(unix, windows)))]
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
    #[cfg(any(unix, windows))]
    inner: transport::Bound,
    #[cfg(not(any(unix, windows)))]
    never: std::convert::Infallible,
}

impl StatusListener {
    /// Creates the socket at `socket_path`, mode 0666: makes the parent
    /// directory (0755) if it is missing, and replaces a socket left by an
    /// earlier run. Refuses to replace a socket another process still
    /// listens on, or a file that is not a socket. Must be called inside a
    /// tokio runtime.
    pub fn bind(socket_path: &Path) -> Result<Self, StatusError> {
        #[cfg(any(unix, windows))]
        {
            transport::Bound::bind(socket_path).map(|inner| Self { inner })
        }
        #[cfg(not(any(unix, windows)))]
        {
            let _ = socket_path;
            Err(StatusError::Unsupported)
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        #[cfg(any(unix, windows))]
        {
            &self.inner.path
        }
        #[cfg(not(any(unix, windows)))]
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
        #[cfg(any(unix, windows))]
        {
            transport::serve(self.inner, board, requests, options, shutdown).await;
        }
        #[cfg(not(any(unix, windows)))]
        {
            let _ = (board, requests, options, shutdown);
            match self.never {}
        }
    }
}
