//! How one PAM password stack of `password_policy` is judged: which
//! pam_pwquality lines count, and the shortest password they accept. Pure.

use palisade_shared::policy::PasswordPolicy;
use serde_json::{Value, json};

use super::cracklib::cracklib_settings;
use super::finding::{Finding, Fix, STACK};
use super::paths::{certainly_skipped, judge_pam_unix_alone, prompts_itself};
use super::pwquality::ArgumentOutcome;
use super::{
    OTHER_QUALITY_MODULES, PASSWORD_WRITING_MODULES, PamAction, PamEntry, PamStack, PwqualityFacts,
    PwqualitySettings, SettingSource, apply_pam_arguments, shortest_accepted_length,
    why_entry_may_be_skipped,
};

pub(super) struct JudgedStack {
    pub(super) finding: Finding,
    /// The shortest password this stack accepts, when it enforces one.
    pub(super) shortest: Option<i64>,
    pub(super) evidence: Value,
}

/// The quality modules this rule evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checker {
    Pwquality,
    /// Older, reads only its own arguments (`cracklib.rs`).
    Cracklib,
}

impl Checker {
    pub(super) fn of(entry: &PamEntry) -> Option<Self> {
        match entry.module_name()? {
            "pam_pwquality.so" => Some(Self::Pwquality),
            "pam_cracklib.so" => Some(Self::Cracklib),
            _ => None,
        }
    }

    pub(super) fn module(self) -> &'static str {
        match self {
            Self::Pwquality => "pam_pwquality.so",
            Self::Cracklib => "pam_cracklib.so",
        }
    }
}

/// How one quality module line counts.
#[derive(Debug)]
pub(super) struct PwqualityLine<'a> {
    pub(super) checker: Checker,
    pub(super) entry: &'a PamEntry,
    pub(super) settings: PwqualitySettings,
    pub(super) ignored_arguments: Vec<String>,
    pub(super) custom_config: Option<String>,
    /// `None` when it counts; else why not.
    pub(super) excluded: Option<Exclusion>,
    pub(super) shortest: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Exclusion {
    /// `-password` and the module is not installed: PAM skips it silently.
    NotInstalled,
    /// An earlier line can skip it, on a path that is not the usual one
    /// (a condition, a domain account's module).
    MaySkip(String),
    /// On the usual path of a password change an earlier line sets the
    /// password before this one checks it (pam_unix asking for it itself).
    Skipped { reason: String, skipper: String },
    /// Its control ignores a failure.
    Ignored(PamAction),
    /// It fails without ending the stack, and a later module sets the
    /// password anyway; `certain` when that module is pam_unix, which asks
    /// for the password itself (a domain module does so only for domain
    /// accounts).
    Bypassed {
        reason: String,
        writer: String,
        certain: bool,
    },
}

impl Exclusion {
    fn describe(&self) -> String {
        match self {
            Self::NotInstalled => {
                "the line starts with `-` and the module is not installed, so PAM skips it".into()
            }
            Self::MaySkip(reason) => format!("it may not run: {reason}"),
            Self::Skipped { reason, .. } => reason.clone(),
            Self::Ignored(action) => format!("a failure is ignored (action `{action}`)"),
            Self::Bypassed { reason, .. } => reason.clone(),
        }
    }

    /// Whether the usual password change certainly gets past the line.
    fn is_certain(&self) -> bool {
        match self {
            Self::NotInstalled | Self::MaySkip(_) => false,
            Self::Skipped { .. } | Self::Ignored(_) => true,
            Self::Bypassed { certain, .. } => *certain,
        }
    }
}

pub(super) fn assess_pwquality_line<'a>(
    entries: &'a [PamEntry],
    index: usize,
    base: &PwqualitySettings,
) -> PwqualityLine<'a> {
    let entry = &entries[index];
    let checker = Checker::of(entry).unwrap_or(Checker::Pwquality);
    let outcome = match checker {
        Checker::Pwquality => apply_pam_arguments(base, entry.arguments(), &entry.file, entry.line),
        Checker::Cracklib => ArgumentOutcome {
            settings: cracklib_settings(entry.arguments(), &entry.file, entry.line),
            ignored: Vec::new(),
            custom_config: None,
        },
    };
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
    } else if let Some((reason, skipper)) = certainly_skipped(entries, index) {
        Some(Exclusion::Skipped { reason, skipper })
    } else if let Some(reason) = why_entry_may_be_skipped(entries, index) {
        Some(Exclusion::MaySkip(reason))
    } else if !on_failure.iter().all(|a| a.ends_the_stack()) {
        entries[index + 1..]
            .iter()
            .find(|later| {
                later
                    .module_name()
                    .is_some_and(|m| PASSWORD_WRITING_MODULES.contains(&m))
                    && prompts_itself(later)
            })
            .map(|later| Exclusion::Bypassed {
                reason: format!(
                    "its control `{}` lets the stack go on after a rejection, and {} ({}) then \
                     asks for a new password itself (no use_authtok) and sets it",
                    entry.control.text,
                    later.location(),
                    later.module_name().unwrap_or_default()
                ),
                writer: later.location(),
                certain: later.module_name() == Some("pam_unix.so"),
            })
    } else {
        None
    };
    let shortest = shortest_accepted_length(&outcome.settings);
    PwqualityLine {
        checker,
        entry,
        settings: outcome.settings,
        ignored_arguments: outcome.ignored,
        custom_config: outcome.custom_config,
        excluded,
        shortest,
    }
}

pub(super) fn judge_stack(
    stack: &PamStack,
    pwq: &PwqualityFacts,
    policy: &PasswordPolicy,
) -> JudgedStack {
    let lines: Vec<PwqualityLine<'_>> = stack
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| Checker::of(e).is_some())
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
        if let Some(judgement) = judge_pam_unix_alone(stack, policy) {
            let (finding, shortest) = judgement;
            return judged(finding, shortest);
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
    let reads_pwquality_files = present.iter().any(|l| l.checker == Checker::Pwquality);
    if reads_pwquality_files && !pwq.unreadable.is_empty() {
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
        // Only when every line is certainly got past is the failure
        // certain; a line that may be skipped still runs on some paths.
        let all_certain = present
            .iter()
            .all(|l| l.excluded.as_ref().is_some_and(Exclusion::is_certain));
        if let Some(line) = present.first().filter(|_| all_certain) {
            return judged(certain_bypass(line), None);
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
        let module = present
            .first()
            .map_or("pam_pwquality.so", |l| l.checker.module());
        return judged(
            Finding::Unknown(format!(
                "{module} may not check every password change in {STACK}: {reason}"
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
        let positive_credits: Vec<String> = settings
            .positive_credits()
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
        let fix = match decisive.checker {
            Checker::Pwquality => Fix::RaiseMinlen {
                positive_credits,
                pam_argument,
            },
            Checker::Cracklib => Fix::CracklibArguments {
                location: decisive.entry.location(),
                arguments: std::iter::once(format!("minlen={required_length}"))
                    .chain(positive_credits.iter().map(|name| format!("{name}=0")))
                    .collect(),
            },
        };
        return judged(
            Finding::Fail(
                format!(
                    "PAM ({STACK}) accepts passwords of {shortest} characters ({explanation}); \
                     the policy requires {required_length}"
                ),
                fix,
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
            let fix = match decisive.checker {
                Checker::Pwquality => Fix::RaiseMinclass { pam_argument },
                Checker::Cracklib => Fix::CracklibArguments {
                    location: decisive.entry.location(),
                    arguments: vec![format!("minclass={required_classes}")],
                },
            };
            return judged(
                Finding::Fail(
                    format!(
                        "{} in {STACK} requires {classes} character classes \
                         (minclass from {}); the policy requires {required_classes}",
                        decisive.checker.module().trim_end_matches(".so"),
                        minclass.source
                    ),
                    fix,
                ),
                Some(shortest),
            );
        }
    }
    if reads_pwquality_files && !pwq.vendor_files.is_empty() {
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

pub(super) fn settings_evidence(settings: &PwqualitySettings) -> Value {
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

/// The failure of a stack whose every quality line the usual password
/// change gets past (see [`Exclusion::is_certain`]), with the fix for the
/// first.
fn certain_bypass(line: &PwqualityLine<'_>) -> Finding {
    let module = line.checker.module();
    let location = line.entry.location();
    match &line.excluded {
        Some(Exclusion::Skipped { reason, skipper }) => Finding::Fail(
            format!("{module} does not check every password change in {STACK}: {reason}"),
            Fix::CheckBeforeSetting {
                module,
                location,
                skipper: skipper.clone(),
            },
        ),
        Some(Exclusion::Bypassed { reason, writer, .. }) => Finding::Fail(
            format!("{module} does not stop weak passwords in {STACK}: {reason}"),
            Fix::UseAuthtok {
                module,
                location,
                writer: writer.clone(),
            },
        ),
        _ => Finding::Fail(
            format!(
                "{module} does not stop weak passwords in {STACK}: its control `{}` ({location}) \
                 ignores a rejection",
                line.entry.control.text,
            ),
            Fix::MakeRequisite {
                location,
                control: line.entry.control.text.clone(),
            },
        ),
    }
}
