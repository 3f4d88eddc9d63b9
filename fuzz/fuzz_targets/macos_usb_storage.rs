//! `system_profiler -json SPUSBDataType SPUSBHostDataType` (both shapes),
//! its hex ids, then the verdict the baseline policy gives the devices.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::Rule;
use palisade_agent::checks::usb_storage::{
    MacUsbFacts, UsbStorage, UsbStorageFacts, parse_system_profiler_usb, parse_usb_hex_id,
};
use palisade_shared::Policy;
use palisade_shared::policy::UsbStoragePolicy;

static POLICY: LazyLock<Option<UsbStoragePolicy>> = LazyLock::new(|| {
    Policy::parse(palisade_agent::policy::BASELINE_POLICY)
        .ok()
        .and_then(|policy| policy.usb_storage)
});

fuzz_target!(|text: &str| {
    let _ = parse_usb_hex_id(text);
    let facts = UsbStorageFacts::MacOs(MacUsbFacts {
        report: parse_system_profiler_usb(text),
    });
    if let Some(policy) = POLICY.as_ref() {
        let _ = UsbStorage.evaluate(&facts, policy);
    }
});
