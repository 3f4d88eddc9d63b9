//! `palisade-agent enforce --dry-run` on a host root: it prints the plan of
//! every rule and leaves the tree byte-identical (no file, no directory, no
//! undo record).
#![cfg(target_os = "linux")] // the USB fixture names contain ':'
#![allow(clippy::unwrap_used)]

mod support;

use support::{Tree, snapshot, snapshot_diff};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/linux");

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let tree = Tree::from_fixture(FIXTURES, "usb_storage/sysfs-one-stick");
    tree.add_fixture(FIXTURES, "password_policy/debian-12-pwquality");
    tree.write("etc/dconf/profile/user", "user-db:user\n");
    let before = snapshot(&tree.root());

    // The built-in baseline; no --state-dir, so the default would be inside
    // the tree (var/lib/palisade): it must not appear either.
    let run = tree.run_agent(&[
        "enforce".into(),
        "--dry-run".into(),
        "--host-root".into(),
        tree.root().display().to_string(),
    ]);
    run.expect_exit(0);
    let after = snapshot(&tree.root());
    assert!(
        before == after,
        "a dry run changed the tree:\n{}",
        snapshot_diff(&before, &after)
    );

    let stdout = &run.output.stdout;
    let root = tree.root().display().to_string();
    for expected in [
        "screen_lock: would change (dry run)\n".to_owned(),
        "  write /etc/dconf/profile/user\n".to_owned(),
        "  create /etc/dconf/db/local.d/99-palisade-screenlock\n".to_owned(),
        "  create /etc/dconf/db/local.d/locks/99-palisade-screenlock\n".to_owned(),
        format!("  run dconf compile {root}/etc/dconf/db/local {root}/etc/dconf/db/local.d\n"),
        "  create /etc/xdg/kscreenlockerrc\n".to_owned(),
        "disk_encryption: not enforceable (dry run)\n".to_owned(),
        "password_policy: would change (dry run)\n".to_owned(),
        "  create /etc/security/pwquality.conf.d/palisade.conf\n".to_owned(),
        "  note: PAM is left alone (manage_pam = false)".to_owned(),
        "usb_storage: would change (dry run)\n".to_owned(),
        "  write 0 to /sys/bus/usb/devices/2-1/authorized (deauthorize 0781:5581 (SanDisk \
         Ultra))\n"
            .to_owned(),
        "  create /etc/udev/rules.d/70-palisade-usb-storage.rules\n".to_owned(),
    ] {
        assert!(
            stdout.contains(&expected),
            "missing {expected:?}\n{}",
            run.explain()
        );
    }
    // Commands that reach beyond a host root are never planned for one.
    assert!(!stdout.contains("dconf update"), "{}", run.explain());
    assert!(!stdout.contains("udevadm"), "{}", run.explain());
}

#[test]
fn undo_without_a_record_changes_nothing() {
    let tree = Tree::empty();
    tree.write("etc/xdg/kscreenlockerrc", "[Daemon]\nTimeout=30\n");
    let before = snapshot(&tree.root());
    let run = tree.run_agent(&[
        "enforce".into(),
        "--undo".into(),
        "screen_lock".into(),
        "--host-root".into(),
        tree.root().display().to_string(),
        "--state-dir".into(),
        tree.outside("state").display().to_string(),
    ]);
    run.expect_exit(0);
    assert!(
        run.output.stdout.contains("screen_lock: nothing to undo"),
        "{}",
        run.explain()
    );
    assert_eq!(before, snapshot(&tree.root()));
}
