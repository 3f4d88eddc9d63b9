//! `agent.toml`, as the agent reads it at start and on every change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::config::AgentConfig;

fuzz_target!(|text: &str| {
    let _ = AgentConfig::parse(text);
});
