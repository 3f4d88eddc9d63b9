//! What the screen-lock probe reads: logind session properties, passwd,
//! gsettings output and KDE's kscreenlockerrc.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::screen_lock::{
    parse_gsettings_value, parse_kscreenlockerrc, parse_logind_session, parse_passwd,
};

fuzz_target!(|text: &str| {
    let _ = parse_logind_session(text);
    let _ = parse_passwd(text);
    let _ = parse_gsettings_value(text);
    let _ = parse_kscreenlockerrc(text);
});
