//! The databases the collector tests run against: SQLite in the test's
//! state directory, and a fresh database on the real PostgreSQL server that
//! `tests/run` starts (its URL in `PALISADE_TEST_POSTGRES_URL`).

use std::path::Path;

use crate::run;

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database URL for one test: `None` means the collector's default SQLite
/// file in its state directory; for PostgreSQL, a new database with a unique
/// name on the test server.
pub fn database_for(backend: Backend, name_hint: &str) -> Option<String> {
    match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres_database(name_hint)),
    }
}

fn fresh_postgres_database(name_hint: &str) -> String {
    let server = std::env::var("PALISADE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "PALISADE_TEST_POSTGRES_URL is not set: run the tests with tests/run, which starts a \
             throwaway PostgreSQL server and sets it"
        )
    });
    fresh_postgres_database_on(&server, name_hint)
}

/// Creates a new database with a unique name on the PostgreSQL server at
/// `server` (a `postgres://…/postgres` URL) and returns its URL.
pub fn fresh_postgres_database_on(server: &str, name_hint: &str) -> String {
    let suffix: String = (0..8)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect();
    // PostgreSQL silently truncates identifiers at 63 bytes; keep well under.
    let hint: String = name_hint.chars().take(32).collect();
    let name: String = format!("t_{hint}_{suffix}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let psql = ["/usr/bin/psql", "/usr/local/bin/psql"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| panic!("psql is not installed (tests/run installs postgresql)"));
    // The name is made of [a-z0-9_] above, so quoting it is enough.
    let created = run(
        Path::new(psql),
        &[
            server,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE DATABASE \"{name}\""),
        ],
        &[],
    );
    assert_eq!(created.exit_code, Some(0), "{}", created.dump());
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    format!("{base}/{name}")
}

/// Declares `mod sqlite` and `mod postgres`, each with one `#[tokio::test]`
/// per named scenario, which calls `scenario(Backend::…)` of the file it is
/// used in: the same scenarios on both stores, told apart by test name
/// (`sqlite::x`, `postgres::x`).
#[macro_export]
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $scenario() {
                super::$scenario($crate::databases::Backend::Sqlite).await
            } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $scenario() {
                super::$scenario($crate::databases::Backend::Postgres).await
            } )*
        }
    };
}
