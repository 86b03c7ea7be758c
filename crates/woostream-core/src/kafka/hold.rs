//! Stopping before a record a role must not skip: one written with a schema this build does
//! not know (a newer release, during a rolling upgrade). Skipping it would lose an order for
//! good; dead-lettering it would take it out of its order. The partition is paused at the
//! record, nothing at or past it is committed, and the process turns unready with the reason
//! on `/readyz` and in `woostream_partitions_held`, until a build that knows the schema reads
//! the partition again (after the upgrade, or in a rebalance to an upgraded instance).

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::TopicPartitionList;

use crate::ops::Readiness;

/// The reason [`hold`] records for a record from a newer writer.
pub const NEWER_WRITER: &str = "newer_writer";

/// Pauses `topic`[`partition`] at `offset` for `role` and marks the process unready. Records
/// of the partition already fetched are to be dropped by the caller ([`Readiness::is_held`]).
pub fn hold<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    readiness: &Readiness,
    role: &'static str,
    topic: &str,
    partition: i32,
    offset: i64,
    error: &anyhow::Error,
) -> anyhow::Result<()> {
    if readiness.is_held(role, topic, partition) {
        return Ok(());
    }
    tracing::error!(
        role,
        topic,
        partition,
        offset,
        error = format!("{error:#}"),
        "A record written by a newer release of woostream: this partition is not read any further until this role is upgraded (nothing past it is committed)."
    );
    readiness.hold(role, topic, partition, offset, NEWER_WRITER);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    consumer.pause(&tpl).map_err(|e| {
        anyhow::anyhow!("pausing {topic}[{partition}] at a newer writer's record: {e}")
    })
}
