//! Reads `system_profiler -json SPUSBDataType SPUSBHostDataType`: the USB
//! device tree macOS reports, with each mass-storage device's media and
//! volumes. Pure, compiled on every OS, so Linux CI tests it against the
//! captures in `agent/tests/fixtures/macos/usb_storage/`. It decides nothing.
//!
//! Two shapes exist. `SPUSBDataType` (macOS 10.x to 15) nests buses, hubs
//! and devices in `_items`, names ids `vendor_id`/`product_id`/`serial_num`,
//! and lists a storage device's disks under `Media` with their `volumes`.
//! Newer macOS versions leave `SPUSBDataType` empty and fill
//! `SPUSBHostDataType` with `USBDeviceKey…` names and no `Media` at all, so
//! from that report alone a stick cannot be told from a keyboard: those
//! devices carry `media: None`.

use serde_json::Value;

use super::{MacUsbDevice, MacUsbMedium, MacUsbReport, MacUsbVolume, UsbReportSource};

/// Apple's own devices give their vendor as this word instead of `0x05ac`.
const APPLE_VENDOR_ID: u16 = 0x05ac;

/// Reads the JSON `system_profiler -json` printed for the two data types.
pub fn parse_system_profiler_usb(json: &str) -> Result<MacUsbReport, String> {
    let root: Value = serde_json::from_str(json)
        .map_err(|err| format!("system_profiler printed no JSON: {err}"))?;
    let root = root
        .as_object()
        .ok_or("system_profiler's JSON is not an object")?;
    let legacy = root.get("SPUSBDataType").and_then(Value::as_array);
    let host = root.get("SPUSBHostDataType").and_then(Value::as_array);
    if legacy.is_none() && host.is_none() {
        return Err("system_profiler gave neither SPUSBDataType nor SPUSBHostDataType".into());
    }
    let buses = |list: Option<&Vec<Value>>| list.map_or(0, Vec::len);
    let mut legacy_devices = Vec::new();
    for bus in legacy.into_iter().flatten() {
        walk(bus, &mut legacy_devices, true);
    }
    let mut host_devices = Vec::new();
    for bus in host.into_iter().flatten() {
        walk(bus, &mut host_devices, false);
    }
    // The older report is used whenever it lists anything: it is the one
    // with media. A Mac that fills both gives the same devices twice.
    let (source, devices) = if !legacy_devices.is_empty() {
        (UsbReportSource::UsbDataType, legacy_devices)
    } else if !host_devices.is_empty() {
        (UsbReportSource::UsbHostDataType, host_devices)
    } else {
        (UsbReportSource::NoDevices, Vec::new())
    };
    Ok(MacUsbReport {
        source,
        buses: buses(legacy) + buses(host),
        devices,
    })
}

/// Collects the devices below one bus or hub, depth first. A bus entry is
/// not a device; everything in an `_items` list is.
fn walk(node: &Value, out: &mut Vec<MacUsbDevice>, legacy: bool) {
    for child in node
        .get("_items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(if legacy {
            legacy_device(child)
        } else {
            host_device(child)
        });
        walk(child, out, legacy);
    }
}

fn legacy_device(item: &Value) -> MacUsbDevice {
    MacUsbDevice {
        name: text(item, "_name"),
        vendor_id: text(item, "vendor_id").and_then(|v| parse_usb_hex_id(&v)),
        product_id: text(item, "product_id").and_then(|v| parse_usb_hex_id(&v)),
        serial: text(item, "serial_num").and_then(real_serial),
        manufacturer: text(item, "manufacturer"),
        location_id: text(item, "location_id"),
        built_in: text(item, "Built-in_Device").is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        media: Some(
            item.get("Media")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(medium)
                .collect(),
        ),
    }
}

fn host_device(item: &Value) -> MacUsbDevice {
    MacUsbDevice {
        name: text(item, "_name"),
        vendor_id: text(item, "USBDeviceKeyVendorID").and_then(|v| parse_usb_hex_id(&v)),
        product_id: text(item, "USBDeviceKeyProductID").and_then(|v| parse_usb_hex_id(&v)),
        serial: text(item, "USBDeviceKeySerialNumber").and_then(real_serial),
        manufacturer: text(item, "USBDeviceKeyVendorName"),
        location_id: text(item, "USBKeyLocationID"),
        built_in: text(item, "USBKeyHardwareType").is_some_and(|v| v == "Built-in"),
        // This report never lists media; should a later macOS add them in
        // the old shape, they are read.
        media: item
            .get("Media")
            .and_then(Value::as_array)
            .map(|media| media.iter().map(medium).collect()),
    }
}

fn medium(item: &Value) -> MacUsbMedium {
    let mut volumes: Vec<MacUsbVolume> = item
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(volume)
        .collect();
    // A disk without partitions is mounted, if at all, as itself: then
    // system_profiler puts the mount point on the medium.
    if volumes.is_empty() && item.get("mount_point").is_some() {
        volumes.push(volume(item));
    }
    MacUsbMedium {
        bsd_name: text(item, "bsd_name").unwrap_or_default(),
        removable: text(item, "removable_media").map(|v| v.eq_ignore_ascii_case("yes")),
        volumes,
    }
}

fn volume(item: &Value) -> MacUsbVolume {
    MacUsbVolume {
        bsd_name: text(item, "bsd_name").unwrap_or_default(),
        mount_point: text(item, "mount_point"),
        writable: text(item, "writable").and_then(|v| match v.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        }),
    }
}

/// `0x1f75  (Innostor Co., Ltd.)` → 0x1f75; `apple_vendor_id` → 0x05ac.
pub fn parse_usb_hex_id(text: &str) -> Option<u16> {
    let word = text.split_whitespace().next()?;
    if word == "apple_vendor_id" {
        return Some(APPLE_VENDOR_ID);
    }
    let hex = word
        .strip_prefix("0x")
        .or_else(|| word.strip_prefix("0X"))?;
    u16::from_str_radix(hex, 16).ok()
}

/// The serial, unless the device gave none: system_profiler's newer report
/// writes `Not Provided` then.
fn real_serial(serial: String) -> Option<String> {
    (!serial.is_empty() && serial != "Not Provided").then_some(serial)
}

/// A string value, trimmed (names come padded: `" SanDisk 3.2 Gen1"`);
/// `None` when absent or blank.
fn text(item: &Value, key: &str) -> Option<String> {
    let value = item.get(key)?;
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}
