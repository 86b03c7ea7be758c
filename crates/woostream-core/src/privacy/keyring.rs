//! Per-person keys: one or more per person (each producer replica makes its own the first time
//! it meets someone), kept in a compacted topic with the key id as the record key and the
//! person's pseudonym, never their id or email, in the value. Erasing a person is writing a
//! tombstone for each of their key ids.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::ChaCha20Poly1305;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// One person's key: its id (32 hex characters: 128 random bits; 16 for keys made before
/// binding) and 32 bytes, held inline (a role holds every live key: a million customers are a
/// million of these).
#[derive(Clone)]
pub struct SubjectKey {
    id: Id,
    bytes: [u8; 32],
    /// Values sealed with it are bound to their key id and field (`ws2.`), and its record's
    /// wrapping to its id and person: what this role writes (`privacy.bind_sealed_values`).
    bind: bool,
}

/// A key id as its ASCII hex characters, 32 or 16 (then padded with zeros).
type Id = [u8; 32];

fn id_of(text: &str) -> Option<Id> {
    let bytes = text.as_bytes();
    (matches!(bytes.len(), 16 | 32) && bytes.iter().all(u8::is_ascii_hexdigit)).then(|| {
        let mut id = [0u8; 32];
        id[..bytes.len()].copy_from_slice(bytes);
        id
    })
}

fn id_text(id: &Id) -> &str {
    let len = id.iter().position(|b| *b == 0).unwrap_or(id.len());
    std::str::from_utf8(&id[..len]).expect("ASCII hex")
}

/// A person's pseudonym (32 hex characters) as 16 bytes; any other text hashed to 16 bytes.
fn subject_of(text: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    match hex::decode(text) {
        Ok(b) if b.len() == 16 => out.copy_from_slice(&b),
        _ => {
            use sha2::Digest;
            out.copy_from_slice(&sha2::Sha256::digest(text.as_bytes())[..16]);
        }
    }
    out
}

impl SubjectKey {
    /// A new key; `bind`: a 128-bit id and bound values, else what earlier releases made and
    /// read (64-bit id, `ws1.`), for a rolling upgrade whose readers are older.
    pub fn generate(bind: bool) -> SubjectKey {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let raw = if bind { &raw[..] } else { &raw[..8] };
        let id = id_of(&hex::encode(raw)).expect("hex characters");
        SubjectKey { id, bytes, bind }
    }

    pub fn id(&self) -> &str {
        id_text(&self.id)
    }

    /// Whether values sealed with it are bound to their key id and field.
    pub fn binds(&self) -> bool {
        self.bind
    }

    /// The cipher (ChaCha20's key set-up is a copy: made when needed rather than kept).
    pub(crate) fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new_from_slice(&self.bytes).expect("32 bytes")
    }

    /// The same cipher in ring, for sealing: the same ChaCha20-Poly1305 (RFC 8439), whose
    /// assembly seals the producer's many short values several times faster.
    pub(crate) fn sealing_key(&self) -> ring::aead::LessSafeKey {
        ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &self.bytes)
                .expect("32 bytes"),
        )
    }
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubjectKey({}, <redacted>)", self.id())
    }
}

/// The value of a key record (JSON: internal state, read only by woostream).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The person's pseudonym: see [`crate::privacy::CustomerHasher::subject_ref`].
    pub subject: String,
    /// The key, base64; sealed under `privacy.key_wrapping_key` when `wrapping` says so.
    pub key: String,
    pub wrapping: String,
    pub created_at: DateTime<Utc>,
}

/// What a wrapped key is bound to: its id and its person, so a wrapped key copied into
/// another person's record (or under another id) does not open.
fn wrapping_binding(id: &str, subject: &str) -> Vec<u8> {
    format!("{id}|{subject}").into_bytes()
}

impl KeyRecord {
    /// The record for a new key of `subject`, sealed under the wrapping key when there is one
    /// (bound to the key's id and person when the key binds).
    pub fn new(subject: &str, key: &SubjectKey, wrapping: Option<&ChaCha20Poly1305>) -> KeyRecord {
        let binding = key.bind.then(|| wrapping_binding(key.id(), subject));
        let (wrapping, sealed) =
            crate::privacy::cipher::seal_bound(wrapping, &key.bytes, binding.as_deref());
        KeyRecord {
            subject: subject.to_string(),
            key: STANDARD.encode(sealed),
            wrapping: wrapping.to_string(),
            created_at: Utc::now(),
        }
    }

    /// The key it holds, under id `id`; `bind` says how values are sealed with it.
    pub fn key(
        &self,
        id: &str,
        wrapping: Option<&ChaCha20Poly1305>,
        bind: bool,
    ) -> Result<SubjectKey, String> {
        let sealed = STANDARD
            .decode(&self.key)
            .map_err(|e| format!("key {id} is not base64: {e}"))?;
        let binding = wrapping_binding(id, &self.subject);
        let bytes = crate::privacy::cipher::open_bound(wrapping, &self.wrapping, &sealed, &binding)
            .map_err(|e| format!("key {id}: {e} (privacy.key_wrapping_key)"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("key {id} is not 32 bytes"))?;
        let id = id_of(id).ok_or_else(|| format!("key id {id} is not 16 or 32 hex characters"))?;
        Ok(SubjectKey { id, bytes, bind })
    }
}

/// Every key the key topic holds, by id, and (where a role seals or erases) by person.
#[derive(Default)]
pub struct Keyring {
    keys: HashMap<Id, Arc<SubjectKey>>,
    /// Ids whose tombstone was read: values sealed under them are erased, no need to look.
    deleted: HashSet<Id>,
    /// Key ids by person, oldest first; kept only when `by_subject` was asked for.
    by_subject: Option<HashMap<[u8; 16], Vec<Id>>>,
    /// Whether the keys it reads bind what is sealed with them.
    bind: bool,
}

impl Keyring {
    /// A keyring that also knows whose each key is (the producer, `woostream erase`).
    pub fn by_subject() -> Keyring {
        Keyring {
            by_subject: Some(HashMap::new()),
            ..Keyring::default()
        }
    }

    /// Keys read from the topic bind what is sealed with them (or not: a rolling upgrade).
    pub fn binding(mut self, bind: bool) -> Keyring {
        self.bind = bind;
        self
    }

    /// Applies one record of the key topic; an unreadable one is reported and left out.
    pub fn apply(
        &mut self,
        id: &str,
        value: Option<&[u8]>,
        wrapping: Option<&ChaCha20Poly1305>,
    ) -> Result<(), String> {
        let Some(value) = value else {
            let Some(id) = id_of(id) else { return Ok(()) };
            self.keys.remove(&id);
            self.deleted.insert(id);
            if let Some(by) = &mut self.by_subject {
                by.retain(|_, ids| {
                    ids.retain(|i| *i != id);
                    !ids.is_empty()
                });
            }
            return Ok(());
        };
        let record: KeyRecord = serde_json::from_slice(value)
            .map_err(|e| format!("key record {id} is not JSON: {e}"))?;
        self.insert(
            &record.subject,
            Arc::new(record.key(id, wrapping, self.bind)?),
        );
        Ok(())
    }

    /// Adds a key (read from the topic, or just made).
    pub fn insert(&mut self, subject: &str, key: Arc<SubjectKey>) {
        let id = key.id;
        self.deleted.remove(&id);
        if let Some(by) = &mut self.by_subject {
            let ids = by.entry(subject_of(subject)).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        self.keys.insert(id, key);
    }

    pub fn get(&self, id: &str) -> Option<Arc<SubjectKey>> {
        self.keys.get(&id_of(id)?).cloned()
    }

    pub fn is_deleted(&self, id: &str) -> bool {
        id_of(id).is_some_and(|id| self.deleted.contains(&id))
    }

    /// The key new values of `subject` are sealed with: its newest.
    pub fn current(&self, subject: &str) -> Option<Arc<SubjectKey>> {
        let ids = self.by_subject.as_ref()?.get(&subject_of(subject))?;
        ids.iter().rev().find_map(|id| self.keys.get(id).cloned())
    }

    /// Every key id of `subject`.
    pub fn ids_of(&self, subject: &str) -> Vec<String> {
        self.by_subject
            .as_ref()
            .and_then(|b| b.get(&subject_of(subject)))
            .map(|ids| ids.iter().map(|i| id_text(i).to_string()).collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_records_wrapped_or_not() {
        let wrapping = crate::privacy::cipher::cipher(&STANDARD.encode([7u8; 32]));
        for w in [None, Some(&wrapping)] {
            let key = SubjectKey::generate(true);
            let record = KeyRecord::new("s1", &key, w);
            assert_eq!(record.wrapping == "none", w.is_none());
            let back = record.key(key.id(), w, true).unwrap();
            let sealed = super::super::seal::seal(&key, "f", "x");
            assert_eq!(
                super::super::seal::open(&sealed, "f", Some(&back))
                    .unwrap()
                    .text(),
                Some("x".into())
            );
        }
        // A wrapped key read without the wrapping key says which setting is missing.
        let record = KeyRecord::new("s1", &SubjectKey::generate(true), Some(&wrapping));
        let e = record.key("k", None, true).unwrap_err();
        assert!(e.contains("privacy.key_wrapping_key"), "{e}");
    }

    #[test]
    fn a_wrapped_key_opens_only_under_its_id_and_for_its_person() {
        let wrapping = crate::privacy::cipher::cipher(&STANDARD.encode([7u8; 32]));
        let key = SubjectKey::generate(true);
        let record = KeyRecord::new("s1", &key, Some(&wrapping));
        assert_eq!(
            record.wrapping,
            crate::privacy::cipher::CHACHA20POLY1305_BOUND
        );
        assert!(record.key(key.id(), Some(&wrapping), true).is_ok());
        // Copied into another person's record, or filed under another key id: refused.
        let moved = KeyRecord {
            subject: "s2".into(),
            ..record.clone()
        };
        assert!(moved.key(key.id(), Some(&wrapping), true).is_err());
        let other_id = SubjectKey::generate(true);
        assert!(record.key(other_id.id(), Some(&wrapping), true).is_err());
        // A key an earlier release wrapped (no binding) still opens.
        let old = SubjectKey::generate(false);
        let record = KeyRecord::new("s1", &old, Some(&wrapping));
        assert_eq!(record.wrapping, crate::privacy::cipher::CHACHA20POLY1305);
        assert_eq!(
            record.key(old.id(), Some(&wrapping), true).unwrap().id(),
            old.id()
        );
    }

    #[test]
    fn a_tombstone_deletes_a_key_and_forgets_whose_it_was() {
        let mut ring = Keyring::by_subject();
        let (a, b) = (SubjectKey::generate(true), SubjectKey::generate(false));
        for k in [&a, &b] {
            let v = serde_json::to_vec(&KeyRecord::new("s1", k, None)).unwrap();
            ring.apply(k.id(), Some(&v), None).unwrap();
        }
        assert_eq!(
            ring.ids_of("s1"),
            vec![a.id().to_string(), b.id().to_string()]
        );
        assert_eq!(ring.current("s1").unwrap().id(), b.id());
        ring.apply(b.id(), None, None).unwrap();
        assert!(ring.get(b.id()).is_none() && ring.is_deleted(b.id()));
        assert_eq!(ring.current("s1").unwrap().id(), a.id());
        ring.apply(a.id(), None, None).unwrap();
        assert!(ring.current("s1").is_none() && ring.ids_of("s1").is_empty());
        assert!(ring.is_empty());
    }
}
