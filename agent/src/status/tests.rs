use chrono::{DateTime, TimeZone as _, Utc};
use palisade_shared::report::{CheckResult, CheckStatus, Mode};
use palisade_shared::{DeviceId, KeyId, RuleId};
use tokio::sync::mpsc;

use super::render::{span, when};
use super::*;
use crate::identity::Identity;
use crate::spool::Spool;

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 2, h, m, s).unwrap()
}

fn check(id: &str, status: CheckStatus, summary: &str, fix: &str) -> CheckResult {
    CheckResult {
        id: RuleId::new(id),
        status,
        mode: Mode::Nudge,
        summary: summary.to_owned(),
        evidence: serde_json::Map::new(),
        fix: fix.to_owned(),
        probe_duration_us: 120,
        enforcement: None,
        first_failed_at: None,
        deadline: None,
    }
}

fn sample_status() -> AgentStatus {
    let mut failing = check(
        "disk_encryption",
        CheckStatus::Fail,
        "/ is not encrypted",
        "Ask IT to encrypt this laptop's disk.",
    );
    failing.first_failed_at = Some(at(8, 0, 0));
    failing.deadline = Some(Utc.with_ymd_and_hms(2025, 6, 9, 8, 0, 0).unwrap());
    AgentStatus {
        schema_version: STATUS_SCHEMA_VERSION,
        agent_version: "0.1.0".to_owned(),
        started_at: at(7, 0, 0),
        device_id: Some(DeviceId::new("dev_7f3a")),
        key_id: KeyId::parse(&"ab".repeat(32)).unwrap(),
        key_store: "file /var/lib/palisade/device.key (0600)".to_owned(),
        collector_url: Some("https://posture.example.org/".to_owned()),
        policy: Some(PolicyStatus {
            id: "baseline".to_owned(),
            version: 3,
            source: "last good policy from the collector".to_owned(),
        }),
        last_cycle_at: Some(at(9, 59, 0)),
        checks: vec![
            check(
                "screen_lock",
                CheckStatus::Pass,
                "screen locks after 300 s idle; policy allows 900 s",
                "",
            ),
            failing,
            check(
                "usb_storage",
                CheckStatus::Unknown,
                "cannot read /etc/modprobe.d",
                "",
            ),
        ],
        recent_events: Vec::new(),
        spool: SpoolStatus {
            pending_reports: 2,
            pending_bytes: 5120,
            oldest_pending_sequence: Some(41),
            unrecorded_cycles: 2,
            unrecorded_since: Some(at(9, 0, 0)),
        },
        delivery: DeliveryStatus {
            last_delivered_at: Some(at(9, 30, 0)),
            last_error: Some("error sending request: connection refused".to_owned()),
            last_error_at: Some(at(9, 59, 30)),
        },
    }
}

#[test]
fn requests_parse_from_their_wire_form_and_nothing_else() {
    let cases: &[(&str, Result<Request, &str>)] = &[
        (r#"{"request":"status"}"#, Ok(Request::Status {})),
        (r#"{"request":"check_now"}"#, Ok(Request::CheckNow {})),
        (" {\"request\" : \"status\"}  \r", Ok(Request::Status {})),
        (r#"{"request":"reboot"}"#, Err("unknown variant `reboot`")),
        (
            r#"{"request":"status","verbose":true}"#,
            Err("unknown field `verbose`"),
        ),
        (r#"{"request":"check_now","x":1}"#, Err("unknown field `x`")),
        (r#"{}"#, Err("missing field `request`")),
        (r#"{"request":"#, Err("EOF while parsing")),
        ("status", Err("expected value")),
        (r#"[{"request":"status"}]"#, Err("")),
        ("", Err("empty request")),
        ("   ", Err("empty request")),
    ];
    for (line, expected) in cases {
        let parsed = parse_request(line.as_bytes());
        match (expected, &parsed) {
            (Ok(want), Ok(got)) => assert_eq!(want, got, "{line:?}"),
            (Err(fragment), Err(message)) => {
                assert!(message.contains(fragment), "{line:?}: {message}")
            }
            _ => panic!("{line:?}: expected {expected:?}, got {parsed:?}"),
        }
    }
}

#[test]
fn a_request_serialises_to_the_line_it_is_parsed_from() {
    for request in [Request::Status {}, Request::CheckNow {}] {
        assert_eq!(serde_json::to_string(&request).unwrap(), request.to_json());
        assert_eq!(parse_request(request.to_json().as_bytes()), Ok(request));
    }
}

#[test]
fn answers_have_the_documented_wire_shapes() {
    let accepted = Response::Accepted(Accepted {
        accepted: ChangeRequest::CheckNow,
    });
    assert_eq!(accepted.to_json(), br#"{"accepted":"check_now"}"#);
    let refused = Response::error(ErrorCode::Forbidden, "root only");
    assert_eq!(
        refused.to_json(),
        br#"{"error":"forbidden","message":"root only"}"#
    );
    let status = sample_status();
    let line = Response::Status(Box::new(status.clone())).to_json();
    assert_eq!(
        line,
        serde_json::to_vec(&status).unwrap(),
        "status is the bare document"
    );
    assert!(!line.contains(&b'\n'), "one line");
}

#[test]
fn every_error_code_has_its_documented_name() {
    for (code, name) in [
        (ErrorCode::BadRequest, "bad_request"),
        (ErrorCode::Forbidden, "forbidden"),
        (ErrorCode::Timeout, "timeout"),
        (ErrorCode::Busy, "busy"),
        (ErrorCode::Unavailable, "unavailable"),
        (ErrorCode::Internal, "internal"),
    ] {
        assert_eq!(code.as_str(), name);
        assert_eq!(serde_json::to_value(code).unwrap(), name);
    }
}

#[test]
fn the_status_document_round_trips_and_refuses_unknown_fields() {
    let status = sample_status();
    let json = serde_json::to_value(&status).unwrap();
    // Absent values are explicit nulls, so a reader sees every key.
    let fresh = AgentStatus {
        device_id: None,
        policy: None,
        ..status.clone()
    };
    let fresh_json = serde_json::to_value(&fresh).unwrap();
    assert!(fresh_json["device_id"].is_null() && fresh_json["policy"].is_null());
    assert_eq!(
        serde_json::from_value::<AgentStatus>(json.clone()).unwrap(),
        status
    );

    for pointer in ["", "/spool", "/delivery", "/policy"] {
        let mut extended = json.clone();
        extended
            .pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("surprise".to_owned(), true.into());
        let err = serde_json::from_value::<AgentStatus>(extended).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `surprise`"),
            "{pointer}: {err}"
        );
    }
}

#[test]
fn a_client_reads_each_answer_by_the_request_it_sent() {
    let status = sample_status();
    let line = serde_json::to_vec(&status).unwrap();
    assert_eq!(
        Response::parse(Request::Status {}, &line).unwrap(),
        Response::Status(Box::new(status))
    );
    assert_eq!(
        Response::parse(Request::CheckNow {}, br#"{"accepted":"check_now"}"#).unwrap(),
        Response::Accepted(Accepted {
            accepted: ChangeRequest::CheckNow
        })
    );
    for request in [Request::Status {}, Request::CheckNow {}] {
        assert_eq!(
            Response::parse(request, br#"{"error":"busy","message":"later"}"#).unwrap(),
            Response::error(ErrorCode::Busy, "later")
        );
    }
}

#[test]
fn a_client_refuses_answers_it_cannot_trust() {
    let mut newer = serde_json::to_value(sample_status()).unwrap();
    newer["schema_version"] = 2.into();
    let cases: Vec<(Request, Vec<u8>, &str)> = vec![
        (
            Request::Status {},
            serde_json::to_vec(&newer).unwrap(),
            "schema version 2",
        ),
        (Request::Status {}, b"{}".to_vec(), "schema version (none)"),
        (Request::Status {}, b"not json".to_vec(), "not JSON"),
        (
            Request::CheckNow {},
            br#"{"accepted":"reboot"}"#.to_vec(),
            "bad answer to check_now",
        ),
        (
            Request::CheckNow {},
            br#"{"error":"teapot","message":"x"}"#.to_vec(),
            "bad error answer",
        ),
    ];
    for (request, line, fragment) in cases {
        let err = Response::parse(request, &line).unwrap_err();
        assert!(
            matches!(err, StatusError::Protocol(_)) && err.to_string().contains(fragment),
            "{}: {err}",
            String::from_utf8_lossy(&line)
        );
    }
}

#[test]
fn only_root_may_request_changes() {
    for (uid, allowed) in [
        (Some(0), true),
        (Some(1), false),
        (Some(1000), false),
        (Some(65534), false),
        (Some(u32::MAX), false),
        (None, false),
    ] {
        assert_eq!(may_request_changes(uid), allowed, "{uid:?}");
    }
}

#[test]
fn answer_serves_the_board_to_anyone_and_changes_to_root_only() {
    let board = StatusBoard::new(sample_status());
    let reader = board.subscribe();
    let (requests, mut received) = mpsc::channel(1);
    let never_asked = || -> Option<Peer> { panic!("status must not need credentials") };

    let got = answer(br#"{"request":"status"}"#, never_asked, &reader, &requests);
    assert_eq!(got, Response::Status(Box::new(board.current())));

    let refused_administrator = answer(
        br#"{"request":"check_now"}"#,
        || {
            Some(Peer::WindowsToken {
                system_or_administrator: false,
            })
        },
        &reader,
        &requests,
    );
    assert!(
        matches!(&refused_administrator, Response::Error(e) if e.error == ErrorCode::Forbidden),
        "{refused_administrator:?}"
    );
    for uid in [Some(1000), None] {
        let got = answer(
            br#"{"request":"check_now"}"#,
            || uid.map(Peer::Uid),
            &reader,
            &requests,
        );
        assert!(
            matches!(&got, Response::Error(e) if e.error == ErrorCode::Forbidden),
            "{uid:?}: {got:?}"
        );
        assert!(received.try_recv().is_err(), "nothing reaches the daemon");
    }

    let accepted = Response::Accepted(Accepted {
        accepted: ChangeRequest::CheckNow,
    });
    let got = answer(
        br#"{"request":"check_now"}"#,
        || Some(Peer::Uid(0)),
        &reader,
        &requests,
    );
    assert_eq!(got, accepted);
    // A second request while the first is still queued is the same cycle.
    let got = answer(
        br#"{"request":"check_now"}"#,
        || Some(Peer::Uid(0)),
        &reader,
        &requests,
    );
    assert_eq!(got, accepted);
    assert_eq!(received.try_recv(), Ok(ChangeRequest::CheckNow));
    assert!(received.try_recv().is_err(), "coalesced into one");

    drop(received);
    let got = answer(
        br#"{"request":"check_now"}"#,
        || Some(Peer::Uid(0)),
        &reader,
        &requests,
    );
    assert!(
        matches!(&got, Response::Error(e) if e.error == ErrorCode::Unavailable),
        "{got:?}"
    );

    let got = answer(b"{", never_asked, &reader, &requests);
    assert!(
        matches!(&got, Response::Error(e) if e.error == ErrorCode::BadRequest),
        "{got:?}"
    );
}

#[test]
fn the_board_records_what_the_daemon_tells_it() {
    let status = sample_status();
    let board = StatusBoard::new(AgentStatus {
        device_id: None,
        collector_url: None,
        policy: None,
        last_cycle_at: None,
        checks: Vec::new(),
        delivery: DeliveryStatus::default(),
        ..status.clone()
    });
    let reader = board.subscribe();
    let writer = board.clone();
    writer.set_enrollment(&DeviceId::new("dev_1"), "https://c.example/");
    writer.set_policy(&crate::daemon::policy::baseline());
    writer.set_cycle(at(10, 0, 0), status.checks.clone());
    writer.record_delivery_failed(at(10, 0, 1), "HTTP 503");
    let seen = reader.borrow().clone();
    assert_eq!(seen.device_id, Some(DeviceId::new("dev_1")));
    assert_eq!(seen.collector_url.as_deref(), Some("https://c.example/"));
    let policy = seen.policy.unwrap();
    assert_eq!(policy.source, "built-in baseline");
    assert_eq!(seen.last_cycle_at, Some(at(10, 0, 0)));
    assert_eq!(seen.checks, status.checks);
    assert_eq!(seen.delivery.last_error.as_deref(), Some("HTTP 503"));

    board.record_delivered(at(10, 0, 5));
    assert_eq!(
        board.current().delivery,
        DeliveryStatus {
            last_delivered_at: Some(at(10, 0, 5)),
            last_error: None,
            last_error_at: None,
        }
    );
}

#[test]
fn the_board_reads_counts_from_the_spool() {
    let temp = tempfile::tempdir().unwrap();
    let limits = crate::spool::SpoolLimits {
        max_reports: 10,
        max_bytes: 1024 * 1024,
    };
    let mut spool = Spool::open(&temp.path().join("spool"), limits).unwrap();
    let board = StatusBoard::new(sample_status());
    board.set_spool(&spool);
    assert_eq!(board.current().spool, SpoolStatus::default());

    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let policy = crate::daemon::policy::baseline().policy;
    for _ in 0..2 {
        let mut report =
            crate::report::standalone_report(&crate::sys::Host::system(), &policy, Vec::new());
        report.device_id = DeviceId::new("dev_1");
        spool.next_link().apply_to(&mut report, at(9, 0, 0));
        let envelope = palisade_shared::Envelope::sign(
            palisade_shared::envelope::REPORT_PAYLOAD_TYPE,
            &report.to_payload(),
            &key,
        );
        spool.append(&envelope.to_json()).unwrap();
    }
    board.set_spool(&spool);
    let counts = board.current().spool;
    assert_eq!(counts.pending_reports, 2);
    assert_eq!(counts.pending_bytes, spool.total_bytes());
    assert_eq!(counts.oldest_pending_sequence, Some(1));

    spool.acknowledge(1).unwrap();
    board.set_spool(&spool);
    assert_eq!(board.current().spool.oldest_pending_sequence, Some(2));
    assert_eq!(board.current().spool.pending_reports, 1);
}

#[test]
fn the_status_at_start_names_the_key_and_nothing_else() {
    let temp = tempfile::tempdir().unwrap();
    let identity = Identity {
        key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        store: crate::identity::KeyStore::file_in(temp.path()),
    };
    let status = AgentStatus::starting(&identity, at(7, 0, 0));
    assert_eq!(status.schema_version, STATUS_SCHEMA_VERSION);
    assert_eq!(status.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(status.key_id, identity.key_id());
    assert_eq!(status.key_store, identity.store.to_string());
    assert_eq!(status.device_id, None);
    assert!(status.checks.is_empty() && status.last_cycle_at.is_none());
}

#[test]
fn the_human_summary_reads_well() {
    let text = render_human_at(&sample_status(), at(10, 0, 0));
    let expected = "\
Palisade agent 0.1.0, running since 2025-06-02 07:00:00 UTC (3 h ago)

Device
  device id   dev_7f3a
  key id      abababababababababababababababababababababababababababababababab
  key store   file /var/lib/palisade/device.key (0600)
  collector   https://posture.example.org/
  policy      baseline version 3 (last good policy from the collector)

Checks, last run 2025-06-02 09:59:00 UTC (1 min ago)
  pass            screen_lock      screen locks after 300 s idle; policy allows 900 s
  FAIL            disk_encryption  / is not encrypted
                                   fix: Ask IT to encrypt this laptop's disk.
                                   deadline: 2025-06-09 08:00:00 UTC (in 6 days)
  UNKNOWN         usb_storage      cannot read /etc/modprobe.d

Reports
  spool       2 reports waiting to be sent (5120 bytes, oldest #41)
  unrecorded  2 cycles not written since 2025-06-02 09:00:00 UTC (1 h ago) (is the disk full?)
  delivered   2025-06-02 09:30:00 UTC (30 min ago)
  last error  2025-06-02 09:59:30 UTC (30 s ago): error sending request: connection refused
";
    assert_eq!(text, expected, "\n{text}");
}

#[test]
fn the_human_summary_of_a_fresh_agent_says_what_is_still_to_come() {
    let fresh = AgentStatus {
        device_id: None,
        collector_url: None,
        policy: None,
        last_cycle_at: None,
        checks: Vec::new(),
        spool: SpoolStatus::default(),
        delivery: DeliveryStatus::default(),
        ..sample_status()
    };
    let text = render_human_at(&fresh, at(7, 0, 20));
    for line in [
        "running since 2025-06-02 07:00:00 UTC (20 s ago)",
        "  device id   not enrolled yet\n",
        "  collector   none yet\n",
        "  policy      not loaded yet\n",
        "Checks: none yet (the first check cycle has not finished)\n",
        "  spool       empty: every report has been delivered\n",
        "  delivered   not yet since the agent started\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("last error"), "{text}");
}

#[test]
fn spans_are_rounded_to_what_a_person_wants() {
    for (seconds, text) in [
        (0, "0 s"),
        (59, "59 s"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600, "1 h"),
        (3660, "1 h 1 min"),
        (172_799, "47 h 59 min"),
        (172_800, "2 days"),
        (864_000, "10 days"),
    ] {
        assert_eq!(span(Duration::from_secs(seconds)), text, "{seconds}");
    }
    assert_eq!(
        when(at(10, 0, 0), at(10, 0, 0)),
        "2025-06-02 10:00:00 UTC (0 s ago)"
    );
    assert_eq!(
        when(at(10, 5, 0), at(10, 0, 0)),
        "2025-06-02 10:05:00 UTC (in 5 min)"
    );
}

#[test]
fn a_pipe_client_may_change_only_with_a_system_or_administrator_token() {
    assert!(
        Peer::WindowsToken {
            system_or_administrator: true
        }
        .may_request_changes()
    );
    assert!(
        !Peer::WindowsToken {
            system_or_administrator: false
        }
        .may_request_changes()
    );
    assert!(Peer::Uid(0).may_request_changes());
    assert!(!Peer::Uid(1000).may_request_changes());
}
