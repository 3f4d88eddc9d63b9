//! An SDDL security descriptor string, as the Windows installer checks
//! read them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = palisade_agent::sys::sddl::parse(text);
});
