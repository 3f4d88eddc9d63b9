//! Broken config files, as an operator writes them, given to both programs'
//! commands that read one. Each must exit with the program's config-error
//! code, name every mistake as `FILE:LINE:COLUMN: key:`, print nothing on
//! stdout, panic nowhere, and leave nothing behind: the state directory it
//! was pointed at is not created.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::Path;

use palisade_tests::{Finished, binary, run};

/// One broken file and what each program must say about it. `FILE` in an
/// expected line stands for the file's path. An empty list: the key is not
/// the program's, so the case is not run against it.
struct Case {
    name: &'static str,
    text: &'static [u8],
    agent: &'static [&'static str],
    collector: &'static [&'static str],
}

/// Mistakes that are the same for both programs: the TOML itself, as
/// (case, file, expected line).
fn syntax_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let depth = 100_000;
    let nested = format!("state_dir = {}{}\n", "[".repeat(depth), "]".repeat(depth));
    let cases: [(&str, &[u8], &str); 7] = [
        (
            "an unterminated string",
            b"# comment\nstate_dir = \"/tmp/x\n",
            "FILE:2:20: not valid TOML: invalid character in string",
        ),
        (
            "a key given twice",
            b"state_dir = \"/a\"\nstate_dir = \"/b\"\n",
            "FILE:2:1: not valid TOML: duplicate key: `state_dir`",
        ),
        (
            "a number too large for any integer",
            b"\n\nstate_dir = 99999999999999999999999\n",
            "FILE:3:13: not valid TOML: invalid number",
        ),
        (
            "a key without a value",
            b"state_dir =\n",
            "FILE:1:12: not valid TOML:",
        ),
        (
            "bytes that are not UTF-8 (a Latin-1 editor)",
            b"# r\xe9sum\xe9\nstate_dir = \"/a\"\n",
            "FILE:1:4: not UTF-8 text (byte 0xE9); save the file as UTF-8",
        ),
        (
            "arrays nested 100,000 deep",
            nested.as_bytes(),
            "not valid TOML: input exceeds the maximum allowed nesting depth",
        ),
        (
            "a NUL byte outside a string",
            b"state_dir = \"/a\"\n\0\n",
            "FILE:2:1: not valid TOML:",
        ),
    ];
    cases
        .into_iter()
        .map(|(name, text, expected)| (name, text.to_vec(), expected))
        .collect()
}

/// Mistakes in the values and keys each program takes.
const CASES: &[Case] = &[
    Case {
        name: "an unknown key among good ones",
        text: b"state_dir = \"/tmp/p\"\ncolour = \"red\"\n",
        agent: &["FILE:2:1: colour: unknown key `colour`; expected one of: collector_url,"],
        collector: &["FILE:2:1: colour: unknown key `colour`; expected one of: listen,"],
    },
    Case {
        name: "a number where text belongs",
        text: b"state_dir = 5\n",
        agent: &["FILE:1:13: state_dir: must be a string in quotes, found an integer"],
        collector: &["FILE:1:13: state_dir: expected a string, found integer"],
    },
    Case {
        name: "a table where text belongs",
        text: b"state_dir = { path = \"/a\" }\n",
        agent: &["FILE:1:13: state_dir: must be a string in quotes, found a table"],
        collector: &["FILE:1:13: state_dir: expected a string, found table"],
    },
    Case {
        name: "a relative path",
        text: b"state_dir = \"var/lib/palisade\"\n",
        agent: &["FILE:1:14: state_dir: \"var/lib/palisade\" is a relative path; give an absolute one"],
        collector: &["FILE:1:14: state_dir: \"var/lib/palisade\" is a relative path; give an absolute one"],
    },
    Case {
        name: "every mistake of a file at once",
        text: b"collector_url = \"ftp://x\"\ninterval_seconds = -4\nlog_format = \"xml\"\nworking_hours = \"25:00-26:00\"\n",
        agent: &[
            "has 4 problems",
            "FILE:1:18: collector_url: \"ftp://x\" has scheme \"ftp\"; use https",
            "FILE:2:20: interval_seconds: must be between 60 and 86400, got -4",
            "FILE:3:15: log_format: \"xml\" is not a log format; use \"text\" or \"json\"",
            "FILE:4:18: working_hours: \"25:00-26:00\" is not a window of local time",
        ],
        collector: &[],
    },
    Case {
        name: "a float, infinity and NaN where whole numbers belong",
        text: b"interval_seconds = 1.5\nspool_max_reports = inf\nspool_max_bytes = nan\n",
        agent: &[
            "FILE:1:20: interval_seconds: must be",
            "FILE:2:21: spool_max_reports:",
            "FILE:3:19: spool_max_bytes:",
        ],
        collector: &[],
    },
    Case {
        name: "a CA pin beside a CA file",
        text: b"ca_file = \"/etc/palisade/ca.pem\"\nca_pin = \"sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\n",
        agent: &["FILE:2:11: ca_pin: cannot be set together with ca_file"],
        collector: &[],
    },
    Case {
        name: "an enrollment secret pasted with its line break",
        text: b"enroll_secret = \"pls_9f8e7d6c5b4a \"\n",
        agent: &["FILE:1:18: enroll_secret: has spaces or line breaks at its start or end"],
        collector: &[],
    },
    Case {
        name: "values out of their ranges",
        text: b"max_body_bytes = 5\nclock_skew_seconds = -1\nretention_days = 0\nstale_after_hours = 100000\n",
        agent: &[],
        collector: &[
            "has 4 problems",
            "FILE:1:18: max_body_bytes: must be between 1024 and 16777216, got 5",
            "FILE:2:22: clock_skew_seconds:",
            "FILE:3:18: retention_days:",
            "FILE:4:21: stale_after_hours:",
        ],
    },
    Case {
        name: "an address without a port",
        text: b"listen = \"nowhere\"\n",
        agent: &[],
        collector: &["FILE:1:11: listen: \"nowhere\" is not an address like 127.0.0.1:8443"],
    },
    Case {
        name: "a public URL that is not one",
        text: b"public_url = \"posture.trust.nhs.uk\"\n",
        agent: &[],
        collector: &["FILE:1:15: public_url:"],
    },
    Case {
        name: "a database URL of an unknown kind",
        text: b"database_url = \"mysql://db/palisade\"\n",
        agent: &[],
        collector: &[
            "FILE:1:17: database_url: \"mysql://db/palisade\" is not a sqlite:// or postgres:// URL",
        ],
    },
];

/// The secret in the enroll_secret case, which no message may repeat.
const SECRET: &str = "pls_9f8e7d6c5b4a";

/// The commands of each program that read the config file, given the state
/// directory they must not create. Each runs to the point of reading the
/// file, never further.
fn agent_commands(config: &str, state_dir: &str) -> Vec<Vec<String>> {
    let socket = format!("{state_dir}.sock");
    let common = [
        "--config",
        config,
        "--state-dir",
        state_dir,
        "--socket",
        &socket,
    ];
    let enroll = [
        "enroll",
        "--collector",
        "https://127.0.0.1:1",
        "--secret",
        "pls_test",
    ];
    vec![
        followed_by(&["run"], &common),
        followed_by(&enroll, &common),
    ]
}

fn collector_commands(config: &str, state_dir: &str) -> Vec<Vec<String>> {
    let common = ["--config", config, "--state-dir", state_dir];
    [
        &["serve", "--listen", "127.0.0.1:0"][..],
        &["migrate"],
        &["secret", "create"],
    ]
    .into_iter()
    .map(|command| followed_by(command, &common))
    .collect()
}

fn followed_by(command: &[&str], common: &[&str]) -> Vec<String> {
    command
        .iter()
        .chain(common)
        .map(|s| (*s).to_owned())
        .collect()
}

/// What a program does with a config-file mistake.
struct Program {
    name: &'static str,
    /// The agent's "could not run" code is 2 (its `check` uses 1 and 3 for
    /// verdicts); the collector fails with 1.
    exit_code: i32,
    commands: fn(&str, &str) -> Vec<Vec<String>>,
}

const AGENT: Program = Program {
    name: "palisade-agent",
    exit_code: 2,
    commands: agent_commands,
};
const COLLECTOR: Program = Program {
    name: "palisade-collector",
    exit_code: 1,
    commands: collector_commands,
};

/// Runs every command of `program` on `text` and checks each answer.
/// Returns the number of runs, so the caller can assert the table ran.
fn assert_refused(program: &Program, case: &str, text: &[u8], expected: &[&str]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let state_dir = dir.path().join("state");
    let commands = (program.commands)(config, state_dir.to_str().unwrap());
    for args in &commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let finished = run(&binary(program.name), &args, &[("RUST_BACKTRACE", "1")]);
        let context = || format!("case: {case}\n{}", finished.dump());
        assert_eq!(finished.exit_code, Some(program.exit_code), "{}", context());
        for line in expected {
            let line = line.replace("FILE", config);
            assert!(
                finished.stderr.contains(&line),
                "missing {line:?}\n{}",
                context()
            );
        }
        assert_no_panic(&finished, &context());
        // A mistyped secret is placed, never shown.
        assert!(!finished.stderr.contains(SECRET), "{}", context());
        assert!(finished.stdout.is_empty(), "{}", context());
        assert_nothing_created(&state_dir, &context());
    }
    commands.len()
}

fn assert_no_panic(finished: &Finished, context: &str) {
    for sign in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!finished.stderr.contains(sign), "{context}");
    }
}

fn assert_nothing_created(state_dir: &Path, context: &str) {
    assert!(
        !state_dir.exists(),
        "{} was created\n{context}",
        state_dir.display()
    );
}

#[test]
fn toml_mistakes_are_placed_by_line_and_column_by_both_programs() {
    let cases = syntax_cases();
    let mut runs = 0;
    for (name, text, expected) in &cases {
        for program in [&AGENT, &COLLECTOR] {
            runs += assert_refused(program, name, text, &[expected]);
        }
    }
    assert_eq!(runs, cases.len() * 5, "every case ran on every command");
}

#[test]
fn value_and_key_mistakes_name_file_line_and_key() {
    let mut runs = 0;
    for case in CASES {
        for (program, expected) in [(&AGENT, case.agent), (&COLLECTOR, case.collector)] {
            if !expected.is_empty() {
                runs += assert_refused(program, case.name, case.text, expected);
            }
        }
    }
    // 8 agent cases on 2 commands, 8 collector cases on 3.
    assert_eq!(runs, 8 * 2 + 8 * 3, "every case ran on every command");
}

#[test]
fn a_config_file_that_cannot_be_read_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("agent.tom");
    let missing = missing.to_str().unwrap();
    let state_dir = dir.path().join("state");
    for (program, path, expected) in [
        (
            &AGENT,
            missing,
            format!("cannot read config file {missing}: No such file"),
        ),
        (
            &COLLECTOR,
            missing,
            format!("cannot read config file {missing}: No such file"),
        ),
        (
            &AGENT,
            "/",
            "cannot read config file /: Is a directory".to_owned(),
        ),
        (
            &COLLECTOR,
            "/",
            "cannot read config file /: Is a directory".to_owned(),
        ),
    ] {
        for args in (program.commands)(path, state_dir.to_str().unwrap()) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let finished = run(&binary(program.name), &args, &[]);
            assert_eq!(
                finished.exit_code,
                Some(program.exit_code),
                "{}",
                finished.dump()
            );
            assert!(finished.stderr.contains(&expected), "{}", finished.dump());
            assert_no_panic(&finished, &finished.dump());
            assert_nothing_created(&state_dir, &finished.dump());
        }
    }
}

#[test]
fn a_broken_policy_file_named_by_the_collector_config_is_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[policy]\nid = \"p\"\nversion = 1\n\n[rules.screen_lock]\nmode = \"enforce\"\nmax_idle_seconds = -5\n",
    )
    .unwrap();
    let config = format!("policy_file = \"{}\"\n", policy.display());
    let expected = format!(
        "{}:7:20: rules.screen_lock.max_idle_seconds: must be between 1 and 86400, got -5",
        policy.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("collector.toml");
    std::fs::write(&config_path, &config).unwrap();
    let state_dir = dir.path().join("state");
    let finished = run(
        &binary("palisade-collector"),
        &[
            "serve",
            "--self-signed-tls",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config_path.to_str().unwrap(),
            "--state-dir",
            state_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(finished.exit_code, Some(1), "{}", finished.dump());
    assert!(finished.stderr.contains(&expected), "{}", finished.dump());
    // Before, the database, the signing key and the demo certificate were
    // made first, and the error had no file name in it.
    assert_nothing_created(&state_dir, &finished.dump());
}
