//! The agent's state directory, made so that only the agent and
//! administrators can change it, and refused when someone else could.
//!
//! On unix it is `0700` ([`crate::durable::create_dir_private`]). On Windows the
//! directory is created with a protected ACL in the same call
//! ([`crate::sys::sddl::STATE_DIR_SDDL`]: SYSTEM and Administrators full control, Users
//! read and execute), and so is `%ProgramData%\Palisade` above it (it holds
//! `agent.toml`) when the state directory is the default one inside it.
//! A directory that already exists is read back and refused if anyone but
//! SYSTEM, Administrators or the account the agent runs as could write it
//! or own it: a directory another user made first, or one that inherited
//! `%ProgramData%`'s "Users may create" grant, may already hold a config or
//! a state file they planted, which a SYSTEM service would then trust
//! (osquery CVE-2019-3567, Kolide CVE-2024-54131). The agent never rewrites
//! such an ACL: what was planted would stay.
//!
//! This module decides nothing about the files inside; it only prepares
//! and vets the directories.

use std::path::Path;

/// Creates the state directory if it is missing (and on Windows the
/// default `%ProgramData%\Palisade` above it), or vets the one that is
/// there. Called by everything that writes state: `run`, `service`,
/// `enroll`.
pub fn prepare(state_dir: &Path) -> anyhow::Result<()> {
    #[cfg(windows)]
    {
        windows::prepare(state_dir)
    }
    #[cfg(not(windows))]
    {
        use anyhow::Context as _;
        crate::durable::create_dir_private(state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))
    }
}

/// The directory's owner and ACL as SDDL, for `palisade-agent identity`;
/// `None` where the OS has no ACLs the agent sets (unix: the mode says it).
pub fn describe_acl(dir: &Path) -> Option<String> {
    #[cfg(windows)]
    {
        Some(crate::sys::acl::read_sddl(dir).unwrap_or_else(|err| format!("(unreadable: {err})")))
    }
    #[cfg(not(windows))]
    {
        let _ = dir;
        None
    }
}

#[cfg(windows)]
mod windows {
    use std::io;
    use std::path::{Path, PathBuf};

    use anyhow::Context as _;

    use crate::sys::{acl, sddl};

    pub(super) fn prepare(state_dir: &Path) -> anyhow::Result<()> {
        let me = acl::current_user_sid().context("cannot tell which account the agent runs as")?;
        let data_dir = crate::config::default_data_dir();
        let mut dirs: Vec<PathBuf> = Vec::new();
        if state_dir.starts_with(&data_dir) && state_dir != data_dir {
            dirs.push(data_dir);
        }
        dirs.push(state_dir.to_owned());
        for dir in &dirs {
            create_or_vet(dir, &me)?;
        }
        Ok(())
    }

    fn create_or_vet(dir: &Path, me: &str) -> anyhow::Result<()> {
        if !dir.exists() {
            // Ancestors above the agent's own directories (`%ProgramData%`,
            // a test's temporary directory) keep the ACL they get.
            if let Some(parent) = dir.parent().filter(|p| !p.exists()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            match acl::create_dir_with_sddl(dir, sddl::STATE_DIR_SDDL) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), acl = sddl::STATE_DIR_SDDL, "created the directory with the agent's ACL");
                }
                // Someone made it between the look and the create: vet it
                // like any directory found there.
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err.into()),
            }
        }
        let text = acl::read_sddl(dir)?;
        let writers = sddl::parse(&text)
            .map(|descriptor| sddl::untrusted_writers(&descriptor, &[me]))
            .map_err(|err| {
                anyhow::anyhow!(
                    "refusing to use {}: its ACL cannot be read ({err}), so the agent cannot tell \
                     who else may change it",
                    dir.display()
                )
            })?;
        if !writers.is_empty() {
            anyhow::bail!(
                "refusing to use {}: accounts other than SYSTEM and Administrators may change it \
                 ({}; ACL {text}). Files in it could have been planted by them. Remove the \
                 directory (the agent recreates it with a protected ACL) or let an \
                 administrator set its ACL to {}",
                dir.display(),
                writers.join(", "),
                sddl::STATE_DIR_SDDL
            );
        }
        Ok(())
    }
}
