//! `woostream repartition`: an installation's topics copied into another set of topics (a new
//! `kafka.namespace`, new names, more partitions), so that the enrichers of the new set rebuild
//! every profile from the same events. Adding partitions in place would move customers away
//! from their state; this is the migration instead (see docs/operations/scaling.md).
//!
//! What is copied: every record of the shop topics, the subject keys and the erased-subject
//! list (without them sealed records could not be opened, or an erased person would come
//! back), the deliveries audit (the sinks of the new set know what was posted and post nothing
//! again), models, backtests, checkpoints and the dead letters. Each record keeps its key,
//! value (tombstones too), headers and timestamp; the destination's partitioner places it, so
//! a customer's records stay in order in their new partition. Profiles and alerts are not
//! copied: the new enrichers make them again (alert ids are deterministic, so the audit
//! recognises them). The keys and the erased-subject list are copied first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use woostream_core::config::{Config, TopicsConfig};
use woostream_core::kafka::reading::{read_all_now, reader};

/// What becomes of one topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Copied record by record.
    Copy,
    /// Made again by the new installation's enrichers from the copied events.
    Rebuilt,
    /// Nothing to carry over.
    Skipped,
}

/// One topic's part of the migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The topic's configuration key (`orders`, `subject_keys`, …).
    pub key: &'static str,
    pub from: String,
    pub to: String,
    pub action: Action,
}

fn action_of(key: &str) -> Action {
    match key {
        "profiles" | "alerts" => Action::Rebuilt,
        "transactions_probe" => Action::Skipped,
        _ => Action::Copy,
    }
}

/// Which topics go where, in the order they are copied: keys and the erased-subject list
/// first (a record read before its key is "not yet", but an old record's absent key reads as
/// an erasure). Refuses a destination that is one of the sources.
pub fn plan(from: &TopicsConfig, to: &TopicsConfig) -> Result<Vec<Step>, String> {
    let sources: Vec<&str> = from.all().iter().map(|(_, t)| t.name.as_str()).collect();
    let mut steps: Vec<Step> = from
        .all()
        .iter()
        .zip(to.all())
        .map(|((key, f), (_, t))| Step {
            key,
            from: f.name.clone(),
            to: t.name.clone(),
            action: action_of(key),
        })
        .collect();
    if let Some(s) = steps.iter().find(|s| sources.contains(&s.to.as_str())) {
        return Err(format!(
            "topic {} of the destination is a topic of the source: give the destination its own kafka.namespace or topic names",
            s.to
        ));
    }
    steps.sort_by_key(|s| !matches!(s.key, "subject_keys" | "erased_subjects"));
    Ok(steps)
}

/// What one copied topic came to.
#[derive(Clone, Debug)]
pub struct Copied {
    pub step: Step,
    pub records: u64,
    pub seconds: f64,
}

/// Counts the delivery reports that failed.
#[derive(Default)]
struct Failures(AtomicU64, std::sync::Mutex<Option<String>>);

impl rdkafka::ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0.fetch_add(1, Ordering::Relaxed);
            self.1
                .lock()
                .expect("first failure")
                .get_or_insert(e.to_string());
        }
    }
}

/// Copies `from`'s topics into `to`'s (created with `to`'s settings first). Blocking.
pub fn copy(
    from: &Config,
    to: &Config,
    bootstrap: &str,
    mut report: impl FnMut(&Copied),
) -> anyhow::Result<Vec<Copied>> {
    let steps = plan(&from.topics, &to.topics).map_err(anyhow::Error::msg)?;
    let producer: ThreadedProducer<Failures> =
        woostream_core::kafka::producer_config(&to.kafka, bootstrap)
            .create_with_context(Failures::default())
            .context("creating the producer of the destination")?;
    let failures = |p: &ThreadedProducer<Failures>| p.context().0.load(Ordering::Relaxed);
    let mut done = Vec::new();
    for step in steps.into_iter().filter(|s| s.action == Action::Copy) {
        let started = Instant::now();
        let consumer = reader(&from.kafka, bootstrap, "repartition")?;
        let mut records = 0u64;
        let mut error = None;
        read_all_now(&from.kafka, bootstrap, &consumer, &step.from, |m| {
            if error.is_some() {
                return;
            }
            let mut record = BaseRecord::<[u8], [u8]>::to(&step.to);
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(v) = m.payload() {
                record = record.payload(v);
            }
            if let Some(h) = m.headers() {
                record = record.headers(h.detach());
            }
            if let Some(ms) = m.timestamp().to_millis() {
                record = record.timestamp(ms);
            }
            // A full queue is waited out (the producer sends in the background).
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        r,
                    )) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => {
                        error = Some(format!("writing to {}: {e}", step.to));
                        return;
                    }
                }
            }
            records += 1;
        })
        .with_context(|| format!("reading {}", step.from))?;
        if let Some(e) = error {
            bail!(e);
        }
        producer
            .flush(Duration::from_secs(120))
            .with_context(|| format!("writing {}", step.to))?;
        if failures(&producer) > 0 {
            let first = producer.context().1.lock().expect("first failure").clone();
            bail!(
                "{} record(s) were not written to the destination (first: {})",
                failures(&producer),
                first.unwrap_or_default()
            );
        }
        let copied = Copied {
            step,
            records,
            seconds: started.elapsed().as_secs_f64(),
        };
        report(&copied);
        done.push(copied);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_first_derived_topics_rebuilt_and_no_copy_onto_itself() {
        let from = TopicsConfig::default();
        let mut to = TopicsConfig::default();
        for name in to.names_mut() {
            *name = format!("b.{name}");
        }
        let steps = plan(&from, &to).unwrap();
        assert_eq!(steps.len(), 20);
        assert_eq!(steps[0].key, "subject_keys");
        assert_eq!(steps[1].key, "erased_subjects");
        let action = |key: &str| steps.iter().find(|s| s.key == key).unwrap().action;
        for key in [
            "orders",
            "customers",
            "products",
            "deliveries",
            "models",
            "checkpoints",
        ] {
            assert_eq!(action(key), Action::Copy, "{key}");
        }
        assert_eq!(action("profiles"), Action::Rebuilt);
        assert_eq!(action("alerts"), Action::Rebuilt);
        assert_eq!(action("transactions_probe"), Action::Skipped);
        let orders = steps.iter().find(|s| s.key == "orders").unwrap();
        assert_eq!(
            (orders.from.as_str(), orders.to.as_str()),
            ("woo.orders", "b.woo.orders")
        );
        // Onto itself, or onto another of its own topics: refused.
        assert!(plan(&from, &from).unwrap_err().contains("woo.orders"));
    }
}
