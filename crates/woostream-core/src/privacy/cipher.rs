//! Sealing personal data kept in dead-letter topics (the producer's raw bodies, the CRM sink's
//! original changes) with ChaCha20-Poly1305 under a configured key: the nonce, then the
//! ciphertext. The record says which it is (`none` or `chacha20poly1305`).

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::ChaCha20Poly1305;

pub const NONE: &str = "none";
pub const CHACHA20POLY1305: &str = "chacha20poly1305";
/// Sealed with associated data the reader supplies again (what the bytes belong to).
pub const CHACHA20POLY1305_BOUND: &str = "chacha20poly1305-bound";

/// What a key setting must hold, for configuration errors.
pub const KEY_EXPECTED: &str =
    "expected 32 random bytes in base64 (e.g. `openssl rand -base64 32`)";

fn key_bytes(base64_key: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(base64_key)
        .ok()
        .filter(|k| k.len() == 32)
}

/// Whether a configured key is 32 bytes of base64.
pub fn key_is_valid(base64_key: &str) -> bool {
    key_bytes(base64_key).is_some()
}

/// Checks a configured dead-letter key: readable where it is written in the file, 32 bytes of
/// base64 wherever it can be read (a key in a variable or a file another role's pod holds is
/// checked by that role, whose `check_secrets` requires it readable).
pub fn check_key(key: &Option<crate::secret::Secret>) -> Result<(), String> {
    let Some(key) = key else { return Ok(()) };
    match key.resolve() {
        Ok(k) if !key_is_valid(&k) => Err(KEY_EXPECTED.into()),
        Ok(_) => Ok(()),
        Err(e) if matches!(key, crate::secret::Secret::Inline(_)) => Err(e),
        Err(_) => Ok(()),
    }
}

/// The cipher of a key the configuration has validated.
pub fn cipher(base64_key: &str) -> ChaCha20Poly1305 {
    let key = key_bytes(base64_key).expect("validated at start-up: 32 bytes of base64");
    ChaCha20Poly1305::new_from_slice(&key).expect("32 bytes")
}

/// `bytes` sealed under `cipher` (or as they are without one), with the encryption's name.
pub fn seal(cipher: Option<&ChaCha20Poly1305>, bytes: &[u8]) -> (&'static str, Vec<u8>) {
    seal_bound(cipher, bytes, None)
}

/// [`seal`], bound to `binding` when given: the bytes open only where the reader names the
/// same binding (e.g. a wrapped key's id and person).
pub fn seal_bound(
    cipher: Option<&ChaCha20Poly1305>,
    bytes: &[u8],
    binding: Option<&[u8]>,
) -> (&'static str, Vec<u8>) {
    use chacha20poly1305::aead::Payload;
    match cipher {
        Some(c) => {
            let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
            let mut sealed = nonce.to_vec();
            let aad = binding.unwrap_or_default();
            let payload = Payload { msg: bytes, aad };
            sealed.extend(c.encrypt(&nonce, payload).expect("sealing a byte slice"));
            let name = if binding.is_some() {
                CHACHA20POLY1305_BOUND
            } else {
                CHACHA20POLY1305
            };
            (name, sealed)
        }
        None => (NONE, bytes.to_vec()),
    }
}

/// Opens what [`seal`] wrote; the error says what is missing or wrong.
pub fn open(
    cipher: Option<&ChaCha20Poly1305>,
    encryption: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    open_bound(cipher, encryption, bytes, &[])
}

/// Opens what [`seal_bound`] wrote, with the binding the reader expects (used only when the
/// bytes were sealed bound).
pub fn open_bound(
    cipher: Option<&ChaCha20Poly1305>,
    encryption: &str,
    bytes: &[u8],
    binding: &[u8],
) -> Result<Vec<u8>, String> {
    use chacha20poly1305::aead::Payload;
    let aad = match encryption {
        NONE => return Ok(bytes.to_vec()),
        CHACHA20POLY1305 => &[][..],
        CHACHA20POLY1305_BOUND => binding,
        other => return Err(format!("unknown encryption {other}")),
    };
    let cipher = cipher.ok_or("sealed, and no key is configured")?;
    if bytes.len() < 12 {
        return Err("sealed bytes too short".into());
    }
    let (nonce, msg) = bytes.split_at(12);
    cipher
        .decrypt(nonce.into(), Payload { msg, aad })
        .map_err(|_| {
            "the configured key does not open it (or it was moved from where it was sealed)".into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_with_their_key() {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(key_is_valid(&key) && !key_is_valid("c2hvcnQ="));
        let c = cipher(&key);
        let (enc, sealed) = seal(Some(&c), b"jan@example.com");
        assert_eq!(enc, CHACHA20POLY1305);
        assert!(!sealed.windows(3).any(|w| w == b"jan"));
        assert_eq!(open(Some(&c), enc, &sealed).unwrap(), b"jan@example.com");
        assert!(open(None, enc, &sealed).is_err());
        let other = cipher(&base64::engine::general_purpose::STANDARD.encode([8u8; 32]));
        assert!(open(Some(&other), enc, &sealed).is_err());
        assert_eq!(seal(None, b"x"), (NONE, b"x".to_vec()));
    }
}
