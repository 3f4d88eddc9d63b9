//! The one HTTPS client the agent talks to the collector with: rustls on the
//! ring provider (no OpenSSL), the collector's CA from `ca_file` or the
//! system roots, connect and request timeouts, and plain HTTP only to a
//! loopback collector (the URL type refuses anything else).

use std::time::Duration;

use anyhow::Context as _;

use crate::config::AgentConfig;

/// Builds the client from the configuration.
pub fn client(config: &AgentConfig) -> anyhow::Result<reqwest::Client> {
    client_with(
        config.ca_file.as_deref(),
        config.connect_timeout(),
        config.request_timeout(),
    )
}

pub fn client_with(
    ca_file: Option<&std::path::Path>,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> anyhow::Result<reqwest::Client> {
    // Idempotent: the binary installs it in main; tests may not have.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(false)
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .user_agent(concat!("palisade-agent/", env!("CARGO_PKG_VERSION")));
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read ca_file {}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!("ca_file {} holds no valid PEM certificate", path.display())
            })?;
            // Only the configured CA: a collector's private CA should not be
            // mixed with every public one.
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        None => builder = builder.tls_built_in_native_certs(true),
    }
    builder.build().context("cannot build the HTTPS client")
}
