//! One request line on the agent's status socket (any local user may
//! connect).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::status::parse_request;

fuzz_target!(|line: &[u8]| {
    let _ = parse_request(line);
});
