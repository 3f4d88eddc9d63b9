//! The admin API's doors: every route that changes something (the writes of
//! `ROUTES` in `collector/src/server/mod.rs`, plus the secret list, which
//! only admins read) without a token, with a guessed or malformed one, with
//! a viewer's, and with malformed bodies.

use palisade_collector::server::ROUTES;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{Case, World};

const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;
const BAD: StatusCode = StatusCode::BAD_REQUEST;

/// A write route with a body that would succeed for an admin.
struct WriteRoute {
    method: Method,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
}

fn write_routes(world: &World) -> Vec<WriteRoute> {
    let bob = World::device_id(&world.bob);
    let secret_id = world.secret.split('_').nth(1).unwrap();
    let json_body = |value: serde_json::Value| serde_json::to_vec(&value).unwrap();
    let until = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    let route = |method: Method, path: String, body: Vec<u8>| WriteRoute {
        method,
        path,
        content_type: "application/json",
        body,
    };
    vec![
        route(
            Method::POST,
            format!("/api/v1/devices/{bob}/revoke"),
            Vec::new(),
        ),
        WriteRoute {
            content_type: "text/plain",
            ..route(
                Method::PUT,
                "/api/v1/admin/policy".into(),
                b"[policy]\nid = \"hijacked\"\nversion = 9\n".to_vec(),
            )
        },
        route(
            Method::POST,
            "/api/v1/secrets".into(),
            json_body(json!({"label": "x"})),
        ),
        route(
            Method::POST,
            format!("/api/v1/secrets/{secret_id}/revoke"),
            Vec::new(),
        ),
        route(
            Method::POST,
            "/api/v1/installers".into(),
            json_body(json!({"collector_url": "https://collector.example.org"})),
        ),
        route(
            Method::POST,
            "/api/v1/exceptions".into(),
            json_body(json!({
                "device_id": bob, "rule_id": "disk_encryption", "until": until,
                "reason": "x", "approver": "y"
            })),
        ),
        route(Method::GET, "/api/v1/secrets".into(), Vec::new()),
    ]
}

pub fn cases(world: &World) -> Vec<Case> {
    let routes = write_routes(world);
    // Every write route of the table is here, so a new one cannot be
    // forgotten; the agent's two (no token) have their tables in `reports`.
    for (method, path) in ROUTES {
        let agents = ["/api/v1/enroll", "/api/v1/reports"].contains(path);
        let writes = !method.eq_ignore_ascii_case("get") && !agents;
        let listed = routes.iter().any(|r| {
            r.method.as_str().eq_ignore_ascii_case(method) && shape(&r.path) == shape(path)
        });
        assert!(!writes || listed, "{method} {path} has no hostile cases");
    }
    let token_id = world.admin_token.split('_').nth(1).unwrap();
    let guessed = format!("plt_{token_id}_{}", "A".repeat(43));
    let mut cases = Vec::new();
    for route in &routes {
        let base = |name: &str| {
            Case::new(
                format!("{} {}: {name}", route.method, route.path),
                route.method.clone(),
                route.path.clone(),
            )
            .header("content-type", route.content_type)
            .body(route.body.clone())
        };
        cases.push(base("no token").refused(UNAUTHORIZED, "unauthorized"));
        cases.push(
            base("the admin token's id with a guessed secret")
                .bearer(&guessed)
                .refused(UNAUTHORIZED, "unauthorized"),
        );
        cases.push(
            base("a token that is not a token")
                .bearer("hunter2")
                .refused(UNAUTHORIZED, "unauthorized"),
        );
        cases.push(
            base("the admin token as Basic credentials")
                .header("authorization", format!("Basic {}", world.admin_token))
                .refused(UNAUTHORIZED, "unauthorized"),
        );
        cases.push(
            base("a viewer token")
                .bearer(&world.viewer_token)
                .refused(StatusCode::FORBIDDEN, "forbidden"),
        );
    }

    let admin = |name: &str, method: Method, path: &str| {
        Case::new(name, method, path).bearer(&world.admin_token)
    };
    let json_post = |name: &str, path: &str, body: &[u8]| {
        admin(name, Method::POST, path)
            .header("content-type", "application/json")
            .body(body.to_vec())
    };
    for path in [
        "/api/v1/secrets",
        "/api/v1/installers",
        "/api/v1/exceptions",
    ] {
        cases.push(
            json_post(&format!("{path}: not JSON"), path, b"{not json").refused(BAD, "malformed"),
        );
        cases.push(
            json_post(
                &format!("{path}: 1 MiB of [[[[ nesting"),
                path,
                &vec![b'['; 1 << 20],
            )
            .refused(StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        );
        cases.push(
            json_post(
                &format!("{path}: 200 KiB of [[[[ nesting"),
                path,
                &vec![b'['; 200 * 1024],
            )
            .refused(StatusCode::UNPROCESSABLE_ENTITY, "malformed"),
        );
        cases.push(
            admin(
                &format!("{path}: JSON sent as text/plain"),
                Method::POST,
                path,
            )
            .header("content-type", "text/plain")
            .body(b"{}".to_vec())
            .refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, "malformed"),
        );
        cases.push(
            json_post(&format!("{path}: invalid UTF-8"), path, b"{\"\xff\xfe\":1}")
                .refused(BAD, "malformed"),
        );
    }
    cases.extend([
        json_post("secrets: uses -1", "/api/v1/secrets", br#"{"uses":-1}"#).refused(StatusCode::UNPROCESSABLE_ENTITY, "malformed"),
        json_post("secrets: uses 2^32", "/api/v1/secrets", br#"{"uses":4294967296}"#).refused(StatusCode::UNPROCESSABLE_ENTITY, "malformed"),
        json_post("secrets: uses 0", "/api/v1/secrets", br#"{"uses":0}"#).refused(BAD, "bad_field"),
        json_post("secrets: expires in 2^64 s", "/api/v1/secrets", br#"{"expires_in_seconds":18446744073709551616}"#).refused(StatusCode::UNPROCESSABLE_ENTITY, "malformed"),
        json_post("secrets: expires in 2^63 s", "/api/v1/secrets", br#"{"expires_in_seconds":9223372036854775808}"#).refused(BAD, "bad_field"),
        json_post("secrets: uses NaN", "/api/v1/secrets", br#"{"uses":NaN}"#).refused(BAD, "malformed"),
        json_post("exceptions: an unknown rule", "/api/v1/exceptions", &serde_json::to_vec(&json!({
            "device_id": World::device_id(&world.bob), "rule_id": "<script>", "until": "2999-01-01T00:00:00Z",
            "reason": "x", "approver": "y"
        })).unwrap()).refused(BAD, "bad_field"),
        json_post("exceptions: a device that does not exist", "/api/v1/exceptions", &serde_json::to_vec(&json!({
            "device_id": "dev_nope", "rule_id": "disk_encryption", "until": "2999-01-01T00:00:00Z",
            "reason": "x", "approver": "y"
        })).unwrap()).refused(StatusCode::NOT_FOUND, "no_such_device"),
        json_post("installers: a javascript: URL", "/api/v1/installers", br#"{"collector_url":"javascript:alert(1)"}"#).refused(BAD, "bad_field"),
        admin("policy: not TOML", Method::PUT, "/api/v1/admin/policy").body(b"[policy\nid = ".to_vec()).refused(BAD, "invalid_policy"),
        admin("policy: invalid UTF-8", Method::PUT, "/api/v1/admin/policy").body(b"[policy]\nid = \"\xff\"\n".to_vec()).refused(BAD, "malformed"),
        admin("policy: 300 KiB", Method::PUT, "/api/v1/admin/policy").body(vec![b'#'; 300 * 1024]).refused(StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        admin("revoke a device that does not exist", Method::POST, "/api/v1/devices/dev_nope/revoke").refused(StatusCode::NOT_FOUND, "no_such_device"),
        admin("revoke a secret that does not exist", Method::POST, "/api/v1/secrets/0000000000000000/revoke").refused(StatusCode::NOT_FOUND, "no_such_secret"),
    ]);
    cases
}

/// A path with its `{…}` segments and concrete ids made alike, to match a
/// concrete path against a route pattern.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') || segment.starts_with("dev_") || segment.len() == 16 {
                "*"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}
