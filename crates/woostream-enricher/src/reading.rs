//! Reading partitions from the beginning to their current end: state restore, the model
//! follower and `woostream fit`. The end is found by librdkafka's partition-EOF events (the
//! high watermark of fetch responses) rather than ListOffsets, which Tansu answers unreliably.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use woostream_core::config::KafkaConfig;
use woostream_core::kafka;

/// A consumer outside any group that sees only committed records and reports the end of
/// each partition (for [`read_to_end`]).
pub fn reader(
    config: &KafkaConfig,
    bootstrap: &str,
    purpose: &str,
) -> anyhow::Result<BaseConsumer> {
    follower(config, bootstrap, purpose, true)
}

/// A consumer outside any group that sees only committed records; `eof` reports partition ends.
pub fn follower(
    config: &KafkaConfig,
    bootstrap: &str,
    purpose: &str,
    eof: bool,
) -> anyhow::Result<BaseConsumer> {
    kafka::client_config(config, bootstrap)
        .set("group.id", format!("woostream-enricher-{purpose}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", eof.to_string())
        .set("isolation.level", "read_committed")
        .create()
        .with_context(|| format!("creating the {purpose} consumer"))
}

pub fn partitions_of(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
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
/// partition's end, or until its record at offset `stop_before` (exclusive) when given.
/// Gives up when nothing arrives for `idle_limit`.
pub fn read_to_end(
    consumer: &BaseConsumer,
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
            Some(Err(KafkaError::PartitionEOF(p))) => {
                last_progress = Instant::now();
                open.remove(&p);
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
