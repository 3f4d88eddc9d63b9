//! modprobe.d files and `/proc/modules`, as the USB rule reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::usb_storage::{parse_modprobe_config, parse_proc_modules};

fuzz_target!(|text: &str| {
    let _ = parse_modprobe_config(&[("/etc/modprobe.d/fuzz.conf".to_owned(), text.to_owned())]);
    let _ = parse_proc_modules(text);
});
