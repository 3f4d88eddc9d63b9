//! A kernel uevent (Linux): what the kernel announces when a device comes,
//! goes or changes. The daemon's listener (`daemon/triggers.rs`) parses
//! them; rules about devices (`checks/usb_storage`) decide which ones they
//! act on. Pure parsing: reading the netlink socket is the listener's.

/// The subsystems whose devices matter to the rules: USB (storage sticks)
/// and block devices (disks being added, encrypted volumes opened).
const SUBSYSTEMS: &[&str] = &["usb", "block"];

/// One kernel uevent, as much of it as the daemon uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `change`, `bind`, ...
    pub action: String,
    /// The device's path under /sys, e.g. `/devices/pci0000:00/.../usb1/1-1`.
    pub devpath: String,
    pub subsystem: String,
    /// `usb_device`, `usb_interface`, `disk`, `partition`; absent for some.
    pub devtype: Option<String>,
}

impl Uevent {
    /// Parses a datagram from the kernel's uevent multicast group: a header
    /// `ACTION@DEVPATH` and `KEY=VALUE` lines, NUL-separated. udev's own
    /// re-broadcasts (which start with `libudev`) and anything malformed
    /// give `None`.
    pub fn parse(datagram: &[u8]) -> Option<Self> {
        let mut fields = datagram.split(|&byte| byte == 0).filter(|f| !f.is_empty());
        let header = std::str::from_utf8(fields.next()?).ok()?;
        let (_, header_path) = header.split_once('@')?;
        let (mut action, mut devpath, mut subsystem, mut devtype) = (None, None, None, None);
        for field in fields {
            let Ok(field) = std::str::from_utf8(field) else {
                continue;
            };
            match field.split_once('=') {
                Some(("ACTION", value)) => action = Some(value),
                Some(("DEVPATH", value)) => devpath = Some(value),
                Some(("SUBSYSTEM", value)) => subsystem = Some(value),
                Some(("DEVTYPE", value)) => devtype = Some(value),
                _ => {}
            }
        }
        let devpath = devpath?;
        // The header must agree with the body: a datagram that does not is
        // not one the kernel wrote.
        if devpath != header_path {
            return None;
        }
        Some(Self {
            action: action?.to_owned(),
            devpath: devpath.to_owned(),
            subsystem: subsystem?.to_owned(),
            devtype: devtype.map(str::to_owned),
        })
    }

    /// Whether the rules care: a USB or block device.
    pub fn is_relevant(&self) -> bool {
        SUBSYSTEMS.contains(&self.subsystem.as_str())
    }

    /// A USB device (not one of its interfaces) was plugged in: the moment
    /// to stop a storage stick before anything mounts it.
    pub fn is_usb_device_added(&self) -> bool {
        self.action == "add"
            && self.subsystem == "usb"
            && self.devtype.as_deref() == Some("usb_device")
    }

    /// The device's directory, e.g. `/sys/devices/.../1-1`.
    pub fn sysfs_path(&self) -> String {
        format!("/sys{}", self.devpath)
    }
}
