//! The macOS probe of `disk_encryption`: runs `fdesetup status`, `diskutil
//! apfs list -plist` and `diskutil info -plist /` through [`Host::run`] and
//! hands their output to `parse_macos.rs`. A tool that fails is not a probe
//! error but a fact: the evaluator reports it with the tool's reason. The
//! tools answer root without asking for a password, and the daemon is root.

use super::parse_macos::{parse_apfs_list, parse_boot_container, parse_fdesetup_status};
use super::{DiskFacts, MacDiskFacts};
use crate::checks::{ProbeError, command_stdout};
use crate::sys::{CommandSpec, Host};

/// Absolute paths, so PATH cannot swap the tools.
const FDESETUP: &str = "/usr/bin/fdesetup";
const DISKUTIL: &str = "/usr/sbin/diskutil";

pub(super) fn probe(host: &Host) -> Result<DiskFacts, ProbeError> {
    let fdesetup = command_stdout(host, &CommandSpec::new(FDESETUP).arg("status"))
        .map(|stdout| parse_fdesetup_status(&stdout));
    let apfs_volumes = command_stdout(
        host,
        &CommandSpec::new(DISKUTIL)
            .arg("apfs")
            .arg("list")
            .arg("-plist"),
    )
    .and_then(|stdout| parse_apfs_list(stdout.as_bytes()));
    let boot_container = command_stdout(
        host,
        &CommandSpec::new(DISKUTIL)
            .arg("info")
            .arg("-plist")
            .arg("/"),
    )
    .and_then(|stdout| parse_boot_container(stdout.as_bytes()));
    for (tool, result) in [
        ("fdesetup status", fdesetup.as_ref().err()),
        ("diskutil apfs list", apfs_volumes.as_ref().err()),
        ("diskutil info /", boot_container.as_ref().err()),
    ] {
        if let Some(reason) = result {
            tracing::debug!(tool, error = %reason, "FileVault probe command failed");
        }
    }
    Ok(DiskFacts::MacOs(MacDiskFacts {
        fdesetup,
        apfs_volumes,
        boot_container,
    }))
}
