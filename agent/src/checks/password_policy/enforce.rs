//! Enforcer for `password_policy`: a libpwquality drop-in, and the
//! `pam_pwquality` line in the PAM password stack only when the policy says
//! `manage_pam = true`.
//!
//! The drop-in `/etc/security/pwquality.conf.d/palisade.conf` sets `minlen`
//! to the policy's length and every credit to 0, so the shortest password
//! libpwquality accepts is exactly `minlen` (the check computes it with
//! credits: [`shortest_accepted_length`]); and `minclass` when the policy
//! sets `min_classes`. libpwquality reads the drop-ins first and the main
//! `pwquality.conf` last, so a value there (or in a drop-in sorting after
//! `palisade.conf`) wins over the drop-in. The enforcer never edits those
//! files: it works out the settings the library would end up with and, if
//! another file defeats the drop-in, refuses with that file and line.
//!
//! PAM (Debian's `/etc/pam.d/common-password`, with `manage_pam`): the line
//! `password requisite pam_pwquality.so retry=3` goes before the first
//! `pam_unix.so` password line, which gets `use_authtok` so that it sets
//! the password pam_pwquality checked instead of asking again (what Debian's
//! own pam-auth-update profile for libpam-pwquality writes). Only when the
//! module is installed: a line naming a missing module makes PAM refuse
//! every password change. Fedora-style stacks belong to authselect and are
//! left alone.

use palisade_shared::policy::PasswordPolicy;

use super::{
    DEBIAN_PASSWORD_STACK, ParsedPamLine, REDHAT_PASSWORD_STACKS, SettingSource,
    pam_module_installed, parse_pam_file, pwquality::PWQUALITY_DROP_IN_DIR, pwquality_file_order,
    read_in_root, read_pwquality_files, shortest_accepted_length,
};
use crate::enforce::plan::{Plan, write_if_different};
use crate::sys::Host;

pub const DROP_IN_NAME: &str = "palisade.conf";
pub const DROP_IN: &str = "/etc/security/pwquality.conf.d/palisade.conf";
const PWQUALITY_LINE: &str = "password\trequisite\t\t\tpam_pwquality.so retry=3";

pub fn plan(host: &Host, policy: &PasswordPolicy) -> anyhow::Result<Plan> {
    if Plan::is_foreign_live_system(host) {
        return Ok(Plan::no_enforcer_yet("password policy"));
    }
    let mut plan = Plan::default();
    let drop_in = drop_in_text(policy);
    if let Some(conflict) = conflict_with_other_files(host, policy, &drop_in)? {
        plan.refusal = Some(conflict);
        return Ok(plan);
    }
    write_if_different(host, &mut plan, DROP_IN, drop_in)?;
    if policy.manage_pam {
        plan_pam(host, &mut plan)?;
    } else {
        plan.notes.push(
            "PAM is left alone (manage_pam = false): the drop-in counts only where \
             pam_pwquality is already in the password stack"
                .into(),
        );
    }
    Ok(plan)
}

/// The drop-in's text for a policy.
pub fn drop_in_text(policy: &PasswordPolicy) -> String {
    let mut text = format!(
        "# Managed by palisade-agent (rule password_policy). `palisade-agent enforce --undo \
         password_policy` restores what was here before.\n\
         # Credits are 0 so that minlen is the exact shortest length.\n\
         minlen = {}\n\
         dcredit = 0\n\
         ucredit = 0\n\
         lcredit = 0\n\
         ocredit = 0\n",
        policy.min_length
    );
    if let Some(classes) = policy.min_classes {
        text.push_str(&format!("minclass = {classes}\n"));
    }
    text
}

/// Reads the pwquality files as libpwquality would with the drop-in in
/// place, and names the file and line that keep the result below the policy.
fn conflict_with_other_files(
    host: &Host,
    policy: &PasswordPolicy,
    drop_in: &str,
) -> anyhow::Result<Option<String>> {
    let mut names = host
        .list_dir(PWQUALITY_DROP_IN_DIR)
        .map_err(|err| anyhow::anyhow!("cannot list {PWQUALITY_DROP_IN_DIR}: {err}"))?
        .unwrap_or_default();
    if !names.iter().any(|n| n == DROP_IN_NAME) {
        names.push(DROP_IN_NAME.to_owned());
    }
    let mut files = Vec::new();
    for path in pwquality_file_order(&names) {
        if path == DROP_IN {
            files.push((path, drop_in.to_owned()));
            continue;
        }
        if host.path(&path).is_dir() {
            continue;
        }
        match read_in_root(host, &path) {
            Ok(Some(text)) => files.push((path, text)),
            Ok(None) => {}
            Err(err) => anyhow::bail!("cannot read {path}: {err}"),
        }
    }
    let config = read_pwquality_files(&files);
    if let Some(stopped) = &config.stopped_at {
        return Ok(Some(format!(
            "libpwquality stops reading its configuration at {stopped}, so the drop-in {DROP_IN} \
             would not count; fix that line"
        )));
    }
    let settings = &config.settings;
    let at = |source: &SettingSource| match source {
        SettingSource::File { path, line } => format!("{path}:{line}"),
        other => other.to_string(),
    };
    let shortest = shortest_accepted_length(settings);
    if shortest < i64::from(policy.min_length) {
        // Which setting defeats the drop-in: a smaller minlen, or a credit.
        let from_drop_in = |source: &SettingSource| matches!(source, SettingSource::File { path, .. } if path == DROP_IN);
        let culprit = if settings.minlen.value < i64::from(policy.min_length)
            && !from_drop_in(&settings.minlen.source)
        {
            format!(
                "minlen = {} at {}",
                settings.minlen.value,
                at(&settings.minlen.source)
            )
        } else {
            settings
                .positive_credits()
                .iter()
                .map(|(name, s)| format!("{name} = {} at {}", s.value, at(&s.source)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Ok(Some(format!(
            "{culprit} overrides the drop-in {DROP_IN} (libpwquality reads the \
             drop-ins in name order and the main pwquality.conf last; the last value wins), so passwords of {shortest} characters would still be \
             accepted; the enforcer does not edit that file: change or remove the line"
        )));
    }
    if let Some(required) = policy.min_classes {
        if settings.minclass.value < i64::from(required) {
            return Ok(Some(format!(
                "minclass = {} at {} overrides the drop-in {DROP_IN}; the policy requires {required} \
                 classes and the enforcer does not edit that file: change or remove the line",
                settings.minclass.value,
                at(&settings.minclass.source)
            )));
        }
    }
    if settings.enforcing.value == 0 {
        return Ok(Some(format!(
            "enforcing = 0 at {} makes pam_pwquality only warn; the enforcer does not edit that \
             file: change or remove the line",
            at(&settings.enforcing.source)
        )));
    }
    Ok(None)
}

fn plan_pam(host: &Host, plan: &mut Plan) -> anyhow::Result<()> {
    let stack = match read_in_root(host, DEBIAN_PASSWORD_STACK) {
        Ok(Some(text)) => text,
        Ok(None) => {
            let redhat = REDHAT_PASSWORD_STACKS.iter().any(|p| host.exists(p));
            plan.notes.push(if redhat {
                "PAM is left alone: this stack is managed by authselect (pam_pwquality is in its \
                 default profiles)"
                    .into()
            } else {
                format!("PAM is left alone: {DEBIAN_PASSWORD_STACK} does not exist")
            });
            return Ok(());
        }
        Err(err) => anyhow::bail!("cannot read {DEBIAN_PASSWORD_STACK}: {err}"),
    };
    let has_pwquality = parse_pam_file(&stack).iter().any(|line| {
        matches!(&line.parsed, ParsedPamLine::Module { module_type, path, .. }
            if module_type == "password" && path.ends_with("pam_pwquality.so"))
    });
    if has_pwquality {
        plan.notes.push(format!(
            "{DEBIAN_PASSWORD_STACK} already has a pam_pwquality line"
        ));
        return Ok(());
    }
    if !pam_module_installed(host, "pam_pwquality.so") {
        plan.refusal = Some(format!(
            "pam_pwquality.so is not installed (apt install libpam-pwquality); a PAM line naming \
             a missing module would make every password change fail, so {DEBIAN_PASSWORD_STACK} \
             is left alone"
        ));
        return Ok(());
    }
    match stack_with_pwquality(&stack) {
        Some(new) => {
            write_if_different(host, plan, DEBIAN_PASSWORD_STACK, new)?;
        }
        None => {
            plan.refusal = Some(format!(
                "{DEBIAN_PASSWORD_STACK} has no `password … pam_unix.so` line to put \
                 pam_pwquality before; edit it by hand"
            ));
        }
    }
    Ok(())
}

/// The password stack with the pam_pwquality line inserted before the first
/// pam_unix password line (which gets `use_authtok`); `None` when there is
/// no such line.
pub fn stack_with_pwquality(stack: &str) -> Option<String> {
    let unix_line = parse_pam_file(stack).into_iter().find(|line| {
        matches!(&line.parsed, ParsedPamLine::Module { module_type, path, .. }
            if module_type == "password" && path.ends_with("pam_unix.so"))
    })?;
    let mut out = String::new();
    for (index, line) in stack.split_inclusive('\n').enumerate() {
        if index + 1 == unix_line.line {
            out.push_str(PWQUALITY_LINE);
            out.push('\n');
            let uses_authtok = line.split_whitespace().any(|w| w == "use_authtok");
            if uses_authtok {
                out.push_str(line);
            } else {
                let (content, newline) = match line.strip_suffix('\n') {
                    Some(content) => (content, "\n"),
                    None => (line, ""),
                };
                // Before a trailing comment, if any.
                match content.find('#') {
                    Some(at) => {
                        out.push_str(content[..at].trim_end());
                        out.push_str(" use_authtok ");
                        out.push_str(&content[at..]);
                    }
                    None => {
                        out.push_str(content.trim_end());
                        out.push_str(" use_authtok");
                    }
                }
                out.push_str(newline);
            }
        } else {
            out.push_str(line);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwquality_goes_before_pam_unix_which_uses_the_checked_password() {
        let stack = "# here are the per-package modules\n\
                     password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n\
                     password\trequisite\t\t\tpam_deny.so\n";
        assert_eq!(
            stack_with_pwquality(stack).as_deref(),
            Some(
                "# here are the per-package modules\n\
                 password\trequisite\t\t\tpam_pwquality.so retry=3\n\
                 password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt use_authtok\n\
                 password\trequisite\t\t\tpam_deny.so\n"
            )
        );
        assert_eq!(
            stack_with_pwquality("password required pam_deny.so\n"),
            None
        );
    }
}
