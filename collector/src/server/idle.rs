//! How long a connection may hold the collector without sending anything,
//! and how long a request head may take to arrive: [`IdleAcceptor`] wraps
//! every accepted TCP stream in an [`IdleStream`], which fails a read that
//! has waited [`IDLE_TIMEOUT`] since the connection last moved a byte;
//! [`limit_header_time`] sets [`HEADER_READ_TIMEOUT`] on HTTP/1.
//!
//! Without them a client that finishes the TLS handshake and then sends
//! nothing, or sends its headers a byte at a time (slowloris), held a
//! socket and a task for as long as it liked: hyper's own 30 s header
//! timeout needs a timer, which nothing gave it, and the version sniffing
//! before HTTP/1 or HTTP/2 is chosen has no timeout at all. A few thousand
//! such clients would use up the process's file descriptors. The TLS
//! handshake itself is bounded by axum-server (10 s).
//!
//! It owns no state beyond each stream's deadline, and never looks at the
//! bytes.

use std::future::{Future as _, Ready, ready};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// A connection that has moved no byte either way for this long is closed.
/// Longer than any request takes to answer (the store's pools wait at most
/// 30 s for a connection, the default of sqlx), and close to the idle
/// keep-alive of common servers (nginx: 75 s); an agent sends a report every
/// few minutes and opens a new connection for it anyway.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP/1 request head (request line and headers, a few hundred bytes
/// from an agent, a few KiB from a browser) must arrive within this long
/// of the connection becoming ready for it. The same bound axum-server puts
/// on the TLS handshake; a head fits in one or two packets, so only a
/// client that means to hold the connection ever meets it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Sets [`HEADER_READ_TIMEOUT`] (and the timer it needs) on a server's
/// HTTP/1 settings.
pub fn limit_header_time<E>(builder: &mut hyper_util::server::conn::auto::Builder<E>) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
}

/// Accepts a TCP stream as an [`IdleStream`], with `TCP_NODELAY` set: a
/// response's last small segment would otherwise wait for the client's
/// delayed ACK (Nagle), about 40 ms a page on Linux (BENCHMARKS.md,
/// dashboard).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdleAcceptor;

impl<S> axum_server::accept::Accept<TcpStream, S> for IdleAcceptor {
    type Stream = IdleStream<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        ready(
            stream
                .set_nodelay(true)
                .map(|()| (IdleStream::new(stream, IDLE_TIMEOUT), service)),
        )
    }
}

/// A stream whose reads fail with `TimedOut` once nothing has been read or
/// written for its timeout.
#[derive(Debug)]
pub struct IdleStream<S> {
    inner: S,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleStream<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Bytes moved: the connection is alive for another timeout.
    fn moved(&mut self) {
        let next = Instant::now() + self.timeout;
        self.deadline.as_mut().reset(next);
    }

    /// A write's result, noting the bytes it moved.
    fn after_write(&mut self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        written
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(result)
            }
            // Waiting for the client: fine until the deadline, which wakes
            // this task when it passes.
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn a_read_fails_once_nothing_moved_for_the_timeout() {
        let (client, server) = tokio::io::duplex(64);
        let mut stream = IdleStream::new(server, Duration::from_millis(50));
        let mut client = client;
        client.write_all(b"x").await.unwrap_or_default();
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.ok(), Some(1));
        // The client is still there but sends nothing: the read waits for
        // the deadline, then fails.
        let err = stream.read(&mut byte).await.err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::TimedOut));
    }
}
