//! The USB storage enforcer on copies of the constructed sysfs trees in
//! `tests/fixtures/linux/usb_storage/` (see its SOURCES.md): what the daemon
//! calls on a uevent (`on_device_added`), the sweep, and the udev rule that
//! `palisade-agent enforce` installs.
#![cfg(target_os = "linux")] // the fixture names contain ':'
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use palisade_agent::checks::usb_storage::enforce as usb;
use palisade_agent::sys::Host;
use palisade_shared::Policy;
use palisade_shared::report::EventKind;
use support::Tree;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/linux/usb_storage"
);
const STICK: &str = "/sys/bus/usb/devices/2-1";
const STICK_AUTHORIZED: &str = "sys/bus/usb/devices/2-1/authorized";
/// Where real sysfs puts a stick's disk (extra/SOURCES.md).
const STICK_DISK: &str = "sys/bus/usb/devices/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb";

fn policy_text(mode: &str, storage: &str, allow: &[&str]) -> String {
    let allow: Vec<String> = allow.iter().map(|entry| format!("{entry:?}")).collect();
    format!(
        "[policy]\nid = \"t\"\nversion = 1\n[rules.usb_storage]\nmode = \"{mode}\"\n\
         storage = \"{storage}\"\nallow = [{}]\n",
        allow.join(", ")
    )
}

fn policy(mode: &str, storage: &str, allow: &[&str]) -> Policy {
    Policy::parse(&policy_text(mode, storage, allow)).unwrap()
}

fn stick() -> (Tree, Host) {
    let tree = Tree::from_fixture(FIXTURES, "sysfs-one-stick");
    let host = Host::with_root(tree.root());
    (tree, host)
}

#[test]
fn a_blocked_stick_is_deauthorized_and_named_in_the_event() {
    let (tree, host) = stick();
    assert_eq!(tree.read(STICK_AUTHORIZED).trim(), "1");
    let event = usb::on_device_added(&host, &policy("enforce", "block", &[]), Path::new(STICK))
        .unwrap()
        .expect("the stick must be blocked");
    assert_eq!(tree.read(STICK_AUTHORIZED), "0");
    assert_eq!(event.kind, EventKind::UsbDeviceBlocked);
    let details = serde_json::Value::Object(event.details);
    assert_eq!(details["vendor_id"], "0781");
    assert_eq!(details["product_id"], "5581");
    assert_eq!(details["serial"], "040156557d5110d1f");
    assert_eq!(details["manufacturer"], "SanDisk");
    assert_eq!(details["product"], "Ultra");
    assert_eq!(details["sysfs_path"], STICK);
    assert_eq!(details["action"], "deauthorized");
    assert!(
        details["reason"]
            .as_str()
            .unwrap()
            .contains("not on the allowlist"),
        "{details}"
    );

    // The check now sees a device the kernel has blocked.
    let policy_file = tree.policy_file(&policy_text("enforce", "block", &[]));
    tree.check("usb_storage", Some(&policy_file))
        .expect_check("usb_storage", 0, "pass");

    // A second uevent for the same device: already blocked, nothing to do.
    assert!(
        usb::on_device_added(&host, &policy("enforce", "block", &[]), Path::new(STICK))
            .unwrap()
            .is_none()
    );
}

#[test]
fn an_interface_path_or_devpath_finds_its_device() {
    let (tree, host) = stick();
    let event = usb::on_device_added(
        &host,
        &policy("enforce", "block", &[]),
        Path::new("/sys/bus/usb/devices/2-1:1.0"),
    )
    .unwrap();
    assert!(event.is_some());
    assert_eq!(tree.read(STICK_AUTHORIZED), "0");
}

#[test]
fn an_allowlisted_stick_is_left_alone() {
    let (tree, host) = stick();
    for allow in ["0781:5581", "0781:5581:040156557d5110d1f"] {
        let event = usb::on_device_added(
            &host,
            &policy("enforce", "block", &[allow]),
            Path::new(STICK),
        )
        .unwrap();
        assert!(event.is_none(), "{allow}");
        assert_eq!(tree.read(STICK_AUTHORIZED).trim(), "1", "{allow}");
    }
    // A different serial is not the approved device.
    let event = usb::on_device_added(
        &host,
        &policy("enforce", "block", &["0781:5581:000000000000"]),
        Path::new(STICK),
    )
    .unwrap();
    assert!(event.is_some());
}

#[test]
fn a_keyboard_is_left_alone() {
    let tree = Tree::from_fixture(FIXTURES, "sysfs-keyboard-only");
    let host = Host::with_root(tree.root());
    let event = usb::on_device_added(
        &host,
        &policy("enforce", "block", &[]),
        Path::new("/sys/bus/usb/devices/1-2"),
    )
    .unwrap();
    assert!(event.is_none());
    assert_eq!(tree.read("sys/bus/usb/devices/1-2/authorized").trim(), "1");
    assert!(
        usb::sweep(&host, &policy("enforce", "block", &[]))
            .unwrap()
            .is_empty()
    );
}

/// The stick as it arrives, before any driver binds (the fixture has no
/// `driver` link), on a machine where usb-storage cannot load: nothing can
/// use it, so the enforcer leaves it as it is, as the check calls it blocked.
#[test]
fn a_stick_no_storage_driver_can_bind_to_is_left_alone() {
    let (tree, host) = stick();
    tree.write(
        "etc/modprobe.d/usb_storage.conf",
        "blacklist usb-storage\ninstall usb-storage /bin/false\n",
    );
    tree.write(
        "proc/modules",
        "usbhid 77824 0 - Live 0x0000000000000000\nusbcore 409600 1 usbhid, Live 0x0000000000000000\n",
    );
    for module in ["usbhid", "usbcore"] {
        std::fs::create_dir_all(tree.root().join("sys/module").join(module)).unwrap();
    }
    let event =
        usb::on_device_added(&host, &policy("enforce", "block", &[]), Path::new(STICK)).unwrap();
    assert!(event.is_none(), "{event:?}");
    assert_eq!(tree.read(STICK_AUTHORIZED).trim(), "1");
}

#[test]
fn outside_enforce_mode_nothing_is_touched() {
    let (tree, host) = stick();
    for mode in ["audit", "nudge"] {
        let event =
            usb::on_device_added(&host, &policy(mode, "block", &[]), Path::new(STICK)).unwrap();
        assert!(event.is_none(), "{mode}");
    }
    assert_eq!(tree.read(STICK_AUTHORIZED).trim(), "1");
}

#[test]
fn read_only_on_a_host_root_records_the_intended_blockdev() {
    let (tree, host) = stick();
    tree.write(&format!("{STICK_DISK}/ro"), "0\n");
    tree.write(&format!("{STICK_DISK}/sdb1/partition"), "1\n");
    tree.write(&format!("{STICK_DISK}/sdb1/ro"), "0\n");
    let event = usb::on_device_added(
        &host,
        &policy("enforce", "read_only", &[]),
        Path::new(STICK),
    )
    .unwrap()
    .expect("a writable stick must be made read-only");
    let details = serde_json::Value::Object(event.details);
    assert_eq!(details["action"], "read_only");
    assert_eq!(
        details["applied"], false,
        "a host root has no /dev to change"
    );
    assert_eq!(
        details["commands"],
        serde_json::json!(["blockdev --setro /dev/sdb", "blockdev --setro /dev/sdb1"])
    );
    // Not deauthorized: read-only keeps the device usable.
    assert_eq!(tree.read(STICK_AUTHORIZED).trim(), "1");
}

#[test]
fn sweep_blocks_every_present_stick() {
    let tree = Tree::from_fixture(FIXTURES, "sysfs-one-stick");
    tree.add_fixture(FIXTURES, "sysfs-uas-disk");
    let host = Host::with_root(tree.root());
    let events = usb::sweep(&host, &policy("enforce", "block", &[])).unwrap();
    let paths: Vec<String> = events
        .iter()
        .map(|e| e.details["sysfs_path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        paths,
        ["/sys/bus/usb/devices/2-1", "/sys/bus/usb/devices/2-2"]
    );
    assert_eq!(tree.read("sys/bus/usb/devices/2-2/authorized"), "0");
}

#[test]
fn enforce_command_blocks_installs_the_udev_rule_and_undoes_it() {
    let (tree, _host) = stick();
    let before = support::snapshot(&tree.root());
    let policy_file = tree.policy_file(&policy_text(
        "enforce",
        "block",
        &["0951:1666", "0781:5583:ABC123"],
    ));
    let args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec![
            "enforce".into(),
            "--host-root".into(),
            tree.root().display().to_string(),
            "--state-dir".into(),
            tree.outside("state").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let run = tree.run_agent(&args(&[
        "--rule",
        "usb_storage",
        "--policy",
        &policy_file.display().to_string(),
    ]));
    run.expect_exit(0);
    assert!(
        run.output
            .stdout
            .contains("usb_storage: applied (re-check: pass)")
            && run.output.stdout.contains(
                "write 0 to /sys/bus/usb/devices/2-1/authorized (deauthorize 0781:5581 \
                 (SanDisk Ultra))"
            )
            && run
                .output
                .stdout
                .contains("create /etc/udev/rules.d/70-palisade-usb-storage.rules"),
        "{}",
        run.explain()
    );
    let rule = tree.read("etc/udev/rules.d/70-palisade-usb-storage.rules");
    assert!(
        rule.contains(
            "ATTR{idVendor}==\"0951\", ATTR{idProduct}==\"1666\", \
             GOTO=\"palisade_usb_storage_end\"\n"
        ) && rule.contains(
            "ATTR{idVendor}==\"0781\", ATTR{idProduct}==\"5583\", ATTR{serial}==\"ABC123\", \
             GOTO=\"palisade_usb_storage_end\"\n"
        ) && rule.contains("ENV{ID_USB_INTERFACES}!=\"*:08????:*\"")
            && rule.contains("ATTR{authorized}=\"0\"\n"),
        "{rule}"
    );
    assert_eq!(tree.read(STICK_AUTHORIZED), "0");

    let run = tree.run_agent(&args(&["--undo", "usb_storage"]));
    run.expect_exit(0);
    let after = support::snapshot(&tree.root());
    // Undo restores files; the device stays deauthorized until it is replugged.
    let mut expected = before;
    if let Some(support::Entry::File { bytes, .. }) = expected.get_mut(STICK_AUTHORIZED) {
        *bytes = b"0".to_vec();
    }
    assert!(
        expected == after,
        "{}",
        support::snapshot_diff(&expected, &after)
    );
}
