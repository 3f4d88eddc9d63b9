//! The daemon checks at once when something its rules read changes (a
//! watched file, a kernel uevent) and re-reads its config file when it
//! changes, refusing a broken one. The interval is an hour throughout, so
//! every cycle after the first is one of these triggers.
//!
//! The uevent is real: writing `change` to a block device's `uevent` file
//! in sysfs makes the kernel broadcast a uevent for it (this machine has no
//! USB bus, so no USB device can be plugged in; the daemon treats USB and
//! block events alike). That needs root, as CI is.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::PathBuf;
use std::time::{Duration, Instant};

use palisade_tests::agent;
use palisade_tests::agent::{RunningAgent, config_text};
use palisade_tests::collector::RunningCollector;

/// A trigger is debounced for 200 ms and a cycle on a host root takes
/// milliseconds; the issue asks for under a second. The deadline is wider so
/// a loaded CI machine cannot make the test flaky; the measured latency is
/// printed (and recorded in BENCHMARKS.md).
const DEADLINE: Duration = Duration::from_secs(10);

struct Setup {
    _collector_dir: tempfile::TempDir,
    collector: RunningCollector,
    dir: tempfile::TempDir,
    config: PathBuf,
    root: PathBuf,
}

/// A collector, an enrolled agent config, and a small host root with the
/// directories the rules watch.
fn setup() -> Setup {
    let collector_dir = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let collector = RunningCollector::start(collector_dir.path(), None);
    let secret = collector.create_secret(&["--uses", "1"]);
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, config_text(dir.path(), &collector, "")).unwrap();
    let root = dir.path().join("root");
    for sub in [
        "etc/security/pwquality.conf.d",
        "etc/pam.d",
        "etc/modprobe.d",
        "proc/self",
        "sys/class/block",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("etc/security/pwquality.conf"), "# empty\n").unwrap();
    let enrolled = agent(&[
        "enroll",
        "--config",
        config.to_str().unwrap(),
        "--secret",
        &secret,
    ]);
    assert_eq!(enrolled.exit_code, Some(0), "{}", enrolled.dump());
    Setup {
        _collector_dir: collector_dir,
        collector,
        dir,
        config,
        root,
    }
}

/// Kernel uevents go to every listening daemon, so the tests here run one
/// at a time: a uevent from one test must not start a cycle in another.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn start(setup: &Setup) -> RunningAgent {
    let daemon = RunningAgent::start_with(
        &setup.config,
        &["--host-root", setup.root.to_str().unwrap()],
    );
    daemon.wait_for("its watches", DEADLINE, |line| {
        line.contains("watching the rules' files")
    });
    // The first cycle runs at start.
    daemon.wait_for_cycle_after(0, DEADLINE);
    daemon
}

#[test]
fn a_changed_rule_file_starts_a_cycle_at_once() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let setup = setup();
    let mut daemon = start(&setup);

    let changed_at = Instant::now();
    std::fs::write(
        setup
            .root
            .join("etc/security/pwquality.conf.d/50-local.conf"),
        "minlen = 14\n",
    )
    .unwrap();
    let line = daemon.wait_for("the file trigger", DEADLINE, |line| {
        line.contains("something the rules read changed")
    });
    assert!(
        line.contains("pwquality.conf.d"),
        "the trigger names the file: {line}"
    );
    let sequence = daemon.wait_for_cycle_after(1, DEADLINE);
    println!("file change to spooled report: {:?}", changed_at.elapsed());
    assert_eq!(sequence, 2);

    // A file beside the watched ones (here: in the watched /etc, not read by
    // any rule) starts nothing; the next cycle is the one the following
    // rule-file change starts, and it is number 3.
    std::fs::write(setup.root.join("etc/hostname"), "laptop\n").unwrap();
    std::fs::write(
        setup.root.join("etc/pam.d/common-password"),
        "password required pam_unix.so\n",
    )
    .unwrap();
    let line = daemon.wait_for("the PAM trigger", DEADLINE, |line| {
        line.contains("something the rules read changed")
    });
    assert!(line.contains("pam.d"), "{line}");
    assert!(
        !daemon.log().contains("etc/hostname"),
        "an unwatched file triggered:\n{}",
        daemon.log()
    );
    assert_eq!(daemon.wait_for_cycle_after(2, DEADLINE), 3);
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    drop(setup.collector);
}

#[test]
fn a_kernel_uevent_for_a_device_starts_a_cycle_at_once() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let setup = setup();
    let mut daemon = start(&setup);

    // A loop device is harmless to poke; any block device would do.
    let device = std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("loop"))
        .max()
        .or_else(|| {
            std::fs::read_dir("/sys/block")
                .ok()?
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .next()
        })
        .expect("a block device in /sys/block");
    let uevent = format!("/sys/block/{device}/uevent");
    let poked_at = Instant::now();
    std::fs::write(&uevent, "change")
        .unwrap_or_else(|err| panic!("writing {uevent} (needs root): {err}"));
    let line = daemon.wait_for("the device trigger", DEADLINE, |line| {
        line.contains("something the rules read changed")
    });
    assert!(line.contains("Device"), "{line}");
    assert!(line.contains(&device), "the trigger names {device}: {line}");
    let sequence = daemon.wait_for_cycle_after(1, DEADLINE);
    println!("uevent to spooled report: {:?}", poked_at.elapsed());
    assert_eq!(sequence, 2);
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
}

#[test]
fn a_broken_new_config_is_refused_and_a_good_one_applied() {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let setup = setup();
    let mut daemon = start(&setup);

    // Two mistakes: both reported with their lines, the old config kept.
    let good = config_text(setup.dir.path(), &setup.collector, "");
    std::fs::write(
        &setup.config,
        format!("{good}backoff_max_seconds = 0\nno_such_key = 1\n"),
    )
    .unwrap();
    let refused = daemon.wait_for("the refusal", DEADLINE, |line| {
        line.contains("the changed config is refused")
    });
    assert!(refused.contains("backoff_max_seconds"), "{refused}");
    assert!(refused.contains("no_such_key"), "{refused}");
    assert!(
        refused.contains(":6:") && refused.contains(":7:"),
        "lines named: {refused}"
    );

    // Still running on the old config: a cycle on request works.
    palisade_tests::agent::check_now(&setup.dir.path().join("agent.sock")).unwrap();
    assert_eq!(daemon.wait_for_cycle_after(1, DEADLINE), 2);

    // A good change is applied; one that needs a restart says so.
    std::fs::write(
        &setup.config,
        format!("{good}backoff_max_seconds = 30\nlog_format = \"json\"\n"),
    )
    .unwrap();
    let warned = daemon.wait_for("the restart warning", DEADLINE, |line| {
        line.contains("take effect when the agent restarts")
    });
    assert!(warned.contains("log_format"), "{warned}");
    daemon.wait_for("the reload", DEADLINE, |line| {
        line.contains("config reloaded")
    });
    // A config change alone is not a reason to check the machine.
    assert!(
        !daemon.log().contains("something the rules read changed"),
        "{}",
        daemon.log()
    );
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
}
