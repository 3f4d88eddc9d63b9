//! The signing key in a file: created private, refused when the file or its
//! folder could be changed by anyone but the agent's user.

use std::fs;
use std::io;
use std::path::Path;

use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use super::{IdentityError, SEED_LEN};
use crate::durable::{self, FileMode};

pub(super) fn load_key_file(path: &Path) -> Result<Option<SigningKey>, IdentityError> {
    let fail = |source: io::Error| IdentityError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    // `symlink_metadata`: a symlink is refused, not followed to a key someone
    // else controls.
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(fail(err)),
    };
    if !metadata.file_type().is_file() {
        return Err(fail(io::Error::new(
            io::ErrorKind::InvalidData,
            "is not a regular file (a symlink or a directory); remove it and enroll again",
        )));
    }
    refuse_if_dir_writable_by_others(path)?;
    durable::refuse_if_exposed(path).map_err(fail)?;
    refuse_if_foreign_owner(path, &metadata)?;
    if metadata.len() != SEED_LEN as u64 {
        return Err(IdentityError::CorruptKeyFile {
            path: path.to_path_buf(),
            len: metadata.len(),
        });
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(fail)?);
    let seed: Zeroizing<[u8; SEED_LEN]> = match bytes.as_slice().try_into() {
        Ok(seed) => Zeroizing::new(seed),
        Err(_) => {
            return Err(IdentityError::CorruptKeyFile {
                path: path.to_path_buf(),
                len: bytes.len() as u64,
            });
        }
    };
    Ok(Some(SigningKey::from_bytes(&seed)))
}

pub(super) fn create_key_file(path: &Path) -> Result<SigningKey, IdentityError> {
    let fail = |source: io::Error| IdentityError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        durable::create_dir_private(dir).map_err(fail)?;
    }
    refuse_if_dir_writable_by_others(path)?;
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let seed = Zeroizing::new(key.to_bytes());
    match durable::write_new(path, seed.as_slice(), FileMode::OwnerOnly) {
        Ok(()) => Ok(key),
        // Another process made one between our look and our write: theirs
        // is the device key now.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            load_key_file(path)?.ok_or_else(|| {
                fail(io::Error::other(
                    "appeared and vanished while being created",
                ))
            })
        }
        Err(err) => Err(fail(err)),
    }
}

pub(super) fn refuse_if_dir_writable_by_others(key_path: &Path) -> Result<(), IdentityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let Some(dir) = key_path.parent() else {
            return Ok(());
        };
        let metadata = fs::metadata(dir).map_err(|source| IdentityError::KeyFile {
            path: key_path.to_path_buf(),
            source,
        })?;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(IdentityError::StateDirExposed {
                path: dir.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = key_path;
    Ok(())
}

pub(super) fn refuse_if_foreign_owner(
    key_path: &Path,
    metadata: &fs::Metadata,
) -> Result<(), IdentityError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let Some(dir) = key_path.parent() else {
            return Ok(());
        };
        let dir_uid = fs::metadata(dir)
            .map_err(|source| IdentityError::KeyFile {
                path: key_path.to_path_buf(),
                source,
            })?
            .uid();
        if metadata.uid() != dir_uid {
            return Err(IdentityError::ForeignKeyFile {
                path: key_path.to_path_buf(),
                file_uid: metadata.uid(),
                dir_uid,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (key_path, metadata);
    Ok(())
}
