//! A PAM file, and the stack built from it when every file it includes has
//! the same text (includes nest until libpam's depth limit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::password_policy::{load_password_stack, parse_pam_file};

fuzz_target!(|text: &str| {
    let _ = parse_pam_file(text);
    let _ = load_password_stack("/etc/pam.d/passwd", &mut |_path: &str| {
        Ok(Some(text.to_owned()))
    });
});
