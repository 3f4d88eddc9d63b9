//! How one PAM password stack of `password_policy` is judged: which
//! pam_pwquality lines count, and the shortest password they accept. Pure.

use palisade_shared::policy::PasswordPolicy;
use serde_json::{Value, json};

use super::finding::{Finding, Fix, STACK};
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

/// How one pam_pwquality line counts.
#[derive(Debug)]
pub(super) struct PwqualityLine<'a> {
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

pub(super) fn assess_pwquality_line<'a>(
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

pub(super) fn judge_stack(
    stack: &PamStack,
    pwq: &PwqualityFacts,
    policy: &PasswordPolicy,
) -> JudgedStack {
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
