//! The Windows agent as a Windows service, under Wine: created with
//! `sc create` and started with `net start` as an installer would, it runs
//! as the Service Control Manager's child with no console, enrolls with a
//! real collector on loopback, spools a signed report and has it
//! acknowledged. The daemon run by hand answers `palisade-agent status`
//! over its named pipe.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::PathBuf;
use std::time::Duration;

use palisade_tests::collector::RunningCollector;
use palisade_tests::log_watch::LogWatch;
use palisade_tests::wine::{WinePrefix, windows_agent, windows_path};

/// A first cycle under Wine takes a few seconds; enrollment and delivery
/// add a round trip each.
const DEADLINE: Duration = Duration::from_secs(120);

/// A collector with a secret, and a prefix with the agent, its stand-in DLL
/// and a config enrolling to that collector.
struct Setup {
    collector: RunningCollector,
    _collector_dir: tempfile::TempDir,
    secret: String,
    prefix: WinePrefix,
    exe: PathBuf,
    config: PathBuf,
}

fn setup() -> Setup {
    let collector_dir = tempfile::tempdir().unwrap();
    let collector = RunningCollector::start(collector_dir.path(), None);
    let secret = collector.create_secret(&[]);

    let prefix = WinePrefix::new();
    let exe = prefix.path().join("palisade-agent.exe");
    std::fs::copy(windows_agent(), &exe).unwrap();
    // Wine 8 starts a Rust program only with the stand-in beside it.
    let stand_in = windows_agent().with_file_name("bcryptprimitives.dll");
    std::fs::copy(stand_in, prefix.path().join("bcryptprimitives.dll")).unwrap();
    let config = prefix.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "collector_url = \"{}\"\nca_file = '{}'\nstate_dir = '{}'\nenroll_secret = \"{secret}\"\n",
            collector.url,
            windows_path(&collector.state_dir.join("tls/cert.pem")),
            windows_path(&prefix.path().join("state")),
        ),
    )
    .unwrap();
    Setup {
        collector,
        _collector_dir: collector_dir,
        secret,
        prefix,
        exe,
        config,
    }
}

#[test]
fn the_service_started_by_the_scm_enrolls_spools_and_delivers_a_report() {
    let Setup {
        collector,
        secret,
        prefix,
        exe,
        config,
        _collector_dir,
    } = setup();

    // The log in a directory of its own, made here so it can be watched
    // from the start (the state directory is the service's to create).
    let log = LogWatch::new(prefix.path().join("logs").join("agent.log"), DEADLINE);
    prefix.create_and_start_service(
        "PalisadeAgent",
        &format!(
            "{} service --config {} --log-file {}",
            windows_path(&exe),
            windows_path(&config),
            windows_path(&log.path)
        ),
    );
    log.wait_for_line("service start", |line| line.contains("service starting"));
    log.wait_for_line("spooled report", |line| {
        line.contains("check cycle spooled a report") && line.contains("sequence=1")
    });
    log.wait_for_line("acknowledged report", |line| {
        line.contains("report acknowledged by the collector") && line.contains("sequence=1")
    });
    // An acknowledgement comes only after the collector verified the
    // signature and stored the report: the dashboard's API shows the device
    // and the verdicts it sent.
    let device = collector.only_device();
    assert_eq!(device["device"]["os_name"], "Windows", "{device:#}");
    let status_of = |rule: &str| device["device"]["rules"][rule].as_str().map(str::to_owned);
    // The baseline enforces screen_lock: the daemon set the machine
    // inactivity limit before it reported, and the registry holds it.
    assert_eq!(
        status_of("screen_lock").as_deref(),
        Some("pass"),
        "{device:#}"
    );
    assert_eq!(
        prefix
            .reg_query(
                r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System",
                "InactivityTimeoutSecs"
            )
            .as_deref(),
        Some("0x384")
    );
    assert_eq!(
        status_of("usb_storage").as_deref(),
        Some("pass"),
        "{device:#}"
    );
    assert_eq!(
        status_of("password_policy").as_deref(),
        Some("unknown"),
        "{device:#}"
    );

    // Stopping is not asserted here: Wine's wineserver, and services.exe
    // with it, exits a few seconds after its last ordinary program (the
    // `net start`) and ends the service; the next `sc` talks to a fresh
    // services.exe that never started it. The named pipe is shown with
    // `run` below, whose process keeps the wineserver up.
    let text = std::fs::read_to_string(&log.path).unwrap();
    assert!(!text.contains(&secret), "the secret is in the log:\n{text}");
}

#[test]
fn the_running_agent_answers_status_over_its_named_pipe() {
    let setup = setup();
    let log = LogWatch::new(setup.prefix.path().join("logs").join("run.log"), DEADLINE);
    let daemon = setup.prefix.spawn_wine(
        &[
            &setup.exe.display().to_string(),
            "run",
            "--config",
            &windows_path(&setup.config),
        ],
        &log.path,
    );
    log.wait_for_line("the pipe", |line| line.contains("status pipe listening"));
    log.wait_for_line("an acknowledged report", |line| {
        line.contains("report acknowledged by the collector") && line.contains("sequence=1")
    });

    // Exit code 3: no rule fails, some are unknown (Wine has no BitLocker
    // and no account policy API).
    let status = setup.prefix.agent(&["status", "--json"]);
    assert_eq!(status.exit_code, Some(3), "{}", status.dump());
    let document = status.json();
    assert_eq!(document["schema_version"], 1, "{document:#}");
    assert!(
        document["device_id"].as_str().unwrap().starts_with("dev_"),
        "{document:#}"
    );
    let rules: Vec<&str> = document["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|check| check["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "screen_lock",
            "disk_encryption",
            "password_policy",
            "usb_storage"
        ],
        "{document:#}"
    );

    let human = setup.prefix.agent(&["status"]);
    assert_eq!(human.exit_code, Some(3), "{}", human.dump());
    assert!(
        human.stdout.contains("Palisade agent 0.1.0, running since"),
        "{}",
        human.dump()
    );
    drop(daemon);
}
