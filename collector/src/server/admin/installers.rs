//! `POST /api/v1/installers`: a new enrollment secret and the silent-install
//! command line for each OS, from [`crate::installers`] (the function the
//! command line and the dashboard use). The answer is the only place the
//! secret and the commands are shown.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Admin;
use super::bodies::{ErrorBodySchema, SecretBody};
use super::secrets::create_secret;
use super::{bad_field, json_refusal};
use crate::app::AppState;
use crate::installers::{self, InstallerValues};
use crate::server::error::ApiError;

/// `POST /api/v1/installers`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInstallersRequest {
    /// How many devices may enroll with it; absent: unlimited.
    #[schema(minimum = 1)]
    pub uses: Option<u32>,
    /// How long it stays valid; absent: a week (604800), as for
    /// `palisade-collector installers`.
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub expires_in_seconds: Option<u64>,
    #[serde(default)]
    pub label: String,
    /// The URL devices reach the collector at; absent: `public_url` from the
    /// collector's config.
    pub collector_url: Option<String>,
    /// Put the pin of the collector's certificate in the commands (default
    /// true); false when the certificate is from a public CA the devices
    /// trust.
    #[serde(default = "yes")]
    pub ca_pin: bool,
}

fn yes() -> bool {
    true
}

/// One OS's command lines.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstallCommandBody {
    /// `windows`, `debian`, `rhel` or `macos`.
    pub os: String,
    pub title: String,
    /// The lines to run, joined by `\n`.
    pub text: String,
}

/// A new secret and its install commands: the only time either is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedInstallersBody {
    /// `pls_<id>_<random>`; only its hash is stored.
    pub secret: String,
    #[serde(flatten)]
    pub info: SecretBody,
    /// Windows, Debian/Ubuntu, RHEL/Fedora, macOS.
    pub commands: Vec<InstallCommandBody>,
}

/// Create an enrollment secret and the silent-install commands with it.
#[utoipa::path(
    post,
    path = "/api/v1/installers",
    tag = "enrollment",
    request_body = NewInstallersRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `secret` and `commands` are shown only here", body = CreatedInstallersBody),
        (status = 400, description = "`malformed` or `bad_field`", body = ErrorBodySchema),
        (status = 401, description = "`unauthorized`", body = ErrorBodySchema),
        (status = 403, description = "`forbidden`: a viewer token", body = ErrorBodySchema),
    )
)]
pub async fn create(
    Admin(caller): Admin,
    State(state): State<AppState>,
    request: Result<Json<NewInstallersRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedInstallersBody>), ApiError> {
    let Json(request) = request.map_err(|r| json_refusal(&r))?;
    // Everything is checked before the secret is made.
    let url_text = request
        .collector_url
        .or_else(|| state.web.public_url.clone())
        .ok_or_else(|| {
            bad_field(
                "collector_url",
                "needed, as the collector's config sets no public_url",
            )
        })?;
    let collector_url = installers::parse_collector_url(&url_text)
        .map_err(|problem| bad_field("collector_url", format!("{url_text:?} {problem}")))?;
    let ca_pin = match (request.ca_pin, state.web.ca_pin) {
        (false, _) => None,
        (true, Some(pin)) => Some(pin),
        (true, None) => {
            return Err(bad_field(
                "ca_pin",
                "the collector serves no certificate to pin (plain HTTP); send false",
            ));
        }
    };
    let expires_in_seconds = request
        .expires_in_seconds
        .unwrap_or(u64::from(installers::DEFAULT_EXPIRY_DAYS) * 86_400);
    let created = create_secret(
        &state,
        &caller.actor(),
        request.uses,
        Some(expires_in_seconds),
        request.label,
    )
    .await?;
    let commands = installers::install_commands(&InstallerValues {
        version: installers::VERSION,
        collector_url: &collector_url,
        secret: &created.text,
        ca_pin: ca_pin.as_ref(),
    })
    .map_err(|err| ApiError::new(StatusCode::BAD_REQUEST, "bad_field", err.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedInstallersBody {
            secret: created.text,
            info: SecretBody::new(created.info, Utc::now()),
            commands: commands
                .into_iter()
                .map(|c| InstallCommandBody {
                    os: c.os.to_owned(),
                    title: c.title.to_owned(),
                    text: c.text,
                })
                .collect(),
        }),
    ))
}
