//! The part of `store_reports` both backends share: judging a batch.
//!
//! A backend opens its transaction, takes the write lock on the batch's
//! devices, reads their chain heads and the digests already stored at the
//! batch's sequences, and hands them to [`plan_batch`]. The plan decides
//! every report in batch order with [`crate::store::chain::decide`], letting
//! each report see the ones before it in the same batch, and says what to
//! write. The backend then writes exactly that and commits.
//!
//! This module is pure: no SQL, no I/O. Keeping the decision out of the
//! backends means SQLite and PostgreSQL judge a batch identically, and lets
//! the PostgreSQL backend write a whole batch in a handful of statements
//! instead of a round trip per report.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::{IncomingReport, IncomingVerdict, StoreError, StoreOutcome, to_db_integer};
use crate::store::chain::{ChainDecision, ChainState, IncomingLink, decide};

/// The head of a device's hash chain as stored (the `devices` row).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub last_sequence: Option<u64>,
    pub last_digest: Option<String>,
    /// The device was revoked, read inside the writing transaction: a report
    /// verified just before a revoke committed is refused here, not stored.
    pub revoked: bool,
}

/// The distinct devices of a batch, sorted. Backends lock device rows in
/// this order so that two collectors writing overlapping batches cannot
/// deadlock.
pub(crate) fn batch_devices(batch: &[IncomingReport]) -> Vec<&str> {
    let mut devices: Vec<&str> = batch.iter().map(|r| r.device_id.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    devices
}

/// A report to insert, with how the chain judged it.
#[derive(Debug)]
pub(crate) struct ReportInsert<'a> {
    pub report: &'a IncomingReport,
    pub sequence_gap: bool,
    pub chain_broken: bool,
    /// JSON object counting the report's checks by status.
    pub summary_json: String,
}

/// One device's day in the compliance trend: the device's latest report of
/// that UTC day decides whether the device was compliant that day. Stored
/// in `device_days` as reports arrive, so the overview reads one small row
/// per device and day instead of a month of report rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DayRollup<'a> {
    pub device_id: &'a str,
    /// Days since 1970-01-01 (UTC), of `issued_at`.
    pub day: i64,
    /// Milliseconds.
    pub issued_at: i64,
    pub sequence: i64,
    /// No check failed (unknowns do not make a device non-compliant here,
    /// as in the overview's counts).
    pub compliant: bool,
}

/// The rollup rows of a batch's stored reports: one per device and day,
/// the latest report of that day in the batch (an upsert may not touch a
/// row twice). The upsert keeps a stored row that is later still.
pub(crate) fn day_rollups<'a>(
    inserts: &[ReportInsert<'a>],
) -> Result<Vec<DayRollup<'a>>, StoreError> {
    let mut latest: BTreeMap<(&'a str, i64), DayRollup<'a>> = BTreeMap::new();
    for insert in inserts {
        let report = insert.report;
        let rollup = DayRollup {
            device_id: report.device_id.as_str(),
            day: super::utc_day(report.issued_at),
            issued_at: super::to_millis(report.issued_at),
            sequence: to_db_integer(report.sequence, "sequence")?,
            compliant: !report
                .verdicts
                .iter()
                .any(|verdict| verdict.status == palisade_shared::report::CheckStatus::Fail),
        };
        latest
            .entry((rollup.device_id, rollup.day))
            .and_modify(|kept| {
                if (rollup.issued_at, rollup.sequence) > (kept.issued_at, kept.sequence) {
                    *kept = rollup;
                }
            })
            .or_insert(rollup);
    }
    Ok(latest.into_values().collect())
}

/// What changes on one device's row after the batch.
#[derive(Debug)]
pub(crate) struct DeviceUpdate<'a> {
    pub device_id: &'a str,
    /// The report that became the device's highest, if one did: the chain
    /// head, the host facts and the latest verdicts come from it.
    pub head: Option<&'a IncomingReport>,
    /// The head's verdicts, one per rule; a rule listed twice in one report
    /// keeps its last entry (an upsert may not touch a row twice).
    pub head_verdicts: Vec<VerdictUpsert<'a>>,
    /// Flags to set; they are never cleared.
    pub sequence_gap: bool,
    pub chain_broken: bool,
    /// The latest `received_at` among the device's stored reports.
    pub last_seen_at: DateTime<Utc>,
}

/// One latest verdict to write, with when its status began.
///
/// Only the head's verdicts are written, but the answer must not depend on
/// how reports were batched: if reports 3 and 4 of a batch both say `fail`,
/// the failure began at 3. So the plan walks back through the batch's
/// earlier heads of the device while the rule kept the same status.
#[derive(Debug)]
pub(crate) struct VerdictUpsert<'a> {
    pub verdict: &'a IncomingVerdict,
    /// `issued_at` of the earliest report of this batch in the run of
    /// reports ending at the head in which the rule had this status.
    pub status_since: DateTime<Utc>,
    /// The run reaches back to the device's first new head of this batch:
    /// if the stored verdict already has this status, its older
    /// `status_since` is kept. Otherwise `status_since` above wins.
    pub continues_stored: bool,
}

#[derive(Debug)]
pub(crate) struct BatchPlan<'a> {
    /// One per report, in batch order.
    pub outcomes: Vec<StoreOutcome>,
    /// In batch order.
    pub inserts: Vec<ReportInsert<'a>>,
    /// Only devices with at least one stored report, sorted by id.
    pub devices: Vec<DeviceUpdate<'a>>,
}

/// Decides every report of `batch` in order.
///
/// `heads` must hold every device of the batch (a missing one is an error:
/// the ingest path found its key, so the row must exist). `stored_digests`
/// holds the digest already stored at each `(device, sequence)` of the batch
/// that has one.
pub(crate) fn plan_batch<'a>(
    batch: &'a [IncomingReport],
    mut heads: HashMap<String, ChainHead>,
    stored_digests: &HashMap<(String, u64), String>,
) -> Result<BatchPlan<'a>, StoreError> {
    // Refuse numbers the database cannot hold before anything is written.
    for report in batch {
        to_db_integer(report.sequence, "sequence")?;
        to_db_integer(report.policy_version, "policy version")?;
    }

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut inserts = Vec::new();
    let mut devices: BTreeMap<&'a str, DeviceUpdate<'a>> = BTreeMap::new();
    // Per device, the reports that became its head in this batch, in order.
    let mut new_heads: HashMap<&'a str, Vec<&'a IncomingReport>> = HashMap::new();
    // Digests stored earlier in this batch, which the database does not
    // know about yet.
    let mut batch_digests: HashMap<(&'a str, u64), &'a str> = HashMap::new();

    for report in batch {
        let device_id = report.device_id.as_str();
        let head = heads.get_mut(device_id).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a report names device {device_id}, which is not enrolled"
            ))
        })?;
        if head.revoked {
            outcomes.push(StoreOutcome::Revoked);
            continue;
        }
        let digest_at_sequence = match batch_digests.get(&(device_id, report.sequence)) {
            Some(digest) => Some((*digest).to_owned()),
            None => stored_digests
                .get(&(report.device_id.clone(), report.sequence))
                .cloned(),
        };
        let state = ChainState {
            last_sequence: head.last_sequence,
            last_digest: head.last_digest.clone(),
            digest_at_sequence,
        };
        let link = IncomingLink {
            sequence: report.sequence,
            digest: &report.digest,
            prev_digest: &report.prev_digest,
        };
        match decide(&state, &link) {
            ChainDecision::Duplicate => outcomes.push(StoreOutcome::Duplicate),
            ChainDecision::Conflict { reason } => outcomes.push(StoreOutcome::Conflict(reason)),
            ChainDecision::Store {
                sequence_gap,
                chain_broken,
            } => {
                outcomes.push(StoreOutcome::Stored {
                    sequence_gap,
                    chain_broken,
                });
                inserts.push(ReportInsert {
                    report,
                    sequence_gap,
                    chain_broken,
                    summary_json: status_counts_json(&report.verdicts),
                });
                batch_digests.insert((device_id, report.sequence), &report.digest);

                let update = devices.entry(device_id).or_insert_with(|| DeviceUpdate {
                    device_id,
                    head: None,
                    head_verdicts: Vec::new(),
                    sequence_gap: false,
                    chain_broken: false,
                    last_seen_at: report.received_at,
                });
                update.sequence_gap |= sequence_gap;
                update.chain_broken |= chain_broken;
                update.last_seen_at = update.last_seen_at.max(report.received_at);
                // The chain rules only store a report above the head today,
                // but the head moves only upwards whatever they decide.
                if head.last_sequence.is_none_or(|last| report.sequence > last) {
                    head.last_sequence = Some(report.sequence);
                    head.last_digest = Some(report.digest.clone());
                    update.head = Some(report);
                    new_heads.entry(device_id).or_default().push(report);
                }
            }
        }
    }

    let devices = devices
        .into_values()
        .map(|mut update| {
            if let Some(heads) = new_heads.get(update.device_id) {
                update.head_verdicts = verdict_upserts(heads);
            }
            update
        })
        .collect();
    Ok(BatchPlan {
        outcomes,
        inserts,
        devices,
    })
}

/// `{"fail":1,"pass":3}`: how many checks of the report have each status,
/// in a stable key order.
fn status_counts_json(verdicts: &[IncomingVerdict]) -> String {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for verdict in verdicts {
        *counts.entry(verdict.status.as_str()).or_default() += 1;
    }
    serde_json::Value::Object(
        counts
            .into_iter()
            .map(|(status, count)| (status.to_owned(), count.into()))
            .collect(),
    )
    .to_string()
}

/// The latest verdicts after `heads` (a device's new heads in this batch, in
/// order; the last one is the head that stays).
fn verdict_upserts<'a>(heads: &[&'a IncomingReport]) -> Vec<VerdictUpsert<'a>> {
    let Some((head, earlier)) = heads.split_last() else {
        return Vec::new();
    };
    let earlier_statuses: Vec<HashMap<&str, _>> = earlier
        .iter()
        .map(|report| {
            one_verdict_per_rule(&report.verdicts)
                .into_iter()
                .map(|v| (v.rule_id.as_str(), v.status))
                .collect()
        })
        .collect();
    one_verdict_per_rule(&head.verdicts)
        .into_iter()
        .map(|verdict| {
            let mut status_since = head.issued_at;
            let mut continues_stored = true;
            for (report, statuses) in earlier.iter().zip(&earlier_statuses).rev() {
                if statuses.get(verdict.rule_id.as_str()) == Some(&verdict.status) {
                    status_since = report.issued_at;
                } else {
                    continues_stored = false;
                    break;
                }
            }
            VerdictUpsert {
                verdict,
                status_since,
                continues_stored,
            }
        })
        .collect()
}

/// The verdicts with each rule once, its last entry winning, in the order
/// of those last entries.
fn one_verdict_per_rule(verdicts: &[IncomingVerdict]) -> Vec<&IncomingVerdict> {
    let last_index: HashMap<&str, usize> = verdicts
        .iter()
        .enumerate()
        .map(|(index, verdict)| (verdict.rule_id.as_str(), index))
        .collect();
    verdicts
        .iter()
        .enumerate()
        .filter(|(index, verdict)| last_index.get(verdict.rule_id.as_str()) == Some(index))
        .map(|(_, verdict)| verdict)
        .collect()
}

#[cfg(test)]
mod tests {
    use palisade_shared::report::CheckStatus;

    use super::*;
    use crate::store::chain::ConflictReason;

    fn report(device: &str, sequence: u64, digest: &str, prev: &str) -> IncomingReport {
        let at = DateTime::from_timestamp_millis(1_700_000_000_000 + sequence as i64 * 1000)
            .unwrap_or_default();
        IncomingReport {
            device_id: device.to_owned(),
            key_id: format!("key-{device}"),
            sequence,
            digest: digest.to_owned(),
            prev_digest: prev.to_owned(),
            issued_at: at,
            received_at: at,
            envelope: Vec::new(),
            hostname: "host".to_owned(),
            os_name: "linux".to_owned(),
            os_version: "12".to_owned(),
            agent_version: "0.1.0".to_owned(),
            console_user: None,
            policy_id: "baseline".to_owned(),
            policy_version: 1,
            verdicts: vec![
                verdict("screen_lock", CheckStatus::Pass),
                verdict("usb_storage", CheckStatus::Fail),
                verdict("screen_lock", CheckStatus::Unknown),
            ],
        }
    }

    fn verdict(rule: &str, status: CheckStatus) -> IncomingVerdict {
        IncomingVerdict {
            rule_id: rule.to_owned(),
            status,
            mode: "audit".to_owned(),
            summary: String::new(),
            evidence_json: "{}".to_owned(),
            fix: String::new(),
        }
    }

    fn heads(entries: &[(&str, Option<(u64, &str)>)]) -> HashMap<String, ChainHead> {
        entries
            .iter()
            .map(|(device, head)| {
                (
                    (*device).to_owned(),
                    ChainHead {
                        last_sequence: head.map(|(s, _)| s),
                        last_digest: head.map(|(_, d)| d.to_owned()),
                        revoked: false,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn reports_of_one_device_see_each_other_within_a_batch() {
        let batch = [
            report("a", 1, "d1", ""),
            report("a", 2, "d2", "d1"),
            report("a", 2, "d2", "d1"),
            report("a", 2, "X", "d1"),
            report("a", 4, "d4", "d3"),
            report("a", 3, "d3", "d2"),
        ];
        let plan = plan_batch(&batch, heads(&[("a", None)]), &HashMap::new())
            .unwrap_or_else(|err| panic!("plan failed: {err}"));
        assert_eq!(
            plan.outcomes,
            vec![
                StoreOutcome::Stored {
                    sequence_gap: false,
                    chain_broken: false
                },
                StoreOutcome::Stored {
                    sequence_gap: false,
                    chain_broken: false
                },
                StoreOutcome::Duplicate,
                StoreOutcome::Conflict(ConflictReason::SequenceTakenByAnotherDigest),
                StoreOutcome::Stored {
                    sequence_gap: true,
                    chain_broken: false
                },
                StoreOutcome::Conflict(ConflictReason::SequenceBelowStored),
            ]
        );
        assert_eq!(plan.inserts.len(), 3);
        assert_eq!(plan.devices.len(), 1);
        let device = &plan.devices[0];
        assert_eq!(device.head.map(|r| r.sequence), Some(4));
        assert!(device.sequence_gap);
        assert!(!device.chain_broken);
    }

    #[test]
    fn stored_digests_and_heads_come_from_the_database() {
        let batch = [report("b", 5, "d5", "d4"), report("a", 3, "d3", "wrong")];
        let stored = HashMap::from([(("b".to_owned(), 5), "d5".to_owned())]);
        let plan = plan_batch(
            &batch,
            heads(&[("a", Some((2, "d2"))), ("b", Some((7, "d7")))]),
            &stored,
        )
        .unwrap_or_else(|err| panic!("plan failed: {err}"));
        assert_eq!(
            plan.outcomes,
            vec![
                StoreOutcome::Duplicate,
                StoreOutcome::Stored {
                    sequence_gap: false,
                    chain_broken: true
                },
            ]
        );
        let ids: Vec<&str> = plan.devices.iter().map(|d| d.device_id).collect();
        assert_eq!(ids, ["a"]);
    }

    #[test]
    fn an_unknown_device_or_a_huge_sequence_is_an_error() {
        let batch = [report("ghost", 1, "d1", "")];
        assert!(matches!(
            plan_batch(&batch, HashMap::new(), &HashMap::new()),
            Err(StoreError::Corrupt(_))
        ));
        let batch = [report("a", u64::MAX, "d1", "")];
        assert!(matches!(
            plan_batch(&batch, heads(&[("a", None)]), &HashMap::new()),
            Err(StoreError::ValueOutOfRange {
                what: "sequence",
                ..
            })
        ));
    }

    #[test]
    fn a_rule_listed_twice_keeps_its_last_verdict_and_counts_are_per_status() {
        let batch = [report("a", 1, "d1", "")];
        let plan = plan_batch(&batch, heads(&[("a", None)]), &HashMap::new())
            .unwrap_or_else(|err| panic!("plan failed: {err}"));
        let verdicts: Vec<(&str, CheckStatus)> = plan.devices[0]
            .head_verdicts
            .iter()
            .map(|v| (v.verdict.rule_id.as_str(), v.verdict.status))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("usb_storage", CheckStatus::Fail),
                ("screen_lock", CheckStatus::Unknown)
            ]
        );
        assert_eq!(
            plan.inserts[0].summary_json,
            r#"{"fail":1,"pass":1,"unknown":1}"#
        );
    }

    #[test]
    fn status_since_does_not_depend_on_batching() {
        let with = |sequence: u64, statuses: &[(&str, CheckStatus)]| {
            let mut r = report(
                "a",
                sequence,
                &format!("d{sequence}"),
                &format!("d{}", sequence - 1),
            );
            r.verdicts = statuses
                .iter()
                .map(|(rule, status)| verdict(rule, *status))
                .collect();
            r
        };
        use CheckStatus::{Fail, Pass};
        let batch = [
            with(1, &[("lock", Pass), ("usb", Fail), ("disk", Pass)]),
            with(2, &[("lock", Fail), ("usb", Fail)]),
            with(3, &[("lock", Fail), ("usb", Fail), ("disk", Pass)]),
        ];
        let plan = plan_batch(&batch, heads(&[("a", None)]), &HashMap::new())
            .unwrap_or_else(|err| panic!("plan failed: {err}"));
        let upserts: Vec<(&str, DateTime<Utc>, bool)> = plan.devices[0]
            .head_verdicts
            .iter()
            .map(|u| {
                (
                    u.verdict.rule_id.as_str(),
                    u.status_since,
                    u.continues_stored,
                )
            })
            .collect();
        assert_eq!(
            upserts,
            [
                // Failing since 2, which this batch decides alone.
                ("lock", batch[1].issued_at, false),
                // Failing through the whole batch: an older stored failure
                // keeps its time.
                ("usb", batch[0].issued_at, true),
                // Missing from 2: its run restarts at 3.
                ("disk", batch[2].issued_at, false),
            ]
        );
    }
}
