//! The collector's CA pin: `sha256/<base64>`, the SHA-256 of a
//! certificate's SubjectPublicKeyInfo (the same thing HPKP and curl's
//! `--pinnedpubkey` hash).
//!
//! A silent installer cannot ship the collector's private CA file, but it
//! can carry one short string on its command line. The collector prints the
//! pin of the certificate it serves (`palisade-collector installers`); the
//! agent then trusts that certificate, and no other, as the anchor of the
//! collector's chain. Hashing the public key rather than the whole
//! certificate lets the collector renew the certificate with the same key.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, Encode as _};

const PREFIX: &str = "sha256/";

/// The SHA-256 of one certificate's SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaPin([u8; 32]);

/// Why a pin or a certificate was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PinError {
    #[error("a CA pin reads sha256/ followed by 44 base64 characters, e.g. sha256/{example}")]
    Malformed { example: &'static str },
    #[error("not a DER X.509 certificate: {0}")]
    Certificate(String),
}

const EXAMPLE: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

impl CaPin {
    /// The pin of a DER-encoded certificate.
    pub fn of_certificate(der: &[u8]) -> Result<Self, PinError> {
        let certificate =
            Certificate::from_der(der).map_err(|err| PinError::Certificate(err.to_string()))?;
        let spki = certificate
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|err| PinError::Certificate(err.to_string()))?;
        Ok(Self(Sha256::digest(&spki).into()))
    }

    /// Whether a DER certificate carries the pinned key; a certificate that
    /// does not parse never matches.
    pub fn matches(&self, certificate_der: &[u8]) -> bool {
        Self::of_certificate(certificate_der).is_ok_and(|pin| pin == *self)
    }
}

impl FromStr for CaPin {
    type Err = PinError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || PinError::Malformed { example: EXAMPLE };
        let encoded = text.trim().strip_prefix(PREFIX).ok_or_else(malformed)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| malformed())?;
        bytes.try_into().map(Self).map_err(|_| malformed())
    }
}

impl fmt::Display for CaPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD.encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed P-256 certificate for `localhost` (made with `openssl req
    /// -x509 -newkey ec`), and the pin
    /// of its key as `openssl x509 -pubkey | openssl pkey -pubin -outform der
    /// | openssl dgst -sha256 -binary | base64` printed it.
    const CERT_DER_B64: &str = include_str!("../tests/fixtures/pin/localhost-cert.der.b64");
    const OPENSSL_PIN: &str = include_str!("../tests/fixtures/pin/localhost-cert.pin");

    fn certificate() -> Vec<u8> {
        STANDARD
            .decode(CERT_DER_B64.split_whitespace().collect::<String>())
            .unwrap()
    }

    #[test]
    fn the_pin_of_a_certificate_is_what_openssl_computes() {
        let pin = CaPin::of_certificate(&certificate()).unwrap();
        assert_eq!(pin.to_string(), format!("sha256/{}", OPENSSL_PIN.trim()));
        assert!(pin.matches(&certificate()));
    }

    #[test]
    fn a_pin_reads_back_from_its_text() {
        let pin = CaPin::of_certificate(&certificate()).unwrap();
        assert_eq!(pin.to_string().parse::<CaPin>().unwrap(), pin);
    }

    #[test]
    fn another_key_does_not_match() {
        let other: CaPin = format!("sha256/{EXAMPLE}").parse().unwrap();
        assert!(!other.matches(&certificate()));
        assert!(!other.matches(b"not a certificate"));
    }

    #[test]
    fn malformed_pins_are_refused() {
        for text in [
            "",
            EXAMPLE,
            "sha1/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "sha256/not base64",
            "sha256/AAAA",
        ] {
            assert!(
                matches!(text.parse::<CaPin>(), Err(PinError::Malformed { .. })),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn a_broken_certificate_is_an_error() {
        let mut der = certificate();
        der.truncate(40);
        assert!(matches!(
            CaPin::of_certificate(&der),
            Err(PinError::Certificate(_))
        ));
    }
}
