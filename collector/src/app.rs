//! What every request handler can reach ([`AppState`]): the store, the
//! report batcher, the policy key, the metrics, the request limits, the
//! failure guards and the dashboard's settings.
//!
//! It sits below both front ends ([`crate::server`], the API, and
//! [`crate::web`], the dashboard), so they can share it without depending on
//! each other; it must not depend on either's handlers.

use std::sync::Arc;

use ed25519_dalek::SigningKey;

use crate::ingest::batcher::Batcher;
use crate::store::Store;
use crate::web::lockout::UnknownUserGuard;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub batcher: Batcher,
    /// Whether the report writer's latest commit failed (`/healthz`).
    pub write_health: Arc<crate::ingest::health::WriteHealth>,
    pub policy_key: Arc<SigningKey>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub limits: Limits,
    /// Failed enrollments per source address.
    pub enroll_guard: Arc<crate::server::failure_limit::FailedAttempts>,
    /// Failed admin API tokens per source address.
    pub token_guard: Arc<crate::server::failure_limit::FailedAttempts>,
    /// The dashboard's settings and login guard.
    pub web: WebSettings,
}

/// Request limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub clock_skew_seconds: u32,
}

/// What the dashboard needs to know about how the collector runs.
#[derive(Debug, Clone, Default)]
pub struct WebSettings {
    /// Whether cookies get `Secure`: always, except when the collector
    /// serves plain HTTP (which the configuration allows on loopback only),
    /// where a browser would not send a `Secure` cookie back.
    pub secure_cookies: bool,
    /// Failed logins for user names that do not exist (see
    /// [`UnknownUserGuard`]).
    pub unknown_users: Arc<UnknownUserGuard>,
    /// Not reported for this long: stale (`stale_after_hours`).
    pub stale_after: chrono::TimeDelta,
    /// `public_url` from the config: the default URL of the Add devices
    /// page and of `POST /api/v1/installers`.
    pub public_url: Option<String>,
    /// The pin of the last certificate of the chain the collector serves,
    /// for the install commands; `None` over plain HTTP.
    pub ca_pin: Option<palisade_shared::pin::CaPin>,
}
