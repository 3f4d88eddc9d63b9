//! Who may use the collector: API tokens, dashboard users (with their login
//! lockout) and their sessions. Secrets are kept hashed only.
//!
//! SQL written once for both engines (see [`super::engine`]).

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use super::engine::{stmt, stmt_from};
use super::rows::*;
use super::*;

// ---------------------------------------------------------------------------
// API tokens.

/// What a bearer token may do: a viewer reads, an admin also changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// A new API token. The token itself is `plt_<id>_<random>`; only the
/// SHA-256 of the random part is kept.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub id: String,
    pub token_hash: [u8; 32],
    pub role: Role,
    pub label: String,
    pub created_at: DateTime<Utc>,
}

/// An API token as listed to IT (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenInfo {
    pub id: String,
    pub role: Role,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An API token with its hash, for checking a presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiToken {
    pub info: ApiTokenInfo,
    token_hash: [u8; 32],
}

impl StoredApiToken {
    pub fn new(info: ApiTokenInfo, token_hash: [u8; 32]) -> Self {
        Self { info, token_hash }
    }

    /// Whether `presented` (the SHA-256 of a presented token's random part)
    /// is this token's hash, compared in constant time.
    pub fn hash_matches(&self, presented: &[u8; 32]) -> bool {
        bool::from(self.token_hash.ct_eq(presented))
    }
}

// ---------------------------------------------------------------------------
// The dashboard: its users, their sessions, and the overview's figures.

/// A dashboard user to create. The password is already an argon2 PHC string.
#[derive(Debug, Clone)]
pub struct NewAdminUser {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// A dashboard user as listed (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUserInfo {
    pub username: String,
    pub role: Role,
    pub failed_attempts: u32,
    /// Logins are refused until then.
    pub locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A dashboard user with the hash, for checking a password.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredAdminUser {
    pub info: AdminUserInfo,
    /// An argon2 PHC string.
    pub password_hash: String,
}

/// Hand-written so a hash never reaches a log through `{:?}`.
impl std::fmt::Debug for StoredAdminUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAdminUser")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// A new login session. The cookie itself is never stored, only its hash.
#[derive(Clone)]
pub struct NewSession {
    /// SHA-256 of the cookie value.
    pub id_hash: [u8; 32],
    pub username: String,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A live session with its user's current role (a role change applies
/// from the next request).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub username: String,
    pub role: Role,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub async fn create_api_token(&self, token: &NewApiToken) -> Result<(), StoreError> {
        stmt(
            "INSERT INTO api_tokens (id, token_hash, role, label, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.id)
        .bind(token.token_hash.as_slice())
        .bind(token.role.as_str())
        .bind(&token.label)
        .bind(to_millis(token.created_at))
        .write(&self.pools)
        .await?;
        Ok(())
    }

    /// The token with this id, revoked or not, with its hash.
    pub async fn api_token(&self, id: &str) -> Result<Option<StoredApiToken>, StoreError> {
        let row = stmt(
            "SELECT id, token_hash, role, label, created_at, revoked_at \
             FROM api_tokens WHERE id = $1",
        )
        .bind(id)
        .read_optional(&self.pools)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let hash = hash_from_bytes(row.value("token_hash")?, "token hash")?;
        Ok(Some(StoredApiToken::new(token_from_row(&row)?, hash)))
    }

    /// Every token, newest first.
    pub async fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>, StoreError> {
        let rows = stmt_from(format!(
            "SELECT id, role, label, created_at, revoked_at FROM api_tokens \
             ORDER BY created_at DESC, id{c}",
            c = self.pools.dialect().binary_collation()
        ))
        .read_all(&self.pools)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token; `false` when no such token exists. Revoking again
    /// keeps the first revocation time.
    pub async fn revoke_api_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let found =
            stmt("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
                .bind(id)
                .bind(to_millis(at))
                .write(&self.pools)
                .await?
                > 0;
        Ok(found)
    }

    /// Creates a dashboard user; `false` (and nothing changed) when the name
    /// is taken.
    pub async fn create_admin_user(&self, user: &NewAdminUser) -> Result<bool, StoreError> {
        let created = stmt(
            "INSERT INTO admin_users (username, password_hash, role, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(to_millis(user.created_at))
        .write(&self.pools)
        .await?
            > 0;
        Ok(created)
    }

    pub async fn admin_user(&self, username: &str) -> Result<Option<StoredAdminUser>, StoreError> {
        let row = stmt(
            "SELECT username, password_hash, role, failed_attempts, locked_until, created_at \
             FROM admin_users WHERE username = $1",
        )
        .bind(username)
        .read_optional(&self.pools)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredAdminUser {
            info: admin_user_from_row(&row)?,
            password_hash: row.value("password_hash")?,
        }))
    }

    /// Every dashboard user, by name.
    pub async fn list_admin_users(&self) -> Result<Vec<AdminUserInfo>, StoreError> {
        let rows = stmt_from(format!(
            "SELECT username, role, failed_attempts, locked_until, created_at \
             FROM admin_users ORDER BY username{c}",
            c = self.pools.dialect().binary_collation()
        ))
        .read_all(&self.pools)
        .await?;
        rows.iter().map(admin_user_from_row).collect()
    }

    /// Deletes a user and (by cascade) their sessions; `false` when unknown.
    pub async fn delete_admin_user(&self, username: &str) -> Result<bool, StoreError> {
        let found = stmt("DELETE FROM admin_users WHERE username = $1")
            .bind(username)
            .write(&self.pools)
            .await?
            > 0;
        Ok(found)
    }

    /// Counts a failed login for an existing user. The `max_attempts`-th
    /// failure in a row locks the user until `lock_until` and starts the
    /// count again; returns whether this failure locked it.
    pub async fn record_failed_login(
        &self,
        username: &str,
        max_attempts: u32,
        lock_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One statement (taking the row lock on PostgreSQL), so concurrent
        // failures are all counted; the right-hand sides see the row as it
        // was.
        let row = stmt(
            "UPDATE admin_users SET \
               failed_attempts = CASE WHEN failed_attempts + 1 >= $2 THEN 0 \
                                      ELSE failed_attempts + 1 END, \
               locked_until = CASE WHEN failed_attempts + 1 >= $2 THEN $3 \
                                   ELSE locked_until END \
             WHERE username = $1 RETURNING locked_until",
        )
        .bind(username)
        .bind(i64::from(max_attempts))
        .bind(to_millis(lock_until))
        .write_returning(&self.pools)
        .await?;
        let locked: Option<i64> = row
            .map(|row| row.value("locked_until"))
            .transpose()?
            .flatten();
        Ok(locked == Some(to_millis(lock_until)))
    }

    /// A successful login: the failure count starts again.
    pub async fn record_successful_login(&self, username: &str) -> Result<(), StoreError> {
        stmt("UPDATE admin_users SET failed_attempts = 0, locked_until = NULL WHERE username = $1")
            .bind(username)
            .write(&self.pools)
            .await?;
        Ok(())
    }

    /// Stores a session, sweeping the sessions expired at its creation.
    pub async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        let mut tx = self.pools.begin_write().await?;
        stmt("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(to_millis(session.created_at))
            .execute(&mut tx)
            .await?;
        stmt(
            "INSERT INTO sessions (id_hash, username, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session.id_hash.as_slice())
        .bind(&session.username)
        .bind(&session.csrf_token)
        .bind(to_millis(session.created_at))
        .bind(to_millis(session.expires_at))
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session with this cookie hash if it is live at `at`.
    pub async fn session(
        &self,
        id_hash: &[u8; 32],
        at: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = stmt(
            "SELECT s.username, u.role, s.csrf_token, s.expires_at \
             FROM sessions s JOIN admin_users u ON u.username = s.username \
             WHERE s.id_hash = $1 AND s.expires_at > $2",
        )
        .bind(id_hash.as_slice())
        .bind(to_millis(at))
        .read_optional(&self.pools)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Deletes a session; `false` when there was none.
    pub async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<bool, StoreError> {
        let found = stmt("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash.as_slice())
            .write(&self.pools)
            .await?
            > 0;
        Ok(found)
    }
}
