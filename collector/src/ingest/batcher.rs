//! Group commit: reports that arrive together share one database transaction.
//!
//! Each verified report is handed to one writer task with a channel for its
//! answer. The writer takes everything waiting (up to [`MAX_BATCH`]), stores
//! it with one `store_reports` call (one commit, one fsync), and answers each
//! sender. While a commit is in flight new reports queue up, so the batch
//! grows with the load: one report alone is committed at once, a thousand
//! arriving together cost a handful of fsyncs, not a thousand. A request is
//! answered only after its batch has committed.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::health::WriteHealth;
use crate::store::{IncomingReport, Store, StoreError, StoreOutcome};

/// The most reports in one transaction. 256 reports of ~4 KiB is about 1 MiB
/// of envelopes per commit: large enough to amortise the fsync, small enough
/// that one transaction never holds the SQLite write lock for long.
pub const MAX_BATCH: usize = 256;

/// Reports waiting for the writer. Beyond this, senders wait (backpressure
/// reaches the HTTP handlers rather than memory growing without bound).
const QUEUE_CAPACITY: usize = 4096;

type Answer = Result<StoreOutcome, Arc<StoreError>>;

/// The handle request handlers use to submit reports.
#[derive(Debug, Clone)]
pub struct Batcher {
    sender: mpsc::Sender<(IncomingReport, oneshot::Sender<Answer>)>,
}

/// The error a handler sees when the writer is gone (shutting down).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the collector is shutting down")]
    Closed,
    #[error(transparent)]
    Store(Arc<StoreError>),
}

impl Batcher {
    /// Starts the writer task. It ends when every `Batcher` clone is dropped
    /// and the queue is drained.
    /// Each commit's outcome goes to `health`.
    pub fn start(store: Store, health: Arc<WriteHealth>) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let writer = tokio::spawn(write_batches(store, health, receiver));
        (Self { sender }, writer)
    }

    /// Stores one report and returns its outcome once it is committed.
    pub async fn submit(&self, report: IncomingReport) -> Result<StoreOutcome, SubmitError> {
        let (answer_tx, answer_rx) = oneshot::channel();
        self.sender
            .send((report, answer_tx))
            .await
            .map_err(|_| SubmitError::Closed)?;
        match answer_rx.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(err)) => Err(SubmitError::Store(err)),
            Err(_) => Err(SubmitError::Closed),
        }
    }
}

async fn write_batches(
    store: Store,
    health: Arc<WriteHealth>,
    mut receiver: mpsc::Receiver<(IncomingReport, oneshot::Sender<Answer>)>,
) {
    let mut reports = Vec::with_capacity(MAX_BATCH);
    let mut answers = Vec::with_capacity(MAX_BATCH);
    while let Some((report, answer)) = receiver.recv().await {
        reports.push(report);
        answers.push(answer);
        while reports.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok((report, answer)) => {
                    reports.push(report);
                    answers.push(answer);
                }
                Err(_) => break,
            }
        }
        let result = store.store_reports(&reports).await;
        match result {
            Ok(outcomes) if outcomes.len() == answers.len() => {
                health.succeeded();
                for (answer, outcome) in answers.drain(..).zip(outcomes) {
                    let _ = answer.send(Ok(outcome));
                }
            }
            Ok(outcomes) => {
                let err = Arc::new(StoreError::Corrupt(format!(
                    "store returned {} outcomes for {} reports",
                    outcomes.len(),
                    answers.len()
                )));
                tracing::error!(error = %err, "report batch not acknowledged");
                for answer in answers.drain(..) {
                    let _ = answer.send(Err(err.clone()));
                }
            }
            Err(err) => {
                health.failed(&err, chrono::Utc::now());
                tracing::error!(error = %err, batch = reports.len(), "report batch failed to commit");
                let err = Arc::new(err);
                for answer in answers.drain(..) {
                    let _ = answer.send(Err(err.clone()));
                }
            }
        }
        tracing::debug!(batch = reports.len(), "committed report batch");
        reports.clear();
    }
}
