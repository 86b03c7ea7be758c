//! Rebalancing: a revoked partition's state is committed and kept for the rest of the
//! rebalance; a newly assigned partition keeps that state if it came back, or is assigned
//! paused and restored from the profile topic below its committed offset by the loop, one
//! partition at a time between polls (outside the rebalance callback, so a long restore never
//! outlasts `max.poll.interval.ms`, and the partitions that need nothing go on meanwhile).
//! The instance is ready once nothing waits to be restored.

use super::process::origin_of;
use super::{Input, Work, ROLE};
use crate::partition::CustomerPartition;
use crate::products::ProductWatch;
use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use woostream_core::contract::enriched::CustomerProfile;
use woostream_core::contract::events::{CustomerKey, ProductEvent, ReviewEvent};
use woostream_core::kafka::reading::{read_to_end, reader};

/// Partitions being restored, and the state revoked in the rebalance under way.
#[derive(Default)]
pub(super) struct Restores {
    /// The state of partitions revoked in the rebalance under way, with the offset it was
    /// committed at: a partition assigned back to this instance at that offset keeps it
    /// instead of restoring it (an eager rebalance revokes every partition, moves few).
    pub(super) parked: HashMap<(String, i32), (i64, Parked)>,
    /// Partitions assigned paused, whose state the loop restores next, oldest first.
    pub(super) restoring: VecDeque<Restoring>,
    /// When the restore of the current assignment began.
    pub(super) restore_started: Option<Instant>,
    /// Reads the profile and product topics for restores (made at the first one).
    pub(super) restore_reader: Option<woostream_core::kafka::reading::Reader>,
}

/// A partition assigned paused until its state is restored.
pub(super) struct Restoring {
    pub(super) kind: Input,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) committed: i64,
}

/// One revoked partition's state, kept for the rest of the rebalance.
pub(super) enum Parked {
    Customers(CustomerPartition),
    Watch(ProductWatch),
}

impl Work {
    pub(super) fn revoke(
        &mut self,
        consumer: &BaseConsumer<Rebalancer>,
        tpl: &TopicPartitionList,
    ) -> anyhow::Result<()> {
        // After a fatal error nothing more is committed: the next owner replays from the last
        // good commit.
        // The state of a partition whose offsets are committed matches them exactly: kept for
        // the rest of the rebalance in case the partition comes back.
        let committed = if self.stopped {
            None
        } else {
            self.commit(consumer, true)?;
            consumer
                .committed_offsets(tpl.clone(), Duration::from_secs(30))
                .ok()
        };
        let committed_at = |topic: &str, partition: i32| {
            committed.as_ref().and_then(|c| {
                c.elements()
                    .iter()
                    .find(|e| e.topic() == topic && e.partition() == partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
            })
        };
        self.restores.parked.clear();
        self.restores.restoring.retain(|r| {
            !tpl.elements()
                .iter()
                .any(|e| e.topic() == r.topic && e.partition() == r.partition)
        });
        self.metrics
            .restoring
            .set(self.restores.restoring.len() as i64);
        for e in tpl.elements() {
            self.progress.resume.forget(e.topic(), e.partition());
            // Whoever reads it next stops at the newer writer's record again, if it must.
            self.readiness.release(ROLE, e.topic(), e.partition());
            let at = committed_at(e.topic(), e.partition());
            let parked = match self.input(e.topic()) {
                Some(Input::Orders) => {
                    if e.partition() == 0 {
                        self.leader.store(false, Ordering::Relaxed);
                    }
                    self.state
                        .customers
                        .remove(&e.partition())
                        .map(Parked::Customers)
                }
                Some(kind @ (Input::Products | Input::Reviews)) => self
                    .state
                    .product_watches
                    .remove(&(kind, e.partition()))
                    .map(Parked::Watch),
                _ => None,
            };
            if let (Some(at), Some(parked)) = (at, parked) {
                self.restores
                    .parked
                    .insert((e.topic().to_string(), e.partition()), (at, parked));
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
    pub(super) fn assign(
        &mut self,
        consumer: &BaseConsumer<Rebalancer>,
        tpl: &TopicPartitionList,
    ) -> anyhow::Result<TopicPartitionList> {
        self.ready.store(false, Ordering::Relaxed);
        self.restores.restore_started = Some(Instant::now());
        let committed = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(30))
            .context("reading committed offsets")?;
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
            // Still in memory from before this rebalance, and nobody moved it on since.
            let kept = match self
                .restores
                .parked
                .remove(&(e.topic().to_string(), e.partition()))
            {
                Some((at, state)) if at == committed => Some(state),
                _ => None,
            };
            let how = if kept.is_some() { "kept" } else { "restored" };
            if matches!(
                self.input(e.topic()),
                Some(Input::Orders | Input::Products | Input::Reviews)
            ) {
                self.metrics
                    .partitions_assigned
                    .with_label_values(&[how])
                    .inc();
            }
            let waits = kept.is_none()
                && matches!(
                    self.input(e.topic()),
                    Some(Input::Orders | Input::Products | Input::Reviews)
                );
            if !waits {
                self.progress
                    .resume
                    .expect(e.topic(), e.partition(), committed);
            }
            match (self.input(e.topic()), kept) {
                (Some(Input::Orders), Some(Parked::Customers(state))) => {
                    self.state.customers.insert(e.partition(), state);
                    if e.partition() == 0 {
                        self.leader.store(true, Ordering::Relaxed);
                    }
                    continue;
                }
                (Some(kind @ (Input::Products | Input::Reviews)), Some(Parked::Watch(watch))) => {
                    self.state
                        .product_watches
                        .insert((kind, e.partition()), watch);
                    continue;
                }
                _ => {}
            }
            if let Some(kind) = self.input(e.topic()).filter(|_| waits) {
                self.restores.restoring.push_back(Restoring {
                    kind,
                    topic: e.topic().to_string(),
                    partition: e.partition(),
                    committed,
                });
            }
        }
        // What did not come back is another instance's now.
        self.restores.parked.clear();
        self.update_gauges();
        self.restored_if_done(tpl.count());
        Ok(start)
    }

    /// What the loop must not read until its state is restored: each partition waiting, and
    /// the customers partition of each orders partition waiting (erasures need its state).
    pub(super) fn waiting(&self) -> anyhow::Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for r in &self.restores.restoring {
            tpl.add_partition(&r.topic, r.partition);
            if r.kind == Input::Orders {
                tpl.add_partition(&self.config.topics.customers.name, r.partition);
            }
        }
        Ok(tpl)
    }

    /// Restores the next partition waiting, then lets the loop read it (and its customers
    /// partition); ready once none waits.
    pub(super) fn restore_next(
        &mut self,
        consumer: &BaseConsumer<Rebalancer>,
    ) -> anyhow::Result<()> {
        let Some(r) = self.restores.restoring.pop_front() else {
            return Ok(());
        };
        if self.restores.restore_reader.is_none() {
            self.restores.restore_reader = Some(reader(
                &self.config.kafka,
                &self.bootstrap,
                "enricher-restore",
            )?);
        }
        let restore_reader = self.restores.restore_reader.take().expect("set above");
        let restored = match r.kind {
            Input::Orders => self.restore_customers(&restore_reader, r.partition, r.committed),
            kind => self.replay_product_events(
                &restore_reader,
                kind,
                &r.topic,
                r.partition,
                r.committed,
            ),
        };
        self.restores.restore_reader = Some(restore_reader);
        restored?;
        let mut go = TopicPartitionList::new();
        go.add_partition(&r.topic, r.partition);
        self.progress
            .resume
            .expect(&r.topic, r.partition, r.committed);
        if r.kind == Input::Orders {
            let customers = self.config.topics.customers.name.clone();
            go.add_partition(&customers, r.partition);
            // The customers partition resumes where the group committed it.
            let committed = consumer
                .committed_offsets(go.clone(), Duration::from_secs(30))
                .context("reading committed offsets")?;
            if let Some(e) = committed.elements().iter().find(|e| e.topic() == customers) {
                let at = match e.offset() {
                    Offset::Offset(n) => n,
                    _ => 0,
                };
                self.progress.resume.expect(&customers, r.partition, at);
            }
            if r.partition == 0 {
                self.leader.store(true, Ordering::Relaxed);
            }
        }
        consumer
            .resume(&go)
            .with_context(|| format!("resuming {}[{}] after its restore", r.topic, r.partition))?;
        self.update_gauges();
        self.restored_if_done(0);
        Ok(())
    }

    /// Once nothing waits to be restored: ready, and the restore's duration observed.
    fn restored_if_done(&mut self, assigned: usize) {
        self.metrics
            .restoring
            .set(self.restores.restoring.len() as i64);
        if !self.restores.restoring.is_empty() {
            return;
        }
        if let Some(started) = self.restores.restore_started.take() {
            self.metrics
                .restore_seconds
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(
                partitions = assigned,
                customers = self.metrics.customers.get(),
                seconds = started.elapsed().as_secs_f64(),
                "Partitions assigned and their state restored."
            );
        }
        self.ready.store(true, Ordering::Relaxed);
    }

    /// The newest profile of each customer written for an input offset below `committed`.
    pub(super) fn restore_customers(
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
        // Profiles scored with an older model than the current one are rescored soon.
        state.queue_model_rescore();
        tracing::info!(
            %topic,
            partition,
            committed,
            marker = end,
            read,
            customers = state.len(),
            "Customers restored."
        );
        self.state.customers.insert(partition, state);
        Ok(())
    }

    /// Writes a marker to the profile partition and returns its offset: everything before it
    /// is what the partition held, however the broker reports its end (Tansu's high
    /// watermark can lag behind). The marker is a tombstone for a key no customer has, with
    /// the `woostream-marker` header, so consumers and compaction drop it.
    pub(super) fn restore_marker(&self, topic: &str, partition: i32) -> anyhow::Result<i64> {
        let key = CustomerKey {
            shop_id: String::new(),
            customer: format!(
                "{}{}",
                crate::published::MARKER_PREFIX,
                uuid::Uuid::new_v4()
            ),
        };
        let k = self.io.outputs.customer_key.encode(&key)?;
        let headers = OwnedHeaders::new().insert(Header {
            key: MARKER_HEADER,
            value: Some("restore"),
        });
        let record = rdkafka::producer::FutureRecord::<Vec<u8>, Vec<u8>>::to(topic)
            .key(&k)
            .partition(partition)
            .headers(headers);
        let delivery = self
            .io
            .runtime
            .block_on(
                self.io
                    .marker_producer
                    .send(record, Duration::from_secs(30)),
            )
            .map_err(|(e, _)| e)
            .with_context(|| format!("writing the restore marker to {topic}[{partition}]"))?;
        Ok(delivery.offset)
    }

    /// Stock bands and seen reviews: the input replayed up to the committed offset, silently.
    pub(super) fn replay_product_events(
        &mut self,
        reader: &woostream_core::kafka::reading::Reader,
        kind: Input,
        topic: &str,
        partition: i32,
        committed: i64,
    ) -> anyhow::Result<()> {
        let mut watch = ProductWatch::default();
        let settings = self.state.watch_settings.clone();
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
                        watch.on_product(&event, &settings, &origin);
                    }
                } else if let Ok(event) = self.decode::<ReviewEvent>(payload) {
                    let origin = origin_of(&event.envelope, None);
                    watch.on_review(&event, &settings, &origin);
                }
            },
        )?;
        self.metrics
            .restored_records
            .with_label_values(&[topic])
            .inc_by(read);
        self.state.product_watches.insert((kind, partition), watch);
        Ok(())
    }
}

/// Header of restore markers in the profile topic.
pub const MARKER_HEADER: &str = "woostream-marker";

/// Restores state on assignment and commits on revocation, inside the consumer's poll.
pub struct Rebalancer {
    pub(super) work: Arc<Mutex<Work>>,
}

impl ClientContext for Rebalancer {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        woostream_core::kafka::stats::record("enricher", &statistics);
    }
}

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
                let (start, restored) = match work.assign(consumer, tpl) {
                    Ok(start) => (start, true),
                    Err(e) => {
                        // The loop stops on the failure; the assignment is still taken so
                        // that the group stays consistent until then. Not ready: the state
                        // of these partitions is not there.
                        work.failure.get_or_insert(e);
                        (tpl.clone(), false)
                    }
                };
                if let Err(e) = consumer.assign(&start) {
                    work.failure
                        .get_or_insert(anyhow!("assigning the partitions: {e}"));
                }
                // A partition held at a newer writer's record and given back to this instance
                // is read again (and held again if its record still cannot be read); one whose
                // state is still to be restored is not read before the loop has restored it.
                let _ = consumer.resume(&start);
                match work.waiting() {
                    Ok(waiting) if waiting.count() > 0 => {
                        if let Err(e) = consumer.pause(&waiting) {
                            work.failure
                                .get_or_insert(anyhow!("pausing the partitions to restore: {e}"));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        work.failure.get_or_insert(e);
                    }
                }
                work.ready.store(
                    restored && work.restores.restoring.is_empty(),
                    Ordering::Relaxed,
                );
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
