//! The collector at start, told to use a database it cannot have: it stops
//! at once with an error that says where it looked, instead of hanging on a
//! connection pool's timeout and then saying only "pool timed out".
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

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
