//! The paths a password change takes through a PAM stack, as far as this
//! rule needs them: which earlier line certainly sets a password before a
//! quality module checks one, which modules ask for the password
//! themselves, and what pam_unix alone enforces when there is no quality
//! module. Pure.

use palisade_shared::policy::PasswordPolicy;

use super::finding::{Finding, Fix, STACK};
use super::{
    PAM_UNIX_DEFAULT_MINLEN, PASSWORD_WRITING_MODULES, PamAction, PamEntry, PamStack,
    why_entry_may_be_skipped,
};

/// Whether the usual path of a password change sets a password the entry
/// at `index` (a quality module) has not checked:
/// - an earlier pam_unix that asks for the new password itself (no
///   `use_authtok`) sets it there and then, whatever its control says next;
/// - an earlier line whose success is the usual path (pam_permit always
///   succeeds; pam_localuser does for the local accounts a laptop has)
///   jumps past the entry, and the first password-setting module after the
///   landing is a pam_unix that asks for the password itself.
///
/// A line that ends the stack instead (`sufficient pam_permit.so`) sets
/// nothing itself, and one whose success depends on a condition
/// (`pam_succeed_if.so`) or a domain (`pam_sss.so`) only may skip: those
/// stay a "may" ([`why_entry_may_be_skipped`]).
pub(super) fn certainly_skipped(entries: &[PamEntry], index: usize) -> Option<(String, String)> {
    let checker = entries[index].location();
    entries
        .iter()
        .take(index)
        .enumerate()
        .find_map(|(at, earlier)| {
            let named = format!(
                "{} ({}, `{}`)",
                earlier.location(),
                earlier.module_name().unwrap_or_default(),
                earlier.control.text
            );
            let reason = match earlier.module_name() {
                Some("pam_unix.so") if prompts_itself(earlier) => format!(
                    "{named} asks for the new password itself (no use_authtok) and sets it before \
                 {checker} runs"
                ),
                Some(module @ ("pam_permit.so" | "pam_localuser.so")) => {
                    let PamAction::Jump(n) = earlier.control.action_for("success") else {
                        return None;
                    };
                    let landing = at + n as usize + 1;
                    if landing <= index {
                        return None;
                    }
                    let writer = entries.get(landing..)?.iter().find(|e| {
                        e.module_name()
                            .is_some_and(|m| PASSWORD_WRITING_MODULES.contains(&m))
                    })?;
                    if writer.module_name() != Some("pam_unix.so") || !prompts_itself(writer) {
                        return None;
                    }
                    let usual = if module == "pam_permit.so" {
                        "always succeeds"
                    } else {
                        "succeeds for a local account"
                    };
                    format!(
                        "{named} {usual} and jumps over {checker}, and {} (pam_unix.so) then asks \
                     for the new password itself and sets it",
                        writer.location()
                    )
                }
                _ => return None,
            };
            Some((reason, earlier.location()))
        })
}

/// A password-writing module that asks for the new password itself when no
/// earlier module has set one (after a rejection none has): without
/// `use_authtok` or `use_first_pass`, which make it take only the password
/// an earlier module accepted.
pub(super) fn prompts_itself(entry: &PamEntry) -> bool {
    !entry
        .arguments()
        .iter()
        .any(|a| a == "use_authtok" || a == "use_first_pass")
}

/// A stack with no quality module: pam_unix's own `minlen` is then the only
/// length check, and it counts when pam_unix is the only module that sets
/// passwords and runs on every path. `None` when that cannot be said, or
/// when it is too short (the caller then reports the missing quality
/// module).
pub(super) fn judge_pam_unix_alone(
    stack: &PamStack,
    policy: &PasswordPolicy,
) -> Option<(Finding, Option<i64>)> {
    let writers: Vec<(usize, &PamEntry)> = stack
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.module_name()
                .is_some_and(|m| PASSWORD_WRITING_MODULES.contains(&m))
        })
        .collect();
    let [(index, unix)] = writers[..] else {
        return None;
    };
    if unix.module_name() != Some("pam_unix.so")
        || why_entry_may_be_skipped(&stack.entries, index).is_some()
    {
        return None;
    }
    let minlen = unix
        .arguments()
        .iter()
        .rev()
        .find_map(|a| a.strip_prefix("minlen="))
        .and_then(|n| n.parse::<i64>().ok());
    let (shortest, source) = match minlen {
        Some(n) => (n, format!("pam_unix.so minlen={n} ({})", unix.location())),
        None => (
            PAM_UNIX_DEFAULT_MINLEN,
            format!(
                "pam_unix.so's default minlen {PAM_UNIX_DEFAULT_MINLEN} ({})",
                unix.location()
            ),
        ),
    };
    let required = i64::from(policy.min_length);
    if shortest < required {
        // The caller's "no quality module" failure says it better.
        return None;
    }
    let finding = if let Some(classes) = policy.min_classes.filter(|c| *c > 1) {
        Finding::Fail(
            format!(
                "{source} requires {shortest} characters in {STACK}, but pam_unix checks no \
                 character classes; the policy requires {classes}"
            ),
            Fix::InstallPwquality,
        )
    } else {
        Finding::Pass(format!(
            "PAM ({STACK}) requires passwords of at least {shortest} characters: {source}, the \
             only module that sets passwords (policy: {required})"
        ))
    };
    Some((finding, Some(shortest)))
}
