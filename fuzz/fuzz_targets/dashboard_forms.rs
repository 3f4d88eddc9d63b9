//! The dashboard's form bodies and query strings, and the admin API's query
//! strings, decoded as axum's `Form` and `Query` decode them
//! (serde_urlencoded over form_urlencoded), then checked by the function
//! the handler runs on them. Every struct gets every input: a browser, or
//! anyone with a session cookie or a token, can send any body to any form.
#![no_main]

use chrono::{DateTime, TimeDelta, Utc};
use libfuzzer_sys::fuzz_target;
use palisade_collector::config::DEFAULT_STALE_AFTER_HOURS;
use palisade_collector::server::admin::audit::AuditParams;
use palisade_collector::server::admin::devices::{
    DeviceDetailParams, DeviceListParams, SummaryParams, device_query,
};
use palisade_collector::server::admin::exceptions::ExceptionListParams;
use palisade_collector::web::auth::{CsrfForm, LoginForm};
use palisade_collector::web::pages::add_devices::{self, AddDevicesForm};
use palisade_collector::web::pages::devices::DevicesParams;
use palisade_collector::web::pages::enrollment::{self, NewSecretForm};
use palisade_collector::web::pages::exceptions::{self, ExceptionsParams, GrantForm};
use palisade_collector::web::pages::policy::PolicyForm;
use serde::de::DeserializeOwned;

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_urlencoded::from_bytes(bytes).ok()
}

fuzz_target!(|bytes: &[u8]| {
    // A fixed "now", so that a crash replays: 2027-01-15T08:00:00Z.
    let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    let stale_after = TimeDelta::hours(i64::from(DEFAULT_STALE_AFTER_HOURS));

    // The dashboard's pages.
    let _ = decode::<LoginForm>(bytes);
    let _ = decode::<CsrfForm>(bytes);
    let _ = decode::<PolicyForm>(bytes);
    let _ = decode::<ExceptionsParams>(bytes);
    if let Some(form) = decode::<NewSecretForm>(bytes) {
        let _ = enrollment::validate(&form.fields, now);
    }
    if let Some(form) = decode::<AddDevicesForm>(bytes) {
        let _ = add_devices::validate(&form, now);
    }
    if let Some(form) = decode::<GrantForm>(bytes) {
        let _ = exceptions::validate(&form, now);
    }
    if let Some(params) = decode::<DevicesParams>(bytes) {
        let _ = params.query(stale_after);
        let _ = params.query_string(&[("page", "2")]);
    }

    // The admin API. The single-parameter structs' handlers check their
    // value with one `parse_in_range` or `parse_bool` call, both of which
    // `device_query` runs too.
    if let Some(params) = decode::<DeviceListParams>(bytes) {
        let _ = device_query(&params, now);
    }
    let _ = decode::<DeviceDetailParams>(bytes);
    let _ = decode::<SummaryParams>(bytes);
    let _ = decode::<AuditParams>(bytes);
    let _ = decode::<ExceptionListParams>(bytes);
});
