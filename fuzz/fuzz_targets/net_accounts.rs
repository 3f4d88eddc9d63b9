//! `net accounts` output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::password_policy::parse_windows::parse_net_accounts;

fuzz_target!(|text: &str| {
    let _ = parse_net_accounts(text);
});
