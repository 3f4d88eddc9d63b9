//! One check cycle of the daemon: run the rules, stamp failures with their
//! deadlines, fill a report, link it into the chain, sign it and write it to
//! the spool — all before anything is
//! sent, so a crash after this returns can never lose the report.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use chrono::Utc;
use palisade_shared::envelope::{Envelope, REPORT_PAYLOAD_TYPE};
use palisade_shared::report::{CheckResult, CheckStatus, Event};
use palisade_shared::{DeviceId, Policy};

use super::deadlines::Deadlines;
use crate::checks::run_checks;
use crate::enforce::{EnforceContext, enforce_failing};
use crate::identity::Identity;
use crate::spool::Spool;
use crate::status::StatusBoard;
use crate::sys::Host;

/// What a cycle produced.
#[derive(Debug, Clone)]
pub struct CycleOutcome {
    pub sequence: u64,
    pub failing: Vec<String>,
    /// The verdicts, for the status socket.
    pub results: Vec<CheckResult>,
    /// What the enforcers did (settings changed, USB devices blocked), for
    /// the status socket, where the nudge helper tells the user.
    pub enforced: Vec<Event>,
}

/// What one cycle works with.
#[derive(Debug, Clone, Copy)]
pub struct CycleInputs<'a> {
    pub host: &'a Host,
    pub policy: &'a Policy,
    pub identity: &'a Identity,
    pub device_id: &'a DeviceId,
    pub spool: &'a Arc<Mutex<Spool>>,
    /// Where the enforcers keep the originals they replaced.
    pub state_dir: &'a Path,
}

/// Runs every rule, lets the enforcers fix what the policy says to enforce
/// (the re-check's verdict is what gets reported), stamps deadlines, and
/// spools the signed report. Blocking: call it from `spawn_blocking`.
pub fn run_cycle(
    inputs: CycleInputs<'_>,
    deadlines: &mut Deadlines,
    mut events: Vec<Event>,
) -> anyhow::Result<CycleOutcome> {
    let CycleInputs {
        host,
        policy,
        identity,
        device_id,
        spool,
        state_dir,
    } = inputs;
    let mut results = run_checks(host, policy, None);
    let enforcement = EnforceContext {
        host,
        policy,
        state_dir,
        dry_run: false,
    };
    let enforced = enforce_failing(&enforcement, &mut results);
    events.extend(enforced.iter().cloned());
    deadlines.apply(policy, &mut results, Utc::now());
    let failing = results
        .iter()
        .filter(|r| r.status == CheckStatus::Fail)
        .map(|r| r.id.to_string())
        .collect();
    let mut report = crate::report::standalone_report(host, policy, results.clone());
    report.device_id = device_id.clone();
    report.events = events;
    let mut spool = spool
        .lock()
        .map_err(|_| anyhow::anyhow!("the spool lock is poisoned"))?;
    let link = spool.next_link();
    link.apply_to(&mut report, Utc::now());
    let envelope = Envelope::sign(REPORT_PAYLOAD_TYPE, &report.to_payload(), &identity.key);
    let appended = spool
        .append(&envelope.to_json())
        .context("cannot write the report to the spool")?;
    if !appended.evicted.is_empty() {
        tracing::warn!(
            dropped = appended.evicted.len(),
            "spool full: dropped the oldest reports; the next report says how many"
        );
    }
    Ok(CycleOutcome {
        sequence: appended.sequence,
        failing,
        results,
        enforced,
    })
}

/// What every check cycle needs that does not change between cycles.
pub(super) struct Cycles {
    pub(super) host: Host,
    pub(super) identity: Identity,
    pub(super) device_id: DeviceId,
    pub(super) spool: Arc<Mutex<Spool>>,
    pub(super) board: StatusBoard,
}

impl Cycles {
    /// Runs one check cycle off the async threads (probes block) and puts
    /// its verdicts on the board; `true` when it spooled a report.
    pub(super) async fn run(
        &self,
        policy: &Policy,
        deadlines: &mut Deadlines,
        state_dir: &std::path::Path,
        events: Vec<Event>,
    ) -> bool {
        let (host, policy, spool, device_id) = (
            self.host.clone(),
            policy.clone(),
            Arc::clone(&self.spool),
            self.device_id.clone(),
        );
        let identity = Identity {
            key: self.identity.key.clone(),
            store: self.identity.store.clone(),
        };
        let board = self.board.clone();
        let mut cycle_deadlines = deadlines.clone();
        let state_dir = state_dir.to_path_buf();
        let outcome = tokio::task::spawn_blocking(move || {
            let inputs = CycleInputs {
                host: &host,
                policy: &policy,
                identity: &identity,
                device_id: &device_id,
                spool: &spool,
                state_dir: &state_dir,
            };
            let outcome = run_cycle(inputs, &mut cycle_deadlines, events);
            if let Ok(spool) = spool.lock() {
                board.set_spool(&spool);
            }
            (outcome, cycle_deadlines)
        })
        .await;
        match outcome {
            Ok((Ok(outcome), updated)) => {
                *deadlines = updated;
                self.board.set_cycle(Utc::now(), outcome.results.clone());
                for event in outcome.enforced {
                    self.board.record_event(event);
                }
                tracing::info!(sequence = outcome.sequence, failing = ?outcome.failing, "check cycle spooled a report");
                true
            }
            Ok((Err(err), _)) => {
                tracing::error!(error = %format!("{err:#}"), "check cycle failed");
                false
            }
            Err(err) => {
                tracing::error!(error = %err, "check cycle task failed");
                false
            }
        }
    }
}
