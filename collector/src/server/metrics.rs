//! Prometheus text metrics at `/metrics`: reports accepted, rejected by
//! reason, ingest latency, enrollments.
//!
//! Labels are fixed codes from the handlers (never client input), so a
//! hostile client cannot grow the label space.

use std::sync::Mutex;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;

type Labels = Vec<(&'static str, &'static str)>;

/// The collector's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    reports_accepted: Family<Labels, Counter>,
    reports_rejected: Family<Labels, Counter>,
    enrollments: Family<Labels, Counter>,
    ingest_seconds: Histogram,
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
            "palisade_ingest_duration_seconds",
            "Time from request to answer for POST /api/v1/reports",
            ingest_seconds.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            reports_accepted,
            reports_rejected,
            enrollments,
            ingest_seconds,
        }
    }
}

impl Metrics {
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

    pub fn observe_ingest(&self, seconds: f64) {
        self.ingest_seconds.observe(seconds);
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        let registry = self.registry.lock().map_err(|_| std::fmt::Error)?;
        encode(&mut text, &registry)?;
        Ok(text)
    }
}

pub async fn render(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
