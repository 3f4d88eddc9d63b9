//! Devices: the list (filters, search, sort, pages), one device in full,
//! revocation, the fleet summary, and the CSV export of the list.
//!
//! The list and the export take the same filters ([`DeviceListParams`]) and
//! judge exceptions at the moment of the request.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Admin, Caller};
use super::bodies::{
    DeviceBody, DeviceDetailBody, DevicePageBody, DeviceStatusName, ErrorBodySchema, RevokedBody,
    SummaryBody, VerdictStatusName,
};
use super::{bad_parameter, parse_bool, parse_in_range, parse_instant, parse_rule, query_refusal};
use crate::app::AppState;
use crate::operations::{self, OperationError};
use crate::server::error::ApiError;
use crate::store::{
    DeviceQuery, DeviceSort, DeviceStatus, MAX_DEVICES_PER_PAGE, RuleFilter, parse_check_status,
};

/// A device not seen for 72 hours is stale. The agent reports every 15
/// minutes while the laptop is on (agent `interval_seconds` default 900), so
/// a laptop off over a weekend plus a day is not yet stale, but one that has
/// been silent since before then is worth a look.
pub const DEFAULT_STALE_AFTER_SECONDS: u64 = 72 * 3600;
/// Ten years: a longer threshold is a typo.
const MAX_STALE_AFTER_SECONDS: u64 = 10 * 365 * 86_400;
/// Devices per page unless asked otherwise: a screenful.
const DEFAULT_PER_PAGE: u32 = 50;
/// Reports in a device's history unless asked otherwise: five hours of a
/// laptop's life at one report per 15 minutes.
const DEFAULT_HISTORY: u32 = 20;
/// The most reports one detail answer lists; older ones are in the store
/// (until retention purges them) but rarely worth a page.
const MAX_HISTORY: u32 = 1000;
/// Longer search text than any hostname (at most 253 characters, RFC 1035)
/// can only match nothing.
const MAX_SEARCH_CHARS: usize = 256;

/// How the list may be ordered.
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // only describes the `sort` parameter in the document
pub enum DeviceSortName {
    Hostname,
    LastSeen,
    Os,
    Status,
    EnrolledAt,
}

/// The filters, order and page of the device list (and, without the page,
/// of the CSV export). Every value arrives as text and is checked by
/// [`device_query`], which names the parameter at fault.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceListParams {
    /// Overall status.
    #[param(value_type = Option<DeviceStatusName>)]
    pub status: Option<String>,
    /// Only devices that report this rule (`screen_lock`, `disk_encryption`,
    /// `password_policy`, `usb_storage`).
    pub rule: Option<String>,
    /// With `rule`: only devices where that rule has this status, after
    /// exceptions (so `excepted` finds the devices an exception covers).
    #[param(value_type = Option<VerdictStatusName>)]
    pub rule_status: Option<String>,
    /// Exact OS name, e.g. `Debian GNU/Linux`.
    pub os: Option<String>,
    /// Case-insensitive substring of the hostname or OS name; every
    /// character, `%` and `_` included, matches itself.
    pub search: Option<String>,
    /// `true`: only devices not seen within `stale_after_seconds` (never
    /// seen: since enrollment); `false`: only the others.
    #[param(value_type = Option<bool>)]
    pub stale: Option<String>,
    /// The threshold for `stale`; default 259200 (72 hours).
    #[param(value_type = Option<u64>, minimum = 1)]
    pub stale_after_seconds: Option<String>,
    /// Only devices last seen (never seen: enrolled) before this RFC 3339
    /// time. Not with `stale`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub stale_before: Option<String>,
    /// `true`: only revoked devices; `false`: only active ones; absent: both.
    #[param(value_type = Option<bool>)]
    pub revoked: Option<String>,
    /// Default `hostname` (case-insensitive). `last_seen` puts never-seen
    /// devices first; `status` orders pass, unknown, fail.
    #[param(value_type = Option<DeviceSortName>)]
    pub sort: Option<String>,
    /// Reverse the order.
    #[param(value_type = Option<bool>)]
    pub descending: Option<String>,
    /// 1-based; default 1. Not for the CSV export.
    #[param(value_type = Option<u32>, minimum = 1)]
    pub page: Option<String>,
    /// 1 to 200; default 50. Not for the CSV export.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub per_page: Option<String>,
}

/// Checks every parameter and builds the store query for `now`.
pub fn device_query(
    params: &DeviceListParams,
    now: DateTime<Utc>,
) -> Result<DeviceQuery, ApiError> {
    let mut query = DeviceQuery::new(now);
    query.per_page = DEFAULT_PER_PAGE;
    if let Some(status) = &params.status {
        query.status = Some(DeviceStatus::parse(status).ok_or_else(|| {
            bad_parameter(
                "status",
                format!("{status:?} is not `pass`, `fail` or `unknown`"),
            )
        })?);
    }
    match (&params.rule, &params.rule_status) {
        (None, None) => {}
        (None, Some(_)) => return Err(bad_parameter("rule_status", "needs `rule`")),
        (Some(rule), rule_status) => {
            let status = rule_status
                .as_deref()
                .map(|text| {
                    parse_check_status(text).ok_or_else(|| {
                        bad_parameter(
                            "rule_status",
                            format!(
                                "{text:?} is not one of: pass, fail, unknown, error, \
                                 not_applicable, excepted"
                            ),
                        )
                    })
                })
                .transpose()?;
            query.rule = Some(RuleFilter {
                rule_id: parse_rule("rule", rule)?,
                status,
            });
        }
    }
    query.os = params.os.clone();
    if let Some(search) = &params.search {
        if search.chars().count() > MAX_SEARCH_CHARS {
            return Err(bad_parameter(
                "search",
                format!("longer than {MAX_SEARCH_CHARS} characters"),
            ));
        }
        query.search = Some(search.clone());
    }
    let stale_after = match &params.stale_after_seconds {
        Some(text) => {
            if params.stale.is_none() {
                return Err(bad_parameter("stale_after_seconds", "needs `stale`"));
            }
            parse_in_range("stale_after_seconds", text, 1..=MAX_STALE_AFTER_SECONDS)?
        }
        None => DEFAULT_STALE_AFTER_SECONDS,
    };
    if let Some(stale) = &params.stale {
        if params.stale_before.is_some() {
            return Err(bad_parameter(
                "stale_before",
                "cannot be combined with `stale`",
            ));
        }
        let cutoff = now - seconds(stale_after);
        if parse_bool("stale", stale)? {
            query.stale_before = Some(cutoff);
        } else {
            query.seen_since = Some(cutoff);
        }
    }
    if let Some(before) = &params.stale_before {
        query.stale_before = Some(parse_instant("stale_before", before)?);
    }
    if let Some(revoked) = &params.revoked {
        query.revoked = Some(parse_bool("revoked", revoked)?);
    }
    if let Some(sort) = &params.sort {
        query.sort = DeviceSort::parse(sort).ok_or_else(|| {
            bad_parameter(
                "sort",
                format!(
                    "{sort:?} is not one of: {}",
                    DeviceSort::ALL.map(DeviceSort::as_str).join(", ")
                ),
            )
        })?;
    }
    if let Some(descending) = &params.descending {
        query.descending = parse_bool("descending", descending)?;
    }
    if let Some(page) = &params.page {
        query.page = parse_in_range("page", page, 1..=u32::MAX)?;
    }
    if let Some(per_page) = &params.per_page {
        query.per_page = parse_in_range("per_page", per_page, 1..=MAX_DEVICES_PER_PAGE)?;
    }
    Ok(query)
}

/// A whole number of seconds (bounded by the callers) as a time span.
fn seconds(n: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000))
}

/// List devices.
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    tag = "fleet",
    params(DeviceListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of devices", body = DevicePageBody),
        (status = 400, description = "`bad_parameter`: an unknown parameter or a bad value (named in the message)", body = ErrorBodySchema),
        (status = 401, description = "`unauthorized`: no valid API token", body = ErrorBodySchema),
    )
)]
pub async fn list(
    _caller: Caller,
    State(state): State<AppState>,
    params: Result<Query<DeviceListParams>, QueryRejection>,
) -> Result<Json<DevicePageBody>, ApiError> {
    let Query(params) = params.map_err(|r| query_refusal(&r))?;
    let query = device_query(&params, Utc::now())?;
    let page = state
        .store
        .list_devices(&query)
        .await
        .map_err(|err| ApiError::internal("listing devices failed", &err))?;
    Ok(Json(DevicePageBody {
        devices: page.devices.into_iter().map(DeviceBody::from).collect(),
        total: page.total,
        page: query.page,
        per_page: query.per_page,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceDetailParams {
    /// How many of the newest reports to list: 1 to 1000, default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub history: Option<String>,
}

/// One device: verdicts with evidence and fix, keys, report history with
/// chain flags, active exceptions.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}",
    tag = "fleet",
    params(("id" = String, Path, description = "Device id (`dev_…`)"), DeviceDetailParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The device", body = DeviceDetailBody),
        (status = 400, description = "`bad_parameter`", body = ErrorBodySchema),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
        (status = 404, description = "`no_such_device`", body = ErrorBodySchema),
    )
)]
pub async fn detail(
    _caller: Caller,
    State(state): State<AppState>,
    Path(device_id): Path<String>,
    params: Result<Query<DeviceDetailParams>, QueryRejection>,
) -> Result<Json<DeviceDetailBody>, ApiError> {
    let Query(params) = params.map_err(|r| query_refusal(&r))?;
    let history = match &params.history {
        Some(text) => parse_in_range("history", text, 1..=MAX_HISTORY)?,
        None => DEFAULT_HISTORY,
    };
    let now = Utc::now();
    let detail = state
        .store
        .device_detail(&device_id, now, history)
        .await
        .map_err(|err| ApiError::internal("reading a device failed", &err))?
        .ok_or_else(|| no_such_device(&device_id))?;
    Ok(Json(DeviceDetailBody::new(detail, now)))
}

/// Revoke a device: its reports are refused (403 `revoked`) from now on; it
/// re-enrolls with a new key. Revoking again changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{id}/revoke",
    tag = "fleet",
    params(("id" = String, Path, description = "Device id (`dev_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked (now or before)", body = RevokedBody),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
        (status = 403, description = "`forbidden`: a viewer token", body = ErrorBodySchema),
        (status = 404, description = "`no_such_device`", body = ErrorBodySchema),
    )
)]
pub async fn revoke(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path(device_id): Path<String>,
) -> Result<Json<RevokedBody>, ApiError> {
    let revoked = operations::revoke_device(&state.store, &caller.actor(), &device_id)
        .await
        .map_err(|err| match err {
            OperationError::NoSuchDevice(id) => no_such_device(&id),
            OperationError::Store(err) => ApiError::internal("revoking a device failed", &err),
            other => ApiError::internal("revoking a device failed", &other),
        })?;
    Ok(Json(RevokedBody {
        device_id: revoked.device_id,
        revoked_at: revoked.revoked_at,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// A device not seen for this long is stale; default 259200 (72 hours).
    #[param(value_type = Option<u64>, minimum = 1)]
    pub stale_after_seconds: Option<String>,
}

/// The fleet in numbers: devices, compliant, failing, unknown, stale,
/// revoked, and failing devices per rule.
#[utoipa::path(
    get,
    path = "/api/v1/summary",
    tag = "fleet",
    params(SummaryParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The summary", body = SummaryBody),
        (status = 400, description = "`bad_parameter`", body = ErrorBodySchema),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
    )
)]
pub async fn summary(
    _caller: Caller,
    State(state): State<AppState>,
    params: Result<Query<SummaryParams>, QueryRejection>,
) -> Result<Json<SummaryBody>, ApiError> {
    let Query(params) = params.map_err(|r| query_refusal(&r))?;
    let stale_after = match &params.stale_after_seconds {
        Some(text) => parse_in_range("stale_after_seconds", text, 1..=MAX_STALE_AFTER_SECONDS)?,
        None => DEFAULT_STALE_AFTER_SECONDS,
    };
    let now = Utc::now();
    let summary = state
        .store
        .fleet_summary(now, seconds(stale_after))
        .await
        .map_err(|err| ApiError::internal("summarising the fleet failed", &err))?;
    Ok(Json(SummaryBody::new(summary, now, stale_after)))
}

fn no_such_device(device_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_device",
        format!("no device {device_id:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> DeviceListParams {
        let mut p = DeviceListParams::default();
        for (name, value) in pairs {
            let value = Some((*value).to_owned());
            match *name {
                "status" => p.status = value,
                "rule" => p.rule = value,
                "rule_status" => p.rule_status = value,
                "stale" => p.stale = value,
                "stale_after_seconds" => p.stale_after_seconds = value,
                "stale_before" => p.stale_before = value,
                "revoked" => p.revoked = value,
                "sort" => p.sort = value,
                "descending" => p.descending = value,
                "page" => p.page = value,
                "per_page" => p.per_page = value,
                other => panic!("no parameter {other}"),
            }
        }
        p
    }

    #[test]
    fn bad_values_name_their_parameter() {
        let now = Utc::now();
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("status", "failing")], "`status`"),
            (&[("rule", "firewall")], "`rule`"),
            (&[("rule_status", "fail")], "`rule_status`"),
            (
                &[("rule", "screen_lock"), ("rule_status", "bad")],
                "`rule_status`",
            ),
            (&[("stale", "yes")], "`stale`"),
            (&[("stale_after_seconds", "60")], "`stale_after_seconds`"),
            (
                &[("stale", "true"), ("stale_after_seconds", "0")],
                "`stale_after_seconds`",
            ),
            (
                &[("stale", "true"), ("stale_before", "2026-01-01T00:00:00Z")],
                "`stale_before`",
            ),
            (&[("stale_before", "yesterday")], "`stale_before`"),
            (&[("revoked", "1")], "`revoked`"),
            (&[("sort", "hostname; DROP TABLE devices")], "`sort`"),
            (&[("descending", "TRUE")], "`descending`"),
            (&[("page", "0")], "`page`"),
            (&[("per_page", "201")], "`per_page`"),
            (&[("per_page", "-1")], "`per_page`"),
        ];
        for (pairs, name) in cases {
            let err = device_query(&params(pairs), now).expect_err("refused");
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains(name), "{pairs:?}: {}", err.message);
        }
    }

    #[test]
    fn good_values_make_the_query() {
        let now = Utc::now();
        let query = device_query(
            &params(&[
                ("status", "fail"),
                ("rule", "disk_encryption"),
                ("rule_status", "excepted"),
                ("stale", "false"),
                ("stale_after_seconds", "3600"),
                ("revoked", "false"),
                ("sort", "last_seen"),
                ("descending", "true"),
                ("page", "3"),
                ("per_page", "200"),
            ]),
            now,
        )
        .expect("valid");
        assert_eq!(query.status, Some(DeviceStatus::Fail));
        assert_eq!(
            query.rule,
            Some(RuleFilter {
                rule_id: "disk_encryption".into(),
                status: Some(palisade_shared::report::CheckStatus::Excepted)
            })
        );
        assert_eq!(query.seen_since, Some(now - TimeDelta::hours(1)));
        assert_eq!(query.stale_before, None);
        assert_eq!(query.revoked, Some(false));
        assert_eq!(query.sort, DeviceSort::LastSeen);
        assert!(query.descending);
        assert_eq!((query.page, query.per_page), (3, 200));
        let defaults = device_query(&DeviceListParams::default(), now).expect("valid");
        assert_eq!((defaults.page, defaults.per_page), (1, DEFAULT_PER_PAGE));
        let stale = device_query(&params(&[("stale", "true")]), now).expect("valid");
        assert_eq!(stale.stale_before, Some(now - TimeDelta::hours(72)));
    }
}
