//! The policy document: which rules a device must meet, with what thresholds,
//! and what the agent does about each (`audit`, `nudge`, `enforce`).
//!
//! A policy is TOML. The collector serves it as the payload of a DSSE
//! envelope of type [`POLICY_PAYLOAD_TYPE`](crate::envelope::POLICY_PAYLOAD_TYPE),
//! the text byte for byte, so its digest is the SHA-256 of that text and an
//! agent can show an operator exactly the file that was signed.
//!
//! Parsing reports every problem at once, each with its key path and line
//! (see [`crate::diagnostics`]); unknown keys are errors, so a typo never
//! silently weakens a rule. The baseline policy is `config/policy.toml`.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use toml_span::de_helpers::TableHelper;
use toml_span::{DeserError, Deserialize, Span, Spanned, Value};

use crate::diagnostics::{self, Diagnostics, invalid};
use crate::envelope::sha256_hex;
use crate::report::{Mode, PolicyRef};

/// A parsed, validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: String,
    pub version: u64,
    pub description: String,
    pub screen_lock: Option<ScreenLockPolicy>,
    pub disk_encryption: Option<DiskEncryptionPolicy>,
    pub password_policy: Option<PasswordPolicy>,
    pub usb_storage: Option<UsbStoragePolicy>,
    /// Lowercase hex SHA-256 of the TOML text this was parsed from.
    pub digest: String,
}

/// What every rule has, whatever it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleSettings {
    pub mode: Mode,
    /// Days between a rule first failing and its deadline, in `nudge` mode.
    pub grace_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenLockPolicy {
    pub settings: RuleSettings,
    /// The longest time, idle delay plus lock delay, before the screen locks.
    pub max_idle_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskEncryptionPolicy {
    pub settings: RuleSettings,
    /// Whether swap must be encrypted too. Swap holds pages of memory, and so
    /// patient data, after power-off.
    pub include_swap: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub settings: RuleSettings,
    /// The shortest password PAM must accept.
    pub min_length: u32,
    /// How many character classes a password must mix; `None` does not check.
    pub min_classes: Option<u32>,
    /// The longest password lifetime; `None` does not check (NCSC advises
    /// against forced expiry).
    pub max_age_days: Option<u32>,
    /// Whether enforcement may edit the PAM stack (it touches login, so it is
    /// opt-in).
    pub manage_pam: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbStoragePolicy {
    pub settings: RuleSettings,
    pub storage: UsbStorageMode,
    /// Devices that are allowed whatever `storage` says.
    pub allow: Vec<UsbDeviceMatch>,
}

/// What happens to USB mass-storage devices that are not on the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsbStorageMode {
    Allow,
    ReadOnly,
    Block,
}

impl UsbStorageMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::ReadOnly => "read_only",
            Self::Block => "block",
        }
    }
}

/// An allowlist entry: `vendor:product` or `vendor:product:serial`, vendor
/// and product as four hex digits the way `lsusb` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbDeviceMatch {
    pub vendor_id: u16,
    pub product_id: u16,
    pub serial: Option<String>,
}

impl UsbDeviceMatch {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(3, ':');
        let vendor = parts.next().unwrap_or_default();
        let product = parts.next().ok_or_else(|| {
            format!("{text:?} is not vendor:product[:serial] (e.g. \"0781:5581\")")
        })?;
        let serial = parts.next();
        let hex4 = |part: &str, what: &str| {
            if part.len() == 4 && part.bytes().all(|b| b.is_ascii_hexdigit()) {
                u16::from_str_radix(part, 16).map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "{what} {part:?} in {text:?} is not four hex digits"
                ))
            }
        };
        let vendor_id = hex4(vendor, "vendor id")?;
        let product_id = hex4(product, "product id")?;
        if serial == Some("") {
            return Err(format!(
                "serial in {text:?} is empty; leave out the colon to match any serial"
            ));
        }
        Ok(Self {
            vendor_id,
            product_id,
            serial: serial.map(str::to_owned),
        })
    }

    /// Whether a connected device with these ids matches this entry.
    pub fn matches(&self, vendor_id: u16, product_id: u16, serial: Option<&str>) -> bool {
        self.vendor_id == vendor_id
            && self.product_id == product_id
            && self
                .serial
                .as_deref()
                .is_none_or(|wanted| Some(wanted) == serial)
    }
}

impl std::fmt::Display for UsbDeviceMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor_id, self.product_id)?;
        if let Some(serial) = &self.serial {
            write!(f, ":{serial}")?;
        }
        Ok(())
    }
}

/// Why a policy file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("cannot read policy file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every problem in the file, `FILE:LINE:COLUMN: key: message` each.
    #[error("{}", diagnostics::render_file_problems("policy", .path, .diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Diagnostics,
    },
}

impl Policy {
    /// Reads and validates a policy file. The text comes back with it: the
    /// collector signs the text as the operator wrote it.
    pub fn load_file(path: &Path) -> Result<(String, Self), PolicyFileError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |diagnostics| PolicyFileError::Invalid {
            path: path.to_path_buf(),
            diagnostics,
        };
        let text = diagnostics::utf8_text(bytes).map_err(invalid)?;
        let policy = Self::parse(&text).map_err(invalid)?;
        Ok((text, policy))
    }

    /// Parses and validates a policy, reporting every problem with its line.
    pub fn parse(text: &str) -> Result<Self, Diagnostics> {
        let document: PolicyDocument = diagnostics::parse_toml(text)?;
        Ok(Self {
            id: document.header.id,
            version: document.header.version,
            description: document.header.description,
            screen_lock: document.rules.screen_lock,
            disk_encryption: document.rules.disk_encryption,
            password_policy: document.rules.password_policy,
            usb_storage: document.rules.usb_storage,
            digest: sha256_hex(text.as_bytes()),
        })
    }

    /// The reference a report carries to name this policy.
    pub fn reference(&self) -> PolicyRef {
        PolicyRef {
            id: self.id.clone(),
            version: self.version,
            digest: self.digest.clone(),
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the TOML. Each table is read with a `TableHelper`, which keeps
// going after an error so that all of them are reported together.

struct PolicyDocument {
    header: PolicyHeader,
    rules: Rules,
}

struct PolicyHeader {
    id: String,
    version: u64,
    description: String,
}

#[derive(Default)]
struct Rules {
    screen_lock: Option<ScreenLockPolicy>,
    disk_encryption: Option<DiskEncryptionPolicy>,
    password_policy: Option<PasswordPolicy>,
    usb_storage: Option<UsbStoragePolicy>,
}

/// Grace period when a policy does not say: 14 days, the baseline's figure
/// for disk encryption (../shared/policy-baseline.md), long enough for a home
/// worker to get help and short enough that IT sees the laggards in a sprint.
const DEFAULT_GRACE_DAYS: u32 = 14;
/// A deadline more than a year away is no deadline.
const GRACE_DAYS_RANGE: RangeInclusive<u32> = 0..=365;

impl<'de> Deserialize<'de> for PolicyDocument {
    fn deserialize(value: &mut Value<'de>) -> Result<Self, DeserError> {
        let mut th = TableHelper::new(value)?;
        let header = th.required::<PolicyHeader>("policy");
        let rules_span = th.table.get("rules").map(|v| v.span);
        let rules = th.optional::<Rules>("rules").unwrap_or_default();
        let no_rules = rules.screen_lock.is_none()
            && rules.disk_encryption.is_none()
            && rules.password_policy.is_none()
            && rules.usb_storage.is_none();
        if no_rules && th.errors.is_empty() {
            th.errors.push(invalid(
                rules_span.unwrap_or(value.span),
                "the policy enables no rules; add at least one [rules.<id>] table",
            ));
        }
        th.finalize(None)?;
        let header = header.map_err(DeserError::from)?;
        Ok(Self { header, rules })
    }
}

impl<'de> Deserialize<'de> for PolicyHeader {
    fn deserialize(value: &mut Value<'de>) -> Result<Self, DeserError> {
        let mut th = TableHelper::new(value)?;
        let id = th.required_s::<String>("id");
        let version = th.required::<u64>("version");
        let description = th.optional::<String>("description").unwrap_or_default();
        if let Ok(id) = &id {
            let valid = !id.value.is_empty()
                && id.value.len() <= 64
                && id
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !valid {
                th.errors.push(invalid(
                    id.span,
                    "must be 1 to 64 letters, digits, '-', '_' or '.'",
                ));
            }
        }
        th.finalize(None)?;
        match (id, version) {
            (Ok(id), Ok(version)) => Ok(Self {
                id: id.value,
                version,
                description,
            }),
            (Err(e), _) | (_, Err(e)) => Err(e.into()),
        }
    }
}

impl<'de> Deserialize<'de> for Rules {
    fn deserialize(value: &mut Value<'de>) -> Result<Self, DeserError> {
        let mut th = TableHelper::new(value)?;
        let rules = Self {
            screen_lock: th.optional(crate::RuleId::SCREEN_LOCK),
            disk_encryption: th.optional(crate::RuleId::DISK_ENCRYPTION),
            password_policy: th.optional(crate::RuleId::PASSWORD_POLICY),
            usb_storage: th.optional(crate::RuleId::USB_STORAGE),
        };
        th.finalize(None)?;
        Ok(rules)
    }
}

impl<'de> Deserialize<'de> for ScreenLockPolicy {
    fn deserialize(value: &mut Value<'de>) -> Result<Self, DeserError> {
        let mut th = TableHelper::new(value)?;
        let settings = read_settings(&mut th);
        // 900 s: CIS Windows 2.3.7.3 and DISA STIG macOS; see config/policy.toml.
        let max_idle_seconds = bounded(&mut th, "max_idle_seconds", 900, 1..=86_400);
        th.finalize(None)?;
        Ok(Self {
            settings,
            max_idle_seconds,
        })
    }
}

impl<'de> Deserialize<'de> for DiskEncryptionPolicy {
    fn deserialize(value: &mut Value<'de>) -> Result<Self, DeserError> {
        let mut th = TableHelper::new(value)?;
        let settings = read_settings(&mut th);
        let include_swap = th.optional("include_swap").unwrap_or(true);
        th.finalize(None)?;
        Ok(Self {
            settings,
            include_swap,
        })
    }
}

impl<'de> Deserialize<'de> for PasswordPolicy {
    fn deserialize(value: &mut Value<'de>) -> Result<Self, DeserError> {
        let mut th = TableHelper::new(value)?;
        let settings = read_settings(&mut th);
        // 12: NCSC Cyber Essentials v3.1 for passwords without MFA.
        let min_length = bounded(&mut th, "min_length", 12, 1..=128);
        let min_classes = optional_bounded(&mut th, "min_classes", 1..=4);
        let max_age_days = optional_bounded(&mut th, "max_age_days", 1..=3650);
        let manage_pam = th.optional("manage_pam").unwrap_or(false);
        th.finalize(None)?;
        Ok(Self {
            settings,
            min_length,
            min_classes,
            max_age_days,
            manage_pam,
        })
    }
}

impl<'de> Deserialize<'de> for UsbStoragePolicy {
    fn deserialize(value: &mut Value<'de>) -> Result<Self, DeserError> {
        let mut th = TableHelper::new(value)?;
        let settings = read_settings(&mut th);
        let storage = match th.optional_s::<String>("storage") {
            None => UsbStorageMode::Block,
            Some(s) => match s.value.as_str() {
                "allow" => UsbStorageMode::Allow,
                "read_only" => UsbStorageMode::ReadOnly,
                "block" => UsbStorageMode::Block,
                other => {
                    th.errors.push(invalid(
                        s.span,
                        format!("{other:?} is not a storage mode; use \"allow\", \"read_only\" or \"block\""),
                    ));
                    UsbStorageMode::Block
                }
            },
        };
        let mut allow = Vec::new();
        for entry in th
            .optional::<Vec<Spanned<String>>>("allow")
            .unwrap_or_default()
        {
            match UsbDeviceMatch::parse(&entry.value) {
                Ok(device) => allow.push(device),
                Err(message) => th.errors.push(invalid(entry.span, message)),
            }
        }
        th.finalize(None)?;
        Ok(Self {
            settings,
            storage,
            allow,
        })
    }
}

fn read_settings(th: &mut TableHelper<'_>) -> RuleSettings {
    let mode = match th.required_s::<String>("mode") {
        Ok(s) => match s.value.as_str() {
            "audit" => Mode::Audit,
            "nudge" => Mode::Nudge,
            "enforce" => Mode::Enforce,
            other => {
                th.errors.push(invalid(
                    s.span,
                    format!("{other:?} is not a mode; use \"audit\", \"nudge\" or \"enforce\""),
                ));
                Mode::Audit
            }
        },
        // The helper has recorded the error; the value is never used.
        Err(_) => Mode::Audit,
    };
    let grace_days = bounded(th, "grace_days", DEFAULT_GRACE_DAYS, GRACE_DAYS_RANGE);
    RuleSettings { mode, grace_days }
}

/// Reads an optional integer key, recording an error when it is outside
/// `range`.
fn bounded(
    th: &mut TableHelper<'_>,
    key: &'static str,
    default: u32,
    range: RangeInclusive<u32>,
) -> u32 {
    optional_bounded(th, key, range).unwrap_or(default)
}

fn optional_bounded(
    th: &mut TableHelper<'_>,
    key: &'static str,
    range: RangeInclusive<u32>,
) -> Option<u32> {
    let value = th.optional_s::<i64>(key)?;
    match u32::try_from(value.value) {
        Ok(number) if range.contains(&number) => Some(number),
        _ => {
            th.errors
                .push(out_of_range(value.span, value.value, &range));
            None
        }
    }
}

fn out_of_range(span: Span, got: i64, range: &RangeInclusive<u32>) -> toml_span::Error {
    invalid(
        span,
        format!(
            "must be between {} and {}, got {got}",
            range.start(),
            range.end()
        ),
    )
}
