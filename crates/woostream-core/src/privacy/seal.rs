//! One personal text value sealed under a person's key, ChaCha20-Poly1305:
//! `ws2.<key id>.<field>.<base64url(nonce ‖ ciphertext)>`, bound to the key id and the field it
//! was sealed for (a value copied into another field, or given another key id, does not
//! open), or `ws1.<key id>.<…>` unbound, as earlier releases wrote and still may during a
//! rolling upgrade (`privacy.bind_sealed_values = false`). The key id travels with the value,
//! so any role that holds the key topic can open it, and none can once the key is deleted.
//! Text that starts with neither prefix is what woostream wrote before sealing existed, read
//! as it is.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};

use super::keyring::SubjectKey;

const UNBOUND: &str = "ws1.";
const BOUND: &str = "ws2.";

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

/// The associated data of a bound value: its key id and field.
fn binding(id: &str, field: &str) -> Vec<u8> {
    format!("{id}|{field}").into_bytes()
}

/// `text` sealed under `key` for `field` (a name without dots, the same wherever the value is
/// read: see [`super::personal`]).
pub fn seal(key: &SubjectKey, field: &str, text: &str) -> String {
    debug_assert!(!field.contains('.') && !field.is_empty(), "field {field}");
    // A random nonce per value from the thread's CSPRNG (ChaCha, seeded from the OS): one
    // system call per value would cost more than the sealing itself.
    let mut nonce = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
    // nonce ‖ ciphertext ‖ tag, as `open` reads it (with RustCrypto's implementation).
    let mut bytes = Vec::with_capacity(nonce.len() + text.len() + 16);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(text.as_bytes());
    let aad = if key.binds() {
        binding(key.id(), field)
    } else {
        Vec::new()
    };
    let tag = key
        .sealing_key()
        .seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(&aad),
            &mut bytes[nonce.len()..],
        )
        .expect("sealing a byte slice");
    bytes.extend_from_slice(tag.as_ref());
    let encoded = URL_SAFE_NO_PAD.encode(bytes);
    if key.binds() {
        format!("{BOUND}{}.{field}.{encoded}", key.id())
    } else {
        format!("{UNBOUND}{}.{encoded}", key.id())
    }
}

/// The `encryption` name of bytes sealed with [`seal_bytes`] (dead-letter bodies).
pub const SUBJECT_KEY: &str = "subject-key";

/// The field a sealed body is bound to.
pub const BODY: &str = "body";

/// Bytes (a raw body, which may not even be UTF-8) sealed under `key`, as the text of
/// [`seal`] over their base64.
pub fn seal_bytes(key: &SubjectKey, bytes: &[u8]) -> Vec<u8> {
    seal(key, BODY, &URL_SAFE_NO_PAD.encode(bytes)).into_bytes()
}

/// Opens what [`seal_bytes`] wrote; `Ok(None)` when its key is deleted.
pub fn open_bytes(sealed: &[u8], key: Option<&SubjectKey>) -> Result<Option<Vec<u8>>, String> {
    let text = std::str::from_utf8(sealed).map_err(|_| "sealed bytes are not text")?;
    match open(text, BODY, key)? {
        Opened::Erased => Ok(None),
        Opened::Clear(_) => Err("the bytes are not sealed".into()),
        Opened::Opened(b64) => URL_SAFE_NO_PAD
            .decode(b64)
            .map(Some)
            .map_err(|e| format!("sealed bytes are not base64: {e}")),
    }
}

/// A sealed value's parts: key id, the field it is bound to (none for `ws1.`), the base64.
fn parts(value: &str) -> Option<(&str, Option<&str>, &str)> {
    if let Some(rest) = value.strip_prefix(BOUND) {
        let (id, rest) = rest.split_once('.')?;
        let (field, encoded) = rest.split_once('.')?;
        return Some((id, Some(field), encoded));
    }
    let (id, encoded) = value.strip_prefix(UNBOUND)?.split_once('.')?;
    Some((id, None, encoded))
}

/// The id of the key a value is sealed under, if it is sealed.
pub fn key_id_of(value: &str) -> Option<&str> {
    parts(value).map(|(id, _, _)| id)
}

/// Whether a value is sealed.
pub fn is_sealed(value: &str) -> bool {
    parts(value).is_some()
}

/// Opens a value read as `field` with the key it names (`None`: that key is deleted). A value
/// whose key is present but does not open it was damaged, forged or moved from the field it
/// was sealed for; that is an error, not an erasure.
pub fn open(value: &str, field: &str, key: Option<&SubjectKey>) -> Result<Opened, String> {
    let Some((id, bound_to, encoded)) = parts(value) else {
        return Ok(Opened::Clear(value.to_string()));
    };
    let Some(key) = key else {
        return Ok(Opened::Erased);
    };
    if key.id() != id {
        return Err(format!("sealed under key {id}, opened with {}", key.id()));
    }
    if let Some(sealed_for) = bound_to.filter(|f| *f != field) {
        return Err(format!("sealed for field {sealed_for}, read as {field}"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|e| format!("sealed value is not base64: {e}"))?;
    if bytes.len() < 12 {
        return Err("sealed value too short".into());
    }
    let (nonce, msg) = bytes.split_at(12);
    let aad = bound_to.map_or_else(Vec::new, |f| binding(id, f));
    let plain = key
        .cipher()
        .decrypt(nonce.into(), Payload { msg, aad: &aad })
        .map_err(|_| format!("key {id} does not open the value (damaged or moved)"))?;
    String::from_utf8(plain)
        .map(Opened::Opened)
        .map_err(|_| "sealed value is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_only_and_names_it() {
        let key = SubjectKey::generate(true);
        let other = SubjectKey::generate(true);
        let sealed = seal(&key, "name", "Jan Kowalski");
        assert!(!sealed.contains("Jan"));
        assert_eq!(key_id_of(&sealed), Some(key.id()));
        assert_eq!(
            open(&sealed, "name", Some(&key)),
            Ok(Opened::Opened("Jan Kowalski".into()))
        );
        assert!(open(&sealed, "name", Some(&other)).is_err());
        assert_eq!(open(&sealed, "name", None), Ok(Opened::Erased));
        // Two seals of one value differ (a fresh nonce each): equal values are not linkable.
        assert_ne!(seal(&key, "name", "Jan Kowalski"), sealed);
    }

    /// Sealing runs on ring, opening on RustCrypto: for the same nonce both write the same bytes.
    #[test]
    fn sealing_writes_what_the_other_implementation_writes() {
        let key = SubjectKey::generate(true);
        for text in ["", "a", "Jan Kowalski", &"ż".repeat(300)] {
            let sealed = seal(&key, "name", text);
            let b64 = sealed.rsplit('.').next().unwrap();
            let bytes = URL_SAFE_NO_PAD.decode(b64).unwrap();
            let (nonce, written) = bytes.split_at(12);
            let aad = binding(key.id(), "name");
            let expected = key
                .cipher()
                .encrypt(
                    nonce.into(),
                    Payload {
                        msg: text.as_bytes(),
                        aad: &aad,
                    },
                )
                .unwrap();
            assert_eq!(written, expected.as_slice(), "{text:?}");
        }
    }

    #[test]
    fn bytes_seal_and_open_even_when_not_utf8() {
        let key = SubjectKey::generate(true);
        let body = [0xff, 0x00, b'a'];
        let sealed = seal_bytes(&key, &body);
        assert_eq!(open_bytes(&sealed, Some(&key)), Ok(Some(body.to_vec())));
        assert_eq!(open_bytes(&sealed, None), Ok(None));
    }

    #[test]
    fn clear_values_pass_and_damage_is_an_error() {
        assert_eq!(open("Ola", "name", None), Ok(Opened::Clear("Ola".into())));
        let key = SubjectKey::generate(true);
        // One character of the ciphertext changed (not the last: its low bits may be padding).
        let sealed = seal(&key, "email", "ola@example.com");
        let at = sealed.len() - 8;
        let flipped = if &sealed[at..=at] == "A" { "B" } else { "A" };
        let damaged = format!("{}{flipped}{}", &sealed[..at], &sealed[at + 1..]);
        assert!(open(&damaged, "email", Some(&key)).is_err());
    }

    #[test]
    fn a_bound_value_opens_only_as_its_field_and_under_its_key_id() {
        let key = SubjectKey::generate(true);
        assert_eq!(key.id().len(), 32, "128-bit key ids");
        let email = seal(&key, "email", "ola@example.com");
        assert!(
            email.starts_with(&format!("ws2.{}.email.", key.id())),
            "{email}"
        );
        // Copied into another field: refused, whether the field it names is kept or changed.
        assert!(open(&email, "first_name", Some(&key)).is_err());
        let relabelled = email.replacen(".email.", ".first_name.", 1);
        assert!(open(&relabelled, "first_name", Some(&key)).is_err());
        assert_eq!(
            open(&email, "email", Some(&key)),
            Ok(Opened::Opened("ola@example.com".into()))
        );
    }

    #[test]
    fn unbound_values_of_earlier_releases_still_open() {
        // What a key of an earlier release (64-bit id, no binding) sealed, as it wrote it.
        let old = SubjectKey::generate(false);
        assert_eq!(old.id().len(), 16);
        let sealed = seal(&old, "email", "ola@example.com");
        assert!(
            sealed.starts_with(&format!("ws1.{}.", old.id())),
            "{sealed}"
        );
        let nonce_and_sealed = URL_SAFE_NO_PAD
            .decode(sealed.rsplit('.').next().unwrap())
            .unwrap();
        let (nonce, msg) = nonce_and_sealed.split_at(12);
        let plain = old.cipher().decrypt(nonce.into(), msg).unwrap();
        assert_eq!(plain, b"ola@example.com", "no associated data");
        assert_eq!(
            open(&sealed, "any field", Some(&old)),
            Ok(Opened::Opened("ola@example.com".into()))
        );
    }
}
