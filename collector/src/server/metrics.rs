//! Prometheus text metrics at `/metrics`: reports accepted, rejected by
//! reason, ingest latency, enrollments, admin API token refusals, and
//! devices by status.
//!
//! Labels are fixed codes from the handlers (never client input), so a
//! hostile client cannot grow the label space. Devices by status is a gauge
//! read from the store at each scrape (the store is the truth, and several
//! collectors may share it), with exceptions judged at that moment.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::app::AppState;

/// Prometheus/OpenMetrics text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((
        status = 200,
        description = "`palisade_reports_accepted_total{outcome}`, `palisade_reports_rejected_total{reason}`, \
            `palisade_enrollments_total{result}`, `palisade_ingest_duration_seconds` (histogram), \
            `palisade_devices{status}` (gauge: pass, fail, unknown, revoked)",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body = String
    ))
)]
pub async fn render(State(state): State<AppState>) -> Response {
    let counts = match state.store.devices_by_status(Utc::now()).await {
        Ok(counts) => Some(counts),
        Err(err) => {
            tracing::error!(error = %err, "cannot count devices by status for /metrics");
            None
        }
    };
    state.metrics.set_devices(counts);
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
