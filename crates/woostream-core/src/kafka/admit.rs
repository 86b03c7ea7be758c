//! Edge: what every role does with a record it read before it looks inside. A record of a
//! partition held for a newer release was fetched before the hold and is left for an upgraded
//! build ([`super::hold`]); a record before the offset a resume must land on is dropped, and
//! one beyond it (the broker skipped ahead, see [`super::exact_resume`]) makes the partition
//! read again from further back. The enricher and both sinks read through this one gate.

use std::time::Instant;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::message::Message;

use super::exact_resume::{seek_back, ResumeGuard, Verdict};
use crate::ops::Readiness;

/// Whether `record` is for the role to process now.
pub fn admit<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    guard: &mut ResumeGuard,
    readiness: &Readiness,
    role: &'static str,
    record: &impl Message,
) -> anyhow::Result<bool> {
    let (topic, partition, offset) = (record.topic(), record.partition(), record.offset());
    if readiness.is_held(role, topic, partition) {
        return Ok(false);
    }
    match guard.check(topic, partition, offset) {
        Verdict::Process => Ok(true),
        Verdict::Skip => Ok(false),
        Verdict::SeekTo(seek) => {
            tracing::info!(
                role,
                topic,
                partition,
                expected_before = offset,
                seek,
                "The broker resumed past the committed offset; reading again from further back."
            );
            seek_back(consumer, topic, partition, seek)?;
            Ok(false)
        }
    }
}

/// Reads again from further back every resumed partition that stayed silent (the broker
/// answered nothing for an offset in its last batch); call it between polls.
pub fn seek_stalled<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    guard: &mut ResumeGuard,
    role: &'static str,
) -> anyhow::Result<()> {
    if guard.is_empty() {
        return Ok(());
    }
    for (topic, partition, seek) in guard.stalled(Instant::now()) {
        tracing::info!(
            role,
            %topic,
            partition,
            seek,
            "Nothing arrived after resuming; reading again from further back."
        );
        seek_back(consumer, &topic, partition, seek)?;
    }
    Ok(())
}
