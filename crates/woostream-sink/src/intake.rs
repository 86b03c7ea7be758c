//! What every sink does at its Kafka edge: take every partition of its topics itself (one sink
//! per Slack workspace or CRM account, whose limits are per account) starting at the group's
//! committed offsets, and commit per partition only up to the oldest record not yet done.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedHeaders;
use rdkafka::{Offset, TopicPartitionList};
use woostream_core::kafka::exact_resume::ResumeGuard;
use woostream_core::kafka::RenewingProducer;

/// Assigns every partition of `topics` at the group's committed offsets (from the beginning
/// where there are none), telling `guard` where each resume must land. A partition the group
/// has no offset for starts where `earlier_group` (the group this sink used before it was
/// named) got to: naming a sink on an upgrade does not send everything again.
pub fn assign_all<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    topics: &[&str],
    guard: &mut ResumeGuard,
    earlier_group: Option<(&woostream_core::config::KafkaConfig, &str, &str)>,
) -> anyhow::Result<()> {
    let mut all = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("reading the partitions of {topic}"))?;
        let before = all.count();
        for t in metadata.topics() {
            for p in t.partitions() {
                all.add_partition(topic, p.id());
            }
        }
        if all.count() == before {
            anyhow::bail!("topic {topic} has no partitions (does it exist?)");
        }
    }
    let committed = consumer
        .committed_offsets(all.clone(), Duration::from_secs(30))
        .context("reading the sink's committed offsets")?;
    let earlier: HashMap<(String, i32), Offset> = match earlier_group {
        Some((kafka, bootstrap, group))
            if committed
                .elements()
                .iter()
                .all(|e| !matches!(e.offset(), Offset::Offset(o) if o > 0)) =>
        {
            let before: StreamConsumer =
                woostream_core::kafka::consumer_config(kafka, bootstrap, group)
                    .create()
                    .context("creating a consumer of the sink's earlier group")?;
            let offsets = before
                .committed_offsets(all, Duration::from_secs(30))
                .context("reading the offsets of the sink's earlier group")?;
            let found: HashMap<(String, i32), Offset> = offsets
                .elements()
                .iter()
                .map(|e| ((e.topic().to_string(), e.partition()), e.offset()))
                .collect();
            if found
                .values()
                .any(|o| matches!(o, Offset::Offset(n) if *n > 0))
            {
                tracing::info!(group, "This sink has no offsets of its own yet: starting where its earlier, unnamed group got to.");
            }
            found
        }
        _ => HashMap::new(),
    };
    let mut start = TopicPartitionList::new();
    for e in committed.elements() {
        let own = e.offset();
        let from_earlier = earlier
            .get(&(e.topic().to_string(), e.partition()))
            .copied();
        let offset = match (own, from_earlier) {
            (Offset::Offset(o), _) if o > 0 => Offset::Offset(o),
            (_, Some(o)) => o,
            (o, None) => o,
        };
        let offset = match offset {
            Offset::Offset(o) if o > 0 => {
                guard.expect(e.topic(), e.partition(), o);
                Offset::Offset(o)
            }
            _ => Offset::Beginning,
        };
        start.add_partition_offset(e.topic(), e.partition(), offset)?;
    }
    consumer
        .assign(&start)
        .context("assigning the sink's partitions")
}

/// Keeps a record the sink cannot read in its dead-letter topic, bytes as they were.
pub async fn keep_unreadable(
    producer: &RenewingProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
    headers: OwnedHeaders,
) -> anyhow::Result<()> {
    producer
        .send_until_acknowledged(topic, key, value, &headers, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("dead-lettering an unreadable record in {topic}: {e}"))?;
    Ok(())
}

#[derive(Debug, Default)]
struct Partition {
    /// offset → outputs still to finish.
    pending: BTreeMap<i64, usize>,
    /// One past the newest offset seen.
    next: i64,
    committed: i64,
}

/// Records read and not yet done, per topic and partition. Keyed by topic first, so the
/// per-record calls look a topic up by `&str` instead of allocating a key.
#[derive(Debug, Default)]
pub struct Offsets {
    partitions: HashMap<String, HashMap<i32, Partition>>,
}

impl Offsets {
    /// A record was read that `outputs` deliveries must finish (0: done already).
    pub fn read(&mut self, topic: &str, partition: i32, offset: i64, outputs: usize) {
        if !self.partitions.contains_key(topic) {
            self.partitions.insert(topic.to_string(), HashMap::new());
        }
        let p = self
            .partitions
            .get_mut(topic)
            .expect("inserted above")
            .entry(partition)
            .or_default();
        p.next = p.next.max(offset + 1);
        if outputs > 0 {
            *p.pending.entry(offset).or_default() += outputs;
        }
    }

    /// One output of a record finished.
    pub fn done(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self
            .partitions
            .get_mut(topic)
            .and_then(|t| t.get_mut(&partition))
        {
            if let Some(n) = p.pending.get_mut(&offset) {
                *n -= 1;
                if *n == 0 {
                    p.pending.remove(&offset);
                }
            }
        }
    }

    /// Commits each partition up to its oldest unfinished record; whether anything was.
    pub fn commit<C: rdkafka::consumer::ConsumerContext + 'static>(
        &mut self,
        consumer: &StreamConsumer<C>,
    ) -> anyhow::Result<bool> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partitions) in &self.partitions {
            for (partition, p) in partitions {
                let upto = p.pending.keys().next().copied().unwrap_or(p.next);
                if upto > p.committed {
                    tpl.add_partition_offset(topic, *partition, Offset::Offset(upto))?;
                }
            }
        }
        if tpl.count() == 0 {
            return Ok(false);
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .context("committing offsets")?;
        for e in tpl.elements() {
            if let (Some(p), Offset::Offset(o)) = (
                self.partitions
                    .get_mut(e.topic())
                    .and_then(|t| t.get_mut(&e.partition())),
                e.offset(),
            ) {
                p.committed = o;
            }
        }
        Ok(true)
    }
}

/// The key topic, followed when personal data is sealed (to open an order's identity, an
/// alert's initial; to seal a dead letter under its person's key).
pub async fn subject_keys(
    config: &woostream_core::config::Config,
    bootstrap: &str,
) -> anyhow::Result<Option<woostream_core::privacy::SubjectKeys>> {
    if !config.privacy.seal_personal_data {
        return Ok(None);
    }
    let (config, bootstrap) = (config.clone(), bootstrap.to_string());
    Ok(Some(
        tokio::task::spawn_blocking(move || {
            woostream_core::privacy::SubjectKeys::start(&config, &bootstrap, false)
        })
        .await??,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_done_up_to_its_oldest_unfinished_record() {
        let mut o = Offsets::default();
        o.read("t", 0, 5, 2);
        o.read("t", 0, 6, 0);
        o.read("t", 0, 7, 1);
        let upto = |o: &Offsets| {
            let p = &o.partitions["t"][&0];
            p.pending.keys().next().copied().unwrap_or(p.next)
        };
        assert_eq!(upto(&o), 5);
        o.done("t", 0, 5);
        assert_eq!(upto(&o), 5, "one of its two outputs still open");
        o.done("t", 0, 5);
        assert_eq!(upto(&o), 7);
        o.done("t", 0, 7);
        assert_eq!(upto(&o), 8);
    }
}
