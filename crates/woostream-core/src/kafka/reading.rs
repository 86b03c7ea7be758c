//! Reading partitions from the beginning to their current end: state restore, the model
//! follower and `woostream fit`. The end is found by librdkafka's partition-EOF events (the
//! high watermark of fetch responses) rather than ListOffsets, which Tansu answers unreliably.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::config::KafkaConfig;
use crate::kafka;
use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

/// Logs a reading consumer's errors, except the end-of-partition events it asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReaderContext;

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::error!(%error, reason, "Kafka client error.");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// A consumer that reads partitions from the beginning.
pub type Reader = BaseConsumer<ReaderContext>;

/// A consumer outside any group that sees only committed records and reports the end of
/// each partition (for [`read_to_end`]).
pub fn reader(config: &KafkaConfig, bootstrap: &str, purpose: &str) -> anyhow::Result<Reader> {
    follower(config, bootstrap, purpose, true)
}

/// A consumer outside any group that sees only committed records; `eof` reports partition ends.
pub fn follower(
    config: &KafkaConfig,
    bootstrap: &str,
    purpose: &str,
    eof: bool,
) -> anyhow::Result<Reader> {
    kafka::client_config(config, bootstrap)
        .set(
            "group.id",
            config.namespaced(&format!("woostream-{purpose}")),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", eof.to_string())
        // A reader to an end (a restore) is not waiting for new records: a broker that holds
        // each fetch at a partition's end for the default 500 ms made restores take seconds
        // per partition. A follower long-polls as usual.
        .set("fetch.wait.max.ms", if eof { "10" } else { "500" })
        .set("isolation.level", "read_committed")
        .create_with_context(ReaderContext)
        .with_context(|| format!("creating the {purpose} consumer"))
}

pub fn partitions_of<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> anyhow::Result<Vec<i32>> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading metadata of {topic}"))?;
    let ids: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| p.id())
        .collect();
    if ids.is_empty() {
        bail!("topic {topic} has no partitions (does it exist?)");
    }
    Ok(ids)
}

/// Calls `f` for every record of `partitions` of `topic` from the beginning until each
/// partition's end, or, when a stop offset is given, until the record before it, however
/// long the broker takes to show it.
/// Gives up when nothing arrives for `idle_limit`.
pub fn read_to_end<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[(i32, Option<i64>)],
    idle_limit: Duration,
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> anyhow::Result<u64> {
    let mut tpl = TopicPartitionList::new();
    let mut open: HashSet<i32> = HashSet::new();
    for (p, stop) in partitions {
        if *stop == Some(0) {
            continue;
        }
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
        open.insert(*p);
    }
    if open.is_empty() {
        return Ok(0);
    }
    consumer
        .assign(&tpl)
        .with_context(|| format!("assigning {topic}"))?;
    let stop_of = |p: i32| {
        partitions
            .iter()
            .find(|(q, _)| *q == p)
            .and_then(|(_, s)| *s)
    };
    let mut read = 0u64;
    let mut last_progress = Instant::now();
    while !open.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                if !open.contains(&m.partition()) {
                    continue;
                }
                if stop_of(m.partition()).is_some_and(|s| m.offset() >= s) {
                    open.remove(&m.partition());
                    continue;
                }
                read += 1;
                f(&m);
                if stop_of(m.partition()).is_some_and(|s| m.offset() + 1 >= s) {
                    open.remove(&m.partition());
                }
            }
            // An end-of-partition event only ends partitions read to their end: with a stop
            // offset the stop decides, because Tansu reports the end from a high watermark
            // that can lag behind what is written, and because the event names a partition
            // but not its topic, so one left over from an earlier read of this consumer
            // could end the wrong one.
            Some(Err(KafkaError::PartitionEOF(p))) => {
                last_progress = Instant::now();
                if stop_of(p).is_none() {
                    open.remove(&p);
                }
            }
            Some(Err(e)) => tracing::warn!(%topic, error = %e, "Error while reading to the end."),
            None => {
                if last_progress.elapsed() > idle_limit {
                    bail!("reading {topic}: partitions {open:?} did not reach their end within {idle_limit:?}");
                }
            }
        }
    }
    consumer.unassign().ok();
    Ok(read)
}

/// Header and key of the end markers [`read_all_now`] writes.
pub const END_MARKER: &str = "woostream-end-marker";

/// Writes an end marker to every partition of `topic` (as `consumer` sees them) and returns
/// where each landed: see [`write_end_markers`].
pub fn mark_ends<C: rdkafka::consumer::ConsumerContext>(
    config: &KafkaConfig,
    bootstrap: &str,
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> anyhow::Result<Vec<(i32, i64)>> {
    let partitions = partitions_of(consumer, topic)?;
    write_end_markers(config, bootstrap, topic, &partitions)
}

/// Writes an end marker to each of `partitions` of `topic` and returns where each landed:
/// whatever was written to a partition before the call is before its marker.
pub fn write_end_markers(
    config: &KafkaConfig,
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<Vec<(i32, i64)>> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    // A marker may wait for a partition's leader (a topic just created, a broker starting):
    // at least 30 s, whatever the delivery timeout the role's own records have.
    let timeout = config.delivery_timeout_ms.max(30_000).to_string();
    let producer: ThreadedProducer<MarkerOffsets> = kafka::producer_config(config, bootstrap)
        .set("message.timeout.ms", &timeout)
        .create_with_context(MarkerOffsets::default())
        .context("creating the end-marker producer")?;
    for p in partitions {
        let headers = OwnedHeaders::new().insert(Header {
            key: END_MARKER,
            value: Some("end"),
        });
        producer
            .send::<str, [u8]>(
                BaseRecord::to(topic)
                    .key(END_MARKER)
                    .partition(*p)
                    .headers(headers),
            )
            .map_err(|(e, _)| anyhow!("writing an end marker to {topic}[{p}]: {e}"))?;
    }
    producer
        .flush(Duration::from_secs(60))
        .with_context(|| format!("writing end markers to {topic}"))?;
    let offsets = producer.context().0.lock().expect("marker offsets").clone();
    let mut stops = Vec::new();
    for p in partitions {
        match offsets.get(p) {
            Some(Ok(offset)) => stops.push((*p, *offset)),
            Some(Err(e)) => bail!("writing an end marker to {topic}[{p}]: {e}"),
            None => bail!("no delivery report for the end marker of {topic}[{p}]"),
        }
    }
    Ok(stops)
}

/// Remembers where each end marker landed.
#[derive(Default)]
struct MarkerOffsets(std::sync::Mutex<HashMap<i32, Result<i64, String>>>);

impl rdkafka::ClientContext for MarkerOffsets {}

impl rdkafka::producer::ProducerContext for MarkerOffsets {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        let (partition, outcome) = match result {
            Ok(m) => (m.partition(), Ok(m.offset())),
            Err((e, m)) => (m.partition(), Err(e.to_string())),
        };
        self.0
            .lock()
            .expect("marker offsets")
            .insert(partition, outcome);
    }
}

/// Calls `f` for every record of every partition of `topic` written before now. A marker is
/// written to each partition first and each partition read up to it, because Tansu can
/// report a partition's end before its last records. Markers have the key [`END_MARKER`],
/// no value and a header of that name; `f` never sees them.
pub fn read_all_now<C: rdkafka::consumer::ConsumerContext>(
    config: &KafkaConfig,
    bootstrap: &str,
    consumer: &BaseConsumer<C>,
    topic: &str,
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> anyhow::Result<u64> {
    let stops: Vec<(i32, Option<i64>)> = mark_ends(config, bootstrap, consumer, topic)?
        .into_iter()
        .map(|(p, o)| (p, Some(o)))
        .collect();
    read_to_end(consumer, topic, &stops, Duration::from_secs(60), |m| {
        if m.key() != Some(END_MARKER.as_bytes()) {
            f(m)
        }
    })
}
