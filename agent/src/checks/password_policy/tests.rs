//! Parser tests against the captured files in
//! `agent/tests/fixtures/linux/password_policy/` (see its SOURCES.md), the
//! length arithmetic against numbers measured with libpwquality 1.4.5, and a
//! table of evaluator cases over every branch.

use std::collections::BTreeMap;
use std::path::Path;

use palisade_shared::policy::{PasswordPolicy, RuleSettings};
use palisade_shared::report::{CheckStatus, Mode};

use super::pwquality::{PWQUALITY_MAIN_FILE, brute_force_shortest_length};
use super::*;

pub(super) const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/linux/password_policy"
);

pub(super) fn fixture_host(scenario: &str) -> Host {
    Host::with_root(format!("{FIXTURES}/{scenario}"))
}

fn fixture_text(scenario: &str, path: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{scenario}{path}")).unwrap()
}

pub(super) fn policy(
    min_length: u32,
    min_classes: Option<u32>,
    max_age_days: Option<u32>,
) -> PasswordPolicy {
    PasswordPolicy {
        settings: RuleSettings {
            mode: Mode::Nudge,
            grace_days: 14,
        },
        min_length,
        min_classes,
        max_age_days,
        manage_pam: false,
    }
}

pub(super) fn baseline() -> PasswordPolicy {
    policy(12, None, None)
}

// ---------------------------------------------------------------------------
// login.defs

#[test]
fn debian_login_defs_has_max_days_99999_and_no_active_min_len() {
    let defs = parse_login_defs(&fixture_text("debian-12-default", "/etc/login.defs"));
    let max_days = defs.get("PASS_MAX_DAYS").unwrap();
    assert_eq!(max_days.raw, "99999");
    assert_eq!(max_days.number(), Some(99999));
    assert_eq!(defs.get("PASS_MIN_DAYS").unwrap().number(), Some(0));
    assert_eq!(defs.get("PASS_WARN_AGE").unwrap().number(), Some(7));
    // Present only as a comment under "OBSOLETED BY PAM".
    assert_eq!(defs.get("PASS_MIN_LEN"), None);
}

#[test]
fn login_defs_comment_lines_rewritten_by_a_script_are_skipped() {
    // The b2br script also rewrote `#	PASS_MAX_DAYS   30` in the comments.
    let text = fixture_text("debian-12-b2br-script", "/etc/login.defs");
    assert!(text.contains("#\tPASS_MAX_DAYS"));
    let defs = parse_login_defs(&text);
    let max_days = defs.get("PASS_MAX_DAYS").unwrap();
    assert_eq!(max_days.number(), Some(30));
    assert!(
        !text
            .lines()
            .nth(max_days.line - 1)
            .unwrap()
            .starts_with('#')
    );
    assert_eq!(defs.get("PASS_MIN_DAYS").unwrap().number(), Some(2));
}

#[test]
fn fedora_legacy_login_defs_has_an_active_min_len() {
    let defs = parse_login_defs(&fixture_text("fedora-legacy-login-defs", "/etc/login.defs"));
    assert_eq!(defs.get("PASS_MIN_LEN").unwrap().number(), Some(5));
    let rhcos = parse_login_defs(&fixture_text("rhcos-4-isms-hardened", "/etc/login.defs"));
    assert_eq!(rhcos.get("PASS_MAX_DAYS").unwrap().number(), Some(90));
}

#[test]
fn login_defs_values_are_read_as_shadow_reads_them() {
    let cases = [
        ("PASS_MAX_DAYS 90", Some(90)),
        ("  PASS_MAX_DAYS\t\t90   ", Some(90)),
        ("PASS_MAX_DAYS \"60\"", Some(60)),
        // getdef.c keeps a trailing comment in the value: not a number.
        ("PASS_MAX_DAYS 90 # ninety", None),
        ("PASS_MAX_DAYS 0x10", Some(16)),
        ("PASS_MAX_DAYS 010", Some(8)),
        ("PASS_MAX_DAYS -1", Some(-1)),
        ("PASS_MAX_DAYS ninety", None),
        ("PASS_MAX_DAYS 99999999999", None),
    ];
    for (line, expected) in cases {
        let defs = parse_login_defs(line);
        assert_eq!(
            defs.get("PASS_MAX_DAYS").and_then(LoginDefsValue::number),
            expected,
            "{line:?}"
        );
    }
    // A lone name is skipped; the last of two values wins.
    assert_eq!(parse_login_defs("PASS_MAX_DAYS").get("PASS_MAX_DAYS"), None);
    let twice = parse_login_defs("PASS_MAX_DAYS 30\nPASS_MAX_DAYS 45\n");
    assert_eq!(twice.get("PASS_MAX_DAYS").unwrap().number(), Some(45));
    assert_eq!(twice.get("PASS_MAX_DAYS").unwrap().line, 2);
}

// ---------------------------------------------------------------------------
// pwquality.conf

#[test]
fn stock_pwquality_conf_sets_nothing_and_its_comments_state_the_defaults() {
    let text = fixture_text("debian-12-pwquality", PWQUALITY_MAIN_FILE);
    assert_eq!(parse_pwquality_conf(&text), Vec::<ConfLine>::new());
    // The defaults this rule assumes are the ones the shipped file documents.
    for documented in [
        "# minlen = 8",
        "# dcredit = 0",
        "# ucredit = 0",
        "# lcredit = 0",
    ] {
        assert!(text.contains(documented), "{documented}");
    }
    for documented in ["# ocredit = 0", "# minclass = 0", "# enforcing = 1"] {
        assert!(text.contains(documented), "{documented}");
    }
    let defaults = PwqualitySettings::default();
    assert_eq!(
        (
            defaults.minlen.value,
            defaults.credits(),
            defaults.minclass.value,
            defaults.enforcing.value
        ),
        (8, [0, 0, 0, 0], 0, 1)
    );
}

#[test]
fn hardened_pwquality_conf_parses_minlen_and_negative_credits() {
    let path = PWQUALITY_MAIN_FILE.to_owned();
    let text = fixture_text("debian-12-hardn-xdr-stig", PWQUALITY_MAIN_FILE);
    let config = read_pwquality_files(&[(path.clone(), text)]);
    assert_eq!(config.stopped_at, None);
    assert_eq!(config.settings.minlen.value, 14);
    assert!(
        matches!(&config.settings.minlen.source, SettingSource::File { path: p, .. } if *p == path)
    );
    assert_eq!(config.settings.credits(), [-1, -1, -1, -1]);
    assert_eq!(shortest_accepted_length(&config.settings), 14);
}

#[test]
fn born2beroot_bare_enforce_for_root_is_a_flag() {
    let text = fixture_text("debian-born2beroot", PWQUALITY_MAIN_FILE);
    let config = read_pwquality_files(&[(PWQUALITY_MAIN_FILE.to_owned(), text)]);
    assert_eq!(config.stopped_at, None);
    assert!(config.settings.enforce_for_root.value);
    assert_eq!(config.settings.minlen.value, 10);
    assert_eq!(config.settings.credits(), [-1, -1, -1, 0]);
}

#[test]
fn cis_drop_ins_are_read_in_order_through_the_probe() {
    let facts = probe_linux(&fixture_host("debian-12-cis-ansible-lockdown"));
    let config = &facts.pwquality.config;
    assert_eq!(
        config.files_read,
        vec![
            "/etc/security/pwquality.conf.d/50-pwcomplexity.conf",
            "/etc/security/pwquality.conf.d/50-pwlength.conf",
            "/etc/security/pwquality.conf.d/50-pwroot.conf",
            "/etc/security/pwquality.conf",
        ]
    );
    assert_eq!(config.settings.minlen.value, 14);
    assert_eq!(
        config.settings.minlen.source,
        SettingSource::File {
            path: "/etc/security/pwquality.conf.d/50-pwlength.conf".into(),
            line: 3
        }
    );
    assert_eq!(config.settings.minclass.value, 4);
    assert!(config.settings.enforce_for_root.value);
}

#[test]
fn conf_lines_split_like_libpwquality() {
    // Each of these was fed to libpwquality 1.4.5 (Python binding) too.
    let value_of = |line: &str| read_pwquality_files(&[("f".into(), format!("{line}\n"))]);
    for line in [
        "minlen=14",
        "minlen= 14",
        "minlen =14",
        "minlen 14",
        "minlen\t=\t14\t# c",
        "MINLEN = +14",
        "minlen = 014",
    ] {
        let config = value_of(line);
        assert_eq!(
            (config.settings.minlen.value, config.stopped_at),
            (14, None),
            "{line:?}"
        );
    }
    for line in [
        "minlen == 14",
        "minlen 14 15",
        "minlen = 14=",
        "minlen = 0x10",
        "minlen = ",
        "enforcing",
        "minlen = 99999999999",
        "dcredit = 1.5",
    ] {
        let config = value_of(line);
        assert_eq!(config.settings.minlen.value, 8, "{line:?}");
        assert!(config.stopped_at.is_some(), "{line:?}");
    }
    // Clamps: minlen at least 6, minclass at most 4.
    assert_eq!(value_of("minlen = 3").settings.minlen.value, 6);
    assert_eq!(value_of("minclass = 7").settings.minclass.value, 4);
    // A value after `enforce_for_root` changes nothing: the flag is on.
    assert!(
        value_of("enforce_for_root = 0")
            .settings
            .enforce_for_root
            .value
    );
}

#[test]
fn an_error_stops_libpwquality_reading_this_and_later_files() {
    let config = read_pwquality_files(&[
        (
            "/d/a.conf".into(),
            "minclass = 2\nbogus = 1\nminlen = 14\n".into(),
        ),
        (PWQUALITY_MAIN_FILE.into(), "minlen = 10\n".into()),
    ]);
    assert_eq!(config.settings.minclass.value, 2);
    assert_eq!(config.settings.minlen.value, 8);
    assert_eq!(
        config.stopped_at.as_deref(),
        Some("/d/a.conf line 2: unknown setting \"bogus\"")
    );
    assert_eq!(config.files_read, vec!["/d/a.conf"]);

    let long_line = format!("minlen = 14 {}\nminclass = 2\n", " ".repeat(1100));
    let config = read_pwquality_files(&[("f".into(), long_line)]);
    assert_eq!(
        (config.settings.minlen.value, config.settings.minclass.value),
        (8, 0)
    );
    assert!(config.stopped_at.unwrap().contains("longer than 1023"));
}

#[test]
fn the_main_file_is_read_after_the_drop_ins_and_wins() {
    let order = pwquality_file_order(&[
        "b.conf".into(),
        "README".into(),
        "a.conf".into(),
        "x.conf.rpmsave".into(),
        ".hidden.conf".into(),
    ]);
    assert_eq!(
        order,
        vec![
            "/etc/security/pwquality.conf.d/.hidden.conf",
            "/etc/security/pwquality.conf.d/a.conf",
            "/etc/security/pwquality.conf.d/b.conf",
            "/etc/security/pwquality.conf",
        ]
    );
    let config = read_pwquality_files(&[
        (
            "/etc/security/pwquality.conf.d/a.conf".into(),
            "minlen = 14\n".into(),
        ),
        (PWQUALITY_MAIN_FILE.into(), "minlen = 9\n".into()),
    ]);
    assert_eq!(config.settings.minlen.value, 9);
}

#[test]
fn pam_arguments_override_the_files() {
    // The b2br script's line; its pwquality.conf is the stock one.
    let stack = stack_of("debian-12-b2br-script", DEBIAN_PASSWORD_STACK);
    let line = stack
        .entries
        .iter()
        .find(|e| e.module_name() == Some("pam_pwquality.so"))
        .unwrap();
    let base = read_pwquality_files(&[(
        PWQUALITY_MAIN_FILE.into(),
        "minlen = 14\nucredit = 2\n".into(),
    )])
    .settings;
    let outcome = apply_pam_arguments(&base, line.arguments(), &line.file, line.line);
    assert_eq!(outcome.settings.minlen.value, 10);
    assert_eq!(
        outcome.settings.minlen.source,
        SettingSource::PamArgument {
            file: DEBIAN_PASSWORD_STACK.into(),
            line: 25
        }
    );
    assert_eq!(outcome.settings.credits(), [-1, -1, 0, 0]);
    assert!(outcome.settings.enforce_for_root.value);
    // reject_username belongs to the module; nothing was ignored.
    assert_eq!(outcome.ignored, Vec::<String>::new());
    assert_eq!(shortest_accepted_length(&outcome.settings), 10);
}

#[test]
fn broken_pam_arguments_are_ignored_and_the_rest_apply() {
    let arguments: Vec<String> = [
        "ucredit=x",
        "minlen=20abc",
        "minlen=13",
        "retry",
        "enforcing=0",
        "ENFORCE_FOR_ROOT",
        "conf=/etc/other.conf",
        "debug",
        "use_authtok",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let outcome = apply_pam_arguments(&PwqualitySettings::default(), &arguments, "f", 1);
    assert_eq!(outcome.settings.minlen.value, 13);
    assert_eq!(outcome.settings.ucredit.value, 0);
    assert_eq!(outcome.settings.enforcing.value, 0);
    assert!(outcome.settings.enforce_for_root.value);
    assert_eq!(outcome.ignored.len(), 3, "{:?}", outcome.ignored);
    assert_eq!(outcome.custom_config.as_deref(), Some("/etc/other.conf"));
}

// ---------------------------------------------------------------------------
// The shortest accepted password

/// Measured with libpwquality 1.4.5 (Debian 12 `python3-pwquality`,
/// `dictcheck = 0`): the shortest password of distinct, non-palindromic
/// characters that `PWQSettings.check` accepted, trying every mix of classes.
const MEASURED_WITH_LIBPWQUALITY: [(&[(&str, i64)], i64); 26] = [
    (&[], 8),
    (&[("minlen", 11)], 11),
    (&[("minlen", 12)], 12),
    (&[("minlen", 13)], 13),
    (&[("minlen", 3)], 6),
    (&[("minlen", 12), ("dcredit", 1)], 11),
    (
        &[
            ("minlen", 12),
            ("dcredit", 1),
            ("ucredit", 1),
            ("lcredit", 1),
            ("ocredit", 1),
        ],
        8,
    ),
    (
        &[
            ("minlen", 12),
            ("dcredit", 2),
            ("ucredit", 2),
            ("lcredit", 2),
            ("ocredit", 2),
        ],
        6,
    ),
    (
        &[
            ("minlen", 12),
            ("dcredit", 3),
            ("ucredit", 3),
            ("lcredit", 3),
            ("ocredit", 3),
        ],
        6,
    ),
    (
        &[
            ("minlen", 9),
            ("dcredit", 1),
            ("ucredit", 1),
            ("lcredit", 1),
            ("ocredit", 1),
        ],
        5,
    ),
    (
        &[
            ("minlen", 14),
            ("dcredit", -1),
            ("ucredit", -1),
            ("lcredit", -1),
            ("ocredit", -1),
        ],
        14,
    ),
    (&[("minlen", 8), ("dcredit", -1), ("ucredit", 2)], 6),
    (
        &[
            ("minlen", 8),
            ("dcredit", -3),
            ("ucredit", -3),
            ("lcredit", 5),
        ],
        7,
    ),
    (&[("minlen", 6), ("dcredit", 1)], 5),
    (&[("minlen", 6), ("dcredit", 4)], 3),
    (&[("minlen", 12), ("minclass", 4)], 12),
    (
        &[
            ("minlen", 6),
            ("minclass", 4),
            ("dcredit", -2),
            ("ucredit", -2),
            ("lcredit", -2),
        ],
        7,
    ),
    (
        &[
            ("minlen", 20),
            ("dcredit", -2),
            ("ucredit", -2),
            ("lcredit", 5),
            ("ocredit", 5),
        ],
        12,
    ),
    (&[("minlen", 10), ("dcredit", -4), ("ucredit", -4)], 10),
    (
        &[
            ("minlen", 6),
            ("dcredit", -3),
            ("ucredit", -3),
            ("lcredit", -3),
        ],
        9,
    ),
    (
        &[
            ("minlen", 12),
            ("dcredit", -1),
            ("ucredit", 4),
            ("ocredit", -3),
            ("minclass", 4),
        ],
        9,
    ),
    (
        &[
            ("minlen", 7),
            ("lcredit", 4),
            ("ocredit", -1),
            ("minclass", 3),
        ],
        5,
    ),
    (&[("minlen", 6), ("dcredit", 3), ("minclass", 3)], 4),
    (&[("minlen", 13), ("lcredit", 3), ("minclass", 1)], 10),
    (&[("minlen", 11), ("ocredit", 3), ("minclass", 3)], 8),
    (
        &[
            ("minlen", 14),
            ("dcredit", -3),
            ("ucredit", 2),
            ("lcredit", -3),
        ],
        12,
    ),
];

fn settings_with(values: &[(&str, i64)]) -> PwqualitySettings {
    let mut settings = PwqualitySettings::default();
    for (name, value) in values {
        settings
            .apply(name, &value.to_string(), SettingSource::Default)
            .unwrap();
    }
    settings
}

#[test]
fn shortest_length_matches_libpwquality() {
    for (values, measured) in MEASURED_WITH_LIBPWQUALITY {
        assert_eq!(
            shortest_accepted_length(&settings_with(values)),
            measured,
            "{values:?}"
        );
    }
}

#[test]
fn shortest_length_matches_a_brute_force_search_over_small_settings() {
    for minlen in [6, 7, 9, 12, 15] {
        for credit_a in -2..=3 {
            for credit_b in -2..=3 {
                for minclass in 0..=4 {
                    let settings = settings_with(&[
                        ("minlen", minlen),
                        ("dcredit", credit_a),
                        ("ucredit", credit_b),
                        ("ocredit", credit_a - credit_b),
                        ("minclass", minclass),
                    ]);
                    assert_eq!(
                        shortest_accepted_length(&settings),
                        brute_force_shortest_length(&settings),
                        "minlen {minlen} d {credit_a} u {credit_b} o {} minclass {minclass}",
                        credit_a - credit_b
                    );
                }
            }
        }
    }
}

#[test]
fn shortest_length_of_huge_settings_is_instant() {
    let settings = settings_with(&[("minlen", 2_000_000_000), ("dcredit", 2_000_000_000)]);
    assert_eq!(shortest_accepted_length(&settings), 1_000_000_000);
}

// ---------------------------------------------------------------------------
// PAM files

fn stack_of(scenario: &str, root: &str) -> PamStack {
    let host = fixture_host(scenario);
    load_password_stack(root, &mut |path: &str| read_in_root(&host, path))
}

fn memory_stack(root: &str, files: &[(&str, &str)]) -> PamStack {
    let files: BTreeMap<String, String> = files
        .iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect();
    load_password_stack(
        root,
        &mut |path: &str| match files.get(path).map(String::as_str) {
            Some("<unreadable>") => Err("Permission denied (os error 13)".into()),
            other => Ok(other.map(str::to_owned)),
        },
    )
}

pub(super) fn modules(stack: &PamStack) -> Vec<&str> {
    stack
        .entries
        .iter()
        .map(|e| e.module_name().unwrap_or("-"))
        .collect()
}

#[test]
fn debian_pwquality_stack_parses_with_bracket_controls() {
    let stack = stack_of("debian-12-pwquality", DEBIAN_PASSWORD_STACK);
    assert_eq!(stack.problems, Vec::<String>::new());
    assert_eq!(
        modules(&stack),
        [
            "pam_pwquality.so",
            "pam_unix.so",
            "pam_deny.so",
            "pam_permit.so"
        ]
    );
    let pwquality = &stack.entries[0];
    assert_eq!(pwquality.line, 25);
    assert_eq!(pwquality.control.text, "requisite");
    assert_eq!(pwquality.control.action_for("authtok_err"), PamAction::Die);
    assert_eq!(pwquality.arguments(), ["retry=3"]);
    let unix = &stack.entries[1];
    assert_eq!(unix.control.text, "[success=1 default=ignore]");
    assert_eq!(unix.control.action_for("success"), PamAction::Jump(1));
    assert_eq!(unix.control.action_for("authtok_err"), PamAction::Ignore);
    assert_eq!(
        unix.arguments(),
        ["obscure", "use_authtok", "try_first_pass", "yescrypt"]
    );
}

#[test]
fn fedora_stack_keeps_password_lines_only() {
    let stack = stack_of("fedora-36-authselect-sssd", "/etc/pam.d/system-auth");
    assert_eq!(
        modules(&stack),
        [
            "pam_pwquality.so",
            "pam_unix.so",
            "pam_sss.so",
            "pam_deny.so"
        ]
    );
    assert_eq!(stack.entries[0].arguments(), ["local_users_only"]);
    assert_eq!(
        stack.entries[1].control.action_for("success"),
        PamAction::Done
    );
}

#[test]
fn born2beroot_first_pwquality_line_can_be_jumped_the_second_cannot() {
    let stack = stack_of("debian-born2beroot", DEBIAN_PASSWORD_STACK);
    assert_eq!(
        modules(&stack)[..3],
        ["pam_succeed_if.so", "pam_pwquality.so", "pam_pwquality.so"]
    );
    assert_eq!(stack.entries[0].arguments(), ["user", "=", "root"]);
    let skipped = why_entry_may_be_skipped(&stack.entries, 1).unwrap();
    assert!(skipped.contains("can jump over it on success"), "{skipped}");
    assert_eq!(why_entry_may_be_skipped(&stack.entries, 2), None);
}

#[test]
fn at_include_is_followed_from_the_passwd_service() {
    let stack = stack_of("extra/debian-12-passwd-include", "/etc/pam.d/passwd");
    assert_eq!(stack.problems, Vec::<String>::new());
    assert_eq!(
        stack.files_read,
        ["/etc/pam.d/passwd", "/etc/pam.d/common-password"]
    );
    assert_eq!(modules(&stack)[0], "pam_pwquality.so");
    assert_eq!(stack.entries[0].file, "/etc/pam.d/common-password");
}

#[test]
fn pam_line_syntax() {
    let text = "# comment\n\
                PASSWORD  Required pam_a.so one \\\n  two # trailing comment\n\
                -password optional pam_b.so arg=[a b \\] c] x\n\
                password [success=2 new_authtok_reqd=done default=ignore] /lib/security/pam_c.so\n\
                password reqired pam_d.so\n\
                pasword required pam_e.so\n\
                auth required pam_f.so\n";
    let lines = parse_pam_file(text);
    assert_eq!(lines.len(), 6);
    match &lines[0].parsed {
        ParsedPamLine::Module {
            module_type,
            control,
            arguments,
            ..
        } => {
            assert_eq!(module_type, "password");
            assert_eq!(control.action_for("authtok_err"), PamAction::Bad);
            assert_eq!(arguments, &["one", "two"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(lines[0].line, 2);
    match &lines[1].parsed {
        ParsedPamLine::Module {
            skip_if_missing,
            arguments,
            ..
        } => {
            assert!(*skip_if_missing);
            assert_eq!(arguments, &["arg=a b ] c", "x"]);
        }
        other => panic!("{other:?}"),
    }
    match &lines[2].parsed {
        ParsedPamLine::Module { control, path, .. } => {
            assert_eq!(path, "/lib/security/pam_c.so");
            assert_eq!(control.action_for("success"), PamAction::Jump(2));
            assert_eq!(control.action_for("new_authtok_reqd"), PamAction::Done);
            assert_eq!(control.action_for("maxtries"), PamAction::Ignore);
        }
        other => panic!("{other:?}"),
    }
    // A misspelt control is a bracket list PAM cannot read: every code is bad.
    match &lines[3].parsed {
        ParsedPamLine::Module { control, .. } => {
            assert_eq!(control.action_for("success"), PamAction::Bad);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&lines[4].parsed, ParsedPamLine::Broken { .. }));
    let stack = memory_stack("/etc/pam.d/x", &[("/etc/pam.d/x", text)]);
    assert_eq!(
        modules(&stack),
        ["pam_a.so", "pam_b.so", "pam_c.so", "pam_d.so"]
    );
}

#[test]
fn include_and_substack_pull_in_password_lines_of_the_named_file() {
    let stack = memory_stack(
        "/etc/pam.d/passwd",
        &[
            (
                "/etc/pam.d/passwd",
                "auth include system-auth\npassword substack system-auth\n\
                 password include /etc/custom-password\n",
            ),
            (
                "/etc/pam.d/system-auth",
                "auth required pam_env.so\npassword requisite pam_pwquality.so\n",
            ),
            ("/etc/custom-password", "password required pam_unix.so\n"),
        ],
    );
    assert_eq!(stack.problems, Vec::<String>::new());
    // The substack's own slot counts for jumps, as in libpam.
    assert_eq!(modules(&stack), ["-", "pam_pwquality.so", "pam_unix.so"]);
    assert!(matches!(
        stack.entries[0].kind,
        PamEntryKind::Substack { .. }
    ));
}

#[test]
fn include_falls_back_to_usr_lib_pam_d() {
    let stack = memory_stack(
        "/etc/pam.d/passwd",
        &[
            ("/etc/pam.d/passwd", "password include common-password\n"),
            (
                "/usr/lib/pam.d/common-password",
                "password requisite pam_pwquality.so\n",
            ),
        ],
    );
    assert_eq!(stack.problems, Vec::<String>::new());
    assert_eq!(modules(&stack), ["pam_pwquality.so"]);
}

#[test]
fn missing_unreadable_and_looping_includes_are_problems() {
    let missing = memory_stack("/r", &[("/r", "@include nowhere\n")]);
    assert!(missing.problems[0].contains("includes nowhere, which does not exist"));
    let unreadable = memory_stack(
        "/r",
        &[
            ("/r", "@include locked\n"),
            ("/etc/pam.d/locked", "<unreadable>"),
        ],
    );
    assert!(unreadable.problems[0].contains("Permission denied"));
    let looping = memory_stack("/etc/pam.d/a", &[("/etc/pam.d/a", "@include a\n")]);
    assert!(looping.problems[0].contains("deeper than 16"));
    let fan_out = "@include b\n".repeat(70);
    let wide = memory_stack(
        "/etc/pam.d/a",
        &[
            ("/etc/pam.d/a", &fan_out),
            ("/etc/pam.d/b", "password required pam_x.so\n"),
        ],
    );
    assert!(wide.problems[0].contains("more than 64 files"));
    let absent_root = memory_stack("/etc/pam.d/a", &[]);
    assert_eq!(absent_root.problems, ["/etc/pam.d/a does not exist"]);
}

#[test]
fn skips_count_jumps_and_sufficient_lines() {
    let stack = |text: &str| memory_stack("/r", &[("/r", text)]);
    let last = |s: &PamStack| why_entry_may_be_skipped(&s.entries, s.entries.len() - 1);
    // A jump of 1 from two lines before lands on the pwquality line.
    let lands = stack(
        "password [success=1 default=ignore] pam_a.so\npassword required pam_b.so\n\
         password requisite pam_pwquality.so\n",
    );
    assert_eq!(last(&lands), None);
    let over = stack(
        "password [success=2 default=ignore] pam_a.so\npassword required pam_b.so\n\
         password requisite pam_pwquality.so\n",
    );
    assert!(last(&over).unwrap().contains("jump over it"));
    let sufficient = stack("password sufficient pam_sss.so\npassword requisite pam_pwquality.so\n");
    assert!(last(&sufficient).unwrap().contains("end the stack"));
    let after = stack("password requisite pam_pwquality.so\npassword sufficient pam_unix.so\n");
    assert_eq!(why_entry_may_be_skipped(&after.entries, 0), None);
}

// ---------------------------------------------------------------------------
// Probe details

#[test]
fn probe_reads_the_captured_trees() {
    let debian = probe_linux(&fixture_host("debian-12-default"));
    assert!(
        matches!(&debian.login_defs, FileState::Read(defs) if defs.get("PASS_MAX_DAYS").is_some())
    );
    assert_eq!(debian.pwquality.config.files_read, Vec::<String>::new());
    let PamFacts::Stacks { family, stacks } = &debian.pam else {
        panic!("{:?}", debian.pam)
    };
    assert_eq!(*family, PamFamily::Debian);
    let services: Vec<&str> = stacks.iter().filter_map(|s| s.service.as_deref()).collect();
    assert_eq!(services, ["passwd", "chpasswd"]);
    assert!(
        stacks
            .iter()
            .all(|s| s.files_read.last().map(String::as_str) == Some(DEBIAN_PASSWORD_STACK)),
        "{stacks:?}"
    );

    let fedora = probe_linux(&fixture_host("fedora-36-authselect-sssd"));
    assert_eq!(fedora.login_defs, FileState::Absent);
    let PamFacts::Stacks { family, stacks } = &fedora.pam else {
        panic!("{:?}", fedora.pam)
    };
    assert_eq!(*family, PamFamily::RedHat);
    let roots: Vec<&str> = stacks.iter().map(|s| s.root.as_str()).collect();
    assert_eq!(roots, ["/etc/pam.d/passwd", "/etc/pam.d/chpasswd"]);
    assert!(
        stacks[0]
            .files_read
            .contains(&REDHAT_PASSWORD_STACKS[0].to_owned()),
        "passwd takes system-auth as a substack: {:?}",
        stacks[0].files_read
    );

    let none = probe_linux(&fixture_host("fedora-legacy-login-defs"));
    assert_eq!(none.pam, PamFacts::NoPasswordStack);
}

/// Writes `/etc/pam.d/passwd` and `chpasswd` holding `line`, as every
/// system has them (Debian's: `@include common-password`).
fn write_services(root: &Path, line: &str) {
    for service in ["passwd", "chpasswd"] {
        std::fs::write(root.join("etc/pam.d").join(service), format!("{line}\n")).unwrap();
    }
}

#[test]
fn unreadable_files_become_facts_with_their_path() {
    // A directory where a file should be: reading fails with an error that
    // is not "not found", as permission denied would for a non-root agent.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/login.defs")).unwrap();
    std::fs::create_dir_all(root.path().join("etc/pam.d/common-password")).unwrap();
    write_services(root.path(), "@include common-password");
    let facts = probe_linux(&Host::with_root(root.path()));
    assert!(matches!(&facts.login_defs, FileState::Unreadable(_)));
    let verdict = evaluate_linux(&facts, &policy(12, None, Some(90)));
    assert_eq!(verdict.status, CheckStatus::Unknown, "{}", verdict.summary);
    assert!(
        verdict
            .summary
            .contains("cannot read /etc/pam.d/common-password"),
        "{}",
        verdict.summary
    );
    assert!(
        verdict.summary.contains("cannot read /etc/login.defs"),
        "{}",
        verdict.summary
    );
}

#[cfg(unix)]
#[test]
fn absolute_symlinks_are_followed_inside_the_host_root() {
    // Fedora's layout: /etc/pam.d/system-auth -> /etc/authselect/system-auth.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/pam.d")).unwrap();
    std::fs::create_dir_all(root.path().join("etc/authselect")).unwrap();
    std::fs::write(
        root.path().join("etc/authselect/system-auth"),
        fixture_text("fedora-36-authselect-sssd", "/etc/pam.d/system-auth"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "/etc/authselect/system-auth",
        root.path().join("etc/pam.d/system-auth"),
    )
    .unwrap();
    write_services(root.path(), "password substack system-auth");
    let facts = probe_linux(&Host::with_root(root.path()));
    let PamFacts::Stacks { stacks, .. } = &facts.pam else {
        panic!("{:?}", facts.pam)
    };
    assert_eq!(stacks.len(), 2);
    assert_eq!(modules(&stacks[0])[0], "-", "the substack line");
    assert_eq!(modules(&stacks[0])[1], "pam_pwquality.so");
}

#[test]
fn optional_pwquality_lines_count_only_when_the_module_is_installed() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/pam.d")).unwrap();
    std::fs::write(
        root.path().join("etc/pam.d/common-password"),
        "-password requisite pam_pwquality.so minlen=14\n\
         password [success=1 default=ignore] pam_unix.so use_authtok\n\
         password requisite pam_deny.so\npassword required pam_permit.so\n",
    )
    .unwrap();
    write_services(root.path(), "@include common-password");
    let host = Host::with_root(root.path());
    let before = evaluate_linux(&probe_linux(&host), &baseline());
    assert_eq!(before.status, CheckStatus::Fail, "{}", before.summary);
    assert!(
        before.summary.contains("not enforced by PAM"),
        "{}",
        before.summary
    );

    let security = root.path().join("usr/lib/x86_64-linux-gnu/security");
    std::fs::create_dir_all(&security).unwrap();
    std::fs::write(security.join("pam_pwquality.so"), "").unwrap();
    let after = evaluate_linux(&probe_linux(&host), &baseline());
    assert_eq!(after.status, CheckStatus::Pass, "{}", after.summary);
}

#[test]
fn vendor_pwquality_files_are_noticed() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("usr/lib/security/pwquality.conf.d")).unwrap();
    std::fs::write(
        root.path()
            .join("usr/lib/security/pwquality.conf.d/10-vendor.conf"),
        "minlen = 14\n",
    )
    .unwrap();
    let facts = probe_linux(&Host::with_root(root.path()));
    assert_eq!(
        facts.pwquality.vendor_files,
        ["/usr/lib/security/pwquality.conf.d/10-vendor.conf"]
    );
}

// ---------------------------------------------------------------------------
// Evaluator table

/// The stack pam-auth-update writes with libpam-pwquality, with `{args}` on
/// the pam_pwquality line (see the debian-12-pwquality fixture).
const DEBIAN_PWQUALITY_STACK: &str = "password\trequisite\t\t\tpam_pwquality.so retry=3 {args}\n\
    password\t[success=1 default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt\n\
    password\trequisite\t\t\tpam_deny.so\n\
    password\trequired\t\t\tpam_permit.so\n";

fn debian_stack_with(arguments: &str) -> String {
    DEBIAN_PWQUALITY_STACK.replace("{args}", arguments)
}

struct Case {
    name: &'static str,
    pam: String,
    pwquality: &'static str,
    login_defs: Option<&'static str>,
    policy: PasswordPolicy,
    tweak: fn(&mut LinuxPasswordFacts),
    status: CheckStatus,
    summary_has: &'static [&'static str],
    fix_has: &'static str,
}

fn case(name: &'static str, pam: impl Into<String>, pwquality: &'static str) -> Case {
    Case {
        name,
        pam: pam.into(),
        pwquality,
        login_defs: Some("PASS_MAX_DAYS\t99999\n"),
        policy: baseline(),
        tweak: |_| {},
        status: CheckStatus::Pass,
        summary_has: &[],
        fix_has: "",
    }
}

impl Case {
    fn policy(mut self, policy: PasswordPolicy) -> Self {
        self.policy = policy;
        self
    }
    fn login_defs(mut self, text: Option<&'static str>) -> Self {
        self.login_defs = text;
        self
    }
    fn tweak(mut self, tweak: fn(&mut LinuxPasswordFacts)) -> Self {
        self.tweak = tweak;
        self
    }
    fn expect(mut self, status: CheckStatus, summary_has: &'static [&'static str]) -> Self {
        self.status = status;
        self.summary_has = summary_has;
        self
    }
    fn fix(mut self, fix_has: &'static str) -> Self {
        self.fix_has = fix_has;
        self
    }
}

fn facts_for(case: &Case) -> LinuxPasswordFacts {
    let stack = memory_stack(DEBIAN_PASSWORD_STACK, &[(DEBIAN_PASSWORD_STACK, &case.pam)]);
    let files = if case.pwquality.is_empty() {
        Vec::new()
    } else {
        vec![(PWQUALITY_MAIN_FILE.to_owned(), case.pwquality.to_owned())]
    };
    let mut facts = LinuxPasswordFacts {
        login_defs: case.login_defs.map_or(FileState::Absent, |text| {
            FileState::Read(parse_login_defs(text))
        }),
        pwquality: PwqualityFacts {
            config: read_pwquality_files(&files),
            unreadable: Vec::new(),
            vendor_files: Vec::new(),
        },
        pam: PamFacts::Stacks {
            family: PamFamily::Debian,
            stacks: vec![stack],
        },
    };
    (case.tweak)(&mut facts);
    facts
}

fn check_case(case: &Case) {
    let verdict = evaluate_linux(&facts_for(case), &case.policy);
    assert_eq!(
        verdict.status, case.status,
        "{}: {} / {}",
        case.name, verdict.summary, verdict.fix
    );
    for expected in case.summary_has {
        assert!(
            verdict.summary.contains(expected),
            "{}: summary {:?} lacks {expected:?}",
            case.name,
            verdict.summary
        );
    }
    assert!(
        verdict.fix.contains(case.fix_has),
        "{}: fix {:?} lacks {:?}",
        case.name,
        verdict.fix,
        case.fix_has
    );
    if case.status == CheckStatus::Fail {
        assert!(
            !verdict.fix.is_empty(),
            "{}: a failure needs a fix",
            case.name
        );
    } else {
        assert!(verdict.fix.is_empty(), "{}: {}", case.name, verdict.fix);
    }
}

const DEBIAN_DEFAULT_STACK: &str = "password\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n\
    password\trequisite\t\t\tpam_deny.so\npassword\trequired\t\t\tpam_permit.so\n";

fn two_stacks(facts: &mut LinuxPasswordFacts) {
    let PamFacts::Stacks { stacks, .. } = &facts.pam else {
        return;
    };
    let mut other = memory_stack(
        "/etc/pam.d/password-auth",
        &[("/etc/pam.d/password-auth", DEBIAN_DEFAULT_STACK)],
    );
    other.root = "/etc/pam.d/password-auth".into();
    let mut first = stacks[0].clone();
    first.root = "/etc/pam.d/system-auth".into();
    facts.pam = PamFacts::Stacks {
        family: PamFamily::RedHat,
        stacks: vec![first, other],
    };
}

#[test]
fn evaluator_table() {
    use CheckStatus::{Fail, Pass, Unknown};
    let cases = vec![
        // Where pam_pwquality is, or is not.
        case("debian default: no pwquality", DEBIAN_DEFAULT_STACK, "")
            .expect(Fail, &["not enforced by PAM", "not in the password stack (/etc/pam.d/common-password)"])
            .fix("sudo apt install libpam-pwquality, then set minlen = 12 in /etc/security/pwquality.conf"),
        case("minlen configured without pwquality", DEBIAN_DEFAULT_STACK, "minlen = 14\n")
            .expect(Fail, &["minlen 14 is configured in /etc/security/pwquality.conf line 1 but not enforced by PAM"]),
        case("fedora without pwquality", DEBIAN_DEFAULT_STACK, "")
            .tweak(|f| {
                if let PamFacts::Stacks { family, .. } = &mut f.pam {
                    *family = PamFamily::RedHat;
                }
            })
            .expect(Fail, &["not enforced by PAM"])
            .fix("(pam_pwquality is in the default authselect profile)"),
        case("no PAM stack at all", "", "")
            .tweak(|f| f.pam = PamFacts::NoPasswordStack)
            .expect(Unknown, &["found no PAM configuration for any password-changing service"]),
        case("stack with a missing include", "@include nowhere\n", "")
            .expect(Unknown, &["could not read the whole PAM password stack", "nowhere"]),
        // pam_cracklib: its default credits of 1 shorten minlen=15 to 11.
        case("cracklib instead", "password requisite pam_cracklib.so minlen=15\n", "")
            .expect(Fail, &["accepts passwords of 11 characters", "dcredit=1 (the pam_cracklib default)"])
            .fix("On the pam_cracklib line (/etc/pam.d/common-password line 1) set minlen=12 dcredit=0 ucredit=0 lcredit=0 ocredit=0"),
        case("cracklib ignores pwquality.conf", "password requisite pam_cracklib.so minlen=12 dcredit=0 ucredit=0 lcredit=0 ocredit=0\n", "minlen = 6\n")
            .expect(Pass, &["at least 12 characters"]),
        case("cracklib with negative credits", "password requisite pam_cracklib.so minlen=12 dcredit=-1 ucredit=-1 lcredit=-1 ocredit=-1\n", "")
            .expect(Pass, &["at least 12 characters"]),
        case("cracklib default", "password requisite pam_cracklib.so retry=3\n", "")
            .expect(Fail, &["accepts passwords of 5 characters", "minlen 9 from the pam_cracklib default"]),
        case("cracklib minclass below the policy", "password requisite pam_cracklib.so minlen=14 dcredit=0 ucredit=0 lcredit=0 ocredit=0\n", "")
            .policy(policy(12, Some(3), None))
            .expect(Fail, &["pam_cracklib in /etc/pam.d/common-password requires 0 character classes"])
            .fix("set minclass=3"),
        case("passwdqc instead", "password requisite pam_passwdqc.so min=disabled,24,11,8,7\n", "")
            .expect(Unknown, &["pam_passwdqc.so"]),
        // pam_unix's own minlen, when it is the only module setting passwords.
        case("pam_unix minlen at the policy", "password required pam_unix.so minlen=12\n", "")
            .expect(Pass, &["at least 12 characters: pam_unix.so minlen=12", "the only module that sets passwords"]),
        case("pam_unix minlen but classes asked", "password required pam_unix.so minlen=14\n", "")
            .policy(policy(12, Some(3), None))
            .expect(Fail, &["pam_unix checks no character classes"]),
        case("pam_unix minlen beside a domain module", "password sufficient pam_sss.so\npassword required pam_unix.so minlen=14 use_authtok\n", "")
            .expect(Fail, &["not enforced by PAM"]),
        case("pam_unix minlen below the policy", "password required pam_unix.so minlen=8\n", "")
            .expect(Fail, &["not enforced by PAM"]),
        case("-password line, module not installed", "-password requisite pam_pwquality.so minlen=14\n", "")
            .expect(Fail, &["not enforced by PAM"]),
        case("-password line, module installed", "-password requisite pam_pwquality.so minlen=14\n", "")
            .tweak(|f| {
                if let PamFacts::Stacks { stacks, .. } = &mut f.pam {
                    stacks[0].entries[0].module_installed = Some(true);
                }
            })
            .expect(Pass, &["at least 14 characters"]),
        // Length thresholds around the policy's 12.
        case("libpwquality default minlen 8", debian_stack_with(""), "")
            .expect(Fail, &["accepts passwords of 8 characters", "libpwquality default", "requires 12"])
            .fix("Set minlen = 12 in /etc/security/pwquality.conf."),
        case("minlen 11", debian_stack_with(""), "minlen = 11\n")
            .expect(Fail, &["accepts passwords of 11 characters", "requires 12"]),
        case("minlen 12", debian_stack_with(""), "minlen = 12\n").expect(Pass, &["at least 12 characters"]),
        case("minlen 13", debian_stack_with(""), "minlen = 13\n").expect(Pass, &["at least 13 characters"]),
        // Credits.
        case("minlen 13, dcredit 1: 12", debian_stack_with(""), "minlen = 13\ndcredit = 1\n")
            .expect(Pass, &["at least 12 characters"]),
        case("minlen 12, dcredit 1: 11", debian_stack_with(""), "minlen = 12\ndcredit = 1\n")
            .expect(Fail, &["accepts passwords of 11 characters", "less credits dcredit=1"])
            .fix("Set dcredit to 0"),
        case("minlen 14, four credits of 1: 10", debian_stack_with(""), "minlen = 14\ndcredit = 1\nucredit = 1\nlcredit = 1\nocredit = 1\n")
            .expect(Fail, &["accepts passwords of 10 characters"])
            .fix("Set dcredit, ucredit, lcredit, ocredit to 0"),
        case("negative credits add no length", debian_stack_with(""), "minlen = 12\ndcredit = -1\nucredit = -1\n")
            .expect(Pass, &["at least 12 characters"]),
        // Module arguments override the file.
        case("argument lowers minlen", debian_stack_with("minlen=10"), "minlen = 14\n")
            .expect(Fail, &["accepts passwords of 10 characters", "pam_pwquality argument in /etc/pam.d/common-password line 1"])
            .fix("Remove minlen= from the pam_pwquality line (/etc/pam.d/common-password line 1)"),
        case("argument raises minlen", debian_stack_with("minlen=12"), "minlen = 8\n")
            .expect(Pass, &["at least 12 characters"]),
        case("argument adds a credit", debian_stack_with("ocredit=2"), "minlen = 13\n")
            .expect(Fail, &["accepts passwords of 11 characters"]),
        case("a broken file line hides the rest", debian_stack_with(""), "bogus = 1\nminlen = 14\n")
            .expect(Fail, &["accepts passwords of 8 characters"]),
        // Enforcing.
        case("enforcing = 0 in the file", debian_stack_with(""), "minlen = 14\nenforcing = 0\n")
            .expect(Fail, &["only warns: enforcing = 0 (/etc/security/pwquality.conf line 2)"])
            .fix("Remove enforcing = 0"),
        case("enforcing=0 argument", debian_stack_with("enforcing=0"), "minlen = 14\n")
            .expect(Fail, &["only warns"]),
        case("enforcing=1 argument wins over the file", debian_stack_with("enforcing=1"), "minlen = 14\nenforcing = 0\n")
            .expect(Pass, &["at least 14 characters"]),
        // Classes.
        case("minclass below the policy", debian_stack_with(""), "minlen = 14\nminclass = 2\n")
            .policy(policy(12, Some(3), None))
            .expect(Fail, &["requires 2 character classes", "the policy requires 3"])
            .fix("Set minclass = 3"),
        case("minclass at the policy", debian_stack_with(""), "minlen = 14\nminclass = 3\n")
            .policy(policy(12, Some(3), None))
            .expect(Pass, &["from 3 classes"]),
        case("minclass above the policy", debian_stack_with("minclass=4"), "minlen = 14\n")
            .policy(policy(12, Some(3), None))
            .expect(Pass, &["from 4 classes"]),
        case("minclass unset while the policy asks", debian_stack_with(""), "minlen = 14\n")
            .policy(policy(12, Some(1), None))
            .expect(Fail, &["requires 0 character classes"]),
        // Controls and the paths through the stack.
        case("optional control", "password optional pam_pwquality.so minlen=14\npassword required pam_unix.so use_authtok\n", "")
            .expect(Fail, &["does not stop weak passwords", "`optional`"])
            .fix("`requisite`"),
        case("bracket that ignores failure", "password [success=ok default=ignore] pam_pwquality.so minlen=14\npassword required pam_unix.so use_authtok\n", "")
            .expect(Fail, &["ignores a rejection"]),
        case("bracket that dies on failure", "password [success=ok default=die] pam_pwquality.so minlen=14\npassword required pam_unix.so use_authtok\n", "")
            .expect(Pass, &["at least 14 characters"]),
        case("required, pam_unix uses the checked password", "password required pam_pwquality.so minlen=14\npassword required pam_unix.so use_authtok\n", "")
            .expect(Pass, &["at least 14 characters"]),
        case("required, pam_unix asks again", "password required pam_pwquality.so minlen=14\npassword required pam_unix.so try_first_pass\n", "")
            .expect(Fail, &["does not stop weak passwords", "asks for a new password itself"])
            .fix("Add use_authtok to /etc/pam.d/common-password line 2"),
        case("required, a domain module asks again", "password required pam_pwquality.so minlen=14\npassword sufficient pam_sss.so\npassword required pam_unix.so use_authtok\n", "")
            .expect(Unknown, &["asks for a new password itself"]),
        // Lines that certainly run before the quality module and skip it.
        case("sufficient pam_unix before pwquality", "password sufficient pam_unix.so yescrypt\npassword requisite pam_pwquality.so minlen=14\npassword required pam_deny.so\n", "")
            .expect(Fail, &["does not check every password change", "asks for the new password itself (no use_authtok) and sets it before"])
            .fix("Move the pam_pwquality.so line (/etc/pam.d/common-password line 2) above /etc/pam.d/common-password line 1"),
        case("pam_unix success jumps over pwquality", "password [success=1 default=ignore] pam_unix.so obscure yescrypt\npassword requisite pam_pwquality.so minlen=14\npassword required pam_permit.so\n", "")
            .expect(Fail, &["asks for the new password itself"]),
        case("sufficient pam_permit before pwquality", "password sufficient pam_permit.so\npassword requisite pam_pwquality.so minlen=14\npassword required pam_unix.so use_authtok\n", "")
            .expect(Unknown, &["can end the stack before it"]),
        case("sufficient pam_unix with use_authtok before pwquality", "password sufficient pam_unix.so use_authtok\npassword requisite pam_pwquality.so minlen=14\npassword required pam_deny.so\n", "")
            .expect(Unknown, &["may not check every password change", "can end the stack before it"]),
        case("a jump that lands on pwquality skips nothing", "password [success=1 default=ignore] pam_permit.so\npassword required pam_deny.so\npassword requisite pam_pwquality.so minlen=14\npassword required pam_unix.so use_authtok\n", "")
            .expect(Pass, &["at least 14 characters"]),
        case("pam_localuser jumps over pwquality onto a prompting pam_unix", "password [success=1 default=ignore] pam_localuser.so\npassword requisite pam_pwquality.so minlen=14\npassword required pam_unix.so yescrypt\n", "")
            .expect(Fail, &["succeeds for a local account and jumps over /etc/pam.d/common-password line 2", "line 3 (pam_unix.so) then asks for the new password itself"])
            .fix("Move the pam_pwquality.so line"),
        case("pam_permit jumping over pwquality onto a use_authtok pam_unix", "password [success=1 default=ignore] pam_permit.so\npassword requisite pam_pwquality.so minlen=14\npassword required pam_unix.so use_authtok\n", "")
            .expect(Unknown, &["can jump over it"]),
        case("pam_permit jumping over pwquality", "password [success=2 default=ignore] pam_permit.so\npassword requisite pam_pwquality.so minlen=14\npassword required pam_deny.so\npassword required pam_unix.so use_authtok\n", "")
            .expect(Unknown, &["can jump over it"]),
        case("sufficient line before pwquality", "password sufficient pam_sss.so\npassword requisite pam_pwquality.so minlen=14\n", "")
            .expect(Unknown, &["may not check every password change", "can end the stack before it"]),
        case("jump over the only pwquality line", "password [success=1 default=ignore] pam_succeed_if.so user = root\npassword requisite pam_pwquality.so minlen=14\n", "")
            .expect(Unknown, &["can jump over it"]),
        case("born2beroot: the unconditional line decides", "password [success=1 default=ignore] pam_succeed_if.so user = root\npassword requisite pam_pwquality.so minlen=14\npassword requisite pam_pwquality.so minlen=10\n", "")
            .expect(Fail, &["accepts passwords of 10 characters"]),
        case("two counted lines: the stricter decides", "password requisite pam_pwquality.so minlen=10\npassword requisite pam_pwquality.so minlen=14\n", "")
            .expect(Pass, &["at least 14 characters"]),
        case("conf= argument", debian_stack_with("conf=/etc/other.conf"), "minlen = 14\n")
            .expect(Unknown, &["conf=/etc/other.conf"]),
        // Facts that cannot be judged.
        case("pwquality.conf unreadable", debian_stack_with(""), "minlen = 14\n")
            .tweak(|f| f.pwquality.unreadable = vec!["/etc/security/pwquality.conf: Permission denied (os error 13)".into()])
            .expect(Unknown, &["cannot read the pwquality configuration", "/etc/security/pwquality.conf: Permission denied"]),
        case("pwquality.conf unreadable but pwquality absent", DEBIAN_DEFAULT_STACK, "")
            .tweak(|f| f.pwquality.unreadable = vec!["/etc/security/pwquality.conf: Permission denied (os error 13)".into()])
            .expect(Fail, &["not enforced by PAM"]),
        case("vendor files turn a pass into unknown", debian_stack_with(""), "minlen = 14\n")
            .tweak(|f| f.pwquality.vendor_files = vec!["/usr/lib/security/pwquality.conf".into()])
            .expect(Unknown, &["newer than 1.4.5", "/usr/lib/security/pwquality.conf"]),
        case("vendor files leave a fail a fail", debian_stack_with(""), "")
            .tweak(|f| f.pwquality.vendor_files = vec!["/usr/lib/security/pwquality.conf".into()])
            .expect(Fail, &["8 characters"]),
        // Two stacks (Fedora): one sentence per conclusion.
        case("one of two stacks lacks pwquality", debian_stack_with(""), "minlen = 14\n")
            .tweak(two_stacks)
            .expect(Fail, &["not in the password stack (/etc/pam.d/password-auth)"]),
        // Expiry.
        case("no max age asked: 99999 is fine", debian_stack_with(""), "minlen = 14\n")
            .login_defs(Some("PASS_MAX_DAYS 99999\n"))
            .expect(Pass, &["at least 14 characters"]),
        case("no max age asked: PASS_MAX_DAYS missing is fine", debian_stack_with(""), "minlen = 14\n")
            .login_defs(Some("PASS_MIN_DAYS 0\n"))
            .expect(Pass, &["at least 14 characters"]),
        case("no max age asked: no login.defs is fine", debian_stack_with(""), "minlen = 14\n")
            .login_defs(None)
            .expect(Pass, &[]),
        case("max age 90 vs 99999", debian_stack_with(""), "minlen = 14\n")
            .policy(policy(12, None, Some(90)))
            .expect(Fail, &["passwords never expire: PASS_MAX_DAYS 99999 (/etc/login.defs line 1)", "at most 90 days"])
            .fix("Set PASS_MAX_DAYS 90 in /etc/login.defs"),
        case("max age 90 vs 100000", debian_stack_with(""), "minlen = 14\n")
            .policy(policy(12, None, Some(90)))
            .login_defs(Some("PASS_MAX_DAYS 100000\n"))
            .expect(Fail, &["never expire"]),
        case("max age 90 vs -1", debian_stack_with(""), "minlen = 14\n")
            .policy(policy(12, None, Some(90)))
            .login_defs(Some("PASS_MAX_DAYS -1\n"))
            .expect(Fail, &["never expire"]),
        case("max age 90 vs missing key", debian_stack_with(""), "minlen = 14\n")
            .policy(policy(12, None, Some(90)))
            .login_defs(Some("PASS_MIN_DAYS 0\n"))
            .expect(Fail, &["PASS_MAX_DAYS is not set in /etc/login.defs"]),
        case("max age 90 vs absent file", debian_stack_with(""), "minlen = 14\n")
            .policy(policy(12, None, Some(90)))
            .login_defs(None)
            .expect(Fail, &["/etc/login.defs does not exist"]),
        case("max age 90 vs unparsable value", debian_stack_with(""), "minlen = 14\n")
            .policy(policy(12, None, Some(90)))
            .login_defs(Some("PASS_MAX_DAYS 60 # two months\n"))
            .expect(Fail, &["shadow cannot read PASS_MAX_DAYS \"60 # two months\""]),
        case("max age 90 vs 89", debian_stack_with(""), "minlen = 14\n")
            .policy(policy(12, None, Some(90)))
            .login_defs(Some("PASS_MAX_DAYS 89\n"))
            .expect(Pass, &["expire after 89 days"]),
        case("max age 90 vs 90", debian_stack_with(""), "minlen = 14\n")
            .policy(policy(12, None, Some(90)))
            .login_defs(Some("PASS_MAX_DAYS 90\n"))
            .expect(Pass, &["expire after 90 days"]),
        case("max age 90 vs 91", debian_stack_with(""), "minlen = 14\n")
            .policy(policy(12, None, Some(90)))
            .login_defs(Some("PASS_MAX_DAYS 91\n"))
            .expect(Fail, &["PASS_MAX_DAYS 91 (/etc/login.defs line 1) is longer than the policy's 90 days"]),
        case("max age asked, login.defs unreadable, PAM passes", debian_stack_with(""), "minlen = 14\n")
            .policy(policy(12, None, Some(90)))
            .tweak(|f| f.login_defs = FileState::Unreadable("/etc/login.defs: Permission denied (os error 13)".into()))
            .expect(Unknown, &["cannot read /etc/login.defs"]),
        case("max age asked, login.defs unreadable, PAM fails", debian_stack_with(""), "")
            .policy(policy(12, None, Some(90)))
            .tweak(|f| f.login_defs = FileState::Unreadable("Permission denied".into()))
            .expect(Fail, &["8 characters"]),
        case("two failures are both named, with both fixes", DEBIAN_DEFAULT_STACK, "")
            .policy(policy(12, None, Some(90)))
            .expect(Fail, &["not enforced by PAM", "; passwords never expire"])
            .fix("chage --maxdays 90"),
    ];
    for case in &cases {
        check_case(case);
    }
}

#[test]
fn evidence_names_the_sources_and_the_pam_line() {
    let case = case(
        "evidence",
        debian_stack_with("minlen=10"),
        "minlen = 14\ndcredit = 1\n",
    );
    let verdict = evaluate_linux(&facts_for(&case), &baseline());
    let evidence = &verdict.evidence;
    assert_eq!(evidence["pam_family"], "debian");
    assert_eq!(evidence["min_length_required"], 12);
    assert_eq!(evidence["shortest_accepted_length"], 9);
    assert_eq!(
        evidence["pwquality_files_read"],
        serde_json::json!(["/etc/security/pwquality.conf"])
    );
    assert_eq!(
        evidence["pwquality_settings_from_files"]["minlen"]["source"],
        "/etc/security/pwquality.conf line 1"
    );
    let line = &evidence["pam_stacks"][0]["pwquality_lines"][0];
    assert_eq!(line["location"], "/etc/pam.d/common-password line 1");
    assert!(
        line["line"]
            .as_str()
            .unwrap()
            .contains("pam_pwquality.so retry=3 minlen=10")
    );
    assert_eq!(line["counted"], true);
    assert_eq!(line["settings"]["minlen"]["value"], 10);
    assert_eq!(
        line["settings"]["minlen"]["source"],
        "the pam_pwquality argument in /etc/pam.d/common-password line 1"
    );
    assert_eq!(line["settings"]["dcredit"]["value"], 1);
    assert_eq!(
        evidence["pam_stacks"][0]["password_lines"][1]["location"],
        "/etc/pam.d/common-password line 2"
    );
    assert_eq!(
        evidence["login_defs"]["values"]["PASS_MAX_DAYS"]["value"],
        "99999"
    );
}

// ---------------------------------------------------------------------------
// Windows: the evaluator over NetUserModalsGet's numbers (the probe runs
// under Wine in tests/tests/windows_agent.rs, where the API answers 2140).

fn windows_facts(min_length: u32, max_age_days: Option<u32>) -> PasswordFacts {
    PasswordFacts::Windows(WindowsPasswordFacts {
        accounts: Ok(WindowsAccountPolicy {
            min_password_length: min_length,
            max_password_age_seconds: max_age_days.map(|d| d * 86_400),
            min_password_age_seconds: 0,
            password_history_length: 24,
        }),
        accounts_source: WindowsPolicySource::NetUserModalsGet,
        lockout: Err("not read".into()),
        lockout_source: WindowsPolicySource::NetUserModalsGet,
        complexity: Err("not read".into()),
        reversible_encryption: None,
    })
}

#[test]
fn windows_account_policy_is_judged_and_never_guessed() {
    use CheckStatus::{Fail, Pass, Unknown};
    let cases: [(&str, PasswordFacts, PasswordPolicy, CheckStatus, &str); 6] = [
        (
            "long enough",
            windows_facts(14, None),
            policy(12, None, None),
            Pass,
            "is 14",
        ),
        (
            "too short",
            windows_facts(8, None),
            policy(12, None, None),
            Fail,
            "length is 8",
        ),
        (
            "never expires when the policy asks expiry",
            windows_facts(14, None),
            policy(12, None, Some(90)),
            Fail,
            "never expire",
        ),
        (
            "expires too late",
            windows_facts(14, Some(365)),
            policy(12, None, Some(90)),
            Fail,
            "after 365 days",
        ),
        (
            "complexity unread is unknown",
            windows_facts(14, Some(30)),
            policy(12, Some(3), Some(90)),
            Unknown,
            "complexity",
        ),
        (
            "the API failing is unknown",
            PasswordFacts::Windows(WindowsPasswordFacts {
                accounts: Err("NetUserModalsGet level 0 failed with 2140".into()),
                accounts_source: WindowsPolicySource::NetUserModalsGet,
                lockout: Err("NetUserModalsGet level 3 failed with 2140".into()),
                lockout_source: WindowsPolicySource::NetUserModalsGet,
                complexity: Err("`secedit.exe` is not installed".into()),
                reversible_encryption: None,
            }),
            policy(12, None, None),
            Unknown,
            "2140",
        ),
    ];
    for (name, facts, policy, status, summary) in cases {
        let verdict = evaluate(&facts, &policy);
        assert_eq!(verdict.status, status, "{name}: {verdict:?}");
        assert!(verdict.summary.contains(summary), "{name}: {verdict:?}");
        assert_eq!(
            verdict.fix.is_empty(),
            status != Fail,
            "{name}: {verdict:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Windows: captured exports (agent/tests/fixtures/windows/password_policy,
// see its SOURCES.md) through the parser, the probe's fact-building and the
// evaluator, as the probe does it, minus the two system calls.

const WINDOWS_FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/windows/password_policy"
);

/// What `NetUserModalsGet` level 0 gives under Wine (its Display text).
const WINE_LEVEL_0: &str =
    "NetUserModalsGet level 0 failed with 2140 (NERR_InvalidAPI: not implemented on this system)";
const WINE_LEVEL_3: &str =
    "NetUserModalsGet level 3 failed with 2140 (NERR_InvalidAPI: not implemented on this system)";

fn export_of(bytes: &[u8]) -> Result<parse_windows::SeceditSystemAccess, String> {
    parse_windows::decode_secedit_export(bytes)
        .and_then(|text| parse_windows::parse_secedit_export(&text))
        .map_err(|err| format!("secedit's export: {err}"))
}

fn export_fixture(name: &str) -> Result<parse_windows::SeceditSystemAccess, String> {
    export_of(&std::fs::read(format!("{WINDOWS_FIXTURES}/{name}")).unwrap())
}

fn api_accounts(
    min_length: u32,
    max_age_days: Option<u32>,
) -> Result<WindowsAccountPolicy, String> {
    Ok(WindowsAccountPolicy {
        min_password_length: min_length,
        max_password_age_seconds: max_age_days.map(|d| d * 86_400),
        min_password_age_seconds: 0,
        password_history_length: 24,
    })
}

fn api_lockout() -> Result<WindowsLockoutPolicy, String> {
    Ok(WindowsLockoutPolicy {
        threshold: 5,
        duration_seconds: 900,
        observation_window_seconds: 900,
    })
}

struct WindowsCase {
    name: &'static str,
    accounts: Result<WindowsAccountPolicy, String>,
    lockout: Result<WindowsLockoutPolicy, String>,
    export: Result<parse_windows::SeceditSystemAccess, String>,
    policy: PasswordPolicy,
    status: CheckStatus,
    summary_has: &'static [&'static str],
}

#[test]
fn windows_exports_become_facts_and_verdicts() {
    use CheckStatus::{Fail, Pass, Unknown};
    // Typed, not captured (SOURCES.md, "Not found"): the finpri export
    // with complexity switched off, the one line that differs.
    let finpri = std::fs::read_to_string(format!("{WINDOWS_FIXTURES}/secedit-finpri-win.inf"))
        .unwrap()
        .replace("PasswordComplexity = 1", "PasswordComplexity = 0");
    let cases = [
        WindowsCase {
            name: "complexity on (the UTF-16 file) covers three classes",
            accounts: api_accounts(14, Some(30)),
            lockout: api_lockout(),
            export: export_fixture("secedit-finpri-win.utf16le.inf"),
            policy: policy(12, Some(3), Some(90)),
            status: Pass,
            summary_has: &["is 14"],
        },
        WindowsCase {
            name: "complexity on cannot cover four classes",
            accounts: api_accounts(14, Some(30)),
            lockout: api_lockout(),
            export: export_fixture("secedit-finpri-win.inf"),
            policy: policy(12, Some(4), None),
            status: Fail,
            summary_has: &["3 character classes at most"],
        },
        WindowsCase {
            name: "complexity off fails",
            accounts: api_accounts(14, Some(30)),
            lockout: api_lockout(),
            export: export_of(finpri.as_bytes()),
            policy: policy(12, Some(3), None),
            status: Fail,
            summary_has: &["complexity is off"],
        },
        WindowsCase {
            name: "the API failing, the export gives the length",
            accounts: Err(WINE_LEVEL_0.into()),
            lockout: Err(WINE_LEVEL_3.into()),
            export: export_fixture("secedit-ukulele2fire.cfg"),
            policy: policy(12, Some(3), None),
            status: Fail,
            summary_has: &["length is 10; the policy asks 12"],
        },
        WindowsCase {
            name: "the API failing, the export passes",
            accounts: Err(WINE_LEVEL_0.into()),
            lockout: Err(WINE_LEVEL_3.into()),
            export: export_fixture("secedit-ukulele2fire.cfg"),
            policy: policy(8, Some(3), Some(30)),
            status: Pass,
            summary_has: &["is 10"],
        },
        WindowsCase {
            name: "Wine: the API answers 2140 and secedit is missing",
            accounts: Err(WINE_LEVEL_0.into()),
            lockout: Err(WINE_LEVEL_3.into()),
            export: Err(r"`C:\windows\System32\secedit.exe` is not installed".into()),
            policy: policy(12, Some(3), None),
            status: Unknown,
            summary_has: &[
                "NetUserModalsGet level 0 failed with 2140",
                "complexity requirements: `C:\\windows\\System32\\secedit.exe` is not installed",
            ],
        },
        WindowsCase {
            name: "an export the parser refuses is unknown, naming the line",
            accounts: api_accounts(14, None),
            lockout: api_lockout(),
            export: export_of(b"[System Access]\nPasswordComplexity = on\n"),
            policy: policy(12, Some(3), None),
            status: Unknown,
            summary_has: &["line 2: PasswordComplexity is `on`"],
        },
        WindowsCase {
            name: "complexity unknown does not hide a short length",
            accounts: api_accounts(8, None),
            lockout: api_lockout(),
            export: Err("`secedit` exited with 5".into()),
            policy: policy(12, Some(3), None),
            status: Fail,
            summary_has: &["length is 8"],
        },
        WindowsCase {
            name: "complexity unread does not matter when no classes are asked",
            accounts: api_accounts(14, None),
            lockout: api_lockout(),
            export: Err("`secedit` exited with 5".into()),
            policy: policy(12, None, None),
            status: Pass,
            summary_has: &["is 14"],
        },
    ];
    for case in cases {
        let facts = PasswordFacts::Windows(parse_windows::windows_facts(
            case.accounts,
            case.lockout,
            case.export,
        ));
        let verdict = evaluate(&facts, &case.policy);
        assert_eq!(verdict.status, case.status, "{}: {verdict:?}", case.name);
        for part in case.summary_has {
            assert!(
                verdict.summary.contains(part),
                "{}: {part}: {verdict:?}",
                case.name
            );
        }
        assert_eq!(
            verdict.fix.is_empty(),
            case.status != Fail,
            "{}: {verdict:?}",
            case.name
        );
    }
}

#[test]
fn windows_evidence_says_where_each_number_came_from() {
    let facts = PasswordFacts::Windows(parse_windows::windows_facts(
        Err(WINE_LEVEL_0.into()),
        api_lockout(),
        export_fixture("secedit-finpri-win.inf"),
    ));
    let verdict = evaluate(&facts, &policy(12, Some(3), None));
    let evidence = serde_json::to_value(&verdict.evidence).unwrap();
    assert_eq!(
        evidence["account_policy_source"],
        format!("secedit /export (NetUserModalsGet failed: {WINE_LEVEL_0})")
    );
    assert_eq!(evidence["lockout_policy_source"], "NetUserModalsGet");
    assert_eq!(evidence["account_policy"]["min_password_length"], 0);
    assert_eq!(
        evidence["account_policy"]["max_password_age_seconds"],
        42 * 86_400
    );
    assert_eq!(evidence["complexity"], true);
    assert_eq!(evidence["reversible_encryption"], false);

    let unread = PasswordFacts::Windows(parse_windows::windows_facts(
        Err(WINE_LEVEL_0.into()),
        Err(WINE_LEVEL_3.into()),
        Err("`secedit.exe` is not installed".into()),
    ));
    let verdict = evaluate(&unread, &policy(12, Some(3), None));
    let evidence = serde_json::to_value(&verdict.evidence).unwrap();
    assert_eq!(
        evidence["complexity"]["unreadable"],
        "`secedit.exe` is not installed"
    );
    assert_eq!(evidence["account_policy"]["unreadable"], WINE_LEVEL_0);
    assert!(evidence["reversible_encryption"].is_null());
}
