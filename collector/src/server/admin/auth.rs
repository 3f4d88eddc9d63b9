//! Bearer-token authentication for the admin API.
//!
//! A token reads `plt_<id>_<random>` (see [`crate::secrets`]): the id finds
//! the stored row, the SHA-256 of the random part is compared with the
//! stored hash in constant time, and a revoked token is refused. Every
//! refusal is the same 401 with `WWW-Authenticate: Bearer`, so a caller
//! learns nothing about which part was wrong; a viewer calling an admin-only
//! endpoint gets 403. The token never reaches a log: only its id does, and
//! only once it has been verified.
//!
//! A source address that presents ten bad tokens within fifteen minutes gets
//! 429 for the rest of that window, before any lookup
//! ([`crate::server::failure_limit`]). A request without any token is not a
//! guess and is not counted.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::secrets;
use crate::server::error::ApiError;
use crate::store::Role;

/// Whoever presented a valid token: a viewer or an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_id: String,
    pub label: String,
    pub role: Role,
}

impl Caller {
    /// How the audit log names this caller: `token:<id>`, with the token's
    /// label when it has one.
    pub fn actor(&self) -> String {
        if self.label.is_empty() {
            format!("token:{}", self.token_id)
        } else {
            format!("token:{} ({})", self.token_id, self.label)
        }
    }
}

/// A caller whose token has the admin role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin(pub Caller);

/// Why a request was not let in.
#[derive(Debug)]
pub enum AuthRefusal {
    /// No token, a malformed one, an unknown, wrong or revoked one.
    Unauthenticated,
    /// A valid viewer token on an endpoint that changes something.
    NotAdmin,
    /// Too many bad tokens from this address lately.
    RateLimited,
    /// The token could not be looked up.
    Unavailable(ApiError),
}

impl IntoResponse for AuthRefusal {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated => {
                let mut response = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid API token is required: `Authorization: Bearer plt_…` \
                     (make one with `palisade-collector token create`)",
                )
                .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"palisade\""),
                );
                response
            }
            Self::NotAdmin => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs an admin token; a viewer token may only read",
            )
            .into_response(),
            Self::RateLimited => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many invalid API tokens from this address; wait 15 minutes",
            )
            .into_response(),
            Self::Unavailable(err) => err.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AuthRefusal;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(presented) = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|value| value.to_str().ok().and_then(bearer_token))
        else {
            return Err(AuthRefusal::Unauthenticated);
        };
        // Routers served without connection info (none in production) are
        // not limited.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        let now = Instant::now();
        if peer.is_some_and(|ip| state.token_guard.is_blocked(ip, now)) {
            state.metrics.api_token_refused("rate_limited");
            return Err(AuthRefusal::RateLimited);
        }
        let verified = verify_token(state, presented).await;
        if matches!(verified, Err(AuthRefusal::Unauthenticated)) {
            state.metrics.api_token_refused("invalid");
            if let Some(ip) = peer {
                state.token_guard.record_failure(ip, now);
            }
        }
        verified
    }
}

/// The caller a presented `Authorization` value stands for.
async fn verify_token(state: &AppState, presented: Option<&str>) -> Result<Caller, AuthRefusal> {
    let presented = presented
        .and_then(|token| secrets::parse("plt", token))
        .ok_or(AuthRefusal::Unauthenticated)?;
    let stored = state
        .store
        .api_token(&presented.id)
        .await
        .map_err(|err| AuthRefusal::Unavailable(ApiError::internal("token lookup failed", &err)))?
        .ok_or(AuthRefusal::Unauthenticated)?;
    if !stored.hash_matches(&presented.hash) || stored.info.revoked_at.is_some() {
        tracing::debug!(token_id = %presented.id, "API token refused");
        return Err(AuthRefusal::Unauthenticated);
    }
    Ok(Caller {
        token_id: stored.info.id,
        label: stored.info.label,
        role: stored.info.role,
    })
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AuthRefusal;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match caller.role {
            Role::Admin => Ok(Self(caller)),
            Role::Viewer => Err(AuthRefusal::NotAdmin),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value; the scheme
/// is case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer_token("Bearer plt_x_y"), Some("plt_x_y"));
        assert_eq!(bearer_token("bearer  plt_x_y "), Some("plt_x_y"));
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("plt_x_y"), None);
    }

    #[test]
    fn the_audit_actor_names_the_token_and_its_label() {
        let mut caller = Caller {
            token_id: "0123456789abcdef".into(),
            label: "ci".into(),
            role: Role::Admin,
        };
        assert_eq!(caller.actor(), "token:0123456789abcdef (ci)");
        caller.label.clear();
        assert_eq!(caller.actor(), "token:0123456789abcdef");
    }
}
