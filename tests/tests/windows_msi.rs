//! The Windows installer, under Wine: the `msiexec /i palisade-agent.msi /qn`
//! line that `palisade-collector installers` prints, with the properties IT
//! passes (COLLECTOR_URL, ENROLL_SECRET, CA_PIN), run into a fresh prefix. The MSI's own ServiceInstall and ServiceControl register
//! and start the service; the service enrolls to a real collector on
//! loopback, trusting it through the pin alone (no CA file anywhere), and
//! its report appears in `/api/v1/devices`. The secret is then nowhere in
//! the prefix: not in the registry, not in the state or the log.
//!
//! The MSI is built by `packaging/build windows` (tests/run does it) and
//! found through `PALISADE_TEST_MSI`.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::PathBuf;
use std::time::Duration;

use palisade_shared::pin::CaPin;
use palisade_tests::collector::RunningCollector;
use palisade_tests::files_containing;
use palisade_tests::log_watch::LogWatch;
use palisade_tests::wine::{WinePrefix, windows_path};

/// Install, service start, a first check cycle under Wine, enrollment and a
/// delivery: well under a minute; the deadline only matters when broken.
const DEADLINE: Duration = Duration::from_secs(120);

const SERVICE_KEY: &str = r"HKLM\SYSTEM\CurrentControlSet\Services\PalisadeAgent";
const SETTINGS_KEY: &str = r"HKLM\SOFTWARE\Palisade\Agent";

/// The MSI of this version.
fn msi() -> PathBuf {
    built_msi("PALISADE_TEST_MSI")
}

/// The same binaries packaged as version 99.0.0, to upgrade to.
fn newer_msi() -> PathBuf {
    built_msi("PALISADE_TEST_MSI_UPGRADE")
}

fn built_msi(variable: &str) -> PathBuf {
    let path = std::env::var_os(variable).unwrap_or_else(|| {
        panic!(
            "{variable} is not set: run the tests with tests/run, which builds the MSIs \
             with `PALISADE_BUILD_PROFILE=dev packaging/build windows` and sets it"
        )
    });
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{} is not built", path.display());
    path
}

/// A collector, a fresh prefix, and the MSI installed into it silently with
/// the collector's URL, a secret and the pin: the service it started has
/// delivered its first report.
struct Installed {
    collector: RunningCollector,
    _collector_dir: tempfile::TempDir,
    secret: String,
    pin: CaPin,
    prefix: WinePrefix,
    log: LogWatch,
}

fn install() -> Installed {
    let collector_dir = tempfile::tempdir().unwrap();
    let collector = RunningCollector::start(collector_dir.path(), None);
    let prefix = WinePrefix::new();
    prefix.install_stand_in_system_wide();
    prefix.settle();
    let program_data = prefix.drive_c().join("ProgramData");
    let log = LogWatch::under(
        &program_data,
        program_data.join("Palisade/state/agent.log"),
        DEADLINE,
    );

    // The exact line `palisade-collector installers` prints for Windows,
    // run from a batch file as IT would paste it, with the MSI's path in
    // place of its bare file name.
    let printed = collector.cli(&["installers", "--collector-url", &collector.url]);
    assert_eq!(printed.exit_code, Some(0), "{}", printed.dump());
    let line = printed
        .stdout
        .lines()
        .find(|line| line.starts_with("msiexec /i "))
        .unwrap_or_else(|| panic!("no msiexec line:\n{}", printed.stdout));
    let secret = quoted_value(line, "ENROLL_SECRET");
    let pin: CaPin = quoted_value(line, "CA_PIN").parse().unwrap();
    assert_eq!(
        pin,
        collector.served_pin(),
        "the printed pin is the served certificate's"
    );
    let msi_name = format!("palisade-agent-{}-x64.msi", env!("CARGO_PKG_VERSION"));
    assert!(line.contains(&msi_name), "{line}");
    let line = line.replacen(&msi_name, &format!("\"{}\"", windows_path(&msi())), 1);
    std::fs::write(
        prefix.drive_c().join("install.bat"),
        format!("@echo off\r\n{line}\r\nexit /b %ERRORLEVEL%\r\n"),
    )
    .unwrap();
    let installed = prefix.wine(&["cmd", "/c", r"C:\install.bat"]);
    // The batch file is this test's, not the installer's: it goes before
    // the prefix is searched for the secret.
    std::fs::remove_file(prefix.drive_c().join("install.bat")).unwrap();
    assert_eq!(installed.exit_code, Some(0), "{}", installed.dump());
    log.wait_for_line("service start", |line| line.contains("service starting"));
    log.wait_for_line("enrollment", |line| line.contains("enrolled"));
    log.wait_for_line("acknowledged report", |line| {
        line.contains("report acknowledged by the collector") && line.contains("sequence=1")
    });
    Installed {
        collector,
        _collector_dir: collector_dir,
        secret,
        pin,
        prefix,
        log,
    }
}

/// One test, not three: each Wine prefix with a running agent takes most
/// of a core, and install, upgrade and uninstall follow one another anyway.
#[test]
fn the_msi_installs_enrolls_upgrades_and_uninstalls_silently() {
    // Bound whole: a `..` pattern would drop the collector's directory here.
    let Installed {
        collector,
        _collector_dir,
        secret,
        pin,
        prefix,
        log,
    } = install();

    // What the MSI registered: the binaries under Program Files, the
    // service running them, automatic start, the settings.
    let install_dir = prefix.drive_c().join("Program Files/Palisade");
    for exe in ["palisade-agent.exe", "palisade-nudge.exe"] {
        assert!(install_dir.join(exe).is_file(), "{exe} not installed");
    }
    let image_path = prefix.reg_query(SERVICE_KEY, "ImagePath").unwrap();
    assert!(
        image_path.contains(r"C:\Program Files\Palisade\palisade-agent.exe")
            && image_path.ends_with(" service"),
        "{image_path}"
    );
    assert_eq!(
        prefix.reg_query(SERVICE_KEY, "Start").as_deref(),
        Some("0x2")
    );
    assert_eq!(
        prefix.reg_query(SETTINGS_KEY, "CaPin"),
        Some(pin.to_string())
    );

    // The service the MSI started enrolled (through the pin: no CA file
    // exists in the prefix) and delivered.
    let device = collector.only_device();
    assert_eq!(device["device"]["os_name"], "Windows", "{device:#}");

    // Enrolled, the agent deleted the secret the MSI wrote.
    assert_eq!(prefix.reg_query(SETTINGS_KEY, "EnrollSecret"), None);
    assert_eq!(
        prefix.reg_query(SETTINGS_KEY, "CollectorUrl"),
        Some(collector.url.clone())
    );
    let holding = files_containing(prefix.path(), &secret);
    assert!(
        holding.is_empty(),
        "the secret is still on the disk in {holding:?}"
    );

    let enrolled = collector.only_device()["device"]["device_id"].clone();
    assert!(enrolled.is_string(), "{enrolled}");

    // A newer MSI with no properties at all, as a software-update push
    // would run it.
    let upgraded = prefix.wine(&["msiexec", "/i", &windows_path(&newer_msi()), "/qn"]);
    assert_eq!(upgraded.exit_code, Some(0), "{}", upgraded.dump());
    assert_eq!(
        prefix.reg_query(SETTINGS_KEY, "CaPin"),
        Some(pin.to_string())
    );
    assert_eq!(
        prefix.reg_query(SETTINGS_KEY, "CollectorUrl"),
        Some(collector.url.clone())
    );
    // The upgraded service's first cycle is the device's second report,
    // from the same device: same key, same enrollment.
    log.wait_for_line("the upgraded service's report", |line| {
        line.contains("report acknowledged by the collector") && line.contains("sequence=2")
    });
    assert_eq!(collector.only_device()["device"]["device_id"], enrolled);

    let removed = prefix.wine(&["msiexec", "/x", &windows_path(&newer_msi()), "/qn"]);
    assert_eq!(removed.exit_code, Some(0), "{}", removed.dump());
    assert!(
        !prefix.drive_c().join("Program Files/Palisade").exists(),
        "the binaries outlived the uninstall"
    );
    assert_eq!(prefix.reg_query(SERVICE_KEY, "ImagePath"), None);
    assert_eq!(prefix.reg_query(SETTINGS_KEY, "CollectorUrl"), None);
    let state = prefix.drive_c().join("ProgramData/Palisade/state");
    assert!(
        std::fs::read_dir(&state).unwrap().next().is_some(),
        "the state (the device's enrollment and spool) is kept: {}",
        state.display()
    );
}

/// The value of `NAME="value"` in a cmd.exe line.
fn quoted_value(line: &str, name: &str) -> String {
    let start = line
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + name.len()
        + 2;
    let length = line[start..].find('"').unwrap();
    line[start..start + length].to_owned()
}
