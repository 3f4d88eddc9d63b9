//! A kernel uevent datagram (any local root process can send one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::sys::Uevent;

fuzz_target!(|bytes: &[u8]| {
    let _ = Uevent::parse(bytes);
});
