//! `fdesetup status` (text), `diskutil apfs list -plist` and `diskutil info
//! -plist /` (XML or binary plists), then the verdict the baseline policy
//! gives them: once with what fdesetup's parser made of the input, once
//! with FileVault on, so the volumes are judged too.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::Rule;
use palisade_agent::checks::disk_encryption::{
    DiskEncryption, DiskFacts, FileVaultStatus, MacDiskFacts, parse_apfs_list,
    parse_boot_container, parse_fdesetup_status,
};
use palisade_shared::Policy;
use palisade_shared::policy::DiskEncryptionPolicy;

static POLICY: LazyLock<Option<DiskEncryptionPolicy>> = LazyLock::new(|| {
    Policy::parse(palisade_agent::policy::BASELINE_POLICY)
        .ok()
        .and_then(|policy| policy.disk_encryption)
});

fuzz_target!(|bytes: &[u8]| {
    let fdesetup = parse_fdesetup_status(&String::from_utf8_lossy(bytes));
    let apfs_volumes = parse_apfs_list(bytes);
    let boot_container = parse_boot_container(bytes);
    let Some(policy) = POLICY.as_ref() else {
        return;
    };
    for fdesetup in [fdesetup, FileVaultStatus::On] {
        let facts = DiskFacts::MacOs(MacDiskFacts {
            fdesetup: Ok(fdesetup),
            apfs_volumes: apfs_volumes.clone(),
            boot_container: boot_container.clone(),
        });
        let _ = DiskEncryption.evaluate(&facts, policy);
    }
});
