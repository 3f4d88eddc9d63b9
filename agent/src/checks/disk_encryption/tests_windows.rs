//! The Windows evaluator against BitLocker volumes as `Win32_EncryptableVolume`
//! reports them: one table over every status, then the summary, fix and
//! evidence wording that a person at the laptop reads.

use palisade_shared::policy::{DiskEncryptionPolicy, RuleSettings};
use palisade_shared::report::{CheckStatus, Mode};

use super::*;

pub(super) fn policy() -> DiskEncryptionPolicy {
    DiskEncryptionPolicy {
        settings: RuleSettings {
            mode: Mode::Nudge,
            grace_days: 14,
        },
        include_swap: true,
    }
}

/// A volume with a letter, by its raw WMI numbers: type, protection,
/// conversion.
fn volume(letter: &str, volume_type: u32, protection: u32, conversion: u32) -> BitLockerVolume {
    BitLockerVolume {
        device_id: format!("\\\\?\\Volume{{{letter}-guid}}\\"),
        drive_letter: Some(format!("{letter}:")),
        volume_type: Some(volume_type),
        protection_status: Some(protection),
        conversion_status: Some(conversion),
        encryption_method: Some(if conversion == 0 { 0 } else { 6 }),
    }
}

/// The usual laptop: the system drive, fully encrypted, protection on.
fn os_protected() -> BitLockerVolume {
    volume("C", 0, 1, 1)
}

fn windows(volumes: Vec<BitLockerVolume>) -> DiskFacts {
    DiskFacts::Windows(WindowsDiskFacts {
        volumes: Ok(volumes),
    })
}

fn failed_query(reason: &str) -> DiskFacts {
    DiskFacts::Windows(WindowsDiskFacts {
        volumes: Err(reason.to_owned()),
    })
}

#[test]
fn evaluator_table_windows() {
    let unlettered = |mut v: BitLockerVolume| {
        v.drive_letter = None;
        v
    };
    let without = |mut v: BitLockerVolume, field: &str| {
        match field {
            "type" => v.volume_type = None,
            "protection" => v.protection_status = None,
            "conversion" => v.conversion_status = None,
            _ => unreachable!("no such field {field}"),
        }
        v
    };
    let cases: Vec<(&str, DiskFacts, CheckStatus)> = vec![
        (
            "system drive encrypted, protection on",
            windows(vec![os_protected()]),
            CheckStatus::Pass,
        ),
        (
            "system and data drive both protected",
            windows(vec![os_protected(), volume("D", 1, 1, 1)]),
            CheckStatus::Pass,
        ),
        (
            "a protected data drive without a letter counts and passes",
            windows(vec![os_protected(), unlettered(volume("E", 1, 1, 1))]),
            CheckStatus::Pass,
        ),
        (
            "a plain USB stick is skipped, not failed",
            windows(vec![os_protected(), volume("E", 2, 0, 0)]),
            CheckStatus::Pass,
        ),
        (
            "system drive never encrypted",
            windows(vec![volume("C", 0, 0, 0)]),
            CheckStatus::Fail,
        ),
        (
            "plain fixed data drive beside a protected system drive",
            windows(vec![os_protected(), volume("D", 1, 0, 0)]),
            CheckStatus::Fail,
        ),
        (
            "system drive encrypted but protection suspended",
            windows(vec![volume("C", 0, 0, 1)]),
            CheckStatus::Fail,
        ),
        (
            "data drive encrypted but protection suspended",
            windows(vec![os_protected(), volume("D", 1, 0, 1)]),
            CheckStatus::Fail,
        ),
        (
            "encryption in progress",
            windows(vec![volume("C", 0, 0, 2)]),
            CheckStatus::Fail,
        ),
        (
            "encryption in progress with protection already on",
            windows(vec![volume("C", 0, 1, 2)]),
            CheckStatus::Fail,
        ),
        (
            "encryption paused",
            windows(vec![volume("C", 0, 0, 4)]),
            CheckStatus::Fail,
        ),
        (
            "decryption in progress",
            windows(vec![volume("C", 0, 0, 3)]),
            CheckStatus::Fail,
        ),
        (
            "decryption paused",
            windows(vec![volume("C", 0, 0, 5)]),
            CheckStatus::Fail,
        ),
        (
            "a failure is reported even beside an unknown",
            windows(vec![volume("C", 0, 0, 0), volume("D", 1, 2, 1)]),
            CheckStatus::Fail,
        ),
        (
            "locked data drive: protection unknown",
            windows(vec![os_protected(), volume("D", 1, 2, 1)]),
            CheckStatus::Unknown,
        ),
        (
            "protection unknown wins over a conversion status",
            windows(vec![volume("C", 0, 2, 0)]),
            CheckStatus::Unknown,
        ),
        (
            "protection status outside the documented set",
            windows(vec![volume("C", 0, 7, 1)]),
            CheckStatus::Unknown,
        ),
        (
            "conversion status outside the documented set",
            windows(vec![volume("C", 0, 1, 9)]),
            CheckStatus::Unknown,
        ),
        (
            "volume type outside the documented set",
            windows(vec![os_protected(), volume("V", 3, 1, 1)]),
            CheckStatus::Unknown,
        ),
        (
            "volume type missing",
            windows(vec![without(os_protected(), "type")]),
            CheckStatus::Unknown,
        ),
        (
            "protection status missing",
            windows(vec![without(os_protected(), "protection")]),
            CheckStatus::Unknown,
        ),
        (
            "conversion status missing",
            windows(vec![without(os_protected(), "conversion")]),
            CheckStatus::Unknown,
        ),
        (
            "no volume at all is not evidence",
            windows(vec![]),
            CheckStatus::Unknown,
        ),
        (
            "only removable drives: nothing this rule judges",
            windows(vec![volume("E", 2, 1, 1)]),
            CheckStatus::Unknown,
        ),
        (
            "namespace absent (Wine, Home editions)",
            failed_query("WBEM_E_INVALID_NAMESPACE (0x8004100E)"),
            CheckStatus::Unknown,
        ),
        (
            "access denied",
            failed_query("access denied (0x80041003)"),
            CheckStatus::Unknown,
        ),
    ];
    assert!(cases.len() >= 20);
    for (name, facts, expected) in cases {
        let verdict = evaluate(&facts, &policy());
        assert_eq!(verdict.status, expected, "case: {name}: {verdict:?}");
        if expected == CheckStatus::Fail {
            assert!(!verdict.fix.is_empty(), "case: {name} has no fix");
        }
    }
}

#[test]
fn suspended_protection_fails_and_says_how_to_resume_it() {
    let verdict = evaluate(
        &windows(vec![os_protected(), volume("D", 1, 0, 1)]),
        &policy(),
    );
    assert_eq!(verdict.status, CheckStatus::Fail);
    assert!(verdict.summary.contains("1 of 2"), "{}", verdict.summary);
    assert!(verdict.summary.contains("suspended"), "{}", verdict.summary);
    assert!(verdict.summary.contains("D:"), "{}", verdict.summary);
    assert!(!verdict.summary.contains("C:"), "{}", verdict.summary);
    assert!(
        verdict.fix.contains("manage-bde -protectors -enable C:"),
        "{}",
        verdict.fix
    );
    assert!(verdict.fix.contains("Resume protection"), "{}", verdict.fix);
}

#[test]
fn encryption_in_progress_says_so_and_asks_to_wait() {
    let verdict = evaluate(&windows(vec![volume("C", 0, 0, 2)]), &policy());
    assert_eq!(verdict.status, CheckStatus::Fail);
    assert!(
        verdict.summary.contains("still encrypting"),
        "{}",
        verdict.summary
    );
    assert!(verdict.fix.contains("finishes"), "{}", verdict.fix);
}

#[test]
fn a_plain_drive_is_told_to_turn_on_bitlocker() {
    let verdict = evaluate(&windows(vec![volume("C", 0, 0, 0)]), &policy());
    assert!(
        verdict.summary.contains("not encrypted: C:"),
        "{}",
        verdict.summary
    );
    assert!(verdict.fix.contains("Turn on BitLocker"), "{}", verdict.fix);
    assert!(!verdict.fix.contains("manage-bde"), "{}", verdict.fix);
}

#[test]
fn a_drive_without_a_letter_is_named_by_its_volume_path() {
    let mut data = volume("D", 1, 0, 0);
    data.drive_letter = None;
    let verdict = evaluate(&windows(vec![os_protected(), data]), &policy());
    assert!(
        verdict.summary.contains("\\\\?\\Volume{D-guid}\\"),
        "{}",
        verdict.summary
    );
}

#[test]
fn a_failed_query_is_unknown_with_the_reason() {
    let reason = "the BitLocker WMI namespace does not exist (0x8004100E)";
    let verdict = evaluate(&failed_query(reason), &policy());
    assert_eq!(verdict.status, CheckStatus::Unknown);
    assert!(verdict.summary.contains(reason), "{}", verdict.summary);
    assert_eq!(verdict.evidence["query_error"], reason);
    assert!(verdict.fix.is_empty());
}

#[test]
fn a_locked_drive_is_unknown_and_named() {
    let verdict = evaluate(
        &windows(vec![os_protected(), volume("D", 1, 2, 1)]),
        &policy(),
    );
    assert_eq!(verdict.status, CheckStatus::Unknown);
    assert!(verdict.summary.contains("D:"), "{}", verdict.summary);
    assert!(verdict.summary.contains("locked"), "{}", verdict.summary);
}

#[test]
fn every_volume_is_in_the_evidence_and_removable_ones_are_marked_skipped() {
    let verdict = evaluate(
        &windows(vec![os_protected(), volume("E", 2, 0, 0)]),
        &policy(),
    );
    assert_eq!(verdict.status, CheckStatus::Pass);
    let volumes = verdict.evidence["volumes"].as_array().unwrap();
    let rows: Vec<(&str, &str, &str)> = volumes
        .iter()
        .map(|v| {
            (
                v["drive_letter"].as_str().unwrap(),
                v["volume_type"].as_str().unwrap(),
                v["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("C:", "operating_system", "protected"),
            ("E:", "removable", "skipped"),
        ]
    );
    assert_eq!(volumes[0]["encryption_method_raw"], 6);
    assert_eq!(volumes[0]["protection_status_raw"], 1);
    assert!(
        verdict.evidence["skipped"]
            .as_str()
            .unwrap()
            .contains("usb_storage"),
        "{:?}",
        verdict.evidence
    );
    assert!(
        verdict.summary.contains("all 1 fixed drives"),
        "{}",
        verdict.summary
    );
}

#[test]
fn an_unknown_value_keeps_its_raw_number_in_the_evidence() {
    let verdict = evaluate(&windows(vec![volume("C", 0, 1, 9)]), &policy());
    let row = &verdict.evidence["volumes"][0];
    assert_eq!(row["conversion_status_raw"], 9);
    assert_eq!(row["status"], "unknown");
    assert!(
        verdict.summary.contains("conversion status 9"),
        "{}",
        verdict.summary
    );
}
