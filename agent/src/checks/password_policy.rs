//! Rule `password_policy`: PAM makes every new password at least the
//! policy's length (and class mix), and, when the policy asks, passwords
//! expire.
//!
//! Linux probe, every file through [`Host`] so `--host-root` works:
//! - the PAM password stack: `/etc/pam.d/common-password` (Debian, Ubuntu),
//!   or else `/etc/pam.d/system-auth` and `/etc/pam.d/password-auth` (Fedora,
//!   RHEL), with their `include`/`substack`/`@include` files ([`pam`]);
//! - libpwquality's configuration: `/etc/security/pwquality.conf.d/*.conf`
//!   then `/etc/security/pwquality.conf` ([`pwquality`]);
//! - `/etc/login.defs` for `PASS_MAX_DAYS` ([`login_defs`]).
//!
//! The evaluator only credits what PAM enforces: a `minlen` in
//! pwquality.conf is worth nothing unless `pam_pwquality.so` sits in the
//! password stack, runs on every path, and fails the change when it rejects
//! a password. The length compared with the policy is the shortest password
//! the settings accept, credits included ([`shortest_accepted_length`]).
//! pam_cracklib, pam_passwdqc and a vendor configuration under
//! `/usr/lib/security` are reported `unknown` (not evaluated yet), never
//! `pass`.
//!
//! Not covered: accounts that exist already keep their own expiry in
//! `/etc/shadow` (login.defs sets it for new accounts); services whose PAM
//! file does not include the stack above; root, whom pam_pwquality only warns
//! unless `enforce_for_root` is set (shown in the evidence).
//!
//! macOS (`pwpolicy getaccountpolicies`) and Windows (`net accounts`) probes
//! are not written yet: there the rule reports `unknown`. Nothing here
//! changes the machine.

pub mod login_defs;
pub mod pam;
pub mod pwquality;

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
use palisade_shared::report::CheckStatus;
use serde_json::{Map, Value, json};

use super::{ProbeError, Rule, Verdict};
use crate::sys::Host;

#[derive(Debug)]
pub struct PasswordRule;

/// Debian and Ubuntu: the stack every service's `password` lines include.
pub const DEBIAN_PASSWORD_STACK: &str = "/etc/pam.d/common-password";
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
const OTHER_QUALITY_MODULES: [&str; 2] = ["pam_cracklib.so", "pam_passwdqc.so"];

/// A file the probe looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState<T> {
    Absent,
    /// It exists but could not be read; the error as the OS gave it.
    Unreadable(String),
    Read(T),
}

/// Which distribution family's PAM layout was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamFamily {
    Debian,
    RedHat,
}

impl PamFamily {
    fn as_str(self) -> &'static str {
        match self {
            Self::Debian => "debian",
            Self::RedHat => "redhat",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PamFacts {
    /// None of the known root files exists.
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

/// What the probe found, not yet judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordFacts {
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
        if cfg!(target_os = "linux") || !host.is_live_system() {
            Ok(probe_linux(host))
        } else {
            Err(ProbeError::Undeterminable(format!(
                "no password policy probe for {} yet",
                std::env::consts::OS
            )))
        }
    }

    fn evaluate(&self, facts: &PasswordFacts, policy: &Self::Policy) -> Verdict {
        evaluate(facts, policy)
    }
}

// ---------------------------------------------------------------------------
// Probe (Linux): read the files and hand the text to the parsers. A file that
// cannot be read becomes a fact, so the evaluator can say which one.

fn probe_linux(host: &Host) -> PasswordFacts {
    let login_defs = match read_in_root(host, LOGIN_DEFS) {
        Ok(Some(text)) => FileState::Read(parse_login_defs(&text)),
        Ok(None) => FileState::Absent,
        Err(error) => FileState::Unreadable(error),
    };
    PasswordFacts {
        login_defs,
        pwquality: probe_pwquality(host),
        pam: probe_pam(host),
    }
}

fn probe_pwquality(host: &Host) -> PwqualityFacts {
    let mut unreadable = Vec::new();
    let drop_ins = match host.list_dir(pwquality::PWQUALITY_DROP_IN_DIR) {
        Ok(names) => names.unwrap_or_default(),
        Err(error) => {
            unreadable.push(format!("{}: {error}", pwquality::PWQUALITY_DROP_IN_DIR));
            Vec::new()
        }
    };
    let mut files = Vec::new();
    for path in pwquality_file_order(&drop_ins) {
        // libpwquality reads a directory named `x.conf` as an empty file, and
        // skips a dangling link (both checked with the library).
        if host.path(&path).is_dir() {
            continue;
        }
        match read_in_root(host, &path) {
            Ok(Some(text)) => files.push((path, text)),
            Ok(None) => {}
            Err(error) => unreadable.push(format!("{path}: {error}")),
        }
    }
    let mut vendor_files = Vec::new();
    if host.exists(PWQUALITY_VENDOR_FILE) {
        vendor_files.push(PWQUALITY_VENDOR_FILE.to_owned());
    }
    if let Ok(Some(names)) = host.list_dir(PWQUALITY_VENDOR_DROP_IN_DIR) {
        vendor_files.extend(
            names
                .iter()
                .filter(|name| name.ends_with(".conf"))
                .map(|name| format!("{PWQUALITY_VENDOR_DROP_IN_DIR}/{name}")),
        );
    }
    PwqualityFacts {
        config: read_pwquality_files(&files),
        unreadable,
        vendor_files,
    }
}

fn probe_pam(host: &Host) -> PamFacts {
    let exists = |path: &str| !matches!(read_in_root(host, path), Ok(None));
    let (family, roots): (PamFamily, Vec<&str>) = if exists(DEBIAN_PASSWORD_STACK) {
        (PamFamily::Debian, vec![DEBIAN_PASSWORD_STACK])
    } else {
        let found: Vec<&str> = REDHAT_PASSWORD_STACKS
            .iter()
            .copied()
            .filter(|path| exists(path))
            .collect();
        if found.is_empty() {
            return PamFacts::NoPasswordStack;
        }
        (PamFamily::RedHat, found)
    };
    let mut load = |path: &str| read_in_root(host, path);
    let stacks = roots
        .into_iter()
        .map(|root| {
            let mut stack = load_password_stack(root, &mut load);
            for entry in &mut stack.entries {
                if entry.skip_if_missing && entry.module_name() == Some("pam_pwquality.so") {
                    if let PamEntryKind::Module { path, .. } = &entry.kind {
                        entry.module_installed = Some(pam_module_installed(host, path));
                    }
                }
            }
            stack
        })
        .collect();
    PamFacts::Stacks { family, stacks }
}

/// Reads a file that may be absent. Under a prepared host root, a symbolic
/// link with an absolute target (Fedora's `/etc/pam.d/system-auth ->
/// /etc/authselect/system-auth`) is followed inside the root, not on the
/// machine running the agent.
pub(crate) fn read_in_root(host: &Host, absolute: &str) -> Result<Option<String>, String> {
    let mut path = absolute.to_owned();
    if !host.is_live_system() {
        for _ in 0..MAX_SYMLINK_HOPS {
            let Ok(target) = std::fs::read_link(host.path(&path)) else {
                break;
            };
            let target = target.to_string_lossy().into_owned();
            path = if target.starts_with('/') {
                target
            } else {
                let parent = path.rsplit_once('/').map_or("", |(dir, _)| dir);
                normalize_absolute(&format!("{parent}/{target}"))
            };
        }
    }
    host.read_optional(&path).map_err(|error| {
        if path == absolute {
            error.to_string()
        } else {
            format!("{path} (the link's target): {error}")
        }
    })
}

/// Resolves `.` and `..` in an absolute path without touching the disk.
fn normalize_absolute(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether a PAM module file exists where libpam would load it from: its
/// own path when absolute, else the distributions' security directories
/// (Debian's multiarch `/usr/lib/<triplet>/security`, Fedora's
/// `/usr/lib64/security`).
pub(crate) fn pam_module_installed(host: &Host, module: &str) -> bool {
    if module.starts_with('/') {
        return host.exists(module);
    }
    let mut directories: Vec<String> = [
        "/usr/lib64/security",
        "/lib64/security",
        "/usr/lib/security",
        "/lib/security",
    ]
    .iter()
    .map(|d| (*d).to_owned())
    .collect();
    for base in ["/usr/lib", "/lib"] {
        if let Ok(Some(names)) = host.list_dir(base) {
            directories.extend(
                names
                    .iter()
                    .filter(|name| name.contains("-linux-"))
                    .map(|name| format!("{base}/{name}/security")),
            );
        }
    }
    directories
        .iter()
        .any(|dir| host.exists(&format!("{dir}/{module}")))
}

// ---------------------------------------------------------------------------
// Evaluation: pure.

/// What one part of the rule concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Finding {
    Pass(String),
    Fail(String, Fix),
    Unknown(String),
}

/// What a person should do about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fix {
    InstallPwquality,
    RaiseMinlen {
        positive_credits: Vec<String>,
        pam_argument: Option<String>,
    },
    RaiseMinclass {
        pam_argument: Option<String>,
    },
    TurnEnforcingOn {
        source: String,
    },
    MakeRequisite {
        location: String,
        control: String,
    },
    SetMaxDays,
}

fn fix_text(fix: &Fix, family: Option<PamFamily>, policy: &PasswordPolicy) -> String {
    let length = policy.min_length;
    let set_minlen = match family {
        Some(PamFamily::RedHat) => format!(
            "Set minlen = {length} in /etc/security/pwquality.conf (pam_pwquality is in the \
             default authselect profile)."
        ),
        _ => format!("Set minlen = {length} in /etc/security/pwquality.conf."),
    };
    let remove_argument = |name: &str, location: &Option<String>| {
        location.as_ref().map_or(String::new(), |at| {
            format!(
                " Remove {name}= from the pam_pwquality line ({at}): module arguments override \
                 the file."
            )
        })
    };
    match fix {
        Fix::InstallPwquality => match family {
            Some(PamFamily::RedHat) => format!(
                "{set_minlen} If pam_pwquality.so is missing from /etc/pam.d/system-auth, \
                 re-apply the profile with sudo authselect apply-changes."
            ),
            _ => format!(
                "sudo apt install libpam-pwquality, then set minlen = {length} in \
                 /etc/security/pwquality.conf."
            ),
        },
        Fix::RaiseMinlen {
            positive_credits,
            pam_argument,
        } => {
            let mut text = set_minlen;
            if !positive_credits.is_empty() {
                text.push_str(&format!(
                    " Set {} to 0: a positive credit lets a shorter password count as long.",
                    positive_credits.join(", ")
                ));
            }
            text.push_str(&remove_argument("minlen", pam_argument));
            text
        }
        Fix::RaiseMinclass { pam_argument } => format!(
            "Set minclass = {} in /etc/security/pwquality.conf.{}",
            policy.min_classes.unwrap_or_default(),
            remove_argument("minclass", pam_argument)
        ),
        Fix::TurnEnforcingOn { source } => format!(
            "Remove enforcing = 0 ({source}) so that pam_pwquality rejects weak passwords \
             instead of only warning."
        ),
        Fix::MakeRequisite { location, control } => format!(
            "Make the pam_pwquality line in {location} `requisite`: with `{control}` a rejected \
             password is set anyway."
        ),
        Fix::SetMaxDays => {
            let days = policy.max_age_days.unwrap_or_default();
            format!(
                "Set PASS_MAX_DAYS {days} in /etc/login.defs for new accounts, and run sudo \
                 chage --maxdays {days} USER for each existing account."
            )
        }
    }
}

/// Decides the rule from the facts.
pub fn evaluate(facts: &PasswordFacts, policy: &PasswordPolicy) -> Verdict {
    let mut evidence = Map::new();
    let mut findings = Vec::new();
    let family = judge_pam(facts, policy, &mut findings, &mut evidence);
    judge_max_age(&facts.login_defs, policy, &mut findings, &mut evidence);
    evidence.insert("min_length_required".into(), json!(policy.min_length));
    evidence.insert("min_classes_required".into(), json!(policy.min_classes));
    evidence.insert("max_age_days_required".into(), json!(policy.max_age_days));

    let failures: Vec<&String> = dedup(findings.iter().filter_map(|f| match f {
        Finding::Fail(message, _) => Some(message),
        _ => None,
    }));
    let unknowns: Vec<&String> = dedup(findings.iter().filter_map(|f| match f {
        Finding::Unknown(message) => Some(message),
        _ => None,
    }));
    let passes: Vec<&String> = dedup(findings.iter().filter_map(|f| match f {
        Finding::Pass(message) => Some(message),
        _ => None,
    }));
    let join = |messages: &[&String]| {
        messages
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };

    let verdict = if !failures.is_empty() {
        let fixes: Vec<String> = findings
            .iter()
            .filter_map(|f| match f {
                Finding::Fail(_, fix) => Some(fix_text(fix, family, policy)),
                _ => None,
            })
            .collect();
        let fixes: Vec<&String> = dedup(fixes.iter());
        Verdict::new(CheckStatus::Fail, join(&failures)).with_fix(join(&fixes))
    } else if !unknowns.is_empty() {
        Verdict::new(CheckStatus::Unknown, join(&unknowns))
    } else if passes.is_empty() {
        // Every branch above leaves a finding; this guards the invariant.
        Verdict::new(CheckStatus::Unknown, "nothing was evaluated")
    } else {
        Verdict::new(CheckStatus::Pass, join(&passes))
    };
    Verdict {
        evidence,
        ..verdict
    }
}

fn dedup<'a>(items: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let mut out: Vec<&String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn judge_pam(
    facts: &PasswordFacts,
    policy: &PasswordPolicy,
    findings: &mut Vec<Finding>,
    evidence: &mut Map<String, Value>,
) -> Option<PamFamily> {
    let pwq = &facts.pwquality;
    evidence.insert("pwquality_files_read".into(), json!(pwq.config.files_read));
    evidence.insert("pwquality_unreadable".into(), json!(pwq.unreadable));
    evidence.insert(
        "pwquality_reading_stopped_at".into(),
        json!(pwq.config.stopped_at),
    );
    evidence.insert("pwquality_vendor_files".into(), json!(pwq.vendor_files));
    evidence.insert(
        "pwquality_settings_from_files".into(),
        settings_evidence(&pwq.config.settings),
    );
    let (family, stacks) = match &facts.pam {
        PamFacts::NoPasswordStack => {
            evidence.insert("pam_family".into(), Value::Null);
            evidence.insert("pam_stacks".into(), json!([]));
            findings.push(Finding::Unknown(format!(
                "found no PAM password stack: none of {DEBIAN_PASSWORD_STACK}, {} exists",
                REDHAT_PASSWORD_STACKS.join(", ")
            )));
            return None;
        }
        PamFacts::Stacks { family, stacks } => (*family, stacks),
    };
    evidence.insert("pam_family".into(), json!(family.as_str()));

    // Judge each stack, then merge stacks that reached the same conclusion so
    // that Fedora's two identical files give one sentence naming both.
    let mut merged: Vec<(Finding, Vec<&str>)> = Vec::new();
    let mut stack_evidence = Vec::new();
    let mut shortest_overall: Option<i64> = None;
    for stack in stacks {
        let judged = judge_stack(stack, pwq, policy);
        if let Some(length) = judged.shortest {
            shortest_overall = Some(shortest_overall.map_or(length, |s| s.min(length)));
        }
        stack_evidence.push(judged.evidence);
        match merged.iter_mut().find(|(f, _)| *f == judged.finding) {
            Some((_, roots)) => roots.push(&stack.root),
            None => merged.push((judged.finding, vec![&stack.root])),
        }
    }
    evidence.insert("pam_stacks".into(), Value::Array(stack_evidence));
    evidence.insert("shortest_accepted_length".into(), json!(shortest_overall));
    for (finding, roots) in merged {
        let place = |message: String| message.replace(STACK, &roots.join(" and "));
        findings.push(match finding {
            Finding::Pass(m) => Finding::Pass(place(m)),
            Finding::Fail(m, fix) => Finding::Fail(place(m), fix),
            Finding::Unknown(m) => Finding::Unknown(place(m)),
        });
    }
    Some(family)
}

/// Stands for the stack's root file(s) in a finding's message until stacks
/// with the same finding are merged.
const STACK: &str = "{stack}";

struct JudgedStack {
    finding: Finding,
    /// The shortest password this stack accepts, when it enforces one.
    shortest: Option<i64>,
    evidence: Value,
}

/// How one pam_pwquality line counts.
#[derive(Debug)]
struct PwqualityLine<'a> {
    entry: &'a PamEntry,
    settings: PwqualitySettings,
    ignored_arguments: Vec<String>,
    custom_config: Option<String>,
    /// `None` when it counts; else why not.
    excluded: Option<Exclusion>,
    shortest: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Exclusion {
    /// `-password` and the module is not installed: PAM skips it silently.
    NotInstalled,
    /// An earlier line can skip it.
    MaySkip(String),
    /// Its control ignores a failure.
    Ignored(PamAction),
    /// It fails without ending the stack, and a later module sets the
    /// password anyway.
    Bypassed(String),
}

impl Exclusion {
    fn describe(&self) -> String {
        match self {
            Self::NotInstalled => {
                "the line starts with `-` and pam_pwquality.so is not installed, so PAM skips it"
                    .into()
            }
            Self::MaySkip(reason) => format!("it may not run: {reason}"),
            Self::Ignored(action) => format!("a failure is ignored (action `{action}`)"),
            Self::Bypassed(reason) => reason.clone(),
        }
    }
}

fn assess_pwquality_line<'a>(
    entries: &'a [PamEntry],
    index: usize,
    base: &PwqualitySettings,
) -> PwqualityLine<'a> {
    let entry = &entries[index];
    let outcome = apply_pam_arguments(base, entry.arguments(), &entry.file, entry.line);
    // pam_pwquality returns PAM_AUTHTOK_ERR for a rejected password, or
    // PAM_MAXTRIES when it allowed retries (src/pam_pwquality.c).
    let on_failure = [
        entry.control.action_for("authtok_err"),
        entry.control.action_for("maxtries"),
    ];
    let excluded = if entry.skip_if_missing && entry.module_installed != Some(true) {
        Some(Exclusion::NotInstalled)
    } else if let Some(action) = on_failure.iter().find(|a| !a.fails_the_stack()) {
        Some(Exclusion::Ignored(*action))
    } else if let Some(reason) = why_entry_may_be_skipped(entries, index) {
        Some(Exclusion::MaySkip(reason))
    } else if !on_failure.iter().all(|a| a.ends_the_stack()) {
        entries[index + 1..]
            .iter()
            .find(|later| {
                later
                    .module_name()
                    .is_some_and(|m| PASSWORD_WRITING_MODULES.contains(&m))
                    && !later.arguments().iter().any(|a| a == "use_authtok")
            })
            .map(|later| {
                Exclusion::Bypassed(format!(
                    "its control `{}` lets the stack go on after a rejection, and {} ({}) then \
                     asks for a new password itself (no use_authtok)",
                    entry.control.text,
                    later.location(),
                    later.module_name().unwrap_or_default()
                ))
            })
    } else {
        None
    };
    let shortest = shortest_accepted_length(&outcome.settings);
    PwqualityLine {
        entry,
        settings: outcome.settings,
        ignored_arguments: outcome.ignored,
        custom_config: outcome.custom_config,
        excluded,
        shortest,
    }
}

fn judge_stack(stack: &PamStack, pwq: &PwqualityFacts, policy: &PasswordPolicy) -> JudgedStack {
    let lines: Vec<PwqualityLine<'_>> = stack
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.module_name() == Some("pam_pwquality.so"))
        .map(|(index, _)| assess_pwquality_line(&stack.entries, index, &pwq.config.settings))
        .collect();
    let other_checkers: Vec<&PamEntry> = stack
        .entries
        .iter()
        .filter(|e| {
            e.module_name()
                .is_some_and(|m| OTHER_QUALITY_MODULES.contains(&m))
        })
        .collect();
    let unix_minlen: Vec<(&PamEntry, i64)> = stack
        .entries
        .iter()
        .filter(|e| e.module_name() == Some("pam_unix.so"))
        .filter_map(|e| {
            e.arguments()
                .iter()
                .rev()
                .find_map(|a| a.strip_prefix("minlen="))
                .and_then(|n| n.parse().ok())
                .map(|n| (e, n))
        })
        .collect();

    let evidence = json!({
        "root": stack.root,
        "files_read": stack.files_read,
        "problems": stack.problems,
        "password_lines": stack.entries.iter().map(|e| json!({
            "location": e.location(),
            "line": e.text,
        })).collect::<Vec<_>>(),
        "pwquality_lines": lines.iter().map(|line| json!({
            "location": line.entry.location(),
            "line": line.entry.text,
            "counted": line.excluded.is_none(),
            "not_counted_because": line.excluded.as_ref().map(Exclusion::describe),
            "ignored_arguments": line.ignored_arguments,
            "settings": settings_evidence(&line.settings),
            "shortest_accepted_length": line.shortest,
        })).collect::<Vec<_>>(),
        "other_quality_checkers": other_checkers.iter().map(|e| json!({
            "location": e.location(),
            "line": e.text,
        })).collect::<Vec<_>>(),
        "pam_unix_minlen": unix_minlen.iter().map(|(e, n)| json!({
            "location": e.location(),
            "minlen": n,
        })).collect::<Vec<_>>(),
    });
    let judged = |finding: Finding, shortest: Option<i64>| JudgedStack {
        finding,
        shortest,
        evidence: evidence.clone(),
    };

    if !stack.problems.is_empty() {
        return judged(
            Finding::Unknown(format!(
                "could not read the whole PAM password stack ({STACK}): {}",
                stack.problems.join("; ")
            )),
            None,
        );
    }
    let present: Vec<&PwqualityLine<'_>> = lines
        .iter()
        .filter(|l| l.excluded != Some(Exclusion::NotInstalled))
        .collect();
    if present.is_empty() {
        if let Some(checker) = other_checkers.first() {
            return judged(
                Finding::Unknown(format!(
                    "passwords in {STACK} are checked by {} ({}), which is not evaluated yet",
                    checker.module_name().unwrap_or_default(),
                    checker.location()
                )),
                None,
            );
        }
        if let Some((entry, minlen)) = unix_minlen
            .iter()
            .find(|(_, n)| *n >= i64::from(policy.min_length))
        {
            return judged(
                Finding::Unknown(format!(
                    "pam_unix.so minlen={minlen} ({}) may enforce the length in {STACK}, but \
                     only pam_pwquality is evaluated yet",
                    entry.location()
                )),
                None,
            );
        }
        let minlen = &pwq.config.settings.minlen;
        let message = if matches!(minlen.source, SettingSource::File { .. }) {
            format!(
                "minlen {} is configured in {} but not enforced by PAM: pam_pwquality is not \
                 in the password stack ({STACK})",
                minlen.value, minlen.source
            )
        } else {
            format!(
                "password quality is not enforced by PAM: pam_pwquality is not in the password \
                 stack ({STACK})"
            )
        };
        return judged(Finding::Fail(message, Fix::InstallPwquality), None);
    }
    if !pwq.unreadable.is_empty() {
        return judged(
            Finding::Unknown(format!(
                "cannot read the pwquality configuration that {STACK} uses: {}",
                pwq.unreadable.join("; ")
            )),
            None,
        );
    }
    if let Some(line) = present.iter().find(|l| l.custom_config.is_some()) {
        return judged(
            Finding::Unknown(format!(
                "pam_pwquality in {STACK} reads another configuration ({} conf={}), which is \
                 not evaluated yet",
                line.entry.location(),
                line.custom_config.as_deref().unwrap_or_default()
            )),
            None,
        );
    }
    let counted: Vec<&&PwqualityLine<'_>> =
        present.iter().filter(|l| l.excluded.is_none()).collect();
    if counted.is_empty() {
        // Only when every line ignores a rejection is the failure certain; a
        // line that may be skipped still runs on some paths.
        let all_ignored = present
            .iter()
            .all(|l| matches!(l.excluded, Some(Exclusion::Ignored(_))));
        if let Some(line) = present.first().filter(|_| all_ignored) {
            return judged(
                Finding::Fail(
                    format!(
                        "pam_pwquality does not stop weak passwords in {STACK}: its control \
                         `{}` ({}) ignores a rejection",
                        line.entry.control.text,
                        line.entry.location()
                    ),
                    Fix::MakeRequisite {
                        location: line.entry.location(),
                        control: line.entry.control.text.clone(),
                    },
                ),
                None,
            );
        }
        let reason = present
            .iter()
            .find_map(|l| {
                l.excluded
                    .as_ref()
                    .filter(|e| !matches!(e, Exclusion::Ignored(_)))
            })
            .map(Exclusion::describe)
            .unwrap_or_default();
        return judged(
            Finding::Unknown(format!(
                "pam_pwquality may not check every password change in {STACK}: {reason}"
            )),
            None,
        );
    }
    let enforcing: Vec<&&&PwqualityLine<'_>> = counted
        .iter()
        .filter(|l| l.settings.enforcing.value != 0)
        .collect();
    let Some(decisive) = enforcing.iter().max_by_key(|l| l.shortest) else {
        let source = counted
            .first()
            .map(|l| l.settings.enforcing.source.to_string())
            .unwrap_or_default();
        return judged(
            Finding::Fail(
                format!("pam_pwquality in {STACK} only warns: enforcing = 0 ({source})"),
                Fix::TurnEnforcingOn { source },
            ),
            None,
        );
    };
    let shortest = decisive.shortest;
    let settings = &decisive.settings;
    let required_length = i64::from(policy.min_length);
    if shortest < required_length {
        let credits: Vec<String> = settings
            .positive_credits()
            .iter()
            .map(|(name, s)| format!("{name}={} ({})", s.value, s.source))
            .collect();
        let explanation = if credits.is_empty() {
            format!(
                "minlen {} from {}",
                settings.minlen.value, settings.minlen.source
            )
        } else {
            format!(
                "minlen {} from {}, less credits {}",
                settings.minlen.value,
                settings.minlen.source,
                credits.join(", ")
            )
        };
        let pam_argument = matches!(settings.minlen.source, SettingSource::PamArgument { .. })
            .then(|| decisive.entry.location());
        return judged(
            Finding::Fail(
                format!(
                    "PAM ({STACK}) accepts passwords of {shortest} characters ({explanation}); \
                     the policy requires {required_length}"
                ),
                Fix::RaiseMinlen {
                    positive_credits: settings
                        .positive_credits()
                        .iter()
                        .map(|(name, _)| (*name).to_owned())
                        .collect(),
                    pam_argument,
                },
            ),
            Some(shortest),
        );
    }
    let classes = enforcing
        .iter()
        .map(|l| l.settings.minclass.value.max(0))
        .max()
        .unwrap_or(0);
    if let Some(required_classes) = policy.min_classes {
        if classes < i64::from(required_classes) {
            let minclass = &settings.minclass;
            let pam_argument = matches!(minclass.source, SettingSource::PamArgument { .. })
                .then(|| decisive.entry.location());
            return judged(
                Finding::Fail(
                    format!(
                        "pam_pwquality in {STACK} requires {classes} character classes \
                         (minclass from {}); the policy requires {required_classes}",
                        minclass.source
                    ),
                    Fix::RaiseMinclass { pam_argument },
                ),
                Some(shortest),
            );
        }
    }
    if !pwq.vendor_files.is_empty() {
        return judged(
            Finding::Unknown(format!(
                "libpwquality newer than 1.4.5 also reads {}, which is not evaluated yet \
                 ({STACK} has pam_pwquality)",
                pwq.vendor_files.join(", ")
            )),
            Some(shortest),
        );
    }
    let classes_note = match policy.min_classes {
        Some(_) => format!(" from {classes} classes"),
        None => String::new(),
    };
    judged(
        Finding::Pass(format!(
            "PAM ({STACK}) requires passwords of at least {shortest} characters{classes_note} \
             (policy: {required_length})"
        )),
        Some(shortest),
    )
}

fn settings_evidence(settings: &PwqualitySettings) -> Value {
    let entry = |value: Value, source: &SettingSource| json!({ "value": value, "source": source.to_string() });
    json!({
        "minlen": entry(json!(settings.minlen.value), &settings.minlen.source),
        "dcredit": entry(json!(settings.dcredit.value), &settings.dcredit.source),
        "ucredit": entry(json!(settings.ucredit.value), &settings.ucredit.source),
        "lcredit": entry(json!(settings.lcredit.value), &settings.lcredit.source),
        "ocredit": entry(json!(settings.ocredit.value), &settings.ocredit.source),
        "minclass": entry(json!(settings.minclass.value), &settings.minclass.source),
        "enforcing": entry(json!(settings.enforcing.value), &settings.enforcing.source),
        "enforce_for_root": entry(json!(settings.enforce_for_root.value), &settings.enforce_for_root.source),
        "local_users_only": entry(json!(settings.local_users_only.value), &settings.local_users_only.source),
        "dictcheck": entry(json!(settings.dictcheck.value), &settings.dictcheck.source),
    })
}

fn judge_max_age(
    login_defs: &FileState<LoginDefs>,
    policy: &PasswordPolicy,
    findings: &mut Vec<Finding>,
    evidence: &mut Map<String, Value>,
) {
    let file_evidence = match login_defs {
        FileState::Absent => json!({ "path": LOGIN_DEFS, "state": "absent" }),
        FileState::Unreadable(error) => {
            json!({ "path": LOGIN_DEFS, "state": "unreadable", "error": error })
        }
        FileState::Read(defs) => json!({
            "path": LOGIN_DEFS,
            "state": "read",
            "values": defs.values.iter().map(|(key, v)| {
                (key.clone(), json!({ "value": v.raw, "line": v.line }))
            }).collect::<Map<String, Value>>(),
            "note": "PASS_MIN_LEN is not used where passwd goes through PAM; PASS_MAX_DAYS \
                     applies to accounts created after it was set",
        }),
    };
    evidence.insert("login_defs".into(), file_evidence);

    // Without max_age_days the policy does not ask for expiry: NCSC advises
    // against forced expiry, so a missing PASS_MAX_DAYS is no failure.
    let Some(limit) = policy.max_age_days else {
        return;
    };
    let limit = i64::from(limit);
    let never = |detail: String| {
        Finding::Fail(
            format!("passwords never expire: {detail}; the policy requires at most {limit} days"),
            Fix::SetMaxDays,
        )
    };
    let defs = match login_defs {
        FileState::Absent => {
            findings.push(never(format!(
                "{LOGIN_DEFS} does not exist, so PASS_MAX_DAYS is unset"
            )));
            return;
        }
        FileState::Unreadable(error) => {
            findings.push(Finding::Unknown(format!(
                "cannot read {LOGIN_DEFS}: {error}"
            )));
            return;
        }
        FileState::Read(defs) => defs,
    };
    let Some(value) = defs.get("PASS_MAX_DAYS") else {
        findings.push(never(format!("PASS_MAX_DAYS is not set in {LOGIN_DEFS}")));
        return;
    };
    let at = format!("{LOGIN_DEFS} line {}", value.line);
    findings.push(match value.number() {
        None => never(format!(
            "shadow cannot read PASS_MAX_DAYS {:?} ({at}) and uses -1",
            value.raw
        )),
        Some(days) if !(0..PASS_MAX_DAYS_NEVER).contains(&days) => {
            never(format!("PASS_MAX_DAYS {days} ({at})"))
        }
        Some(days) if days > limit => Finding::Fail(
            format!("PASS_MAX_DAYS {days} ({at}) is longer than the policy's {limit} days"),
            Fix::SetMaxDays,
        ),
        Some(days) => Finding::Pass(format!("passwords expire after {days} days ({at})")),
    });
}

#[cfg(test)]
mod tests;
