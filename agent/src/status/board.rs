//! The status document ([`AgentStatus`]) and the board the daemon keeps it
//! on ([`StatusBoard`]).

use chrono::{DateTime, Utc};
use palisade_shared::report::{CheckResult, Event};
use palisade_shared::{DeviceId, KeyId};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{RECENT_EVENTS_KEPT, STATUS_SCHEMA_VERSION};
use crate::identity::Identity;
use crate::policy::CurrentPolicy;
use crate::spool::Spool;

/// What the daemon knows about itself and the device, as served on the
/// status socket (`{"request":"status"}`) and printed by
/// `palisade-agent status --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentStatus {
    /// Always [`STATUS_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The daemon's semantic version, e.g. `0.1.0`.
    pub agent_version: String,
    /// When this daemon process started.
    pub started_at: DateTime<Utc>,
    /// The collector-assigned device id; `null` until enrolled.
    pub device_id: Option<DeviceId>,
    /// The id of the device's public signing key (hex SHA-256).
    pub key_id: KeyId,
    /// Where the private key is kept, as a person reads it, e.g.
    /// `file /var/lib/palisade/device.key (0600)` or `macOS Keychain`.
    pub key_store: String,
    /// The collector the device is enrolled with; `null` until enrolled.
    pub collector_url: Option<String>,
    /// The policy in force; `null` until the daemon has loaded one.
    pub policy: Option<PolicyStatus>,
    /// When the latest check cycle finished; `null` before the first.
    pub last_cycle_at: Option<DateTime<Utc>>,
    /// The latest cycle's verdicts, in report order.
    pub checks: Vec<CheckResult>,
    /// Things the daemon did or saw that the person at the keyboard should
    /// hear about (a USB stick blocked, a setting enforced), newest last,
    /// at most [`RECENT_EVENTS_KEPT`]. The nudge helper shows each once.
    #[serde(default)]
    pub recent_events: Vec<Event>,
    pub spool: SpoolStatus,
    pub delivery: DeliveryStatus,
}

/// The policy in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyStatus {
    pub id: String,
    pub version: u64,
    /// Where it came from, e.g. `built-in baseline` or `last good policy
    /// from the collector`.
    pub source: String,
}

/// The reports waiting to be delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolStatus {
    /// How many signed reports are in the spool.
    pub pending_reports: u64,
    /// Their total size on disk.
    pub pending_bytes: u64,
    /// The sequence number of the oldest, which is sent next; `null` when
    /// the spool is empty.
    pub oldest_pending_sequence: Option<u64>,
    /// Check cycles whose report could not be written (a full disk), not
    /// yet reported to the collector.
    #[serde(default)]
    pub unrecorded_cycles: u64,
    /// When the first of them ran.
    #[serde(default)]
    pub unrecorded_since: Option<DateTime<Utc>>,
}

/// How delivery to the collector is going.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryStatus {
    /// When the collector last acknowledged a report; `null` if it has not
    /// since the daemon started.
    pub last_delivered_at: Option<DateTime<Utc>>,
    /// Why the latest attempt failed; `null` when it succeeded (or none has
    /// failed yet).
    pub last_error: Option<String>,
    /// When that attempt failed.
    pub last_error_at: Option<DateTime<Utc>>,
}

impl AgentStatus {
    /// The status at daemon start: identity known, everything else still to
    /// come.
    pub fn starting(identity: &Identity, started_at: DateTime<Utc>) -> Self {
        Self {
            schema_version: STATUS_SCHEMA_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at,
            device_id: None,
            key_id: identity.key_id(),
            key_store: identity.store.to_string(),
            collector_url: None,
            policy: None,
            last_cycle_at: None,
            checks: Vec::new(),
            recent_events: Vec::new(),
            spool: SpoolStatus::default(),
            delivery: DeliveryStatus::default(),
        }
    }
}

/// Where the daemon publishes its status. Cheap to clone: every clone
/// writes to the same board, so the loop and the sender task can each hold
/// one.
#[derive(Clone, Debug)]
pub struct StatusBoard {
    sender: watch::Sender<AgentStatus>,
}

impl StatusBoard {
    pub fn new(initial: AgentStatus) -> Self {
        Self {
            sender: watch::Sender::new(initial),
        }
    }

    /// A reader for [`serve`]; it always sees the latest value.
    pub fn subscribe(&self) -> watch::Receiver<AgentStatus> {
        self.sender.subscribe()
    }

    /// A copy of the current status.
    pub fn current(&self) -> AgentStatus {
        self.sender.borrow().clone()
    }

    /// Changes the status in place. Readers see the change on their next
    /// request; this never blocks on them.
    pub fn update(&self, change: impl FnOnce(&mut AgentStatus)) {
        // `send_modify` updates the value even when no one is subscribed.
        self.sender.send_modify(change);
    }

    /// The device enrolled (or its enrollment record was loaded).
    pub fn set_enrollment(&self, device_id: &DeviceId, collector_url: &str) {
        self.update(|status| {
            status.device_id = Some(device_id.clone());
            status.collector_url = Some(collector_url.to_owned());
        });
    }

    /// A policy came into force.
    pub fn set_policy(&self, current: &CurrentPolicy) {
        let policy = PolicyStatus {
            id: current.policy.id.clone(),
            version: current.policy.version,
            source: current.source.to_owned(),
        };
        self.update(|status| status.policy = Some(policy));
    }

    /// A check cycle finished with these verdicts.
    pub fn set_cycle(&self, finished_at: DateTime<Utc>, checks: Vec<CheckResult>) {
        self.update(|status| {
            status.last_cycle_at = Some(finished_at);
            status.checks = checks;
        });
    }

    /// Something happened that the user should hear about; the oldest is
    /// forgotten once more than [`RECENT_EVENTS_KEPT`] are held.
    pub fn record_event(&self, event: Event) {
        self.update(|status| {
            status.recent_events.push(event);
            let excess = status
                .recent_events
                .len()
                .saturating_sub(RECENT_EVENTS_KEPT);
            status.recent_events.drain(..excess);
        });
    }

    /// The spool changed (a report appended, acknowledged or dropped).
    pub fn set_spool(&self, spool: &Spool) {
        let counts = SpoolStatus {
            pending_reports: spool.len() as u64,
            pending_bytes: spool.total_bytes(),
            oldest_pending_sequence: spool.oldest(),
            unrecorded_cycles: spool.unrecorded().map_or(0, |u| u.count),
            unrecorded_since: spool.unrecorded().map(|u| u.since),
        };
        self.update(|status| status.spool = counts);
    }

    /// The collector acknowledged a report.
    pub fn record_delivered(&self, at: DateTime<Utc>) {
        self.update(|status| {
            status.delivery.last_delivered_at = Some(at);
            status.delivery.last_error = None;
            status.delivery.last_error_at = None;
        });
    }

    /// A delivery attempt failed (it will be retried, or the report was
    /// refused for good).
    pub fn record_delivery_failed(&self, at: DateTime<Utc>, reason: impl Into<String>) {
        let reason = reason.into();
        self.update(|status| {
            status.delivery.last_error = Some(reason);
            status.delivery.last_error_at = Some(at);
        });
    }
}
