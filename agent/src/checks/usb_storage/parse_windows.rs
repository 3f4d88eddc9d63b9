//! Reading the identifiers Windows gives USB device nodes. Pure, so it is
//! tested on every OS.
//!
//! The formats are Microsoft's "Standard USB Identifiers" (Windows driver
//! documentation, learn.microsoft.com/windows-hardware/drivers/install/
//! standard-usb-identifiers):
//!
//! - a device's instance id is `USB\VID_vvvv&PID_pppp\<instance>`, and an
//!   interface of a composite device's `USB\VID_vvvv&PID_pppp&MI_ii\<instance>`;
//! - `<instance>` is the device's serial number when it reports a usable
//!   one, and otherwise an id the PnP manager makes up from the port, such
//!   as `5&2b8e6d3b&0&2`. Made-up ids always contain `&`, which is how they
//!   are told apart. (A real serial with `&` in it is therefore read as no
//!   serial: an allowlist entry that names it then does not match, which
//!   fails the device rather than passing it.)
//! - a compatible id `USB\Class_08`, `USB\Class_08&SubClass_06` or
//!   `USB\Class_08&SubClass_06&Prot_50` marks a mass-storage function.

/// What a USB instance id says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbInstanceId {
    pub vendor_id: u16,
    pub product_id: u16,
    /// `MI_ii`: the interface number, for one interface of a composite
    /// device.
    pub interface: Option<u8>,
    /// The serial number, when the last part is one and not made up.
    pub serial: Option<String>,
}

/// Parses `USB\VID_0781&PID_5567\4C530001230512116283` (any letter case);
/// `None` for anything else (another bus, or a malformed id).
pub fn parse_usb_instance_id(id: &str) -> Option<UsbInstanceId> {
    let mut parts = id.split('\\');
    let (bus, hardware, instance) = (parts.next()?, parts.next()?, parts.next()?);
    if !bus.eq_ignore_ascii_case("USB") || parts.next().is_some() {
        return None;
    }
    let mut vendor_id = None;
    let mut product_id = None;
    let mut interface = None;
    for field in hardware.split('&') {
        let (name, value) = field.split_at_checked(field.find('_')?)?;
        let value = &value[1..];
        match name.to_ascii_uppercase().as_str() {
            "VID" if value.len() == 4 => vendor_id = Some(u16::from_str_radix(value, 16).ok()?),
            "PID" if value.len() == 4 => product_id = Some(u16::from_str_radix(value, 16).ok()?),
            "MI" if value.len() == 2 => interface = Some(u8::from_str_radix(value, 16).ok()?),
            // REV_ and other fields appear only in hardware ids, never in an
            // instance id: one here means this is not what it seems.
            _ => return None,
        }
    }
    let serial = (!instance.is_empty() && !instance.contains('&')).then(|| instance.to_owned());
    Some(UsbInstanceId {
        vendor_id: vendor_id?,
        product_id: product_id?,
        interface,
        serial,
    })
}

/// Whether one of a node's compatible ids names the mass-storage class.
/// Only the Windows probe calls it; it is here to be tested everywhere.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn offers_mass_storage<S: AsRef<str>>(compatible_ids: &[S]) -> bool {
    compatible_ids.iter().any(|id| {
        let id = id.as_ref();
        id.get(..12)
            .is_some_and(|head| head.eq_ignore_ascii_case(r"USB\Class_08"))
            && matches!(id.as_bytes().get(12), None | Some(b'&'))
    })
}

/// FILETIME ticks (100 ns since 1601-01-01) as Unix seconds, for evidence.
pub fn filetime_to_unix_seconds(filetime: u64) -> i64 {
    /// The FILETIME of 1970-01-01T00:00:00Z.
    const UNIX_EPOCH_AS_FILETIME: i64 = 116_444_736_000_000_000;
    // A u64 FILETIME past i64::MAX is 29 000 years away; saturate.
    (i64::try_from(filetime).unwrap_or(i64::MAX) - UNIX_EPOCH_AS_FILETIME) / 10_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_with_a_serial() {
        // The documentation's example device, with a SanDisk Cruzer Blade's
        // ids and serial as its instance.
        assert_eq!(
            parse_usb_instance_id(r"USB\VID_0781&PID_5567\4C530001230512116283"),
            Some(UsbInstanceId {
                vendor_id: 0x0781,
                product_id: 0x5567,
                interface: None,
                serial: Some("4C530001230512116283".into()),
            })
        );
    }

    #[test]
    fn a_made_up_instance_is_no_serial_and_an_interface_is_numbered() {
        assert_eq!(
            parse_usb_instance_id(r"usb\vid_090c&pid_1000&mi_01\6&1c3b4d5e&0&0001"),
            Some(UsbInstanceId {
                vendor_id: 0x090c,
                product_id: 0x1000,
                interface: Some(1),
                serial: None,
            })
        );
        assert_eq!(
            parse_usb_instance_id(r"USB\VID_0951&PID_1666\5&2b8e6d3b&0&2").and_then(|id| id.serial),
            None
        );
    }

    #[test]
    fn other_buses_and_malformed_ids_are_not_read() {
        for id in [
            r"USBSTOR\Disk&Ven_SanDisk&Prod_Cruzer_Blade&Rev_1.00\4C530001230512116283&0",
            r"PCI\VEN_8086&DEV_A36D&SUBSYS_86941043&REV_10\3&11583659&0&A0",
            r"USB\VID_0781\4C53",
            r"USB\VID_078&PID_5567\4C53",
            r"USB\VID_07G1&PID_5567\4C53",
            r"USB\VID_0781&PID_5567&REV_0100\4C53",
            r"USB\VID_0781&PID_5567",
            r"USB\VID_0781&PID_5567\4C53\extra",
            r"USB\ROOT_HUB30\4&1b2c3d4e&0&0",
            "",
        ] {
            assert_eq!(parse_usb_instance_id(id), None, "{id}");
        }
    }

    #[test]
    fn only_class_08_is_mass_storage() {
        assert!(offers_mass_storage(&[
            r"USB\Class_08&SubClass_06&Prot_50",
            r"USB\Class_08&SubClass_06",
            r"USB\Class_08",
        ]));
        assert!(offers_mass_storage(&[r"usb\class_08&subclass_06&prot_62"]));
        assert!(offers_mass_storage(&[r"USB\Class_08"]));
        assert!(!offers_mass_storage(&[
            r"USB\Class_03&SubClass_01&Prot_01",
            r"USB\Class_080",
            r"USB\COMPOSITE",
            r"USBSTOR\Disk",
        ]));
        assert!(!offers_mass_storage::<&str>(&[]));
    }

    #[test]
    fn filetimes_become_unix_seconds() {
        assert_eq!(filetime_to_unix_seconds(116_444_736_000_000_000), 0);
        // 2026-12-07T00:00:00Z
        assert_eq!(
            filetime_to_unix_seconds(116_444_736_000_000_000 + 1_796_601_600 * 10_000_000),
            1_796_601_600
        );
    }
}
