//! Enrollment: prove possession of the device key, present the secret, and
//! pin the collector's policy key. The secret is used for this one request
//! and never written anywhere.

use anyhow::{Context as _, bail};
use chrono::Utc;
use palisade_shared::protocol::{ENROLL_SCHEMA_VERSION, EnrollRequest, EnrollResponse, ErrorBody};

use crate::config::{CollectorUrl, EnrollSecret};
use crate::identity::{Enrollment, Identity};

/// Enrolls this device with the collector at `url`.
pub async fn enroll(
    client: &reqwest::Client,
    url: &CollectorUrl,
    secret: &EnrollSecret,
    identity: &Identity,
) -> anyhow::Result<Enrollment> {
    let request = EnrollRequest {
        schema_version: ENROLL_SCHEMA_VERSION,
        enrollment_secret: secret.expose().to_owned(),
        public_key: identity.public_key_base64(),
        agent: crate::report::agent_info(),
        host: crate::report::host_info(&crate::sys::Host::system()),
        requested_at: Utc::now(),
    };
    let envelope = request.sign(&identity.key);
    let endpoint = endpoint(url, "api/v1/enroll")?;
    let response = client
        .post(endpoint.clone())
        .header("content-type", "application/json")
        .body(envelope.to_json())
        .send()
        .await
        .with_context(|| format!("cannot reach the collector at {endpoint}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .context("the collector's answer was cut off")?;
    // 201: enrolled now; 200: this key was enrolled already (an earlier
    // answer was lost), and the collector says which device it is.
    if status != reqwest::StatusCode::CREATED && status != reqwest::StatusCode::OK {
        let reason = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| format!("{} ({})", e.message, e.error))
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(200).collect());
        bail!("the collector refused the enrollment: HTTP {status}: {reason}");
    }
    let answer: EnrollResponse =
        serde_json::from_slice(&body).context("the collector's enrollment answer is not valid")?;
    let enrollment =
        Enrollment::from_response(&answer, url.as_str(), identity.key_id(), Utc::now()).map_err(
            |err| anyhow::anyhow!("the collector's enrollment answer is not valid: {err}"),
        )?;
    Ok(enrollment)
}

/// `base` joined with a path under it.
pub fn endpoint(base: &CollectorUrl, path: &str) -> anyhow::Result<reqwest::Url> {
    let mut url = base.as_url().clone();
    if !url.path().ends_with('/') {
        let with_slash = format!("{}/", url.path());
        url.set_path(&with_slash);
    }
    url.join(path)
        .with_context(|| format!("cannot build the URL for {path}"))
}
