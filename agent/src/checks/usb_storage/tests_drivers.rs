//! USB storage by what the kernel lets happen (issue 20, class 5): a
//! mass-storage interface with no driver bound, while no storage driver can
//! load, or deauthorized, is blocked; one with a driver bound, or whose
//! driver can still load, is judged by the policy.
//!
//! Each test builds a host root as the kernel lays out sysfs
//! (Documentation/ABI/testing/sysfs-bus-usb, and `udevadm info -a` walks of
//! such devices): the device directory under its controller in
//! `/sys/devices`, its interfaces `<device>:<config>.<n>` inside it, the
//! `/sys/bus/usb/devices/*` entries as symlinks to them, and a bound
//! interface's `driver` a symlink to `/sys/bus/usb/drivers/<name>`;
//! `/sys/module/<name>` for every module in the kernel, `/proc/modules` in
//! the proc(5) format, and the kmod configuration in `/etc/modprobe.d`.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use palisade_shared::report::CheckStatus;

use super::tests::policy;
use super::*;
use crate::checks::host_tree::HostTree;

const CONTROLLER: &str = "sys/devices/pci0000:00/0000:00:14.0";

/// The modules of a laptop with a USB keyboard and no storage driver, as in
/// `/proc/modules` (name, size, users, dependents, state, address).
const PROC_MODULES_WITHOUT_STORAGE: &str = "\
usbhid 77824 0 - Live 0x0000000000000000
hid_generic 12288 0 - Live 0x0000000000000000
xhci_pci 24576 0 - Live 0x0000000000000000
xhci_hcd 356352 1 xhci_pci, Live 0x0000000000000000
usbcore 409600 4 usbhid,xhci_pci,xhci_hcd, Live 0x0000000000000000
";

const PROC_MODULES_WITH_STORAGE: &str = "\
uas 32768 0 - Live 0x0000000000000000
usb_storage 86016 1 uas, Live 0x0000000000000000
usbhid 77824 0 - Live 0x0000000000000000
xhci_hcd 356352 1 xhci_pci, Live 0x0000000000000000
usbcore 409600 4 uas,usb_storage,usbhid,xhci_hcd, Live 0x0000000000000000
";

/// The CIS form (see the fixtures' SOURCES.md, `cis-install-false-blacklist`).
const CIS_INSTALL_FALSE: &str = "blacklist usb-storage\ninstall usb-storage /bin/false\n";

/// Builders, on top of [`HostTree`], of the USB devices, modules and kmod
/// configuration of one machine.
trait Tree {
    /// A device `name` on root hub `bus`, with `attributes` as sysfs gives
    /// them (each ending in a newline).
    fn device(&self, bus: &str, name: &str, attributes: &[(&str, &str)]) -> String;
    /// The USB 2 root hub of the xHCI controller.
    fn root_hub(&self);
    /// What is in the kernel: `/proc/modules` and a `/sys/module/<name>` for
    /// each loaded module plus `built_in` ones.
    fn modules(&self, proc_modules: &str, built_in: &[&str]);
    /// A file of `/etc/modprobe.d`.
    fn modprobe(&self, file: &str, text: &str);
    /// The verdict under a block policy.
    fn verdict(&self) -> Verdict;
}

/// Interface `name` of the device at `device_dir`, class/subclass/
/// protocol as two hex digits, with `driver` bound (`None`: no link).
fn add_interface(
    tree: &HostTree,
    device_dir: &str,
    name: &str,
    class: [&str; 3],
    driver: Option<&str>,
    authorized: &str,
) {
    let dir = format!("{device_dir}/{name}");
    for (file, value) in [
        ("bInterfaceClass", class[0]),
        ("bInterfaceSubClass", class[1]),
        ("bInterfaceProtocol", class[2]),
        ("bAlternateSetting", " 0"),
        ("authorized", authorized),
    ] {
        tree.write(&format!("{dir}/{file}"), &format!("{value}\n"));
    }
    if let Some(driver) = driver {
        tree.link(
            &format!("{dir}/driver"),
            &format!("sys/bus/usb/drivers/{driver}"),
        );
    }
    tree.link(&format!("sys/bus/usb/devices/{name}"), &dir);
}

/// A tree with the USB drivers registered, as on every kernel with USB.
fn usb_tree() -> HostTree {
    let tree = HostTree::new();
    for driver in ["usb", "usb-storage", "uas", "usbhid", "hub"] {
        std::fs::create_dir_all(tree.root().join("sys/bus/usb/drivers").join(driver)).unwrap();
    }
    tree
}

impl Tree for HostTree {
    fn device(&self, bus: &str, name: &str, attributes: &[(&str, &str)]) -> String {
        let dir = if bus.is_empty() {
            format!("{CONTROLLER}/{name}")
        } else {
            format!("{CONTROLLER}/{bus}/{name}")
        };
        for (file, value) in attributes {
            self.write(&format!("{dir}/{file}"), &format!("{value}\n"));
        }
        self.link(&format!("sys/bus/usb/devices/{name}"), &dir);
        dir
    }

    fn root_hub(&self) {
        let hub = self.device(
            "",
            "usb1",
            &[
                ("idVendor", "1d6b"),
                ("idProduct", "0002"),
                ("bDeviceClass", "09"),
                ("authorized", "1"),
                ("authorized_default", "1"),
                ("busnum", "1"),
                ("devnum", "1"),
            ],
        );
        add_interface(self, &hub, "1-0:1.0", ["09", "00", "00"], Some("hub"), "1");
    }

    fn modules(&self, proc_modules: &str, built_in: &[&str]) {
        self.write("proc/modules", proc_modules);
        let loaded = proc_modules.lines().filter_map(|l| l.split(' ').next());
        for name in loaded.chain(built_in.iter().copied()) {
            std::fs::create_dir_all(self.root().join("sys/module").join(name)).unwrap();
        }
    }

    fn modprobe(&self, file: &str, text: &str) {
        self.write(&format!("etc/modprobe.d/{file}"), text);
    }

    fn verdict(&self) -> Verdict {
        let facts = probe_linux(&Host::with_root(self.root())).unwrap();
        evaluate(&facts, &policy(UsbStorageMode::Block, &[]))
    }
}

/// A SanDisk Cruzer Blade 0781:5567 on port 1 of the USB 2 bus: one
/// interface, 08/06/50 (mass storage, SCSI, bulk-only), as `lsusb -v` and
/// `udevadm info -a` show the stick; serial as its Windows instance id in
/// `mod.rs` shows it. `driver` is the interface's bound driver, if any.
fn cruzer_blade(tree: &HostTree, driver: Option<&str>) {
    tree.root_hub();
    let stick = tree.device(
        "usb1",
        "1-1",
        &[
            ("idVendor", "0781"),
            ("idProduct", "5567"),
            ("manufacturer", "SanDisk"),
            ("product", "Cruzer Blade"),
            ("serial", "4C530001230512116283"),
            ("bDeviceClass", "00"),
            ("bNumInterfaces", " 1"),
            ("authorized", "1"),
            ("busnum", "1"),
            ("devnum", "3"),
        ],
    );
    add_interface(tree, &stick, "1-1:1.0", ["08", "06", "50"], driver, "1");
}

/// A composite device on port 2: interface 0 a HID keyboard (03/01/01,
/// bound to usbhid), interface 1 mass storage (08/06/50), the layout of
/// tablets and keyboards that carry their driver on a built-in flash
/// volume. The ids are made up; the interface layout follows the ABI.
fn composite(tree: &HostTree, storage_driver: Option<&str>, storage_authorized: &str) {
    tree.root_hub();
    let device = tree.device(
        "usb1",
        "1-2",
        &[
            ("idVendor", "1234"),
            ("idProduct", "5678"),
            ("manufacturer", "Example"),
            ("product", "Tablet with driver disk"),
            ("bDeviceClass", "00"),
            ("bNumInterfaces", " 2"),
            ("authorized", "1"),
            ("busnum", "1"),
            ("devnum", "4"),
        ],
    );
    add_interface(
        tree,
        &device,
        "1-2:1.0",
        ["03", "01", "01"],
        Some("usbhid"),
        "1",
    );
    add_interface(
        tree,
        &device,
        "1-2:1.1",
        ["08", "06", "50"],
        storage_driver,
        storage_authorized,
    );
}

fn decision_of(verdict: &Verdict, device: &str) -> (String, String) {
    let entry = verdict.evidence["mass_storage_devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == device)
        .unwrap_or_else(|| panic!("{device} missing: {:#?}", verdict.evidence))
        .clone();
    (
        entry["decision"].as_str().unwrap().to_owned(),
        entry["detail"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn an_unbound_stick_is_blocked_when_usb_storage_cannot_load() {
    for command in ["/bin/false", "/bin/true"] {
        let tree = usb_tree();
        cruzer_blade(&tree, None);
        tree.modules(PROC_MODULES_WITHOUT_STORAGE, &[]);
        tree.modprobe(
            "usb_storage.conf",
            &format!("blacklist usb-storage\ninstall usb-storage {command}\n"),
        );
        let verdict = tree.verdict();
        assert_eq!(verdict.status, CheckStatus::Pass, "{command}: {verdict:#?}");
        assert!(verdict.summary.contains("1 blocked"), "{}", verdict.summary);
        let (decision, detail) = decision_of(&verdict, "1-1");
        assert_eq!(decision, "blocked");
        assert!(
            detail.contains("no driver is bound to its mass-storage interface 1-1:1.0")
                && detail.contains(&format!(
                    "`install usb-storage {command}` in /etc/modprobe.d/usb_storage.conf"
                )),
            "{detail}"
        );
    }
}

/// Loading is still possible, or a driver is bound: the stick can be used
/// (now, or after the next `modprobe`), so the block policy fails it.
#[test]
fn a_stick_whose_driver_is_bound_or_can_load_is_not_allowed() {
    type Setup = fn(&HostTree);
    let cases: [(&str, Setup); 6] = [
        ("unbound, nothing stops loading", |tree| {
            cruzer_blade(tree, None);
            tree.modules(PROC_MODULES_WITHOUT_STORAGE, &[]);
        }),
        ("unbound, a blacklist line alone", |tree| {
            cruzer_blade(tree, None);
            tree.modules(PROC_MODULES_WITHOUT_STORAGE, &[]);
            tree.modprobe("blacklist-usb-storage.conf", "blacklist usb-storage\n");
        }),
        (
            "bound to usb-storage, loaded before the install line",
            |tree| {
                cruzer_blade(tree, Some("usb-storage"));
                tree.modules(PROC_MODULES_WITH_STORAGE, &[]);
                tree.modprobe("usb_storage.conf", CIS_INSTALL_FALSE);
            },
        ),
        ("unbound, usb-storage loaded (unbound by hand)", |tree| {
            cruzer_blade(tree, None);
            tree.modules(PROC_MODULES_WITH_STORAGE, &[]);
            tree.modprobe("usb_storage.conf", CIS_INSTALL_FALSE);
        }),
        ("unbound, usb-storage built into the kernel", |tree| {
            cruzer_blade(tree, None);
            tree.modules(PROC_MODULES_WITHOUT_STORAGE, &["usb_storage"]);
            tree.modprobe("usb_storage.conf", CIS_INSTALL_FALSE);
        }),
        (
            "unbound, /sys/module unreadable in a prepared tree",
            |tree| {
                cruzer_blade(tree, None);
                tree.write("proc/modules", PROC_MODULES_WITHOUT_STORAGE);
                tree.modprobe("usb_storage.conf", CIS_INSTALL_FALSE);
            },
        ),
    ];
    for (name, setup) in cases {
        let tree = usb_tree();
        setup(&tree);
        let verdict = tree.verdict();
        assert_eq!(verdict.status, CheckStatus::Fail, "{name}: {verdict:#?}");
        assert_eq!(decision_of(&verdict, "1-1").0, "not_allowed", "{name}");
    }
}

/// Only `usb-storage`'s install line stops both drivers (uas needs it); one
/// for `uas` alone leaves usb-storage to drive the stick.
#[test]
fn an_install_line_for_uas_alone_does_not_block() {
    let tree = usb_tree();
    cruzer_blade(&tree, None);
    tree.modules(PROC_MODULES_WITHOUT_STORAGE, &[]);
    tree.modprobe("uas.conf", "install uas /bin/false\n");
    assert_eq!(tree.verdict().status, CheckStatus::Fail);
}

/// A `driver` entry that is not a link (a plain file in a prepared tree)
/// names no driver: it is not taken for "none bound".
#[test]
fn a_driver_entry_that_is_not_a_link_is_not_read_as_unbound() {
    let tree = usb_tree();
    cruzer_blade(&tree, None);
    tree.write(&format!("{CONTROLLER}/usb1/1-1/1-1:1.0/driver"), "");
    tree.modules(PROC_MODULES_WITHOUT_STORAGE, &[]);
    tree.modprobe("usb_storage.conf", CIS_INSTALL_FALSE);
    let verdict = tree.verdict();
    assert_eq!(verdict.status, CheckStatus::Fail, "{verdict:#?}");
    let interface = &verdict.evidence["mass_storage_devices"][0]["interfaces"][0];
    assert!(
        interface["driver"]
            .as_str()
            .unwrap()
            .starts_with("unknown: "),
        "{interface}"
    );
}

/// A composite device whose storage interface alone is deauthorized (as
/// `echo 0 > 1-2:1.1/authorized` or USBGuard's interface rules leave it)
/// keeps its keyboard and is blocked as storage; with the storage interface
/// unbound and usb-storage unable to load it is blocked too; with
/// usb-storage bound to it, it is storage and not allowed.
#[test]
fn a_composite_device_is_judged_by_its_storage_interface_only() {
    let tree = usb_tree();
    composite(&tree, None, "0");
    tree.modules(PROC_MODULES_WITH_STORAGE, &[]);
    let verdict = tree.verdict();
    assert_eq!(verdict.status, CheckStatus::Pass, "{verdict:#?}");
    let (decision, detail) = decision_of(&verdict, "1-2");
    assert_eq!(decision, "blocked");
    assert!(
        detail.contains("interface 1-2:1.1 (authorized = 0)"),
        "{detail}"
    );
    let interfaces = &verdict.evidence["mass_storage_devices"][0]["interfaces"];
    assert_eq!(interfaces[0]["authorized"], true);
    assert_eq!(interfaces[0]["driver"], "usbhid");

    let tree = usb_tree();
    composite(&tree, None, "1");
    tree.modules(PROC_MODULES_WITHOUT_STORAGE, &[]);
    tree.modprobe("usb_storage.conf", CIS_INSTALL_FALSE);
    let verdict = tree.verdict();
    assert_eq!(verdict.status, CheckStatus::Pass, "{verdict:#?}");
    assert_eq!(decision_of(&verdict, "1-2").0, "blocked");

    let tree = usb_tree();
    composite(&tree, Some("usb-storage"), "1");
    tree.modules(PROC_MODULES_WITH_STORAGE, &[]);
    let verdict = tree.verdict();
    assert_eq!(verdict.status, CheckStatus::Fail, "{verdict:#?}");
    assert_eq!(decision_of(&verdict, "1-2").0, "not_allowed");
}
