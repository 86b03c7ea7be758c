//! Where the REST side keeps its place, in a compacted topic (`topics.checkpoints`): the latest
//! record per key is the state. Values are JSON — internal state, read only by woostream.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rdkafka::message::{Message, OwnedHeaders};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use woostream_core::config::Config;
use woostream_core::kafka::reading::{read_all_now, reader};
use woostream_core::kafka::RenewingProducer;

/// How far a backfill of one (shop, resource) got: every page up to `pages_done` is in Kafka.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackfillCheckpoint {
    pub shop: String,
    pub resource: String,
    /// The `--since` it was started with: another one starts over.
    pub since: Option<DateTime<Utc>>,
    pub pages_done: u32,
    /// Objects produced as events, and kept as dead letters, so far.
    pub produced: u64,
    pub dead_lettered: u64,
    /// Objects about people erased before (their past is not written again).
    #[serde(default)]
    pub erased_skipped: u64,
    pub finished: bool,
    pub updated_at: DateTime<Utc>,
}

impl BackfillCheckpoint {
    pub fn key(shop: &str, resource: &str) -> String {
        format!("backfill/{shop}/{resource}")
    }
}

/// Reads the whole checkpoint topic: the latest value of every key (at start; librdkafka's
/// calls block, so on a blocking thread).
pub async fn read_latest(
    config: &Config,
    bootstrap: &str,
) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let (config, bootstrap) = (config.clone(), bootstrap.to_string());
    tokio::task::spawn_blocking(move || read_latest_blocking(&config, &bootstrap))
        .await
        .context("reading checkpoints")?
}

fn read_latest_blocking(
    config: &Config,
    bootstrap: &str,
) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let topic = &config.topics.checkpoints.name;
    let consumer = reader(&config.kafka, bootstrap, "woostream-checkpoints")?;
    let mut latest = HashMap::new();
    read_all_now(&config.kafka, bootstrap, &consumer, topic, |m| {
        if let (Some(k), Some(v)) = (m.key(), m.payload()) {
            latest.insert(String::from_utf8_lossy(k).into_owned(), v.to_vec());
        }
    })
    .with_context(|| format!("reading the checkpoints in {topic}"))?;
    Ok(latest)
}

/// The latest checkpoint under `key`, if it is one of type `T`.
pub fn find<T: DeserializeOwned>(latest: &HashMap<String, Vec<u8>>, key: &str) -> Option<T> {
    latest.get(key).and_then(|v| serde_json::from_slice(v).ok())
}

/// Writes a checkpoint and waits until Kafka has it.
pub async fn write<T: Serialize>(
    producer: &RenewingProducer,
    topic: &str,
    key: &str,
    value: &T,
) -> anyhow::Result<()> {
    let payload = serde_json::to_vec(value).context("encoding a checkpoint")?;
    producer
        .send_until_acknowledged(
            topic,
            Some(key.as_bytes()),
            &payload,
            &OwnedHeaders::new(),
            Duration::from_secs(30),
        )
        .await
        .with_context(|| format!("writing checkpoint {key} to {topic}"))?;
    Ok(())
}
