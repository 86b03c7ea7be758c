//! How far each consuming role is behind its input topics, as Prometheus sees it: the same
//! figure KEDA scales the enricher on (the log end offset minus the group's committed offset,
//! summed over the topic's partitions), read by a client of its own every few seconds.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus::{IntGaugeVec, Opts, Registry};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;

static LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "woostream_consumer_lag",
            "Records of the topic not yet committed by the consumer group (log end minus committed offset, summed over partitions).",
        ),
        &["group", "topic"],
    )
    .expect("a valid metric")
});

/// Whether a role's last metadata request to the brokers succeeded: the producer sets it from
/// its sends and probes, every consuming role from its lag reader. One vector per process, so
/// the roles of `woostream run` share it.
pub static KAFKA_REACHABLE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    IntGaugeVec::new(
        Opts::new(
            "woostream_kafka_reachable",
            "1 when the last metadata request to the brokers succeeded.",
        ),
        &["role"],
    )
    .expect("a valid metric")
});

/// Registers [`KAFKA_REACHABLE`] in `registry` (once; several roles may share a registry).
pub fn register_reachable(registry: &Registry) -> prometheus::Result<()> {
    crate::ops::register_shared(registry, Box::new(KAFKA_REACHABLE.clone()))
}

/// How often the lag is read.
pub const LAG_INTERVAL: Duration = Duration::from_secs(10);

/// What is behind in one partition: everything after the committed offset, or everything
/// kept when the group has committed nothing yet (it reads from the beginning).
pub fn partition_lag(committed: Option<i64>, low: i64, high: i64) -> i64 {
    let from = committed.unwrap_or(low).max(low);
    (high - from).max(0)
}

/// Reads `group`'s lag on `topics` every [`LAG_INTERVAL`] into `woostream_consumer_lag` of
/// `registry` until `shutdown`, on a thread of its own (librdkafka's calls block); whether the
/// brokers answered goes into `woostream_kafka_reachable{role}`. With no topics, only that.
pub fn watch(
    role: &'static str,
    kafka: &KafkaConfig,
    bootstrap: &str,
    group: &str,
    topics: Vec<String>,
    registry: &Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    crate::ops::register_shared(registry, Box::new(LAG.clone()))
        .context("registering woostream_consumer_lag")?;
    register_reachable(registry).context("registering woostream_kafka_reachable")?;
    super::stats::register(registry)?;
    // Never joins the group: it only reads the group's committed offsets.
    let consumer: BaseConsumer = super::client_config(kafka, bootstrap)
        .set("group.id", kafka.namespaced(group))
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the consumer-lag reader")?;
    let group = group.to_string();
    std::thread::Builder::new()
        .name("consumer-lag".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                // Reading a topic's lag asks the brokers for its metadata; a role without input
                // topics asks for the brokers alone.
                let mut reached = !topics.is_empty()
                    || consumer
                        .fetch_metadata(None, Duration::from_secs(5))
                        .is_ok_and(|m| !m.brokers().is_empty());
                for topic in &topics {
                    match topic_lag(&consumer, topic) {
                        Ok(lag) => LAG.with_label_values(&[group.as_str(), topic]).set(lag),
                        Err(e) => {
                            reached = false;
                            tracing::debug!(topic, error = %e, "Consumer lag not read.");
                        }
                    }
                }
                KAFKA_REACHABLE
                    .with_label_values(&[role])
                    .set(i64::from(reached));
                let next = Instant::now() + LAG_INTERVAL;
                while Instant::now() < next && !shutdown.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        })
        .context("starting the consumer-lag thread")?;
    Ok(())
}

fn topic_lag(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<i64> {
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut partitions = TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        partitions.add_partition(topic, p.id());
    }
    let committed = consumer.committed_offsets(partitions, timeout)?;
    let mut total = 0;
    for element in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, element.partition(), timeout)?;
        let offset = match element.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        total += partition_lag(offset, low, high);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::partition_lag;

    #[test]
    fn lag_is_what_follows_the_committed_offset_or_everything_kept() {
        assert_eq!(partition_lag(Some(90), 0, 100), 10);
        assert_eq!(partition_lag(Some(100), 0, 100), 0);
        assert_eq!(partition_lag(None, 20, 100), 80, "nothing committed yet");
        assert_eq!(
            partition_lag(Some(5), 20, 100),
            80,
            "committed before what retention kept"
        );
    }
}
