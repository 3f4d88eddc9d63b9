//! Runs the real `palisade-agent check --rule password_policy --json
//! --host-root` against copies of the captured trees in
//! `tests/fixtures/linux/password_policy/` (see its SOURCES.md), and checks
//! the exit code (0 pass, 1 fail, 3 unknown) and the verdict in the JSON
//! report.
//!
//! Each test gets its own temp dir holding the tree (so it can change a
//! file) and, where needed, a policy file. The binary runs through the
//! agent's own command runner: environment cleared, output captured, a
//! timeout. A failed assertion prints the command, its output and the files
//! of the tree.

// The helpers below are test code too: a panic there is a failed test, as
// clippy.toml allows inside `#[test]` functions.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{Run, Tree};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/linux/password_policy"
);

/// One run of the agent against a prepared tree.
struct Scenario(Tree);

impl Scenario {
    /// A temp dir holding a copy of the fixture tree `scenario` as `root/`.
    fn from_fixture(scenario: &str) -> Self {
        Self(Tree::from_fixture(FIXTURES, scenario))
    }

    fn write(&self, relative: &str, text: &str) {
        self.0.write(relative, text);
    }

    /// Writes a policy enabling only `password_policy`, with the given extra
    /// keys; returns its path.
    fn policy(&self, keys: &str) -> PathBuf {
        self.0.policy_file(&format!(
            "[policy]\nid = \"t\"\nversion = 1\n[rules.password_policy]\nmode = \"audit\"\n{keys}\n"
        ))
    }

    /// Runs the check; `policy` `None` uses the built-in baseline
    /// (min_length 12, no class or expiry rule).
    fn check(&self, policy: Option<&Path>) -> Run {
        self.0.check("password_policy", policy)
    }
}

/// The verdict assertion for this rule.
trait ExpectVerdict {
    fn expect(&self, exit_code: i32, status: &str) -> Value;
}

impl ExpectVerdict for Run {
    fn expect(&self, exit_code: i32, status: &str) -> Value {
        self.expect_check("password_policy", exit_code, status)
    }
}

#[test]
fn debian_default_fails_because_pam_does_not_enforce_quality() {
    let scenario = Scenario::from_fixture("debian-12-default");
    let run = scenario.check(None);
    let check = run.expect(1, "fail");
    run.expect_summary(
        &check,
        &["not enforced by PAM", "/etc/pam.d/common-password"],
    );
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains("sudo apt install libpam-pwquality"),
        "{}",
        run.explain()
    );
}

#[test]
fn minlen_in_pwquality_conf_without_pam_pwquality_fails_as_not_enforced() {
    let scenario = Scenario::from_fixture("debian-12-default");
    scenario.write("etc/security/pwquality.conf", "minlen = 14\n");
    let run = scenario.check(None);
    let check = run.expect(1, "fail");
    run.expect_summary(
        &check,
        &[
            "minlen 14 is configured in /etc/security/pwquality.conf",
            "but not enforced by PAM",
        ],
    );
}

#[test]
fn debian_with_pwquality_defaults_fails_on_length_8_against_12() {
    let scenario = Scenario::from_fixture("debian-12-pwquality");
    let run = scenario.check(None);
    let check = run.expect(1, "fail");
    run.expect_summary(
        &check,
        &["accepts passwords of 8 characters", "requires 12"],
    );
    assert_eq!(
        check["evidence"]["shortest_accepted_length"],
        8,
        "{}",
        run.explain()
    );
}

#[test]
fn setting_minlen_in_the_host_roots_file_makes_it_pass() {
    let scenario = Scenario::from_fixture("debian-12-pwquality");
    scenario.write("etc/security/pwquality.conf", "minlen = 12\n");
    let run = scenario.check(None);
    let check = run.expect(0, "pass");
    run.expect_summary(&check, &["at least 12 characters"]);
}

#[test]
fn hardened_trees_pass() {
    for fixture in [
        "rhcos-4-isms-hardened",
        "debian-12-hardn-xdr-stig",
        "debian-12-cis-ansible-lockdown",
    ] {
        let scenario = Scenario::from_fixture(fixture);
        let run = scenario.check(None);
        let check = run.expect(0, "pass");
        run.expect_summary(&check, &["requires passwords of at least"]);
    }
}

#[test]
fn max_age_policy_fails_against_pass_max_days_99999() {
    // Length passes here (minlen 14); only the expiry rule can fail.
    let scenario = Scenario::from_fixture("debian-12-hardn-xdr-stig");
    let policy = scenario.policy("min_length = 12\nmax_age_days = 90");
    let run = scenario.check(Some(&policy));
    let check = run.expect(1, "fail");
    run.expect_summary(
        &check,
        &[
            "passwords never expire: PASS_MAX_DAYS 99999",
            "at most 90 days",
        ],
    );
    assert!(
        check["fix"].as_str().unwrap().contains("PASS_MAX_DAYS 90"),
        "{}",
        run.explain()
    );
}

#[test]
fn max_age_policy_passes_against_pass_max_days_90() {
    let scenario = Scenario::from_fixture("rhcos-4-isms-hardened");
    let policy = scenario.policy("min_length = 12\nmax_age_days = 90");
    let run = scenario.check(Some(&policy));
    let check = run.expect(0, "pass");
    run.expect_summary(&check, &["expire after 90 days"]);
}

#[test]
fn cracklib_is_evaluated_with_its_own_arguments_and_defaults() {
    // Negative credits: fifteen characters, one of each class.
    let scenario = Scenario::from_fixture("debian-cstallar-cracklib");
    let run = scenario.check(None);
    let check = run.expect(0, "pass");
    run.expect_summary(&check, &["at least 15 characters"]);
    // minlen=8 with pam_cracklib's default credit of 1 per class: four
    // characters of four classes score 8.
    let scenario = Scenario::from_fixture("ubuntu-20.04-vultr-cracklib");
    let run = scenario.check(None);
    let check = run.expect(1, "fail");
    run.expect_summary(
        &check,
        &[
            "accepts passwords of 4 characters",
            "the pam_cracklib argument in /etc/pam.d/common-password",
            "(the pam_cracklib default)",
        ],
    );
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains("On the pam_cracklib line"),
        "{}",
        run.explain()
    );
}

#[test]
fn a_tree_without_a_pam_password_stack_is_unknown() {
    let scenario = Scenario::from_fixture("fedora-legacy-login-defs");
    let run = scenario.check(None);
    let check = run.expect(3, "unknown");
    run.expect_summary(
        &check,
        &["found no PAM configuration for any password-changing service"],
    );
}
