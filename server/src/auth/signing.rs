//! The server's signing key and signed tokens (share links). HMAC-SHA256 over the payload;
//! tokens are `payload.signature`, both URL-safe.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

impl SigningKey {
    /// From `SECRET_KEY` (any text, hashed to 32 bytes) when set, else the key file in the data
    /// folder, made on first start (readable by its owner only). Several servers sharing links
    /// need the same key: the same data folder, or the same `SECRET_KEY`.
    pub fn load(secret: Option<&str>, file: &Path) -> Result<SigningKey, String> {
        if let Some(secret) = secret {
            return Ok(SigningKey(Sha256::digest(secret.as_bytes()).into()));
        }
        let err = |what: &str, e: std::io::Error| format!("{what} the signing key {}: {e}", file.display());
        match std::fs::read_to_string(file) {
            Ok(text) => {
                let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|e| format!("{}: {e}", file.display()))?;
                let key: [u8; 32] = bytes.try_into().map_err(|_| format!("{}: not a 32-byte key", file.display()))?;
                Ok(SigningKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = super::keys::random_bytes::<32>();
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| err("could not create the folder of", e))?;
                }
                write_private(file, &URL_SAFE_NO_PAD.encode(key)).map_err(|e| err("could not write", e))?;
                tracing::info!(file = %file.display(), "made a new signing key for share links");
                Ok(SigningKey(key))
            }
            Err(e) => Err(err("could not read", e)),
        }
    }

    #[cfg(test)]
    pub fn fixed(byte: u8) -> SigningKey {
        SigningKey([byte; 32])
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// `payload.signature`; the payload must not contain `.`.
    pub fn sign(&self, payload: &str) -> String {
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// The payload of a token this key signed (compared in constant time); `None` otherwise.
    pub fn verify<'t>(&self, token: &'t str) -> Option<&'t str> {
        let (payload, signature) = token.rsplit_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).ok()?;
        Some(payload)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_unchanged_and_under_their_key() {
        let key = SigningKey::fixed(7);
        let token = key.sign("share-1~1700000000000");
        assert_eq!(key.verify(&token), Some("share-1~1700000000000"));
        assert_eq!(SigningKey::fixed(8).verify(&token), None);
        let forged = token.replace("share-1", "share-2");
        assert_eq!(key.verify(&forged), None);
        assert_eq!(key.verify("no-signature"), None);
        assert_eq!(key.verify("x.!!!"), None);
    }

    #[test]
    fn the_key_file_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/secret.key");
        let a = SigningKey::load(None, &file).unwrap();
        let b = SigningKey::load(None, &file).unwrap();
        assert_eq!(a.0, b.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let c = SigningKey::load(Some("from the environment"), &file).unwrap();
        assert_ne!(a.0, c.0);
    }
}
