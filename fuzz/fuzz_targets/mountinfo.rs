//! `/proc/self/mountinfo` and `/proc/swaps`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::disk_encryption::{parse_mountinfo, parse_swaps};

fuzz_target!(|text: &str| {
    let _ = parse_mountinfo(text);
    let _ = parse_swaps(text);
});
