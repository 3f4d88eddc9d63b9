//! Parser and probe tests against the sysfs, kmod and USBGuard captures in
//! `agent/tests/fixtures/linux/usb_storage/` (see its SOURCES.md), and a
//! table of evaluator cases over every branch.

use std::path::Path;

use palisade_shared::policy::RuleSettings;
use palisade_shared::report::Mode;

use super::*;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/linux/usb_storage"
);

/// An enforced policy; the Windows evaluator's tests use it too.
pub(super) fn policy(storage: UsbStorageMode, allow: &[&str]) -> UsbStoragePolicy {
    UsbStoragePolicy {
        settings: RuleSettings {
            mode: Mode::Enforce,
            grace_days: 0,
        },
        storage,
        allow: allow
            .iter()
            .map(|entry| UsbDeviceMatch::parse(entry).unwrap())
            .collect(),
    }
}

fn captured(scenario: &str) -> LinuxUsbFacts {
    probe_linux(&Host::with_root(format!("{FIXTURES}/{scenario}"))).unwrap()
}

fn devices_of(facts: &LinuxUsbFacts) -> &[UsbDevice] {
    match &facts.usb_bus {
        UsbBus::Present(devices) => devices,
        UsbBus::Absent => panic!("expected a USB bus"),
    }
}

fn device<'f>(facts: &'f LinuxUsbFacts, name: &str) -> &'f UsbDevice {
    devices_of(facts)
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no device {name}"))
}

/// Copies a fixture tree into a temp dir so a test can add or change files.
fn copy_of(scenario: &str) -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    copy_tree(&Path::new(FIXTURES).join(scenario), temp.path());
    temp
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Adds a disk (and partitions) below an interface where real sysfs puts
/// them (extra/SOURCES.md): `<interface>/host6/target6:0:0/6:0:0:0/block/<disk>`.
fn add_disk(root: &Path, interface: &str, disk: &str, ro: &str, partitions: &[(&str, &str)]) {
    let disk_dir =
        format!("sys/bus/usb/devices/{interface}/host6/target6:0:0/6:0:0:0/block/{disk}");
    write(root, &format!("{disk_dir}/ro"), ro);
    write(root, &format!("{disk_dir}/queue/rotational"), "1\n");
    for (part, part_ro) in partitions {
        write(root, &format!("{disk_dir}/{part}/partition"), "1\n");
        write(root, &format!("{disk_dir}/{part}/ro"), part_ro);
    }
}

// ---------------------------------------------------------------------------
// Parsers of the small sysfs files.

#[test]
fn usb_entries_are_classified_by_the_kernel_naming() {
    assert_eq!(classify_usb_entry("2-1"), UsbEntry::Device);
    assert_eq!(classify_usb_entry("1-1.4"), UsbEntry::Device);
    assert_eq!(classify_usb_entry("usb1"), UsbEntry::Device);
    let interface_of = |device: &str| UsbEntry::Interface {
        device: device.into(),
    };
    assert_eq!(classify_usb_entry("2-1:1.0"), interface_of("2-1"));
    assert_eq!(classify_usb_entry("1-1.4:1.2"), interface_of("1-1.4"));
    // Root hub interfaces belong to `usbN`.
    assert_eq!(classify_usb_entry("1-0:1.0"), interface_of("usb1"));
    assert_eq!(classify_usb_entry("10-0:1.0"), interface_of("usb10"));
    // Port 10 of bus 1 is a device, not a root hub.
    assert_eq!(classify_usb_entry("1-10:1.0"), interface_of("1-10"));
}

#[test]
fn small_attribute_parsers_accept_the_kernel_format_and_reject_the_rest() {
    assert_eq!(parse_usb_id("0781\n"), Some(0x0781));
    assert_eq!(parse_usb_id("c534"), Some(0xc534));
    assert_eq!(parse_usb_id("0BC2"), Some(0x0bc2));
    assert_eq!(parse_usb_id(""), None);
    assert_eq!(parse_usb_id("10781"), None);
    assert_eq!(parse_usb_id("zz"), None);
    assert_eq!(parse_usb_id("+781"), None);
    assert_eq!(parse_class_code("08\n"), Some(8));
    assert_eq!(parse_class_code(" 62"), Some(0x62));
    assert_eq!(parse_class_code("008"), None);
    assert_eq!(parse_class_code("xx"), None);
    assert_eq!(parse_class_code("+8"), None);
    assert!(!parse_authorized("0\n"));
    assert!(parse_authorized("1\n"));
    assert!(
        parse_authorized("garbage"),
        "an odd value must not hide a device"
    );
    assert_eq!(parse_read_only_flag("1\n"), Some(true));
    assert_eq!(parse_read_only_flag("0\n"), Some(false));
    assert_eq!(parse_read_only_flag("yes"), None);
}

// ---------------------------------------------------------------------------
// The probe against the captured sysfs trees.

#[test]
fn the_stick_tree_yields_the_sandisk_with_its_mass_storage_interface() {
    let facts = captured("sysfs-one-stick");
    let stick = device(&facts, "2-1");
    assert_eq!(stick.vendor_id, Some(0x0781));
    assert_eq!(stick.product_id, Some(0x5581));
    assert_eq!(stick.serial.as_deref(), Some("040156557d5110d1f"));
    assert_eq!(stick.manufacturer.as_deref(), Some("SanDisk"));
    assert_eq!(stick.product.as_deref(), Some("Ultra"));
    assert_eq!((stick.busnum, stick.devnum), (Some(2), Some(2)));
    assert!(stick.authorized);
    assert_eq!(stick.interfaces.len(), 1);
    let interface = &stick.interfaces[0];
    assert_eq!(interface.name, "2-1:1.0");
    assert_eq!(
        (interface.class, interface.subclass, interface.protocol),
        (Some(0x08), Some(0x06), Some(0x50))
    );
    // The capture has no SCSI subtree: the walk finds no block device.
    assert_eq!(interface.block_devices, BlockDeviceScan::Found(vec![]));
    assert_eq!(is_mass_storage(stick), Some(true));

    // The receiver has no serial file, and its HID interfaces are not storage.
    let receiver = device(&facts, "1-2");
    assert_eq!(receiver.serial, None);
    assert_eq!(receiver.interfaces.len(), 2);
    assert_eq!(is_mass_storage(receiver), Some(false));
    assert!(receiver.read_problems.is_empty());

    // Root hub interfaces attach to `usbN`, and the hub carries its default.
    let hub = device(&facts, "usb1");
    assert_eq!(hub.interfaces[0].name, "1-0:1.0");
    assert_eq!(hub.authorized_default.as_deref(), Some("1"));
    assert_eq!(devices_of(&facts).len(), 4);
}

#[test]
fn the_uas_disk_is_mass_storage_with_protocol_62() {
    let facts = captured("sysfs-uas-disk");
    let disk = device(&facts, "2-2");
    assert_eq!(
        (disk.vendor_id, disk.product_id),
        (Some(0x0bc2), Some(0x2321))
    );
    assert_eq!(disk.interfaces[0].protocol, Some(0x62));
    assert_eq!(is_mass_storage(disk), Some(true));
}

#[test]
fn the_keyboard_tree_has_no_mass_storage() {
    let facts = captured("sysfs-keyboard-only");
    assert!(
        devices_of(&facts)
            .iter()
            .all(|d| is_mass_storage(d) == Some(false))
    );
    assert_eq!(devices_of(&facts).len(), 3);
}

#[test]
fn a_tree_without_sys_bus_usb_has_no_usb_bus() {
    let facts = captured("modprobe/debian-12-default");
    assert_eq!(facts.usb_bus, UsbBus::Absent);
}

#[test]
fn sys_bus_usb_without_a_readable_devices_directory_is_undeterminable() {
    let temp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(temp.path().join("sys/bus/usb")).unwrap();
    let missing = probe_linux(&Host::with_root(temp.path())).unwrap_err();
    assert!(
        matches!(&missing, ProbeError::Undeterminable(r) if r.contains("/sys/bus/usb/devices")),
        "{missing:?}"
    );
    // Unreadable (here: not a directory) is undeterminable too, never "none".
    write(temp.path(), "sys/bus/usb/devices", "not a directory");
    let unreadable = probe_linux(&Host::with_root(temp.path())).unwrap_err();
    assert!(
        matches!(&unreadable, ProbeError::Undeterminable(r) if r.contains("cannot read")),
        "{unreadable:?}"
    );
}

#[test]
fn an_interface_without_its_device_entry_still_counts() {
    let temp = copy_of("sysfs-keyboard-only");
    let orphan = "sys/bus/usb/devices/3-1:1.0";
    write(temp.path(), &format!("{orphan}/bInterfaceClass"), "08\n");
    let facts = probe_linux(&Host::with_root(temp.path())).unwrap();
    let device = device(&facts, "3-1");
    assert_eq!(device.vendor_id, None);
    assert_eq!(is_mass_storage(device), Some(true));
    assert!(!device.read_problems.is_empty());
    let verdict = evaluate(&facts, &policy(UsbStorageMode::Block, &[]));
    assert_eq!(verdict.status, CheckStatus::Fail, "{verdict:?}");
    assert!(
        verdict.summary.contains("at 3-1 (ids unreadable)"),
        "{verdict:?}"
    );
}

#[test]
fn block_devices_and_partitions_under_the_interface_are_found_with_their_ro_flag() {
    let temp = copy_of("sysfs-one-stick");
    add_disk(temp.path(), "2-1:1.0", "sdb", "1\n", &[("sdb1", "0\n")]);
    let facts = probe_linux(&Host::with_root(temp.path())).unwrap();
    assert_eq!(
        device(&facts, "2-1").interfaces[0].block_devices,
        BlockDeviceScan::Found(vec![
            BlockDeviceState {
                name: "sdb".into(),
                read_only: Some(true)
            },
            BlockDeviceState {
                name: "sdb1".into(),
                read_only: Some(false)
            },
        ])
    );
}

#[cfg(unix)]
#[test]
fn the_block_walk_does_not_follow_symlinks() {
    let temp = copy_of("sysfs-one-stick");
    add_disk(temp.path(), "2-1:1.0", "sdb", "1\n", &[]);
    // Real sysfs links back up the tree (`device`, `subsystem`); following
    // them would loop or wander into other devices.
    let lun = temp
        .path()
        .join("sys/bus/usb/devices/2-1:1.0/host6/target6:0:0/6:0:0:0");
    std::os::unix::fs::symlink("../../..", lun.join("device")).unwrap();
    // A link to another device's disk must not make that disk this stick's.
    write(temp.path(), "sys/devices/other/block/sdz/ro", "0\n");
    std::os::unix::fs::symlink(
        temp.path().join("sys/devices/other"),
        temp.path().join("sys/bus/usb/devices/2-1:1.0/port"),
    )
    .unwrap();
    let facts = probe_linux(&Host::with_root(temp.path())).unwrap();
    assert_eq!(
        device(&facts, "2-1").interfaces[0].block_devices,
        BlockDeviceScan::Found(vec![BlockDeviceState {
            name: "sdb".into(),
            read_only: Some(true)
        }])
    );
}

#[test]
fn the_block_walk_stops_at_its_depth_limit() {
    // `block/` at level BLOCK_SEARCH_DEPTH - 1 and BLOCK_SEARCH_DEPTH below
    // the interface is found; one level deeper is not.
    for (level, expect_found) in [
        (BLOCK_SEARCH_DEPTH - 1, true),
        (BLOCK_SEARCH_DEPTH, true),
        (BLOCK_SEARCH_DEPTH + 1, false),
    ] {
        let temp = copy_of("sysfs-one-stick");
        let parents: Vec<String> = (1..level).map(|n| format!("d{n}")).collect();
        write(
            temp.path(),
            &format!(
                "sys/bus/usb/devices/2-1:1.0/{}/block/sdb/ro",
                parents.join("/")
            ),
            "1\n",
        );
        let facts = probe_linux(&Host::with_root(temp.path())).unwrap();
        let BlockDeviceScan::Found(found) = &device(&facts, "2-1").interfaces[0].block_devices
        else {
            panic!("scan failed at level {level}");
        };
        assert_eq!(!found.is_empty(), expect_found, "block/ at level {level}");
    }
}

// ---------------------------------------------------------------------------
// kmod configuration, /proc/modules, USBGuard.

fn modprobe_of(tree: &str) -> ModprobeControls {
    captured(&format!("modprobe/{tree}"))
        .controls
        .modprobe
        .unwrap()
}

#[test]
fn install_false_and_blacklist_from_the_cis_form_are_found() {
    let controls = modprobe_of("cis-install-false-blacklist");
    let rules = &controls.usb_storage;
    assert_eq!(
        rules.install,
        Some(ConfigLine {
            value: "/bin/false".into(),
            file: "/etc/modprobe.d/usb_storage.conf".into()
        })
    );
    assert!(rules.install_disables_loading());
    assert_eq!(
        rules.blacklisted_in,
        vec!["/etc/modprobe.d/usb_storage.conf"]
    );
    assert_eq!(controls.uas, ModuleRules::default());
}

#[test]
fn install_true_among_other_modules_disables_usb_storage() {
    let controls = modprobe_of("cstallar-install-true");
    assert_eq!(
        controls
            .usb_storage
            .install
            .as_ref()
            .map(|l| l.value.as_str()),
        Some("/bin/true")
    );
    assert!(controls.usb_storage.install_disables_loading());
    assert!(controls.usb_storage.blacklisted_in.is_empty());
    let both = modprobe_of("tsvenbla-install-true-blacklist");
    assert!(both.usb_storage.install_disables_loading());
    assert_eq!(both.usb_storage.blacklisted_in.len(), 1);
}

#[test]
fn a_blacklist_alone_is_found_but_does_not_disable_loading() {
    let rules = modprobe_of("blacklist-only").usb_storage;
    assert_eq!(rules.install, None);
    assert!(!rules.install_disables_loading());
    assert_eq!(
        rules.blacklisted_in,
        vec!["/etc/modprobe.d/blacklist-usb-storage.conf"]
    );
}

#[test]
fn hardening_files_that_leave_usb_storage_alone_and_the_debian_defaults_say_nothing() {
    assert_eq!(
        modprobe_of("kicksecure-no-usb-storage"),
        ModprobeControls::default()
    );
    assert_eq!(
        modprobe_of("debian-12-default"),
        ModprobeControls::default()
    );
}

#[test]
fn modprobe_files_are_masked_by_name_and_read_in_name_order() {
    let listings = vec![
        (
            "/etc/modprobe.d".to_owned(),
            vec![".keep".into(), "b.conf".into(), "z.conf".into()],
        ),
        ("/run/modprobe.d".to_owned(), vec!["a.conf".into()]),
        (
            "/lib/modprobe.d".to_owned(),
            vec![
                "b.conf".into(),
                "README".into(),
                "old.alias".into(),
                "c.conf".into(),
            ],
        ),
    ];
    assert_eq!(
        effective_modprobe_files(&listings),
        vec![
            "/run/modprobe.d/a.conf",
            "/etc/modprobe.d/b.conf",
            "/lib/modprobe.d/c.conf",
            "/lib/modprobe.d/old.alias",
            "/etc/modprobe.d/z.conf",
        ]
    );
}

#[test]
fn a_same_named_file_in_etc_masks_the_vendor_file() {
    let temp = tempfile::tempdir().unwrap();
    write(
        temp.path(),
        "lib/modprobe.d/usb.conf",
        "install usb-storage /bin/false\n",
    );
    write(
        temp.path(),
        "etc/modprobe.d/usb.conf",
        "# emptied by the admin\n",
    );
    let facts = probe_linux(&Host::with_root(temp.path())).unwrap();
    assert_eq!(facts.controls.modprobe, Ok(ModprobeControls::default()));
}

#[test]
fn the_modprobe_parser_follows_kmod_rules() {
    let files = vec![
        (
            "/etc/modprobe.d/a.conf".to_owned(),
            "# install usb-storage /bin/false\n\
             install usb_storage \\\n  /bin/true\n\
             blacklist uas\n"
                .to_owned(),
        ),
        (
            "/etc/modprobe.d/b.conf".to_owned(),
            "install usb-storage /sbin/modprobe --ignore-install usb-storage\n\
             install uas /usr/local/bin/log-and-load uas\n"
                .to_owned(),
        ),
    ];
    let controls = parse_modprobe_config(&files);
    // The comment is skipped, the continuation joined, and the first install
    // line wins over the later one.
    assert_eq!(
        controls.usb_storage.install,
        Some(ConfigLine {
            value: "/bin/true".into(),
            file: "/etc/modprobe.d/a.conf".into()
        })
    );
    assert!(controls.usb_storage.install_disables_loading());
    assert_eq!(controls.uas.blacklisted_in, vec!["/etc/modprobe.d/a.conf"]);
    // A command that loads something is recorded but is no block.
    assert!(!controls.uas.install_disables_loading());
    assert_eq!(
        controls.uas.install.as_ref().map(|l| l.value.as_str()),
        Some("/usr/local/bin/log-and-load uas")
    );
}

#[test]
fn proc_modules_shows_usb_storage_and_uas_loaded() {
    let text = std::fs::read_to_string(format!("{FIXTURES}/extra/proc/modules-usb-storage-loaded"))
        .unwrap();
    let modules = parse_proc_modules(&text);
    assert!(modules.contains("usb_storage"));
    assert!(modules.contains("uas"));
    assert!(modules.contains("nf_conntrack_netlink"));
    assert!(!modules.contains("Live"));
    assert_eq!(modules.len(), 18);
}

#[test]
fn systemctl_without_systemd_is_unknown_not_inactive() {
    let dir = format!("{FIXTURES}/usbguard/systemctl");
    let stdout =
        std::fs::read_to_string(format!("{dir}/is-active-no-systemd-pid1.stdout.txt")).unwrap();
    let stderr =
        std::fs::read_to_string(format!("{dir}/is-active-no-systemd-pid1.stderr.txt")).unwrap();
    let state = parse_systemctl_is_active(&stdout, &stderr);
    assert!(
        matches!(&state, UsbGuardState::Unknown(r) if r.contains("has not been booted with systemd")),
        "{state:?}"
    );
    // The forms systemctl(1) documents for a running and a stopped unit.
    assert_eq!(
        parse_systemctl_is_active("active\n", ""),
        UsbGuardState::Active
    );
    assert_eq!(
        parse_systemctl_is_active("inactive\n", ""),
        UsbGuardState::NotActive("inactive".into())
    );
}

#[test]
fn under_a_host_root_usbguard_is_only_looked_for_on_disk() {
    let with_config = captured("usbguard");
    assert_eq!(
        with_config.controls.usbguard,
        UsbGuardState::NotChecked {
            daemon_config_present: true
        }
    );
    assert_eq!(
        captured("sysfs-one-stick").controls.usbguard,
        UsbGuardState::NotChecked {
            daemon_config_present: false
        }
    );
    // No /proc/modules in a prepared tree: reported as such.
    assert_eq!(with_config.controls.loaded_modules, Ok(None));
}

// ---------------------------------------------------------------------------
// Evaluation: one table over every branch.

fn interface(name: &str, class: u8, protocol: u8, block: BlockDeviceScan) -> UsbInterface {
    UsbInterface {
        name: name.into(),
        class: Some(class),
        subclass: Some(0x06),
        protocol: Some(protocol),
        authorized: true,
        // The driver the kernel binds to such an interface.
        driver: InterfaceDriver::Bound(
            match (class, protocol) {
                (0x08, 0x62) => "uas",
                (0x08, _) => "usb-storage",
                (0x09, _) => "hub",
                _ => "usbhid",
            }
            .into(),
        ),
        block_devices: block,
    }
}

fn disks(states: &[(&str, Option<bool>)]) -> BlockDeviceScan {
    BlockDeviceScan::Found(
        states
            .iter()
            .map(|(name, read_only)| BlockDeviceState {
                name: (*name).into(),
                read_only: *read_only,
            })
            .collect(),
    )
}

fn stick_with(block: BlockDeviceScan) -> UsbDevice {
    UsbDevice {
        name: "2-1".into(),
        vendor_id: Some(0x0781),
        product_id: Some(0x5581),
        serial: Some("040156557d5110d1f".into()),
        manufacturer: Some("SanDisk".into()),
        product: Some("Ultra".into()),
        authorized: true,
        busnum: Some(2),
        devnum: Some(2),
        interfaces: vec![interface("2-1:1.0", 0x08, 0x50, block)],
        ..UsbDevice::default()
    }
}

fn stick() -> UsbDevice {
    stick_with(disks(&[("sdb", Some(false)), ("sdb1", Some(false))]))
}

fn uas_disk() -> UsbDevice {
    UsbDevice {
        name: "2-2".into(),
        vendor_id: Some(0x0bc2),
        product_id: Some(0x2321),
        serial: Some("NAAB1234".into()),
        manufacturer: Some("Seagate".into()),
        product: Some("Expansion".into()),
        authorized: true,
        interfaces: vec![interface(
            "2-2:1.0",
            0x08,
            0x62,
            disks(&[("sdc", Some(false))]),
        )],
        ..UsbDevice::default()
    }
}

fn keyboard() -> UsbDevice {
    UsbDevice {
        name: "1-2".into(),
        vendor_id: Some(0x046d),
        product_id: Some(0xc534),
        authorized: true,
        interfaces: vec![
            interface("1-2:1.0", 0x03, 0x01, BlockDeviceScan::NotScanned),
            interface("1-2:1.1", 0x03, 0x02, BlockDeviceScan::NotScanned),
        ],
        ..UsbDevice::default()
    }
}

fn root_hub(authorized_default: &str) -> UsbDevice {
    UsbDevice {
        name: "usb1".into(),
        vendor_id: Some(0x1d6b),
        product_id: Some(0x0002),
        authorized: true,
        authorized_default: Some(authorized_default.into()),
        interfaces: vec![interface(
            "1-0:1.0",
            0x09,
            0x00,
            BlockDeviceScan::NotScanned,
        )],
        ..UsbDevice::default()
    }
}

fn no_controls() -> PreventiveControls {
    PreventiveControls {
        modprobe: Ok(ModprobeControls::default()),
        loaded_modules: Ok(Some(BTreeSet::new())),
        sys_module: Ok(Some(BTreeSet::new())),
        usbguard: UsbGuardState::NotActive("inactive".into()),
    }
}

fn facts(devices: Vec<UsbDevice>) -> LinuxUsbFacts {
    LinuxUsbFacts {
        usb_bus: UsbBus::Present(devices),
        controls: no_controls(),
    }
}

struct Case {
    name: &'static str,
    facts: LinuxUsbFacts,
    storage: UsbStorageMode,
    allow: &'static [&'static str],
    status: CheckStatus,
    summary_contains: &'static str,
}

fn check_case(case: &Case) -> Verdict {
    let verdict = evaluate(&case.facts, &policy(case.storage, case.allow));
    assert_eq!(verdict.status, case.status, "{}: {verdict:#?}", case.name);
    assert!(
        verdict.summary.contains(case.summary_contains),
        "{}: summary {:?} lacks {:?}",
        case.name,
        verdict.summary,
        case.summary_contains
    );
    match verdict.status {
        CheckStatus::Fail => assert!(
            verdict.fix.starts_with("Remove the USB storage device"),
            "{}: {:?}",
            case.name,
            verdict.fix
        ),
        _ => assert!(verdict.fix.is_empty(), "{}: {:?}", case.name, verdict.fix),
    }
    verdict
}

#[test]
fn evaluator_cases() {
    use CheckStatus::{Fail, NotApplicable, Pass, Unknown};
    use UsbStorageMode::{Allow, Block, ReadOnly};
    const SERIAL_ONLY: &str = "0781:5581:040156557d5110d1f";
    let deauthorized = UsbDevice {
        authorized: false,
        ..stick()
    };
    let interface_deauthorized = {
        let mut device = stick();
        device.interfaces[0].authorized = false;
        device
    };
    let no_serial = UsbDevice {
        serial: None,
        ..stick()
    };
    let unreadable_ids = UsbDevice {
        vendor_id: None,
        ..stick()
    };
    let unreadable_class = {
        let mut device = keyboard();
        device.interfaces[1].class = None;
        device
    };
    let second_stick = UsbDevice {
        name: "2-3".into(),
        product_id: Some(0x5567),
        product: Some("Cruzer Blade".into()),
        ..stick()
    };
    let cases = [
        Case {
            name: "no USB bus",
            facts: LinuxUsbFacts {
                usb_bus: UsbBus::Absent,
                controls: no_controls(),
            },
            storage: Block,
            allow: &[],
            status: NotApplicable,
            summary_contains: "this machine has no USB bus",
        },
        Case {
            name: "keyboard only, block",
            facts: facts(vec![root_hub("1"), keyboard()]),
            storage: Block,
            allow: &[],
            status: Pass,
            summary_contains: "no USB mass-storage device is connected; no preventive control",
        },
        Case {
            name: "empty bus, block",
            facts: facts(vec![]),
            storage: Block,
            allow: &[],
            status: Pass,
            summary_contains: "no USB mass-storage device is connected",
        },
        Case {
            name: "stick, block",
            facts: facts(vec![root_hub("1"), keyboard(), stick()]),
            storage: Block,
            allow: &[],
            status: Fail,
            summary_contains: "USB mass-storage device 0781:5581 (SanDisk Ultra) is connected \
                               and not allowed",
        },
        Case {
            name: "stick, allow",
            facts: facts(vec![stick()]),
            storage: Allow,
            allow: &[],
            status: Pass,
            summary_contains: "the policy allows USB storage; 1 mass-storage device is connected",
        },
        Case {
            name: "nothing, allow",
            facts: facts(vec![keyboard()]),
            storage: Allow,
            allow: &[],
            status: Pass,
            summary_contains: "none is connected",
        },
        Case {
            name: "stick allowlisted by vendor:product",
            facts: facts(vec![stick()]),
            storage: Block,
            allow: &["0781:5581"],
            status: Pass,
            summary_contains: "only allowlisted USB mass-storage devices are connected",
        },
        Case {
            name: "stick allowlisted by vendor:product:serial",
            facts: facts(vec![stick()]),
            storage: Block,
            allow: &["1234:5678", SERIAL_ONLY],
            status: Pass,
            summary_contains: "only allowlisted",
        },
        Case {
            name: "allowlist with the wrong serial",
            facts: facts(vec![stick()]),
            storage: Block,
            allow: &["0781:5581:OTHER-SERIAL"],
            status: Fail,
            summary_contains: "0781:5581 (SanDisk Ultra) is connected and not allowed",
        },
        Case {
            name: "allowlist with a serial, device without one",
            facts: facts(vec![no_serial]),
            storage: Block,
            allow: &[SERIAL_ONLY],
            status: Fail,
            summary_contains: "is connected and not allowed",
        },
        Case {
            name: "allowlist for another product of the same vendor",
            facts: facts(vec![stick()]),
            storage: Block,
            allow: &["0781:5567"],
            status: Fail,
            summary_contains: "is connected and not allowed",
        },
        Case {
            name: "stick deauthorized by the kernel",
            facts: facts(vec![keyboard(), deauthorized]),
            storage: Block,
            allow: &[],
            status: Pass,
            summary_contains: "no USB mass-storage device is connected (1 blocked by the kernel)",
        },
        Case {
            name: "stick with its storage interface deauthorized",
            facts: facts(vec![interface_deauthorized]),
            storage: Block,
            allow: &[],
            status: Pass,
            summary_contains: "(1 blocked by the kernel)",
        },
        Case {
            name: "UAS disk, block",
            facts: facts(vec![uas_disk()]),
            storage: Block,
            allow: &[],
            status: Fail,
            summary_contains: "USB mass-storage device 0bc2:2321 (Seagate Expansion) is \
                               connected and not allowed",
        },
        Case {
            name: "UAS disk allowlisted",
            facts: facts(vec![uas_disk()]),
            storage: Block,
            allow: &["0bc2:2321"],
            status: Pass,
            summary_contains: "only allowlisted",
        },
        Case {
            name: "two sticks, block",
            facts: facts(vec![stick(), second_stick.clone()]),
            storage: Block,
            allow: &[],
            status: Fail,
            summary_contains: "2 USB mass-storage devices are connected and not allowed: \
                               0781:5581 (SanDisk Ultra), 0781:5567 (SanDisk Cruzer Blade)",
        },
        Case {
            name: "one of two sticks allowlisted",
            facts: facts(vec![stick(), second_stick]),
            storage: Block,
            allow: &["0781:5581"],
            status: Fail,
            summary_contains: "USB mass-storage device 0781:5567 (SanDisk Cruzer Blade) is \
                               connected and not allowed",
        },
        Case {
            name: "read-only stick, read_only",
            facts: facts(vec![stick_with(disks(&[
                ("sdb", Some(true)),
                ("sdb1", Some(true)),
            ]))]),
            storage: ReadOnly,
            allow: &[],
            status: Pass,
            summary_contains: "every connected USB mass-storage device is allowlisted or \
                               read-only",
        },
        Case {
            name: "writable stick, read_only",
            facts: facts(vec![stick()]),
            storage: ReadOnly,
            allow: &[],
            status: Fail,
            summary_contains: "USB mass-storage device 0781:5581 (SanDisk Ultra) is connected \
                               and writable (sdb, sdb1)",
        },
        Case {
            name: "read-only disk with a writable partition, read_only",
            facts: facts(vec![stick_with(disks(&[
                ("sdb", Some(true)),
                ("sdb1", Some(false)),
            ]))]),
            storage: ReadOnly,
            allow: &[],
            status: Fail,
            summary_contains: "writable (sdb1)",
        },
        Case {
            name: "writable wins over unreadable, read_only",
            facts: facts(vec![stick_with(disks(&[
                ("sdb", None),
                ("sdb1", Some(false)),
            ]))]),
            storage: ReadOnly,
            allow: &[],
            status: Fail,
            summary_contains: "writable (sdb1)",
        },
        Case {
            name: "writable but allowlisted, read_only",
            facts: facts(vec![stick()]),
            storage: ReadOnly,
            allow: &["0781:5581"],
            status: Pass,
            summary_contains: "allowlisted or read-only",
        },
        Case {
            name: "no block device found, read_only",
            facts: facts(vec![stick_with(disks(&[]))]),
            storage: ReadOnly,
            allow: &[],
            status: Unknown,
            summary_contains: "no block device was found under it",
        },
        Case {
            name: "ro flag unreadable, read_only",
            facts: facts(vec![stick_with(disks(&[("sdb", None)]))]),
            storage: ReadOnly,
            allow: &[],
            status: Unknown,
            summary_contains: "the ro flag of sdb is unreadable",
        },
        Case {
            name: "block walk failed, read_only",
            facts: facts(vec![stick_with(BlockDeviceScan::Failed(
                "cannot read /sys/bus/usb/devices/2-1:1.0/host6: permission denied".into(),
            ))]),
            storage: ReadOnly,
            allow: &[],
            status: Unknown,
            summary_contains: "permission denied",
        },
        Case {
            name: "no block device found does not matter under block",
            facts: facts(vec![stick_with(disks(&[]))]),
            storage: Block,
            allow: &[],
            status: Fail,
            summary_contains: "is connected and not allowed",
        },
        Case {
            name: "interface class unreadable, block",
            facts: facts(vec![unreadable_class.clone()]),
            storage: Block,
            allow: &[],
            status: Unknown,
            summary_contains: "may be mass storage",
        },
        Case {
            name: "interface class unreadable, allow",
            facts: facts(vec![unreadable_class]),
            storage: Allow,
            allow: &[],
            status: Pass,
            summary_contains: "the policy allows USB storage",
        },
        Case {
            name: "ids unreadable, empty allowlist, block",
            facts: facts(vec![unreadable_ids.clone()]),
            storage: Block,
            allow: &[],
            status: Fail,
            summary_contains: "USB mass-storage device at 2-1 (ids unreadable) (SanDisk Ultra)",
        },
        Case {
            name: "ids unreadable, allowlist to compare with, block",
            facts: facts(vec![unreadable_ids]),
            storage: Block,
            allow: &["0781:5581"],
            status: Unknown,
            summary_contains: "cannot be read to compare with the allowlist",
        },
        Case {
            name: "a failure outweighs an unknown",
            facts: facts(vec![uas_disk(), stick_with(disks(&[]))]),
            storage: ReadOnly,
            allow: &[],
            status: Fail,
            summary_contains: "0bc2:2321 (Seagate Expansion) is connected and writable (sdc)",
        },
    ];
    for case in &cases {
        check_case(case);
    }
}

#[test]
fn a_deauthorized_device_without_interfaces_is_listed_as_blocked_with_its_class_unknown() {
    // What real sysfs shows once USBGuard or `echo 0 > authorized` blocks a
    // device: the attributes stay, the interfaces go.
    let blocked = UsbDevice {
        authorized: false,
        interfaces: vec![],
        ..stick()
    };
    let blocked_keyboard = UsbDevice {
        authorized: false,
        ..keyboard()
    };
    let verdict = evaluate(
        &facts(vec![blocked, blocked_keyboard]),
        &policy(UsbStorageMode::Block, &[]),
    );
    assert_eq!(verdict.status, CheckStatus::Pass, "{verdict:#?}");
    assert!(
        verdict.summary.contains("(1 blocked by the kernel)"),
        "{}",
        verdict.summary
    );
    let listed = verdict.evidence["mass_storage_devices"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "the keyboard is not storage: {listed:?}");
    assert_eq!(listed[0]["decision"], "blocked");
    assert_eq!(listed[0]["mass_storage"], Value::Null);
}

#[test]
fn the_fix_names_the_read_only_way_out_only_under_read_only() {
    let block = evaluate(&facts(vec![stick()]), &policy(UsbStorageMode::Block, &[]));
    assert!(!block.fix.contains("read-only"), "{}", block.fix);
    assert!(block.fix.contains("approved encrypted device"));
    let read_only = evaluate(
        &facts(vec![stick()]),
        &policy(UsbStorageMode::ReadOnly, &[]),
    );
    assert!(
        read_only.fix.contains("it must be read-only"),
        "{}",
        read_only.fix
    );
}

#[test]
fn devices_are_listed_in_the_evidence_with_their_decision() {
    let deauthorized = UsbDevice {
        name: "2-3".into(),
        authorized: false,
        ..stick()
    };
    let verdict = evaluate(
        &facts(vec![root_hub("1"), keyboard(), stick(), deauthorized]),
        &policy(UsbStorageMode::Block, &["0781:5581:040156557d5110d1f"]),
    );
    assert_eq!(verdict.status, CheckStatus::Pass, "{verdict:#?}");
    let listed = verdict.evidence["mass_storage_devices"].as_array().unwrap();
    // The keyboard and the root hub are not storage and are left out.
    let summary: Vec<(&str, &str)> = listed
        .iter()
        .map(|d| {
            (
                d["device"].as_str().unwrap(),
                d["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, vec![("2-1", "allowlisted"), ("2-3", "blocked")]);
    assert_eq!(listed[0]["id"], "0781:5581");
    assert_eq!(listed[0]["interfaces"][0]["class"], "08");
    assert_eq!(listed[0]["interfaces"][0]["protocol"], "50");
    assert_eq!(
        listed[0]["interfaces"][0]["block_devices"][0]["name"],
        "sdb"
    );
    assert_eq!(
        verdict.evidence["allowlist"],
        json!(["0781:5581:040156557d5110d1f"])
    );
    assert_eq!(verdict.evidence["storage"], "block");
    assert_eq!(verdict.evidence["usb_device_count"], 4);
    assert_eq!(
        verdict.evidence["preventive_controls"]["root_hub_authorized_default"],
        json!({ "usb1": "1" })
    );
}

#[test]
fn preventive_controls_in_place_are_named_in_the_pass_summary_and_evidence() {
    let mut with_controls = facts(vec![root_hub("0"), keyboard()]);
    with_controls.controls = PreventiveControls {
        modprobe: Ok(parse_modprobe_config(&[(
            "/etc/modprobe.d/usb_storage.conf".to_owned(),
            "blacklist usb-storage\ninstall usb-storage /bin/false\n".to_owned(),
        )])),
        loaded_modules: Ok(Some(BTreeSet::from(["uas".to_owned()]))),
        sys_module: Ok(Some(BTreeSet::from(["uas".to_owned()]))),
        usbguard: UsbGuardState::Active,
    };
    let verdict = evaluate(&with_controls, &policy(UsbStorageMode::Block, &[]));
    assert_eq!(verdict.status, CheckStatus::Pass);
    assert!(
        verdict.summary.contains(
            "in place: usb-storage disabled by `install usb-storage /bin/false` in \
             /etc/modprobe.d/usb_storage.conf; USBGuard is active; new USB devices are \
             deauthorized until approved"
        ),
        "{}",
        verdict.summary
    );
    let controls = &verdict.evidence["preventive_controls"];
    assert_eq!(controls["modprobe"]["usb_storage"]["install"], "/bin/false");
    assert_eq!(
        controls["modprobe"]["usb_storage"]["blacklisted_in"],
        json!(["/etc/modprobe.d/usb_storage.conf"])
    );
    assert_eq!(controls["modprobe"]["usb_storage"]["note"], Value::Null);
    assert_eq!(
        controls["modules_loaded"],
        json!({ "usb_storage": false, "uas": true })
    );
    assert_eq!(controls["usbguard"]["service"], "active");
    assert_eq!(
        verdict.evidence["preventive_controls_in_place"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn a_blacklist_alone_is_reported_with_a_warning_and_not_as_a_control() {
    let mut blacklisted = facts(vec![keyboard()]);
    blacklisted.controls.modprobe = Ok(modprobe_of("blacklist-only"));
    blacklisted.controls.loaded_modules = Err("cannot read /proc/modules: denied".into());
    blacklisted.controls.usbguard = UsbGuardState::Unknown("systemctl is not installed".into());
    let verdict = evaluate(&blacklisted, &policy(UsbStorageMode::Block, &[]));
    assert_eq!(verdict.status, CheckStatus::Pass);
    assert!(
        verdict
            .summary
            .contains("no preventive control is in place")
    );
    let controls = &verdict.evidence["preventive_controls"];
    assert!(
        controls["modprobe"]["usb_storage"]["note"]
            .as_str()
            .unwrap()
            .contains("a blacklist line alone does not stop usb-storage")
    );
    assert_eq!(
        controls["modules_loaded"],
        "unknown: cannot read /proc/modules: denied"
    );
    assert_eq!(
        controls["usbguard"]["service"],
        "unknown: systemctl is not installed"
    );
}

#[test]
fn controls_are_reported_when_there_is_no_usb_bus() {
    let verdict = evaluate(
        &captured("modprobe/cis-install-false-blacklist"),
        &policy(UsbStorageMode::Block, &[]),
    );
    assert_eq!(verdict.status, CheckStatus::NotApplicable);
    assert_eq!(
        verdict.evidence["preventive_controls"]["modprobe"]["usb_storage"]["install_disables_loading"],
        true
    );
}

#[test]
fn the_captured_trees_end_to_end() {
    let block = policy(UsbStorageMode::Block, &[]);
    assert_eq!(
        evaluate(&captured("sysfs-one-stick"), &block).summary,
        "USB mass-storage device 0781:5581 (SanDisk Ultra) is connected and not allowed"
    );
    assert_eq!(
        evaluate(&captured("sysfs-uas-disk"), &block).status,
        CheckStatus::Fail
    );
    assert_eq!(
        evaluate(&captured("sysfs-keyboard-only"), &block).status,
        CheckStatus::Pass
    );
    // The captured stick has no SCSI subtree, so read_only cannot tell.
    assert_eq!(
        evaluate(
            &captured("sysfs-one-stick"),
            &policy(UsbStorageMode::ReadOnly, &[])
        )
        .status,
        CheckStatus::Unknown
    );
}
