//! The macOS evaluator of `password_policy`: the global account policies
//! against the policy's length, classes and expiry. Pure, so it compiles
//! and is tested on every OS.
//!
//! Every content policy must match a new password, so the minimum length is
//! the largest `.{N,}` among them and the classes are the union of those
//! required. A `matches` rule this parser cannot read may be stricter than
//! it looks: it turns a shortfall into `unknown`, never into a pass, and a
//! missing minimum into `unknown` rather than `fail`. With no account
//! policies at all (what `pwpolicy -clearaccountpolicies` leaves) nothing
//! sets a minimum, which is a certain failure. Lockout is shown in the
//! evidence, not judged: the policy has no lockout setting.

use palisade_shared::policy::PasswordPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::{Value, json};

use super::{MacAccountPolicies, MacCharClass, MacContentRule, MacPasswordFacts};
use crate::checks::Verdict;

const FIX_WHERE: &str = "macOS has no setting for this in System Settings: IT sets it with a \
                         configuration profile's Passcode payload \
                         (com.apple.mobiledevice.passwordpolicy), or an administrator with \
                         `sudo pwpolicy -setaccountpolicies FILE`.";

pub fn evaluate(facts: &MacPasswordFacts, policy: &PasswordPolicy) -> Verdict {
    let policies = match &facts.account_policies {
        Ok(policies) => policies,
        Err(reason) => {
            return with_required(
                Verdict::new(
                    CheckStatus::Unknown,
                    format!("cannot read the account policies: {reason}"),
                )
                .with_evidence("account_policies", json!({ "unreadable": reason })),
                policy,
            );
        }
    };
    let mut failures = Vec::new();
    let mut fixes = Vec::new();
    let mut unknowns = Vec::new();
    let unreadable_length = policies.content.iter().any(|p| {
        matches!(
            p.rule,
            MacContentRule::Unrecognised {
                mentions_length: true
            }
        )
    });
    let any_unrecognised = policies
        .content
        .iter()
        .any(|p| matches!(p.rule, MacContentRule::Unrecognised { .. }));
    let min_length = policies
        .content
        .iter()
        .filter_map(|p| match p.rule {
            MacContentRule::MinLength(length) => Some(length),
            _ => None,
        })
        .max();
    match min_length {
        Some(length) if length >= policy.min_length => {}
        shortfall if unreadable_length => unknowns.push(format!(
            "{}; a content policy whose length this agent cannot read may ask more",
            match shortfall {
                Some(length) => format!("the readable minimum length is {length}"),
                None => "no readable policy sets a minimum length".to_owned(),
            }
        )),
        Some(length) => {
            failures.push(format!(
                "the minimum password length is {length}; the policy asks {}",
                policy.min_length
            ));
            fixes.push(format!(
                "Ask IT to require at least {} characters (Passcode payload minLength, or a \
                 content policy `policyAttributePassword matches '.{{{},}}+'`).",
                policy.min_length, policy.min_length
            ));
        }
        None => {
            failures.push(format!(
                "no account policy sets a minimum password length; the policy asks {}",
                policy.min_length
            ));
            fixes.push(format!(
                "Ask IT to require at least {} characters (Passcode payload minLength).",
                policy.min_length
            ));
        }
    }
    if let Some(wanted) = policy.min_classes {
        let classes = required_classes(policies);
        if classes < wanted {
            let message =
                format!("passwords must mix {classes} character classes; the policy asks {wanted}");
            if any_unrecognised {
                unknowns.push(format!(
                    "{message}, but a content policy this agent cannot read may ask more"
                ));
            } else {
                failures.push(message);
                fixes.push(format!(
                    "Ask IT to require {wanted} character classes (Passcode payload \
                     requireAlphanumeric and minComplexChars)."
                ));
            }
        }
    }
    if let Some(days) = policy.max_age_days {
        match policies.expires_every_days {
            Some(every) if every > 0 && every <= i64::from(days) => {}
            _ if !policies.unread_change_policies.is_empty() => unknowns.push(format!(
                "password change policies whose period cannot be read: {}",
                policies.unread_change_policies.join(", ")
            )),
            Some(every) if every > 0 => {
                failures.push(format!(
                    "passwords expire after {every} days; the policy asks at most {days}"
                ));
                fixes.push(format!(
                    "Ask IT to expire passwords after {days} days (Passcode payload \
                     maxPINAgeInDays)."
                ));
            }
            _ => {
                failures.push(format!(
                    "passwords never expire; the policy asks at most {days} days"
                ));
                fixes.push(format!(
                    "Ask IT to expire passwords after {days} days (Passcode payload \
                     maxPINAgeInDays)."
                ));
            }
        }
    }
    let verdict = if !failures.is_empty() {
        fixes.push(FIX_WHERE.to_owned());
        Verdict::new(CheckStatus::Fail, failures.join("; ")).with_fix(fixes.join(" "))
    } else if !unknowns.is_empty() {
        Verdict::new(CheckStatus::Unknown, unknowns.join("; "))
    } else {
        Verdict::new(
            CheckStatus::Pass,
            format!(
                "the minimum password length is {}; the policy asks {}",
                min_length.unwrap_or_default(),
                policy.min_length
            ),
        )
    };
    with_required(
        verdict.with_evidence("account_policies", policies_evidence(policies, min_length)),
        policy,
    )
}

/// Classes a password must mix: upper and lower count as two when both are
/// required, a letter of either case as one.
fn required_classes(policies: &MacAccountPolicies) -> u32 {
    let has = |class: MacCharClass| {
        policies
            .content
            .iter()
            .any(|p| p.rule == MacContentRule::Requires(class))
    };
    let letters = match (has(MacCharClass::Upper), has(MacCharClass::Lower)) {
        (true, true) => 2,
        (true, false) | (false, true) => 1,
        (false, false) => u32::from(has(MacCharClass::Letter)),
    };
    letters + u32::from(has(MacCharClass::Digit)) + u32::from(has(MacCharClass::Symbol))
}

fn policies_evidence(policies: &MacAccountPolicies, min_length: Option<u32>) -> Value {
    let content: Vec<Value> = policies
        .content
        .iter()
        .map(|p| {
            json!({
                "identifier": p.identifier,
                "content": p.content,
                "reads_as": match p.rule {
                    MacContentRule::MinLength(n) => format!("at least {n} characters"),
                    MacContentRule::Requires(class) => format!("requires {class:?}").to_lowercase(),
                    MacContentRule::Unrecognised { .. } => "not recognised".to_owned(),
                    MacContentRule::Other => "not a password content rule".to_owned(),
                },
            })
        })
        .collect();
    json!({
        "source": "pwpolicy -getaccountpolicies",
        "content": content,
        "min_length": min_length,
        "classes_required": required_classes(policies),
        "max_failed_authentications": policies.max_failed_authentications,
        "lockout_seconds": policies.lockout_seconds,
        "expires_every_days": policies.expires_every_days,
    })
}

fn with_required(verdict: Verdict, policy: &PasswordPolicy) -> Verdict {
    verdict
        .with_evidence("min_length_required", policy.min_length)
        .with_evidence("min_classes_required", json!(policy.min_classes))
        .with_evidence("max_age_days_required", json!(policy.max_age_days))
}
