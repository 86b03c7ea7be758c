//! Sealing personal fields before they reach Kafka: each event's personal fields are sealed
//! under its person's key (see `woostream_core::privacy`); a person met for the first time
//! gets a new key, made durable in the key topic before anything sealed with it is written.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chacha20poly1305::ChaCha20Poly1305;
use woostream_core::config::Config;
use woostream_core::contract::events::Action;
use woostream_core::contract::events::CustomerKey;
use woostream_core::kafka::RenewingProducer;
use woostream_core::privacy::erase::{self, ErasureCodecs, Request};
use woostream_core::privacy::erased::{self, ErasedSubjects};
use woostream_core::privacy::personal::{
    customer_fields, fields, order_fields, seal_fields, subject_of_body,
};
use woostream_core::privacy::seal::{seal_bytes, SUBJECT_KEY};
use woostream_core::privacy::CustomerHasher;
use woostream_core::privacy::{SubjectKey, SubjectKeys};

use crate::publish::{Durability, PublishError, Publisher, Record};
use woostream_woo::normalise::Event;

/// Marks a subject key's record, which a spool drains before anything else.
const KEY_RECORD_HEADER: &str = "woostream-subject-key";

pub fn is_key_record(r: &Record) -> bool {
    r.headers.iter().any(|(k, _)| k == KEY_RECORD_HEADER)
}

/// The producer's sealing: the key topic it follows and extends.
#[derive(Clone)]
pub struct Sealer {
    keys: SubjectKeys,
    /// People whose new key went to the spool and may not be in Kafka yet: what is sealed
    /// for them follows into the spool until it is drained, so that no record of theirs
    /// reaches Kafka before their key.
    in_spool: Arc<Mutex<HashSet<String>>>,
    /// Who was erased: no new key for their past.
    erased: ErasedSubjects,
}

/// Keys made while sealing one event or page, not yet durable: written before what they
/// sealed, then made current.
#[derive(Default)]
pub struct NewKeys {
    made: HashMap<String, (Arc<SubjectKey>, Record)>,
    /// Every person whose key sealed something, new key or not.
    used: HashSet<String>,
}

impl NewKeys {
    pub fn is_empty(&self) -> bool {
        self.made.is_empty()
    }

    /// Their records, to be written first.
    pub fn records(&self) -> Vec<Record> {
        self.made.values().map(|(_, r)| r.clone()).collect()
    }
}

impl Sealer {
    /// Reads the key topic (blocking); `None` when `privacy.seal_personal_data` is off.
    pub fn start(config: &Config, bootstrap: &str) -> anyhow::Result<Option<Sealer>> {
        if !config.privacy.seal_personal_data {
            return Ok(None);
        }
        Ok(Some(Sealer {
            keys: SubjectKeys::start(config, bootstrap, true)?,
            in_spool: Arc::default(),
            erased: ErasedSubjects::start(config, bootstrap, "erased-subjects")
                .context("reading the erased-subject list")?,
        }))
    }

    /// [`Sealer::start`] from async code.
    pub async fn start_async(config: &Config, bootstrap: &str) -> anyhow::Result<Option<Sealer>> {
        let (config, bootstrap) = (config.clone(), bootstrap.to_string());
        tokio::task::spawn_blocking(move || Sealer::start(&config, &bootstrap)).await?
    }

    pub fn keys(&self) -> &SubjectKeys {
        &self.keys
    }

    /// The key for `customer` of `shop`: its current one, one made earlier in `new`, or a new
    /// one added to `new`.
    pub fn key_for(
        &self,
        hasher: &CustomerHasher,
        shop: &str,
        customer: &str,
        new: &mut NewKeys,
    ) -> Arc<SubjectKey> {
        let subject = hasher.subject_ref(shop, customer);
        new.used.insert(subject.clone());
        if let Some(k) = self.keys.current(&subject) {
            return k;
        }
        if let Some((k, _)) = new.made.get(&subject) {
            return k.clone();
        }
        let (key, record_key, value) = self.keys.new_key(&subject);
        let record = Record {
            topic: self.keys.topic().to_string(),
            key: record_key,
            value,
            headers: vec![(KEY_RECORD_HEADER.into(), "1".into())],
        };
        new.made.insert(subject, (key.clone(), record));
        key
    }

    /// Whether `event` is about an erased person's past (see
    /// [`woostream_core::privacy::erased`]): then nothing of it is written, and no new key is
    /// made for them. A deletion of their account passes (it carries nothing personal, and
    /// its erasure is idempotent).
    pub fn is_erased_past(&self, hasher: &CustomerHasher, event: &Event) -> bool {
        let (key, about) = match event {
            Event::Order(k, e) => (k, e.order.as_ref().and_then(|o| o.created_at)),
            Event::Customer(k, e) if e.action != Action::Deleted => (k, None),
            _ => return false,
        };
        // Every delivery passes here: no keyed hash while nobody was erased.
        if self.erased.is_empty() {
            return false;
        }
        let subject = hasher.subject_ref(&key.shop_id, &key.customer);
        erased::is_erased_past(self.erased.erased_at(&subject), about)
    }

    /// Seals an event's personal fields under its person's key (orders and accounts; other
    /// events carry none).
    pub fn seal_event(&self, hasher: &CustomerHasher, event: &mut Event, new: &mut NewKeys) {
        match event {
            Event::Order(k, e) => {
                if let Some(o) = &mut e.order {
                    let key = self.key_for(hasher, &k.shop_id, &k.customer, new);
                    seal_fields(order_fields(o), &key);
                }
            }
            Event::Customer(k, e) => {
                if let Some(c) = &mut e.customer {
                    let key = self.key_for(hasher, &k.shop_id, &k.customer, new);
                    seal_fields(customer_fields(c), &key);
                }
            }
            // A review's text is its reviewer's own words: sealed under the key of the email
            // they gave (a guest's key: erasing them by email reaches it).
            Event::Review(k, e) => {
                if let Some(r) = &mut e.review {
                    if let (Some(hash), false) = (&r.reviewer_email_hash, r.text.is_empty()) {
                        let reviewer = format!("guest:{hash}");
                        let key = self.key_for(hasher, &k.shop_id, &reviewer, new);
                        r.text =
                            woostream_core::privacy::seal::seal(&key, fields::REVIEW_TEXT, &r.text);
                    }
                }
            }
            // Action arguments can hold anything a plugin passes (an email, a name): sealed
            // under the shop's key of the day for what names no one person.
            Event::Action(k, e) if !e.arg_json.is_empty() => {
                let key = self.unidentified_key(hasher, &k.shop_id, new);
                e.arg_json = woostream_core::privacy::seal::seal(
                    &key,
                    fields::ACTION_ARGUMENTS,
                    &e.arg_json,
                );
            }
            _ => {}
        }
    }

    /// The key of the day for what is personal but names no one person (action arguments,
    /// a malformed delivery that shows no customer): nothing is kept in clear, and erasing a
    /// day's key shreds that day's such records.
    fn unidentified_key(
        &self,
        hasher: &CustomerHasher,
        shop: &str,
        new: &mut NewKeys,
    ) -> Arc<SubjectKey> {
        let day = chrono::Utc::now().format("%Y-%m-%d");
        self.key_for(hasher, shop, &format!("unidentified:{day}"), new)
    }

    /// A dead letter's body sealed under its person's key, when the body shows who it is
    /// about (then their erasure reaches it too); `None` otherwise.
    pub fn seal_body(
        &self,
        hasher: &CustomerHasher,
        shop: &str,
        body: &[u8],
        new: &mut NewKeys,
    ) -> Option<(&'static str, Vec<u8>)> {
        let customer = subject_of_body(body, |e| hasher.email_hash(e))?;
        let key = self.key_for(hasher, shop, &customer, new);
        Some((SUBJECT_KEY, seal_bytes(&key, body)))
    }

    /// The new keys are durable: values of their people are sealed with them from now on.
    pub fn made_durable(&self, new: NewKeys) {
        for (subject, (key, _)) in new.made {
            self.keys.insert(&subject, key);
        }
    }

    /// Makes `new` durable through `publisher`; `true` when any went to the spool (then what
    /// they sealed must go to the spool too, behind them).
    async fn publish_keys(
        &self,
        publisher: &Publisher,
        new: NewKeys,
    ) -> Result<bool, PublishError> {
        if new.is_empty() {
            return Ok(false);
        }
        let mut spooled = false;
        for record in new.records() {
            if matches!(publisher.publish(record).await?, Durability::Spooled) {
                spooled = true;
            }
        }
        if spooled {
            let mut in_spool = self.in_spool.lock().expect("keys in the spool");
            in_spool.extend(new.made.keys().cloned());
        }
        self.made_durable(new);
        Ok(spooled)
    }

    /// Whether any of `used` has a key that may still be in the spool (forgotten once the
    /// spool is empty: everything in it is in Kafka then).
    fn follows_spool(&self, used: &HashSet<String>, publisher: &Publisher) -> bool {
        let mut in_spool = self.in_spool.lock().expect("keys in the spool");
        follows_spool(&mut in_spool, used, || publisher.spool_holds_records())
    }
}

/// Whether a record sealed for `used` must follow their keys into the spool: while the spool
/// holds records, a person whose new key went there has it maybe not in Kafka yet. An empty
/// spool has drained everything, keys first: then nobody's key is waiting any more.
fn follows_spool(
    in_spool: &mut HashSet<String>,
    used: &HashSet<String>,
    spool_holds_records: impl FnOnce() -> bool,
) -> bool {
    if in_spool.is_empty() {
        return false;
    }
    if !spool_holds_records() {
        in_spool.clear();
        return false;
    }
    used.iter().any(|s| in_spool.contains(s))
}

/// A kept body (a dead letter's) sealed under its person's key when it shows whose it is (their
/// erasure then reaches it), else under the dead-letter key when one is configured, else —
/// with sealing on — under the shop's key of the day for what names no one: never in clear
/// while sealing is on.
pub fn seal_kept_body(
    sealer: Option<&Sealer>,
    dead_letter_key: Option<&ChaCha20Poly1305>,
    hasher: &CustomerHasher,
    shop: &str,
    body: &[u8],
    new_keys: &mut NewKeys,
) -> (&'static str, Vec<u8>) {
    if let Some(sealed) = sealer.and_then(|s| s.seal_body(hasher, shop, body, new_keys)) {
        return sealed;
    }
    match (sealer, dead_letter_key) {
        (Some(s), None) => {
            let key = s.unidentified_key(hasher, shop, new_keys);
            (SUBJECT_KEY, seal_bytes(&key, body))
        }
        _ => woostream_core::privacy::cipher::seal(dead_letter_key, body),
    }
}

/// Publishes `record` after the keys sealed into it are durable; a record sealed under a key
/// that went to the spool follows it there (the drain writes keys first).
pub async fn publish_sealed(
    publisher: &Publisher,
    sealer: Option<&Sealer>,
    new_keys: NewKeys,
    record: Record,
) -> Result<Durability, PublishError> {
    let keys_spooled = match sealer {
        Some(s) => {
            let behind = s.follows_spool(&new_keys.used, publisher);
            s.publish_keys(publisher, new_keys).await? || behind
        }
        None => false,
    };
    publisher.publish_behind_keys(record, keys_spooled).await
}

/// Carries out the erasure WooCommerce's `customer.deleted` asks for: the account's keys
/// deleted and its customer key tombstoned (`woostream erase --email` also reaches the orders
/// the person placed as a guest, which the deleted account's id does not name).
pub struct Eraser {
    config: Config,
    keys: SubjectKeys,
    erased: ErasedSubjects,
    producer: Arc<RenewingProducer>,
    codecs: ErasureCodecs,
}

impl Eraser {
    pub async fn new(
        config: &Config,
        sealer: &Sealer,
        producer: Arc<RenewingProducer>,
    ) -> anyhow::Result<Eraser> {
        Ok(Eraser {
            config: config.clone(),
            keys: sealer.keys.clone(),
            erased: sealer.erased.clone(),
            producer,
            codecs: ErasureCodecs::register(config).await?,
        })
    }

    /// The erasure of a deleted account: its id names it from now on, whenever it is done.
    pub fn request(key: &CustomerKey) -> Request {
        Request::new(
            &key.shop_id,
            vec![key.customer.clone()],
            None,
            "customer.deleted",
        )
    }

    /// Whether (shop, customer key) was erased already.
    pub fn already_erased(&self, key: &CustomerKey) -> bool {
        let hasher = CustomerHasher::for_shop(&self.config, &key.shop_id);
        self.erased
            .erased_at(&hasher.subject_ref(&key.shop_id, &key.customer))
            .is_some()
    }

    /// Carries out `request`; doing it again (after a failure part-way, or from the spool)
    /// writes the same tombstones and receipt under the same erasure id.
    pub async fn carry_out(&self, request: &Request) -> anyhow::Result<()> {
        erase::carry_out(
            &self.config,
            &self.keys,
            &self.producer,
            &self.codecs,
            request,
        )
        .await?;
        let hasher = CustomerHasher::for_shop(&self.config, &request.shop_id);
        for s in &request.subjects {
            self.erased.note(
                &hasher.subject_ref(&request.shop_id, s),
                request.requested_at,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_follows_its_persons_key_into_the_spool_until_the_spool_is_empty() {
        let set = |v: &[&str]| -> HashSet<String> { v.iter().map(|s| s.to_string()).collect() };
        let mut in_spool = set(&["eu:42"]);
        // The broker is back but the spool still drains: 42's update follows 42's key.
        assert!(follows_spool(&mut in_spool, &set(&["eu:42"]), || true));
        // Someone else's record goes straight to Kafka.
        assert!(!follows_spool(&mut in_spool, &set(&["eu:7"]), || true));
        // Drained: everything spooled is in Kafka, 42's key too.
        assert!(!follows_spool(&mut in_spool, &set(&["eu:42"]), || false));
        assert!(in_spool.is_empty());
    }
}
