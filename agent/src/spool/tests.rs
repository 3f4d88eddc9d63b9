//! Unit tests of the spool: ordering, bounds, drop counting, and recovery
//! from each state a crash can leave. The SIGKILL test over a real process
//! is `agent/tests/spool_crash.rs`.

use std::collections::HashSet;

use chrono::TimeZone as _;
use ed25519_dalek::SigningKey;
use palisade_shared::envelope::{REPORT_PAYLOAD_TYPE, sha256_hex};
use palisade_shared::report::{AgentInfo, HostInfo, PolicyRef, REPORT_SCHEMA_VERSION};
use palisade_shared::{DeviceId, Envelope};

use super::*;

pub(super) fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

pub(super) fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

pub(super) fn report() -> Report {
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        device_id: DeviceId::new("dev-1"),
        sequence: 0,
        issued_at: at(),
        prev_digest: String::new(),
        agent: AgentInfo {
            version: "0.1.0".into(),
            os: "linux".into(),
        },
        host: HostInfo {
            hostname: "ward-7-laptop".into(),
            os_name: "Debian GNU/Linux 12 (bookworm)".into(),
            os_version: "12".into(),
            kernel_version: "6.1.0".into(),
            arch: "x86_64".into(),
            console_user: None,
        },
        policy: PolicyRef {
            id: "nhs-baseline".into(),
            version: 1,
            digest: sha256_hex(b"policy"),
        },
        checks: Vec::new(),
        events: Vec::new(),
    }
}

/// The next report in `spool`'s chain, signed, as envelope bytes.
pub(super) fn next_envelope(spool: &Spool) -> Vec<u8> {
    let mut report = report();
    spool.next_link().apply_to(&mut report, at());
    signed(&report)
}

pub(super) fn signed(report: &Report) -> Vec<u8> {
    Envelope::sign(REPORT_PAYLOAD_TYPE, &report.to_payload(), &key()).to_json()
}

pub(super) fn limits(max_reports: u64) -> SpoolLimits {
    SpoolLimits {
        max_reports,
        max_bytes: 1 << 30,
    }
}

pub(super) fn append_next(spool: &mut Spool) -> Appended {
    let envelope = next_envelope(spool);
    spool.append(&envelope).unwrap()
}

/// Appends the next report without reporting the drops (allowed: a report
/// may carry less than is unreported), so drops pile up.
fn append_not_carrying(spool: &mut Spool) -> Appended {
    let mut link = spool.next_link();
    link.dropped = 0;
    let envelope = next_envelope_for(&link);
    spool.append(&envelope).unwrap()
}

fn carried(spool: &Spool, sequence: u64) -> u64 {
    inspect(&spool.read(sequence).unwrap()).unwrap().carried
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn entry_names_sort_in_sequence_order() {
    assert_eq!(entry_name(42), "00000000000000000042.dsse.json");
    assert_eq!(entry_name(u64::MAX), "18446744073709551615.dsse.json");
    assert_eq!(parse_entry_name("00000000000000000042.dsse.json"), Some(42));
    for other in [
        "42.dsse.json",
        "0000000000000000004x.dsse.json",
        "00000000000000000042.json",
        "spool-state.json",
        "99999999999999999999.dsse.json",
    ] {
        assert_eq!(parse_entry_name(other), None, "{other}");
    }
}

#[test]
fn appends_chain_and_come_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(100)).unwrap();
    assert!(spool.recovery().is_clean(), "{:?}", spool.recovery());
    assert_eq!(
        spool.next_link(),
        NextLink {
            sequence: 1,
            prev_digest: String::new(),
            dropped: 0,
            unrecorded: None,
        }
    );
    let mut envelopes = Vec::new();
    for expected in 1..=5 {
        let envelope = next_envelope(&spool);
        let appended = spool.append(&envelope).unwrap();
        assert_eq!(appended.sequence, expected);
        assert!(appended.evicted.is_empty());
        assert_eq!(spool.next_link().prev_digest, appended.digest);
        envelopes.push(envelope);
    }
    assert_eq!(spool.pending(), [1, 2, 3, 4, 5]);
    for (sequence, envelope) in (1..).zip(&envelopes) {
        assert_eq!(&spool.read(sequence).unwrap(), envelope, "byte for byte");
    }
    // Each report's prev_digest is the digest of the one before.
    let digests: Vec<String> = envelopes
        .iter()
        .map(|e| inspect(e).unwrap().digest)
        .collect();
    for (i, envelope) in envelopes.iter().enumerate().skip(1) {
        assert_eq!(inspect(envelope).unwrap().prev_digest, digests[i - 1]);
    }
    assert_eq!(
        spool.total_bytes(),
        envelopes.iter().map(|e| e.len() as u64).sum::<u64>()
    );
}

#[test]
fn acknowledged_reports_leave_and_the_chain_goes_on_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(100)).unwrap();
    for _ in 0..3 {
        append_next(&mut spool);
    }
    assert!(spool.acknowledge(1).unwrap());
    assert!(!spool.acknowledge(1).unwrap(), "already gone");
    assert!(matches!(spool.read(1), Err(SpoolError::NotFound(1))));
    assert!(spool.acknowledge(2).unwrap());
    assert!(spool.acknowledge(3).unwrap());
    assert!(spool.is_empty());
    let link = spool.next_link();
    drop(spool);

    let spool = Spool::open(dir.path(), limits(100)).unwrap();
    assert!(spool.recovery().is_clean(), "{:?}", spool.recovery());
    assert_eq!(
        spool.next_link(),
        link,
        "the empty spool still knows the chain"
    );
    assert_eq!(link.sequence, 4);
}

#[test]
fn reports_that_break_the_chain_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(100)).unwrap();
    append_next(&mut spool);
    let before = file_names(dir.path());

    let mut skipped = report();
    spool.next_link().apply_to(&mut skipped, at());
    skipped.sequence += 1;
    assert!(matches!(
        spool.append(&signed(&skipped)),
        Err(SpoolError::OutOfSequence {
            expected: 2,
            got: 3
        })
    ));

    let mut rewritten = report();
    spool.next_link().apply_to(&mut rewritten, at());
    rewritten.prev_digest = sha256_hex(b"another history");
    assert!(matches!(
        spool.append(&signed(&rewritten)),
        Err(SpoolError::BrokenChain { sequence: 2, .. })
    ));

    let mut claims_drops = report();
    spool.next_link().apply_to(&mut claims_drops, at());
    claims_drops.events.push(dropped_event(1, at()));
    assert!(matches!(
        spool.append(&signed(&claims_drops)),
        Err(SpoolError::DropCountTooHigh {
            carried: 1,
            unreported: 0
        })
    ));

    let mut policy = report();
    spool.next_link().apply_to(&mut policy, at());
    let wrong_type = Envelope::sign(
        palisade_shared::envelope::POLICY_PAYLOAD_TYPE,
        &policy.to_payload(),
        &key(),
    );
    assert!(matches!(
        spool.append(&wrong_type.to_json()),
        Err(SpoolError::InvalidReport(_))
    ));
    assert!(matches!(
        spool.append(b"{}"),
        Err(SpoolError::InvalidReport(_))
    ));

    assert_eq!(file_names(dir.path()), before);
    assert_eq!(spool.next_link().sequence, 2);
}

#[test]
fn count_bound_drops_the_oldest_and_the_count_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(3)).unwrap();
    for _ in 0..3 {
        assert!(append_next(&mut spool).evicted.is_empty());
    }
    // The collector is away: each new report pushes out the oldest.
    assert_eq!(append_next(&mut spool).evicted, [1]);
    assert_eq!(spool.dropped_unreported(), 1);
    // Report 5 carries the one drop; appending it evicts report 2.
    let appended = append_next(&mut spool);
    assert_eq!(carried(&spool, 5), 1);
    assert_eq!(appended.evicted, [2]);
    assert_eq!(spool.dropped_unreported(), 1, "1 reported, 1 new");
    assert_eq!(spool.pending(), [3, 4, 5]);

    // The collector is back: nothing more is dropped, the count is reported.
    spool.acknowledge(3).unwrap();
    append_next(&mut spool);
    assert_eq!(carried(&spool, 6), 1);
    assert_eq!(spool.dropped_unreported(), 0);
    append_next(&mut spool);
    assert_eq!(carried(&spool, 7), 0);
}

#[test]
fn an_evicted_report_hands_back_the_drops_it_was_carrying() {
    // A long outage: 25 reports into a spool of 10, each report carrying
    // the drops so far. Evicting a report that carried a count must not
    // lose that count: what the spool still holds plus what is still
    // unreported accounts for every one of the 15 drops.
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(10)).unwrap();
    for _ in 0..25 {
        append_next(&mut spool);
    }
    let spooled: u64 = spool.pending().iter().map(|&s| carried(&spool, s)).sum();
    assert_eq!(spooled + spool.dropped_unreported(), 15);
    // The same after reopening (the counts are read back from the entries).
    drop(spool);
    let spool = Spool::open(dir.path(), limits(10)).unwrap();
    let spooled: u64 = spool.pending().iter().map(|&s| carried(&spool, s)).sum();
    assert_eq!(spooled + spool.dropped_unreported(), 15);
}

#[test]
fn byte_bound_drops_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(100)).unwrap();
    let size = next_envelope(&spool).len() as u64;
    // Room for two and a half reports. (Later reports are a little larger:
    // they carry a prev_digest and perhaps an event.)
    spool.set_limits(SpoolLimits {
        max_reports: 100,
        max_bytes: size * 5 / 2 + 100,
    });
    append_next(&mut spool);
    append_next(&mut spool);
    assert_eq!(append_next(&mut spool).evicted, [1]);
    assert!(spool.total_bytes() <= spool.limits().max_bytes);
    assert_eq!(spool.pending(), [2, 3]);
    assert_eq!(spool.dropped_unreported(), 1);
}

#[test]
fn a_report_larger_than_the_byte_bound_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(
        dir.path(),
        SpoolLimits {
            max_reports: 10,
            max_bytes: 100,
        },
    )
    .unwrap();
    let envelope = next_envelope(&spool);
    assert!(matches!(
        spool.append(&envelope),
        Err(SpoolError::TooLarge { .. })
    ));
    assert!(spool.is_empty());
}

#[test]
fn drop_count_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(2)).unwrap();
    for _ in 0..6 {
        append_not_carrying(&mut spool);
    }
    assert_eq!(spool.dropped_unreported(), 4);
    drop(spool);
    let mut spool = Spool::open(dir.path(), limits(2)).unwrap();
    assert_eq!(spool.dropped_unreported(), 4);
    assert_eq!(spool.next_link().dropped, 4);
    append_next(&mut spool);
    assert_eq!(carried(&spool, 7), 4);
    assert_eq!(spool.dropped_unreported(), 1, "report 5 made way for 7");
}

#[test]
fn smaller_bounds_apply_at_open_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(10)).unwrap();
    for _ in 0..6 {
        append_next(&mut spool);
    }
    drop(spool);
    let spool = Spool::open(dir.path(), limits(4)).unwrap();
    assert_eq!(spool.recovery().evicted, [1, 2]);
    assert_eq!(spool.pending(), [3, 4, 5, 6]);
    assert_eq!(spool.dropped_unreported(), 2);
}

#[test]
fn temp_files_of_interrupted_writes_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(10)).unwrap();
    append_next(&mut spool);
    let link = spool.next_link();
    drop(spool);
    // What a SIGKILL before the rename leaves: a whole or half temp file.
    let half = &next_envelope_for(&link)[..40];
    fs::write(
        dir.path().join(format!(
            "{}1234-0-00000000000000000002.dsse.json",
            durable::TEMP_PREFIX
        )),
        half,
    )
    .unwrap();
    let spool = Spool::open(dir.path(), limits(10)).unwrap();
    assert_eq!(spool.recovery().temp_files_removed, 1);
    assert_eq!(spool.pending(), [1]);
    assert_eq!(
        spool.next_link(),
        link,
        "the interrupted report's number is free"
    );
    assert_eq!(
        file_names(dir.path()),
        ["00000000000000000001.dsse.json", STATE_FILE_NAME]
    );
}

fn next_envelope_for(link: &NextLink) -> Vec<u8> {
    let mut report = report();
    link.apply_to(&mut report, at());
    signed(&report)
}

#[test]
fn damaged_entries_are_quarantined_counted_and_their_numbers_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(10)).unwrap();
    for _ in 0..3 {
        append_next(&mut spool);
    }
    drop(spool);
    // A disk fault in the middle entry, and one past the chain state.
    fs::write(dir.path().join(entry_name(2)), b"{\"payload\": tru").unwrap();
    fs::write(dir.path().join(entry_name(9)), b"not json").unwrap();

    let spool = Spool::open(dir.path(), limits(10)).unwrap();
    assert_eq!(spool.recovery().quarantined, [entry_name(2), entry_name(9)]);
    assert_eq!(spool.pending(), [1, 3]);
    assert_eq!(spool.dropped_unreported(), 2);
    let link = spool.next_link();
    assert_eq!(link.sequence, 10, "9 was used by the damaged file");
    assert_eq!(link.prev_digest, "", "the break in the chain is visible");
    assert_eq!(
        file_names(&dir.path().join(CORRUPT_DIR_NAME)),
        [entry_name(2), entry_name(9)]
    );
    drop(spool);
    // Quarantine never overwrites an earlier one.
    fs::write(dir.path().join(entry_name(3)), b"garbage").unwrap();
    fs::copy(
        dir.path().join(entry_name(3)),
        dir.path().join(CORRUPT_DIR_NAME).join(entry_name(3)),
    )
    .unwrap();
    let spool = Spool::open(dir.path(), limits(10)).unwrap();
    assert_eq!(spool.pending(), [1]);
    assert!(
        dir.path()
            .join(CORRUPT_DIR_NAME)
            .join(format!("{}.1", entry_name(3)))
            .exists()
    );
}

/// fuzz/spool_load: a state file whose drop count is u64::MAX, and a
/// damaged entry to count on top of it, made `open` overflow.
#[test]
fn a_drop_count_at_its_maximum_stays_there_when_damage_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(STATE_FILE_NAME),
        "{\"schema_version\":1,\"last_sequence\":41,\"last_digest\":\"\",\
         \"dropped_unreported\":18446744073709551615,\"evicted_through\":0}",
    )
    .unwrap();
    fs::write(dir.path().join(entry_name(1)), b"x").unwrap();
    fs::write(dir.path().join(entry_name(2)), b"x").unwrap();
    let spool = Spool::open(dir.path(), limits(1)).unwrap();
    assert_eq!(spool.recovery().quarantined, [entry_name(1), entry_name(2)]);
    assert_eq!(spool.dropped_unreported(), u64::MAX);
}

#[test]
fn an_entry_whose_report_has_another_sequence_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(10)).unwrap();
    append_next(&mut spool);
    append_next(&mut spool);
    drop(spool);
    fs::rename(
        dir.path().join(entry_name(2)),
        dir.path().join(entry_name(5)),
    )
    .unwrap();
    let spool = Spool::open(dir.path(), limits(10)).unwrap();
    assert_eq!(spool.recovery().quarantined, [entry_name(5)]);
    assert_eq!(spool.next_link().sequence, 6);
}

/// A crash after the entry was written but before the state was: the
/// entry is taken into the chain and what it carried is not reported again.
#[test]
fn entry_newer_than_the_state_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(3)).unwrap();
    for _ in 0..5 {
        append_not_carrying(&mut spool);
    }
    assert_eq!(spool.dropped_unreported(), 2);
    let state_before = fs::read(dir.path().join(STATE_FILE_NAME)).unwrap();
    let appended = append_next(&mut spool); // report 6 carries the 2 drops, evicts 3
    assert_eq!(appended.evicted, [3]);
    drop(spool);
    // Undo the state write and the eviction: as if killed right after step 1.
    fs::write(dir.path().join(STATE_FILE_NAME), &state_before).unwrap();
    let mut replay = Spool::open(dir.path(), limits(100)).unwrap();
    assert_eq!(replay.recovery().adopted, [6]);
    assert_eq!(replay.next_link().sequence, 7);
    assert_eq!(replay.next_link().prev_digest, appended.digest);
    assert_eq!(
        replay.dropped_unreported(),
        0,
        "report 6 already carries the 2"
    );
    // And the next append works on top of it.
    append_next(&mut replay);
}

/// The same crash, with the bounds still in force at the next start: the
/// eviction that append did not get to is done and counted at open.
#[test]
fn adoption_then_eviction_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(3)).unwrap();
    for _ in 0..3 {
        append_next(&mut spool);
    }
    let state_before = fs::read(dir.path().join(STATE_FILE_NAME)).unwrap();
    let first = spool.read(1).unwrap();
    assert_eq!(append_next(&mut spool).evicted, [1]);
    drop(spool);
    // Undo steps 2 and 3: the kill came right after the entry was written.
    fs::write(dir.path().join(STATE_FILE_NAME), &state_before).unwrap();
    fs::write(dir.path().join(entry_name(1)), &first).unwrap();
    let spool = Spool::open(dir.path(), limits(3)).unwrap();
    assert_eq!(spool.recovery().adopted, [4]);
    assert_eq!(spool.pending(), [2, 3, 4]);
    assert_eq!(spool.dropped_unreported(), 1);
}

/// A crash after the state was written but before the evicted files were
/// deleted: open deletes them without counting them twice.
#[test]
fn counted_evictions_are_finished_at_open_without_counting_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(2)).unwrap();
    append_next(&mut spool);
    append_next(&mut spool);
    let first = spool.read(1).unwrap();
    assert_eq!(append_next(&mut spool).evicted, [1]);
    drop(spool);
    fs::write(dir.path().join(entry_name(1)), &first).unwrap();
    let spool = Spool::open(dir.path(), limits(2)).unwrap();
    assert_eq!(spool.recovery().evictions_completed, 1);
    assert_eq!(spool.pending(), [2, 3]);
    assert_eq!(spool.dropped_unreported(), 1);
    assert!(!dir.path().join(entry_name(1)).exists());
}

#[test]
fn a_lost_state_file_is_rebuilt_from_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(10)).unwrap();
    for _ in 0..4 {
        append_next(&mut spool);
    }
    let link = spool.next_link();
    drop(spool);
    fs::remove_file(dir.path().join(STATE_FILE_NAME)).unwrap();
    let spool = Spool::open(dir.path(), limits(10)).unwrap();
    assert_eq!(spool.next_link(), link);
}

#[test]
fn a_damaged_state_file_stops_the_spool_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    drop(Spool::open(dir.path(), limits(10)).unwrap());
    for bad in [
        "{",
        "{\"schema_version\":2,\"last_sequence\":0,\"last_digest\":\"\",\"dropped_unreported\":0,\"evicted_through\":0}",
        "{\"schema_version\":1,\"last_sequence\":3,\"last_digest\":\"xyz\",\"dropped_unreported\":0,\"evicted_through\":0}",
        "{\"schema_version\":1,\"last_sequence\":3,\"last_digest\":\"\",\"dropped_unreported\":0,\"evicted_through\":4}",
    ] {
        fs::write(dir.path().join(STATE_FILE_NAME), bad).unwrap();
        let err = Spool::open(dir.path(), limits(10)).unwrap_err();
        assert!(matches!(err, SpoolError::State { .. }), "{bad}: {err}");
        assert!(err.to_string().contains(STATE_FILE_NAME), "{err}");
    }
}

#[test]
fn unknown_files_are_left_alone_and_list_entries_reads_without_opening() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), limits(10)).unwrap();
    append_next(&mut spool);
    append_next(&mut spool);
    fs::write(dir.path().join("NOTES.txt"), b"hello").unwrap();
    let listed = list_entries(dir.path()).unwrap();
    assert_eq!(
        listed.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(listed[0].bytes, spool.read(1).unwrap().len() as u64);
    drop(spool);
    let spool = Spool::open(dir.path(), limits(10)).unwrap();
    assert_eq!(spool.recovery().unknown_files, ["NOTES.txt"]);
    assert!(dir.path().join("NOTES.txt").exists());
}

#[test]
fn sequences_are_never_reused_across_many_reopenings() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = HashSet::new();
    for round in 0..20 {
        let mut spool = Spool::open(dir.path(), limits(5)).unwrap();
        for _ in 0..(round % 4) {
            let appended = append_next(&mut spool);
            assert!(
                seen.insert(appended.sequence),
                "reused {}",
                appended.sequence
            );
            if let Some(oldest) = spool.oldest().filter(|_| round % 3 == 0) {
                spool.acknowledge(oldest).unwrap();
            }
        }
    }
}
