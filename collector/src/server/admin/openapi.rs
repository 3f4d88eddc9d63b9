//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of every endpoint
//! the collector serves, built by utoipa from the `#[utoipa::path]`
//! attribute on each handler, so describing an endpoint sits next to the
//! code that answers it.
//!
//! The agent's wire types live in `palisade-shared`, which must not depend
//! on utoipa; they are described here by mirror schemas (`EnvelopeSchema`,
//! `EnrollResponseSchema`, …) that the tests below hold to the real types'
//! JSON. The agent endpoints' handlers (`enroll`, `reports`, `policy`) are
//! described by the stub functions here for the same reason of ownership;
//! the route test in this module keeps every route of
//! [`crate::server::ROUTES`] and every documented operation in step.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::bodies::{
    AuditEntryBody, AuditListBody, CreatedSecretBody, DeviceBody, DeviceDetailBody, DevicePageBody,
    ErrorBodySchema, ExceptionBody, ExceptionListBody, InvalidPolicyBody, KeyBody,
    NewExceptionRequest, NewSecretRequest, PolicyBody, PolicyProblem, ReportEntryBody, RevokedBody,
    SecretBody, SecretListBody, SecretStateName, SummaryBody, VerdictBody,
};

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Palisade collector API",
        version = "1",
        description = "Agents enroll, send signed posture reports and fetch signed policy \
            (no credential: the signatures are the proof). IT reads the fleet and manages it \
            through the admin endpoints with a bearer API token (`palisade-collector token \
            create --role admin|viewer`): a viewer token reads, an admin token also changes. \
            Every error body is `{\"error\": \"<stable code>\", \"message\": \"<sentence>\"}`. \
            PROTOCOL.md is the normative description."
    ),
    paths(
        enroll_endpoint,
        reports_endpoint,
        policy_endpoint,
        crate::server::metrics::render,
        crate::server::healthz,
        crate::server::readyz,
        document,
        super::devices::list,
        super::devices_csv::export_csv,
        super::devices::detail,
        super::devices::revoke,
        super::devices::summary,
        super::policy::get,
        super::policy::put,
        super::secrets::list,
        super::secrets::create,
        super::secrets::revoke,
        super::installers::create,
        super::exceptions::list,
        super::exceptions::grant,
        super::audit::list,
    ),
    components(schemas(
        super::devices::DeviceSortName,
        ErrorBodySchema,
        EnvelopeSchema,
        EnvelopeSignatureSchema,
        EnrollResponseSchema,
        ReportAckSchema,
        DeviceBody,
        DevicePageBody,
        DeviceDetailBody,
        VerdictBody,
        KeyBody,
        ReportEntryBody,
        RevokedBody,
        SummaryBody,
        PolicyBody,
        PolicyProblem,
        InvalidPolicyBody,
        SecretBody,
        SecretStateName,
        SecretListBody,
        super::installers::NewInstallersRequest,
        super::installers::InstallCommandBody,
        super::installers::CreatedInstallersBody,
        NewSecretRequest,
        CreatedSecretBody,
        ExceptionBody,
        ExceptionListBody,
        NewExceptionRequest,
        AuditEntryBody,
        AuditListBody,
    )),
    modifiers(&BearerToken),
    tags(
        (name = "agent", description = "What agents call: enrollment, reports, policy"),
        (name = "fleet", description = "Devices, their verdicts and history, the summary"),
        (name = "policy", description = "The policy IT sets"),
        (name = "enrollment", description = "Enrollment secrets"),
        (name = "exceptions", description = "Exceptions to a rule for one device"),
        (name = "audit", description = "Who changed what"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the admin endpoints name.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("plt_<16 hex id>_<43 base64url>")
                    .description(Some(
                        "An API token from `palisade-collector token create`; viewer tokens \
                         read, admin tokens also change",
                    ))
                    .build(),
            ),
        );
        // Every token-authenticated operation can also answer 429 (ten
        // invalid tokens from one address, `server::failure_limit`): said
        // once here rather than on each handler.
        let rate_limited = utoipa::openapi::ResponseBuilder::new()
            .description(
                "`rate_limited`: 10 invalid API tokens from this address within 15 minutes",
            )
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    operation
                        .responses
                        .responses
                        .insert("429".to_owned(), rate_limited.clone().into());
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn document() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot serialise the OpenAPI document");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

// ---------------------------------------------------------------------------
// The agent endpoints (handlers in `server::enroll`, `server::reports`,
// `server::policy`; PROTOCOL.md §4–§6).

/// Enroll a device: a DSSE envelope of an enrollment request, signed by the
/// key it names, with an enrollment secret.
#[utoipa::path(
    post,
    path = "/api/v1/enroll",
    tag = "agent",
    request_body(content = EnvelopeSchema, description = "Payload type `application/vnd.palisade.enroll+json; version=1`; at most 256 KiB"),
    responses(
        (status = 201, description = "Enrolled", body = EnrollResponseSchema),
        (status = 400, description = "`malformed`", body = ErrorBodySchema),
        (status = 401, description = "`bad_proof` or `bad_secret`", body = ErrorBodySchema),
        (status = 409, description = "`key_already_enrolled`", body = ErrorBodySchema),
        (status = 413, description = "`too_large`", body = ErrorBodySchema),
        (status = 422, description = "`stale_request`: `requested_at` outside the allowed clock skew", body = ErrorBodySchema),
        (status = 429, description = "`rate_limited`: 10 failures from this address within 15 minutes", body = ErrorBodySchema),
    )
)]
#[allow(dead_code)] // describes `server::enroll::enroll`
fn enroll_endpoint() {}

/// Send a signed report. A 2xx is sent only once the report is durably
/// stored.
#[utoipa::path(
    post,
    path = "/api/v1/reports",
    tag = "agent",
    request_body(content = EnvelopeSchema, description = "Payload type `application/vnd.palisade.report+json; version=1`; at most 256 KiB"),
    responses(
        (status = 201, description = "Stored", body = ReportAckSchema),
        (status = 200, description = "This exact report was already stored (retry-safe)", body = ReportAckSchema),
        (status = 400, description = "`malformed`, `wrong_payload_type` or `schema_violation`", body = ErrorBodySchema),
        (status = 401, description = "`unknown_key` or `bad_signature`", body = ErrorBodySchema),
        (status = 403, description = "`revoked`", body = ErrorBodySchema),
        (status = 409, description = "`sequence_conflict`", body = ErrorBodySchema),
        (status = 413, description = "`too_large`", body = ErrorBodySchema),
        (status = 422, description = "`wrong_device` or `future_timestamp`", body = ErrorBodySchema),
        (status = 503, description = "`unavailable` or `shutting_down`: retry with backoff", body = ErrorBodySchema),
    )
)]
#[allow(dead_code)] // describes `server::reports::ingest`
fn reports_endpoint() {}

/// The current policy as a DSSE envelope signed by the key the agent pinned
/// at enrollment (payload type `application/vnd.palisade.policy+toml;
/// version=1`). No credential.
#[utoipa::path(
    get,
    path = "/api/v1/policy",
    tag = "agent",
    params(("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer")),
    responses(
        (status = 200, description = "The signed policy, with a strong `ETag`", body = EnvelopeSchema),
        (status = 304, description = "`If-None-Match` names the current ETag"),
        (status = 404, description = "`no_policy`", body = ErrorBodySchema),
    )
)]
#[allow(dead_code)] // describes `server::policy::get_policy`
fn policy_endpoint() {}

// ---------------------------------------------------------------------------
// Mirror schemas of the wire types in `palisade-shared`.

/// A DSSE v1 envelope (`palisade_shared::Envelope`, PROTOCOL.md §1).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Envelope)]
pub struct EnvelopeSchema {
    /// Base64 of the payload bytes.
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// 1 to 4 signatures.
    pub signatures: Vec<EnvelopeSignatureSchema>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EnvelopeSignature)]
pub struct EnvelopeSignatureSchema {
    /// Lowercase hex SHA-256 of the signer's 32-byte Ed25519 public key.
    pub keyid: String,
    /// Base64 of the 64-byte Ed25519 signature over the PAE.
    pub sig: String,
}

/// The answer to an enrollment (`palisade_shared::protocol::EnrollResponse`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EnrollResponse)]
pub struct EnrollResponseSchema {
    pub device_id: String,
    /// Base64 of the collector's policy-signing public key; the agent pins it.
    pub policy_public_key: String,
    /// Hex SHA-256 of that key.
    pub policy_key_id: String,
}

/// The answer to a stored report (`palisade_shared::protocol::ReportAck`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ReportAck)]
pub struct ReportAckSchema {
    pub sequence: u64,
    /// Hex SHA-256 of the stored payload.
    pub digest: String,
    /// `false` for an idempotent retry.
    pub newly_stored: bool,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn document_json() -> serde_json::Value {
        serde_json::to_value(ApiDoc::openapi()).expect("the document serialises")
    }

    /// Every route the router serves is documented, and every documented
    /// operation is a route: the document cannot drift from the router.
    #[test]
    fn every_route_is_documented_and_every_operation_is_routed() {
        let document = document_json();
        let mut documented = BTreeSet::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                if item.get(method).is_some() {
                    documented.insert((method.to_owned(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = crate::server::ROUTES
            .iter()
            .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        assert_eq!(
            routed.len(),
            crate::server::ROUTES.len(),
            "a route is listed twice"
        );
        assert_eq!(
            routed.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "routes missing from the document"
        );
        assert_eq!(
            documented.difference(&routed).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "documented operations no route serves"
        );
    }

    /// Every admin operation requires the bearer token; the agent and
    /// operations endpoints do not.
    #[test]
    fn admin_operations_name_the_bearer_scheme() {
        let document = document_json();
        assert_eq!(
            document["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let public = [
            "/api/v1/enroll",
            "/api/v1/reports",
            "/api/v1/policy",
            "/metrics",
            "/healthz",
            "/readyz",
            "/api/v1/openapi.json",
        ];
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("item") {
                let secured = operation["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
                assert_eq!(
                    secured,
                    !public.contains(&path.as_str()),
                    "{method} {path}: {operation}"
                );
            }
        }
    }

    /// Every `$ref` in the document names a schema it defines.
    #[test]
    fn every_reference_resolves() {
        fn walk(value: &serde_json::Value, refs: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                        refs.push(target.clone());
                    }
                    map.values().for_each(|v| walk(v, refs));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let document = document_json();
        let mut refs = Vec::new();
        walk(&document, &mut refs);
        assert!(!refs.is_empty());
        for target in refs {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected reference {target}"));
            assert!(
                document["components"]["schemas"].get(name).is_some(),
                "{target} is not defined"
            );
        }
    }

    /// The property names of a schema in the document.
    fn properties(document: &serde_json::Value, schema: &str) -> BTreeSet<String> {
        document["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no schema {schema}"))
            .keys()
            .cloned()
            .collect()
    }

    fn keys(value: &impl Serialize) -> BTreeSet<String> {
        serde_json::to_value(value)
            .expect("serialises")
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect()
    }

    /// The mirror schemas have exactly the fields the shared wire types
    /// send.
    #[test]
    fn mirror_schemas_match_the_wire_types() {
        use palisade_shared::protocol::{EnrollResponse, ErrorBody, ReportAck};
        let document = document_json();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let envelope = palisade_shared::Envelope::sign("t", b"x", &key);
        assert_eq!(properties(&document, "Envelope"), keys(&envelope));
        assert_eq!(
            properties(&document, "EnvelopeSignature"),
            keys(&envelope.signatures[0])
        );
        assert_eq!(
            properties(&document, "ErrorBody"),
            keys(&ErrorBody {
                error: String::new(),
                message: String::new()
            })
        );
        assert_eq!(
            properties(&document, "ReportAck"),
            keys(&ReportAck {
                sequence: 1,
                digest: String::new(),
                newly_stored: true
            })
        );
        assert_eq!(
            properties(&document, "EnrollResponse"),
            keys(&EnrollResponse {
                device_id: palisade_shared::DeviceId::new("dev_x"),
                policy_public_key: String::new(),
                policy_key_id: palisade_shared::KeyId::of(&key.verifying_key()),
            })
        );
    }
}
