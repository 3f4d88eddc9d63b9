//! The Windows probe of `password_policy`: the local account policy from
//! `NetUserModalsGet` (through `sys::netapi`), and "Password must meet
//! complexity requirements" from the security policy that
//! `secedit /export /areas SECURITYPOLICY` writes to a scratch file
//! ([`parse_windows`] reads it). When `NetUserModalsGet` fails but the
//! export worked, length, ages and lockout come from the export instead,
//! and the evidence says so.
//!
//! The scratch file lives in a fresh directory under the temp directory,
//! created with an ACL that lets only SYSTEM and the account the agent runs
//! as in (`sys::acl::create_dir_with_sddl`), and is deleted afterwards.
//! Every failure (secedit missing; a non-zero exit; Wine's stub, which
//! exits 0 and writes nothing; a file the parser refuses) becomes the
//! reason that part is `unknown`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::parse_windows::{self, SeceditSystemAccess, windows_facts};
use super::{PasswordFacts, WindowsAccountPolicy, WindowsLockoutPolicy};
use crate::checks::ProbeError;
use crate::sys::{CommandSpec, Host, acl, netapi};

/// The scratch file's name inside its private directory.
const EXPORT_FILE_NAME: &str = "securitypolicy.inf";

pub(super) fn probe(host: &Host) -> Result<PasswordFacts, ProbeError> {
    let accounts = netapi::account_modals()
        .map(|m| WindowsAccountPolicy {
            min_password_length: m.min_password_length,
            max_password_age_seconds: m.max_password_age_seconds,
            min_password_age_seconds: m.min_password_age_seconds,
            password_history_length: m.password_history_length,
        })
        .map_err(|err| err.to_string());
    let lockout = netapi::lockout_modals()
        .map(|m| WindowsLockoutPolicy {
            threshold: m.threshold,
            duration_seconds: m.duration_seconds,
            observation_window_seconds: m.observation_window_seconds,
        })
        .map_err(|err| err.to_string());
    let export = export_security_policy(host);
    if let Err(reason) = &export {
        tracing::debug!(error = %reason, "secedit export unavailable");
    }
    Ok(PasswordFacts::Windows(windows_facts(
        accounts, lockout, export,
    )))
}

/// Runs secedit into a private scratch directory, reads and parses the
/// file, and removes the directory whatever happened.
fn export_security_policy(host: &Host) -> Result<SeceditSystemAccess, String> {
    let dir = create_scratch_dir()?;
    let result = run_and_read_export(host, &dir.join(EXPORT_FILE_NAME));
    if let Err(err) = std::fs::remove_dir_all(&dir) {
        // The directory only the agent can read stays behind; worth a
        // warning, not a different verdict.
        tracing::warn!(path = %dir.display(), error = %err, "cannot remove the secedit scratch directory");
    }
    result
}

fn run_and_read_export(host: &Host, file: &Path) -> Result<SeceditSystemAccess, String> {
    let system_root = system_root();
    let secedit = format!(r"{system_root}\System32\secedit.exe");
    // secedit loads DLLs and writes its log under %windir%; Host::run
    // clears the environment, so both names are passed on.
    let command = CommandSpec::new(secedit)
        .arg("/export")
        .arg("/cfg")
        .arg(file.display().to_string())
        .arg("/areas")
        .arg("SECURITYPOLICY")
        .arg("/quiet")
        .env("SystemRoot", system_root.clone())
        .env("windir", system_root);
    let output = host.run(&command).map_err(|err| err.to_string())?;
    if !output.success() {
        let said = [output.stdout.trim(), output.stderr.trim()]
            .into_iter()
            .filter(|text| !text.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        return Err(format!(
            "`{}` exited with {}{}",
            command.display(),
            output
                .exit_code
                .map_or_else(|| "no code".to_owned(), |code| code.to_string()),
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        ));
    }
    let bytes = std::fs::read(file).map_err(|err| match err.kind() {
        // Wine ships a secedit.exe stub that does exactly this.
        std::io::ErrorKind::NotFound => format!(
            "`{}` reported success but wrote no export",
            command.display()
        ),
        _ => format!("cannot read secedit's export {}: {err}", file.display()),
    })?;
    let text = parse_windows::decode_secedit_export(&bytes)
        .map_err(|err| format!("secedit's export: {err}"))?;
    parse_windows::parse_secedit_export(&text).map_err(|err| format!("secedit's export: {err}"))
}

/// `%SystemRoot%`, or the path Windows has installed to by default since
/// NT 4 when the variable is missing (a service always has it).
fn system_root() -> String {
    std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".to_owned())
}

/// A new directory under the temp directory whose ACL (protected, so
/// nothing is inherited from the shared temp directory) grants only
/// SYSTEM and the agent's own account. The name is made unique by
/// process id and time; if it exists already (someone planted it), the
/// creation fails and the export is not attempted.
fn create_scratch_dir() -> Result<PathBuf, String> {
    let sid = acl::current_user_sid()
        .map_err(|err| format!("cannot name the agent's account for the scratch ACL: {err}"))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let dir = std::env::temp_dir().join(format!("palisade-secedit-{}-{nanos}", std::process::id()));
    let sddl = format!("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;{sid})");
    acl::create_dir_with_sddl(&dir, &sddl)
        .map_err(|err| format!("cannot create a private scratch directory: {err}"))?;
    Ok(dir)
}
