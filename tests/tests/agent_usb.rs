//! A USB stick plugged into a machine whose policy enforces `usb_storage =
//! "block"`: the daemon deauthorizes it the moment its uevent arrives, the
//! block is an event in the next report (stored by the real collector), and
//! the status socket offers it to the nudge helper.
//!
//! This machine has no USB bus, so the stick is a prepared sysfs tree
//! (captured from a real laptop: agent/tests/fixtures/linux/usb_storage/
//! SOURCES.md) under a host root, "plugged in" by moving its directories into
//! place, and its uevent is emulated: a netlink datagram in the kernel's
//! format sent to the kernel's uevent group, which only root may do. The
//! daemon accepts such datagrams only when it runs on a host root; on the
//! live system it takes uevents from the kernel alone.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_collector::store::Store;
use palisade_shared::Report;
use palisade_shared::envelope::Envelope;
use palisade_tests::agent;
use palisade_tests::agent::{self as agent_harness, RunningAgent};
use palisade_tests::collector::RunningCollector;

const DEADLINE: Duration = Duration::from_secs(20);

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

/// Sends a uevent datagram, as the kernel formats them, to the kernel's
/// uevent multicast group.
fn emulate_uevent(action: &str, devpath: &str, subsystem: &str, devtype: &str) {
    use rustix::net::netlink::{self, SocketAddrNetlink};
    use rustix::net::{AddressFamily, SendFlags, SocketType};
    let socket = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        Some(netlink::KOBJECT_UEVENT),
    )
    .unwrap();
    let message = format!(
        "{action}@{devpath}\0ACTION={action}\0DEVPATH={devpath}\0SUBSYSTEM={subsystem}\0DEVTYPE={devtype}\0SEQNUM=1\0"
    );
    rustix::net::sendto(
        &socket,
        message.as_bytes(),
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 1),
    )
    .unwrap_or_else(|err| panic!("sending a uevent to the kernel's group (needs root): {err}"));
}

#[test]
fn a_plugged_in_stick_is_deauthorized_reported_and_offered_to_the_nudge() {
    let collector_dir = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let collector = RunningCollector::start(collector_dir.path(), None);
    let secret = collector.create_secret(&["--uses", "1"]);
    let socket = dir.path().join("agent.sock");
    let config = agent_harness::write_config(dir.path(), &collector, "");
    let enrolled = agent(&[
        "enroll",
        "--config",
        config.to_str().unwrap(),
        "--secret",
        &secret,
    ]);
    assert_eq!(enrolled.exit_code, Some(0), "{}", enrolled.dump());
    let device_id = enrolled
        .stdout
        .trim()
        .trim_start_matches("enrolled as ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    // The machine with its keyboard; the SanDisk stick (0781, interface
    // class 08) waits outside until it is "plugged in".
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../agent/tests/fixtures/linux/usb_storage/sysfs-one-stick");
    let root = dir.path().join("root");
    copy_tree(&fixture, &root);
    let devices = root.join("sys/bus/usb/devices");
    let outside = dir.path().join("unplugged");
    std::fs::create_dir_all(&outside).unwrap();
    for name in ["2-1", "2-1:1.0"] {
        std::fs::rename(devices.join(name), outside.join(name)).unwrap();
    }

    let mut daemon = RunningAgent::start_with(&config, &["--host-root", root.to_str().unwrap()]);
    daemon.wait_for_acknowledged(1, DEADLINE);

    for name in ["2-1", "2-1:1.0"] {
        std::fs::rename(outside.join(name), devices.join(name)).unwrap();
    }
    let authorized: PathBuf = devices.join("2-1/authorized");
    assert_eq!(std::fs::read_to_string(&authorized).unwrap().trim(), "1");
    emulate_uevent("add", "/bus/usb/devices/2-1", "usb", "usb_device");

    let blocked = daemon.wait_for("the block", DEADLINE, |line| {
        line.contains("acted on a device the policy does not allow")
    });
    assert!(blocked.contains("2-1"), "{blocked}");
    assert_eq!(
        std::fs::read_to_string(&authorized).unwrap().trim(),
        "0",
        "the stick was not deauthorized\n{}",
        daemon.log()
    );
    // The keyboard is left alone.
    assert_eq!(
        std::fs::read_to_string(devices.join("1-2/authorized"))
            .unwrap()
            .trim(),
        "1"
    );

    // The cycle the uevent started reports the block.
    let sequence = daemon.wait_for_cycle_after(1, DEADLINE);
    daemon.wait_for_acknowledged(sequence, DEADLINE);

    // The nudge helper sees it on the status socket.
    let status = agent_harness::status(&socket).unwrap();
    let events = status["recent_events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|event| event["kind"] == "usb_device_blocked"),
        "{status:#}"
    );
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(&collector.database_url).await.unwrap();
        let stored = store
            .report_envelope(&device_id, sequence)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("report {sequence} is not stored"));
        let envelope = Envelope::from_json(&stored, 1 << 20).unwrap();
        let report = Report::from_json(&envelope.payload_unverified().unwrap()).unwrap();
        let event = report
            .events
            .iter()
            .find(|event| serde_json::to_value(event.kind).unwrap() == "usb_device_blocked")
            .unwrap_or_else(|| panic!("no usb_device_blocked event in {report:#?}"));
        assert_eq!(event.details["vendor_id"], "0781", "{event:?}");
    });
}
