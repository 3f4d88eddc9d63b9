//! The macOS parser against the captures in
//! `agent/tests/fixtures/macos/usb_storage/` (SOURCES.md says where each
//! comes from and on what macOS), and the evaluator over every mode.

use palisade_shared::policy::UsbStorageMode;
use palisade_shared::report::CheckStatus;

use super::evaluate;
use crate::checks::usb_storage::tests::policy;
use crate::checks::usb_storage::{
    MacUsbDevice, MacUsbFacts, MacUsbReport, UsbReportSource, parse_system_profiler_usb,
    parse_usb_hex_id,
};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/macos/usb_storage"
);

fn report(name: &str) -> MacUsbReport {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap();
    parse_system_profiler_usb(&text).unwrap()
}

fn facts(report: MacUsbReport) -> MacUsbFacts {
    MacUsbFacts { report: Ok(report) }
}

fn storage(report: &MacUsbReport) -> Vec<&MacUsbDevice> {
    report
        .devices
        .iter()
        .filter(|d| d.media.as_ref().is_some_and(|m| !m.is_empty()))
        .collect()
}

/// A card reader inside a USB hub, with one card mounted writable and the
/// reader's second slot holding a locked card mounted read-only. Written
/// in the shape of the captures (SOURCES.md: not captured).
const HUB_WITH_CARD_READER: &str = r#"{
  "SPUSBDataType" : [ { "_items" : [ {
    "_name" : "USB3.0 Hub", "vendor_id" : "0x05e3  (Genesys Logic, Inc.)", "product_id" : "0x0626",
    "_items" : [ {
      "_name" : "USB3.0 Card Reader", "manufacturer" : "Generic", "vendor_id" : "0x05e3  (Genesys Logic, Inc.)",
      "product_id" : "0x0749", "serial_num" : "000000001536", "location_id" : "0x01120000 / 3",
      "Media" : [
        { "_name" : "SD Card", "bsd_name" : "disk4", "removable_media" : "yes",
          "volumes" : [ { "_name" : "CARD", "bsd_name" : "disk4s1", "mount_point" : "/Volumes/CARD", "writable" : "yes" } ] },
        { "_name" : "MicroSD", "bsd_name" : "disk6", "removable_media" : "yes",
          "volumes" : [ { "_name" : "LOCKED", "bsd_name" : "disk6s1", "mount_point" : "/Volumes/LOCKED", "writable" : "no" } ] }
      ] } ] } ],
    "_name" : "USB31Bus", "host_controller" : "AppleT8103USBXHCI" } ]
}"#;

#[test]
fn hex_ids() {
    assert_eq!(
        parse_usb_hex_id("0x1f75  (Innostor Co., Ltd.)"),
        Some(0x1f75)
    );
    assert_eq!(parse_usb_hex_id("0x0917"), Some(0x0917));
    assert_eq!(parse_usb_hex_id("apple_vendor_id"), Some(0x05ac));
    assert_eq!(parse_usb_hex_id("Innostor"), None);
    assert_eq!(parse_usb_hex_id(""), None);
}

#[test]
fn pendrive_behind_a_display_hub() {
    let report = report("spusb-m1pro-pendrive-behind-display-hub.json");
    assert_eq!(report.source, UsbReportSource::UsbDataType);
    assert_eq!(report.buses, 5);
    // Hubs and their children, depth first: 14 devices in all.
    assert_eq!(report.devices.len(), 14);
    let sticks = storage(&report);
    assert_eq!(sticks.len(), 1);
    let stick = sticks[0];
    assert_eq!(stick.name.as_deref(), Some("PenDrive"));
    assert_eq!(
        (stick.vendor_id, stick.product_id),
        (Some(0x1f75), Some(0x0917))
    );
    assert_eq!(stick.serial.as_deref(), Some("000000000000005309"));
    let medium = &stick.media.as_ref().unwrap()[0];
    assert_eq!(medium.bsd_name, "disk5");
    assert_eq!(medium.removable, Some(true));
    assert!(medium.volumes.is_empty());
    // Apple's devices name their vendor in words.
    let keyboard = report
        .devices
        .iter()
        .find(|d| d.name.as_deref() == Some("Magic Keyboard"));
    assert_eq!(keyboard.and_then(|k| k.vendor_id), Some(0x05ac));
}

#[test]
fn mudita_volumes_not_mounted() {
    let report = report("spusb-m1pro-mudita-msc-unmounted.json");
    let sticks = storage(&report);
    assert_eq!(sticks.len(), 1);
    let volumes = &sticks[0].media.as_ref().unwrap()[0].volumes;
    assert_eq!(volumes.len(), 3);
    assert!(
        volumes
            .iter()
            .all(|v| v.mount_point.is_none() && v.writable.is_none())
    );
}

#[test]
fn newer_report_has_no_media() {
    let sandisk = report("spusbhost-macos27-sandisk.json");
    assert_eq!(sandisk.source, UsbReportSource::UsbHostDataType);
    assert_eq!(sandisk.devices.len(), 1);
    let drive = &sandisk.devices[0];
    assert_eq!(drive.name.as_deref(), Some("SanDisk 3.2 Gen1"));
    assert_eq!(
        (drive.vendor_id, drive.product_id),
        (Some(0x0781), Some(0x55fd))
    );
    assert_eq!(drive.serial.as_deref(), Some("03017022120225210315"));
    assert_eq!(drive.media, None);

    let vm = report("spusbhost-macos26-vm-keyboard.json");
    assert_eq!(vm.devices[0].serial, None, "\"Not Provided\" is no serial");
}

#[test]
fn parser_errors_and_empty_reports() {
    assert!(parse_system_profiler_usb("not json").is_err());
    assert!(parse_system_profiler_usb("{}").is_err());
    let empty = parse_system_profiler_usb(r#"{ "SPUSBDataType" : [ ] }"#).unwrap();
    assert_eq!((empty.source, empty.buses), (UsbReportSource::NoDevices, 0));
    let idle = parse_system_profiler_usb(
        r#"{ "SPUSBDataType" : [ { "_name" : "USB31Bus", "host_controller" : "AppleT6000USBXHCI" } ] }"#,
    )
    .unwrap();
    assert_eq!((idle.source, idle.buses), (UsbReportSource::NoDevices, 1));
}

#[test]
fn card_reader_in_a_hub() {
    let report = parse_system_profiler_usb(HUB_WITH_CARD_READER).unwrap();
    let readers = storage(&report);
    assert_eq!(readers.len(), 1, "the hub holds no media; the reader does");
    assert_eq!(readers[0].media.as_ref().unwrap().len(), 2);
}

/// One row: fixture (or inline JSON), mode, allowlist, status, words the
/// summary must have.
fn check(
    report: MacUsbReport,
    mode: UsbStorageMode,
    allow: &[&str],
    status: CheckStatus,
    has: &str,
) {
    let verdict = evaluate(&facts(report), &policy(mode, allow));
    assert_eq!(verdict.status, status, "{verdict:#?}");
    assert!(
        verdict.summary.contains(has),
        "{:?} lacks {has:?}",
        verdict.summary
    );
    if status == CheckStatus::Fail {
        assert!(!verdict.fix.is_empty());
    }
}

#[test]
fn evaluator_table() {
    use CheckStatus::{Fail, Pass, Unknown};
    use UsbStorageMode::{Allow, Block, ReadOnly};
    let pendrive = || report("spusb-m1pro-pendrive-behind-display-hub.json");
    let mudita = || report("spusb-m1pro-mudita-msc-unmounted.json");
    let reader = || parse_system_profiler_usb(HUB_WITH_CARD_READER).unwrap();
    let sandisk = || report("spusbhost-macos27-sandisk.json");
    // A stick with no serial, adapted from the PenDrive capture.
    let no_serial = || {
        let mut report = pendrive();
        for device in &mut report.devices {
            if device.name.as_deref() == Some("PenDrive") {
                device.serial = None;
            }
        }
        report
    };

    check(
        pendrive(),
        Block,
        &[],
        Fail,
        "1f75:0917 (PenDrive) is connected and not allowed",
    );
    check(
        pendrive(),
        Block,
        &["1f75:0917:000000000000005309"],
        Pass,
        "only allowlisted",
    );
    check(
        pendrive(),
        Allow,
        &[],
        Pass,
        "the policy allows USB storage",
    );
    // Not mounted: nothing tells whether it is write-protected.
    check(
        pendrive(),
        ReadOnly,
        &[],
        Unknown,
        "none of its volumes is mounted",
    );
    // Unmounted still fails a block: macOS lets anyone mount it again.
    check(
        mudita(),
        Block,
        &[],
        Fail,
        "3310:0103 (Mudita Harmony (MSC mode))",
    );
    check(
        no_serial(),
        Block,
        &["1f75:0917:000000000000005309"],
        Fail,
        "not allowed",
    );
    check(no_serial(), Block, &["1f75:0917"], Pass, "only allowlisted");
    check(reader(), Block, &[], Fail, "05e3:0749 (USB3.0 Card Reader)");
    check(reader(), ReadOnly, &[], Fail, "writable");
    check(
        sandisk(),
        Block,
        &[],
        Unknown,
        "without their storage media",
    );
    check(sandisk(), Block, &["0781:55fd"], Pass, "only allowlisted");
    check(sandisk(), Allow, &[], Pass, "allows USB storage");
    check(
        parse_system_profiler_usb(r#"{ "SPUSBDataType" : [ { "_name" : "USB31Bus" } ] }"#).unwrap(),
        Block,
        &[],
        Pass,
        "no USB mass-storage device is connected",
    );
    check(
        parse_system_profiler_usb(r#"{ "SPUSBDataType" : [ ] }"#).unwrap(),
        Block,
        &[],
        Unknown,
        "no USB bus at all",
    );
}

#[test]
fn read_only_card_passes_and_evidence_says_the_limit() {
    let mut report = parse_system_profiler_usb(HUB_WITH_CARD_READER).unwrap();
    // Take out the writable card: the locked one alone is read-only.
    for device in &mut report.devices {
        if let Some(media) = &mut device.media {
            media.retain(|m| m.bsd_name != "disk4");
        }
    }
    let verdict = evaluate(&facts(report), &policy(UsbStorageMode::ReadOnly, &[]));
    assert_eq!(verdict.status, CheckStatus::Pass, "{verdict:#?}");
    let text = serde_json::to_string(&verdict.evidence).unwrap();
    assert!(text.contains("MDM configuration profile"), "{text}");
    assert!(text.contains("/Volumes/LOCKED"), "{text}");
}

#[test]
fn a_failed_run_is_unknown() {
    let verdict = evaluate(
        &MacUsbFacts {
            report: Err("`/usr/sbin/system_profiler` did not finish within 5 s".into()),
        },
        &policy(UsbStorageMode::Block, &[]),
    );
    assert_eq!(verdict.status, CheckStatus::Unknown);
    assert!(verdict.summary.contains("did not finish"));
}

/// The `diskutil` command lines of a plan, in order.
fn commands(plan: &crate::enforce::plan::Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|step| match step {
            crate::enforce::plan::Step::Run { command, .. } => Some(command.display()),
            _ => None,
        })
        .collect()
}

#[test]
fn enforcer_ejects_blocked_disks_and_remounts_read_only() {
    use crate::checks::usb_storage::enforce_macos::unmount_plan;
    use UsbStorageMode::{Allow, Block, ReadOnly};
    let pendrive = facts(report("spusb-m1pro-pendrive-behind-display-hub.json"));
    let reader = facts(parse_system_profiler_usb(HUB_WITH_CARD_READER).unwrap());

    let plan = unmount_plan(&pendrive, &policy(Block, &[]));
    assert_eq!(commands(&plan), ["/usr/sbin/diskutil eject disk5"]);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("MDM configuration profile"))
    );
    // Allowlisted, or storage allowed: nothing is touched.
    assert!(commands(&unmount_plan(&pendrive, &policy(Block, &["1f75:0917"]))).is_empty());
    assert!(commands(&unmount_plan(&pendrive, &policy(Allow, &[]))).is_empty());

    assert_eq!(
        commands(&unmount_plan(&reader, &policy(Block, &[]))),
        [
            "/usr/sbin/diskutil eject disk4",
            "/usr/sbin/diskutil eject disk6"
        ]
    );
    // Read-only: only the writable card's volume is remounted; the locked
    // one already is.
    assert_eq!(
        commands(&unmount_plan(&reader, &policy(ReadOnly, &[]))),
        [
            "/usr/sbin/diskutil unmount disk4s1",
            "/usr/sbin/diskutil mount readOnly disk4s1"
        ]
    );
    // A report without media: nothing is ejected on a guess.
    let sandisk = facts(report("spusbhost-macos27-sandisk.json"));
    let plan = unmount_plan(&sandisk, &policy(Block, &[]));
    assert!(commands(&plan).is_empty());
    assert!(plan.notes.iter().any(|n| n.contains("left alone")));
    let failed = unmount_plan(
        &MacUsbFacts {
            report: Err("timed out".into()),
        },
        &policy(Block, &[]),
    );
    assert!(failed.refusal.is_some());
}
