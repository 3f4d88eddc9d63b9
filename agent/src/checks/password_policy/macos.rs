//! The macOS probe of `password_policy`: `pwpolicy -getaccountpolicies`,
//! run as root (the daemon's account, which may read the global account
//! policies), handed to `parse_macos`. Reads only; `evaluate_macos.rs`
//! decides. A failed or unparseable run becomes the reason the verdict is
//! `unknown`.

use super::parse_macos::parse_getaccountpolicies;
use super::{MacPasswordFacts, PasswordFacts};
use crate::checks::ProbeError;
use crate::sys::{CommandSpec, Host};

pub(super) fn probe(host: &Host) -> Result<PasswordFacts, ProbeError> {
    let command = CommandSpec::new("/usr/bin/pwpolicy").arg("-getaccountpolicies");
    let account_policies = match host.run(&command) {
        Err(err) => Err(err.to_string()),
        Ok(output) if !output.success() => Err(format!(
            "`{}` exited with {:?}: {}",
            command.display(),
            output.exit_code,
            output.stderr.trim()
        )),
        // The "Getting global account policies" line goes to stderr on some
        // releases and stdout on others; the parser skips it either way.
        Ok(output) => parse_getaccountpolicies(&format!("{}\n{}", output.stderr, output.stdout)),
    };
    Ok(PasswordFacts::MacOs(MacPasswordFacts { account_policies }))
}
