//! Unit tests of the spool when its writes fail (the disk full): cycles
//! whose report cannot be written are counted and reported by the next
//! report, and a state that cannot be saved does not stop delivery. A write
//! is made to fail by putting a non-empty directory where the file goes, so
//! the rename fails as it would on a full disk; the full disk itself is in
//! `tests/tests/agent_full_disk.rs`.

use chrono::Duration;

use super::tests::{append_next, at, limits, next_envelope, report, signed};
use super::*;

/// Puts a non-empty directory at `path`, so writing a file there fails.
fn block(path: &Path) {
    fs::create_dir(path).unwrap();
    fs::write(path.join("in-the-way"), b"x").unwrap();
}

fn unblock(path: &Path) {
    fs::remove_dir_all(path).unwrap();
}

/// The next report in the chain, made at `made_at`.
fn envelope_made_at(spool: &Spool, made_at: DateTime<Utc>) -> Vec<u8> {
    let mut report = report();
    report.issued_at = made_at;
    spool.next_link().apply_to(&mut report, made_at);
    signed(&report)
}

#[test]
fn cycles_that_cannot_be_written_are_counted_and_the_next_report_carries_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(100)).unwrap();
    append_next(&mut spool);
    let blocked = dir.path().join(entry_name(2));
    block(&blocked);

    let first_lost = at() + Duration::minutes(15);
    for minutes in [15, 30] {
        let envelope = envelope_made_at(&spool, at() + Duration::minutes(minutes));
        let refused = spool.append(&envelope);
        assert!(matches!(refused, Err(SpoolError::Io { .. })), "{refused:?}");
    }
    let lost = Some(Unrecorded {
        count: 2,
        since: first_lost,
    });
    assert_eq!(spool.unrecorded(), lost);
    assert_eq!(spool.pending(), [1], "nothing was spooled");
    // The state could be saved (only the entry was in the way), so the
    // count survives a restart.
    unblock(&blocked);
    drop(spool);
    let mut spool = Spool::open(dir.path(), limits(100)).unwrap();
    assert_eq!(spool.unrecorded(), lost);
    assert_eq!(spool.next_link().unrecorded, lost);

    let appended = spool.append(&next_envelope(&spool)).unwrap();
    assert_eq!(
        appended.sequence, 2,
        "a lost cycle takes no sequence number"
    );
    let carried = entries::inspect(&spool.read(2).unwrap()).unwrap();
    assert_eq!(carried.unrecorded, lost);
    assert_eq!(spool.unrecorded(), None, "reported once");
    drop(spool);
    let spool = Spool::open(dir.path(), limits(100)).unwrap();
    assert_eq!(spool.unrecorded(), None);
    let state = fs::read_to_string(dir.path().join(STATE_FILE_NAME)).unwrap();
    assert!(!state.contains("unrecorded"), "{state}");
}

#[test]
fn a_report_cannot_claim_more_unrecorded_cycles_than_were_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(100)).unwrap();
    let mut link = spool.next_link();
    link.unrecorded = Some(Unrecorded {
        count: 3,
        since: at(),
    });
    let mut report = report();
    link.apply_to(&mut report, at());
    let refused = spool.append(&signed(&report));
    assert!(
        matches!(
            refused,
            Err(SpoolError::UnrecordedCountTooHigh {
                carried: 3,
                unreported: 0
            })
        ),
        "{refused:?}"
    );
    assert!(spool.is_empty());
}

#[test]
fn an_evicted_report_hands_back_the_unrecorded_cycles_it_was_carrying() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(1)).unwrap();
    let blocked = dir.path().join(entry_name(1));
    block(&blocked);
    assert!(spool.append(&next_envelope(&spool)).is_err());
    unblock(&blocked);
    append_next(&mut spool); // 1 carries the lost cycle
    assert_eq!(spool.unrecorded(), None);
    let appended = append_next(&mut spool); // 2 evicts 1
    assert_eq!(appended.evicted, [1]);
    assert_eq!(
        spool.unrecorded(),
        Some(Unrecorded {
            count: 1,
            since: at()
        }),
        "the count went with report 1, so it is owed again"
    );
    assert_eq!(spool.dropped_unreported(), 1);
}

/// A crash after a report carrying the count was written but before the
/// state was: open takes the entry into the chain, and the count it
/// carried is not reported again.
#[test]
fn an_adopted_entry_has_reported_its_unrecorded_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(100)).unwrap();
    let blocked = dir.path().join(entry_name(1));
    block(&blocked);
    assert!(spool.append(&next_envelope(&spool)).is_err());
    unblock(&blocked);
    let state_before = fs::read(dir.path().join(STATE_FILE_NAME)).unwrap();
    append_next(&mut spool);
    drop(spool);
    fs::write(dir.path().join(STATE_FILE_NAME), &state_before).unwrap();
    let spool = Spool::open(dir.path(), limits(100)).unwrap();
    assert_eq!(spool.recovery().adopted, [1]);
    assert_eq!(spool.unrecorded(), None);
}

/// On a full disk the state cannot be saved either. Delivered entries
/// must still leave, since that is what makes room, except the chain's
/// head, which is then the only record of where the chain is.
#[test]
fn delivered_reports_leave_even_when_the_state_cannot_be_saved() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(100)).unwrap();
    append_next(&mut spool);
    let state_path = dir.path().join(STATE_FILE_NAME);
    fs::remove_file(&state_path).unwrap();
    block(&state_path);
    let head = append_next(&mut spool).sequence; // written; its state is not
    assert_eq!(head, 2);

    assert!(spool.acknowledge(1).unwrap());
    assert_eq!(spool.pending(), [2]);
    let refused = spool.acknowledge(head);
    assert!(matches!(refused, Err(SpoolError::Io { .. })), "{refused:?}");
    assert_eq!(spool.pending(), [2], "the head stays");

    unblock(&state_path);
    assert!(spool.acknowledge(head).unwrap());
    drop(spool);
    let spool = Spool::open(dir.path(), limits(100)).unwrap();
    assert!(spool.is_empty());
    assert_eq!(spool.next_link().sequence, 3, "no number is reused");
}
