//! `palisade-agent enforce --rule password_policy` on copies of the captured
//! trees in `tests/fixtures/linux/password_policy/`: the libpwquality
//! drop-in, the refusal when the main pwquality.conf overrides it, and the
//! PAM line only with `manage_pam = true`.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;

use support::{Run, Tree};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/linux/password_policy"
);
const DROP_IN: &str = "etc/security/pwquality.conf.d/palisade.conf";

fn policy(tree: &Tree, extra: &str) -> PathBuf {
    tree.policy_file(&format!(
        "[policy]\nid = \"t\"\nversion = 1\n[rules.password_policy]\nmode = \"enforce\"\n\
         min_length = 12\n{extra}\n"
    ))
}

fn enforce(tree: &Tree, policy: &std::path::Path) -> Run {
    tree.run_agent(&[
        "enforce".into(),
        "--rule".into(),
        "password_policy".into(),
        "--policy".into(),
        policy.display().to_string(),
        "--host-root".into(),
        tree.root().display().to_string(),
        "--state-dir".into(),
        tree.outside("state").display().to_string(),
    ])
}

#[test]
fn the_drop_in_makes_the_pwquality_part_pass() {
    // pam_pwquality is in the stack, but with the default minlen of 8.
    let tree = Tree::from_fixture(FIXTURES, "debian-12-pwquality");
    let policy = policy(&tree, "");
    tree.check("password_policy", Some(&policy))
        .expect_check("password_policy", 1, "fail");

    let run = enforce(&tree, &policy);
    run.expect_exit(0);
    assert!(
        run.output
            .stdout
            .contains("password_policy: applied (re-check: pass)")
            && run
                .output
                .stdout
                .contains("create /etc/security/pwquality.conf.d/palisade.conf")
            && run
                .output
                .stdout
                .contains("PAM is left alone (manage_pam = false)"),
        "{}",
        run.explain()
    );
    let drop_in = tree.read(DROP_IN);
    for line in ["minlen = 12\n", "dcredit = 0\n", "ocredit = 0\n"] {
        assert!(drop_in.contains(line), "{drop_in}");
    }
    let check =
        tree.check("password_policy", Some(&policy))
            .expect_check("password_policy", 0, "pass");
    assert_eq!(check["evidence"]["shortest_accepted_length"], 12);
    // PAM untouched.
    assert_eq!(
        tree.read("etc/pam.d/common-password"),
        std::fs::read_to_string(format!(
            "{FIXTURES}/debian-12-pwquality/etc/pam.d/common-password"
        ))
        .unwrap()
    );
}

#[test]
fn a_conflicting_minlen_in_the_main_file_fails_with_its_line() {
    let tree = Tree::from_fixture(FIXTURES, "debian-12-pwquality");
    tree.write(
        "etc/security/pwquality.conf",
        "# local settings\nminlen = 8\n",
    );
    let policy = policy(&tree, "");
    let run = enforce(&tree, &policy);
    run.expect_exit(1);
    assert!(
        run.output.stdout.contains("password_policy: failed")
            && run
                .output
                .stdout
                .contains("minlen = 8 at /etc/security/pwquality.conf:2"),
        "{}",
        run.explain()
    );
    assert!(!tree.root().join(DROP_IN).exists(), "nothing is written");
    assert_eq!(
        tree.read("etc/security/pwquality.conf"),
        "# local settings\nminlen = 8\n",
        "the main file is never edited"
    );
}

#[test]
fn manage_pam_adds_pwquality_before_pam_unix_and_undo_removes_it() {
    let tree = Tree::from_fixture(FIXTURES, "debian-12-default");
    let policy_file = policy(&tree, "manage_pam = false");
    // Without PAM management the drop-in alone cannot make it pass, and the
    // enforcer says so rather than claiming success.
    let run = enforce(&tree, &policy_file);
    run.expect_exit(1);
    assert!(
        run.output
            .stdout
            .contains("password_policy: failed (re-check: fail)"),
        "{}",
        run.explain()
    );

    let before_pam = tree.read("etc/pam.d/common-password");
    let policy_file = policy(&tree, "manage_pam = true");
    // The module must be installed before a PAM line may name it.
    let run = enforce(&tree, &policy_file);
    run.expect_exit(1);
    assert!(
        run.output
            .stdout
            .contains("pam_pwquality.so is not installed"),
        "{}",
        run.explain()
    );
    assert_eq!(tree.read("etc/pam.d/common-password"), before_pam);

    tree.write("usr/lib/x86_64-linux-gnu/security/pam_pwquality.so", "");
    let run = enforce(&tree, &policy_file);
    run.expect_exit(0);
    assert!(
        run.output.stdout.contains("applied (re-check: pass)"),
        "{}",
        run.explain()
    );
    let stack = tree.read("etc/pam.d/common-password");
    let pwquality = stack.find("pam_pwquality.so retry=3").unwrap();
    let unix = stack.find("pam_unix.so").unwrap();
    assert!(pwquality < unix, "{stack}");

    let run = tree.run_agent(&[
        "enforce".into(),
        "--undo".into(),
        "password_policy".into(),
        "--host-root".into(),
        tree.root().display().to_string(),
        "--state-dir".into(),
        tree.outside("state").display().to_string(),
    ]);
    run.expect_exit(0);
    assert_eq!(tree.read("etc/pam.d/common-password"), before_pam);
    assert!(!tree.root().join(DROP_IN).exists());
}
