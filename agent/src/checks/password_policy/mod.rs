//! Rule `password_policy`: every new password is at least the policy's
//! length (and class mix), and, when the policy asks, passwords expire.
//!
//! Linux: PAM enforces it. The probe reads every file through [`Host`] so
//! `--host-root` works:
//! - the PAM password stack of each service that sets passwords
//!   ([`PASSWORD_SERVICES`]: `passwd`, `chpasswd`, and where installed
//!   `login`, `sshd`, the display managers and polkit), found as libpam
//!   finds it: `/etc/pam.d/NAME`, the distribution's `/usr/lib/pam.d/NAME`,
//!   else the `other` service, with their `include`/`substack`/`@include`
//!   files ([`pam`]);
//! - libpwquality's configuration: `/etc/security/pwquality.conf.d/*.conf`
//!   then `/etc/security/pwquality.conf` ([`pwquality`]);
//! - `/etc/login.defs` for `PASS_MAX_DAYS` ([`login_defs`]).
//!
//! The evaluator only credits what PAM enforces: a `minlen` in
//! pwquality.conf is worth nothing unless `pam_pwquality.so` sits in the
//! password stack, runs on every path, and fails the change when it rejects
//! a password. The length compared with the policy is the shortest password
//! the settings accept, credits included ([`shortest_accepted_length`]).
//! pam_cracklib is judged the same way with its own arguments and defaults
//! (`cracklib.rs`), and pam_unix's own `minlen` counts where pam_unix is
//! the only module setting passwords (`paths.rs`). A stack that certainly
//! sets a password its quality module has not checked (a pam_unix that
//! asks for the password itself, before the quality module or after it
//! rejected one without ending the stack) fails, naming the line; one that
//! only may (a conditional jump, a domain module) is `unknown`. pam_passwdqc and a vendor configuration
//! under `/usr/lib/security` are reported `unknown` (not evaluated yet),
//! never `pass`.
//!
//! Not covered on Linux: accounts that exist already keep their own expiry
//! in `/etc/shadow` (login.defs sets it for new accounts); root, whom
//! pam_pwquality only warns unless `enforce_for_root` is set (shown in the
//! evidence), which also means `chpasswd`, run by root, sets any password
//! an administrator types.
//!
//! Windows: the local account policy from `NetUserModalsGet` levels 0
//! (length, ages) and 3 (lockout), and "Password must meet complexity
//! requirements" from `secedit /export /areas SECURITYPOLICY`
//! ([`parse_windows`]); Windows' complexity means three of four character
//! classes. When `NetUserModalsGet` fails (Wine answers 2140) the export's
//! numbers stand in if it has them, and the evidence names the source;
//! whatever neither gives is `unknown` with the reason. Both read the
//! local machine's policy, which is not a domain account's.
//! `net accounts` output has a parser too
//! ([`parse_windows::parse_net_accounts`]) that the probe does not run:
//! net.exe asks the same `NetUserModalsGet`, so it cannot stand in when
//! that fails, and it prints translated labels.
//!
//! macOS: `pwpolicy -getaccountpolicies` run as root, whose global account
//! policies include those a configuration profile's Passcode payload
//! installs ([`parse_macos`]). The minimum length is the largest `.{N,}`
//! among the content rules (anchored `'^.{12,}$'` too), the classes the
//! union of the `(.*[…].*)` rules; a rule whose length cannot be read makes
//! a shortfall `unknown`, and no account policy at all fails (nothing sets
//! a minimum). Lockout and expiry are read; lockout is evidence only. The
//! parser is tested on Linux; the probe has not run on a real Mac here.
//! Nothing here changes the machine (the enforcer has no macOS plan).
//!
//! The folder: this file holds the facts, the [`Rule`] impl and which probe
//! runs; `linux.rs`, `windows.rs` and `macos.rs` gather the facts;
//! [`pam`], [`pwquality`], [`login_defs`], [`parse_windows`] and
//! [`parse_macos`] read the text; `evaluate.rs` (with `stack.rs` and
//! `finding.rs`), `evaluate_windows.rs` and `evaluate_macos.rs` decide.
//! Only the probes reach the machine.

mod cracklib;
pub mod enforce;
mod evaluate;
mod evaluate_macos;
mod evaluate_windows;
mod finding;
// Compiled on every OS, not only Linux: a host root (tests, `--host-root`) is
// a Linux tree wherever the agent runs, and gets this probe.
mod linux;
pub mod login_defs;
#[cfg(target_os = "macos")]
mod macos;
pub mod pam;
pub mod parse_macos;
pub mod parse_windows;
mod paths;
pub mod pwquality;
mod stack;
#[cfg(windows)]
mod windows;

pub use evaluate::evaluate;
#[cfg(test)]
use evaluate::evaluate_linux;
pub(crate) use linux::{pam_module_installed, read_in_root};

pub use login_defs::{LoginDefs, LoginDefsValue, parse_login_defs};
pub use pam::{
    PamAction, PamControl, PamEntry, PamEntryKind, PamLine, PamStack, ParsedPamLine,
    load_password_stack, parse_pam_file, why_entry_may_be_skipped,
};
pub use pwquality::{
    ConfLine, PwqualityConfig, PwqualitySettings, Setting, SettingSource, apply_pam_arguments,
    parse_pwquality_conf, pwquality_file_order, read_pwquality_files, shortest_accepted_length,
};

use palisade_shared::Policy;
use palisade_shared::policy::PasswordPolicy;

use palisade_shared::policy::RuleSettings;

use super::{Enforcer, ProbeError, Rule, Verdict};
use crate::sys::Host;

#[derive(Debug)]
pub struct PasswordRule;

/// Debian and Ubuntu: the stack every service's `password` lines include.
pub const DEBIAN_PASSWORD_STACK: &str = "/etc/pam.d/common-password";

/// Whether a password-changing PAM service is judged on every system, or
/// only where its program is installed (its PAM file is there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceScope {
    /// Part of every Linux system (shadow's `passwd` and `chpasswd`): with
    /// no file of its own, libpam runs the `other` service's stack for it.
    Always,
    /// A program that may not be installed: judged when its file exists.
    WhereInstalled,
}

/// The PAM services that set a password, and why each matters. A password
/// is set through the service of the program that asks for it, so each has
/// its own stack (Debian's all `@include common-password`; Fedora's
/// `passwd` takes `system-auth` as a substack and `sshd` takes
/// `password-auth`). Programs that change an *expired* password at login
/// (`login`, `sshd`, the display managers, polkit's agent) set passwords
/// too.
pub const PASSWORD_SERVICES: [(&str, ServiceScope, &str); 9] = [
    (
        "passwd",
        ServiceScope::Always,
        "passwd(1); GNOME Settings runs passwd",
    ),
    ("chpasswd", ServiceScope::Always, "chpasswd(8)"),
    ("newusers", ServiceScope::WhereInstalled, "newusers(8)"),
    (
        "login",
        ServiceScope::WhereInstalled,
        "console login, for an expired password",
    ),
    (
        "sshd",
        ServiceScope::WhereInstalled,
        "SSH login, for an expired password",
    ),
    (
        "gdm-password",
        ServiceScope::WhereInstalled,
        "GNOME's login screen, for an expired password",
    ),
    (
        "lightdm",
        ServiceScope::WhereInstalled,
        "LightDM's login screen, for an expired password",
    ),
    (
        "sddm",
        ServiceScope::WhereInstalled,
        "KDE's login screen, for an expired password",
    ),
    (
        "polkit-1",
        ServiceScope::WhereInstalled,
        "polkit's authentication agent, for an expired password",
    ),
];

/// The service libpam runs for a service that has no file of its own.
pub const FALLBACK_SERVICE: &str = "other";
/// Fedora and RHEL (authselect): local and remote services' stacks.
pub const REDHAT_PASSWORD_STACKS: [&str; 2] =
    ["/etc/pam.d/system-auth", "/etc/pam.d/password-auth"];
pub const LOGIN_DEFS: &str = "/etc/login.defs";

/// libpwquality after 1.4.5 (upstream commit 447c6ae, "Support snippets in
/// /usr/lib/security") also reads vendor defaults from here; 1.4.5 does not.
const PWQUALITY_VENDOR_FILE: &str = "/usr/lib/security/pwquality.conf";
const PWQUALITY_VENDOR_DROP_IN_DIR: &str = "/usr/lib/security/pwquality.conf.d";

/// Debian's login.defs ships `PASS_MAX_DAYS 99999`, the conventional "never
/// expires"; shadow reads a missing or unparsable value as -1, also never.
const PASS_MAX_DAYS_NEVER: i64 = 99999;

/// Linux's `MAXSYMLINKS` (40): more links than this in a row is a loop.
const MAX_SYMLINK_HOPS: usize = 40;

/// Modules that write the new password; run after a pam_pwquality that
/// failed without ending the stack, one without `use_authtok` asks for a new
/// password again and sets it unchecked.
const PASSWORD_WRITING_MODULES: [&str; 5] = [
    "pam_unix.so",
    "pam_sss.so",
    "pam_ldap.so",
    "pam_winbind.so",
    "pam_krb5.so",
];

/// Quality checkers this rule does not evaluate yet.
const OTHER_QUALITY_MODULES: [&str; 1] = ["pam_passwdqc.so"];

/// pam_unix's own length check for the passwords it sets (`minlen=`,
/// pam_unix(8): "The default value is 6"), made for every user but root.
const PAM_UNIX_DEFAULT_MINLEN: i64 = 6;

/// A file the probe looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState<T> {
    Absent,
    /// It exists but could not be read; the error as the OS gave it.
    Unreadable(String),
    Read(T),
}

/// Which distribution family's PAM layout was found (for the fix text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamFamily {
    Debian,
    RedHat,
    /// Neither Debian's `common-password` nor Red Hat's `system-auth`.
    Other,
}

impl PamFamily {
    fn as_str(self) -> &'static str {
        match self {
            Self::Debian => "debian",
            Self::RedHat => "redhat",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PamFacts {
    /// There is no PAM configuration: neither `/etc/pam.d` nor
    /// `/usr/lib/pam.d` holds a password service's file or `other`.
    NoPasswordStack,
    Stacks {
        family: PamFamily,
        stacks: Vec<PamStack>,
    },
}

/// libpwquality's configuration as read from the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PwqualityFacts {
    pub config: PwqualityConfig,
    /// Files that exist but could not be read, with the error.
    pub unreadable: Vec<String>,
    /// Vendor files only newer libpwquality reads (not evaluated yet).
    pub vendor_files: Vec<String>,
}

/// What the probe found, not yet judged, in the terms of its system.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one value a check cycle: boxing buys nothing
pub enum PasswordFacts {
    Linux(LinuxPasswordFacts),
    Windows(WindowsPasswordFacts),
    MacOs(MacPasswordFacts),
}

/// macOS: the global account policies `pwpolicy -getaccountpolicies`
/// prints, which include those a configuration profile's Passcode payload
/// installs (their identifiers start `ProfilePayload:`), or why they could
/// not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacPasswordFacts {
    pub account_policies: Result<MacAccountPolicies, String>,
}

/// The account policies, by what each one requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacAccountPolicies {
    /// `policyCategoryPasswordContent`: every one must match a new password.
    pub content: Vec<MacContentPolicy>,
    /// `policyAttributeMaximumFailedAuthentications` of an authentication
    /// policy: failed logins before the account locks (evidence only).
    pub max_failed_authentications: Option<i64>,
    /// `autoEnableInSeconds`: how long the lockout lasts (evidence only).
    pub lockout_seconds: Option<i64>,
    /// `policyAttributeExpiresEveryNDays` of a password change policy.
    pub expires_every_days: Option<i64>,
    /// Password change policies whose period was not found.
    pub unread_change_policies: Vec<String>,
}

/// One password content policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacContentPolicy {
    pub identifier: Option<String>,
    /// `policyContent`, e.g. `policyAttributePassword matches '.{12,}+'`.
    pub content: String,
    pub rule: MacContentRule,
}

/// What a content policy's regular expression requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacContentRule {
    /// `.{N,}` (anchored or not, possessive or not): at least N characters.
    MinLength(u32),
    /// At least one character of this class.
    Requires(MacCharClass),
    /// A `matches` rule of another shape; `mentions_length` when it has a
    /// `{N,…}` quantifier, so it may set a length this parser cannot read.
    Unrecognised { mentions_length: bool },
    /// Not a `policyAttributePassword matches` rule (e.g. not the user name).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacCharClass {
    Letter,
    Upper,
    Lower,
    Digit,
    Symbol,
}

/// Windows: the local account policy as `NetUserModalsGet` reports it
/// (level 0: length and ages; level 3: lockout), complexity from the
/// security policy `secedit /export` writes out, or why each could not be
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsPasswordFacts {
    pub accounts: Result<WindowsAccountPolicy, String>,
    pub accounts_source: WindowsPolicySource,
    pub lockout: Result<WindowsLockoutPolicy, String>,
    pub lockout_source: WindowsPolicySource,
    /// "Password must meet complexity requirements" (`PasswordComplexity`
    /// in the export's `[System Access]`); no Win32 call outside the LSA's
    /// private interface gives it.
    pub complexity: Result<bool, String>,
    /// "Store passwords using reversible encryption", when the export
    /// has it: shown in the evidence, not judged.
    pub reversible_encryption: Option<bool>,
}

/// Where a part of [`WindowsPasswordFacts`] was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowsPolicySource {
    NetUserModalsGet,
    /// `NetUserModalsGet` failed with this error, and secedit's export
    /// had the same numbers.
    SeceditExport {
        net_api_error: String,
    },
}

impl WindowsPolicySource {
    fn describe(&self) -> String {
        match self {
            Self::NetUserModalsGet => "NetUserModalsGet".to_owned(),
            Self::SeceditExport { net_api_error } => {
                format!("secedit /export (NetUserModalsGet failed: {net_api_error})")
            }
        }
    }
}

/// `USER_MODALS_INFO_0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowsAccountPolicy {
    pub min_password_length: u32,
    /// Seconds; `None` for `TIMEQ_FOREVER` (passwords never expire).
    pub max_password_age_seconds: Option<u32>,
    pub min_password_age_seconds: u32,
    pub password_history_length: u32,
}

/// `USER_MODALS_INFO_3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowsLockoutPolicy {
    /// Failed logons before lockout; 0 never locks out.
    pub threshold: u32,
    pub duration_seconds: u32,
    pub observation_window_seconds: u32,
}

/// Linux: login.defs, libpwquality and the PAM stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxPasswordFacts {
    pub login_defs: FileState<LoginDefs>,
    pub pwquality: PwqualityFacts,
    pub pam: PamFacts,
}

impl Rule for PasswordRule {
    /// libpwquality's files and the PAM stack (the admin's and the
    /// vendor's), and login.defs.
    fn watched_paths(&self) -> &'static [&'static str] {
        &[
            "/etc/security/pwquality.conf",
            "/etc/security/pwquality.conf.d",
            "/etc/pam.d",
            "/etc/login.defs",
            "/usr/lib/security/pwquality.conf",
            "/usr/lib/security/pwquality.conf.d",
            "/usr/lib/pam.d",
        ]
    }

    type Policy = PasswordPolicy;
    type Facts = PasswordFacts;

    fn id(&self) -> &'static str {
        palisade_shared::RuleId::PASSWORD_POLICY
    }

    fn policy<'p>(&self, policy: &'p Policy) -> Option<&'p Self::Policy> {
        policy.password_policy.as_ref()
    }

    fn probe(&self, host: &Host, _policy: &Self::Policy) -> Result<PasswordFacts, ProbeError> {
        // A host root (tests, `--host-root`) is a Linux tree on every OS, so
        // it gets the Linux probe wherever the agent runs.
        if cfg!(target_os = "linux") || !host.is_live_system() {
            Ok(PasswordFacts::Linux(linux::probe(host)))
        } else {
            native_probe(host)
        }
    }

    fn evaluate(&self, facts: &PasswordFacts, policy: &Self::Policy) -> Verdict {
        evaluate(facts, policy)
    }

    fn settings(&self, policy: &Self::Policy) -> RuleSettings {
        policy.settings
    }

    fn enforcer(&self) -> Enforcer<Self::Policy> {
        Enforcer::Plans(enforce::plan)
    }

    fn title(&self) -> &'static str {
        "Password"
    }

    fn why_it_matters(&self) -> &'static str {
        "A weak password is the first thing tried by whoever finds or steals the laptop."
    }

    /// GNOME keeps the password in Users.
    fn settings_panel(&self) -> Option<&'static [&'static str]> {
        Some(&["users"])
    }
}

#[cfg(windows)]
use windows::probe as native_probe;

#[cfg(target_os = "macos")]
use macos::probe as native_probe;

/// Linux never gets here (a live Linux system runs `linux::probe`); other
/// systems have no probe yet.
#[cfg(not(any(windows, target_os = "macos")))]
fn native_probe(_host: &Host) -> Result<PasswordFacts, ProbeError> {
    Err(super::no_probe_yet("password policy"))
}

#[cfg(test)]
use linux::probe as probe_linux;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_macos;
#[cfg(test)]
mod tests_services;
