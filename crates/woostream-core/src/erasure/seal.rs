//! One personal text value sealed under a person's key: `ws1.<key id>.<base64url(nonce ‖
//! ciphertext)>`, ChaCha20-Poly1305. The key id travels with the value, so any role that
//! holds the key topic can open it, and none can once the key is deleted. Text that does not
//! start with the prefix is what woostream wrote before sealing existed, read as it is.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::Aead;

use super::keyring::SubjectKey;

const PREFIX: &str = "ws1.";

/// What a stored value turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// Written before sealing existed (or by a role with sealing off): readable as it is.
    Clear(String),
    /// Sealed, and its key opened it.
    Opened(String),
    /// Sealed under a key that is deleted: the person was erased.
    Erased,
}

impl Opened {
    /// The readable text, if any.
    pub fn text(self) -> Option<String> {
        match self {
            Opened::Clear(t) | Opened::Opened(t) => Some(t),
            Opened::Erased => None,
        }
    }
}

/// `text` sealed under `key`.
pub fn seal(key: &SubjectKey, text: &str) -> String {
    // A random nonce per value from the thread's CSPRNG (ChaCha, seeded from the OS): one
    // system call per value would cost more than the sealing itself.
    let mut nonce = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
    // nonce ‖ ciphertext ‖ tag, as `open` reads it (with RustCrypto's implementation).
    let mut bytes = Vec::with_capacity(nonce.len() + text.len() + 16);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(text.as_bytes());
    let tag = key
        .sealing_key()
        .seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::empty(),
            &mut bytes[nonce.len()..],
        )
        .expect("sealing a byte slice");
    bytes.extend_from_slice(tag.as_ref());
    format!("{PREFIX}{}.{}", key.id(), URL_SAFE_NO_PAD.encode(bytes))
}

/// The `encryption` name of bytes sealed with [`seal_bytes`] (dead-letter bodies).
pub const SUBJECT_KEY: &str = "subject-key";

/// Bytes (a raw body, which may not even be UTF-8) sealed under `key`, as the text of
/// [`seal`] over their base64.
pub fn seal_bytes(key: &SubjectKey, bytes: &[u8]) -> Vec<u8> {
    seal(key, &URL_SAFE_NO_PAD.encode(bytes)).into_bytes()
}

/// Opens what [`seal_bytes`] wrote; `Ok(None)` when its key is deleted.
pub fn open_bytes(sealed: &[u8], key: Option<&SubjectKey>) -> Result<Option<Vec<u8>>, String> {
    let text = std::str::from_utf8(sealed).map_err(|_| "sealed bytes are not text")?;
    match open(text, key)? {
        Opened::Erased => Ok(None),
        Opened::Clear(_) => Err("the bytes are not sealed".into()),
        Opened::Opened(b64) => URL_SAFE_NO_PAD
            .decode(b64)
            .map(Some)
            .map_err(|e| format!("sealed bytes are not base64: {e}")),
    }
}

/// The id of the key a value is sealed under, if it is sealed.
pub fn key_id_of(value: &str) -> Option<&str> {
    let rest = value.strip_prefix(PREFIX)?;
    let (id, _) = rest.split_once('.')?;
    Some(id)
}

/// Whether a value is sealed.
pub fn is_sealed(value: &str) -> bool {
    key_id_of(value).is_some()
}

/// Opens a value with the key it names (`None`: that key is deleted). A value whose key is
/// present but does not open it was damaged or forged; that is an error, not an erasure.
pub fn open(value: &str, key: Option<&SubjectKey>) -> Result<Opened, String> {
    let Some(id) = key_id_of(value) else {
        return Ok(Opened::Clear(value.to_string()));
    };
    let Some(key) = key else {
        return Ok(Opened::Erased);
    };
    if key.id() != id {
        return Err(format!("sealed under key {id}, opened with {}", key.id()));
    }
    let encoded = &value[PREFIX.len() + id.len() + 1..];
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|e| format!("sealed value is not base64: {e}"))?;
    if bytes.len() < 12 {
        return Err("sealed value too short".into());
    }
    let (nonce, sealed) = bytes.split_at(12);
    let plain = key
        .cipher()
        .decrypt(nonce.into(), sealed)
        .map_err(|_| format!("key {id} does not open the value (damaged)"))?;
    String::from_utf8(plain)
        .map(Opened::Opened)
        .map_err(|_| "sealed value is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_only_and_names_it() {
        let key = SubjectKey::generate();
        let other = SubjectKey::generate();
        let sealed = seal(&key, "Jan Kowalski");
        assert!(!sealed.contains("Jan"));
        assert_eq!(key_id_of(&sealed), Some(key.id()));
        assert_eq!(
            open(&sealed, Some(&key)),
            Ok(Opened::Opened("Jan Kowalski".into()))
        );
        assert!(open(&sealed, Some(&other)).is_err());
        assert_eq!(open(&sealed, None), Ok(Opened::Erased));
        // Two seals of one value differ (a fresh nonce each): equal values are not linkable.
        assert_ne!(seal(&key, "Jan Kowalski"), sealed);
    }

    /// Sealing runs on ring, opening on RustCrypto: for the same nonce both write the same bytes.
    #[test]
    fn sealing_writes_what_the_other_implementation_writes() {
        let key = SubjectKey::generate();
        for text in ["", "a", "Jan Kowalski", &"ż".repeat(300)] {
            let sealed = seal(&key, text);
            let b64 = sealed.rsplit('.').next().unwrap();
            let bytes = URL_SAFE_NO_PAD.decode(b64).unwrap();
            let (nonce, written) = bytes.split_at(12);
            let expected = key.cipher().encrypt(nonce.into(), text.as_bytes()).unwrap();
            assert_eq!(written, expected.as_slice(), "{text:?}");
        }
    }

    #[test]
    fn bytes_seal_and_open_even_when_not_utf8() {
        let key = SubjectKey::generate();
        let body = [0xff, 0x00, b'a'];
        let sealed = seal_bytes(&key, &body);
        assert_eq!(open_bytes(&sealed, Some(&key)), Ok(Some(body.to_vec())));
        assert_eq!(open_bytes(&sealed, None), Ok(None));
    }

    #[test]
    fn clear_values_pass_and_damage_is_an_error() {
        assert_eq!(open("Ola", None), Ok(Opened::Clear("Ola".into())));
        let key = SubjectKey::generate();
        // One character of the ciphertext changed (not the last: its low bits may be padding).
        let sealed = seal(&key, "ola@example.com");
        let at = sealed.len() - 8;
        let flipped = if &sealed[at..=at] == "A" { "B" } else { "A" };
        let damaged = format!("{}{flipped}{}", &sealed[..at], &sealed[at + 1..]);
        assert!(open(&damaged, Some(&key)).is_err());
    }
}
