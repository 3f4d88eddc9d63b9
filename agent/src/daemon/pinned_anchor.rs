//! TLS trust from a CA pin: the certificate in the collector's chain whose
//! SubjectPublicKeyInfo hashes to the pin becomes the only trust anchor, and
//! the chain is then verified against it as webpki verifies any chain
//! (signatures, validity dates, the collector's host name). The pin chooses
//! the anchor; it never skips the verification.
//!
//! A chain with no certificate carrying the pinned key is refused with a
//! message naming the pin, so a wrong pin on an installer's command line is
//! found in the agent's log, not guessed at.

use std::fmt;
use std::sync::Arc;

use anyhow::Context as _;
use palisade_shared::pin::CaPin;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// A rustls client configuration that trusts what `pin` names.
pub fn client_config(
    pin: CaPin,
    provider: Arc<CryptoProvider>,
) -> anyhow::Result<rustls::ClientConfig> {
    let verifier = PinnedAnchor {
        pin,
        provider: provider.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider offers no safe protocol version")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // What reqwest offers when it builds the configuration itself.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[derive(Debug)]
struct PinnedAnchor {
    pin: CaPin,
    provider: Arc<CryptoProvider>,
}

#[derive(thiserror::Error)]
#[error("no certificate the collector sent has the key of ca_pin {0}")]
struct NoPinnedKey(CaPin);

/// rustls prints a custom certificate error with `{:?}`; this makes that
/// the sentence, with the pin in its text form.
impl fmt::Debug for NoPinnedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl ServerCertVerifier for PinnedAnchor {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let anchor = std::iter::once(end_entity)
            .chain(intermediates)
            .find(|certificate| self.pin.matches(certificate))
            .ok_or_else(|| {
                rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                    Arc::new(NoPinnedKey(self.pin)),
                )))
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|err| rustls::Error::General(err.to_string()))?;
        webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
