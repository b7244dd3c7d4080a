//! Random secrets: API keys (shown once, stored as SHA-256) and signing keys.
//! A SHA-256 of a 256-bit random key is as good as a slow hash: there is nothing to guess.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use sha2::{Digest, Sha256};

/// Every API key starts with this, so leaked keys are easy to spot in logs and scanners.
pub const KEY_PREFIX: &str = "duet_";
/// Characters of a key kept in the clear to tell keys apart in lists.
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 6;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes
}

/// A new API key: `duet_` and 43 URL-safe characters (256 random bits).
pub fn new_api_key() -> String {
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// The part of a key that may be shown after creation.
pub fn shown_prefix(key: &str) -> String {
    key.chars().take(SHOWN_CHARS).collect()
}

/// How a key is stored and looked up.
pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hash_to_hex() {
        let (a, b) = (new_api_key(), new_api_key());
        assert_ne!(a, b);
        assert!(a.starts_with("duet_") && a.len() == 5 + 43, "{a}");
        assert_eq!(shown_prefix(&a), a[..11]);
        assert_eq!(key_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
