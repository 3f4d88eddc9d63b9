//! Enrollment secrets and API tokens: how they look, how they are made, and
//! how a presented one is split for lookup.
//!
//! A secret reads `pls_<id>_<random>`: `id` (16 hex digits) finds the row
//! without revealing anything, and only the SHA-256 of `random` (32 random
//! bytes, base64url) is stored. The store compares hashes in constant time.
//! A plain hash (not argon2) is right here: the random part has 256 bits of
//! entropy, so there is nothing to brute-force; slow hashes are for
//! passwords people choose.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// A freshly made secret: the text to show once, and what to store.
#[derive(Debug)]
pub struct NewSecret {
    pub id: String,
    /// Shown to the operator once, never stored or logged.
    pub text: String,
    pub hash: [u8; 32],
}

/// A presented secret split into its lookup id and the hash of its random
/// part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedSecret {
    pub id: String,
    pub hash: [u8; 32],
}

/// Makes a new secret with the given prefix (`pls` for enrollment, `plt` for
/// API tokens).
pub fn generate(prefix: &str) -> NewSecret {
    let mut id_bytes = [0u8; 8];
    let mut random = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id_bytes);
    rand::rngs::OsRng.fill_bytes(&mut random);
    let id = hex::encode(id_bytes);
    let random_text = URL_SAFE_NO_PAD.encode(random);
    NewSecret {
        text: format!("{prefix}_{id}_{random_text}"),
        hash: hash_random_part(&random_text),
        id,
    }
}

/// Splits a presented secret; `None` when it does not have the shape (which
/// the caller treats exactly like a wrong secret).
pub fn parse(prefix: &str, text: &str) -> Option<PresentedSecret> {
    let rest = text.strip_prefix(prefix)?.strip_prefix('_')?;
    let (id, random_text) = rest.split_once('_')?;
    let id_ok = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !id_ok || random_text.is_empty() || random_text.len() > 64 {
        return None;
    }
    Some(PresentedSecret {
        id: id.to_ascii_lowercase(),
        hash: hash_random_part(random_text),
    })
}

fn hash_random_part(random_text: &str) -> [u8; 32] {
    Sha256::digest(random_text.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_parses_back_to_its_id_and_hash() {
        let secret = generate("pls");
        let presented = parse("pls", &secret.text).unwrap();
        assert_eq!(presented.id, secret.id);
        assert_eq!(presented.hash, secret.hash);
        assert_ne!(generate("pls").text, secret.text);
    }

    #[test]
    fn malformed_secrets_do_not_parse() {
        for text in [
            "",
            "pls",
            "pls_",
            "pls_abc_x",
            "plt_0123456789abcdef_x",
            "pls_0123456789abcdeg_x",
            "pls_0123456789abcdef_",
        ] {
            assert_eq!(parse("pls", text), None, "{text:?}");
        }
    }
}
