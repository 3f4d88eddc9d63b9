//! Policy parsing: the baseline is valid, and a broken file reports every
//! mistake with its key path and line.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use palisade_shared::Policy;
use palisade_shared::policy::{UsbDeviceMatch, UsbStorageMode};
use palisade_shared::report::Mode;

const BASELINE: &str = include_str!("../../config/policy.toml");

#[test]
fn baseline_policy_parses_with_the_documented_thresholds() {
    let policy = Policy::parse(BASELINE).unwrap();
    assert_eq!(policy.id, "nhs-baseline");
    let screen = policy.screen_lock.unwrap();
    assert_eq!(screen.max_idle_seconds, 900);
    assert_eq!(screen.settings.mode, Mode::Enforce);
    let disk = policy.disk_encryption.unwrap();
    assert_eq!(
        (disk.settings.mode, disk.settings.grace_days),
        (Mode::Nudge, 14)
    );
    let password = policy.password_policy.unwrap();
    assert_eq!(password.min_length, 12);
    assert_eq!(password.max_age_days, None);
    assert!(!password.manage_pam);
    let usb = policy.usb_storage.unwrap();
    assert_eq!(usb.storage, UsbStorageMode::Block);
    assert!(usb.allow.is_empty());
    assert_eq!(policy.digest.len(), 64);
}

#[test]
fn three_mistakes_are_all_reported_each_with_its_line() {
    let text = r#"[policy]
id = "p"
version = 1

[rules.screen_lock]
mode = "enforce"
max_idle_seconds = 0

[rules.usb_storage]
mode = "blockk"
storage = "block"
alow = ["0781:5567"]
"#;
    let errors = Policy::parse(text).unwrap_err();
    let found: Vec<(usize, &str)> = errors
        .0
        .iter()
        .map(|d| (d.line, d.key_path.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            (7, "rules.screen_lock.max_idle_seconds"),
            (10, "rules.usb_storage.mode"),
            (12, "rules.usb_storage.alow"),
        ],
        "{errors}"
    );
    let text = errors.to_string();
    assert!(
        text.contains("must be between 1 and 86400, got 0"),
        "{text}"
    );
    assert!(text.contains("\"blockk\" is not a mode"), "{text}");
    assert!(text.contains("unknown key `alow`"), "{text}");
}

#[test]
fn wrong_types_and_missing_keys_name_their_paths() {
    let text = "[policy]\nid = \"p\"\n\n[rules.password_policy]\nmin_length = \"twelve\"\n";
    let errors = Policy::parse(text).unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|d| d.key_path.as_str()).collect();
    assert!(paths.contains(&"policy.version"), "{errors}");
    assert!(paths.contains(&"rules.password_policy.mode"), "{errors}");
    assert!(
        paths.contains(&"rules.password_policy.min_length"),
        "{errors}"
    );
    let min_length = errors
        .0
        .iter()
        .find(|d| d.key_path == "rules.password_policy.min_length")
        .unwrap();
    assert_eq!(min_length.line, 5);
    assert!(
        min_length.message.contains("expected") && min_length.message.contains("found string"),
        "the message must say what was expected and found: {}",
        min_length.message
    );
}

#[test]
fn an_unknown_rule_is_an_error_not_ignored() {
    let text = "[policy]\nid = \"p\"\nversion = 1\n[rules.screen_lok]\nmode = \"audit\"\n";
    let errors = Policy::parse(text).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(errors.0[0].line, 4);
    assert!(
        errors.0[0].message.contains("unknown key `screen_lok`"),
        "{errors}"
    );
}

#[test]
fn a_policy_without_rules_is_refused() {
    let errors = Policy::parse("[policy]\nid = \"p\"\nversion = 1\n").unwrap_err();
    assert!(errors.to_string().contains("enables no rules"), "{errors}");
}

#[test]
fn a_syntax_error_is_reported_with_its_line() {
    let errors = Policy::parse("[policy]\nid = \"p\nversion = 1\n").unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].line, 2, "{errors}");
    assert!(
        errors.0[0].message.starts_with("not valid TOML"),
        "{errors}"
    );
}

#[test]
fn bad_allowlist_entries_are_reported_by_index() {
    let text = "[policy]\nid = \"p\"\nversion = 1\n[rules.usb_storage]\nmode = \"audit\"\nallow = [\"0781:5567\", \"zz:1\", \"0781:5567:\"]\n";
    let errors = Policy::parse(text).unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|d| d.key_path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["rules.usb_storage.allow[1]", "rules.usb_storage.allow[2]"],
        "{errors}"
    );
}

#[test]
fn allowlist_entries_match_by_ids_and_optional_serial() {
    let any_serial = UsbDeviceMatch::parse("0781:5567").unwrap();
    assert!(any_serial.matches(0x0781, 0x5567, None));
    assert!(any_serial.matches(0x0781, 0x5567, Some("X")));
    assert!(!any_serial.matches(0x0781, 0x5568, None));
    let one_serial = UsbDeviceMatch::parse("0781:5567:ABC").unwrap();
    assert!(one_serial.matches(0x0781, 0x5567, Some("ABC")));
    assert!(!one_serial.matches(0x0781, 0x5567, Some("ABD")));
    assert!(!one_serial.matches(0x0781, 0x5567, None));
    assert_eq!(one_serial.to_string(), "0781:5567:ABC");
}

#[test]
fn the_digest_changes_with_the_text() {
    let a = Policy::parse(BASELINE).unwrap();
    let b = Policy::parse(&format!("{BASELINE}\n# comment\n")).unwrap();
    assert_ne!(a.digest, b.digest);
    assert_eq!(a.reference().id, "nhs-baseline");
}
