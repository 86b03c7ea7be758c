//! Changes waiting for the CRM, one per contact and one per deal: a newer event about the same
//! customer or order folds into the waiting change (coalescing). What waits leaves together
//! once its oldest change has waited `max_delay` (the batch window), so a flash sale costs
//! calls per customer and window, not per event; a backlog of many full batches leaves at
//! once. No Kafka, no HTTP.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use woostream_core::contract::sink_records::{CrmAttempt, SourceOffset};

use super::changes::{ContactChange, DealChange, Mapping};

/// A change on its way, with what it was made from.
#[derive(Clone, Debug)]
pub struct Item<T> {
    pub change: T,
    /// Every Kafka record folded into it; all are done when it is delivered or dead-lettered.
    pub sources: Vec<SourceOffset>,
    /// When the oldest of them was written to Kafka (ms since the epoch), for latency.
    pub written_ms: i64,
    pub first_seen: Instant,
    /// Requests that carried it already (a replay starts with the dead letter's).
    pub attempts: Vec<CrmAttempt>,
    pub replays: i32,
}

impl<T> Item<T> {
    pub fn new(change: T, source: Option<SourceOffset>, written_ms: i64, now: Instant) -> Self {
        Item {
            change,
            sources: source.into_iter().collect(),
            written_ms,
            first_seen: now,
            attempts: Vec::new(),
            replays: 0,
        }
    }
}

/// What a dead-lettered deal carries so that a replay can write its contact and associate it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "object", rename_all = "snake_case")]
pub enum Original {
    Contact {
        contact: Box<ContactChange>,
    },
    Deal {
        deal: Box<DealChange>,
        contact: Option<Box<ContactChange>>,
    },
    /// An erased person's contact the CRM would not delete (or anonymise): no personal data,
    /// only the ids a replay needs to try again.
    ContactErasure {
        erasure_id: String,
        contact_id: String,
    },
}

/// What one flush sends, and what it gives up on without asking the CRM.
#[derive(Debug, Default)]
pub struct Taken {
    pub contacts: Vec<Item<ContactChange>>,
    pub deals: Vec<Item<DealChange>>,
    /// Guests whose email never became known: the CRM cannot find or create them.
    pub unknown_contacts: Vec<Item<ContactChange>>,
    /// Deals whose contact never reached the CRM.
    pub orphan_deals: Vec<Item<DealChange>>,
}

impl Taken {
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
            && self.deals.is_empty()
            && self.unknown_contacts.is_empty()
            && self.orphan_deals.is_empty()
    }
}

#[derive(Default)]
pub struct Pending {
    contacts: HashMap<(String, String), Item<ContactChange>>,
    deals: HashMap<(String, i64), Item<DealChange>>,
}

/// When what is waiting goes.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub batch_size: usize,
    pub max_delay: Duration,
    pub guest_wait: Duration,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.contacts.len() + self.deals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn add_contact(&mut self, item: Item<ContactChange>) {
        let key = (item.change.shop_id.clone(), item.change.customer.clone());
        match self.contacts.get_mut(&key) {
            Some(waiting) => absorb(waiting, item, ContactChange::merge),
            None => {
                self.contacts.insert(key, item);
            }
        }
    }

    /// Drops what waits for a customer key (erased): returns the sources of what was dropped,
    /// which count as done.
    pub fn forget(&mut self, shop: &str, customer: &str) -> Vec<SourceOffset> {
        let mut sources = Vec::new();
        if let Some(c) = self
            .contacts
            .remove(&(shop.to_string(), customer.to_string()))
        {
            sources.extend(c.sources);
        }
        let deals: Vec<(String, i64)> = self
            .deals
            .iter()
            .filter(|(_, d)| d.change.shop_id == shop && d.change.customer == customer)
            .map(|(k, _)| k.clone())
            .collect();
        for k in deals {
            sources.extend(self.deals.remove(&k).expect("present").sources);
        }
        sources
    }

    pub fn add_deal(&mut self, item: Item<DealChange>) {
        let key = (item.change.shop_id.clone(), item.change.order_id);
        match self.deals.get_mut(&key) {
            Some(waiting) => absorb(waiting, item, DealChange::merge),
            None => {
                self.deals.insert(key, item);
            }
        }
    }

    /// Takes what should leave now. `known(shop, customer)`: the CRM has the contact.
    pub fn take(
        &mut self,
        now: Instant,
        policy: Policy,
        mapping: &Mapping,
        known: impl Fn(&str, &str) -> bool,
    ) -> Taken {
        let aged = |i: Instant, limit: Duration| now.saturating_duration_since(i) >= limit;
        let mut taken = Taken::default();
        // Nothing has waited a window (or a guest's wait) and there is no backlog: nothing
        // leaves, and the scan below is not worth making at every tick.
        let oldest = self
            .contacts
            .values()
            .map(|i| i.first_seen)
            .chain(self.deals.values().map(|i| i.first_seen))
            .min();
        match oldest {
            None => return taken,
            Some(t)
                if !aged(t, policy.max_delay.min(policy.guest_wait))
                    && self.len() < policy.batch_size * BACKLOG_BATCHES =>
            {
                return taken
            }
            Some(_) => {}
        }
        // Contacts that can be addressed, oldest first; guests without an email wait.
        let mut ready: Vec<(Instant, (String, String))> = Vec::new();
        let mut stuck = Vec::new();
        for (key, item) in &self.contacts {
            let c = &item.change;
            if mapping.addressable(c, known(&c.shop_id, &c.customer)) {
                ready.push((item.first_seen, key.clone()));
            } else if aged(item.first_seen, policy.guest_wait) {
                stuck.push(key.clone());
            }
        }
        for key in stuck {
            let item = self.contacts.remove(&key).expect("present");
            taken.unknown_contacts.push(item);
        }
        ready.sort();
        let contacts_go = count_to_take(&ready, policy, &aged);
        let going: Vec<(String, String)> = ready
            .into_iter()
            .take(contacts_go)
            .map(|(_, k)| k)
            .collect();
        let going_set: std::collections::HashSet<&(String, String)> = going.iter().collect();
        // A deal goes with its contact, or alone once the CRM has the contact.
        let mut deals: Vec<(Instant, (String, i64))> = Vec::new();
        let mut orphans = Vec::new();
        for (key, item) in &self.deals {
            let d = &item.change;
            let contact = (d.shop_id.clone(), d.customer.clone());
            if going_set.contains(&contact) || known(&d.shop_id, &d.customer) {
                deals.push((item.first_seen, key.clone()));
            } else if aged(item.first_seen, policy.guest_wait)
                && !self.contacts.contains_key(&contact)
            {
                // Its contact was given up (or refused): it can never be associated.
                orphans.push(key.clone());
            }
        }
        for key in orphans {
            taken
                .orphan_deals
                .push(self.deals.remove(&key).expect("present"));
        }
        deals.sort();
        // Deals of contacts going now go now too, whatever the batch count says.
        let deals_go = count_to_take(&deals, policy, &aged);
        for (i, (_, key)) in deals.into_iter().enumerate() {
            let d = &self.deals[&key].change;
            if i < deals_go || going_set.contains(&(d.shop_id.clone(), d.customer.clone())) {
                taken.deals.push(self.deals.remove(&key).expect("present"));
            }
        }
        for key in going {
            taken
                .contacts
                .push(self.contacts.remove(&key).expect("present"));
        }
        taken
    }
}

/// Batches that make a backlog: they leave without waiting for the window.
const BACKLOG_BATCHES: usize = 20;

/// Everything once the oldest has waited a window; before that, only a backlog's full batches.
fn count_to_take<K>(
    ready: &[(Instant, K)],
    policy: Policy,
    aged: &impl Fn(Instant, Duration) -> bool,
) -> usize {
    if ready.is_empty() {
        return 0;
    }
    if aged(ready[0].0, policy.max_delay) {
        return ready.len();
    }
    if ready.len() >= policy.batch_size * BACKLOG_BATCHES {
        return ready.len() / policy.batch_size * policy.batch_size;
    }
    0
}

fn absorb<T>(waiting: &mut Item<T>, newer: Item<T>, merge: fn(&mut T, T)) {
    merge(&mut waiting.change, newer.change);
    waiting.sources.extend(newer.sources);
    waiting.written_ms = waiting.written_ms.min(newer.written_ms);
    waiting.attempts.extend(newer.attempts);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::changes::examples;
    use chrono::{TimeZone, Utc};
    use woostream_core::config::crm::CrmConfig;

    fn contact(customer: &str, email: Option<&str>) -> ContactChange {
        let mut c = examples::contact(customer, "");
        if let Some(i) = c.identity.as_mut() {
            i.email = email.map(Into::into);
            i.first_name = None;
        }
        c
    }

    fn deal(order: i64, customer: &str, status: &str, t: i64) -> DealChange {
        let mut d = examples::deal(order, customer, status);
        d.modified_at = Utc.timestamp_opt(1_700_000_000 + t, 0).unwrap();
        d
    }

    fn src(offset: i64) -> Option<SourceOffset> {
        Some(SourceOffset {
            topic: "woo.orders".into(),
            partition: 0,
            offset,
        })
    }

    const POLICY: Policy = Policy {
        batch_size: 3,
        max_delay: Duration::from_secs(2),
        guest_wait: Duration::from_secs(60),
    };

    #[test]
    fn events_about_one_customer_and_order_coalesce_keeping_every_source() {
        let (mapping, t0) = (Mapping::new(&CrmConfig::default()), Instant::now());
        let mut p = Pending::default();
        for (i, status) in ["pending", "processing", "completed"].iter().enumerate() {
            p.add_contact(Item::new(
                contact("7", Some("a@x.example")),
                src(i as i64),
                1,
                t0,
            ));
            p.add_deal(Item::new(
                deal(1, "7", status, i as i64),
                src(i as i64),
                1,
                t0,
            ));
        }
        assert_eq!(p.len(), 2);
        let t = p.take(t0 + Duration::from_secs(2), POLICY, &mapping, |_, _| false);
        assert_eq!((t.contacts.len(), t.deals.len()), (1, 1));
        assert_eq!(t.deals[0].change.status, "completed");
        assert_eq!(t.deals[0].sources.len(), 3);
        assert!(p.is_empty());
    }

    #[test]
    fn a_window_leaves_together_and_a_backlog_of_full_batches_at_once() {
        let (mapping, t0) = (Mapping::new(&CrmConfig::default()), Instant::now());
        let mut p = Pending::default();
        for c in 1..=3 {
            p.add_contact(Item::new(contact(&c.to_string(), None), src(c), 1, t0));
        }
        let t = p.take(t0 + Duration::from_secs(1), POLICY, &mapping, |_, _| false);
        assert!(
            t.is_empty(),
            "a full batch waits for the window: newer states may come"
        );
        let t = p.take(t0 + Duration::from_secs(2), POLICY, &mapping, |_, _| false);
        assert_eq!(t.contacts.len(), 3);
        let backlog = POLICY.batch_size * BACKLOG_BATCHES + 1;
        for c in 1..=backlog {
            let at = t0 + Duration::from_millis(c as u64);
            p.add_contact(Item::new(
                contact(&c.to_string(), None),
                src(c as i64),
                1,
                at,
            ));
        }
        let t = p.take(t0 + Duration::from_millis(100), POLICY, &mapping, |_, _| {
            false
        });
        assert_eq!(t.contacts.len(), backlog - 1, "a backlog's full batches");
        let oldest: Vec<_> = t
            .contacts
            .iter()
            .take(3)
            .map(|i| i.change.customer.clone())
            .collect();
        assert_eq!(oldest, ["1", "2", "3"], "oldest first");
        let t = p.take(t0 + Duration::from_secs(3), POLICY, &mapping, |_, _| false);
        assert_eq!(t.contacts.len(), 1);
    }

    #[test]
    fn a_guest_waits_for_an_email_and_its_deal_waits_with_it() {
        let (mapping, t0) = (Mapping::new(&CrmConfig::default()), Instant::now());
        let mut p = Pending::default();
        let mut anonymous = contact("guest:ab", None);
        anonymous.identity = None;
        p.add_contact(Item::new(anonymous.clone(), src(1), 1, t0));
        p.add_deal(Item::new(
            deal(9, "guest:ab", "processing", 0),
            src(2),
            1,
            t0,
        ));
        let later = t0 + Duration::from_secs(5);
        assert!(p.take(later, POLICY, &mapping, |_, _| false).is_empty());
        // Known to the CRM: found by its key, the deal goes with it.
        let t = p.take(later, POLICY, &mapping, |_, c| c == "guest:ab");
        assert_eq!((t.contacts.len(), t.deals.len()), (1, 1));
        // Never known: both are given up after guest_wait.
        p.add_contact(Item::new(anonymous, src(3), 1, t0));
        p.add_deal(Item::new(
            deal(9, "guest:ab", "processing", 0),
            src(4),
            1,
            t0,
        ));
        let t = p.take(t0 + Duration::from_secs(61), POLICY, &mapping, |_, _| false);
        assert_eq!((t.unknown_contacts.len(), t.orphan_deals.len()), (1, 1));
        assert!(p.is_empty());
    }
}
