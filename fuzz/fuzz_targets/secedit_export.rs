//! `secedit /export` output as bytes (UTF-16 with a BOM, or not), decoded
//! and parsed as the Windows password probe does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::password_policy::parse_windows::{
    decode_secedit_export, parse_secedit_export,
};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = decode_secedit_export(bytes) {
        let _ = parse_secedit_export(&text);
    }
});
