//! The HTTP side of the collector: the router, the shared state, and
//! [`serve`], which takes its listener and a shutdown signal so tests can bind
//! `127.0.0.1:0` and stop it cleanly.
//!
//! Endpoints (PROTOCOL.md §6): `POST /api/v1/enroll`, `POST /api/v1/reports`,
//! `GET /api/v1/policy`, `GET /metrics`, `GET /healthz`. Handlers live in one
//! module each; none of them touches the database except through
//! [`crate::store`].

pub mod enroll;
pub mod error;
pub mod metrics;
pub mod policy;
pub mod reports;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use ed25519_dalek::SigningKey;

use crate::ingest::batcher::Batcher;
use crate::store::Store;

/// How long in-flight requests may take to finish after shutdown is asked
/// for. Ten seconds covers a report batch commit on a slow disk many times
/// over; systemd's default stop timeout (90 s) is far above it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub batcher: Batcher,
    pub policy_key: Arc<SigningKey>,
    pub metrics: Arc<metrics::Metrics>,
    pub limits: Limits,
    pub enroll_guard: Arc<enroll::FailedAttempts>,
}

/// Request limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub clock_skew_seconds: u32,
}

pub fn router(state: AppState) -> Router {
    let max_body = state.limits.max_body_bytes;
    Router::new()
        .route("/api/v1/enroll", post(enroll::enroll))
        .route("/api/v1/reports", post(reports::ingest))
        .route("/api/v1/policy", get(policy::get_policy))
        .route("/metrics", get(metrics::render))
        .route("/healthz", get(|| async { "ok\n" }))
        // Bodies over the limit are refused with 413 before they are read
        // into memory.
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// TLS for [`serve`]: a rustls configuration, or plain HTTP (loopback only;
/// the configuration refuses anything else before we get here).
#[derive(Debug, Clone)]
pub enum Transport {
    Tls(axum_server::tls_rustls::RustlsConfig),
    Plain,
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish
/// (up to [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: std::net::TcpListener,
    state: AppState,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    match transport {
        Transport::Tls(config) => {
            axum_server::from_tcp_rustls(listener, config)
                .handle(handle)
                .serve(app)
                .await
        }
        Transport::Plain => {
            axum_server::from_tcp(listener)
                .handle(handle)
                .serve(app)
                .await
        }
    }
}
