//! `GET /devices`: the device list with filters, search, sort and pages,
//! and `GET /devices.csv`, the same filter as CSV. Both build their store
//! query with the admin API's [`device_query`], so the page, the CSV and
//! the JSON API filter the same way (and refuse the same bad values).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{TimeDelta, Utc};
use maud::{Markup, html};
use palisade_shared::RuleId;
use serde::Deserialize;

use super::non_empty;
use crate::app::AppState;
use crate::server::admin::devices::{DeviceListParams, device_query};
use crate::server::admin::devices_csv::devices_csv;
use crate::store::{DeviceQuery, DeviceSort, DeviceStatus, parse_check_status};
use crate::web::auth::Session;
use crate::web::layout::{self, Nav, status_badge};
use crate::web::{PageError, format_optional_time, html_response};

/// The statuses the status filter offers: with a rule, that rule's status
/// (after exceptions); without, the device's overall status (the first
/// three only).
const STATUSES: [&str; 6] = [
    "pass",
    "fail",
    "unknown",
    "error",
    "not_applicable",
    "excepted",
];

/// The page's query string, every value text as a browser sends it (an
/// untouched field arrives empty and means "any").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesParams {
    /// Substring of hostname, user or OS name.
    pub q: Option<String>,
    pub rule: Option<String>,
    pub status: Option<String>,
    pub os: Option<String>,
    /// `true`: only stale devices.
    pub stale: Option<String>,
    pub sort: Option<String>,
    pub descending: Option<String>,
    pub page: Option<String>,
}

impl DevicesParams {
    /// The admin API's parameters for the same filter.
    fn to_api(&self, stale_after: TimeDelta) -> Result<DeviceListParams, PageError> {
        let owned = |v: Option<&str>| v.map(str::to_owned);
        let mut api = DeviceListParams {
            search: owned(non_empty(&self.q)),
            os: owned(non_empty(&self.os)),
            stale: owned(non_empty(&self.stale)),
            sort: owned(non_empty(&self.sort)),
            descending: owned(non_empty(&self.descending)),
            page: owned(non_empty(&self.page)),
            // The dashboard's own staleness (`stale_after_hours`), not the
            // API's default.
            stale_after_seconds: non_empty(&self.stale)
                .map(|_| stale_after.num_seconds().max(1).to_string()),
            ..DeviceListParams::default()
        };
        let status = non_empty(&self.status);
        match non_empty(&self.rule) {
            Some(rule) => {
                api.rule = Some(rule.to_owned());
                api.rule_status = owned(status);
            }
            None => {
                if let Some(status) = status {
                    if DeviceStatus::parse(status).is_none() && parse_check_status(status).is_some()
                    {
                        return Err(PageError::bad_request(format!(
                            "parameter `status`: {status:?} is the status of one rule; choose \
                             the rule too"
                        )));
                    }
                }
                api.status = owned(status);
            }
        }
        Ok(api)
    }

    /// The store query, with refusals naming this page's parameters.
    pub fn query(&self, stale_after: TimeDelta) -> Result<DeviceQuery, PageError> {
        device_query(&self.to_api(stale_after)?, Utc::now()).map_err(|err| {
            PageError::bad_request(
                err.message
                    .replace("`search`", "`q`")
                    .replace("`rule_status`", "`status`"),
            )
        })
    }

    /// This filter (and sort) as a query string, with `extra` pairs
    /// replacing or adding to it.
    pub fn query_string(&self, extra: &[(&str, &str)]) -> String {
        let mut pairs: Vec<(&str, &str)> = [
            ("q", &self.q),
            ("rule", &self.rule),
            ("status", &self.status),
            ("os", &self.os),
            ("stale", &self.stale),
            ("sort", &self.sort),
            ("descending", &self.descending),
        ]
        .into_iter()
        .filter_map(|(name, value)| non_empty(value).map(|v| (name, v)))
        .filter(|(name, _)| !extra.iter().any(|(n, _)| n == name))
        .collect();
        pairs.extend(extra.iter().copied().filter(|(_, v)| !v.is_empty()));
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        serializer.extend_pairs(pairs);
        serializer.finish()
    }
}

fn parse_params(
    params: Result<Query<DevicesParams>, QueryRejection>,
) -> Result<DevicesParams, PageError> {
    params
        .map(|Query(p)| p)
        .map_err(|rejection| PageError::bad_request(rejection.body_text()))
}

pub async fn page(
    session: Session,
    State(state): State<AppState>,
    params: Result<Query<DevicesParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let params = parse_params(params)?;
    let query = params.query(state.web.stale_after)?;
    let failed =
        |err: crate::store::StoreError| PageError::unavailable("listing devices failed", &err);
    let page = state.store.list_devices(&query).await.map_err(failed)?;
    let os_names = state.store.os_names().await.map_err(failed)?;
    let now = Utc::now();
    let stale_before = now - state.web.stale_after;
    let pages = page.total.div_ceil(u64::from(query.per_page)).max(1);
    let selected = |value: &Option<String>, option: &str| non_empty(value) == Some(option);

    let body = html! {
        form id="filters" method="get" action="/devices" {
            label { "Search " input id="q" name="q" type="search" value=(params.q.as_deref().unwrap_or(""))
                placeholder="hostname, user or OS"; }
            label { "Rule "
                select id="rule" name="rule" {
                    option value="" { "any" }
                    @for rule in RuleId::ALL {
                        option value=(rule) selected[selected(&params.rule, rule)] { (rule) }
                    }
                }
            }
            label { "Status "
                select id="status" name="status" {
                    option value="" { "any" }
                    @for status in STATUSES {
                        option value=(status) selected[selected(&params.status, status)] { (status.replace('_', " ")) }
                    }
                }
            }
            label { "OS "
                select id="os" name="os" {
                    option value="" { "any" }
                    @for os in &os_names {
                        option value=(os) selected[selected(&params.os, os)] { (os) }
                    }
                }
            }
            label { input id="stale" name="stale" type="checkbox" value="true"
                checked[selected(&params.stale, "true")]; " stale only" }
            @if let Some(sort) = non_empty(&params.sort) { input type="hidden" name="sort" value=(sort); }
            @if let Some(d) = non_empty(&params.descending) { input type="hidden" name="descending" value=(d); }
            button id="apply" type="submit" { "Apply" }
            " " a href="/devices" { "Clear" }
        }
        p class="note" { "With a rule chosen, the status filter is that rule's status (after exceptions); without one, the device's overall status (pass, fail or unknown)." }
        p {
            span id="result-count" { (page.total) } " matching device(s). "
            a id="csv" href={ "/devices.csv?" (params.query_string(&[])) } { "Export as CSV" }
        }
        table id="devices" {
            thead {
                tr {
                    th { (sort_link(&params, &query, DeviceSort::Hostname, "Hostname")) }
                    th { "User" }
                    th { (sort_link(&params, &query, DeviceSort::Os, "OS")) }
                    th { (sort_link(&params, &query, DeviceSort::LastSeen, "Last seen")) }
                    th { (sort_link(&params, &query, DeviceSort::Status, "Status")) }
                    @for rule in RuleId::ALL { th class="rule" { (rule.replace('_', " ")) } }
                    th { (sort_link(&params, &query, DeviceSort::EnrolledAt, "Enrolled")) }
                }
            }
            tbody {
                @for listing in &page.devices {
                    @let device = &listing.device;
                    @let stale = device.last_seen_at.unwrap_or(device.enrolled_at) < stale_before;
                    tr class="device" data-status=(listing.status.as_str()) {
                        td {
                            a class="device-link" href={ "/devices/" (device.device_id) } { (device.hostname) }
                            @if device.revoked_at.is_some() { " " span class="tag revoked" { "revoked" } }
                            @if stale { " " span class="tag stale" { "stale" } }
                        }
                        td class="user" { (device.console_user.as_deref().unwrap_or("")) }
                        td { (device.os_name) " " (device.os_version) }
                        td { (format_optional_time(device.last_seen_at)) }
                        td { (status_badge(listing.status.as_str())) }
                        @for rule in RuleId::ALL {
                            td class="rule" data-rule=(rule) {
                                @if let Some((_, status)) = listing.rules.iter().find(|(id, _)| id == rule) {
                                    (status_badge(status.as_str()))
                                }
                            }
                        }
                        td { (device.enrolled_at.format("%Y-%m-%d")) }
                    }
                }
            }
        }
        nav class="pages" aria-label="Pages" {
            @if query.page > 1 {
                a id="page-previous" href={ "/devices?" (params.query_string(&[("page", &(query.page - 1).to_string())])) } { "← Previous" }
            }
            " Page " (query.page) " of " (pages) " "
            @if u64::from(query.page) < pages {
                a id="page-next" href={ "/devices?" (params.query_string(&[("page", &(query.page + 1).to_string())])) } { "Next →" }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        layout::page(&session, Nav::Devices, "Devices", body),
    ))
}

/// A column heading that sorts by `sort`, or reverses the order when it
/// already does.
fn sort_link(params: &DevicesParams, query: &DeviceQuery, sort: DeviceSort, label: &str) -> Markup {
    let current = query.sort == sort;
    let descending = if current && !query.descending {
        "true"
    } else {
        ""
    };
    let href = format!(
        "/devices?{}",
        params.query_string(&[
            ("sort", sort.as_str()),
            ("descending", descending),
            ("page", "")
        ])
    );
    let arrow = match (current, query.descending) {
        (false, _) => "",
        (true, false) => " ▲",
        (true, true) => " ▼",
    };
    html! { a href=(href) { (label) (arrow) } }
}

/// `GET /devices.csv`: every device matching the page's filter, as the
/// admin API's CSV (with its formula guard).
pub async fn csv(
    _session: Session,
    State(state): State<AppState>,
    params: Result<Query<DevicesParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let params = parse_params(params)?;
    let query = params.query(state.web.stale_after)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str, rule: &str, status: &str) -> DevicesParams {
        DevicesParams {
            q: Some(q.to_owned()),
            rule: Some(rule.to_owned()),
            status: Some(status.to_owned()),
            ..DevicesParams::default()
        }
    }

    #[test]
    fn status_is_the_rules_with_a_rule_and_the_devices_without() {
        let with_rule = params("", "disk_encryption", "excepted")
            .query(TimeDelta::hours(24))
            .map_err(|e| e.message);
        let with_rule = with_rule.unwrap_or_else(|m| panic!("{m}"));
        assert!(with_rule.rule.is_some_and(|r| r.status.is_some()));
        assert_eq!(with_rule.status, None);
        let overall = params("", "", "fail")
            .query(TimeDelta::hours(24))
            .map_err(|e| e.message);
        assert_eq!(
            overall.ok().and_then(|q| q.status),
            Some(DeviceStatus::Fail)
        );
        let refused = params("", "", "excepted")
            .query(TimeDelta::hours(24))
            .err()
            .map(|e| e.message);
        assert!(refused.is_some_and(|m| m.contains("`status`")));
    }

    #[test]
    fn refusals_name_this_pages_parameters() {
        let long = "x".repeat(300);
        let refused = params(&long, "", "")
            .query(TimeDelta::hours(24))
            .err()
            .map(|e| e.message);
        assert!(refused.is_some_and(|m| m.contains("`q`")));
    }

    #[test]
    fn the_query_string_keeps_the_filter_and_escapes_it() {
        let p = params("' OR 1=1 --", "screen_lock", "");
        assert_eq!(
            p.query_string(&[("page", "2")]),
            "q=%27+OR+1%3D1+--&rule=screen_lock&page=2"
        );
    }
}
