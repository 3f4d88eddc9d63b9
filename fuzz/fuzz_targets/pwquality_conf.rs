//! libpwquality's configuration files, and the shortest password the
//! settings they give accept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::password_policy::{
    parse_pwquality_conf, read_pwquality_files, shortest_accepted_length,
};

fuzz_target!(|text: &str| {
    let _ = parse_pwquality_conf(text);
    let config =
        read_pwquality_files(&[("/etc/security/pwquality.conf".to_owned(), text.to_owned())]);
    let _ = shortest_accepted_length(&config.settings);
});
