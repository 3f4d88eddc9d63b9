//! Newtypes for the identifiers that travel on the wire, so a device id can
//! never be passed where a rule id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The collector-assigned identity of an enrolled device.
///
/// Before enrollment the agent uses [`DeviceId::unenrolled`], which the
/// collector never accepts in a report.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    const UNENROLLED: &'static str = "unenrolled";

    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The placeholder used by `palisade-agent check` on a device that has
    /// not enrolled yet.
    pub fn unenrolled() -> Self {
        Self(Self::UNENROLLED.to_owned())
    }

    pub fn is_unenrolled(&self) -> bool {
        self.0 == Self::UNENROLLED
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stable identifier of a device rule, such as `screen_lock`.
///
/// Rule ids are part of the policy file, the report and the dashboard URLs,
/// so they never change once released.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleId(String);

impl RuleId {
    pub const SCREEN_LOCK: &'static str = "screen_lock";
    pub const DISK_ENCRYPTION: &'static str = "disk_encryption";
    pub const PASSWORD_POLICY: &'static str = "password_policy";
    pub const USB_STORAGE: &'static str = "usb_storage";

    /// Every rule this version of the schema knows, in report order.
    pub const ALL: [&'static str; 4] = [
        Self::SCREEN_LOCK,
        Self::DISK_ENCRYPTION,
        Self::PASSWORD_POLICY,
        Self::USB_STORAGE,
    ];

    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for RuleId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}
