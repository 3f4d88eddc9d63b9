//! USB identities: Windows instance ids, sysfs id and class files, and a
//! policy's allowlist entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::usb_storage::parse_windows::parse_usb_instance_id;
use palisade_agent::checks::usb_storage::{
    parse_authorized, parse_class_code, parse_read_only_flag, parse_usb_id,
};
use palisade_shared::policy::UsbDeviceMatch;

fuzz_target!(|text: &str| {
    let _ = parse_usb_instance_id(text);
    let _ = parse_usb_id(text);
    let _ = parse_class_code(text);
    let _ = parse_authorized(text);
    let _ = parse_read_only_flag(text);
    let _ = UsbDeviceMatch::parse(text);
});
