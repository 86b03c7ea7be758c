//! Edge: what every role does with a record it read before it looks inside. A record of a
//! partition held for a newer release was fetched before the hold and is left for an upgraded
//! build ([`super::hold`]); a record before the offset a resume must land on is dropped, and
//! one beyond it (the broker skipped ahead, see [`super::exact_resume`]) makes the partition
//! read again from further back. The enricher and both sinks read through this one gate.
//!
//! Once admitted, a record that cannot be decoded or opened is classified here too, the same
//! way for every role ([`unreadable`]): keys unavailable stop the role, a newer writer holds
//! the partition, and only a damaged record is left to the role's own policy (the sinks keep
//! it in their dead-letter topic, the enricher counts and skips it: its input stays in place).

use std::time::Instant;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::message::Message;

use super::exact_resume::{seek_back, ResumeGuard, Verdict};
use crate::contract::codec::newer_writer;
use crate::ops::Readiness;
use crate::privacy::OpenError;

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

/// Stops before `record`, written by a newer release: its partition is held for `role`
/// ([`super::hold`]) until an upgraded build reads it.
pub fn hold<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    readiness: &Readiness,
    role: &'static str,
    record: &impl Message,
    error: &anyhow::Error,
) -> anyhow::Result<()> {
    let (topic, partition, offset) = (record.topic(), record.partition(), record.offset());
    super::hold::hold(consumer, readiness, role, topic, partition, offset, error)
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

/// Why an admitted record could not be read, in the order a role must consider it.
#[derive(Debug)]
pub enum Unreadable {
    /// The key topic cannot be read, so nothing sealed can be: the role stops, and resumes
    /// from this record, rather than skip or dead-letter what it could not open.
    KeysUnavailable(anyhow::Error),
    /// Written with a schema this build does not know: the role holds the partition here
    /// ([`super::hold`]) until an upgraded build reads it.
    NewerWriter(anyhow::Error),
    /// This record alone is damaged or forged: the role's own policy applies.
    Damaged(anyhow::Error),
}

/// Classifies the error of decoding and opening one record (see [`Unreadable`]).
pub fn unreadable(error: anyhow::Error) -> Unreadable {
    if matches!(error.downcast_ref(), Some(OpenError::KeysUnavailable(_))) {
        Unreadable::KeysUnavailable(error)
    } else if newer_writer(&error) {
        Unreadable::NewerWriter(error)
    } else {
        Unreadable::Damaged(error)
    }
}

#[cfg(test)]
mod tests {
    use super::{unreadable, Unreadable};
    use crate::contract::codec::{CodecError, Decoder};
    use crate::privacy::OpenError;

    #[test]
    fn unreadable_records_are_classified_in_the_order_roles_act_on_them() {
        let keys = anyhow::Error::from(OpenError::KeysUnavailable(anyhow::anyhow!("no broker")));
        assert!(matches!(unreadable(keys), Unreadable::KeysUnavailable(_)));
        // An unknown fingerprint in single-object framing: a newer release wrote it.
        let mut newer = vec![0xC3, 0x01];
        newer.extend_from_slice(&[0xAB; 8]);
        newer.push(0);
        let e = Decoder::new()
            .decode::<String>(&newer)
            .expect_err("an unknown schema");
        assert!(e.is_newer_writer(), "{e}");
        let e = anyhow::Error::from(e).context("decoding an alert");
        assert!(matches!(unreadable(e), Unreadable::NewerWriter(_)));
        let damaged: CodecError = Decoder::new()
            .decode::<String>(b"not avro")
            .expect_err("garbage");
        assert!(matches!(unreadable(damaged.into()), Unreadable::Damaged(_)));
        let forged = anyhow::Error::from(OpenError::Damaged("bad tag".into()));
        assert!(matches!(unreadable(forged), Unreadable::Damaged(_)));
    }
}
