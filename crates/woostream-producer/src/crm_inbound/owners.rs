//! Whose each CRM contact is, by woostream's own record: the CRM sink's audit trail (every
//! contact it wrote, and for whom; every contact it erased). A contact's `woo_customer_id`
//! alone is not proof — a form, an import or another app can set any property — so a change
//! reaches a shop account only when this record names the same customer for that contact.
//!
//! [`owner_seen`] is the pure part; [`Owners`] follows the audit topic on a thread of its own
//! and catches up with it on demand (a contact written a moment ago).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use woostream_core::codec::Decoder;
use woostream_core::config::{Config, KafkaConfig};
use woostream_core::kafka::reading::{follower, partitions_of, write_end_markers, END_MARKER};
use woostream_core::records::{Delivery, DeliveryOutcome};
use woostream_core::registry::RegistryClient;

/// (shop, customer key) by CRM contact id.
pub type OwnerMap = HashMap<String, (String, String)>;

/// Folds one audit record in: a contact the CRM sink wrote belongs to the customer it wrote it
/// for; a contact it erased belongs to no one.
pub fn owner_seen(owners: &mut OwnerMap, d: &Delivery) {
    if d.sink != "crm" || d.destination != "contacts" {
        return;
    }
    let Some(contact) = &d.message_ts else { return };
    match d.outcome {
        DeliveryOutcome::Posted => {
            owners.insert(contact.clone(), (d.shop_id.clone(), d.alert_id.clone()));
        }
        DeliveryOutcome::Erased => {
            owners.remove(contact);
        }
        _ => {}
    }
}

#[derive(Default)]
struct State {
    owners: OwnerMap,
    /// The next offset to read, per partition.
    next: HashMap<i32, i64>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    kafka: KafkaConfig,
    bootstrap: String,
    topic: String,
    partitions: Vec<i32>,
}

/// The followed record of contact owners.
#[derive(Clone)]
pub struct Owners(Arc<Shared>);

/// How long a catch-up with the audit may take.
const SYNC_LIMIT: Duration = Duration::from_secs(60);

impl Owners {
    /// Starts following the audit topic and returns once everything written to it before
    /// the call has been read (blocking).
    pub fn follow(config: &Config, bootstrap: &str) -> anyhow::Result<Owners> {
        let decoder = match &config.schema_registry {
            None => Decoder::new(),
            Some(r) => Decoder::with_registry(RegistryClient::new(
                &r.url,
                r.username.clone(),
                r.resolved_password(),
            )),
        };
        let topic = config.topics.deliveries.name.clone();
        let consumer = follower(&config.kafka, bootstrap, "crm-inbound-owners", false)?;
        let partitions = partitions_of(&consumer, &topic)?;
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
        }
        consumer
            .assign(&tpl)
            .with_context(|| format!("assigning {topic}"))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            kafka: config.kafka.clone(),
            bootstrap: bootstrap.to_string(),
            topic,
            partitions,
        });
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("crm-owners".into())
            .spawn(move || {
                while !sh.stop.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => {
                            let mut s = sh.state.lock().expect("owners");
                            if m.key() != Some(END_MARKER.as_bytes()) {
                                if let Some(Ok(d)) =
                                    m.payload().map(|v| decoder.decode::<Delivery>(v))
                                {
                                    owner_seen(&mut s.owners, &d);
                                }
                            }
                            s.next.insert(m.partition(), m.offset() + 1);
                            sh.changed.notify_all();
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "Error while following the CRM sink's audit.")
                        }
                        None => {}
                    }
                }
            })
            .context("starting the contact owners' follower")?;
        let owners = Owners(shared);
        owners.sync()?;
        Ok(owners)
    }

    /// Waits until everything written to the audit before now has been read (blocking): a
    /// contact the CRM sink has only just written is known after it.
    pub fn sync(&self) -> anyhow::Result<()> {
        let sh = &self.0;
        let markers = write_end_markers(&sh.kafka, &sh.bootstrap, &sh.topic, &sh.partitions)?;
        let deadline = Instant::now() + SYNC_LIMIT;
        let mut s = sh.state.lock().expect("owners");
        loop {
            let behind = markers
                .iter()
                .any(|(p, o)| s.next.get(p).is_none_or(|n| n <= o));
            if !behind {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "the CRM sink's audit ({}) was not read to its end within {SYNC_LIMIT:?}",
                sh.topic
            );
            s = sh
                .changed
                .wait_timeout(s, left.min(Duration::from_millis(200)))
                .expect("owners")
                .0;
        }
    }

    /// Stops following (the role is stopping).
    pub fn stop(&self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }

    /// The customer woostream wrote `contact` for, if any.
    pub fn of(&self, contact: &str) -> Option<(String, String)> {
        self.0
            .state
            .lock()
            .expect("owners")
            .owners
            .get(contact)
            .cloned()
    }

    /// [`Owners::of`], after catching up with the audit when the contact is not known yet.
    pub async fn of_now(&self, contact: &str) -> anyhow::Result<Option<(String, String)>> {
        if let Some(owner) = self.of(contact) {
            return Ok(Some(owner));
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.sync()).await??;
        Ok(self.of(contact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn delivery(outcome: DeliveryOutcome, customer: &str, contact: &str) -> Delivery {
        Delivery {
            delivery_id: format!("crm:{customer}:1"),
            sink: "crm".into(),
            destination: "contacts".into(),
            alert_id: customer.into(),
            kind: "contact".into(),
            shop_id: "eu".into(),
            correlation_id: "c".into(),
            outcome,
            message_ts: Some(contact.into()),
            thread_ts: None,
            order_id: None,
            priority: "normal".into(),
            reason: None,
            attempts: 1,
            latency_ms: 0,
            delivered_at: Utc::now(),
        }
    }

    #[test]
    fn a_contact_belongs_to_whom_the_sink_wrote_it_for_until_it_is_erased() {
        let mut owners = OwnerMap::new();
        owner_seen(
            &mut owners,
            &delivery(DeliveryOutcome::Posted, "42", "1001"),
        );
        owner_seen(
            &mut owners,
            &delivery(DeliveryOutcome::DeadLettered, "9", "1002"),
        );
        let mut slack = delivery(DeliveryOutcome::Posted, "9", "1003");
        slack.sink = "slack".into();
        owner_seen(&mut owners, &slack);
        assert_eq!(owners.get("1001"), Some(&("eu".into(), "42".into())));
        assert_eq!(owners.len(), 1, "only contacts the CRM sink wrote");
        owner_seen(
            &mut owners,
            &delivery(DeliveryOutcome::Erased, "er-1", "1001"),
        );
        assert!(owners.is_empty());
    }
}
