//! Dashboard login: passwords, lockout, sessions and CSRF tokens.
//!
//! - Passwords are argon2id PHC strings (the `argon2` crate's defaults,
//!   which follow OWASP's recommendation), made by `palisade-collector user
//!   create`. A login for a name that does not exist is verified against a
//!   dummy hash of the same parameters, so the time taken does not tell
//!   whether the user exists.
//! - After [`MAX_FAILED_LOGINS`] failures in a row a name is locked for
//!   [`LOCKOUT`]; the answer ("locked, try again later") is the same for
//!   names that do not exist, whose failures are counted in memory
//!   ([`UnknownUserGuard`]).
//! - A session is a random 32-byte cookie (`palisade_session`, HttpOnly,
//!   SameSite=Strict, Secure unless served over plain loopback HTTP); the
//!   store keeps only its SHA-256, with the user, a CSRF token and the
//!   expiry ([`SESSION_LIFETIME`]).
//! - Every POST form carries the session's CSRF token, compared in constant
//!   time. The login form, before any session exists, is protected by a
//!   double-submit cookie (`palisade_login_csrf`): a cross-site page can
//!   neither read nor set it, so it cannot post a matching pair.
//!
//! Passwords and cookie values never reach a log or the audit log.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, Utc};
use maud::{DOCTYPE, html};
use rand::RngCore as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

pub use super::lockout::{LOCKOUT, MAX_FAILED_LOGINS, UnknownUserGuard};
use super::{PageError, html_response};
use crate::app::AppState;
use crate::store::{AuditEntry, NewSession, Role, SessionRecord};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "palisade_session";
/// The login form's double-submit CSRF cookie.
pub const LOGIN_CSRF_COOKIE: &str = "palisade_login_csrf";
/// A working day: IT logs in once in the morning. Not sliding, so a stolen
/// cookie is worth at most this long.
pub const SESSION_LIFETIME: TimeDelta = TimeDelta::hours(8);
/// NIST SP 800-63B §3.1.1.2 asks for at least 8 characters, 15 without a
/// second factor; 12 is the organisation's own password rule (the
/// baseline policy's `min_length`).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The login CSRF cookie lives as long as someone may leave the login page
/// open.
const LOGIN_CSRF_MAX_AGE_SECONDS: i64 = 3600;

/// Whether `password` may be used; the reason when not.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password is {chars} characters long; it must have at least {MIN_PASSWORD_CHARS}"
        ));
    }
    Ok(())
}

/// An argon2id PHC string for `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the PHC string `hash` (a malformed hash
/// matches nothing).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash no password is known for, made once with the same parameters as
/// real ones, to verify against when the user does not exist.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

/// 32 random bytes, base64url without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a session cookie.
fn session_hash(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// Constant-time equality of two tokens (their length is not secret).
fn tokens_match(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value; `max_age` 0 deletes the cookie. Values are our
/// own base64url tokens, which need no quoting.
fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("palisade_invalid=; Max-Age=0"))
}

/// Writes one audit entry; a failure is logged, and the caller decides
/// whether the person must be told.
pub async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<(), PageError> {
    state
        .store
        .append_audit(&AuditEntry {
            at: Utc::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            details_json: details.to_string(),
        })
        .await
        .map_err(|err| {
            PageError::unavailable(
                &format!("{action} on {target} was done but could not be audited"),
                &err,
            )
        })
}

// ---------------------------------------------------------------------------
// Sessions.

/// A logged-in dashboard user: what every page extracts.
#[derive(Clone)]
pub struct Session {
    pub username: String,
    pub role: Role,
    pub csrf_token: String,
    id_hash: [u8; 32],
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// How the audit log names a dashboard user.
    pub fn actor(&self) -> String {
        format!("user:{}", self.username)
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Refuses a POST whose `csrf` field is missing or not this session's
    /// token, before anything is changed.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<(), PageError> {
        match presented {
            Some(token) if tokens_match(token, &self.csrf_token) => Ok(()),
            _ => {
                tracing::warn!(user = %self.username, "dashboard POST refused: bad CSRF token");
                Err(PageError::forbidden(
                    "the form's security token is missing or out of date; reload the page and \
                     try again",
                ))
            }
        }
    }

    /// Checks the CSRF token, then that this user may change things.
    pub fn authorise_change(&self, presented: Option<&str>) -> Result<(), PageError> {
        self.check_csrf(presented)?;
        if self.is_admin() {
            Ok(())
        } else {
            Err(PageError::forbidden(
                "this needs an admin; a viewer may only look",
            ))
        }
    }
}

/// Why a page was not shown to the caller.
#[derive(Debug)]
pub enum SessionRefusal {
    /// No live session: go and log in.
    LogIn,
    Failed(PageError),
}

impl IntoResponse for SessionRefusal {
    fn into_response(self) -> Response {
        match self {
            Self::LogIn => Redirect::to("/login").into_response(),
            Self::Failed(err) => err.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = SessionRefusal;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let cookie = cookie_value(&parts.headers, SESSION_COOKIE).ok_or(SessionRefusal::LogIn)?;
        let id_hash = session_hash(cookie);
        let record: SessionRecord = state
            .store
            .session(&id_hash, Utc::now())
            .await
            .map_err(|err| {
                SessionRefusal::Failed(PageError::unavailable("reading the session failed", &err))
            })?
            .ok_or(SessionRefusal::LogIn)?;
        Ok(Self {
            username: record.username,
            role: record.role,
            csrf_token: record.csrf_token,
            id_hash,
        })
    }
}

/// A form that carries only the CSRF token (logout, revoke).
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: Option<String>,
}

/// A form body that did not parse: a 400 naming the problem.
pub fn form_refusal(rejection: &FormRejection) -> PageError {
    PageError::new(rejection.status(), rejection.body_text())
}

// ---------------------------------------------------------------------------
// Login and logout.

/// The login form's fields. Hand-written `Debug`: the password must never
/// be printed.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// `GET /login`: the form, with a fresh login CSRF token.
pub async fn login_page(State(state): State<AppState>) -> Response {
    login_form(&state, StatusCode::OK, None, "")
}

/// The login page with `error` shown, and a new double-submit token.
fn login_form(
    state: &AppState,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
) -> Response {
    let token = random_token();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · Palisade" }
                link rel="stylesheet" href="/static/style.css";
            }
            body class="login" {
                main {
                    h1 { "Palisade" }
                    p { "Endpoint posture for IT. Log in with the account made by "
                        code { "palisade-collector user create" } "." }
                    @if let Some(error) = error {
                        p class="error" role="alert" { (error) }
                    }
                    form id="login" method="post" action="/login" {
                        input type="hidden" name="csrf" value=(token);
                        label for="username" { "User name" }
                        input id="username" name="username" type="text" value=(username)
                            autocomplete="username" required autofocus;
                        label for="password" { "Password" }
                        input id="password" name="password" type="password"
                            autocomplete="current-password" required;
                        button id="login-submit" type="submit" { "Log in" }
                    }
                }
            }
        }
    };
    let mut response = html_response(status, markup);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            LOGIN_CSRF_COOKIE,
            &token,
            "/login",
            LOGIN_CSRF_MAX_AGE_SECONDS,
            state.web.secure_cookies,
        ),
    );
    response
}

/// `POST /login`: checks the login CSRF pair, the lockout and the
/// password; on success starts a session and goes to the overview.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Form(form) = match form {
        Ok(form) => form,
        Err(rejection) => return form_refusal(&rejection).into_response(),
    };
    let pair_matches = match (cookie_value(&headers, LOGIN_CSRF_COOKIE), &form.csrf) {
        (Some(cookie), Some(field)) => tokens_match(cookie, field),
        _ => false,
    };
    if !pair_matches {
        return login_form(
            &state,
            StatusCode::FORBIDDEN,
            Some("The login form expired or was not sent from this page; please try again."),
            &form.username,
        );
    }
    let now = Utc::now();
    let user = match state.store.admin_user(&form.username).await {
        Ok(user) => user,
        Err(err) => return PageError::unavailable("reading the user failed", &err).into_response(),
    };
    let exists = user.is_some();
    let locked = match &user {
        Some(user) => user.info.locked_until.is_some_and(|until| until > now),
        None => state.web.unknown_users.is_locked(&form.username, now),
    };
    // Always one argon2 verification, for real and unknown names alike, so
    // the time taken tells nothing. It takes tens of milliseconds of CPU:
    // off the async workers.
    let hash = user
        .as_ref()
        .map_or_else(|| dummy_hash().to_owned(), |u| u.password_hash.clone());
    let password = form.password;
    let verified = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false);
    let username = form.username;

    if locked {
        let _ = audit(
            &state,
            "anonymous",
            "user.login_failed",
            &username,
            serde_json::json!({ "reason": "locked" }),
        )
        .await;
        return login_form(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some("This account is locked after too many failed logins; try again later."),
            &username,
        );
    }
    let Some(user) = user.filter(|_| verified) else {
        let newly_locked = if exists {
            state
                .store
                .record_failed_login(&username, MAX_FAILED_LOGINS, now + LOCKOUT)
                .await
                .unwrap_or_else(|err| {
                    tracing::error!(error = %err, "recording a failed login failed");
                    false
                })
        } else {
            state.web.unknown_users.record_failure(&username, now);
            false
        };
        let _ = audit(
            &state,
            "anonymous",
            "user.login_failed",
            &username,
            serde_json::json!({ "reason": "wrong_password", "locked": newly_locked }),
        )
        .await;
        tracing::info!(user = %username, "dashboard login failed");
        return login_form(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("Wrong user name or password."),
            &username,
        );
    };

    if let Err(err) = state.store.record_successful_login(&username).await {
        return PageError::unavailable("recording the login failed", &err).into_response();
    }
    let cookie = random_token();
    let session = NewSession {
        id_hash: session_hash(&cookie),
        username: username.clone(),
        csrf_token: random_token(),
        created_at: now,
        expires_at: now + SESSION_LIFETIME,
    };
    if let Err(err) = state.store.create_session(&session).await {
        return PageError::unavailable("starting the session failed", &err).into_response();
    }
    if let Err(err) = audit(
        &state,
        &format!("user:{username}"),
        "user.login",
        &username,
        serde_json::json!({ "role": user.info.role.as_str() }),
    )
    .await
    {
        return err.into_response();
    }
    tracing::info!(user = %username, "dashboard login");
    let mut response = Redirect::to("/").into_response();
    let secure = state.web.secure_cookies;
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(
            SESSION_COOKIE,
            &cookie,
            "/",
            SESSION_LIFETIME.num_seconds(),
            secure,
        ),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_CSRF_COOKIE, "", "/login", 0, secure),
    );
    response
}

/// `POST /logout`: ends the session (its row is deleted) and goes to the
/// login page.
pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(form) = form.map_err(|r| form_refusal(&r))?;
    session.check_csrf(form.csrf.as_deref())?;
    state
        .store
        .delete_session(&session.id_hash)
        .await
        .map_err(|err| PageError::unavailable("ending the session failed", &err))?;
    audit(
        &state,
        &session.actor(),
        "user.logout",
        &session.username,
        serde_json::json!({}),
    )
    .await?;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/", 0, state.web.secure_cookies),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse battery").unwrap_or_default();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse battery "));
        assert!(!verify_password("not a hash", "anything"));
        assert!(!verify_password(dummy_hash(), ""));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_new_password("elevenchars").is_err());
        assert!(check_new_password("twelve chars").is_ok());
        // Characters, not bytes.
        assert!(check_new_password("ééééééééééé").is_err());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; palisade_session=abc; b=2"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie_value(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie_value(&headers, "c"), Some("3"));
        assert_eq!(cookie_value(&headers, "palisade"), None);
    }

    #[test]
    fn cookies_carry_the_flags() {
        let secure = set_cookie(SESSION_COOKIE, "v", "/", 60, true);
        assert_eq!(
            secure.to_str().unwrap_or_default(),
            "palisade_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        let plain = set_cookie(SESSION_COOKIE, "v", "/", 60, false);
        assert!(!plain.to_str().unwrap_or_default().contains("Secure"));
    }
}
