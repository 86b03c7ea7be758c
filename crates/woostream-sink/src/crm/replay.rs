//! `woostream replay`: re-drives the CRM dead-letter topic once the cause is fixed — all of it,
//! or the records whose reason or customer matches. Each record is sent as it was refused
//! (a deal with its contact, so the association is made too), within the same budget rules;
//! what the CRM takes is marked replayed in the audit topic, what it refuses again is
//! dead-lettered again with its attempts so far.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use woostream_core::config::Config;
use woostream_core::contract::sink_records::CrmDeadLetter;

use super::changes::{ContactChange, DealChange};
use super::flush::{Known, Outcome, Sender};
use super::metrics::Metrics;
use super::pending::{Item, Original, Taken};
use super::records::open_original;
use super::runner::{apply_audit, recorder};
use crate::audit::{fold_audit, fold_each};
use woostream_hubspot::api::Crm;
use woostream_hubspot::client::HubSpot;

/// Which dead letters to replay.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Reason contains this (case-insensitive).
    pub reason: Option<String>,
    /// Customer key, e.g. `42` or `guest:<hash>`.
    pub customer: Option<String>,
    /// contact or deal.
    pub object: Option<String>,
    /// List them, send nothing.
    pub list_only: bool,
}

impl Filter {
    pub fn selects(&self, dl: &CrmDeadLetter) -> bool {
        self.reason
            .as_ref()
            .is_none_or(|r| dl.reason.to_lowercase().contains(&r.to_lowercase()))
            && self.customer.as_ref().is_none_or(|c| &dl.customer == c)
            && self.object.as_ref().is_none_or(|o| &dl.object == o)
    }
}

#[derive(Debug, Default)]
pub struct Summary {
    /// Distinct dead letters in the topic.
    pub dead_letters: usize,
    pub already_replayed: usize,
    pub selected: Vec<CrmDeadLetter>,
    pub delivered: usize,
    pub refused_again: usize,
    /// Left unsent: the CRM has since taken a newer state of the object.
    pub superseded: usize,
    pub unreadable: usize,
}

/// The newest record of every dead letter not replayed since, in topic order.
pub fn outstanding(
    records: Vec<CrmDeadLetter>,
    replayed: &HashMap<String, DateTime<Utc>>,
) -> (usize, usize, Vec<CrmDeadLetter>) {
    let mut newest: HashMap<String, CrmDeadLetter> = HashMap::new();
    let mut order = Vec::new();
    for dl in records {
        if !newest.contains_key(&dl.dead_letter_id) {
            order.push(dl.dead_letter_id.clone());
        }
        newest.insert(dl.dead_letter_id.clone(), dl);
    }
    let total = order.len();
    let mut done = 0;
    let mut out = Vec::new();
    for id in order {
        let dl = newest.remove(&id).expect("present");
        if replayed
            .get(&id)
            .is_some_and(|at| *at >= dl.dead_lettered_at)
        {
            done += 1;
        } else {
            out.push(dl);
        }
    }
    (total, done, out)
}

/// What of a dead letter is still worth sending: `None` when the CRM has since taken a newer
/// state (the order moved on, the customer ordered again) — replaying the old one would move
/// the CRM back. A deal's contact loses the profile figures the CRM has newer.
pub fn current(known: &Known, original: Original) -> Option<Original> {
    match original {
        Original::Deal { deal, contact } => Some(Original::Deal {
            deal: Box::new(known.fresh_deal(*deal)?),
            contact: contact.and_then(|c| known.fresh_contact(*c)).map(Box::new),
        }),
        Original::Contact { contact } => Some(Original::Contact {
            contact: Box::new(known.fresh_contact(*contact)?),
        }),
        // An erasure is never superseded.
        erasure @ Original::ContactErasure { .. } => Some(erasure),
    }
}

/// One CRM object: (object, shop, customer or order id).
type ObjectKey = (&'static str, String, String);

fn contact_key(c: &ContactChange) -> ObjectKey {
    ("contact", c.shop_id.clone(), c.customer.clone())
}

fn deal_key(d: &DealChange) -> ObjectKey {
    ("deal", d.shop_id.clone(), d.order_id.to_string())
}

/// What a replay sends, and what it leaves as superseded.
#[derive(Debug, Default)]
pub struct Plan {
    pub send: Vec<(CrmDeadLetter, Original)>,
    pub superseded: Vec<CrmDeadLetter>,
}

/// Of several dead letters of one object only the newest state is sent; none of it when the CRM
/// has since taken a newer one.
pub fn plan(known: &Known, selected: impl IntoIterator<Item = (CrmDeadLetter, Original)>) -> Plan {
    let mut newest: HashMap<ObjectKey, (i64, CrmDeadLetter, Original)> = HashMap::new();
    let mut out = Plan::default();
    for (dl, original) in selected {
        let (key, version) = match &original {
            Original::Contact { contact } => (contact_key(contact), contact.version()),
            Original::Deal { deal, .. } => (deal_key(deal), deal.version()),
            Original::ContactErasure { erasure_id, .. } => (
                ("contact_erasure", dl.shop_id.clone(), erasure_id.clone()),
                0,
            ),
        };
        match newest.get(&key) {
            Some((v, ..)) if *v >= version => out.superseded.push(dl),
            _ => {
                if let Some((_, older, _)) = newest.insert(key, (version, dl, original)) {
                    out.superseded.push(older);
                }
            }
        }
    }
    for (_, dl, original) in newest.into_values() {
        match current(known, original) {
            Some(original) => out.send.push((dl, original)),
            None => out.superseded.push(dl),
        }
    }
    out.send
        .sort_by_key(|(dl, _)| (dl.dead_lettered_at, dl.dead_letter_id.clone()));
    out
}

/// A dead letter's change on its way again, with its sources and attempts so far.
fn replay_item<T>(dl: &CrmDeadLetter, change: T, now: Instant) -> Item<T> {
    Item {
        change,
        sources: dl.sources.clone(),
        written_ms: dl.dead_lettered_at.timestamp_millis(),
        first_seen: now,
        attempts: dl.attempts.clone(),
        replays: dl.replays + 1,
    }
}

/// What to send for the selected dead letters: deals with their contacts, each contact once.
pub fn to_send(selected: &[CrmDeadLetter], originals: Vec<Original>) -> Taken {
    let now = Instant::now();
    let mut taken = Taken::default();
    let mut contacts: HashMap<(String, String), usize> = HashMap::new();
    let mut add_contact = |taken: &mut Taken, item: Item<ContactChange>| {
        let key = (item.change.shop_id.clone(), item.change.customer.clone());
        match contacts.get(&key) {
            Some(&i) => taken.contacts[i].change.merge(item.change),
            None => {
                contacts.insert(key, taken.contacts.len());
                taken.contacts.push(item);
            }
        }
    };
    for (dl, original) in selected.iter().zip(originals) {
        match original {
            Original::Contact { contact } => {
                add_contact(&mut taken, replay_item(dl, *contact, now))
            }
            Original::Deal { deal, contact } => {
                if let Some(c) = contact {
                    // The deal's attempts are the deal's.
                    let item = Item {
                        attempts: Vec::new(),
                        ..replay_item(dl, *c, now)
                    };
                    add_contact(&mut taken, item);
                }
                taken.deals.push(replay_item(dl, *deal, now));
            }
            // Sent on its own (see `replay`), not in a flush.
            Original::ContactErasure { .. } => {}
        }
    }
    taken
}

/// Replays the CRM dead-letter topic.
pub async fn replay(
    config: &Config,
    bootstrap: &str,
    filter: &Filter,
    shutdown: CancellationToken,
) -> anyhow::Result<Summary> {
    let metrics = Metrics::register(&prometheus::Registry::new())?;
    let (recorder, decoder) = recorder(config, bootstrap, metrics.clone()).await?;
    let (known, replayed) = fold_audit(
        config,
        bootstrap,
        &decoder,
        vec![config.crm.sink_name()],
        "crm-replay",
        (Known::default(), HashMap::new()),
        |(known, replayed), d| {
            apply_audit(known, d);
            if d.destination == "replay" {
                replayed.insert(d.alert_id.clone(), d.delivered_at);
            }
        },
    )
    .await?;
    let known = Arc::new(Mutex::new(known));
    // Only this account's dead letters: another account's are for its own sink to replay.
    let prefix = config.crm.dead_letter_prefix();
    let mine = move |dl: &CrmDeadLetter| match dl.dead_letter_id.split_once('@') {
        Some((account, _)) => format!("{account}@") == prefix,
        None => prefix.is_empty(),
    };
    let (records, unreadable) = fold_each(
        config,
        bootstrap,
        &decoder,
        &config.topics.crm_dead_letter.name,
        "crm-replay-read",
        (Vec::new(), 0usize),
        move |(records, unreadable), dl| match dl {
            Ok(dl) if mine(&dl) => records.push(dl),
            Ok(_) => {}
            Err(_) => *unreadable += 1,
        },
    )
    .await?;
    let (dead_letters, already_replayed, outstanding) = outstanding(records, &replayed);
    let selected: Vec<CrmDeadLetter> = outstanding
        .into_iter()
        .filter(|dl| filter.selects(dl))
        .collect();
    let mut summary = Summary {
        dead_letters,
        already_replayed,
        unreadable,
        ..Summary::default()
    };
    if filter.list_only || selected.is_empty() {
        summary.selected = selected;
        return Ok(summary);
    }
    if config.crm.dry_run {
        anyhow::bail!("crm.dry_run is set: there is no CRM to replay to");
    }
    let cipher = super::records::cipher(config);
    let keys = recorder.keys.clone();
    let opened = selected.clone();
    let originals = tokio::task::spawn_blocking(move || {
        opened
            .iter()
            .map(|dl| open_original(dl, cipher.as_ref(), keys.as_ref()))
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await??;
    let plan = plan(
        &known.lock().expect("known"),
        selected.iter().cloned().zip(originals),
    );
    for dl in &plan.superseded {
        recorder.replayed(dl, true).await?;
    }
    summary.superseded = plan.superseded.len();
    let (erasures, changes): (Vec<_>, Vec<_>) = plan
        .send
        .into_iter()
        .partition(|(_, o)| matches!(o, Original::ContactErasure { .. }));
    let (current, current_originals): (Vec<_>, Vec<_>) = changes.into_iter().unzip();
    let taken = to_send(&current, current_originals);
    let token = config
        .crm
        .resolved_token()
        .context("crm.token (or crm.token_env) is not set")?;
    let crm = HubSpot::new(&config.crm.api_url, token)?;
    let sender = Sender::new(crm, &config.crm, metrics, shutdown);
    for (dl, original) in &erasures {
        let Original::ContactErasure {
            erasure_id,
            contact_id,
        } = original
        else {
            continue;
        };
        let mut attempts = dl.attempts.clone();
        match sender
            .erase_contact(
                contact_id,
                &sender.mapping.key_of(&dl.shop_id, &dl.customer),
                config.crm.erasure,
                &mut attempts,
            )
            .await
        {
            super::contact_erasure::Erased::Done(done) => {
                recorder.replayed(dl, false).await?;
                let receipt = woostream_core::privacy::receipt::Receipt {
                    erasure_id,
                    shop_id: &dl.shop_id,
                    role: &recorder.sink,
                    destination: "contacts".into(),
                    done: format!("{done} (replayed)"),
                    object_id: Some(contact_id.clone()),
                    requested_at: dl.dead_lettered_at,
                    outcome: woostream_core::contract::sink_records::DeliveryOutcome::Erased,
                    attempts: attempts.len() as i32,
                };
                recorder.receipt(&receipt).await?;
                summary.delivered += 1;
            }
            _ => summary.refused_again += 1,
        }
    }
    send(&sender, taken, &known, &recorder, &current, &mut summary).await?;
    summary.selected = selected;
    Ok(summary)
}

async fn send<C: Crm>(
    sender: &Sender<C>,
    taken: Taken,
    known: &super::flush::SharedKnown,
    recorder: &super::records::Recorder,
    selected: &[CrmDeadLetter],
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let report = sender
        .flush(taken, known)
        .await
        .map_err(|_| anyhow::anyhow!("interrupted"))?;
    recorder.record(&report).await?;
    // By object, not by dead-letter id: contacts sent once for several dead letters are merged.
    let ok = |o: &Outcome| matches!(o, Outcome::Delivered { .. } | Outcome::Skipped(_));
    let mut delivered: HashSet<ObjectKey> = HashSet::new();
    for (item, outcome) in &report.contacts {
        if ok(outcome) {
            delivered.insert(contact_key(&item.change));
        }
    }
    for (item, outcome, _) in &report.deals {
        if ok(outcome) {
            delivered.insert(deal_key(&item.change));
        }
    }
    for dl in selected {
        let key = match dl.order_id {
            Some(order) if dl.object == "deal" => ("deal", dl.shop_id.clone(), order.to_string()),
            _ => ("contact", dl.shop_id.clone(), dl.customer.clone()),
        };
        if delivered.contains(&key) {
            recorder.replayed(dl, false).await?;
            summary.delivered += 1;
        } else {
            summary.refused_again += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn dl(id: &str, customer: &str, reason: &str, at: i64) -> CrmDeadLetter {
        CrmDeadLetter {
            dead_letter_id: id.into(),
            object: "deal".into(),
            shop_id: "main".into(),
            customer: customer.into(),
            order_id: Some(1),
            reason: reason.into(),
            category: None,
            http_status: Some(400),
            attempts: vec![],
            original: b"{}".to_vec(),
            original_encryption: "none".into(),
            correlation_id: "c".into(),
            sources: vec![],
            dead_lettered_at: Utc.timestamp_opt(1_700_000_000 + at, 0).unwrap(),
            replays: 0,
        }
    }

    #[test]
    fn a_replay_sends_only_what_the_crm_does_not_have_newer() {
        use crate::crm::changes::examples::{contact, deal, metrics};
        let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
        let mut known = Known::default();
        // Order 2 moved on and was delivered after its dead letter; customer 7's profile too.
        let mut delivered = deal(2, "7", "completed");
        delivered.modified_at = at(60);
        known
            .deals_at
            .insert(("main".into(), 2), delivered.version());
        known
            .contact_versions
            .insert(("main".into(), "7".into()), 3);

        let mut with_old_profile = contact("7", "a@x.example");
        with_old_profile.metrics = Some(metrics(2, 2));
        let deal_dl = |order: i64, status: &str, secs: i64| {
            let mut d = deal(order, "7", status);
            d.modified_at = at(secs);
            (
                dl(
                    &format!("deal:{order}:{status}"),
                    "7",
                    "INVALID_OPTION",
                    secs,
                ),
                Original::Deal {
                    deal: Box::new(d),
                    contact: Some(Box::new(with_old_profile.clone())),
                },
            )
        };
        let mut profile_only = with_old_profile.clone();
        profile_only.identity = None;
        let selected = vec![
            deal_dl(1, "pending", 0),
            deal_dl(1, "processing", 0),
            deal_dl(2, "processing", 30),
            (
                dl("contact:7", "7", "INVALID_EMAIL", 5),
                Original::Contact {
                    contact: Box::new(profile_only),
                },
            ),
        ];
        let plan = plan(&known, selected);
        let mut superseded: Vec<&str> = plan
            .superseded
            .iter()
            .map(|d| d.dead_letter_id.as_str())
            .collect();
        superseded.sort();
        assert_eq!(
            superseded,
            ["contact:7", "deal:1:pending", "deal:2:processing"],
            "the older state of order 1, order 2 and the old profile"
        );
        assert_eq!(plan.send.len(), 1);
        let (sent, original) = &plan.send[0];
        assert_eq!(sent.dead_letter_id, "deal:1:processing");
        let Original::Deal { deal, contact } = original else {
            panic!("a deal")
        };
        assert_eq!(deal.status, "processing");
        let contact = contact.as_ref().expect("the contact, for its identity");
        assert!(contact.identity.is_some());
        assert_eq!(contact.metrics, None, "the CRM has a newer profile");
    }

    #[test]
    fn a_refused_erasure_is_always_replayed_and_never_sent_as_a_change() {
        let erasure = (
            dl("contact_erasure:main:7:er-1", "7", "FORBIDDEN", 0),
            Original::ContactErasure {
                erasure_id: "er-1".into(),
                contact_id: "901".into(),
            },
        );
        let plan = plan(&Known::default(), vec![erasure.clone()]);
        assert!(plan.superseded.is_empty());
        assert_eq!(plan.send.len(), 1);
        let taken = to_send(&[erasure.0], vec![erasure.1]);
        assert!(
            taken.is_empty(),
            "erasures leave through the CRM's delete, not a flush"
        );
    }

    #[test]
    fn the_newest_record_of_each_dead_letter_counts_and_replayed_ones_are_left() {
        let records = vec![
            dl("a", "1", "INVALID_OPTION", 0),
            dl("b", "2", "INVALID_EMAIL", 0),
            dl("a", "1", "INVALID_OPTION again", 10),
            dl("c", "3", "x", 0),
        ];
        let replayed = HashMap::from([
            (
                "b".to_string(),
                Utc.timestamp_opt(1_700_000_005, 0).unwrap(),
            ),
            (
                "a".to_string(),
                Utc.timestamp_opt(1_700_000_005, 0).unwrap(),
            ),
        ]);
        let (total, done, out) = outstanding(records, &replayed);
        assert_eq!((total, done), (3, 1));
        let ids: Vec<_> = out
            .iter()
            .map(|d| (d.dead_letter_id.as_str(), d.reason.as_str()))
            .collect();
        assert_eq!(
            ids,
            [("a", "INVALID_OPTION again"), ("c", "x")],
            "a failed again after its replay"
        );
        let f = Filter {
            reason: Some("invalid_option".into()),
            ..Filter::default()
        };
        assert!(f.selects(&out[0]) && !f.selects(&out[1]));
        let f = Filter {
            customer: Some("3".into()),
            ..Filter::default()
        };
        assert!(!f.selects(&out[0]) && f.selects(&out[1]));
    }
}
