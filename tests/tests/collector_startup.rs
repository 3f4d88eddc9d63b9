//! The collector at start, told to use a database it cannot have: it stops
//! at once with an error that says where it looked, instead of hanging on a
//! connection pool's timeout and then saying only "pool timed out".
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use palisade_tests::collector::RunningCollector;
use palisade_tests::{binary, run};

#[test]
fn an_unreachable_postgresql_is_named_with_its_host_and_port() {
    let state = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there, so the connection is
    // refused at once.
    let started = run(
        &binary("palisade-collector"),
        &[
            "serve",
            "--self-signed-tls",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--database-url",
            "postgres://palisade:hunter2@127.0.0.1:1/palisade",
        ],
        &[],
    );
    assert_eq!(started.exit_code, Some(1), "{}", started.dump());
    assert!(
        started
            .stderr
            .contains("cannot reach PostgreSQL at 127.0.0.1:1: Connection refused"),
        "{}",
        started.dump()
    );
    assert!(
        !started.stderr.contains("pool timed out"),
        "{}",
        started.dump()
    );
    assert!(
        !started.stderr.contains("hunter2"),
        "the password is in the message: {}",
        started.dump()
    );
}

/// A collector that has stored data, pointed at a SQLite path with a typo
/// (on the command line or in its config file): every command refuses,
/// naming the path and where the URL was set, and no empty database
/// appears there. Creating one is for `migrate`, or the collector's very
/// first `serve` (which every other test does, with an explicit path).
#[test]
fn a_mistyped_sqlite_path_is_refused_and_creates_nothing() {
    let state = tempfile::tempdir().unwrap();
    let mut collector = RunningCollector::start(state.path(), None);
    assert!(
        state.path().join("collector.db").exists(),
        "the first serve creates its database"
    );
    assert_eq!(collector.stop(), Some(0), "{}", collector.log());

    let state_dir = state.path().to_str().unwrap();
    let typo = state.path().join("colector.db");
    let typo_url = format!("sqlite://{}", typo.display());
    let config = state.path().join("collector.toml");
    std::fs::write(&config, format!("database_url = \"{typo_url}\"\n")).unwrap();
    let config_arg = config.to_str().unwrap();
    let serve = ["serve", "--self-signed-tls", "--listen", "127.0.0.1:0"];
    let attempts: [(Vec<&str>, String); 4] = [
        (
            [
                &serve[..],
                &["--state-dir", state_dir, "--database-url", &typo_url],
            ]
            .concat(),
            "set by --database-url".to_owned(),
        ),
        (
            [
                &serve[..],
                &["--state-dir", state_dir, "--config", config_arg],
            ]
            .concat(),
            format!("set by database_url in {config_arg}"),
        ),
        (
            vec![
                "secret",
                "create",
                "--state-dir",
                state_dir,
                "--database-url",
                &typo_url,
            ],
            "set by --database-url".to_owned(),
        ),
        (
            vec!["device", "revoke", "--config", config_arg, "dev_x"],
            format!("set by database_url in {config_arg}"),
        ),
    ];
    for (args, from) in &attempts {
        let refused = run(&binary("palisade-collector"), args, &[]);
        assert_eq!(refused.exit_code, Some(1), "{}", refused.dump());
        for part in [
            format!("the SQLite database {} does not exist", typo.display()),
            from.clone(),
            "`palisade-collector migrate` with the same settings".to_owned(),
        ] {
            assert!(
                refused.stderr.contains(&part),
                "{part:?}\n{}",
                refused.dump()
            );
        }
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }

    let migrated = run(
        &binary("palisade-collector"),
        &[
            "migrate",
            "--state-dir",
            state_dir,
            "--database-url",
            &typo_url,
        ],
        &[],
    );
    assert_eq!(migrated.exit_code, Some(0), "{}", migrated.dump());
    assert!(typo.exists(), "migrate creates it when asked");
}
