//! Tests of the macOS parsers and evaluator of `screen_lock`, on the
//! fixtures in `agent/tests/fixtures/macos/screen_lock/` (SOURCES.md says
//! where each comes from) and on typed lines where no capture was found.

use palisade_shared::report::CheckStatus;

use super::tests::policy;

use super::parse_macos::{
    parse_defaults_integer, parse_managed_screensaver, parse_sysadminctl_screen_lock,
};
use super::{
    MacLockFacts, MacScreenLockDelay, MacUserLockFacts, ManagedScreenSaver, RegistryRead,
    ScreenLockFacts, evaluate,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/macos/screen_lock/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

fn user(
    screen_lock: Result<MacScreenLockDelay, String>,
    idle_time: RegistryRead<i64>,
) -> MacUserLockFacts {
    MacUserLockFacts {
        user: "anna".into(),
        uid: 501,
        screen_lock,
        idle_time,
        managed_user: RegistryRead::Absent,
        managed_device: RegistryRead::Absent,
    }
}

fn status(facts: MacUserLockFacts, max: u32) -> (CheckStatus, String) {
    let verdict = evaluate(
        &ScreenLockFacts::MacOs(MacLockFacts::ConsoleUser(facts)),
        &policy(max),
    );
    (verdict.status, verdict.summary)
}

#[test]
fn sysadminctl_forms() {
    // Typed from the forms the brief and CIS audit scripts name (no
    // attributable capture found; SOURCES.md), with the log prefix
    // sysadminctl writes before its message.
    let prefix = "2023-10-02 09:41:07.123 sysadminctl[1234:56789] ";
    let cases = [
        (
            "screenLock delay is 300 seconds",
            Ok(MacScreenLockDelay::Seconds(300)),
        ),
        (
            "screenLock delay is 5 seconds",
            Ok(MacScreenLockDelay::Seconds(5)),
        ),
        (
            "screenLock delay is immediate",
            Ok(MacScreenLockDelay::Immediate),
        ),
        ("screenLock is off", Ok(MacScreenLockDelay::Off)),
        (
            "screenLock delay is -1.000000 seconds",
            Ok(MacScreenLockDelay::Off),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(parse_sysadminctl_screen_lock(line), want, "{line}");
        assert_eq!(
            parse_sysadminctl_screen_lock(&format!("{prefix}{line}\n")),
            want,
            "{line}"
        );
    }
    assert!(parse_sysadminctl_screen_lock("").is_err());
    assert!(parse_sysadminctl_screen_lock("screenLock delay is soon").is_err());
}

#[test]
fn defaults_reads() {
    assert_eq!(
        parse_defaults_integer(Some(0), "600\n", ""),
        RegistryRead::Value(600)
    );
    // defaults' message for a key that was never written.
    let missing = "\nThe domain/default pair of (com.apple.screensaver, idleTime) does not exist\n";
    assert_eq!(
        parse_defaults_integer(Some(1), "", missing),
        RegistryRead::Absent
    );
    assert!(matches!(
        parse_defaults_integer(Some(0), "soon\n", ""),
        RegistryRead::Unreadable(_)
    ));
    assert!(matches!(
        parse_defaults_integer(None, "", ""),
        RegistryRead::Unreadable(_)
    ));
}

#[test]
fn managed_plists() {
    let cis = parse_managed_screensaver(&fixture("managed-screensaver-mscp-cis.plist")).unwrap();
    assert_eq!(
        cis,
        ManagedScreenSaver {
            idle_time: Some(1200),
            ask_for_password: None,
            ask_for_password_delay: Some(5.0),
        }
    );
    let stig = parse_managed_screensaver(&fixture("managed-screensaver-stig-types.plist")).unwrap();
    assert_eq!(stig.ask_for_password, Some(true));
    assert_eq!(stig.ask_for_password_delay, Some(5.0));
    let off = parse_managed_screensaver(&fixture("managed-screensaver-ask-0.plist")).unwrap();
    assert_eq!(off.ask_for_password, Some(false));
    assert!(parse_managed_screensaver(b"not a plist").is_err());
}

#[test]
fn user_values_decide_without_a_profile() {
    let table = [
        (
            Ok(MacScreenLockDelay::Immediate),
            RegistryRead::Value(300),
            600,
            CheckStatus::Pass,
        ),
        (
            Ok(MacScreenLockDelay::Seconds(300)),
            RegistryRead::Value(600),
            600,
            CheckStatus::Fail,
        ),
        (
            Ok(MacScreenLockDelay::Seconds(5)),
            RegistryRead::Value(595),
            600,
            CheckStatus::Pass,
        ),
        (
            Ok(MacScreenLockDelay::Off),
            RegistryRead::Value(60),
            600,
            CheckStatus::Fail,
        ),
        (
            Err("timed out".into()),
            RegistryRead::Value(60),
            600,
            CheckStatus::Unknown,
        ),
        (
            Ok(MacScreenLockDelay::Immediate),
            RegistryRead::Absent,
            600,
            CheckStatus::Unknown,
        ),
        (
            Ok(MacScreenLockDelay::Immediate),
            RegistryRead::Value(0),
            600,
            CheckStatus::Unknown,
        ),
        (
            Ok(MacScreenLockDelay::Immediate),
            RegistryRead::Unreadable("denied".into()),
            600,
            CheckStatus::Unknown,
        ),
    ];
    for (lock, idle, max, want) in table {
        let described = format!("{lock:?} {idle:?}");
        let (got, summary) = status(user(lock, idle), max);
        assert_eq!(got, want, "{described}: {summary}");
    }
}

#[test]
fn the_profile_wins_over_the_user() {
    let cis = parse_managed_screensaver(&fixture("managed-screensaver-mscp-cis.plist")).unwrap();
    // The user never set idleTime and their own delay is off; the profile's
    // 1200 s + 5 s decides.
    let mut facts = user(Ok(MacScreenLockDelay::Off), RegistryRead::Absent);
    facts.managed_device = RegistryRead::Value(cis.clone());
    assert_eq!(status(facts.clone(), 1205).0, CheckStatus::Pass);
    let verdict = evaluate(
        &ScreenLockFacts::MacOs(MacLockFacts::ConsoleUser(facts)),
        &policy(900),
    );
    assert_eq!(verdict.status, CheckStatus::Fail);
    assert!(
        verdict.fix.contains("configuration profile"),
        "{}",
        verdict.fix
    );

    // The user's managed file wins over the device's, key by key.
    let mut facts = user(Ok(MacScreenLockDelay::Immediate), RegistryRead::Value(60));
    facts.managed_user = RegistryRead::Value(ManagedScreenSaver {
        idle_time: Some(300),
        ..ManagedScreenSaver::default()
    });
    facts.managed_device = RegistryRead::Value(cis);
    assert_eq!(status(facts, 305).0, CheckStatus::Pass);
}

#[test]
fn a_profile_with_ask_for_password_0_fails() {
    let off = parse_managed_screensaver(&fixture("managed-screensaver-ask-0.plist")).unwrap();
    let mut facts = user(Ok(MacScreenLockDelay::Immediate), RegistryRead::Value(60));
    facts.managed_device = RegistryRead::Value(off);
    let (got, summary) = status(facts, 600);
    assert_eq!(got, CheckStatus::Fail);
    assert!(summary.contains("askForPassword"), "{summary}");
}

#[test]
fn an_unreadable_profile_is_unknown() {
    let mut facts = user(Ok(MacScreenLockDelay::Immediate), RegistryRead::Value(60));
    facts.managed_user = RegistryRead::Unreadable("not a property list".into());
    assert_eq!(status(facts, 600).0, CheckStatus::Unknown);
}

#[test]
fn no_console_user_is_not_applicable_and_an_unreadable_console_is_unknown() {
    let verdict = evaluate(
        &ScreenLockFacts::MacOs(MacLockFacts::NoConsoleUser("the login window".into())),
        &policy(600),
    );
    assert_eq!(verdict.status, CheckStatus::NotApplicable);
    let verdict = evaluate(
        &ScreenLockFacts::MacOs(MacLockFacts::ConsoleUnreadable("scutil failed".into())),
        &policy(600),
    );
    assert_eq!(verdict.status, CheckStatus::Unknown);
}
