//! The HTTP side of the collector: the router and [`serve`], which takes
//! its listener and a shutdown signal so tests can bind `127.0.0.1:0` and
//! stop it cleanly. The state every handler shares ([`crate::app::AppState`])
//! lives below both this module and the dashboard, so neither imports the
//! other's internals.
//!
//! Endpoints (PROTOCOL.md §6): the agent's `POST /api/v1/enroll`,
//! `POST /api/v1/reports` and `GET /api/v1/policy`; `GET /metrics`,
//! `GET /healthz` and `GET /readyz`; and the admin API in [`admin`] (devices, summary, policy,
//! secrets, exceptions, audit, CSV, and the OpenAPI document). Handlers live
//! in one module each; none of them touches the database except through
//! [`crate::store`], and changes that the command line and the dashboard
//! also make go through [`crate::operations`].
//!
//! The API router is built only from the [`ROUTES`] table (the `routes!`
//! macro below), so the OpenAPI test can compare what is served with what
//! is documented. The dashboard's HTML pages ([`crate::web`]) are merged in
//! beside it: they are for people, not part of the API document.

pub mod admin;
pub mod enroll;
pub mod error;
pub mod failure_limit;
pub mod idle;
pub mod metrics;
pub mod policy;
pub mod reports;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};

use crate::app::AppState;

/// How long in-flight requests may take to finish after shutdown is asked
/// for. Ten seconds covers a report batch commit on a slow disk many times
/// over; systemd's default stop timeout (90 s) is far above it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Declares every route once: [`ROUTES`] lists them as (method, path) and
/// `routed` builds the router from the same lines.
macro_rules! routes {
    ($( $method:ident $path:literal => $handler:path ),* $(,)?) => {
        /// Every route the collector serves, as (lowercase method, path).
        pub const ROUTES: &[(&str, &str)] = &[ $( (stringify!($method), $path) ),* ];

        fn routed() -> Router<AppState> {
            Router::new() $( .route($path, axum::routing::$method($handler)) )*
        }
    };
}

routes! {
    post "/api/v1/enroll" => enroll::enroll,
    post "/api/v1/reports" => reports::ingest,
    get "/api/v1/policy" => policy::get_policy,
    get "/metrics" => metrics::render,
    get "/healthz" => healthz,
    get "/readyz" => readyz,
    get "/api/v1/openapi.json" => admin::openapi::document,
    get "/api/v1/devices" => admin::devices::list,
    get "/api/v1/devices.csv" => admin::devices_csv::export_csv,
    get "/api/v1/devices/{id}" => admin::devices::detail,
    post "/api/v1/devices/{id}/revoke" => admin::devices::revoke,
    get "/api/v1/summary" => admin::devices::summary,
    get "/api/v1/admin/policy" => admin::policy::get,
    put "/api/v1/admin/policy" => admin::policy::put,
    get "/api/v1/secrets" => admin::secrets::list,
    post "/api/v1/secrets" => admin::secrets::create,
    post "/api/v1/secrets/{id}/revoke" => admin::secrets::revoke,
    post "/api/v1/installers" => admin::installers::create,
    get "/api/v1/exceptions" => admin::exceptions::list,
    post "/api/v1/exceptions" => admin::exceptions::grant,
    get "/api/v1/audit" => admin::audit::list,
}

pub fn router(state: AppState) -> Router {
    let max_body = state.limits.max_body_bytes;
    routed()
        .merge(crate::web::router())
        .fallback(no_route)
        // Bodies over the limit are refused with 413 before they are read
        // into memory.
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// Health: the collector is serving and its database takes writes. While
/// the report writer's latest commit failed (a full disk, a lost database)
/// the answer is 503, so a monitor sees the outage the devices see; the
/// error itself is in the collector's log, not in this public answer.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "`ok`", content_type = "text/plain", body = String),
        (status = 503, description = "the database refuses writes", content_type = "text/plain", body = String)
    )
)]
pub async fn healthz(State(state): State<AppState>) -> Response {
    write_state(&state)
}

/// Readiness for a load balancer: the same test as `/healthz` (a collector
/// that cannot store reports must not be sent devices).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "`ok`", content_type = "text/plain", body = String),
        (status = 503, description = "the database refuses writes", content_type = "text/plain", body = String)
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    write_state(&state)
}

fn write_state(state: &AppState) -> Response {
    match state.write_health.failing() {
        None => "ok\n".into_response(),
        Some(failure) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unhealthy: the database has refused writes since {} (see the collector's log)\n",
                failure
                    .since
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        )
            .into_response(),
    }
}

/// Any path no route serves: 404 `not_found`, as an `ErrorBody`.
async fn no_route() -> error::ApiError {
    error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
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
    // Every connection is closed once idle, and HTTP/1 heads must arrive in
    // time ([`idle`]): a client holding connections open without sending
    // cannot use up the process's sockets.
    match transport {
        Transport::Tls(config) => {
            let mut server = axum_server::from_tcp_rustls(listener, config)
                .map(|tls| tls.acceptor(idle::IdleAcceptor));
            idle::limit_header_time(server.http_builder());
            server.handle(handle).serve(app).await
        }
        Transport::Plain => {
            let mut server = axum_server::from_tcp(listener).acceptor(idle::IdleAcceptor);
            idle::limit_header_time(server.http_builder());
            server.handle(handle).serve(app).await
        }
    }
}
