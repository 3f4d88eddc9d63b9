//! The cost of one full check cycle (all four rules, baseline policy).
//!
//! `live_system` runs the real probes against this machine; `lvm_on_luks_tree`
//! runs them against the tree captured from the qemu LUKS guest, so its
//! number does not depend on the machine's mounts. The probes are
//! single-threaded and read procfs/sysfs, so wall time here is CPU time.
//! Results go in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_agent::checks::run_checks;
use palisade_agent::cli::BASELINE_POLICY;
use palisade_agent::sys::Host;
use palisade_shared::Policy;

fn check_cycle(c: &mut Criterion) {
    let Ok(policy) = Policy::parse(BASELINE_POLICY) else {
        panic!("the baseline policy must parse");
    };
    let live = Host::system();
    c.bench_function("check_cycle/live_system", |b| {
        b.iter(|| run_checks(&live, &policy, None))
    });
    let tree = Host::with_root(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/linux/disk_encryption/mixed-with-plain"
    ));
    c.bench_function("check_cycle/lvm_on_luks_tree", |b| {
        b.iter(|| run_checks(&tree, &policy, None))
    });
}

criterion_group!(benches, check_cycle);
criterion_main!(benches);
