//! Enrollment and devices: enrollment secrets, enrolling a device with its
//! key, the key lookup of the ingest path, revocation, and a device's row
//! and latest verdicts.
//!
//! SQL written once for both engines (see [`super::engine`]); it must not
//! decide anything about report chains (that is [`super::chain`]).

use chrono::{DateTime, Utc};
use palisade_shared::report::CheckStatus;

use super::engine::{stmt, stmt_from};
use super::rows::*;
use super::*;

// ---------------------------------------------------------------------------
// Enrollment.

/// A new enrollment secret. The secret itself is `pls_<id>_<random>`; only
/// the SHA-256 of the random part is kept.
#[derive(Debug, Clone)]
pub struct NewEnrollmentSecret {
    pub id: String,
    pub secret_hash: [u8; 32],
    pub label: String,
    /// `None`: unlimited uses.
    pub max_uses: Option<u32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// An enrollment secret as listed to IT (never the hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentSecretInfo {
    pub id: String,
    pub label: String,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// When it was revoked; `None`: not revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Whether a secret still enrolls devices, and if not, why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretState {
    Active,
    Expired,
    UsedUp,
    Revoked,
}

impl SecretState {
    /// The name lists and the API show: `active`, `expired`, `used_up`,
    /// `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::UsedUp => "used_up",
            Self::Revoked => "revoked",
        }
    }
}

impl EnrollmentSecretInfo {
    /// Its state at `now`; when more than one reason stops it, the one an
    /// operator chose wins: revoked, then expired, then used up (the same
    /// order enrollment checks them in).
    pub fn state(&self, now: DateTime<Utc>) -> SecretState {
        if self.revoked_at.is_some() {
            SecretState::Revoked
        } else if self.expires_at.is_some_and(|expires| now >= expires) {
            SecretState::Expired
        } else if self.max_uses.is_some_and(|max| self.uses >= max) {
            SecretState::UsedUp
        } else {
            SecretState::Active
        }
    }
}

/// A device asking to enroll, already past the proof-of-possession check.
#[derive(Debug, Clone)]
pub struct EnrollDevice {
    pub secret_id: String,
    /// SHA-256 of the random part the agent presented.
    pub presented_hash: [u8; 32],
    /// The id the collector gives the new device.
    pub device_id: String,
    pub key_id: String,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub agent_version: String,
    pub at: DateTime<Utc>,
    /// The caller's address, for the audit entry.
    pub peer: String,
}

/// Why an enrollment was refused. The HTTP layer answers all of the secret
/// cases with the same 401, so a caller cannot tell which part was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollRefusal {
    UnknownSecret,
    WrongSecret,
    SecretExpired,
    SecretUsedUp,
    SecretRevoked,
    /// The key is already enrolled (to any device): a device re-enrolls with
    /// a new key.
    KeyAlreadyEnrolled,
}

/// What an accepted enrollment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    /// A new device, with the id the request proposed.
    New,
    /// The key was already enrolled through this same secret (the device's
    /// first answer was lost): its existing device, unchanged, and no use of
    /// the secret counted.
    Existing { device_id: String },
}

impl EnrollRefusal {
    /// The reason as the audit log names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownSecret => "unknown_secret",
            Self::WrongSecret => "wrong_secret",
            Self::SecretExpired => "expired",
            Self::SecretUsedUp => "used_up",
            Self::SecretRevoked => "revoked",
            Self::KeyAlreadyEnrolled => "key_already_enrolled",
        }
    }
}

/// The audit entry of an enrollment: actor the secret, target the device.
fn enrollment_audit(request: &EnrollDevice, action: &str, device_id: &str) -> AuditEntry {
    AuditEntry {
        at: request.at,
        actor: format!("secret:{}", request.secret_id),
        action: action.to_owned(),
        target: device_id.to_owned(),
        details_json: serde_json::json!({
            "secret_id": request.secret_id,
            "hostname": request.hostname,
            "key_id": request.key_id,
            "peer": request.peer,
        })
        .to_string(),
    }
}

/// The columns of an enrollment secret as `rows::secret_from_row` reads
/// them.
const SECRET_COLUMNS: &str =
    "id, label, max_uses, uses, expires_at, created_at, created_by, revoked_at";

// ---------------------------------------------------------------------------
// Devices and keys.

/// What the ingest path needs to know about a signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeyRecord {
    pub key_id: String,
    pub device_id: String,
    pub public_key: [u8; 32],
    /// Set when the device (and so its key) was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A device as the dashboard and the admin API see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device_id: String,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub agent_version: String,
    /// The policy the device last reported running; `None` before its first
    /// report.
    pub policy_id: Option<String>,
    pub policy_version: Option<u64>,
    /// The enrollment secret that enrolled it.
    pub enrollment_secret_id: String,
    pub enrolled_at: DateTime<Utc>,
    /// When its latest report was stored (collector clock).
    pub last_seen_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The head of its hash chain: highest stored sequence and its digest.
    pub last_sequence: Option<u64>,
    pub last_digest: Option<String>,
    /// Set once a report arrived after a gap; never cleared by ingest.
    pub sequence_gap: bool,
    /// Set once a report's `prev_digest` did not match the stored head.
    pub chain_broken: bool,
    /// The person last seen using it (a report's `host.console_user`);
    /// `None` until a report names one. A report without a user keeps the
    /// last one known.
    pub console_user: Option<String>,
}

/// A device's latest verdict for one rule, from its highest stored report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestVerdict {
    pub rule_id: String,
    pub status: CheckStatus,
    pub mode: String,
    pub summary: String,
    pub evidence_json: String,
    pub fix: String,
    /// `issued_at` of the first report in the current run of this status: a
    /// report with the same status keeps it, another status resets it.
    pub status_since: DateTime<Utc>,
    /// `received_at` of the report that last wrote the verdict.
    pub updated_at: DateTime<Utc>,
    /// The sequence of that report.
    pub report_sequence: u64,
}

/// One device row by id, in the column order `rows::device_from_row` reads.
pub(super) const DEVICE_BY_ID: &str = "SELECT id, hostname, os_name, os_version, kernel_version, \
     arch, agent_version, policy_id, policy_version, enrollment_secret_id, enrolled_at, \
     last_seen_at, revoked_at, last_sequence, last_digest, sequence_gap, chain_broken, \
     console_user \
     FROM devices WHERE id = $1";

impl Store {
    pub async fn create_enrollment_secret(
        &self,
        secret: &NewEnrollmentSecret,
    ) -> Result<(), StoreError> {
        stmt(
            "INSERT INTO enrollment_secrets \
             (id, secret_hash, label, max_uses, uses, expires_at, created_at, created_by) \
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7)",
        )
        .bind(&secret.id)
        .bind(secret.secret_hash.as_slice())
        .bind(&secret.label)
        .bind(secret.max_uses.map(i64::from))
        .bind(secret.expires_at.map(to_millis))
        .bind(to_millis(secret.created_at))
        .bind(&secret.created_by)
        .write(&self.pools)
        .await?;
        Ok(())
    }

    pub async fn list_enrollment_secrets(&self) -> Result<Vec<EnrollmentSecretInfo>, StoreError> {
        let rows = stmt_from(format!(
            "SELECT {SECRET_COLUMNS} FROM enrollment_secrets ORDER BY created_at DESC, id"
        ))
        .read_all(&self.pools)
        .await?;
        rows.iter().map(secret_from_row).collect()
    }

    /// One enrollment secret by id (never its hash).
    pub async fn enrollment_secret(
        &self,
        id: &str,
    ) -> Result<Option<EnrollmentSecretInfo>, StoreError> {
        let row = stmt_from(format!(
            "SELECT {SECRET_COLUMNS} FROM enrollment_secrets WHERE id = $1"
        ))
        .bind(id)
        .read_optional(&self.pools)
        .await?;
        row.as_ref().map(secret_from_row).transpose()
    }

    /// Revokes an enrollment secret; `false` when no such secret exists.
    /// Revoking again keeps the first revocation time.
    pub async fn revoke_enrollment_secret(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let found = stmt(
            "UPDATE enrollment_secrets SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(to_millis(at))
        .write(&self.pools)
        .await?
            > 0;
        Ok(found)
    }

    /// Checks the secret (constant-time hash comparison, revocation, expiry,
    /// uses), counts the use, creates the device and its key, and appends
    /// the audit entry `device.enroll` (actor `secret:<id>`, target the new
    /// device, with the hostname, key and caller's address), all in one
    /// transaction: an enrollment is never without its audit entry.
    ///
    /// Retry-safe: a key already enrolled through this same secret, with the
    /// right secret, gets its existing device back ([`Enrolled::Existing`],
    /// audited as `device.enroll_repeated`) whatever the secret's limits say
    /// now, since its one use was that device's. An agent whose first answer
    /// was lost retries with the same key and must not be stuck. The same
    /// key through another secret, or a revoked key or device, is refused.
    pub async fn enroll_device(
        &self,
        request: &EnrollDevice,
    ) -> Result<Result<Enrolled, EnrollRefusal>, StoreError> {
        let dialect = self.pools.dialect();
        let mut tx = self.pools.begin_write().await?;
        // Locked (PostgreSQL): two enrollments on a single-use secret at once
        // must not both see one use left. SQLite's write lock covers it.
        let secret = stmt_from(format!(
            "SELECT secret_hash, max_uses, uses, expires_at, revoked_at FROM enrollment_secrets \
             WHERE id = $1{}",
            dialect.lock_rows()
        ))
        .bind(&request.secret_id)
        .fetch_optional(&mut tx)
        .await?;
        let refusal = match secret {
            None => Some(EnrollRefusal::UnknownSecret),
            Some(row) => {
                let stored_hash: Vec<u8> = row.value("secret_hash")?;
                let limits = SecretLimits {
                    max_uses: row.value("max_uses")?,
                    uses: row.value("uses")?,
                    expires_at: row.value("expires_at")?,
                    revoked_at: row.value("revoked_at")?,
                };
                let limits_refusal = secret_refusal(
                    &request.presented_hash,
                    &stored_hash,
                    &limits,
                    to_millis(request.at),
                );
                let enrolled_key = stmt(
                    "SELECT k.device_id, d.enrollment_secret_id, \
                            COALESCE(k.revoked_at, d.revoked_at) AS revoked_at \
                     FROM device_keys k JOIN devices d ON d.id = k.device_id \
                     WHERE k.key_id = $1",
                )
                .bind(&request.key_id)
                .fetch_optional(&mut tx)
                .await?;
                match (limits_refusal, enrolled_key) {
                    (Some(EnrollRefusal::WrongSecret), _) => Some(EnrollRefusal::WrongSecret),
                    (_, Some(row)) => {
                        let device_id: String = row.value("device_id")?;
                        let secret_id: String = row.value("enrollment_secret_id")?;
                        let revoked_at: Option<i64> = row.value("revoked_at")?;
                        if secret_id == request.secret_id && revoked_at.is_none() {
                            let audit =
                                enrollment_audit(request, "device.enroll_repeated", &device_id);
                            super::policy::audit_insert(&audit).execute(&mut tx).await?;
                            tx.commit().await?;
                            return Ok(Ok(Enrolled::Existing { device_id }));
                        }
                        Some(EnrollRefusal::KeyAlreadyEnrolled)
                    }
                    (refusal, None) => refusal,
                }
            }
        };
        if let Some(refusal) = refusal {
            tx.rollback().await?;
            return Ok(Err(refusal));
        }

        let at = to_millis(request.at);
        stmt("UPDATE enrollment_secrets SET uses = uses + 1 WHERE id = $1")
            .bind(&request.secret_id)
            .execute(&mut tx)
            .await?;
        stmt(
            "INSERT INTO devices \
             (id, hostname, os_name, os_version, kernel_version, arch, agent_version, \
              enrollment_secret_id, enrolled_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&request.device_id)
        .bind(&request.hostname)
        .bind(&request.os_name)
        .bind(&request.os_version)
        .bind(&request.kernel_version)
        .bind(&request.arch)
        .bind(&request.agent_version)
        .bind(&request.secret_id)
        .bind(at)
        .execute(&mut tx)
        .await?;
        // The same key enrolling through two different secrets at once on
        // PostgreSQL: both saw it free above, the second insert waits for the
        // first and then does nothing, and is refused like any other reused
        // key. (Under SQLite's write lock the check above already saw it.)
        let inserted = stmt(
            "INSERT INTO device_keys (key_id, device_id, public_key, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&request.key_id)
        .bind(&request.device_id)
        .bind(request.public_key.as_slice())
        .bind(at)
        .execute(&mut tx)
        .await?;
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(Err(EnrollRefusal::KeyAlreadyEnrolled));
        }
        let audit = enrollment_audit(request, "device.enroll", &request.device_id);
        super::policy::audit_insert(&audit).execute(&mut tx).await?;
        tx.commit().await?;
        Ok(Ok(Enrolled::New))
    }

    pub async fn device_key(&self, key_id: &str) -> Result<Option<DeviceKeyRecord>, StoreError> {
        // A key is revoked when it or its device is.
        let row = stmt(
            "SELECT k.key_id, k.device_id, k.public_key, \
                    COALESCE(k.revoked_at, d.revoked_at) AS revoked_at \
             FROM device_keys k JOIN devices d ON d.id = k.device_id \
             WHERE k.key_id = $1",
        )
        .bind(key_id)
        .read_optional(&self.pools)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Revokes a device and its keys; `false` when no such device exists.
    /// Revoking again keeps the first revocation time.
    pub async fn revoke_device(
        &self,
        device_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pools.begin_write().await?;
        let found = stmt("UPDATE devices SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
            .bind(device_id)
            .bind(to_millis(at))
            .execute(&mut tx)
            .await?
            > 0;
        stmt("UPDATE device_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE device_id = $1")
            .bind(device_id)
            .bind(to_millis(at))
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(found)
    }

    pub async fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let row = stmt(DEVICE_BY_ID)
            .bind(device_id)
            .read_optional(&self.pools)
            .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// The device's latest verdicts, by rule id.
    pub async fn latest_verdicts(&self, device_id: &str) -> Result<Vec<LatestVerdict>, StoreError> {
        let rows = stmt_from(format!(
            "SELECT rule_id, status, mode, summary, evidence, fix, status_since, updated_at, \
                    report_sequence \
             FROM latest_verdicts WHERE device_id = $1 ORDER BY rule_id{c}",
            c = self.pools.dialect().binary_collation()
        ))
        .bind(device_id)
        .read_all(&self.pools)
        .await?;
        rows.iter().map(verdict_from_row).collect()
    }
}
