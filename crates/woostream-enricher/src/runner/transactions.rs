//! The enricher's producer, transactional when the broker really ends transactions.

use super::outputs::Deliveries;
use super::outputs::OutputProducer;
use anyhow::{anyhow, Context};
use rdkafka::producer::{BaseRecord, Producer};
use std::time::Duration;
use woostream_core::config::Config;
use woostream_core::kafka;

/// A transactional id that is stable for this instance across restarts (the pod name on
/// Kubernetes), so that a restarted instance fences its own zombie.
pub(super) fn transactional_id(config: &Config) -> String {
    config.kafka.namespaced(&format!(
        "{}-{}",
        config.enricher.group_id,
        instance_id(config)
    ))
}

/// The static member name (`enricher.static_membership`): the instance's stable name, on
/// Kubernetes the pod's (the StatefulSet's `<release>-enricher-<ordinal>`).
pub(super) fn static_instance(config: &Config) -> Option<String> {
    config
        .enricher
        .static_membership
        .then(|| instance_id(config))
}

/// This instance's stable name: `enricher.instance_id`, else the pod name.
pub(super) fn instance_id(config: &Config) -> String {
    config
        .enricher
        .instance_id
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "local".into())
}

pub(super) fn create_producer(
    config: &Config,
    bootstrap: &str,
    transactional: bool,
) -> anyhow::Result<OutputProducer> {
    let mut c = kafka::producer_config(&config.kafka, bootstrap);
    if transactional {
        c.set("transactional.id", transactional_id(config));
    }
    kafka::stats::enable(&mut c, &config.kafka);
    c.create_with_context(Deliveries::default())
        .context("creating the enricher's producer")
}

/// Finds out whether the broker really ends transactions by committing one marker in a
/// transaction to the probe topic, then begins the first transaction of the run. Initialising
/// and beginning prove nothing: Tansu 0.6 accepts both and refuses the commit, and the
/// transaction it then leaves open would pin every read_committed reader of the partition it
/// wrote to — so the marker goes to a topic that nobody reads.
pub(super) fn probe_transactions(
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
