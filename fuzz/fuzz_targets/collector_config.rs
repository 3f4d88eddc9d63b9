//! `collector.toml`, as `palisade-collector serve` and its other
//! subcommands read it at start.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_collector::config::FileConfig;

fuzz_target!(|text: &str| {
    let _ = FileConfig::parse(text);
});
