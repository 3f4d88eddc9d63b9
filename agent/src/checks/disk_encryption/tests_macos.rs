//! The macOS parsers against the captures in
//! `agent/tests/fixtures/macos/disk_encryption/` (their SOURCES.md says
//! where each comes from and on what macOS), and the evaluator over every
//! FileVault state, through one table.

use palisade_shared::report::CheckStatus;

use super::tests_windows::policy;
use super::*;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/macos/disk_encryption"
);

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

/// The Mojave capture: FileVault on `Macintosh HD`, support volumes, and
/// three volumes added by a tool (EdenFS) that FileVault does not protect.
fn eden_volumes() -> Vec<ApfsVolume> {
    parse_apfs_list(fixture("apfs-list-sapling-eden-mojave.plist").as_bytes()).unwrap()
}

/// The same Mac without the added volumes: only what macOS itself made.
fn macos_volumes() -> Vec<ApfsVolume> {
    eden_volumes()
        .into_iter()
        .filter(|v| !v.name.as_deref().unwrap_or("").starts_with("edenfs:"))
        .collect()
}

/// The Catalina capture of `diskutil info -plist /`: container `disk1`,
/// the same name the Mojave capture's container has.
fn boot_container() -> String {
    parse_boot_container(fixture("diskutil-info-root-sysline-catalina.plist").as_bytes()).unwrap()
}

fn mac(fdesetup: &str, volumes: Vec<ApfsVolume>) -> DiskFacts {
    DiskFacts::MacOs(MacDiskFacts {
        fdesetup: Ok(parse_fdesetup_status(&fixture(fdesetup))),
        apfs_volumes: Ok(volumes),
        boot_container: Ok(boot_container()),
    })
}

#[test]
fn fdesetup_captures_parse() {
    let table: [(&str, FileVaultStatus); 7] = [
        ("fdesetup-on.txt", FileVaultStatus::On),
        ("fdesetup-off.txt", FileVaultStatus::Off),
        (
            "fdesetup-deferred-for-user.txt",
            FileVaultStatus::Deferred {
                user: Some("<shortName>".into()),
            },
        ),
        (
            "fdesetup-deferred-macos13.txt",
            FileVaultStatus::Deferred { user: None },
        ),
        (
            "fdesetup-encrypting.txt",
            FileVaultStatus::Encrypting {
                progress: Some("Percent completed = 42".into()),
            },
        ),
        (
            "fdesetup-encrypting-pending.txt",
            FileVaultStatus::Encrypting {
                progress: Some("Pending".into()),
            },
        ),
        (
            "fdesetup-decrypting.txt",
            FileVaultStatus::Decrypting {
                progress: Some("Percent completed = 73".into()),
            },
        ),
    ];
    for (file, expected) in table {
        assert_eq!(parse_fdesetup_status(&fixture(file)), expected, "{file}");
    }
}

#[test]
fn fdesetup_odd_answers() {
    // The lower-case "percent" a Jamf extension attribute's notes quote.
    assert_eq!(
        parse_fdesetup_status(
            "FileVault is On.\nEncryption in progress: percent completed = 12.5\n"
        ),
        FileVaultStatus::Encrypting {
            progress: Some("percent completed = 12.5".into())
        }
    );
    // Empty output, or a Mac without FileVault support printing something
    // else: never taken for on or off.
    assert_eq!(
        parse_fdesetup_status(""),
        FileVaultStatus::Unrecognized(String::new())
    );
    assert!(matches!(
        parse_fdesetup_status("fdesetup: not supported on this platform\n"),
        FileVaultStatus::Unrecognized(_)
    ));
}

#[test]
fn apfs_capture_parses() {
    let volumes = eden_volumes();
    assert_eq!(volumes.len(), 7);
    let boot = &volumes[0];
    assert_eq!(boot.container, "disk1");
    assert_eq!(boot.device_identifier, "disk1s1");
    assert_eq!(boot.name.as_deref(), Some("Macintosh HD"));
    assert!(boot.roles.is_empty());
    assert_eq!(boot.file_vault, Some(true));
    assert_eq!(boot.encryption, Some(true));
    assert_eq!(boot.crypto_migration_on, Some(false));
    assert_eq!(volumes[3].roles, vec!["VM".to_owned()]);
    assert_eq!(volumes[4].file_vault, Some(false));
}

#[test]
fn apfs_list_rejects_other_documents() {
    assert!(parse_apfs_list(b"not a plist").is_err());
    let no_containers = br#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>Other</key><true/></dict></plist>"#;
    assert!(
        parse_apfs_list(no_containers)
            .unwrap_err()
            .contains("Containers")
    );
}

/// Catalina and later, adapted from the capture: the boot volume becomes
/// the group's `Data` volume and a sealed `System` volume joins it.
fn volume_group(data_file_vault: bool, migrating: bool) -> Vec<ApfsVolume> {
    let mut volumes = macos_volumes();
    volumes[0].name = Some("Macintosh HD - Data".into());
    volumes[0].roles = vec!["Data".into()];
    volumes[0].file_vault = Some(data_file_vault);
    volumes[0].crypto_migration_on = Some(migrating);
    volumes.push(ApfsVolume {
        container: "disk1".into(),
        device_identifier: "disk1s8".into(),
        name: Some("Macintosh HD".into()),
        roles: vec!["System".into()],
        file_vault: Some(false),
        encryption: Some(false),
        ..ApfsVolume::default()
    });
    volumes
}

#[test]
fn evaluator_table() {
    let cases: Vec<(&str, DiskFacts, CheckStatus)> = vec![
        (
            "on, macOS volumes",
            mac("fdesetup-on.txt", macos_volumes()),
            CheckStatus::Pass,
        ),
        (
            "on, volume group",
            mac("fdesetup-on.txt", volume_group(true, false)),
            CheckStatus::Pass,
        ),
        (
            "on, added volumes unprotected",
            mac("fdesetup-on.txt", eden_volumes()),
            CheckStatus::Fail,
        ),
        (
            "off",
            mac("fdesetup-off.txt", volume_group(false, false)),
            CheckStatus::Fail,
        ),
        (
            "deferred",
            mac("fdesetup-deferred-for-user.txt", volume_group(false, false)),
            CheckStatus::Fail,
        ),
        (
            "deferred, no user",
            mac("fdesetup-deferred-macos13.txt", macos_volumes()),
            CheckStatus::Fail,
        ),
        (
            "encrypting",
            mac("fdesetup-encrypting.txt", volume_group(true, true)),
            CheckStatus::Fail,
        ),
        (
            "pending",
            mac("fdesetup-encrypting-pending.txt", volume_group(true, true)),
            CheckStatus::Fail,
        ),
        (
            "decrypting",
            mac("fdesetup-decrypting.txt", volume_group(true, true)),
            CheckStatus::Fail,
        ),
        // fdesetup says on but the Data volume's key says otherwise.
        (
            "on, Data not FileVault",
            mac("fdesetup-on.txt", volume_group(false, false)),
            CheckStatus::Fail,
        ),
        (
            "on, Data migrating",
            mac("fdesetup-on.txt", volume_group(true, true)),
            CheckStatus::Fail,
        ),
        (
            "on, only support volumes",
            mac(
                "fdesetup-on.txt",
                macos_volumes()
                    .into_iter()
                    .filter(|v| !v.roles.is_empty())
                    .collect(),
            ),
            CheckStatus::Unknown,
        ),
        (
            "on, FileVault key missing",
            mac("fdesetup-on.txt", {
                let mut volumes = volume_group(true, false);
                volumes[0].file_vault = None;
                volumes
            }),
            CheckStatus::Unknown,
        ),
        (
            "fdesetup failed",
            DiskFacts::MacOs(MacDiskFacts {
                fdesetup: Err("`/usr/bin/fdesetup` is not installed".into()),
                apfs_volumes: Ok(volume_group(true, false)),
                boot_container: Ok(boot_container()),
            }),
            CheckStatus::Unknown,
        ),
        (
            "diskutil failed",
            DiskFacts::MacOs(MacDiskFacts {
                fdesetup: Ok(FileVaultStatus::On),
                apfs_volumes: Err(
                    "`/usr/sbin/diskutil apfs list -plist` exited with status 1".into()
                ),
                boot_container: Ok(boot_container()),
            }),
            CheckStatus::Unknown,
        ),
        (
            "unrecognised fdesetup",
            DiskFacts::MacOs(MacDiskFacts {
                fdesetup: Ok(FileVaultStatus::Unrecognized("something new".into())),
                apfs_volumes: Ok(volume_group(true, false)),
                boot_container: Ok(boot_container()),
            }),
            CheckStatus::Unknown,
        ),
    ];
    for (name, facts, expected) in cases {
        let verdict = evaluate(&facts, &policy());
        assert_eq!(verdict.status, expected, "{name}: {}", verdict.summary);
        if expected == CheckStatus::Fail {
            let fix = &verdict.fix;
            assert!(!fix.is_empty(), "{name}: a failure names a fix");
        }
    }
}

#[test]
fn wording_a_mac_user_can_follow() {
    let off = evaluate(
        &mac("fdesetup-off.txt", volume_group(false, false)),
        &policy(),
    );
    assert!(off.summary.contains("FileVault is off"), "{}", off.summary);
    let fix = off.fix;
    assert!(
        fix.contains("System Settings > Privacy & Security > FileVault"),
        "{fix}"
    );

    let deferred = evaluate(
        &mac("fdesetup-deferred-for-user.txt", macos_volumes()),
        &policy(),
    );
    assert!(
        deferred.summary.contains("when <shortName> next logs in"),
        "{}",
        deferred.summary
    );
    assert!(deferred.fix.contains("log out"));

    let added = evaluate(&mac("fdesetup-on.txt", eden_volumes()), &policy());
    assert!(
        added
            .summary
            .contains("disk1s5 (edenfs:/Users/wez/fbsource/buck-out)"),
        "{}",
        added.summary
    );
    assert!(added.fix.contains("APFS (Encrypted)"));

    let pass = evaluate(
        &mac("fdesetup-on.txt", volume_group(true, false)),
        &policy(),
    );
    assert_eq!(
        pass.summary,
        "FileVault is on and protects every APFS volume that holds user data (1)"
    );
}

#[test]
fn boot_container_capture_parses() {
    assert_eq!(boot_container(), "disk1");
    let hfs = br#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>FilesystemType</key><string>hfs</string></dict></plist>"#;
    assert!(
        parse_boot_container(hfs)
            .unwrap_err()
            .contains("no APFS container")
    );
}

/// An external APFS disk FileVault does not protect: another container.
fn with_external_disk(mut volumes: Vec<ApfsVolume>) -> Vec<ApfsVolume> {
    volumes.push(ApfsVolume {
        container: "disk4".into(),
        device_identifier: "disk4s1".into(),
        name: Some("Stick".into()),
        file_vault: Some(false),
        encryption: Some(false),
        ..ApfsVolume::default()
    });
    volumes
}

#[test]
fn only_the_boot_container_is_judged() {
    let with_boot = |boot_container: Result<String, String>| {
        DiskFacts::MacOs(MacDiskFacts {
            fdesetup: Ok(FileVaultStatus::On),
            apfs_volumes: Ok(with_external_disk(volume_group(true, false))),
            boot_container,
        })
    };
    let verdict = evaluate(&with_boot(Ok("disk1".into())), &policy());
    assert_eq!(verdict.status, CheckStatus::Pass, "{}", verdict.summary);
    let evidence = serde_json::to_string(&verdict.evidence).unwrap();
    assert!(evidence.contains("not_the_boot_disk"), "{evidence}");
    // Boot container unknown: every container is judged, so the stick
    // fails rather than anything passing unseen.
    let verdict = evaluate(&with_boot(Err("timed out".into())), &policy());
    assert_eq!(verdict.status, CheckStatus::Fail, "{}", verdict.summary);
    assert!(verdict.summary.contains("disk4s1 (Stick)"));
    // A boot container diskutil did not list cannot be judged.
    let verdict = evaluate(&with_boot(Ok("disk9".into())), &policy());
    assert_eq!(verdict.status, CheckStatus::Unknown, "{}", verdict.summary);
}
