//! What a silent installer leaves for the daemon's first start: the
//! collector's URL and the enrollment secret, where each system's installer
//! can put them without a prompt.
//!
//! - Windows: the MSI writes `HKLM\SOFTWARE\Palisade\Agent` (`CollectorUrl`,
//!   `EnrollSecret`, `CaPin`) from its public properties
//!   (packaging/windows/palisade-agent.wxs). HKLM is writable by
//!   Administrators and SYSTEM only. An empty value is "not given" (wixl
//!   cannot make a registry row conditional).
//! - Linux and macOS: the package's install script writes the secret into
//!   `<state_dir>/enroll-secret` (root only, mode 0600; the state directory
//!   is 0700), and the URL and the CA pin into the config file.
//!
//! The config file and `PALISADE_ENROLL_SECRET` come first; these fill only
//! what they leave unset. Once the device has enrolled, [`forget_secret`]
//! deletes the secret from where the installer put it: an enrollment secret
//! left on a laptop's disk is one more way onto the collector (Fleet issue
//! 46644 is that mistake). The config file's `enroll_secret` is the
//! administrator's file to edit; the daemon only warns about it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use palisade_shared::pin::CaPin;

use crate::config::EnrollSecret;

/// The file, in the state directory, that a Linux or macOS install script
/// writes the enrollment secret into.
pub const SECRET_FILE: &str = "enroll-secret";

/// The registry key the MSI writes its settings under.
#[cfg(windows)]
pub const REGISTRY_KEY: &str = r"SOFTWARE\Palisade\Agent";

/// The installer's settings, as far as it left any.
#[derive(Debug, Default)]
pub struct InstallerSettings {
    pub collector_url: Option<String>,
    pub enroll_secret: Option<EnrollSecret>,
}

/// Reads what the installer left. A place that is there but cannot be read
/// is an error (the daemon says so and retries later), never silently
/// "nothing".
pub fn read(state_dir: &Path) -> anyhow::Result<InstallerSettings> {
    let mut settings = read_native()?;
    if settings.enroll_secret.is_none() {
        settings.enroll_secret = read_secret_file(&secret_file(state_dir))?;
    }
    Ok(settings)
}

/// Deletes the secret from every place an installer may have left it.
/// Called once the device has enrolled.
pub fn forget_secret(state_dir: &Path) -> anyhow::Result<()> {
    let file = secret_file(state_dir);
    match std::fs::remove_file(&file) {
        Ok(()) => {
            tracing::info!(file = %file.display(), "deleted the installer's enrollment secret")
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("cannot delete {}", file.display()));
        }
    }
    forget_native_secret()
}

fn secret_file(state_dir: &Path) -> PathBuf {
    state_dir.join(SECRET_FILE)
}

/// The secret file's first line, trimmed; a missing or empty file is none.
fn read_secret_file(path: &Path) -> anyhow::Result<Option<EnrollSecret>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(secret_from_text(&text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The secret in an installer's text: its first line without surrounding
/// blanks, or none when that is empty.
pub fn secret_from_text(text: &str) -> Option<EnrollSecret> {
    let line = text.lines().next().unwrap_or_default().trim();
    (!line.is_empty()).then(|| EnrollSecret::new(line.to_owned()))
}

#[cfg(windows)]
fn read_native() -> anyhow::Result<InstallerSettings> {
    use crate::sys::registry::{Hive, read_string};
    let read = |name: &str| {
        read_string(Hive::LocalMachine, REGISTRY_KEY, name)
            .with_context(|| format!(r"cannot read HKLM\{REGISTRY_KEY}\{name}"))
    };
    let collector_url = read("CollectorUrl")?
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty());
    let enroll_secret = read("EnrollSecret")?.and_then(|text| secret_from_text(&text));
    Ok(InstallerSettings {
        collector_url,
        enroll_secret,
    })
}

#[cfg(windows)]
fn forget_native_secret() -> anyhow::Result<()> {
    use crate::sys::registry::{Hive, delete_value, read_string};
    let present = read_string(Hive::LocalMachine, REGISTRY_KEY, "EnrollSecret")
        .with_context(|| format!(r"cannot read HKLM\{REGISTRY_KEY}\EnrollSecret"))?;
    if present.is_some() {
        delete_value(Hive::LocalMachine, REGISTRY_KEY, "EnrollSecret")
            .with_context(|| format!(r"cannot delete HKLM\{REGISTRY_KEY}\EnrollSecret"))?;
        tracing::info!(
            key = %format!(r"HKLM\{REGISTRY_KEY}"),
            "deleted the installer's enrollment secret"
        );
    }
    Ok(())
}

/// The CA pin the Windows installer left (`CaPin`), used for every request
/// for as long as the config sets neither `ca_pin` nor `ca_file`. Unlike the
/// secret it is public and stays. A pin that does not parse is an error: the
/// agent must not fall back to the system roots when IT asked for a pin.
#[cfg(windows)]
pub fn native_ca_pin() -> anyhow::Result<Option<CaPin>> {
    use crate::sys::registry::{Hive, read_string};
    let text = read_string(Hive::LocalMachine, REGISTRY_KEY, "CaPin")
        .with_context(|| format!(r"cannot read HKLM\{REGISTRY_KEY}\CaPin"))?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .with_context(|| format!(r"HKLM\{REGISTRY_KEY}\CaPin {text:?}")),
    }
}

/// Elsewhere the install scripts write `ca_pin` into the config file.
#[cfg(not(windows))]
pub fn native_ca_pin() -> anyhow::Result<Option<CaPin>> {
    Ok(None)
}

#[cfg(not(windows))]
fn read_native() -> anyhow::Result<InstallerSettings> {
    Ok(InstallerSettings::default())
}

#[cfg(not(windows))]
fn forget_native_secret() -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion
    use super::*;

    #[test]
    fn the_secret_is_the_first_line_trimmed_and_blank_is_none() {
        for (text, want) in [
            ("s3cret\n", Some("s3cret")),
            ("  s3cret  \r\nignored\n", Some("s3cret")),
            ("", None),
            ("   \n", None),
            ("\nsecond-line-is-not-read\n", None),
        ] {
            assert_eq!(
                secret_from_text(text).as_ref().map(EnrollSecret::expose),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_secret_file_is_read_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().enroll_secret.is_none());
        std::fs::write(dir.path().join(SECRET_FILE), "from-the-package\n").unwrap();
        let settings = read(dir.path()).unwrap();
        assert_eq!(
            settings.enroll_secret.as_ref().map(EnrollSecret::expose),
            Some("from-the-package")
        );
        forget_secret(dir.path()).unwrap();
        assert!(!dir.path().join(SECRET_FILE).exists());
        // Forgetting twice is not an error.
        forget_secret(dir.path()).unwrap();
    }

    #[test]
    fn an_unreadable_secret_file_is_an_error_not_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file belongs cannot be read as text.
        std::fs::create_dir(dir.path().join(SECRET_FILE)).unwrap();
        let err = read(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains(SECRET_FILE), "{err:#}");
    }
}
