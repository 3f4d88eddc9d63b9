//! `/etc/login.defs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::password_policy::parse_login_defs;

fuzz_target!(|text: &str| {
    let defs = parse_login_defs(text);
    if let Some(value) = defs.get("PASS_MAX_DAYS") {
        let _ = value.number();
    }
});
