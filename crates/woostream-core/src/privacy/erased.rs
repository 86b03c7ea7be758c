//! The erased-subject list: who was erased and when, by pseudonymous subject reference (the
//! keyed hash of shop and customer key, never a name or an email), in a compacted topic of its
//! own that an erasure writes and every role that makes keys or CRM contacts reads.
//!
//! An erasure deletes a person's keys; without this list the next event about them — an old
//! order refunded, a reconciliation pass, a backfill started again — would make them a new key
//! and a new CRM contact. With it, an event about what happened before the erasure is dropped;
//! what happens after it (a new order by a returning guest) starts afresh.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rdkafka::message::{BorrowedMessage, Message};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::kafka::follow::Followed;

/// One erased person, as the list keeps them (keyed by subject reference).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErasedMark {
    pub erasure_id: String,
    pub erased_at: DateTime<Utc>,
}

/// When each subject (by reference) was erased.
pub type ErasedMap = HashMap<String, DateTime<Utc>>;

/// Folds one record of the list in (a tombstone lifts a mark: an operator's correction).
pub fn fold(map: &mut ErasedMap, key: Option<&[u8]>, value: Option<&[u8]>) {
    let Some(subject) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
        return;
    };
    match value.map(serde_json::from_slice::<ErasedMark>) {
        Some(Ok(mark)) => {
            let at = map.entry(subject.to_string()).or_insert(mark.erased_at);
            *at = (*at).max(mark.erased_at);
        }
        Some(Err(_)) => {}
        None => {
            map.remove(subject);
        }
    }
}

/// Whether an event about an erased person belongs to the past the erasure removed: every
/// account event (an erased account's id is never given again), and an order created before
/// the erasure (`about`; an order that does not say is taken as old).
pub fn is_erased_past(erased_at: Option<DateTime<Utc>>, about: Option<DateTime<Utc>>) -> bool {
    match erased_at {
        None => false,
        Some(at) => about.is_none_or(|t| t <= at),
    }
}

/// The list, followed.
#[derive(Clone)]
pub struct ErasedSubjects(Followed<ErasedMap>);

impl ErasedSubjects {
    /// Reads the list to its end and follows it (blocking).
    pub fn start(config: &Config, bootstrap: &str, purpose: &str) -> anyhow::Result<Self> {
        Followed::start(
            &config.kafka,
            bootstrap,
            &config.topics.erased_subjects.name,
            purpose,
            ErasedMap::new(),
            |map, m: &BorrowedMessage<'_>| fold(map, m.key(), m.payload()),
        )
        .map(ErasedSubjects)
    }

    /// Whether nobody was erased (then no subject reference needs computing).
    pub fn is_empty(&self) -> bool {
        self.0.read(ErasedMap::is_empty)
    }

    /// When `subject` (a reference) was erased, if it was.
    pub fn erased_at(&self, subject: &str) -> Option<DateTime<Utc>> {
        self.0.read(|m| m.get(subject).copied())
    }

    /// Notes an erasure this role carried out itself, before the list is read back.
    pub fn note(&self, subject: &str, at: DateTime<Utc>) {
        self.0.update(|m| {
            let e = m.entry(subject.to_string()).or_insert(at);
            *e = (*e).max(at);
        });
    }

    /// Catches up with erasures written elsewhere since (blocking).
    pub fn sync(&self) -> anyhow::Result<()> {
        self.0.sync()
    }

    pub fn stop(&self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erased_persons_past_is_dropped_and_a_new_order_after_it_is_not() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let before = at - chrono::Duration::days(30);
        let after = at + chrono::Duration::minutes(5);
        assert!(!is_erased_past(None, Some(before)), "never erased");
        assert!(
            is_erased_past(Some(at), Some(before)),
            "an old order refunded"
        );
        assert!(is_erased_past(Some(at), None), "an account event");
        assert!(
            !is_erased_past(Some(at), Some(after)),
            "a new order afterwards"
        );
    }

    #[test]
    fn the_list_keeps_the_latest_erasure_and_a_tombstone_lifts_it() {
        let mut map = ErasedMap::new();
        let mark = |at: &str| {
            serde_json::to_vec(&ErasedMark {
                erasure_id: "er-1".into(),
                erased_at: DateTime::parse_from_rfc3339(at)
                    .unwrap()
                    .with_timezone(&Utc),
            })
            .unwrap()
        };
        fold(&mut map, Some(b"ab"), Some(&mark("2026-03-02T00:00:00Z")));
        fold(&mut map, Some(b"ab"), Some(&mark("2026-03-01T00:00:00Z")));
        assert_eq!(map["ab"].to_rfc3339(), "2026-03-02T00:00:00+00:00");
        fold(&mut map, Some(b"ab"), Some(b"not json"));
        assert_eq!(map.len(), 1, "a damaged mark changes nothing");
        fold(&mut map, Some(b"ab"), None);
        assert!(map.is_empty());
    }
}
