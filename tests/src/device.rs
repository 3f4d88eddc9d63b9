//! Long file: one simulated device end to end (key, enrollment, every report kind), read top to bottom.
//! A simulated device: an Ed25519 key, an enrollment, and a report chain,
//! built with the same shared types the agent uses. Used by the collector
//! tests, the browser tests and the fleet simulator (`fleet.rs`).
//!
//! A device has a [`Platform`] (what the agent on a Debian, Ubuntu, Fedora,
//! macOS or Windows laptop would put in `host` and `agent`), an optional
//! console user, and [`simulated_check`] makes check results with the
//! summaries, evidence and fix text an agent on that platform would send.
//! It makes documents only: sending them is the caller's business.

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
use serde_json::{Value, json};

/// A device with its own key and chain state.
#[derive(Debug)]
pub struct SimulatedDevice {
    pub key: SigningKey,
    pub hostname: String,
    /// The person at the keyboard (`HostInfo::console_user`).
    pub console_user: Option<String>,
    /// What the agent reports about the OS; Debian 12 unless set.
    pub platform: Platform,
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
            console_user: None,
            platform: Platform::debian_12(),
            device_id: None,
            sequence: 0,
            prev_digest: String::new(),
        }
    }

    /// The same device on another platform.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// The same device with `user` at the keyboard.
    pub fn with_console_user(mut self, user: &str) -> Self {
        self.console_user = Some(user.to_owned());
        self
    }

    pub fn host(&self) -> HostInfo {
        HostInfo {
            hostname: self.hostname.clone(),
            os_name: self.platform.os_name.clone(),
            os_version: self.platform.os_version.clone(),
            kernel_version: self.platform.kernel_version.clone(),
            arch: self.platform.arch.clone(),
            console_user: self.console_user.clone(),
        }
    }

    /// The agent of a Linux device (kept for callers that have no device).
    pub fn agent() -> AgentInfo {
        AgentInfo {
            version: "0.1.0".into(),
            os: "linux".into(),
        }
    }

    /// The agent of this device: `agent.os` follows the platform.
    pub fn agent_info(&self) -> AgentInfo {
        AgentInfo {
            version: "0.1.0".into(),
            os: self.platform.family.agent_os().into(),
        }
    }

    /// The signed enrollment request for `secret`.
    pub fn enroll_envelope(&self, secret: &str, requested_at: DateTime<Utc>) -> Envelope {
        EnrollRequest {
            schema_version: ENROLL_SCHEMA_VERSION,
            enrollment_secret: secret.to_owned(),
            public_key: verifying_key_to_base64(&self.key.verifying_key()),
            agent: self.agent_info(),
            host: self.host(),
            requested_at,
        }
        .sign(&self.key)
    }

    /// A report document for the next sequence (not yet signed, chain not
    /// advanced), with one failing and one passing rule.
    pub fn next_report(&self, issued_at: DateTime<Utc>) -> Report {
        self.next_report_with(
            issued_at,
            vec![
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
        )
    }

    /// A report document for the next sequence carrying `checks` (not yet
    /// signed, chain not advanced).
    pub fn next_report_with(&self, issued_at: DateTime<Utc>, checks: Vec<CheckResult>) -> Report {
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
            agent: self.agent_info(),
            host: self.host(),
            policy: PolicyRef {
                id: "nhs-baseline".into(),
                version: 1,
                digest: "0".repeat(64),
            },
            checks,
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

// ---------------------------------------------------------------------------
// Platforms.

/// The operating system family an agent is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OsFamily {
    Linux,
    MacOs,
    Windows,
}

impl OsFamily {
    /// `AgentInfo::os`: Rust's `std::env::consts::OS` of the agent's build.
    pub fn agent_os(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::MacOs => "macos",
            Self::Windows => "windows",
        }
    }
}

/// What an agent puts in `host` on one kind of machine: the strings
/// `sysinfo` gives there (`System::name`, `os_version`, `kernel_version`)
/// and Rust's architecture name, as `agent/src/report.rs` fills them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub family: OsFamily,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
}

impl Platform {
    fn new(family: OsFamily, os_name: &str, os_version: &str, kernel: &str, arch: &str) -> Self {
        Self {
            family,
            os_name: os_name.into(),
            os_version: os_version.into(),
            kernel_version: kernel.into(),
            arch: arch.into(),
        }
    }

    /// Debian 12, the CI machine's OS and the default of a new device.
    pub fn debian_12() -> Self {
        Self::new(
            OsFamily::Linux,
            "Debian GNU/Linux",
            "12",
            "6.1.0-26-amd64",
            "x86_64",
        )
    }

    /// The platforms of a trust's laptop fleet, each with its share of the
    /// fleet in percent (the shares add up to 100). On Linux `sysinfo` reads
    /// `NAME` and `VERSION_ID` from os-release; on macOS it says `Darwin`
    /// with the product version and the Darwin kernel; on Windows `Windows`
    /// with `11 (build)` and the build number.
    pub fn catalogue() -> Vec<(Self, u32)> {
        use OsFamily::{Linux, MacOs, Windows};
        vec![
            (
                Self::new(Windows, "Windows", "11 (22631)", "22631", "x86_64"),
                30,
            ),
            (
                Self::new(Windows, "Windows", "11 (26100)", "26100", "x86_64"),
                18,
            ),
            (
                Self::new(MacOs, "Darwin", "14.7.1", "23.6.0", "aarch64"),
                10,
            ),
            (
                Self::new(MacOs, "Darwin", "15.1.1", "24.1.0", "aarch64"),
                12,
            ),
            (Self::new(MacOs, "Darwin", "14.6.1", "23.6.0", "x86_64"), 3),
            (Self::debian_12(), 9),
            (
                Self::new(Linux, "Ubuntu", "24.04", "6.8.0-48-generic", "x86_64"),
                9,
            ),
            (
                Self::new(Linux, "Ubuntu", "22.04", "5.15.0-124-generic", "x86_64"),
                4,
            ),
            (
                Self::new(
                    Linux,
                    "Fedora Linux",
                    "41",
                    "6.11.5-300.fc41.x86_64",
                    "x86_64",
                ),
                5,
            ),
        ]
    }
}

// ---------------------------------------------------------------------------
// Check results as an agent on each platform would send them.

/// How many wordings [`simulated_check`] has for each rule, family and
/// status; a variant number is taken modulo this.
pub const CHECK_VARIANTS: usize = 2;

/// A check result for `rule` (one of [`RuleId::ALL`]) with `status` (pass,
/// fail or unknown; anything else is sent with the unknown wording), worded
/// as the agent on `family` words it. `variant` picks one of
/// [`CHECK_VARIANTS`] wordings, so one device keeps the same failure from
/// report to report while the fleet shows several.
pub fn simulated_check(
    rule: &str,
    family: OsFamily,
    status: CheckStatus,
    variant: usize,
) -> CheckResult {
    let (summary, evidence, fix) = wording(rule, family, status, variant % CHECK_VARIANTS);
    CheckResult {
        id: RuleId::new(rule),
        status,
        mode: Mode::Audit,
        summary: summary.into(),
        evidence: match evidence {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
        fix: fix.into(),
        // Probes take a few milliseconds; a command-running one more.
        probe_duration_us: 400 + 1_700 * (variant as u64 % 3),
        enforcement: None,
        first_failed_at: None,
        deadline: None,
    }
}

const LINUX_DISK_FIX: &str = "Encrypt the disk with LUKS: back up your files, then reinstall choosing \
     \"Guided - use entire disk and set up encrypted LVM\" (or ask IT for the encrypted build). An \
     agent cannot encrypt a disk in place.";
const LINUX_LOCK_FIX: &str = "Open Settings → Privacy → Screen Lock, turn on Automatic Screen Lock \
     and set Blank Screen Delay to 5 minutes or less.";
const MAC_LOCK_FIX: &str = "Open System Settings → Lock Screen and set \"Require password after \
     screen saver begins or display is turned off\" to Immediately and \"Start Screen Saver when \
     inactive\" to 5 minutes.";
const WINDOWS_LOCK_FIX: &str = "Open Settings → Personalisation → Lock screen → Screen saver, choose \
     a wait of 5 minutes and tick \"On resume, display logon screen\"; or ask IT to apply the \
     screen-lock group policy.";

/// (summary, evidence, fix) for one rule, family, status and variant.
fn wording(
    rule: &str,
    family: OsFamily,
    status: CheckStatus,
    variant: usize,
) -> (&'static str, Value, &'static str) {
    use CheckStatus::{Fail, Pass};
    use OsFamily::{Linux, MacOs, Windows};
    let gsetting =
        |key: &str, value: Value| json!({"source": format!("dconf {key}"), "value": value});
    match (rule, family, status, variant) {
        // screen_lock
        (RuleId::SCREEN_LOCK, Linux, Pass, v) => {
            let idle = if v == 0 { 300 } else { 600 };
            (
                if v == 0 {
                    "the screen locks after 300 s idle"
                } else {
                    "the screen locks after 600 s idle"
                },
                json!({
                    "display_servers": ["Xwayland", "gnome-shell"],
                    "idle_delay_seconds": gsetting("/org/gnome/desktop/session/idle-delay", json!(idle)),
                    "lock_enabled": gsetting("/org/gnome/desktop/screensaver/lock-enabled", json!(true)),
                    "lock_delay_seconds": gsetting("/org/gnome/desktop/screensaver/lock-delay", json!(0)),
                    "max_idle_seconds": 900
                }),
                "",
            )
        }
        (RuleId::SCREEN_LOCK, Linux, Fail, 0) => (
            "the screen never locks: automatic screen lock is off",
            json!({
                "display_servers": ["Xwayland", "gnome-shell"],
                "idle_delay_seconds": gsetting("/org/gnome/desktop/session/idle-delay", json!(300)),
                "lock_enabled": gsetting("/org/gnome/desktop/screensaver/lock-enabled", json!(false)),
                "max_idle_seconds": 900
            }),
            LINUX_LOCK_FIX,
        ),
        (RuleId::SCREEN_LOCK, Linux, Fail, _) => (
            "the screen locks after 1800 s idle; policy allows 900 s",
            json!({
                "display_servers": ["gnome-shell"],
                "idle_delay_seconds": gsetting("/org/gnome/desktop/session/idle-delay", json!(1800)),
                "lock_enabled": gsetting("/org/gnome/desktop/screensaver/lock-enabled", json!(true)),
                "max_idle_seconds": 900
            }),
            LINUX_LOCK_FIX,
        ),
        (RuleId::SCREEN_LOCK, Linux, _, _) => (
            "the idle delay could not be read: no dconf database for the session user",
            json!({"display_servers": ["gnome-shell"], "error": "dconf: no such file: /run/user/1000/dconf/user"}),
            "",
        ),
        (RuleId::SCREEN_LOCK, MacOs, Pass, _) => (
            "the screen locks immediately when the screen saver starts at 300 s idle",
            json!({
                "idle_time_seconds": {"source": "com.apple.screensaver idleTime (configuration profile)", "value": 300},
                "ask_for_password": {"source": "com.apple.screensaver askForPassword", "value": 1},
                "ask_for_password_delay_seconds": {"source": "com.apple.screensaver askForPasswordDelay", "value": 0},
                "max_idle_seconds": 900
            }),
            "",
        ),
        (RuleId::SCREEN_LOCK, MacOs, Fail, 0) => (
            "the screen saver starts after 1200 s idle; policy allows 900 s",
            json!({
                "idle_time_seconds": {"source": "com.apple.screensaver idleTime (user)", "value": 1200},
                "ask_for_password": {"source": "com.apple.screensaver askForPassword", "value": 1},
                "max_idle_seconds": 900
            }),
            MAC_LOCK_FIX,
        ),
        (RuleId::SCREEN_LOCK, MacOs, Fail, _) => (
            "no password is asked when the screen saver stops (askForPassword = 0)",
            json!({
                "idle_time_seconds": {"source": "com.apple.screensaver idleTime (user)", "value": 600},
                "ask_for_password": {"source": "com.apple.screensaver askForPassword", "value": 0},
                "max_idle_seconds": 900
            }),
            MAC_LOCK_FIX,
        ),
        (RuleId::SCREEN_LOCK, MacOs, _, _) => (
            "the screen saver settings could not be read: sysadminctl timed out after 10 s",
            json!({"error": "timed out after 10 s"}),
            "",
        ),
        (RuleId::SCREEN_LOCK, Windows, Pass, _) => (
            "the screen locks after 600 s idle (machine inactivity limit)",
            json!({
                "inactivity_timeout_seconds": {
                    "source": "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\\InactivityTimeoutSecs",
                    "value": 600},
                "max_idle_seconds": 900
            }),
            "",
        ),
        (RuleId::SCREEN_LOCK, Windows, Fail, 0) => (
            "no machine inactivity limit is set and the screen saver does not ask for a password",
            json!({
                "inactivity_timeout_seconds": null,
                "screen_saver_secure": {"source": "HKCU\\Control Panel\\Desktop\\ScreenSaverIsSecure", "value": "0"},
                "max_idle_seconds": 900
            }),
            WINDOWS_LOCK_FIX,
        ),
        (RuleId::SCREEN_LOCK, Windows, Fail, _) => (
            "the screen locks after 3600 s idle; policy allows 900 s",
            json!({
                "inactivity_timeout_seconds": {
                    "source": "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\\InactivityTimeoutSecs",
                    "value": 3600},
                "max_idle_seconds": 900
            }),
            WINDOWS_LOCK_FIX,
        ),
        (RuleId::SCREEN_LOCK, Windows, _, _) => (
            "the inactivity limit could not be read: access to the policy key was denied",
            json!({"error": "RegOpenKeyEx: access denied (5)"}),
            "",
        ),

        // disk_encryption
        (RuleId::DISK_ENCRYPTION, Linux, Pass, _) => (
            "all 2 persistent mounts are encrypted (LUKS2)",
            json!({
                "include_swap": true,
                "mounts": [
                    {"mount_point": "/", "source": "/dev/mapper/vg-root", "device": "dm-1", "fs_type": "ext4",
                     "status": "encrypted", "detail": "reaches nvme0n1p3 through dm-crypt (LUKS2, aes-xts-plain64)"},
                    {"mount_point": "[swap]", "source": "/dev/mapper/vg-swap", "device": "dm-2", "fs_type": "swap",
                     "status": "encrypted", "detail": "reaches nvme0n1p3 through dm-crypt (LUKS2, aes-xts-plain64)"}
                ]
            }),
            "",
        ),
        (RuleId::DISK_ENCRYPTION, Linux, Fail, 0) => (
            "1 of 2 persistent mounts are not encrypted: /home",
            json!({
                "include_swap": true,
                "mounts": [
                    {"mount_point": "/", "source": "/dev/mapper/vg-root", "device": "dm-1", "fs_type": "ext4",
                     "status": "encrypted", "detail": "reaches nvme0n1p3 through dm-crypt (LUKS2, aes-xts-plain64)"},
                    {"mount_point": "/home", "source": "/dev/nvme0n1p4", "device": "nvme0n1p4", "fs_type": "ext4",
                     "status": "not_encrypted", "detail": "reaches nvme0n1p4 without dm-crypt"}
                ]
            }),
            LINUX_DISK_FIX,
        ),
        (RuleId::DISK_ENCRYPTION, Linux, Fail, _) => (
            "1 of 1 persistent mounts are not encrypted: /",
            json!({
                "include_swap": true,
                "mounts": [
                    {"mount_point": "/", "source": "/dev/sda2", "device": "sda2", "fs_type": "ext4",
                     "status": "not_encrypted", "detail": "reaches sda2 without dm-crypt"}
                ]
            }),
            LINUX_DISK_FIX,
        ),
        (RuleId::DISK_ENCRYPTION, Linux, _, _) => (
            "cannot tell whether / is encrypted: /sys/block/dm-0/slaves could not be read",
            json!({"mounts": [{"mount_point": "/", "source": "/dev/mapper/root", "status": "unknown",
                               "detail": "permission denied reading /sys/block/dm-0/slaves"}]}),
            "",
        ),
        (RuleId::DISK_ENCRYPTION, MacOs, Pass, _) => (
            "FileVault is on for the startup volume",
            json!({"fdesetup_status": "FileVault is On.", "volume": "/", "apfs_encrypted": true}),
            "",
        ),
        (RuleId::DISK_ENCRYPTION, MacOs, Fail, 0) => (
            "FileVault is off for the startup volume",
            json!({"fdesetup_status": "FileVault is Off.", "volume": "/", "apfs_encrypted": false}),
            "Open System Settings → Privacy & Security → FileVault and click Turn On; let IT escrow the \
             recovery key. The laptop can be used while it encrypts.",
        ),
        (RuleId::DISK_ENCRYPTION, MacOs, Fail, _) => (
            "FileVault is turned on but has not started encrypting: waiting for a user to log in",
            json!({"fdesetup_status": "Deferred enablement appears to be active for user 'admin'.",
                   "volume": "/", "apfs_encrypted": false}),
            "Log out and back in so FileVault can start encrypting, then leave the laptop on mains power.",
        ),
        (RuleId::DISK_ENCRYPTION, MacOs, _, _) => (
            "FileVault status is unknown: fdesetup did not answer within 10 s",
            json!({"error": "fdesetup status: timed out after 10 s"}),
            "",
        ),
        (RuleId::DISK_ENCRYPTION, Windows, Pass, _) => (
            "BitLocker protects C: (XTS-AES 128, TPM, fully encrypted)",
            json!({"volumes": [{"mount_point": "C:", "protection_status": "On", "conversion_status": "FullyEncrypted",
                                "encryption_method": "XtsAes128", "key_protectors": ["Tpm", "RecoveryPassword"]}]}),
            "",
        ),
        (RuleId::DISK_ENCRYPTION, Windows, Fail, 0) => (
            "BitLocker is off on C:",
            json!({"volumes": [{"mount_point": "C:", "protection_status": "Off", "conversion_status": "FullyDecrypted",
                                "encryption_method": "None", "key_protectors": []}]}),
            "Open Control Panel → BitLocker Drive Encryption and choose \"Turn on BitLocker\" for C:, saving \
             the recovery key to your work account; or ask IT.",
        ),
        (RuleId::DISK_ENCRYPTION, Windows, Fail, _) => (
            "BitLocker is suspended on C: (protection off after an update)",
            json!({"volumes": [{"mount_point": "C:", "protection_status": "Off", "conversion_status": "FullyEncrypted",
                                "encryption_method": "XtsAes128", "key_protectors": ["Tpm"]}]}),
            "Open Control Panel → BitLocker Drive Encryption and choose \"Resume protection\" for C:.",
        ),
        (RuleId::DISK_ENCRYPTION, Windows, _, _) => (
            "BitLocker status is unknown: the Win32_EncryptableVolume query failed",
            json!({"error": "WMI: 0x80041003 access denied"}),
            "",
        ),

        // password_policy
        (RuleId::PASSWORD_POLICY, Linux, Pass, _) => (
            "passwords need at least 12 characters from 3 classes (pam_pwquality)",
            json!({
                "pam_family": "debian",
                "min_length_required": 12,
                "pwquality_settings_from_files": {
                    "minlen": {"source": "/etc/security/pwquality.conf line 11", "value": 12},
                    "minclass": {"source": "/etc/security/pwquality.conf line 15", "value": 3}}
            }),
            "",
        ),
        (RuleId::PASSWORD_POLICY, Linux, Fail, 0) => (
            "password quality is not enforced by PAM: pam_pwquality is not in the password stack \
             (/etc/pam.d/common-password)",
            json!({
                "pam_family": "debian",
                "min_length_required": 12,
                "pam_stacks": [{"root": "/etc/pam.d/common-password", "pwquality_lines": []}]
            }),
            "Ask IT to install the password-quality policy package (libpam-pwquality with the \
             organisation's settings).",
        ),
        (RuleId::PASSWORD_POLICY, Linux, Fail, _) => (
            "passwords may be 8 characters long; policy requires 12 (pam_pwquality minlen)",
            json!({
                "pam_family": "debian",
                "min_length_required": 12,
                "pwquality_settings_from_files": {
                    "minlen": {"source": "the libpwquality default", "value": 8}}
            }),
            "Ask IT to set minlen = 12 in /etc/security/pwquality.conf (the policy package does it).",
        ),
        (RuleId::PASSWORD_POLICY, Linux, _, _) => (
            "the PAM password stack could not be read: /etc/pam.d/common-password is unreadable",
            json!({"error": "permission denied"}),
            "",
        ),
        (RuleId::PASSWORD_POLICY, MacOs, Pass, _) => (
            "the account policy requires at least 12 characters (pwpolicy)",
            json!({"min_length_required": 12, "pwpolicy": {"minimumLength": 12, "source": "configuration profile"}}),
            "",
        ),
        (RuleId::PASSWORD_POLICY, MacOs, Fail, _) => (
            "no minimum password length is set (no pwpolicy content rule)",
            json!({"min_length_required": 12, "pwpolicy": {"minimumLength": null}}),
            "Ask IT to install the password profile; you will be asked for a 12-character password at the next login.",
        ),
        (RuleId::PASSWORD_POLICY, MacOs, _, _) => (
            "the account policy could not be read: pwpolicy exited with status 1",
            json!({"error": "pwpolicy -getaccountpolicies: exit status 1"}),
            "",
        ),
        (RuleId::PASSWORD_POLICY, Windows, Pass, _) => (
            "minimum password length is 14 (domain policy)",
            json!({"min_length_required": 12, "minimum_password_length": {"source": "domain policy", "value": 14},
                   "complexity_enabled": true}),
            "",
        ),
        (RuleId::PASSWORD_POLICY, Windows, Fail, _) => (
            "minimum password length is 8; policy requires 12",
            json!({"min_length_required": 12, "minimum_password_length": {"source": "local security policy", "value": 8},
                   "complexity_enabled": false}),
            "Ask IT to apply the domain password policy; you will be asked to choose a longer password at \
             the next sign-in.",
        ),
        (RuleId::PASSWORD_POLICY, Windows, _, _) => (
            "the password policy could not be read: NetUserModalsGet failed",
            json!({"error": "NetUserModalsGet: 2221"}),
            "",
        ),

        // usb_storage
        (RuleId::USB_STORAGE, Linux, Pass, _) => (
            "USB mass storage is blocked: usb-storage is blacklisted and usbguard is active",
            json!({
                "usb_storage_module": {"loaded": false, "blacklisted_in": "/etc/modprobe.d/palisade-usb.conf"},
                "usbguard": {"active": true, "implicit_policy_target": "block"},
                "mounted_usb_storage": []
            }),
            "",
        ),
        (RuleId::USB_STORAGE, Linux, Fail, 0) => (
            "USB mass storage is allowed: usb-storage is loaded and not blacklisted",
            json!({
                "usb_storage_module": {"loaded": true, "blacklisted_in": null},
                "usbguard": {"active": false},
                "mounted_usb_storage": []
            }),
            "Ask IT to install the USB policy (it blacklists usb-storage); until then, copy no patient data to USB drives.",
        ),
        (RuleId::USB_STORAGE, Linux, Fail, _) => (
            "a USB drive is mounted: /media/usb0 (vfat, SanDisk Ultra)",
            json!({
                "usb_storage_module": {"loaded": true, "blacklisted_in": null},
                "usbguard": {"active": false},
                "mounted_usb_storage": [{"mount_point": "/media/usb0", "fs_type": "vfat", "model": "SanDisk Ultra"}]
            }),
            "Unmount and remove the USB drive, then ask IT to install the USB policy.",
        ),
        (RuleId::USB_STORAGE, Linux, _, _) => (
            "usbguard state is unknown: systemctl did not answer",
            json!({"usb_storage_module": {"loaded": false, "blacklisted_in": null}, "usbguard": {"error": "timed out"}}),
            "",
        ),
        (RuleId::USB_STORAGE, MacOs, Pass, _) => (
            "removable storage is denied by a configuration profile (mount controls)",
            json!({"mount_controls": {"usb": ["deny"], "source": "com.apple.systemuiserver profile"}}),
            "",
        ),
        (RuleId::USB_STORAGE, MacOs, Fail, _) => (
            "removable storage is allowed: no mount-controls profile is installed",
            json!({"mount_controls": null}),
            "Ask IT to install the removable-media profile.",
        ),
        (RuleId::USB_STORAGE, MacOs, _, _) => (
            "installed profiles could not be listed: profiles exited with status 1",
            json!({"error": "profiles show: exit status 1"}),
            "",
        ),
        (RuleId::USB_STORAGE, Windows, Pass, _) => (
            "USB storage is denied by group policy (RemovableStorageDevices Deny_All)",
            json!({"deny_all": {"source": "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\RemovableStorageDevices\\Deny_All",
                                "value": 1}, "usbstor_start": 3}),
            "",
        ),
        (RuleId::USB_STORAGE, Windows, Fail, _) => (
            "USB storage is allowed: USBSTOR is enabled and no Deny_All policy is set",
            json!({"deny_all": null, "usbstor_start": 3}),
            "Ask IT to apply the removable-storage group policy.",
        ),
        (RuleId::USB_STORAGE, Windows, _, _) => (
            "the removable-storage policy could not be read: access denied",
            json!({"error": "RegOpenKeyEx: access denied (5)"}),
            "",
        ),

        _ => ("this rule is not simulated", json!({}), ""),
    }
}
