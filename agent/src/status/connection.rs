//! One exchange on a connected stream, the same over a Unix socket and a
//! Windows named pipe: the server reads a bounded request line within its
//! deadline, answers and closes; the client writes its line and reads a
//! bounded answer. Who the peer is comes from the transport (`unix.rs`,
//! `windows.rs`), asked only when a request wants a change.

use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::sync::{mpsc, watch};

use super::{
    AgentStatus, ChangeRequest, ErrorCode, MAX_RESPONSE_BYTES, Peer, Request, Response,
    ServeOptions, StatusError, protocol::answer,
};

/// The line a client over the connection limit gets.
pub(super) fn busy_line(limit: usize) -> Vec<u8> {
    tracing::debug!(limit, "status server busy; refusing a connection");
    let mut line = Response::error(
        ErrorCode::Busy,
        format!("the agent is already serving {limit} status clients; try again"),
    )
    .to_json();
    line.push(b'\n');
    line
}

/// One exchange: read a bounded line within the deadline, answer, shut
/// down the writing side; the stream is handed back for the transport to
/// close (`None` when the client went away first).
/// `peer` says who the client is; it is called only for a change request,
/// after the request line was read (a named pipe can name its client only
/// then).
pub(super) async fn handle_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: impl FnOnce(&S) -> Option<Peer>,
    board: &watch::Receiver<AgentStatus>,
    requests: &mpsc::Sender<ChangeRequest>,
    options: &ServeOptions,
) -> Option<S> {
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
            return None;
        }
        Ok(Ok(RequestLine::TooLarge)) => Response::error(
            ErrorCode::BadRequest,
            format!(
                "the request is larger than {} bytes",
                options.max_request_bytes
            ),
        ),
        Ok(Ok(RequestLine::Complete(line))) => answer(&line, || peer(&stream), board, requests),
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
    Some(stream)
}

enum RequestLine {
    /// The line without its newline (or all a client sent before
    /// closing its side).
    Complete(Vec<u8>),
    TooLarge,
}

/// Reads up to `max` bytes and a newline; never buffers more than
/// `max + 1` bytes, whatever the client sends.
async fn read_request_line<S: AsyncRead + Unpin>(
    stream: &mut S,
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

/// The client's half once connected: one request line out, one bounded
/// answer in. `path` names the socket or pipe in errors.
pub(super) async fn exchange_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &std::path::Path,
    request: Request,
) -> Result<Response, StatusError> {
    let mut line = request.to_json().into_bytes();
    line.push(b'\n');
    stream
        .write_all(&line)
        .await
        .map_err(StatusError::io("send a request to", path))?;
    let limit = u64::try_from(MAX_RESPONSE_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut reader = BufReader::new((&mut stream).take(limit));
    let mut answer = Vec::new();
    reader
        .read_until(b'\n', &mut answer)
        .await
        .map_err(StatusError::io("read the answer from", path))?;
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
