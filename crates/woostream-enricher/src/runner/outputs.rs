//! What the enricher writes and when it may commit: the encoders, the tracking of every
//! output until the broker acknowledges it, profiles coalesced until the commit, and the
//! commit itself (one transaction, or offsets up to the oldest unacknowledged output).

use super::restore::Rebalancer;
use super::writer::Write;
use super::Work;
use crate::partition::CustomerPartition;
use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;
use woostream_core::config::Config;
use woostream_core::contract::codec::{Codecs, Contract, Decoder, Encoder, Framing};
use woostream_core::contract::enriched::{Alert, AlertKey, CustomerProfile, ShopModel};
use woostream_core::contract::events::CustomerKey;
use woostream_core::contract::sink_records::Delivery;
use woostream_core::headers;
use woostream_core::kafka::exact_resume::ResumeGuard;

/// Encoders of what the enricher writes.
#[derive(Clone)]
pub struct Outputs {
    pub customer_key: Encoder<CustomerKey>,
    pub profile: Encoder<CustomerProfile>,
    pub alert_key: Encoder<AlertKey>,
    pub alert: Encoder<Alert>,
    pub model_key: Encoder<String>,
    pub model: Encoder<ShopModel>,
    pub receipt_key: Encoder<String>,
    pub receipt: Encoder<Delivery>,
}

impl Outputs {
    pub(super) fn build(framing_of: impl Fn(&'static str) -> Framing) -> Outputs {
        fn enc<T: Contract>(f: &impl Fn(&'static str) -> Framing) -> Encoder<T> {
            Encoder::new(&f(T::SCHEMA_NAME))
        }
        let f = &framing_of;
        Outputs {
            customer_key: enc(f),
            profile: enc(f),
            alert_key: enc(f),
            alert: enc(f),
            model_key: enc(f),
            model: enc(f),
            receipt_key: enc(f),
            receipt: enc(f),
        }
    }

    /// Encoders and a decoder for `config`: Confluent framing with the subjects registered when
    /// a registry is configured, single-object encoding otherwise.
    pub async fn for_config(config: &Config) -> anyhow::Result<(Outputs, Decoder)> {
        let t = &config.topics;
        let subjects = [
            (t.profiles.name.as_str(), "key", CustomerKey::schema()),
            (t.profiles.name.as_str(), "value", CustomerProfile::schema()),
            (t.alerts.name.as_str(), "key", AlertKey::schema()),
            (t.alerts.name.as_str(), "value", Alert::schema()),
            (t.models.name.as_str(), "key", String::schema()),
            (t.models.name.as_str(), "value", ShopModel::schema()),
            (t.deliveries.name.as_str(), "key", String::schema()),
            (t.deliveries.name.as_str(), "value", Delivery::schema()),
        ];
        let codecs = Codecs::register(config, &subjects)
            .await
            .context("registering the enricher's schemas with the schema registry")?;
        Ok((Outputs::build(|name| codecs.framing(name)), codecs.decoder))
    }
}

/// Tracks the outputs not yet acknowledged, by sequence number, and remembers the first
/// failed delivery: the loop must not commit past it.
#[derive(Default)]
pub struct Deliveries {
    failed: Mutex<Option<String>>,
    outstanding: Mutex<std::collections::BTreeSet<u64>>,
    next: std::sync::atomic::AtomicU64,
}

impl Deliveries {
    /// A sequence number for the next output, outstanding until acknowledged.
    pub(super) fn take(&self) -> u64 {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        self.outstanding
            .lock()
            .expect("deliveries lock")
            .insert(seq);
        seq
    }

    /// Output `seq` is settled: acknowledged, or failed for `failure` (the first failure is
    /// kept; the loop commits nothing past it).
    pub(super) fn settle(&self, seq: u64, failure: Option<String>) {
        self.outstanding
            .lock()
            .expect("deliveries lock")
            .remove(&seq);
        if let Some(why) = failure {
            let mut failed = self.failed.lock().expect("deliveries lock");
            if failed.is_none() {
                *failed = Some(why);
            }
        }
    }

    /// Outputs numbered below this are all acknowledged (or failed).
    pub(super) fn acknowledged_below(&self) -> u64 {
        let outstanding = self.outstanding.lock().expect("deliveries lock");
        outstanding
            .first()
            .copied()
            .unwrap_or_else(|| self.next.load(Ordering::Relaxed))
    }
}

impl ClientContext for Deliveries {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        woostream_core::kafka::stats::record("enricher", &statistics);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let failure = result
            .as_ref()
            .err()
            .map(|(e, m)| format!("{} [{}]: {e}", m.topic(), m.partition()));
        self.settle(seq as u64, failure);
    }
}

pub(super) type OutputProducer = ThreadedProducer<Deliveries>;

/// Next offset to commit per topic and partition (by topic first, so that recording a
/// position looks the topic up by `&str` instead of allocating a key per record).
pub(super) type Positions = HashMap<String, HashMap<i32, i64>>;

/// What was processed and not yet committed, and where each partition must resume.
#[derive(Default)]
pub(super) struct Progress {
    /// Next offset to commit, per input partition, for what was processed since the last commit.
    pub(super) positions: Positions,
    /// Customers erased since the last commit, by input partition: their profile tombstones
    /// (the partitions keep each customer's newest version: `Settings::defer_profiles`).
    pub(super) erased: HashSet<(i32, CustomerKey)>,
    /// Offsets set aside by `Work::commit`, each with the number its outputs stay below,
    /// waiting for those outputs to be acknowledged.
    pub(super) awaiting: VecDeque<(u64, Positions)>,
    /// Checks that each partition resumes exactly at its restored offset (Tansu skips ahead).
    pub(super) resume: ResumeGuard,
}

pub(super) fn merge(into: &mut Positions, from: Positions) {
    for (topic, partitions) in from {
        into.entry(topic).or_default().extend(partitions);
    }
}

impl Work {
    /// Whether anything processed is not committed yet.
    pub(super) fn has_uncommitted(&self) -> bool {
        !self.progress.positions.is_empty()
            || !self.progress.awaiting.is_empty()
            || !self.progress.erased.is_empty()
            || self
                .state
                .customers
                .values()
                .any(CustomerPartition::has_unwritten)
    }

    /// Hands the writer the profiles kept since the last commit: the tombstones first, then
    /// each customer's newest version, which the partitions build now (a customer erased and
    /// then ordering again ends as a profile).
    pub(super) fn write_profiles(&mut self) -> anyhow::Result<()> {
        for (partition, key) in std::mem::take(&mut self.progress.erased) {
            self.write_profile(partition, key, None)?;
        }
        let partitions: Vec<i32> = self.state.customers.keys().copied().collect();
        for partition in partitions {
            let state = self
                .state
                .customers
                .get_mut(&partition)
                .expect("key just listed");
            for (key, profile) in state.take_profiles(&self.state.settings) {
                self.write_profile(partition, key, Some(profile))?;
            }
        }
        Ok(())
    }

    fn write_profile(
        &mut self,
        partition: i32,
        key: CustomerKey,
        profile: Option<CustomerProfile>,
    ) -> anyhow::Result<()> {
        if let Some(p) = &profile {
            self.metrics
                .profile_segments
                .with_label_values(&[p.segment.name()])
                .inc();
        }
        self.io.writer.write(Write::Profile {
            partition,
            key,
            profile: profile.map(Box::new),
        })?;
        self.metrics.profiles.inc();
        Ok(())
    }

    /// Commits the input offsets whose outputs are durable (in the same transaction when
    /// transactional). Without transactions the loop does not wait for acknowledgements: each
    /// call sets aside what was processed since the last one, with the number of the last output
    /// it produced, and commits the sets whose outputs have all been acknowledged since. With
    /// `wait` (revocation, shutdown) it first waits for every output.
    pub(super) fn commit(
        &mut self,
        consumer: &BaseConsumer<Rebalancer>,
        wait: bool,
    ) -> anyhow::Result<()> {
        self.write_profiles()?;
        self.io.writer.flush()?;
        let timeout = Duration::from_millis(self.config.kafka.delivery_timeout_ms);
        if self.io.transactional {
            if self.progress.positions.is_empty() {
                return Ok(());
            }
            // Every output of this transaction must be in the producer before it ends.
            self.io.writer.barrier()?;
            let tpl = offsets_list(&self.progress.positions)?;
            let group = consumer
                .group_metadata()
                .ok_or_else(|| anyhow!("no consumer group metadata"))?;
            self.io
                .producer
                .send_offsets_to_transaction(&tpl, &group, timeout)
                .context("adding the input offsets to the transaction")?;
            self.io
                .producer
                .commit_transaction(timeout)
                .context("committing the transaction")?;
            self.check_deliveries()?;
            self.io
                .producer
                .begin_transaction()
                .context("beginning a transaction")?;
            self.progress.positions.clear();
            self.metrics.commits.inc();
            return Ok(());
        }
        let deliveries = self.io.producer.context();
        if !self.progress.positions.is_empty() {
            let upto = deliveries.next.load(Ordering::Relaxed);
            self.progress
                .awaiting
                .push_back((upto, std::mem::take(&mut self.progress.positions)));
        }
        if wait {
            self.io.writer.barrier()?;
            self.io
                .producer
                .flush(timeout)
                .context("waiting for the outputs to be acknowledged")?;
        }
        self.check_deliveries()?;
        let acknowledged = deliveries.acknowledged_below();
        let mut ready = Positions::new();
        while self
            .progress
            .awaiting
            .front()
            .is_some_and(|(upto, _)| *upto <= acknowledged)
        {
            let (_, positions) = self.progress.awaiting.pop_front().expect("checked");
            merge(&mut ready, positions);
        }
        if ready.is_empty() {
            return Ok(());
        }
        consumer
            .commit(
                &offsets_list(&ready)?,
                if wait {
                    CommitMode::Sync
                } else {
                    CommitMode::Async
                },
            )
            .context("committing input offsets")?;
        self.metrics.commits.inc();
        Ok(())
    }

    pub(super) fn check_deliveries(&self) -> anyhow::Result<()> {
        match self
            .io
            .producer
            .context()
            .failed
            .lock()
            .expect("deliveries lock")
            .take()
        {
            Some(why) => bail!("an output was not delivered ({why}); not committing past it"),
            None => Ok(()),
        }
    }
}

pub(super) fn offsets_list(positions: &Positions) -> anyhow::Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partitions) in positions {
        for (p, offset) in partitions {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*offset))?;
        }
    }
    Ok(tpl)
}

pub(super) fn record_headers(correlation_id: &str, schema: &str) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: headers::CORRELATION_ID,
            value: Some(correlation_id),
        })
        .insert(Header {
            key: headers::SCHEMA,
            value: Some(schema),
        })
}
