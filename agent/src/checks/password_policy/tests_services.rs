//! The stacks of the password-changing services (issue 20, class 1): each
//! service's own file, the distribution's `/usr/lib/pam.d`, and `other`
//! for a service without a file, as libpam finds them. Trees under
//! `tests/fixtures/linux/password_policy/extra/` (see its SOURCES.md).

use palisade_shared::report::CheckStatus;

use super::tests::{FIXTURES, baseline, fixture_host, modules};
use super::*;

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A writable copy of a fixture tree.
fn tree_of(scenario: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&std::path::Path::new(FIXTURES).join(scenario), dir.path());
    dir
}

#[test]
fn each_service_is_found_where_libpam_finds_it() {
    let facts = probe_linux(&fixture_host("extra/debian-12-services"));
    let PamFacts::Stacks { stacks, .. } = &facts.pam else {
        panic!("{:?}", facts.pam)
    };
    let found: Vec<(&str, &str)> = stacks
        .iter()
        .map(|s| (s.service.as_deref().unwrap(), s.root.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("passwd", "/etc/pam.d/passwd"),
            (
                "chpasswd (no file of its own: libpam runs other)",
                "/etc/pam.d/other"
            ),
            ("newusers", "/etc/pam.d/newusers"),
            ("login", "/etc/pam.d/login"),
            ("polkit-1", "/usr/lib/pam.d/polkit-1"),
        ]
    );
    for stack in stacks {
        assert_eq!(stack.problems, Vec::<String>::new(), "{}", stack.root);
        assert_eq!(modules(stack)[0], "pam_pwquality.so", "{}", stack.root);
    }
    let verdict = evaluate_linux(&facts, &policy_minlen_8());
    assert_eq!(verdict.status, CheckStatus::Pass, "{}", verdict.summary);
    assert!(
        verdict.summary.contains("services passwd, chpasswd"),
        "one sentence for the services that share the stack: {}",
        verdict.summary
    );
}

/// The stock pwquality stack passes a policy of libpwquality's default 8.
fn policy_minlen_8() -> palisade_shared::policy::PasswordPolicy {
    let mut policy = baseline();
    policy.min_length = 8;
    policy
}

#[test]
fn a_service_whose_own_stack_skips_the_quality_module_fails_by_name() {
    // chpasswd given a stack of its own that sets passwords with pam_unix
    // alone, as an admin's edit or a hardening script might leave it.
    let tree = tree_of("extra/debian-12-services");
    std::fs::write(
        tree.path().join("etc/pam.d/chpasswd"),
        "password required pam_unix.so yescrypt\n",
    )
    .unwrap();
    let verdict = evaluate_linux(
        &probe_linux(&Host::with_root(tree.path())),
        &policy_minlen_8(),
    );
    assert_eq!(verdict.status, CheckStatus::Fail, "{}", verdict.summary);
    assert!(
        verdict
            .summary
            .contains("/etc/pam.d/chpasswd: service chpasswd"),
        "{}",
        verdict.summary
    );
    assert!(
        verdict.summary.contains("not in the password stack"),
        "{}",
        verdict.summary
    );
}

#[test]
fn a_service_every_system_runs_with_no_stack_at_all_is_unknown() {
    let tree = tree_of("extra/debian-12-services");
    std::fs::remove_file(tree.path().join("etc/pam.d/other")).unwrap();
    let facts = probe_linux(&Host::with_root(tree.path()));
    let verdict = evaluate_linux(&facts, &policy_minlen_8());
    assert_eq!(verdict.status, CheckStatus::Unknown, "{}", verdict.summary);
    assert!(
        verdict
            .summary
            .contains("the PAM service chpasswd has no file, and there is no other"),
        "{}",
        verdict.summary
    );
}
