//! Windows registry values as the agent decodes them: the bytes of a
//! REG_SZ / REG_MULTI_SZ device property (SetupAPI), the instance ids and
//! compatible ids in it, and REG_SZ screen saver values and REG_DWORDs, then
//! the verdicts the baseline policy gives the USB device and the screen
//! saver they describe. The first 8 bytes double as the DWORDs and the
//! FILETIMEs, the whole input as the property's bytes.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use palisade_agent::checks::Rule;
use palisade_agent::checks::screen_lock::{
    RegistryRead, ScreenLock, ScreenLockFacts, ScreenSaverValues, WindowsLockFacts,
    WindowsUserScreenSaver,
};
use palisade_agent::checks::usb_storage::parse_windows::{
    filetime_to_unix_seconds, offers_mass_storage, parse_usb_instance_id,
};
use palisade_agent::checks::usb_storage::{
    RemovableStoragePolicy, UsbStorage, UsbStorageFacts, WindowsStorageDevice, WindowsUsbFacts,
};
use palisade_agent::sys::registry_value::{decode_multi_sz, wide_to_string};
use palisade_shared::Policy;

static POLICY: LazyLock<Option<Policy>> =
    LazyLock::new(|| Policy::parse(palisade_agent::policy::BASELINE_POLICY).ok());

fuzz_target!(|bytes: &[u8]| {
    let strings = decode_multi_sz(bytes);
    let wide: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    let _ = wide_to_string(&wide);
    for id in &strings {
        let _ = parse_usb_instance_id(id);
    }
    let _ = offers_mass_storage(&strings);
    let mut head = [0u8; 8];
    let n = bytes.len().min(8);
    head[..n].copy_from_slice(&bytes[..n]);
    let filetime = u64::from_le_bytes(head);
    let _ = filetime_to_unix_seconds(filetime);
    let dword = |i: usize| match head.get(i * 4..i * 4 + 4) {
        Some(&[a, b, c, d]) => RegistryRead::Value(u32::from_le_bytes([a, b, c, d])),
        _ => RegistryRead::Absent,
    };
    let string = |i: usize| match strings.get(i) {
        Some(value) => RegistryRead::Value(value.clone()),
        None => RegistryRead::Absent,
    };
    let Some(policy) = POLICY.as_ref() else {
        return;
    };

    if let Some(usb) = &policy.usb_storage {
        let facts = UsbStorageFacts::Windows(WindowsUsbFacts {
            usbstor_start: dword(0),
            uaspstor_start: dword(1),
            removable_storage_policy: RemovableStoragePolicy {
                deny_all: dword(1),
                deny_all_written: Some(filetime),
                deny_read: dword(0),
                deny_write: dword(1),
                class_written: Some(filetime.rotate_left(32)),
            },
            devices: Ok(vec![WindowsStorageDevice {
                instance_id: strings.first().cloned().unwrap_or_default(),
                parent_instance_id: strings.get(1).cloned(),
                description: strings.get(2).cloned(),
                started: Some(filetime & 1 == 1),
                arrived: Some(filetime),
            }]),
        });
        let _ = UsbStorage.evaluate(&facts, usb);
    }

    if let Some(lock) = &policy.screen_lock {
        let facts = ScreenLockFacts::Windows(WindowsLockFacts {
            inactivity_limit: dword(0),
            users: vec![WindowsUserScreenSaver {
                sid: "S-1-5-21-1004336348-1177238915-682003330-1001".to_owned(),
                policy: ScreenSaverValues {
                    active: string(0),
                    secure: string(1),
                    timeout: string(2),
                    executable: string(3),
                },
                user: ScreenSaverValues {
                    active: string(4),
                    secure: string(5),
                    timeout: string(6),
                    executable: string(7),
                },
            }],
        });
        let _ = ScreenLock.evaluate(&facts, lock);
    }
});
