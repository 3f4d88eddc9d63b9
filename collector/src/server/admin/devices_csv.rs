//! The fleet as CSV, for the API (`GET /api/v1/devices.csv`) and the
//! dashboard's download: one row a device, one column a rule, and every cell
//! that a spreadsheet would run as a formula made inert.

use std::borrow::Cow;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use palisade_shared::RuleId;

use super::auth::Caller;
use super::bodies::ErrorBodySchema;
use super::devices::{DeviceListParams, device_query};
use super::{bad_parameter, query_refusal};
use crate::app::AppState;
use crate::server::error::ApiError;
use crate::store::{DeviceQuery, MAX_DEVICES_PER_PAGE};

/// The columns of the CSV export before the per-rule ones.
const CSV_COLUMNS: [&str; 14] = [
    "device_id",
    "hostname",
    "console_user",
    "status",
    "os_name",
    "os_version",
    "kernel_version",
    "agent_version",
    "enrolled_at",
    "last_seen_at",
    "revoked_at",
    "last_sequence",
    "sequence_gap",
    "chain_broken",
];

/// Every device matching the filters as CSV, one row per device: its facts,
/// its overall status, and one column per rule with that rule's status
/// after exceptions (empty when not reported). A cell that a spreadsheet
/// would run as a formula (starting `=`, `+`, `-`, `@`, tab or carriage
/// return) is prefixed with `'` (OWASP "CSV injection").
#[utoipa::path(
    get,
    path = "/api/v1/devices.csv",
    tag = "fleet",
    params(DeviceListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "RFC 4180 CSV with a header row", content_type = "text/csv", body = String),
        (status = 400, description = "`bad_parameter` (`page` and `per_page` do not apply)", body = ErrorBodySchema),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
    )
)]
pub async fn export_csv(
    _caller: Caller,
    State(state): State<AppState>,
    params: Result<Query<DeviceListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|r| query_refusal(&r))?;
    for (name, value) in [("page", &params.page), ("per_page", &params.per_page)] {
        if value.is_some() {
            return Err(bad_parameter(
                name,
                "the CSV export has every matching device",
            ));
        }
    }
    let query = device_query(&params, Utc::now())?;
    let body = devices_csv(&state.store, query).await?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"palisade-devices.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The CSV export of every device matching `query` (its page is ignored):
/// shared by the admin API and the dashboard's `/devices.csv`.
pub async fn devices_csv(
    store: &crate::store::Store,
    mut query: DeviceQuery,
) -> Result<Vec<u8>, ApiError> {
    query.page = 1;
    query.per_page = MAX_DEVICES_PER_PAGE;
    let failed = |err: &dyn std::fmt::Display| ApiError::internal("CSV export failed", err);
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header: Vec<&str> = CSV_COLUMNS
        .iter()
        .chain(RuleId::ALL.iter())
        .copied()
        .collect();
    writer.write_record(&header).map_err(|e| failed(&e))?;
    loop {
        let page = store.list_devices(&query).await.map_err(|e| failed(&e))?;
        let fetched = page.devices.len();
        for listing in page.devices {
            let device = &listing.device;
            let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
            let mut row: Vec<String> = vec![
                device.device_id.clone(),
                device.hostname.clone(),
                device.console_user.clone().unwrap_or_default(),
                listing.status.as_str().to_owned(),
                device.os_name.clone(),
                device.os_version.clone(),
                device.kernel_version.clone(),
                device.agent_version.clone(),
                device.enrolled_at.to_rfc3339(),
                time(device.last_seen_at),
                time(device.revoked_at),
                device
                    .last_sequence
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                device.sequence_gap.to_string(),
                device.chain_broken.to_string(),
            ];
            for rule in RuleId::ALL {
                let status = listing.rules.iter().find(|(id, _)| id == rule);
                row.push(
                    status
                        .map(|(_, s)| s.as_str().to_owned())
                        .unwrap_or_default(),
                );
            }
            writer
                .write_record(row.iter().map(|cell| neutralise_formula(cell).into_owned()))
                .map_err(|e| failed(&e))?;
        }
        if fetched < usize::try_from(query.per_page).unwrap_or(usize::MAX) {
            break;
        }
        query.page += 1;
    }
    writer.into_inner().map_err(|e| failed(&e))
}

/// A cell a spreadsheet would evaluate as a formula, made inert with a
/// leading `'`.
pub fn neutralise_formula(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        for cell in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise_formula(cell), format!("'{cell}"));
        }
        for cell in ["laptop-1", "", "a=b", " =1"] {
            assert_eq!(neutralise_formula(cell), cell);
        }
    }
}
