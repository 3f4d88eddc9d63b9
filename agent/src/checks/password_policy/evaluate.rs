//! The evaluator of `password_policy`: from the PAM stacks, libpwquality's
//! settings and login.defs to a verdict and its fix text. Pure (no I/O, no
//! clock), so it compiles and is tested on every OS; one stack is judged in
//! `stack.rs`.

use palisade_shared::policy::PasswordPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::{Map, Value, json};

use super::finding::{Finding, Fix, STACK};
use super::stack::{judge_stack, settings_evidence};
use super::{
    FileState, LOGIN_DEFS, LinuxPasswordFacts, LoginDefs, PASS_MAX_DAYS_NEVER, PamFacts, PamFamily,
    PamStack, PasswordFacts,
};
use crate::checks::Verdict;

pub(super) fn fix_text(fix: &Fix, family: Option<PamFamily>, policy: &PasswordPolicy) -> String {
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
            Some(PamFamily::Other) => format!(
                "Install pam_pwquality, add `password requisite pam_pwquality.so` before \
                 pam_unix in the password stack, and set minlen = {length} in \
                 /etc/security/pwquality.conf."
            ),
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
        Fix::CheckBeforeSetting {
            module,
            location,
            skipper,
        } => format!(
            "Move the {module} line ({location}) above {skipper}, as `requisite`, and give \
             pam_unix `use_authtok`: then no password is set before it is checked."
        ),
        Fix::UseAuthtok {
            module,
            location,
            writer,
        } => format!(
            "Add use_authtok to {writer}, so that it sets only a password {module} accepted, or \
             make the {module} line ({location}) `requisite`."
        ),
        Fix::CracklibArguments {
            location,
            arguments,
        } => format!(
            "On the pam_cracklib line ({location}) set {}: pam_cracklib reads only its own \
             arguments, and by default credits one character per class. Or replace it with \
             pam_pwquality, its successor.",
            arguments.join(" ")
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

/// Decides the rule from the facts of whichever system they came from.
pub fn evaluate(facts: &PasswordFacts, policy: &PasswordPolicy) -> Verdict {
    match facts {
        PasswordFacts::Linux(facts) => evaluate_linux(facts, policy),
        PasswordFacts::Windows(facts) => super::evaluate_windows::evaluate(facts, policy),
        PasswordFacts::MacOs(facts) => super::evaluate_macos::evaluate(facts, policy),
    }
}

/// Linux: the PAM stack's password quality module and login.defs.
pub(super) fn evaluate_linux(facts: &LinuxPasswordFacts, policy: &PasswordPolicy) -> Verdict {
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

pub(super) fn dedup<'a>(items: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let mut out: Vec<&String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

pub(super) fn judge_pam(
    facts: &LinuxPasswordFacts,
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
            findings.push(Finding::Unknown(
                "found no PAM configuration for any password-changing service (passwd, \
                 chpasswd, …) in /etc/pam.d or /usr/lib/pam.d, nor for other"
                    .to_owned(),
            ));
            return None;
        }
        PamFacts::Stacks { family, stacks } => (*family, stacks),
    };
    evidence.insert("pam_family".into(), json!(family.as_str()));

    // Judge each stack, then merge stacks that reached the same conclusion so
    // that Fedora's two identical files give one sentence naming both.
    let mut merged: Vec<(Finding, Vec<&PamStack>)> = Vec::new();
    let mut stack_evidence = Vec::new();
    let mut shortest_overall: Option<i64> = None;
    for stack in stacks {
        let judged = judge_stack(stack, pwq, policy);
        if let Some(length) = judged.shortest {
            shortest_overall = Some(shortest_overall.map_or(length, |s| s.min(length)));
        }
        stack_evidence.push(judged.evidence);
        match merged.iter_mut().find(|(f, _)| *f == judged.finding) {
            Some((_, same)) => same.push(stack),
            None => merged.push((judged.finding, vec![stack])),
        }
    }
    evidence.insert("pam_stacks".into(), Value::Array(stack_evidence));
    evidence.insert("shortest_accepted_length".into(), json!(shortest_overall));
    for (finding, same) in merged {
        let where_ = stacks_named(&same);
        let place = |message: String| message.replace(STACK, &where_);
        findings.push(match finding {
            Finding::Pass(m) => Finding::Pass(place(m)),
            Finding::Fail(m, fix) => Finding::Fail(place(m), fix),
            Finding::Unknown(m) => Finding::Unknown(place(m)),
        });
    }
    Some(family)
}

/// How a finding names the stacks it is about: the files they were read
/// from (so the file to edit is named), and the services they are run for
/// when the probe found them by service, e.g. `/etc/pam.d/passwd,
/// /etc/pam.d/common-password, /etc/pam.d/chpasswd: services passwd,
/// chpasswd`.
fn stacks_named(stacks: &[&PamStack]) -> String {
    let services: Vec<&str> = stacks.iter().filter_map(|s| s.service.as_deref()).collect();
    let mut files: Vec<&str> = Vec::new();
    for stack in stacks {
        let read = if services.is_empty() || stack.files_read.is_empty() {
            std::slice::from_ref(&stack.root)
        } else {
            &stack.files_read[..]
        };
        for file in read {
            if !files.contains(&file.as_str()) {
                files.push(file);
            }
        }
    }
    if services.is_empty() {
        files.join(" and ")
    } else {
        format!(
            "{}: service{} {}",
            files.join(", "),
            if services.len() == 1 { "" } else { "s" },
            services.join(", ")
        )
    }
}

pub(super) fn judge_max_age(
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
