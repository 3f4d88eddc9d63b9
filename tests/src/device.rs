//! A simulated device: an Ed25519 key, an enrollment, and a report chain,
//! built with the same shared types the agent uses. Used by the collector
//! tests and, later, the fleet simulator.

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use palisade_shared::envelope::{
    Envelope, REPORT_PAYLOAD_TYPE, sha256_hex, verifying_key_to_base64,
};
use palisade_shared::protocol::{ENROLL_SCHEMA_VERSION, EnrollRequest};
use palisade_shared::report::{
    AgentInfo, CheckResult, CheckStatus, HostInfo, Mode, PolicyRef, REPORT_SCHEMA_VERSION,
};
use palisade_shared::{DeviceId, Report, RuleId};
use rand::RngCore as _;

/// A device with its own key and chain state.
#[derive(Debug)]
pub struct SimulatedDevice {
    pub key: SigningKey,
    pub hostname: String,
    pub device_id: Option<String>,
    /// The sequence of the last report made.
    pub sequence: u64,
    /// The digest of the last report made.
    pub prev_digest: String,
}

impl SimulatedDevice {
    pub fn new(hostname: &str) -> Self {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Self {
            key: SigningKey::from_bytes(&seed),
            hostname: hostname.to_owned(),
            device_id: None,
            sequence: 0,
            prev_digest: String::new(),
        }
    }

    pub fn host(&self) -> HostInfo {
        HostInfo {
            hostname: self.hostname.clone(),
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            kernel_version: "6.1.0-26-amd64".into(),
            arch: "x86_64".into(),
            console_user: None,
        }
    }

    pub fn agent() -> AgentInfo {
        AgentInfo {
            version: "0.1.0".into(),
            os: "linux".into(),
        }
    }

    /// The signed enrollment request for `secret`.
    pub fn enroll_envelope(&self, secret: &str, requested_at: DateTime<Utc>) -> Envelope {
        EnrollRequest {
            schema_version: ENROLL_SCHEMA_VERSION,
            enrollment_secret: secret.to_owned(),
            public_key: verifying_key_to_base64(&self.key.verifying_key()),
            agent: Self::agent(),
            host: self.host(),
            requested_at,
        }
        .sign(&self.key)
    }

    /// A report document for the next sequence (not yet signed, chain not
    /// advanced), with one failing and one passing rule.
    pub fn next_report(&self, issued_at: DateTime<Utc>) -> Report {
        let device_id = self
            .device_id
            .clone()
            .unwrap_or_else(|| "unenrolled".into());
        Report {
            schema_version: REPORT_SCHEMA_VERSION,
            device_id: DeviceId::new(device_id),
            sequence: self.sequence + 1,
            issued_at,
            prev_digest: self.prev_digest.clone(),
            agent: Self::agent(),
            host: self.host(),
            policy: PolicyRef {
                id: "nhs-baseline".into(),
                version: 1,
                digest: "0".repeat(64),
            },
            checks: vec![
                check(
                    RuleId::DISK_ENCRYPTION,
                    CheckStatus::Fail,
                    "1 of 1 persistent mounts are not encrypted: /",
                ),
                check(
                    RuleId::SCREEN_LOCK,
                    CheckStatus::Pass,
                    "screen locks after 300 s",
                ),
            ],
            events: Vec::new(),
        }
    }

    /// Signs `report` and advances the chain as if it were sent.
    pub fn sign_and_advance(&mut self, report: &Report) -> Envelope {
        let payload = report.to_payload();
        self.sequence = report.sequence;
        self.prev_digest = sha256_hex(&payload);
        Envelope::sign(REPORT_PAYLOAD_TYPE, &payload, &self.key)
    }

    /// The next report, signed, chain advanced.
    pub fn next_envelope(&mut self) -> Envelope {
        let report = self.next_report(Utc::now());
        self.sign_and_advance(&report)
    }
}

fn check(id: &str, status: CheckStatus, summary: &str) -> CheckResult {
    CheckResult {
        id: RuleId::new(id),
        status,
        mode: Mode::Audit,
        summary: summary.into(),
        evidence: serde_json::Map::new(),
        fix: String::new(),
        probe_duration_us: 100,
        enforcement: None,
        first_failed_at: None,
        deadline: None,
    }
}
