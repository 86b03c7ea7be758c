//! The enricher's writer thread: it encodes what the loop decided and hands it to the producer,
//! so that Avro encoding and librdkafka's produce path run beside the processing of the next
//! records instead of after it.
//!
//! Nothing about commits changes: every output takes its delivery sequence number on the loop's
//! thread when it is handed over, so it is outstanding — and no offset is committed past it —
//! from that moment until the broker acknowledges it. A transaction's commit first waits at a
//! barrier until everything handed over is in the producer.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::outputs::Outputs;
use super::outputs::{record_headers, OutputProducer};
use anyhow::{anyhow, bail, Context};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};
use std::sync::Arc;
use std::time::Duration;
use woostream_core::config::Config;
use woostream_core::contract::codec::Contract;
use woostream_core::contract::enriched::{Alert, AlertKey, CustomerProfile};
use woostream_core::contract::events::CustomerKey;

/// How many outputs the loop hands over at once: one wake-up of the writer thread per batch
/// instead of per output (waking it per output cost a tenth of the loop's time).
const BATCH: usize = 256;
/// How many batches may wait for the writer before the loop waits for it.
const QUEUE: usize = 32;

/// What the loop hands the writer.
/// Large values are boxed: the channel moves a pointer, not the record.
pub(super) enum Write {
    Alert(AlertKey, Box<Alert>),
    /// A profile version (`None`: an erasure tombstone), written to the partition number of
    /// its input so that the profile topic stays that partition's changelog.
    Profile {
        partition: i32,
        key: CustomerKey,
        profile: Option<Box<CustomerProfile>>,
    },
    /// An erasure receipt, for the audit topic.
    Receipt(Box<woostream_core::contract::sink_records::Delivery>),
    /// Answered once everything handed over before it is in the producer.
    Barrier(SyncSender<()>),
}

type Batch = Vec<(usize, Write)>;

pub(super) struct Writer {
    to_thread: Option<SyncSender<Batch>>,
    /// Handed over (sequence numbers taken) but not yet sent to the thread: sent when full, at
    /// a barrier, and by [`Writer::flush`] (every commit).
    batch: Batch,
    producer: Arc<OutputProducer>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(super) fn start(
        producer: Arc<OutputProducer>,
        outputs: Outputs,
        config: &Config,
    ) -> anyhow::Result<Writer> {
        let (to_thread, from_loop) = sync_channel(QUEUE);
        let topics = (
            config.topics.alerts.name.clone(),
            config.topics.profiles.name.clone(),
            config.topics.deliveries.name.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("enricher-writer".into())
            .spawn({
                let producer = producer.clone();
                move || write_all(&producer, &outputs, &topics, from_loop)
            })
            .context("spawning the enricher's writer thread")?;
        Ok(Writer {
            to_thread: Some(to_thread),
            batch: Vec::with_capacity(BATCH),
            producer,
            thread: Some(thread),
        })
    }

    /// Hands an output to the writer; it is outstanding from now until acknowledged.
    pub(super) fn write(&mut self, write: Write) -> anyhow::Result<()> {
        let seq = self.producer.context().take() as usize;
        self.batch.push((seq, write));
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the thread what was handed over and not sent yet.
    pub(super) fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.send(batch)
    }

    /// Returns once everything handed over so far is in the producer.
    pub(super) fn barrier(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        let (reply, answered) = sync_channel(1);
        self.send(vec![(0, Write::Barrier(reply))])?;
        answered
            .recv()
            .map_err(|_| anyhow!("the enricher's writer thread stopped before a barrier"))
    }

    fn send(&self, batch: Batch) -> anyhow::Result<()> {
        self.to_thread
            .as_ref()
            .ok_or_else(|| anyhow!("the enricher's writer is closed"))?
            .send(batch)
            .map_err(|_| anyhow!("the enricher's writer thread has stopped"))
    }
}

impl Drop for Writer {
    /// Lets the thread write what it was handed, then waits for it.
    fn drop(&mut self) {
        let _ = self.flush();
        drop(self.to_thread.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread: until the loop's side is dropped, encodes each output and sends it.
/// A failure is recorded as a failed delivery, so that the loop commits nothing past it and
/// stops at its next commit.
fn write_all(
    producer: &OutputProducer,
    outputs: &Outputs,
    (alerts_topic, profiles_topic, deliveries_topic): &(String, String, String),
    from_loop: Receiver<Batch>,
) {
    for (seq, write) in from_loop.into_iter().flatten() {
        let sent = match write {
            Write::Barrier(reply) => {
                let _ = reply.send(());
                continue;
            }
            Write::Alert(key, alert) => (|| {
                let k = outputs.alert_key.encode(&key)?;
                let v = outputs.alert.encode(&alert)?;
                let hs = record_headers(&alert.correlation_id, Alert::SCHEMA_NAME);
                send(
                    producer,
                    BaseRecord::with_opaque_to(alerts_topic, seq)
                        .key(&k)
                        .payload(&v)
                        .headers(hs),
                )
            })(),
            Write::Receipt(receipt) => (|| {
                let k = outputs.receipt_key.encode(&receipt.delivery_id)?;
                let v = outputs.receipt.encode(&receipt)?;
                let hs = record_headers(&receipt.correlation_id, "delivery");
                send(
                    producer,
                    BaseRecord::with_opaque_to(deliveries_topic, seq)
                        .key(&k)
                        .payload(&v)
                        .headers(hs),
                )
            })(),
            Write::Profile {
                partition,
                key,
                profile,
            } => (|| {
                let k = outputs.customer_key.encode(&key)?;
                let v = profile
                    .as_ref()
                    .map(|p| outputs.profile.encode(p))
                    .transpose()?;
                let correlation = profile.as_ref().map_or("", |p| p.correlation_id.as_str());
                let hs = record_headers(correlation, CustomerProfile::SCHEMA_NAME);
                let mut record = BaseRecord::with_opaque_to(profiles_topic, seq)
                    .key(&k)
                    .partition(partition)
                    .headers(hs);
                if let Some(v) = &v {
                    record = record.payload(v);
                }
                send(producer, record)
            })(),
        };
        if let Err(e) = sent {
            producer
                .context()
                .settle(seq as u64, Some(format!("{e:#}")));
        }
    }
}

/// Sends one record, waiting for room while librdkafka's queue is full.
fn send(
    producer: &OutputProducer,
    mut record: BaseRecord<'_, Vec<u8>, Vec<u8>, usize>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                // Back-pressure: wait for deliveries to make room.
                record = r;
                let _ = producer.flush(Duration::from_millis(10));
            }
            Err((e, r)) => bail!("producing to {}: {e}", r.topic),
        }
    }
}
