//! The enricher at the Kafka edge: a consume → process → produce → commit loop on one thread,
//! as rust-rdkafka's examples write it, with state restored on assignment and handed back on
//! revocation.
//!
//! Delivery, in two layers:
//! - With transactions (real Kafka), each commit interval is one transaction holding the
//!   profiles, the alerts and the input offsets; a zombie instance is fenced by the group
//!   metadata and its transactional id.
//! - Underneath, and alone on brokers without transactions (Tansu): offsets are committed only
//!   after every output of the processed records is acknowledged, and a restarted or new owner
//!   of a partition restores each customer's newest profile *below its committed offset*, then
//!   replays from there. The replay recomputes the same profile versions and alert ids, so
//!   consumers that drop what they already applied see every change exactly once.
//!
//! Partitions are assigned with the range assignor so that partition n of the orders and the
//! customers topics always land on the same instance (both are keyed by customer).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use woostream_core::codec::{Contract, Decoder, Encoder, Framing};
use woostream_core::config::{Config, Transactions};
use woostream_core::events::{
    Action, CustomerEvent, CustomerKey, OrderEvent, ProductEvent, ReviewEvent,
};
use woostream_core::headers;
use woostream_core::insights::{Alert, AlertKey, CustomerProfile, ShopModel};
use woostream_core::kafka;
use woostream_core::ops::Readiness;
use woostream_core::registry::RegistryClient;
use woostream_core::resume::{ResumeGuard, Verdict};

use crate::alerts::Origin;
use crate::customer::ScoringSettings;
use crate::metrics::Metrics;
use crate::model::topic::{self as models, Models};
use crate::partition::{CustomerPartition, Output, Settings};
use crate::products::{product_key, Catalogue, CatalogueSettings};
use woostream_core::kafka::reading::{read_to_end, reader};

/// Encoders of what the enricher writes.
#[derive(Clone)]
pub struct Outputs {
    pub customer_key: Encoder<CustomerKey>,
    pub profile: Encoder<CustomerProfile>,
    pub alert_key: Encoder<AlertKey>,
    pub alert: Encoder<Alert>,
    pub model_key: Encoder<String>,
    pub model: Encoder<ShopModel>,
}

impl Outputs {
    fn build(framing_of: impl Fn(&'static str) -> Framing) -> Outputs {
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
        }
    }

    /// Encoders and a decoder for `config`: Confluent framing with the subjects registered when
    /// a registry is configured, single-object encoding otherwise.
    pub async fn for_config(config: &Config) -> anyhow::Result<(Outputs, Decoder)> {
        let Some(r) = &config.schema_registry else {
            return Ok((Outputs::build(|_| Framing::SingleObject), Decoder::new()));
        };
        let client = RegistryClient::new(&r.url, r.username.clone(), r.password.clone());
        let t = &config.topics;
        let subjects = [
            (t.profiles.name.as_str(), "key", CustomerKey::schema()),
            (t.profiles.name.as_str(), "value", CustomerProfile::schema()),
            (t.alerts.name.as_str(), "key", AlertKey::schema()),
            (t.alerts.name.as_str(), "value", Alert::schema()),
            (t.models.name.as_str(), "key", String::schema()),
            (t.models.name.as_str(), "value", ShopModel::schema()),
        ];
        let framings = woostream_core::codec::register_subjects(&client, &subjects)
            .await
            .context("registering the enricher's schemas with the schema registry")?;
        Ok((
            Outputs::build(|name| framings[name].clone()),
            Decoder::with_registry(client),
        ))
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
    fn take(&self) -> u64 {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        self.outstanding
            .lock()
            .expect("deliveries lock")
            .insert(seq);
        seq
    }

    /// Outputs numbered below this are all acknowledged (or failed).
    fn acknowledged_below(&self) -> u64 {
        let outstanding = self.outstanding.lock().expect("deliveries lock");
        outstanding
            .first()
            .copied()
            .unwrap_or_else(|| self.next.load(Ordering::Relaxed))
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        self.outstanding
            .lock()
            .expect("deliveries lock")
            .remove(&(seq as u64));
        if let Err((e, m)) = result {
            let mut failed = self.failed.lock().expect("deliveries lock");
            if failed.is_none() {
                *failed = Some(format!("{} [{}]: {e}", m.topic(), m.partition()));
            }
        }
    }
}

type OutputProducer = ThreadedProducer<Deliveries>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Input {
    Orders,
    Customers,
    Products,
    Reviews,
}

/// Next offset to commit per (topic, partition).
type Positions = HashMap<(String, i32), i64>;

/// Everything the loop and the rebalance callbacks share. Only the polling thread touches it:
/// the callbacks run inside `poll`, while the loop does not hold the lock.
struct Work {
    config: Config,
    bootstrap: String,
    settings: Settings,
    catalogue_settings: CatalogueSettings,
    outputs: Outputs,
    decoder: Decoder,
    with_registry: bool,
    runtime: tokio::runtime::Handle,
    producer: Arc<OutputProducer>,
    /// Writes restore markers outside any transaction.
    marker_producer: rdkafka::producer::FutureProducer,
    transactional: bool,
    models: Arc<Models>,
    metrics: Metrics,
    customers: HashMap<i32, CustomerPartition>,
    catalogues: HashMap<(Input, i32), Catalogue>,
    /// Next offset to commit, per input partition, for what was processed since the last commit.
    positions: HashMap<(String, i32), i64>,
    /// Each customer's newest profile (or tombstone) since the last commit, by input partition.
    unwritten_profiles: HashMap<(i32, CustomerKey), Option<CustomerProfile>>,
    /// Offsets set aside by [`Work::commit`], each with the number its outputs stay below,
    /// waiting for those outputs to be acknowledged.
    awaiting: std::collections::VecDeque<(u64, Positions)>,
    leader: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    /// Checks that each partition resumes exactly at its restored offset (Tansu skips ahead).
    resume: ResumeGuard,
    failure: Option<anyhow::Error>,
    /// The loop ended with an error.
    stopped: bool,
}

impl Work {
    fn input(&self, topic: &str) -> Option<Input> {
        let t = &self.config.topics;
        [
            (&t.orders, Input::Orders),
            (&t.customers, Input::Customers),
            (&t.products, Input::Products),
            (&t.reviews, Input::Reviews),
        ]
        .into_iter()
        .find(|(c, _)| c.name == topic)
        .map(|(_, i)| i)
    }

    fn decode<T: Contract>(&self, bytes: &[u8]) -> Result<T, woostream_core::codec::CodecError> {
        if self.with_registry {
            self.runtime.block_on(self.decoder.decode_async(bytes))
        } else {
            self.decoder.decode(bytes)
        }
    }

    fn process(&mut self, m: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        self.positions
            .insert((topic.to_string(), partition), offset + 1);
        self.metrics.records.with_label_values(&[topic]).inc();
        let (Some(input), Some(payload)) = (self.input(topic), m.payload()) else {
            return Ok(());
        };
        let output = match self.apply(input, partition, offset, m.key(), payload) {
            Ok(output) => output,
            Err(e) => {
                // The record stays in its topic; nothing downstream depends on it.
                self.metrics.unreadable.with_label_values(&[topic]).inc();
                tracing::warn!(%topic, partition, offset, error = %e, "Skipping an input record that cannot be read.");
                return Ok(());
            }
        };
        self.emit(output, partition)
    }

    /// The pure part: one decoded input record to its output.
    fn apply(
        &mut self,
        input: Input,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> anyhow::Result<Output> {
        Ok(match input {
            Input::Orders => {
                let key: CustomerKey =
                    self.decode(key.ok_or_else(|| anyhow!("order record without a key"))?)?;
                let event: OrderEvent = self.decode(payload)?;
                let model = self.models.get(&key.shop_id);
                let state = self
                    .customers
                    .entry(partition)
                    .or_insert_with(|| CustomerPartition::new(partition));
                state.on_order(&key, &event, offset, &model, &self.settings)
            }
            Input::Customers => {
                let event: CustomerEvent = self.decode(payload)?;
                if event.action != Action::Deleted {
                    return Ok(Output::default());
                }
                let key: CustomerKey =
                    self.decode(key.ok_or_else(|| anyhow!("customer record without a key"))?)?;
                let state = self
                    .customers
                    .entry(partition)
                    .or_insert_with(|| CustomerPartition::new(partition));
                state.erase(&key)
            }
            Input::Products => {
                let event: ProductEvent = self.decode(payload)?;
                let e = &event.envelope;
                let origin = origin_of(e, event.product.as_ref().and_then(|p| p.modified_at));
                let alerts = self
                    .catalogues
                    .entry((input, partition))
                    .or_default()
                    .on_product(&event, &self.catalogue_settings, &origin);
                let key = product_key(&e.shop_id, event.product_id);
                Output {
                    profiles: Vec::new(),
                    alerts: alerts.into_iter().map(|a| (key.clone(), a)).collect(),
                }
            }
            Input::Reviews => {
                let event: ReviewEvent = self.decode(payload)?;
                let e = &event.envelope;
                let origin = origin_of(e, event.review.as_ref().and_then(|r| r.created_at));
                let alerts = self
                    .catalogues
                    .entry((input, partition))
                    .or_default()
                    .on_review(&event, &self.catalogue_settings, &origin);
                let key = product_key(
                    &e.shop_id,
                    event.review.as_ref().map_or(0, |r| r.product_id),
                );
                Output {
                    profiles: Vec::new(),
                    alerts: alerts.into_iter().map(|a| (key.clone(), a)).collect(),
                }
            }
        })
    }

    /// Sends the output's alerts, and keeps its profiles until the next commit: within a
    /// commit interval only each customer's newest profile is written (versions stay
    /// increasing, so consumers that keep the newest version see the same result), which in a
    /// flash sale saves most profile records.
    fn emit(&mut self, output: Output, partition: i32) -> anyhow::Result<()> {
        let t = &self.config.topics;
        for (key, alert) in &output.alerts {
            let k = self.outputs.alert_key.encode(key)?;
            let v = self.outputs.alert.encode(alert)?;
            let hs = record_headers(&alert.correlation_id, Alert::SCHEMA_NAME);
            self.send(
                BaseRecord::with_opaque_to(&t.alerts.name, 0)
                    .key(&k)
                    .payload(&v)
                    .headers(hs),
            )?;
            self.metrics
                .alerts
                .with_label_values(&[alert.kind.as_str()])
                .inc();
        }
        for (key, profile) in output.profiles {
            self.unwritten_profiles.insert((partition, key), profile);
        }
        Ok(())
    }

    /// Writes the profiles kept since the last commit, each to the partition number of its
    /// input, so that the profile topic stays the changelog of exactly that partition.
    fn write_profiles(&mut self) -> anyhow::Result<()> {
        let profiles = std::mem::take(&mut self.unwritten_profiles);
        let topic = &self.config.topics.profiles.name;
        for ((partition, key), profile) in &profiles {
            let k = self.outputs.customer_key.encode(key)?;
            let v = profile
                .as_ref()
                .map(|p| self.outputs.profile.encode(p))
                .transpose()?;
            let correlation = profile.as_ref().map_or("", |p| p.correlation_id.as_str());
            let hs = record_headers(correlation, CustomerProfile::SCHEMA_NAME);
            let mut record = BaseRecord::with_opaque_to(topic, 0)
                .key(&k)
                .partition(*partition)
                .headers(hs);
            if let Some(v) = &v {
                record = record.payload(v);
            }
            self.send(record)?;
            self.metrics.profiles.inc();
        }
        Ok(())
    }

    fn send(&self, mut record: BaseRecord<'_, Vec<u8>, Vec<u8>, usize>) -> anyhow::Result<()> {
        let deliveries = self.producer.context();
        record.delivery_opaque = deliveries.take() as usize;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Back-pressure: wait for deliveries to make room.
                    record = r;
                    let _ = self.producer.flush(Duration::from_millis(10));
                }
                Err((e, r)) => {
                    deliveries
                        .outstanding
                        .lock()
                        .expect("deliveries lock")
                        .remove(&(r.delivery_opaque as u64));
                    bail!("producing to {}: {e}", r.topic)
                }
            }
        }
    }

    /// Commits the input offsets whose outputs are durable (in the same transaction when
    /// transactional). Without transactions the loop does not wait for acknowledgements: each
    /// call sets aside what was processed since the last one, with the number of the last output
    /// it produced, and commits the sets whose outputs have all been acknowledged since. With
    /// `wait` (revocation, shutdown) it first waits for every output.
    fn commit(&mut self, consumer: &BaseConsumer<Rebalancer>, wait: bool) -> anyhow::Result<()> {
        self.write_profiles()?;
        let timeout = Duration::from_millis(self.config.kafka.delivery_timeout_ms);
        if self.transactional {
            if self.positions.is_empty() {
                return Ok(());
            }
            let tpl = offsets_list(&self.positions)?;
            let group = consumer
                .group_metadata()
                .ok_or_else(|| anyhow!("no consumer group metadata"))?;
            self.producer
                .send_offsets_to_transaction(&tpl, &group, timeout)
                .context("adding the input offsets to the transaction")?;
            self.producer
                .commit_transaction(timeout)
                .context("committing the transaction")?;
            self.check_deliveries()?;
            self.producer
                .begin_transaction()
                .context("beginning a transaction")?;
            self.positions.clear();
            self.metrics.commits.inc();
            return Ok(());
        }
        let deliveries = self.producer.context();
        if !self.positions.is_empty() {
            let upto = deliveries.next.load(Ordering::Relaxed);
            self.awaiting
                .push_back((upto, std::mem::take(&mut self.positions)));
        }
        if wait {
            self.producer
                .flush(timeout)
                .context("waiting for the outputs to be acknowledged")?;
        }
        self.check_deliveries()?;
        let acknowledged = deliveries.acknowledged_below();
        let mut ready: HashMap<(String, i32), i64> = HashMap::new();
        while self
            .awaiting
            .front()
            .is_some_and(|(upto, _)| *upto <= acknowledged)
        {
            let (_, positions) = self.awaiting.pop_front().expect("checked");
            ready.extend(positions);
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

    fn check_deliveries(&self) -> anyhow::Result<()> {
        match self
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

    fn revoke(
        &mut self,
        consumer: &BaseConsumer<Rebalancer>,
        tpl: &TopicPartitionList,
    ) -> anyhow::Result<()> {
        // After a fatal error nothing more is committed: the next owner replays from the last
        // good commit.
        if !self.stopped {
            self.commit(consumer, true)?;
        }
        for e in tpl.elements() {
            self.resume.forget(e.topic(), e.partition());
            match self.input(e.topic()) {
                Some(Input::Orders) => {
                    self.customers.remove(&e.partition());
                    if e.partition() == 0 {
                        self.leader.store(false, Ordering::Relaxed);
                    }
                }
                Some(kind @ (Input::Products | Input::Reviews)) => {
                    self.catalogues.remove(&(kind, e.partition()));
                }
                _ => {}
            }
        }
        self.update_gauges();
        tracing::info!(
            partitions = tpl.count(),
            "Partitions revoked; their state is dropped."
        );
        Ok(())
    }

    /// Restores the state of newly assigned partitions and returns where processing of each
    /// starts: exactly where its restored state ends.
    fn assign(
        &mut self,
        consumer: &BaseConsumer<Rebalancer>,
        tpl: &TopicPartitionList,
    ) -> anyhow::Result<TopicPartitionList> {
        self.ready.store(false, Ordering::Relaxed);
        let started = Instant::now();
        let committed = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(30))
            .context("reading committed offsets")?;
        let restore_reader = reader(&self.config.kafka, &self.bootstrap, "enricher-restore")?;
        // Processing must start exactly where the restored state ends, so the positions are
        // given explicitly rather than left to the group's answer at fetch time.
        let mut start = TopicPartitionList::new();
        for e in committed.elements() {
            let committed = match e.offset() {
                Offset::Offset(n) => n,
                _ => 0,
            };
            start.add_partition_offset(
                e.topic(),
                e.partition(),
                if committed > 0 {
                    Offset::Offset(committed)
                } else {
                    Offset::Beginning
                },
            )?;
            self.resume.expect(e.topic(), e.partition(), committed);
            match self.input(e.topic()) {
                Some(Input::Orders) => {
                    self.restore_customers(&restore_reader, e.partition(), committed)?;
                    if e.partition() == 0 {
                        self.leader.store(true, Ordering::Relaxed);
                    }
                }
                Some(kind @ (Input::Products | Input::Reviews)) => self.replay_catalogue(
                    &restore_reader,
                    kind,
                    e.topic(),
                    e.partition(),
                    committed,
                )?,
                _ => {}
            }
        }
        self.update_gauges();
        self.metrics
            .restore_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            partitions = tpl.count(),
            customers = self.metrics.customers.get(),
            seconds = started.elapsed().as_secs_f64(),
            "Partitions assigned and their state restored."
        );
        Ok(start)
    }

    /// The newest profile of each customer written for an input offset below `committed`.
    fn restore_customers(
        &mut self,
        reader: &woostream_core::kafka::reading::Reader,
        partition: i32,
        committed: i64,
    ) -> anyhow::Result<()> {
        let mut latest: HashMap<(String, String), CustomerProfile> = HashMap::new();
        let topic = self.config.topics.profiles.name.clone();
        let end = self.restore_marker(&topic, partition)?;
        let mut failure = None;
        let read = read_to_end(
            reader,
            &topic,
            &[(partition, Some(end))],
            Duration::from_secs(60),
            |m| {
                let key: CustomerKey = match m.key().map(|k| self.decode(k)) {
                    Some(Ok(k)) => k,
                    _ => return,
                };
                match m.payload() {
                    None => {
                        latest.remove(&(key.shop_id, key.customer));
                    }
                    Some(v) => match self.decode::<CustomerProfile>(v) {
                        Ok(p) if p.source_offset < committed => {
                            latest.insert((key.shop_id, key.customer), p);
                        }
                        Ok(_) => {}
                        Err(e) => failure = Some(e),
                    },
                }
            },
        )?;
        if let Some(e) = failure {
            bail!("restoring partition {partition} from {topic}: a profile cannot be read: {e}");
        }
        self.metrics
            .restored_records
            .with_label_values(&[&topic])
            .inc_by(read);
        let mut state = CustomerPartition::new(partition);
        for p in latest.values() {
            state.restore(p);
        }
        tracing::info!(
            %topic,
            partition,
            committed,
            marker = end,
            read,
            customers = state.len(),
            "Customers restored."
        );
        self.customers.insert(partition, state);
        Ok(())
    }

    /// Writes a marker to the profile partition and returns its offset: everything before it
    /// is what the partition held, however the broker reports its end (Tansu's high
    /// watermark can lag behind). The marker is a tombstone for a key no customer has, with
    /// the `woostream-marker` header, so consumers and compaction drop it.
    fn restore_marker(&self, topic: &str, partition: i32) -> anyhow::Result<i64> {
        let key = CustomerKey {
            shop_id: String::new(),
            customer: format!("{}{}", crate::view::MARKER_PREFIX, uuid::Uuid::new_v4()),
        };
        let k = self.outputs.customer_key.encode(&key)?;
        let headers = OwnedHeaders::new().insert(Header {
            key: MARKER_HEADER,
            value: Some("restore"),
        });
        let record = rdkafka::producer::FutureRecord::<Vec<u8>, Vec<u8>>::to(topic)
            .key(&k)
            .partition(partition)
            .headers(headers);
        let delivery = self
            .runtime
            .block_on(self.marker_producer.send(record, Duration::from_secs(30)))
            .map_err(|(e, _)| e)
            .with_context(|| format!("writing the restore marker to {topic}[{partition}]"))?;
        Ok(delivery.offset)
    }

    /// Stock bands and seen reviews: the input replayed up to the committed offset, silently.
    fn replay_catalogue(
        &mut self,
        reader: &woostream_core::kafka::reading::Reader,
        kind: Input,
        topic: &str,
        partition: i32,
        committed: i64,
    ) -> anyhow::Result<()> {
        let mut catalogue = Catalogue::default();
        let settings = self.catalogue_settings.clone();
        let read = read_to_end(
            reader,
            topic,
            &[(partition, Some(committed))],
            Duration::from_secs(60),
            |m| {
                let Some(payload) = m.payload() else { return };
                if kind == Input::Products {
                    if let Ok(event) = self.decode::<ProductEvent>(payload) {
                        let origin = origin_of(&event.envelope, None);
                        catalogue.on_product(&event, &settings, &origin);
                    }
                } else if let Ok(event) = self.decode::<ReviewEvent>(payload) {
                    let origin = origin_of(&event.envelope, None);
                    catalogue.on_review(&event, &settings, &origin);
                }
            },
        )?;
        self.metrics
            .restored_records
            .with_label_values(&[topic])
            .inc_by(read);
        self.catalogues.insert((kind, partition), catalogue);
        Ok(())
    }

    fn update_gauges(&self) {
        self.metrics
            .customers
            .set(self.customers.values().map(|c| c.len() as i64).sum());
        self.metrics
            .products
            .set(self.catalogues.values().map(|c| c.products() as i64).sum());
        self.metrics
            .partitions
            .set((self.customers.len() + self.catalogues.len()) as i64);
    }
}

fn origin_of<'a>(
    e: &'a woostream_core::events::Envelope,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Origin<'a> {
    Origin {
        shop_id: &e.shop_id,
        occurred_at: at.unwrap_or(e.received_at),
        correlation_id: &e.correlation_id,
        event_id: &e.event_id,
    }
}

/// Header of restore markers in the profile topic.
pub const MARKER_HEADER: &str = "woostream-marker";

fn offsets_list(positions: &HashMap<(String, i32), i64>) -> anyhow::Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, p), offset) in positions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*offset))?;
    }
    Ok(tpl)
}

fn record_headers(correlation_id: &str, schema: &str) -> OwnedHeaders {
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

/// Restores state on assignment and commits on revocation, inside the consumer's poll.
pub struct Rebalancer {
    work: Arc<Mutex<Work>>,
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    // The whole rebalance is ours rather than rdkafka's default (assign, then post_rebalance):
    // the partitions must not be assigned before their state is restored, or librdkafka
    // fetches ahead from the committed offsets during the restore and, when they are then
    // assigned again at those offsets, carries on from where that fetch got to.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr::*;
        let mut work = self.work.lock().expect("work lock");
        match err {
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let start = match work.assign(consumer, tpl) {
                    Ok(start) => start,
                    Err(e) => {
                        // The loop stops on the failure; the assignment is still taken so
                        // that the group stays consistent until then.
                        work.failure.get_or_insert(e);
                        tpl.clone()
                    }
                };
                if let Err(e) = consumer.assign(&start) {
                    work.failure
                        .get_or_insert(anyhow!("assigning the partitions: {e}"));
                }
                work.ready.store(true, Ordering::Relaxed);
            }
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Err(e) = work.revoke(consumer, tpl) {
                    work.failure.get_or_insert(e);
                }
                if let Err(e) = consumer.unassign() {
                    work.failure
                        .get_or_insert(anyhow!("releasing the partitions: {e}"));
                }
            }
            other => tracing::error!(error = ?other, "Rebalance error."),
        }
    }
}

pub struct Running {
    pub thread: std::thread::JoinHandle<anyhow::Result<()>>,
    pub model_thread: std::thread::JoinHandle<()>,
    /// Whether this enricher publishes in Kafka transactions.
    pub transactional: bool,
}

impl Running {
    /// Waits for the enricher to stop (after `shutdown`, or on a fatal error).
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = tokio::task::spawn_blocking(move || {
            let r = self
                .thread
                .join()
                .map_err(|_| anyhow!("the enricher thread panicked"))?;
            let _ = self.model_thread.join();
            r
        })
        .await?;
        result
    }
}

/// A transactional id that is stable for this instance across restarts (the pod name on
/// Kubernetes), so that a restarted instance fences its own zombie.
fn transactional_id(config: &Config) -> String {
    let instance = config
        .enricher
        .instance_id
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "local".into());
    format!("{}-{instance}", config.enricher.group_id)
}

fn create_producer(
    config: &Config,
    bootstrap: &str,
    transactional: bool,
) -> anyhow::Result<OutputProducer> {
    let mut c = kafka::producer_config(&config.kafka, bootstrap);
    if transactional {
        c.set("transactional.id", transactional_id(config));
    }
    c.create_with_context(Deliveries::default())
        .context("creating the enricher's producer")
}

/// Finds out whether the broker really ends transactions by committing one marker in a
/// transaction to the probe topic, then begins the first transaction of the run. Initialising
/// and beginning prove nothing: Tansu 0.6 accepts both and refuses the commit, and the
/// transaction it then leaves open would pin every read_committed reader of the partition it
/// wrote to — so the marker goes to a topic that nobody reads.
fn probe_transactions(
    producer: &OutputProducer,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    producer
        .init_transactions(timeout)
        .context("initialising transactions")?;
    producer
        .begin_transaction()
        .context("beginning the probe transaction")?;
    let seq = producer.context().take() as usize;
    producer
        .send(
            BaseRecord::<str, [u8], usize>::with_opaque_to(topic, seq)
                .key("transactions-probe")
                .payload(&[]),
        )
        .map_err(|(e, _)| anyhow!(e))
        .with_context(|| format!("writing the probe marker to {topic}"))?;
    producer
        .commit_transaction(timeout)
        .context("committing the probe transaction")?;
    producer
        .begin_transaction()
        .context("beginning a transaction")
}

/// Starts the enricher; it runs until `shutdown` or a fatal error.
pub async fn start(
    config: &Config,
    bootstrap: &str,
    registry: &prometheus::Registry,
    readiness: &Readiness,
    shutdown: CancellationToken,
    create_topics: bool,
) -> anyhow::Result<Running> {
    let metrics = Metrics::register(registry).context("registering enricher metrics")?;
    if create_topics {
        kafka::ensure_topics(&config.kafka, bootstrap, &config.topics).await?;
    }
    let (outputs, decoder) = Outputs::for_config(config).await?;
    let with_registry = config.schema_registry.is_some();
    let runtime = tokio::runtime::Handle::current();
    let e = &config.enricher;
    let settings = Settings {
        scoring: ScoringSettings {
            clv_months: e.clv_months,
            monthly_discount_rate: e.monthly_discount_rate,
        },
        high_value_order: e
            .high_value_order()
            .map_err(|m| anyhow!("enricher.high_value_order: {m}"))?,
    };
    let catalogue_settings = CatalogueSettings {
        default_low_stock: e.default_low_stock,
        negative_review_max_rating: e.negative_review_max_rating,
    };
    let models = Arc::new(Models::new(e));
    // The follower also stops when the loop ends on its own (a fatal error).
    let loop_ended = shutdown.child_token();
    let model_thread = models::follow(
        models.clone(),
        config,
        bootstrap,
        decoder.clone(),
        runtime.clone(),
        metrics.clone(),
        loop_ended.clone(),
    )?;

    let timeout = Duration::from_millis(config.kafka.delivery_timeout_ms);
    let (producer, transactional) = {
        let (config, bootstrap) = (config.clone(), bootstrap.to_string());
        tokio::task::spawn_blocking(move || -> anyhow::Result<(OutputProducer, bool)> {
            if config.enricher.transactions == Transactions::Off {
                return Ok((create_producer(&config, &bootstrap, false)?, false));
            }
            let producer = create_producer(&config, &bootstrap, true)?;
            let probe_topic = &config.topics.transactions_probe.name;
            match probe_transactions(&producer, probe_topic, timeout) {
                Ok(()) => Ok((producer, true)),
                Err(e) if config.enricher.transactions == Transactions::Auto => {
                    tracing::warn!(error = %format!("{e:#}"), "The broker does not end transactions; relying on profile versions and alert ids for exactly-once effect.");
                    drop(producer);
                    Ok((create_producer(&config, &bootstrap, false)?, false))
                }
                Err(e) => Err(e.context(format!("enricher.transactions is on but the broker did not commit a transaction to {probe_topic}"))),
            }
        })
        .await??
    };
    tracing::info!(transactional, "Enricher producer ready.");

    let ready = readiness.condition("enricher");
    let leader = Arc::new(AtomicBool::new(false));
    let work = Arc::new(Mutex::new(Work {
        config: config.clone(),
        bootstrap: bootstrap.to_string(),
        settings,
        catalogue_settings,
        outputs: outputs.clone(),
        decoder: decoder.clone(),
        with_registry,
        runtime: runtime.clone(),
        producer: Arc::new(producer),
        marker_producer: kafka::create_producer(&config.kafka, bootstrap)?,
        transactional,
        models,
        metrics: metrics.clone(),
        customers: HashMap::new(),
        catalogues: HashMap::new(),
        positions: HashMap::new(),
        awaiting: Default::default(),
        unwritten_profiles: HashMap::new(),
        leader: leader.clone(),
        ready: ready.clone(),
        resume: ResumeGuard::default(),
        failure: None,
        stopped: false,
    }));
    let consumer: BaseConsumer<Rebalancer> = kafka::client_config(&config.kafka, bootstrap)
        .set("group.id", &e.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", e.session_timeout_ms.to_string())
        .create_with_context(Rebalancer { work: work.clone() })
        .context("creating the enricher's consumer")?;
    let t = &config.topics;
    let inputs = [
        t.orders.name.as_str(),
        t.customers.name.as_str(),
        t.products.name.as_str(),
        t.reviews.name.as_str(),
    ];
    consumer
        .subscribe(&inputs)
        .context("subscribing to the shop topics")?;
    ready.store(true, Ordering::Relaxed);

    if e.refit_interval_secs > 0 {
        spawn_refit(
            config.clone(),
            bootstrap.to_string(),
            decoder,
            outputs,
            leader,
            metrics,
            shutdown.clone(),
        );
    }

    let interval = Duration::from_millis(e.commit_interval_ms);
    let thread = std::thread::Builder::new()
        .name("enricher".into())
        .spawn(move || {
            let result = run(consumer, work, interval, shutdown);
            loop_ended.cancel();
            result
        })
        .context("spawning the enricher thread")?;
    Ok(Running {
        thread,
        model_thread,
        transactional,
    })
}

/// The loop: poll, process, commit every `interval`; commit once more on shutdown.
fn run(
    consumer: BaseConsumer<Rebalancer>,
    work: Arc<Mutex<Work>>,
    interval: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut last_commit = Instant::now();
    let result = (|| -> anyhow::Result<()> {
        while !shutdown.is_cancelled() {
            let polled = consumer.poll(Duration::from_millis(100));
            let mut w = work.lock().expect("work lock");
            if let Some(e) = w.failure.take() {
                return Err(e);
            }
            match polled {
                Some(Ok(m)) => match w.resume.check(m.topic(), m.partition(), m.offset()) {
                    Verdict::Process => w.process(&m)?,
                    Verdict::Skip => {}
                    Verdict::SeekTo(offset) => {
                        tracing::info!(topic = m.topic(), partition = m.partition(), expected_before = m.offset(), seek = offset, "The broker resumed past the committed offset; reading again from further back.");
                        let to = if offset > 0 {
                            Offset::Offset(offset)
                        } else {
                            Offset::Beginning
                        };
                        consumer
                            .seek(m.topic(), m.partition(), to, Duration::from_secs(10))
                            .context("seeking back to the committed offset")?;
                    }
                },
                Some(Err(e)) => tracing::warn!(error = %e, "Kafka consumer error."),
                None => {}
            }
            if !w.resume.is_empty() {
                for (topic, partition, offset) in w.resume.stalled(Instant::now()) {
                    tracing::info!(%topic, partition, seek = offset, "Nothing arrived after resuming; reading again from further back.");
                    let to = if offset > 0 {
                        Offset::Offset(offset)
                    } else {
                        Offset::Beginning
                    };
                    consumer
                        .seek(&topic, partition, to, Duration::from_secs(10))
                        .context("seeking back to the committed offset")?;
                }
            }
            if last_commit.elapsed() >= interval {
                w.commit(&consumer, false)?;
                w.update_gauges();
                last_commit = Instant::now();
            }
        }
        work.lock().expect("work lock").commit(&consumer, true)
    })();
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "The enricher stops.");
        work.lock().expect("work lock").stopped = true;
    }
    // Leaving the group (inside drop) runs the revoke callback once more.
    drop(consumer);
    result
}

/// Every `refit_interval_secs`, the instance that owns orders partition 0 refits all shops.
fn spawn_refit(
    config: Config,
    bootstrap: String,
    decoder: Decoder,
    outputs: Outputs,
    leader: Arc<AtomicBool>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let producer = match kafka::create_producer(&config.kafka, &bootstrap) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "No model refits: cannot create a producer.");
                return;
            }
        };
        let interval = Duration::from_secs(config.enricher.refit_interval_secs);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if !leader.load(Ordering::Relaxed) {
                continue;
            }
            match models::fit_and_publish(
                &config,
                &bootstrap,
                &decoder,
                &producer,
                &outputs.model,
                &outputs.model_key,
            )
            .await
            {
                Ok(fitted) => {
                    metrics.fits.with_label_values(&["ok"]).inc();
                    tracing::info!(shops = fitted.len(), "Refitted the models.");
                }
                Err(e) => {
                    metrics.fits.with_label_values(&["error"]).inc();
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "Model refit failed; the current models stay."
                    );
                }
            }
        }
    });
}
