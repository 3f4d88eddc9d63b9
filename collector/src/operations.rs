//! The changes that more than one front end makes, each written once:
//! [`revoke_device`], [`create_enrollment_secret`] and
//! [`revoke_enrollment_secret`]. The command line
//! ([`crate::cli`]), the admin API ([`crate::server::admin`]) and the
//! dashboard ([`crate::web`]) parse their own input and render their own
//! answer; the validation, the store call and the audit entry are here, so
//! a change is checked and audited the same way whoever makes it.
//!
//! What it must not do: know HTTP, HTML or the terminal. It reaches durable
//! state only through [`crate::store`].

use chrono::{DateTime, Utc};

use crate::secrets;
use crate::store::{AuditEntry, EnrollmentSecretInfo, NewEnrollmentSecret, Store, StoreError};

/// Longest enrollment secret label, in characters: a note for IT, not a
/// document; 200 is what the admin API and the dashboard allowed before.
pub const MAX_SECRET_LABEL_CHARS: usize = 200;

/// Why an operation did not happen (or happened but was not audited).
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The device id names no device.
    #[error("no device {0:?}")]
    NoSuchDevice(String),
    /// The id names no enrollment secret. Shown as given only when it has
    /// the shape of an id, so a whole secret pasted by mistake is not
    /// echoed into an answer or a terminal log.
    #[error("no enrollment secret {}", shown_secret_id(.0))]
    NoSuchSecret(String),
    /// A value the operation cannot take; `field` names it.
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    /// The store failed before the change was made.
    #[error("store failed: {0}")]
    Store(#[source] StoreError),
    /// The change was made but its audit entry could not be written.
    #[error("{action} on {target} was done but could not be audited")]
    Unaudited {
        action: &'static str,
        target: String,
        #[source]
        source: StoreError,
    },
}

/// A revoked device and when it was revoked.
#[derive(Debug, Clone)]
pub struct RevokedDevice {
    pub device_id: String,
    pub hostname: String,
    /// The time that was kept (an earlier revocation's, when there was one).
    pub revoked_at: DateTime<Utc>,
    /// False when the device was already revoked: nothing changed and
    /// nothing was audited.
    pub newly_revoked: bool,
}

/// Revokes a device and its keys, and audits it as `device.revoke` with
/// the hostname. Idempotent: revoking a revoked device answers the first
/// revocation's time and writes no second audit entry.
pub async fn revoke_device(
    store: &Store,
    actor: &str,
    device_id: &str,
) -> Result<RevokedDevice, OperationError> {
    let no_such_device = || OperationError::NoSuchDevice(device_id.to_owned());
    let device = store
        .device(device_id)
        .await
        .map_err(OperationError::Store)?
        .ok_or_else(no_such_device)?;
    if let Some(revoked_at) = device.revoked_at {
        return Ok(RevokedDevice {
            device_id: device_id.to_owned(),
            hostname: device.hostname,
            revoked_at,
            newly_revoked: false,
        });
    }
    let now = Utc::now();
    if !store
        .revoke_device(device_id, now)
        .await
        .map_err(OperationError::Store)?
    {
        return Err(no_such_device());
    }
    audit(
        store,
        actor,
        "device.revoke",
        device_id,
        serde_json::json!({ "hostname": device.hostname }),
    )
    .await?;
    tracing::info!(device = %device_id, actor = %actor, "device revoked");
    // Another admin may have revoked it a moment earlier: answer the time
    // that was kept. The change is made, so a failed read answers ours.
    let revoked_at = store
        .device(device_id)
        .await
        .ok()
        .flatten()
        .and_then(|d| d.revoked_at)
        .unwrap_or(now);
    Ok(RevokedDevice {
        device_id: device_id.to_owned(),
        hostname: device.hostname,
        revoked_at,
        newly_revoked: true,
    })
}

/// What a new enrollment secret allows.
#[derive(Debug, Clone, Default)]
pub struct NewSecret {
    pub label: String,
    /// How many devices may enroll with it; `None`: unlimited.
    pub max_uses: Option<u32>,
    /// When it stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A secret just made: its text (shown this once, stored only as a hash)
/// and what the store keeps about it.
#[derive(Debug)]
pub struct CreatedSecret {
    pub text: String,
    pub info: EnrollmentSecretInfo,
}

/// Makes an enrollment secret, stores its hash and audits it as
/// `secret.create` with its label, uses and expiry.
pub async fn create_enrollment_secret(
    store: &Store,
    actor: &str,
    request: NewSecret,
) -> Result<CreatedSecret, OperationError> {
    if request.max_uses == Some(0) {
        return Err(OperationError::Invalid {
            field: "uses",
            problem: "must be at least 1 (leave it out for unlimited)".into(),
        });
    }
    if request.label.chars().count() > MAX_SECRET_LABEL_CHARS {
        return Err(OperationError::Invalid {
            field: "label",
            problem: format!("longer than {MAX_SECRET_LABEL_CHARS} characters"),
        });
    }
    let now = Utc::now();
    let secret = secrets::generate("pls");
    store
        .create_enrollment_secret(&NewEnrollmentSecret {
            id: secret.id.clone(),
            secret_hash: secret.hash,
            label: request.label.clone(),
            max_uses: request.max_uses,
            expires_at: request.expires_at,
            created_at: now,
            created_by: actor.to_owned(),
        })
        .await
        .map_err(OperationError::Store)?;
    audit(
        store,
        actor,
        "secret.create",
        &secret.id,
        serde_json::json!({
            "label": request.label,
            "max_uses": request.max_uses,
            "expires_at": request.expires_at,
        }),
    )
    .await?;
    tracing::info!(secret_id = %secret.id, actor = %actor, "enrollment secret created");
    let info = EnrollmentSecretInfo {
        id: secret.id,
        label: request.label,
        max_uses: request.max_uses,
        uses: 0,
        // As stored: whole milliseconds.
        expires_at: request
            .expires_at
            .and_then(|t| DateTime::from_timestamp_millis(t.timestamp_millis())),
        created_at: DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now),
        created_by: actor.to_owned(),
        revoked_at: None,
    };
    Ok(CreatedSecret {
        text: secret.text,
        info,
    })
}

/// A revoked enrollment secret and when it was revoked.
#[derive(Debug, Clone)]
pub struct RevokedSecret {
    pub info: EnrollmentSecretInfo,
    /// The time that was kept (an earlier revocation's, when there was one).
    pub revoked_at: DateTime<Utc>,
    /// False when it was already revoked: nothing changed and nothing was
    /// audited.
    pub newly_revoked: bool,
}

/// Revokes an enrollment secret (devices presenting it are refused from
/// now on with the same answer as any other bad secret; the devices it
/// enrolled stay enrolled) and audits it as `secret.revoke` with its label
/// and uses. Idempotent, like [`revoke_device`]: revoking a revoked secret
/// answers the first revocation's time and writes no second audit entry.
pub async fn revoke_enrollment_secret(
    store: &Store,
    actor: &str,
    secret_id: &str,
) -> Result<RevokedSecret, OperationError> {
    // Hex digits in either case, as enrollment reads them.
    let secret_id = &secret_id.to_ascii_lowercase();
    let no_such_secret = || OperationError::NoSuchSecret(secret_id.to_owned());
    if !is_secret_id(secret_id) {
        return Err(no_such_secret());
    }
    let info = store
        .enrollment_secret(secret_id)
        .await
        .map_err(OperationError::Store)?
        .ok_or_else(no_such_secret)?;
    if let Some(revoked_at) = info.revoked_at {
        return Ok(RevokedSecret {
            info,
            revoked_at,
            newly_revoked: false,
        });
    }
    let now = Utc::now();
    if !store
        .revoke_enrollment_secret(secret_id, now)
        .await
        .map_err(OperationError::Store)?
    {
        return Err(no_such_secret());
    }
    audit(
        store,
        actor,
        "secret.revoke",
        secret_id,
        serde_json::json!({ "label": info.label, "uses": info.uses }),
    )
    .await?;
    tracing::info!(secret_id = %secret_id, actor = %actor, "enrollment secret revoked");
    // As for devices: answer the time that was kept.
    let info = store
        .enrollment_secret(secret_id)
        .await
        .ok()
        .flatten()
        .unwrap_or(info);
    let revoked_at = info.revoked_at.unwrap_or(now);
    Ok(RevokedSecret {
        info,
        revoked_at,
        newly_revoked: true,
    })
}

/// Whether `text` has the shape of an enrollment secret's id: the 16
/// lowercase hex digits after `pls_` ([`secrets::generate`]).
fn is_secret_id(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn shown_secret_id(text: &str) -> String {
    if is_secret_id(text) {
        format!("{text:?}")
    } else {
        "with that id (an id is the 16 hex digits after `pls_`)".to_owned()
    }
}

/// Writes the audit entry for a change already made.
async fn audit(
    store: &Store,
    actor: &str,
    action: &'static str,
    target: &str,
    details: serde_json::Value,
) -> Result<(), OperationError> {
    store
        .append_audit(&AuditEntry {
            at: Utc::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            details_json: details.to_string(),
        })
        .await
        .map_err(|source| OperationError::Unaudited {
            action,
            target: target.to_owned(),
            source,
        })
}
