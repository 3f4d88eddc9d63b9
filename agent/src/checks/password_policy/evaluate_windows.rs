//! The Windows evaluator of `password_policy`: the local account policy
//! (`NetUserModalsGet`, or secedit's export when that call fails) and the
//! complexity switch (secedit's export) against the policy's length, expiry
//! and classes. Pure, so it compiles and is tested on every OS.
//!
//! What could not be read makes the verdict `unknown` unless something that
//! was read already fails: a failure found is worth reporting even when the
//! rest is unknown, and nothing unread ever passes.

use palisade_shared::policy::PasswordPolicy;
use palisade_shared::report::CheckStatus;
use serde_json::json;

use super::WindowsPasswordFacts;
use crate::checks::Verdict;

/// The character classes Windows' complexity rule asks for: three of upper
/// case, lower case, digits and symbols (Microsoft's "Password must meet
/// complexity requirements" page; the fifth, "Unicode letters", counts as
/// one more class but is never required). So complexity on satisfies a
/// policy of at most 3 classes, and no Windows setting satisfies 4.
const WINDOWS_COMPLEXITY_CLASSES: u32 = 3;

const SECONDS_PER_DAY: u64 = 86_400;

const WHERE: &str = "Local Security Policy (secpol.msc) > Account Policies > Password Policy, or \
                     the Group Policy of the same path";

pub fn evaluate(facts: &WindowsPasswordFacts, policy: &PasswordPolicy) -> Verdict {
    let mut failures: Vec<String> = Vec::new();
    let mut fixes: Vec<String> = Vec::new();
    let mut unknowns: Vec<String> = Vec::new();
    match &facts.accounts {
        Err(reason) => unknowns.push(format!("cannot read the account policy: {reason}")),
        Ok(accounts) => {
            if accounts.min_password_length < policy.min_length {
                failures.push(format!(
                    "the minimum password length is {}; the policy asks {}",
                    accounts.min_password_length, policy.min_length
                ));
                fixes.push(format!(
                    "Set \"Minimum password length\" to {} ({WHERE}).",
                    policy.min_length
                ));
            }
            if let Some(days) = policy.max_age_days {
                let limit = u64::from(days) * SECONDS_PER_DAY;
                match accounts.max_password_age_seconds {
                    None => {
                        failures.push(format!(
                            "passwords never expire; the policy asks at most {days} days"
                        ));
                        fixes.push(format!(
                            "Set \"Maximum password age\" to {days} days ({WHERE})."
                        ));
                    }
                    Some(age) if u64::from(age) > limit => {
                        failures.push(format!(
                            "passwords expire after {} days; the policy asks at most {days}",
                            u64::from(age) / SECONDS_PER_DAY
                        ));
                        fixes.push(format!(
                            "Set \"Maximum password age\" to {days} days ({WHERE})."
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    if let Some(classes) = policy.min_classes {
        if classes > WINDOWS_COMPLEXITY_CLASSES {
            failures.push(format!(
                "Windows' complexity rule asks {WINDOWS_COMPLEXITY_CLASSES} character classes at \
                 most; the policy asks {classes}"
            ));
            // No setting on the machine can fix this one; say who can.
            fixes.push(format!(
                "No Windows setting requires {classes} character classes: the policy's \
                 administrator has to lower min_classes to {WINDOWS_COMPLEXITY_CLASSES} for \
                 Windows."
            ));
        } else {
            match &facts.complexity {
                Ok(true) => {}
                Ok(false) => {
                    failures.push(format!(
                        "password complexity is off; the policy asks {classes} character classes"
                    ));
                    fixes.push(format!(
                        "Enable \"Password must meet complexity requirements\" ({WHERE})."
                    ));
                }
                Err(reason) => unknowns.push(format!(
                    "cannot read whether passwords must meet complexity requirements: {reason}"
                )),
            }
        }
    }

    let verdict = if !failures.is_empty() {
        Verdict::new(CheckStatus::Fail, failures.join("; ")).with_fix(fixes.join(" "))
    } else if !unknowns.is_empty() {
        Verdict::new(CheckStatus::Unknown, unknowns.join("; "))
    } else {
        let accounts = facts.accounts.as_ref().ok();
        Verdict::new(
            CheckStatus::Pass,
            format!(
                "the minimum password length is {}; the policy asks {}",
                accounts.map_or(0, |a| a.min_password_length),
                policy.min_length
            ),
        )
    };
    let accounts = match &facts.accounts {
        Ok(a) => json!({
            "min_password_length": a.min_password_length,
            "max_password_age_seconds": a.max_password_age_seconds,
            "min_password_age_seconds": a.min_password_age_seconds,
            "password_history_length": a.password_history_length,
        }),
        Err(reason) => json!({ "unreadable": reason }),
    };
    let lockout = match &facts.lockout {
        Ok(l) => json!({
            "threshold": l.threshold,
            "duration_seconds": l.duration_seconds,
            "observation_window_seconds": l.observation_window_seconds,
        }),
        Err(reason) => json!({ "unreadable": reason }),
    };
    let complexity = match &facts.complexity {
        Ok(on) => json!(on),
        Err(reason) => json!({ "unreadable": reason }),
    };
    verdict
        .with_evidence("account_policy", accounts)
        .with_evidence("account_policy_source", facts.accounts_source.describe())
        .with_evidence("lockout_policy", lockout)
        .with_evidence("lockout_policy_source", facts.lockout_source.describe())
        .with_evidence("complexity", complexity)
        .with_evidence("complexity_source", "secedit /export /areas SECURITYPOLICY")
        .with_evidence("reversible_encryption", json!(facts.reversible_encryption))
        .with_evidence("min_length_required", policy.min_length)
        .with_evidence("min_classes_required", json!(policy.min_classes))
        .with_evidence("max_age_days_required", json!(policy.max_age_days))
}
