//! What the macOS screen-lock probe reads: who is at the console (`scutil`),
//! `sysadminctl -screenLock status`, `defaults read … idleTime` and a
//! managed preferences plist (XML or binary), then the verdict the baseline
//! policy gives them for a console user. Every
//! reader gets the whole input, `defaults` its first line.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::Rule;
use palisade_agent::checks::screen_lock::parse_macos::{
    parse_defaults_integer, parse_managed_screensaver, parse_sysadminctl_screen_lock,
};
use palisade_agent::checks::screen_lock::{
    MacLockFacts, MacUserLockFacts, RegistryRead, ScreenLock, ScreenLockFacts,
};
use palisade_agent::sys::console_user_macos::parse_scutil_console_user;
use palisade_shared::Policy;
use palisade_shared::policy::ScreenLockPolicy;

static POLICY: LazyLock<Option<ScreenLockPolicy>> = LazyLock::new(|| {
    Policy::parse(palisade_agent::policy::BASELINE_POLICY)
        .ok()
        .and_then(|policy| policy.screen_lock)
});

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let _ = parse_scutil_console_user(&text);
    let managed = match parse_managed_screensaver(bytes) {
        Ok(managed) => RegistryRead::Value(managed),
        Err(why) => RegistryRead::Unreadable(why),
    };
    // `defaults read` prints one line; its other exits too.
    let first_line = text.lines().next().unwrap_or_default();
    let _ = parse_defaults_integer(Some(1), "", &text);
    let _ = parse_defaults_integer(None, &text, &text);
    let facts = MacLockFacts::ConsoleUser(MacUserLockFacts {
        user: "alice".to_owned(),
        uid: 501,
        screen_lock: parse_sysadminctl_screen_lock(&text),
        idle_time: parse_defaults_integer(Some(0), first_line, ""),
        managed_user: managed.clone(),
        managed_device: managed,
    });
    if let Some(policy) = POLICY.as_ref() {
        let _ = ScreenLock.evaluate(&ScreenLockFacts::MacOs(facts), policy);
    }
});
