//! Files the collector keeps in its state directory: the policy-signing key
//! and, for the demo and tests only, a self-signed TLS certificate.
//!
//! Secret files are created atomically with mode 0600: written to a
//! temporary file that is born 0600, synced, renamed into place, and the
//! directory synced, so there is never a moment when the key is readable by
//! others or half-written.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ed25519_dalek::SigningKey;

pub const POLICY_KEY_FILE: &str = "policy-signing.key";
pub const TLS_DIR: &str = "tls";

/// Whether the policy-signing key is there: the collector has served from
/// `state_dir` before.
pub fn has_policy_key(state_dir: &Path) -> bool {
    state_dir.join(POLICY_KEY_FILE).exists()
}

/// Loads the policy-signing key, making it on first start.
pub fn load_or_create_policy_key(state_dir: &Path) -> anyhow::Result<SigningKey> {
    let path = state_dir.join(POLICY_KEY_FILE);
    if path.exists() {
        refuse_if_exposed(&path)?;
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!(
                "{} is {} bytes; a policy key file holds exactly 32",
                path.display(),
                bytes.len()
            )
        })?;
        return Ok(SigningKey::from_bytes(&seed));
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    write_secret_file(&path, key.as_bytes())?;
    tracing::info!(path = %path.display(), "made a new policy-signing key");
    Ok(key)
}

/// The self-signed certificate and key for `localhost`/`127.0.0.1`, made
/// once. Returns (cert.pem, key.pem) paths.
pub fn self_signed_tls(state_dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = state_dir.join(TLS_DIR);
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)
        .context("cannot make a self-signed certificate")?;
    write_secret_file(&key_path, certified.key_pair.serialize_pem().as_bytes())?;
    write_public_file(&cert_path, certified.cert.pem().as_bytes())?;
    tracing::warn!(cert = %cert_path.display(), "serving with a self-signed certificate: for demos and tests only");
    Ok((cert_path, key_path))
}

/// Creates the state directory (0700: it holds keys and the database).
pub fn ensure_state_dir(state_dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", state_dir.display()))?;
    }
    Ok(())
}

fn write_secret_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_atomically(path, contents, 0o600)
}

fn write_public_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_atomically(path, contents, 0o644)
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("a state file needs a parent directory")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| -> anyhow::Result<()> {
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
            .with_context(|| format!("cannot move {} into place", path.display()))?;
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A key file that others can read may have leaked: refuse to use it rather
/// than sign with it.
fn refuse_if_exposed(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} is readable by others (mode {:o}); run `chmod 600` on it, and replace the key \
                 if it may have leaked",
                path.display(),
                mode & 0o777
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
