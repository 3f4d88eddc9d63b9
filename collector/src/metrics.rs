//! The collector's Prometheus counters ([`Metrics`]): reports accepted,
//! rejected by reason, ingest latency, enrollments, admin API token
//! refusals, and devices by status. The handlers count into it; the
//! `/metrics` endpoint ([`crate::server::metrics`]) renders it.
//!
//! Labels are fixed codes from the handlers (never client input), so a
//! hostile client cannot grow the label space. It must not reach the store
//! or HTTP: it only counts and encodes.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::DeviceStatusCounts;

type Labels = Vec<(&'static str, &'static str)>;

/// The collector's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    reports_accepted: Family<Labels, Counter>,
    reports_rejected: Family<Labels, Counter>,
    enrollments: Family<Labels, Counter>,
    api_token_refusals: Family<Labels, Counter>,
    ingest_seconds: Histogram,
    devices: Family<Labels, Gauge>,
    store_write_failures: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reports_accepted = Family::<Labels, Counter>::default();
        let reports_rejected = Family::<Labels, Counter>::default();
        let enrollments = Family::<Labels, Counter>::default();
        let api_token_refusals = Family::<Labels, Counter>::default();
        let devices = Family::<Labels, Gauge>::default();
        let store_write_failures = Counter::default();
        // 0.5 ms to ~16 s in 16 doublings: a verified single-report commit
        // on SQLite is a few ms; anything past seconds is an outage.
        let ingest_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "palisade_reports_accepted",
            "Reports answered with 2xx, by outcome (stored, duplicate)",
            reports_accepted.clone(),
        );
        registry.register(
            "palisade_reports_rejected",
            "Reports refused, by reason",
            reports_rejected.clone(),
        );
        registry.register(
            "palisade_enrollments",
            "Enrollment attempts, by result",
            enrollments.clone(),
        );
        registry.register(
            "palisade_api_token_refusals",
            "Admin API requests refused for their token, by reason (invalid, rate_limited)",
            api_token_refusals.clone(),
        );
        registry.register(
            "palisade_ingest_duration_seconds",
            "Time from request to answer for POST /api/v1/reports",
            ingest_seconds.clone(),
        );
        registry.register(
            "palisade_devices",
            "Enrolled devices by overall status (pass, fail, unknown) at scrape time; revoked \
             devices count only as revoked",
            devices.clone(),
        );
        registry.register(
            "palisade_store_write_failures",
            "Report batches whose commit failed (a full disk, a lost database)",
            store_write_failures.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            reports_accepted,
            reports_rejected,
            enrollments,
            api_token_refusals,
            ingest_seconds,
            devices,
            store_write_failures,
        }
    }
}

impl Metrics {
    /// The counter the report writer's [`crate::ingest::health::WriteHealth`]
    /// counts failed commits into.
    pub fn store_write_failures(&self) -> Counter {
        self.store_write_failures.clone()
    }

    pub fn report_accepted(&self, outcome: &'static str) {
        self.reports_accepted
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
    }

    pub fn report_rejected(&self, reason: &'static str) {
        self.reports_rejected
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    pub fn enrollment(&self, result: &'static str) {
        self.enrollments
            .get_or_create(&vec![("result", result)])
            .inc();
    }

    pub fn api_token_refused(&self, reason: &'static str) {
        self.api_token_refusals
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    pub fn observe_ingest(&self, seconds: f64) {
        self.ingest_seconds.observe(seconds);
    }

    /// Sets the devices-by-status gauge; `None` (the store could not be read)
    /// removes it rather than leave stale numbers.
    pub fn set_devices(&self, counts: Option<DeviceStatusCounts>) {
        let Some(counts) = counts else {
            self.devices.clear();
            return;
        };
        for (status, n) in [
            ("pass", counts.pass),
            ("fail", counts.fail),
            ("unknown", counts.unknown),
            ("revoked", counts.revoked),
        ] {
            self.devices
                .get_or_create(&vec![("status", status)])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        let registry = self.registry.lock().map_err(|_| std::fmt::Error)?;
        encode(&mut text, &registry)?;
        Ok(text)
    }
}
