//! Whether the collector can write: the state `/healthz` and `/readyz`
//! report, and the count of failed writes the metrics show.
//!
//! A collector whose database refuses writes (a full disk, a lost
//! PostgreSQL) still answers HTTP, so "the process is up" is not health: a
//! load balancer must stop sending it devices, and the operator must see
//! why. The report writer records each batch's commit here; the first
//! success after failures clears the state.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;

/// Since when writes fail, and the latest error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    pub since: DateTime<Utc>,
    pub error: String,
}

/// The writer's latest outcome.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: Mutex<Option<WriteFailure>>,
    failures: Counter,
}

impl WriteHealth {
    /// Counts failed writes into `failures` (a registered metric).
    pub fn new(failures: Counter) -> Self {
        Self {
            failing: Mutex::new(None),
            failures,
        }
    }

    pub fn succeeded(&self) {
        if let Ok(mut failing) = self.failing.lock() {
            if failing.take().is_some() {
                tracing::info!("the database accepts writes again");
            }
        }
    }

    pub fn failed(&self, error: &dyn std::fmt::Display, at: DateTime<Utc>) {
        self.failures.inc();
        if let Ok(mut failing) = self.failing.lock() {
            let since = failing.as_ref().map_or(at, |failure| failure.since);
            *failing = Some(WriteFailure {
                since,
                error: error.to_string(),
            });
        }
    }

    /// `Some` while the latest write failed.
    pub fn failing(&self) -> Option<WriteFailure> {
        self.failing.lock().ok().and_then(|failing| failing.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion
    use super::*;

    #[test]
    fn failures_keep_their_start_and_a_success_clears_them() {
        let counter = Counter::default();
        let health = WriteHealth::new(counter.clone());
        assert_eq!(health.failing(), None);
        let first = Utc::now();
        health.failed(&"disk full", first);
        health.failed(&"still full", first + chrono::TimeDelta::seconds(5));
        assert_eq!(
            health.failing(),
            Some(WriteFailure {
                since: first,
                error: "still full".to_owned()
            })
        );
        assert_eq!(counter.get(), 2);
        health.succeeded();
        assert_eq!(health.failing(), None);
        assert_eq!(counter.get(), 2);
    }
}
