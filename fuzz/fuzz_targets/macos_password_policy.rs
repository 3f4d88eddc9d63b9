//! `pwpolicy -getaccountpolicies` (a header line and an XML plist of
//! regular expressions and numbers), then the verdict the baseline policy
//! gives it.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::Rule;
use palisade_agent::checks::password_policy::parse_macos::parse_getaccountpolicies;
use palisade_agent::checks::password_policy::{MacPasswordFacts, PasswordFacts, PasswordRule};
use palisade_shared::Policy;
use palisade_shared::policy::PasswordPolicy;

static POLICY: LazyLock<Option<PasswordPolicy>> = LazyLock::new(|| {
    Policy::parse(palisade_agent::policy::BASELINE_POLICY)
        .ok()
        .and_then(|policy| policy.password_policy)
});

fuzz_target!(|text: &str| {
    let facts = PasswordFacts::MacOs(MacPasswordFacts {
        account_policies: parse_getaccountpolicies(text),
    });
    if let Some(policy) = POLICY.as_ref() {
        let _ = PasswordRule.evaluate(&facts, policy);
    }
});
