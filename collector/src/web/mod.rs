//! The IT dashboard: server-rendered HTML pages behind a login.
//!
//! - [`auth`]: dashboard users' passwords (argon2), login, sessions (cookie
//!   `palisade_session`, stored as its SHA-256), CSRF tokens, and the
//!   [`auth::Session`] extractor every page takes; [`lockout`]: the guard
//!   that slows and then locks repeated failed logins.
//! - [`pages`]: one module per page (overview, devices, device, enrollment,
//!   add devices, policy, exceptions, audit). Pages read and change the fleet only
//!   through [`crate::store`] and, for changes the admin API and the command
//!   line also make, [`crate::operations`], so a change made here is
//!   validated and audited the same way.
//! - [`layout`]: the page shell (navigation, who is logged in, logout);
//!   [`charts`]: the overview's inline SVG charts; `style.css`: the one
//!   stylesheet, embedded in the binary.
//!
//! What it must not do: load anything from elsewhere (no CDN, no script;
//! the Content-Security-Policy below forbids it), format a value into HTML
//! other than through maud (which escapes), or change anything on a GET.
//! Every POST carries the session's CSRF token and is refused with 403
//! before anything happens when it does not match; only admins change.
//!
//! These routes are kept out of the API's `routes!` table (and so out of
//! the OpenAPI document): they are pages for people, not API endpoints.

pub mod auth;
pub mod charts;
pub mod layout;
pub mod lockout;
pub mod pages;

use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};

use crate::app::AppState;
pub use crate::app::WebSettings;
use crate::server::error::ApiError;

/// The dashboard's routes, merged into the collector's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/devices", get(pages::devices::page))
        .route("/devices.csv", get(pages::devices::csv))
        .route("/devices/{id}", get(pages::device::page))
        .route("/devices/{id}/revoke", post(pages::device::revoke))
        .route(
            "/enrollment",
            get(pages::enrollment::page).post(pages::enrollment::create),
        )
        .route("/enrollment/{id}/revoke", post(pages::enrollment::revoke))
        .route(
            "/add-devices",
            get(pages::add_devices::page).post(pages::add_devices::create),
        )
        .route(
            "/policy",
            get(pages::policy::page).post(pages::policy::upload),
        )
        .route(
            "/exceptions",
            get(pages::exceptions::page).post(pages::exceptions::grant),
        )
        .route("/audit", get(pages::audit::page))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/static/style.css", get(stylesheet))
        .layer(axum::middleware::from_fn(page_headers))
}

/// The one stylesheet, screen and print.
const STYLE: &str = include_str!("style.css");

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            // It changes only with the binary; an hour saves a request per
            // page without keeping an old style long after an upgrade.
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// The Content-Security-Policy of every page: nothing but our own
/// stylesheet and inline `data:` images; no script at all; forms post only
/// here; no framing (clickjacking).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to every dashboard response, and
/// `Server-Timing: app;dur=<ms>` with the time spent building it (the
/// dashboard benchmark reads it).
async fn page_headers(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let mut response = next.run(request).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={elapsed_ms:.3}")) {
        headers.insert("server-timing", value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A finished page.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A page that could not be shown, as an HTML page with its status.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// The store failed: logged with the error for whoever runs the
    /// collector, shown to the person as "try again".
    pub fn unavailable(what: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{what}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}; please try again in a moment"),
        )
    }
}

/// An admin API refusal (from the shared parsing helpers) as a page: same
/// status, same message naming the parameter.
impl From<ApiError> for PageError {
    fn from(err: ApiError) -> Self {
        Self::new(err.status, err.message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        html_response(
            self.status,
            html! {
                (DOCTYPE)
                html lang="en" {
                    head {
                        meta charset="utf-8";
                        meta name="viewport" content="width=device-width, initial-scale=1";
                        title { (title) " · Palisade" }
                        link rel="stylesheet" href="/static/style.css";
                    }
                    body {
                        main {
                            h1 { (title) }
                            p class="error" { (self.message) }
                            p { a href="/" { "Back to the overview" } }
                        }
                    }
                }
            },
        )
    }
}

/// A date and time as IT reads it: UTC, to the minute.
pub fn format_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// An optional time, or a dash.
pub fn format_optional_time(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(|| "—".to_owned(), format_time)
}
