//! `GET /`: the fleet at a glance: counts, failing devices per rule, the
//! 30-day compliance trend, and the ten devices failing longest.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{TimeDelta, Utc};
use maud::html;
use palisade_shared::RuleId;

use crate::app::AppState;
use crate::web::auth::Session;
use crate::web::layout::{self, Nav};
use crate::web::{PageError, charts, format_time, html_response};

/// Days in the trend: a month shows whether a campaign is working.
const TREND_DAYS: i64 = 30;
/// Rows in the "failing longest" table: a screenful to chase first.
const LONGEST_FAILING: u32 = 10;

pub async fn page(session: Session, State(state): State<AppState>) -> Result<Response, PageError> {
    let now = Utc::now();
    let failed =
        |err: crate::store::StoreError| PageError::unavailable("reading the fleet failed", &err);
    let stale_after = state.web.stale_after;
    let today = now.date_naive();
    let first_day = today - TimeDelta::days(TREND_DAYS - 1);
    let from = first_day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    // The three reads are independent: run them side by side on the
    // store's reader connections (SQLite in WAL mode and PostgreSQL both
    // serve concurrent readers), so the page takes the slowest, not the sum.
    let (summary, trend, longest) = tokio::try_join!(
        state.store.fleet_summary(now, stale_after),
        state.store.compliance_trend(from, now),
        state.store.longest_failing(now, LONGEST_FAILING),
    )
    .map_err(failed)?;

    let bars: Vec<(String, u64)> = RuleId::ALL
        .iter()
        .map(|rule| {
            let n = summary
                .failing_by_rule
                .iter()
                .find(|(id, _)| id == rule)
                .map_or(0, |(_, n)| *n);
            ((*rule).to_owned(), n)
        })
        .collect();
    let days: Vec<_> = (0..TREND_DAYS)
        .map(|offset| {
            let day = first_day + TimeDelta::days(offset);
            let share = trend
                .iter()
                .find(|d| d.day == day)
                .filter(|d| d.reporting > 0)
                .map(|d| d.compliant as f64 / d.reporting as f64);
            (day, share)
        })
        .collect();
    let stale_hours = stale_after.num_hours();

    let body = html! {
        section class="counts" aria-label="Devices" {
            div class="count" { span class="n" id="count-total" { (summary.devices) } span { "devices" } }
            div class="count ok" { span class="n" id="count-compliant" { (summary.compliant) } span { "compliant" } }
            div class="count bad" { span class="n" id="count-failing" { (summary.failing) } span { "failing" } }
            div class="count unsure" { span class="n" id="count-unknown" { (summary.unknown) } span { "unknown" } }
            div class="count stale" {
                span class="n" id="count-stale" { (summary.stale) }
                span { a href="/devices?stale=true" { "stale" } " (no report for " (stale_hours) " h)" }
            }
        }
        p class="note" { "Active devices only; " (summary.revoked) " revoked device(s) are not counted." }
        div class="charts" {
            section {
                h2 { "Failing devices by rule" }
                (charts::bar_chart("chart-failing-by-rule", "Failing devices by rule", &bars))
            }
            section {
                h2 { "Compliance, last " (TREND_DAYS) " days" }
                (charts::line_chart("chart-trend", "Share of reporting devices with no failing check, by day (UTC)", &days))
                p class="note" { "Per day: the share of devices that reported whose last report that day had no failing check (as reported, before exceptions). Gaps are days without reports." }
            }
        }
        section {
            h2 { "Failing longest" }
            @if longest.is_empty() {
                p { "No device is failing a rule." }
            } @else {
                table id="longest-failing" {
                    thead { tr { th { "Device" } th { "User" } th { "Failing since" } th { "Rules" } } }
                    tbody {
                        @for device in &longest {
                            tr {
                                td { a class="device-link" href={ "/devices/" (device.device_id) } { (device.hostname) } }
                                td class="user" { (device.console_user.as_deref().unwrap_or("—")) }
                                td { (format_time(device.failing_since)) }
                                td { (device.rules.join(", ")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        layout::page(&session, Nav::Overview, "Overview", body),
    ))
}
