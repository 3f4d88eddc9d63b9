//! Delivering spooled reports to the collector, oldest first.
//!
//! A report leaves the spool only after a 2xx. Network errors, timeouts,
//! 5xx, 408 and 429 are retried with exponential backoff and full jitter up
//! to `backoff_max_seconds`, so a fleet coming back from an outage does not
//! hammer the collector in step; once the collector answers, the backlog is
//! sent at `backlog_reports_per_second`. Any other 4xx means this report can
//! never be accepted (e.g. signed by a key the collector has revoked): it is
//! dropped from the spool with an ERROR log, since retrying it for ever would
//! block every report behind it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_shared::error_text::describe;
use rand::Rng as _;
use tokio::sync::watch;

use crate::spool::Spool;
use crate::status::StatusBoard;

/// The first retry waits about a second; each failure doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// How one POST went.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Acknowledged,
    /// Never acceptable: drop it.
    Refused {
        status: u16,
        reason: String,
    },
    /// Try again later.
    Retry {
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    reports_url: reqwest::Url,
    backoff_max: Duration,
    pace: Duration,
    board: StatusBoard,
}

impl Sender {
    pub fn new(
        client: reqwest::Client,
        reports_url: reqwest::Url,
        backoff_max: Duration,
        reports_per_second: f64,
        board: StatusBoard,
    ) -> Self {
        let pace = if reports_per_second > 0.0 {
            Duration::from_secs_f64(1.0 / reports_per_second)
        } else {
            Duration::ZERO
        };
        Self {
            client,
            reports_url,
            backoff_max,
            pace,
            board,
        }
    }

    /// Sends one envelope.
    pub async fn send(&self, envelope_json: Vec<u8>) -> Delivery {
        let response = self
            .client
            .post(self.reports_url.clone())
            .header("content-type", "application/json")
            .body(envelope_json)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(err) => {
                return Delivery::Retry {
                    reason: describe(&err),
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Delivery::Acknowledged;
        }
        let body = response.text().await.unwrap_or_default();
        let reason: String = body.chars().take(300).collect();
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Delivery::Retry {
                reason: format!("HTTP {status}: {reason}"),
            }
        } else {
            Delivery::Refused {
                status: status.as_u16(),
                reason,
            }
        }
    }

    /// Sends everything in the spool, in sequence order, until it is empty or
    /// `shutdown` fires. Returns when the spool is empty.
    pub async fn drain(&self, spool: &Arc<Mutex<Spool>>, shutdown: &mut watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let next = {
                let spool = Arc::clone(spool);
                tokio::task::spawn_blocking(move || {
                    let spool = spool.lock().ok()?;
                    let sequence = spool.oldest()?;
                    spool.read(sequence).ok().map(|bytes| (sequence, bytes))
                })
                .await
                .ok()
                .flatten()
            };
            let Some((sequence, envelope)) = next else {
                return;
            };
            match self.send(envelope).await {
                Delivery::Acknowledged => {
                    failures = 0;
                    self.board.record_delivered(chrono::Utc::now());
                    let removed = acknowledge(spool, sequence, &self.board).await;
                    tracing::info!(sequence, "report acknowledged by the collector");
                    if !removed {
                        // It would be sent again at once, for ever; the
                        // next cycle wakes the sender to try again.
                        return;
                    }
                    if !self.pace.is_zero()
                        && tokio::time::timeout(self.pace, shutdown.changed())
                            .await
                            .is_ok()
                    {
                        return;
                    }
                }
                Delivery::Refused { status, reason } => {
                    failures = 0;
                    tracing::error!(sequence, status, %reason, "the collector refused a report for good; dropping it");
                    self.board.record_delivery_failed(
                        chrono::Utc::now(),
                        format!("report {sequence} refused for good with HTTP {status}: {reason}"),
                    );
                    if !acknowledge(spool, sequence, &self.board).await {
                        return;
                    }
                }
                Delivery::Retry { reason } => {
                    self.board
                        .record_delivery_failed(chrono::Utc::now(), reason.clone());
                    let delay = backoff(failures, self.backoff_max);
                    failures = failures.saturating_add(1);
                    tracing::warn!(sequence, %reason, retry_in_ms = delay.as_millis() as u64, "cannot deliver report; will retry");
                    // Wait out the backoff, but wake at once on shutdown.
                    if tokio::time::timeout(delay, shutdown.changed())
                        .await
                        .is_ok()
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// Removes a delivered (or refused) report from the spool; `false` when it
/// could not be removed and will be sent again.
async fn acknowledge(spool: &Arc<Mutex<Spool>>, sequence: u64, board: &StatusBoard) -> bool {
    let (spool, board) = (Arc::clone(spool), board.clone());
    let result = tokio::task::spawn_blocking(move || match spool.lock() {
        Ok(mut spool) => {
            let removed = spool.acknowledge(sequence).map_err(|e| e.to_string());
            board.set_spool(&spool);
            removed
        }
        Err(_) => Err("spool lock poisoned".to_owned()),
    })
    .await;
    match result {
        Ok(Ok(_)) => true,
        Ok(Err(err)) => {
            tracing::error!(sequence, error = %err, "cannot remove an acknowledged report; it will be sent again");
            false
        }
        Err(err) => {
            tracing::error!(sequence, error = %err, "acknowledge task failed");
            false
        }
    }
}

/// Exponential backoff with full jitter: a random delay between half and all
/// of `min(cap, 1 s × 2^failures)`.
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let exponential = FIRST_BACKOFF.saturating_mul(1u32 << failures.min(20));
    let ceiling = exponential.min(cap).max(FIRST_BACKOFF);
    let low = ceiling / 2;
    let spread = (ceiling - low).as_millis() as u64;
    low + Duration::from_millis(rand::thread_rng().gen_range(0..=spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_cap() {
        let cap = Duration::from_secs(300);
        for failures in 0..12 {
            let ceiling = Duration::from_secs(1 << failures).min(cap);
            for _ in 0..50 {
                let delay = backoff(failures, cap);
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{failures}: {delay:?}"
                );
            }
        }
        assert!(backoff(40, cap) <= cap);
    }
}
