//! A policy file as `palisade-collector policy set` and the agent read it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_shared::Policy;

fuzz_target!(|text: &str| {
    let _ = Policy::parse(text);
});
