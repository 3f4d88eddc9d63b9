//! Small inputs the collector takes from HTTP clients and operators: a
//! presented enrollment secret, a collector URL for the installers, and
//! the dashboard's filter and sort values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_collector::store::{DeviceSort, DeviceStatus, Role, parse_check_status};

fuzz_target!(|text: &str| {
    let _ = palisade_collector::secrets::parse("pls", text);
    let _ = palisade_collector::installers::parse_collector_url(text);
    let _ = DeviceSort::parse(text);
    let _ = DeviceStatus::parse(text);
    let _ = Role::parse(text);
    let _ = parse_check_status(text);
});
