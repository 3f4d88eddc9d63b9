//! The one HTTPS client the agent talks to the collector with: rustls on the
//! ring provider (no OpenSSL), connect and request timeouts, and plain HTTP
//! only to a loopback collector (the URL type refuses anything else).
//!
//! What it trusts as the collector's certificate, first match wins: the
//! config's `ca_pin`, the config's `ca_file`, the pin a Windows installer
//! left in the registry, the system's roots.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use palisade_shared::pin::CaPin;

use super::{installer, pinned_anchor};
use crate::config::AgentConfig;

/// Where the client finds the collector's trust anchor.
#[derive(Debug, Clone, Copy)]
pub enum CollectorTrust<'a> {
    /// The certificate in the collector's chain whose key has this pin.
    Pin(CaPin),
    /// The CA certificates in this PEM file, and no others.
    CaFile(&'a Path),
    /// The operating system's trusted roots.
    SystemRoots,
}

/// Builds the client from the configuration.
pub fn client(config: &AgentConfig) -> anyhow::Result<reqwest::Client> {
    let trust = match (config.ca_pin, config.ca_file.as_deref()) {
        (Some(pin), _) => CollectorTrust::Pin(pin),
        (None, Some(file)) => CollectorTrust::CaFile(file),
        (None, None) => match installer::native_ca_pin()? {
            Some(pin) => CollectorTrust::Pin(pin),
            None => CollectorTrust::SystemRoots,
        },
    };
    client_with(trust, config.connect_timeout(), config.request_timeout())
}

pub fn client_with(
    trust: CollectorTrust<'_>,
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
    match trust {
        CollectorTrust::Pin(pin) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = pinned_anchor::client_config(pin, provider)?;
            builder = builder.use_preconfigured_tls(tls);
        }
        CollectorTrust::CaFile(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read ca_file {}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certificates| !certificates.is_empty())
                .with_context(|| format!("ca_file {} holds no PEM certificate", path.display()))?;
            // Only the configured CA: a collector's private CA should not be
            // mixed with every public one.
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        CollectorTrust::SystemRoots => builder = builder.tls_built_in_native_certs(true),
    }
    builder.build().context("cannot build the HTTPS client")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion
    use super::*;

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(1);
        for (name, text) in [
            ("empty.pem", ""),
            (
                "key-only.pem",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
            ("prose.pem", "not a certificate at all\n"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = client_with(CollectorTrust::CaFile(&path), timeout, timeout).unwrap_err();
            assert_eq!(
                format!("{err:#}"),
                format!("ca_file {} holds no PEM certificate", path.display()),
                "{name}"
            );
        }
    }
}
