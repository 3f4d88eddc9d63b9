//! The report schema: the checked-in example is valid, round-trips, and
//! anything outside the schema is refused.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use palisade_shared::Report;
use palisade_shared::report::{CheckStatus, SchemaError};
use serde_json::Value;

const EXAMPLE: &str = include_str!("data/report-v1.json");

fn example_json() -> Value {
    serde_json::from_str(EXAMPLE).unwrap()
}

fn parse(value: &Value) -> Result<Report, SchemaError> {
    Report::from_json(&serde_json::to_vec(value).unwrap())
}

#[test]
fn the_documented_example_is_a_valid_report() {
    let report = Report::from_json(EXAMPLE.as_bytes()).unwrap();
    assert_eq!(report.sequence, 42);
    assert_eq!(report.checks.len(), 3);
    assert_eq!(report.checks[0].status, CheckStatus::Fail);
    assert_eq!(report.events.len(), 2);
}

#[test]
fn a_report_round_trips_through_its_payload_bytes() {
    let report = Report::from_json(EXAMPLE.as_bytes()).unwrap();
    let again = Report::from_json(&report.to_payload()).unwrap();
    assert_eq!(report, again);
    let issued =
        serde_json::from_slice::<Value>(&report.to_payload()).unwrap()["issued_at"].clone();
    assert_eq!(issued, "2026-11-23T09:15:02Z");
}

#[test]
fn unknown_fields_are_rejected_at_every_level() {
    let mut top = example_json();
    top["surprise"] = 1.into();
    assert!(matches!(parse(&top), Err(SchemaError::Invalid(_))));

    let mut nested = example_json();
    nested["checks"][0]["surprise"] = 1.into();
    assert!(matches!(parse(&nested), Err(SchemaError::Invalid(_))));

    let mut host = example_json();
    host["host"]["surprise"] = 1.into();
    assert!(matches!(parse(&host), Err(SchemaError::Invalid(_))));
}

#[test]
fn values_outside_the_schema_are_rejected() {
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "status",
            Box::new(|v| v["checks"][0]["status"] = "passed".into()),
        ),
        (
            "mode",
            Box::new(|v| v["checks"][0]["mode"] = "force".into()),
        ),
        (
            "issued_at",
            Box::new(|v| v["issued_at"] = "yesterday".into()),
        ),
        ("sequence", Box::new(|v| v["sequence"] = (-1).into())),
        ("prev_digest", Box::new(|v| v["prev_digest"] = "abc".into())),
        (
            "policy.digest",
            Box::new(|v| v["policy"]["digest"] = "".into()),
        ),
        (
            "schema_version",
            Box::new(|v| v["schema_version"] = 2.into()),
        ),
        ("device_id", Box::new(|v| v["device_id"] = "".into())),
        (
            "duplicate rule",
            Box::new(|v| {
                let first = v["checks"][0].clone();
                v["checks"].as_array_mut().unwrap().push(first);
            }),
        ),
    ];
    for (what, mutate) in cases {
        let mut value = example_json();
        mutate(&mut value);
        assert!(parse(&value).is_err(), "{what} was accepted");
    }
}

#[test]
fn the_first_report_of_a_chain_has_an_empty_prev_digest() {
    let mut value = example_json();
    value["prev_digest"] = "".into();
    assert!(parse(&value).is_ok());
}
