//! The parsers of `parse_windows.rs` on the captured outputs.
use super::*;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/windows/password_policy"
);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

fn export(name: &str) -> SeceditSystemAccess {
    let text = decode_secedit_export(&fixture(name)).unwrap();
    parse_secedit_export(&text).unwrap_or_else(|err| panic!("{name}: {err}"))
}

#[test]
fn a_real_export_is_read_key_by_key() {
    let access = export("secedit-finpri-win.inf");
    assert_eq!(
        access,
        SeceditSystemAccess {
            minimum_password_length: Some(0),
            password_complexity: Some(1),
            maximum_password_age: Some(42),
            minimum_password_age: Some(0),
            password_history_size: Some(0),
            lockout_bad_count: Some(10),
            lockout_duration: Some(10),
            reset_lockout_count: Some(10),
            clear_text_password: Some(0),
        }
    );
}

#[test]
fn the_utf16le_file_secedit_writes_reads_like_its_utf8_copy() {
    let utf16 = fixture("secedit-finpri-win.utf16le.inf");
    assert_eq!(&utf16[..2], &[0xFF, 0xFE]);
    let text = decode_secedit_export(&utf16).unwrap();
    assert_eq!(
        parse_secedit_export(&text).unwrap(),
        export("secedit-finpri-win.inf")
    );
}

#[test]
fn wrapped_lines_outside_system_access_are_not_read() {
    // This capture's [Registry Values] lines were wrapped at 120
    // columns by the console it was pasted from.
    let access = export("secedit-ukulele2fire.cfg");
    assert_eq!(access.password_complexity, Some(1));
    assert_eq!(access.minimum_password_length, Some(10));
    assert_eq!(access.lockout_duration, Some(30));
}

#[test]
fn a_key_the_export_leaves_out_is_none_not_a_default() {
    // The shape of an export while lockout is off: LockoutBadCount = 0
    // and no LockoutDuration nor ResetLockoutCount. Typed here after a
    // Windows Server 2016 export seen in a public note (SOURCES.md,
    // "seen, not used"), not a fixture.
    let access = parse_secedit_export(
        "[Unicode]\nUnicode=yes\n[System Access]\nMinimumPasswordAge = 0\nMaximumPasswordAge = 42\n\
         MinimumPasswordLength = 0\nPasswordComplexity = 1\nPasswordHistorySize = 0\n\
         LockoutBadCount = 0\n[Version]\nsignature=\"$CHICAGO$\"\n",
    )
    .unwrap();
    assert_eq!(access.lockout_bad_count, Some(0));
    assert_eq!(access.lockout_duration, None);
    assert_eq!(access.reset_lockout_count, None);
    assert_eq!(access.clear_text_password, None);
    assert_eq!(
        lockout_policy_from_export(&access).unwrap_err(),
        "secedit's export has no LockoutDuration"
    );
    assert!(account_policy_from_export(&access).is_ok());
    assert_eq!(
        complexity_from_export(&SeceditSystemAccess::default()).unwrap_err(),
        "secedit's export has no PasswordComplexity"
    );
}

#[test]
fn malformed_exports_are_errors_that_name_the_line() {
    let cases: [(&str, &[u8], &str); 9] = [
        (
            "garbage in [System Access]",
            b"[System Access]\nMinimumPasswordLength = 8\nthis is not a setting\n",
            "line 3: expected `key = value` in [System Access], found `this is not a setting`",
        ),
        (
            "a word for a number",
            b"[System Access]\nPasswordComplexity = yes\n",
            "line 2: PasswordComplexity is `yes`, not a whole number",
        ),
        (
            "an empty value",
            b"[System Access]\nMinimumPasswordLength =\n",
            "line 2: MinimumPasswordLength is ``, not a whole number",
        ),
        (
            "a key twice",
            b"[System Access]\nPasswordComplexity = 1\nPasswordComplexity = 0\n",
            "line 3: PasswordComplexity appears a second time (first on line 2)",
        ),
        (
            "text before any section",
            b"secedit output\n[System Access]\n",
            "line 1: `secedit output` comes before any [section]",
        ),
        (
            "no [System Access]",
            b"[Unicode]\nUnicode=yes\n[Version]\nsignature=\"$CHICAGO$\"\n",
            "no [System Access] section",
        ),
        (
            "UTF-16 without its mark",
            b"[\0S\0y\0s\0]\0",
            "NUL characters",
        ),
        ("odd-length UTF-16", b"\xFF\xFE[\0S", "not valid UTF-16LE"),
        ("big-endian", b"\xFE\xFF\0[", "marked UTF-16BE"),
    ];
    for (name, bytes, expected) in cases {
        let err = decode_secedit_export(bytes)
            .and_then(|text| parse_secedit_export(&text))
            .expect_err(name)
            .to_string();
        assert!(err.contains(expected), "{name}: {err}");
    }
}

#[test]
fn keys_are_read_without_case_and_unused_keys_are_skipped() {
    let access = parse_secedit_export(
        "\u{FEFF}[system access]\nNewGuestName = \"Guest\"\npasswordcomplexity=0\n; comment\n",
    )
    .unwrap();
    assert_eq!(access.password_complexity, Some(0));
    assert_eq!(complexity_from_export(&access), Ok(false));
}

#[test]
fn secedit_units_become_net_user_modals_units() {
    let access = SeceditSystemAccess {
        minimum_password_length: Some(14),
        password_complexity: Some(1),
        maximum_password_age: Some(-1),
        minimum_password_age: Some(1),
        password_history_size: Some(24),
        lockout_bad_count: Some(5),
        lockout_duration: Some(-1),
        reset_lockout_count: Some(15),
        clear_text_password: Some(0),
    };
    assert_eq!(
        account_policy_from_export(&access).unwrap(),
        WindowsAccountPolicy {
            min_password_length: 14,
            max_password_age_seconds: None,
            min_password_age_seconds: 86_400,
            password_history_length: 24,
        }
    );
    assert_eq!(
        lockout_policy_from_export(&access).unwrap(),
        WindowsLockoutPolicy {
            threshold: 5,
            duration_seconds: u32::MAX,
            observation_window_seconds: 900,
        }
    );
    let negative = SeceditSystemAccess {
        minimum_password_length: Some(-3),
        ..access.clone()
    };
    assert_eq!(
        account_policy_from_export(&negative).unwrap_err(),
        "secedit's export gives MinimumPasswordLength = -3"
    );
    let odd = SeceditSystemAccess {
        password_complexity: Some(2),
        ..access
    };
    assert!(complexity_from_export(&odd).unwrap_err().contains("= 2"));
}

fn net_accounts(name: &str) -> NetAccounts {
    let text = String::from_utf8(fixture(name)).unwrap();
    parse_net_accounts(&text).unwrap_or_else(|err| panic!("{name}: {err}"))
}

#[test]
fn real_net_accounts_outputs_are_read() {
    assert_eq!(
        net_accounts("net-accounts-elbanna-workstation.txt"),
        NetAccounts {
            force_logoff_minutes: None,
            min_password_age_days: Some(0),
            max_password_age_days: Some(42),
            min_password_length: Some(0),
            password_history_length: None,
            lockout_threshold: Some(5),
            lockout_duration_minutes: Some(30),
            lockout_observation_window_minutes: Some(30),
            computer_role: Some("WORKSTATION".into()),
        }
    );
    assert_eq!(
        net_accounts("net-accounts-ws2003-primary.txt"),
        NetAccounts {
            force_logoff_minutes: None,
            min_password_age_days: Some(0),
            max_password_age_days: Some(42),
            min_password_length: Some(0),
            password_history_length: Some(18),
            lockout_threshold: None,
            lockout_duration_minutes: Some(30),
            lockout_observation_window_minutes: Some(30),
            computer_role: Some("PRIMARY".into()),
        }
    );
}

#[test]
fn an_unknown_net_accounts_layout_is_an_error() {
    let english = String::from_utf8(fixture("net-accounts-elbanna-workstation.txt")).unwrap();
    let cases: [(&str, String, &str); 4] = [
        (
            "another language",
            // The German label, made up here only to stand for "not English".
            english.replace("Minimum password length:", "Minimale Kennwortlänge:"),
            "line 4: `Minimale Kennwortlänge:",
        ),
        (
            "a line left out",
            english
                .lines()
                .filter(|line| !line.starts_with("Lockout threshold:"))
                .collect::<Vec<_>>()
                .join("\n"),
            "no `Lockout threshold:` line",
        ),
        (
            "a word that is not a limit",
            english.replace("42", "soon"),
            "`Maximum password age (days):` is `soon`",
        ),
        (
            "a line twice",
            format!("{english}Minimum password length: 3\n"),
            "`Minimum password length:` appears a second time",
        ),
    ];
    for (name, text, expected) in cases {
        let err = parse_net_accounts(&text).expect_err(name).to_string();
        assert!(err.contains(expected), "{name}: {err}");
    }
}
