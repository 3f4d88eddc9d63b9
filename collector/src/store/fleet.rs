//! The fleet as IT sees it: the records of listings, device details,
//! summaries and the trend, and the Rust half of the exception rule
//! ([`effective_status`], [`overall_status`]; see the store's module
//! documentation). Pure: the queries are in `fleet_read.rs`.

use chrono::{DateTime, Utc};
use palisade_shared::report::CheckStatus;

use super::*;

// ---------------------------------------------------------------------------
// The fleet as IT sees it.

/// A device's overall status, from its latest verdicts after exceptions
/// (see [`overall_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceStatus {
    Pass,
    Fail,
    Unknown,
}

impl DeviceStatus {
    pub const ALL: [Self; 3] = [Self::Pass, Self::Fail, Self::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A verdict's status once exceptions are applied: a `fail` with an active
/// exception is `excepted`; every other status is as reported.
pub fn effective_status(reported: CheckStatus, exception_active: bool) -> CheckStatus {
    if reported == CheckStatus::Fail && exception_active {
        CheckStatus::Excepted
    } else {
        reported
    }
}

/// A device's overall status from its effective verdict statuses: `fail` if
/// any fails; else `unknown` if any is `unknown` or `error` (a false pass is
/// the worst bug); else `pass` (`excepted` and `not_applicable` count as
/// compliant). A device with no verdicts yet is `unknown`.
pub fn overall_status(statuses: impl IntoIterator<Item = CheckStatus>) -> DeviceStatus {
    let mut any = false;
    let mut unsure = false;
    for status in statuses {
        any = true;
        match status {
            CheckStatus::Fail => return DeviceStatus::Fail,
            CheckStatus::Unknown | CheckStatus::Error => unsure = true,
            CheckStatus::Pass | CheckStatus::NotApplicable | CheckStatus::Excepted => {}
        }
    }
    if !any || unsure {
        DeviceStatus::Unknown
    } else {
        DeviceStatus::Pass
    }
}

/// The most devices one page of [`Store::list_devices`] holds: a page
/// of 200 rows is a few hundred KiB of JSON, enough for any screen, and keeps
/// one request from reading the whole fleet.
pub const MAX_DEVICES_PER_PAGE: u32 = 200;

/// How devices are ordered; each maps to a fixed SQL fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSort {
    /// Case-insensitively by hostname.
    Hostname,
    /// By when the latest report arrived; never-seen devices count as oldest.
    LastSeen,
    /// By OS name, then version.
    Os,
    /// By overall status: pass, unknown, fail.
    Status,
    EnrolledAt,
}

impl DeviceSort {
    pub const ALL: [Self; 5] = [
        Self::Hostname,
        Self::LastSeen,
        Self::Os,
        Self::Status,
        Self::EnrolledAt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hostname => "hostname",
            Self::LastSeen => "last_seen",
            Self::Os => "os",
            Self::Status => "status",
            Self::EnrolledAt => "enrolled_at",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Devices with a verdict for `rule_id` (after exceptions), optionally only
/// those where it has `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFilter {
    pub rule_id: String,
    pub status: Option<CheckStatus>,
}

/// Which devices to list, in what order, which page. Filters combine with
/// AND; `None` does not filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceQuery {
    /// The instant exceptions are judged at (normally now).
    pub at: DateTime<Utc>,
    pub status: Option<DeviceStatus>,
    pub rule: Option<RuleFilter>,
    /// Exact OS name, e.g. `Debian GNU/Linux`.
    pub os: Option<String>,
    /// Only devices last seen (or, never seen, enrolled) before this instant.
    pub stale_before: Option<DateTime<Utc>>,
    /// Only devices last seen (or enrolled) at or after this instant.
    pub seen_since: Option<DateTime<Utc>>,
    /// A case-insensitive substring of the hostname, the OS name or the
    /// console user; `%`, `_` and `\` match themselves.
    pub search: Option<String>,
    /// `Some(false)`: only active devices; `Some(true)`: only revoked ones.
    pub revoked: Option<bool>,
    pub sort: DeviceSort,
    pub descending: bool,
    /// 1-based.
    pub page: u32,
    /// 1 to [`MAX_DEVICES_PER_PAGE`]; the store clamps it.
    pub per_page: u32,
}

impl DeviceQuery {
    /// Every device, by hostname, first page of 50.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            at,
            status: None,
            rule: None,
            os: None,
            stale_before: None,
            seen_since: None,
            search: None,
            revoked: None,
            sort: DeviceSort::Hostname,
            descending: false,
            page: 1,
            per_page: 50,
        }
    }
}

/// One device of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceListing {
    pub device: DeviceRecord,
    pub status: DeviceStatus,
    /// Effective status per rule, by rule id.
    pub rules: Vec<(String, CheckStatus)>,
}

/// One page of devices and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePage {
    pub devices: Vec<DeviceListing>,
    pub total: u64,
}

/// A device's signing key as shown to IT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeyInfo {
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One stored report in a device's history (not its envelope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportHistoryEntry {
    pub sequence: u64,
    pub digest: String,
    pub prev_digest: String,
    pub issued_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub sequence_gap: bool,
    pub chain_broken: bool,
    /// JSON object: number of checks by status.
    pub summary_json: String,
}

/// A latest verdict with exceptions applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceVerdict {
    /// As the device reported it.
    pub verdict: LatestVerdict,
    /// After exceptions.
    pub status: CheckStatus,
    /// The active exception that made it `excepted`, if one did.
    pub exception_id: Option<u64>,
}

/// Everything IT sees about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDetail {
    pub device: DeviceRecord,
    pub status: DeviceStatus,
    pub verdicts: Vec<DeviceVerdict>,
    pub keys: Vec<DeviceKeyInfo>,
    /// The newest reports first.
    pub reports: Vec<ReportHistoryEntry>,
    /// Exceptions active at the instant asked about.
    pub exceptions: Vec<ExceptionRecord>,
}

/// The fleet in numbers. Revoked devices are counted only in `revoked`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetSummary {
    pub devices: u64,
    pub compliant: u64,
    pub failing: u64,
    pub unknown: u64,
    /// Not seen (or, never seen, enrolled) within `stale_after`.
    pub stale: u64,
    pub revoked: u64,
    /// Devices failing each rule (after exceptions), by rule id; rules no
    /// device fails are absent.
    pub failing_by_rule: Vec<(String, u64)>,
}

/// Devices by overall status; revoked devices only in `revoked`. The four
/// add up to every device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceStatusCounts {
    pub pass: u64,
    pub fail: u64,
    pub unknown: u64,
    pub revoked: u64,
}

/// One UTC day of the compliance trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrendDay {
    pub day: chrono::NaiveDate,
    /// Devices with at least one report issued that day.
    pub reporting: u64,
    /// Of those, the devices whose last report that day had no failing
    /// check (as signed, before exceptions).
    pub compliant: u64,
}

/// An active device failing at least one rule, with the oldest
/// `status_since` among its failing rules (after exceptions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingDevice {
    pub device_id: String,
    pub hostname: String,
    pub console_user: Option<String>,
    pub failing_since: DateTime<Utc>,
    /// The failing rules, by rule id.
    pub rules: Vec<String>,
}
