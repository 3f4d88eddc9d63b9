//! One check cycle of the daemon: run the rules, stamp failures with their
//! deadlines, fill a report, link it into the chain, sign it and write it to
//! the spool — all before anything is sent, so a crash after this returns
//! can never lose the report.
//!
//! A report the spool cannot write (a full disk) does not stop the cycle:
//! its verdicts still go to the status board, and so to the nudge, the
//! spool counts the cycle for the next report to tell the collector, and
//! the events it carried wait for that report.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use palisade_shared::envelope::{Envelope, REPORT_PAYLOAD_TYPE};
use palisade_shared::error_text::describe;
use palisade_shared::report::{CheckResult, CheckStatus, Event};
use palisade_shared::{DeviceId, Policy};

use super::deadlines::Deadlines;
use crate::checks::run_checks;
use crate::enforce::{EnforceContext, enforce_failing};
use crate::identity::Identity;
use crate::spool::{Spool, SpoolError};
use crate::status::StatusBoard;
use crate::sys::Host;

/// What a cycle produced.
#[derive(Debug)]
pub struct CycleOutcome {
    /// The spooled report's sequence, or why it could not be written (the
    /// spool has counted the cycle as unrecorded).
    pub spooled: Result<u64, SpoolError>,
    /// The events of a report that could not be written, for the next.
    pub unsent_events: Vec<Event>,
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
/// spools the signed report. Blocking: call it from `spawn_blocking`. Only
/// a poisoned spool lock is an error; a report the spool refuses is in
/// [`CycleOutcome::spooled`].
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
    report.events = events.clone();
    let mut spool = spool
        .lock()
        .map_err(|_| anyhow::anyhow!("the spool lock is poisoned"))?;
    let link = spool.next_link();
    link.apply_to(&mut report, Utc::now());
    let envelope = Envelope::sign(REPORT_PAYLOAD_TYPE, &report.to_payload(), &identity.key);
    let spooled = spool.append(&envelope.to_json());
    let unsent_events = if spooled.is_ok() {
        Vec::new()
    } else {
        keep_newest(events)
    };
    Ok(CycleOutcome {
        spooled: spooled.map(|appended| appended.sequence),
        unsent_events,
        failing,
        results,
        enforced,
    })
}

/// Events waiting for a report that can be written are kept up to this
/// many: a full disk for weeks must not grow them into a report the spool
/// refuses for its size (each is about 200 bytes).
const MAX_EVENTS_WAITING: usize = 500;

/// The newest [`MAX_EVENTS_WAITING`] of `events`, logging what goes.
fn keep_newest(mut events: Vec<Event>) -> Vec<Event> {
    let excess = events.len().saturating_sub(MAX_EVENTS_WAITING);
    if excess > 0 {
        tracing::warn!(
            dropped = excess,
            "too many events waiting for a report that can be written; dropping the oldest"
        );
        events.drain(..excess);
    }
    events
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
    /// its verdicts on the board. Returns the events its report could not
    /// carry (it could not be written), for the next cycle's.
    pub(super) async fn run(
        &self,
        policy: &Policy,
        deadlines: &mut Deadlines,
        state_dir: &std::path::Path,
        events: Vec<Event>,
    ) -> Vec<Event> {
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
                match outcome.spooled {
                    Ok(sequence) => {
                        tracing::info!(sequence, failing = ?outcome.failing, "check cycle spooled a report");
                    }
                    Err(err) => {
                        tracing::error!(error = %err, failing = ?outcome.failing, "cannot write this cycle's report; the verdicts stand, and the next report that is written says how many cycles were lost");
                    }
                }
                outcome.unsent_events
            }
            Ok((Err(err), _)) => {
                tracing::error!(error = %describe(&*err), "check cycle failed");
                Vec::new()
            }
            Err(err) => {
                tracing::error!(error = %err, "check cycle task failed");
                Vec::new()
            }
        }
    }
}
