//! The models topic: following it so running enrichers pick up new parameters without a
//! restart, and fitting every shop's model from the profile topic and publishing it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use woostream_core::config::{Clock, Config, EnricherConfig};
use woostream_core::contract::codec::{Contract, Decoder, Encoder};
use woostream_core::contract::enriched::{CustomerProfile, ShopModel};
use woostream_core::contract::events::CustomerKey;

use super::fit::fit_shop;
use crate::metrics::Metrics;
use crate::model::Model;
use woostream_core::kafka::reading::{partitions_of, read_to_end, reader};

/// The current model of every shop; shops without one are scored with the priors.
pub struct Models {
    prior: Arc<Model>,
    by_shop: RwLock<HashMap<String, Arc<Model>>>,
    /// +1 for every model taken: the loop rescores its customers when it changes.
    generation: std::sync::atomic::AtomicU64,
}

impl Models {
    pub fn new(config: &EnricherConfig) -> Models {
        Models {
            prior: Arc::new(Model::prior(config)),
            by_shop: RwLock::new(HashMap::new()),
            generation: Default::default(),
        }
    }

    pub fn get(&self, shop_id: &str) -> Arc<Model> {
        self.by_shop
            .read()
            .expect("models lock")
            .get(shop_id)
            .cloned()
            .unwrap_or_else(|| self.prior.clone())
    }

    /// Takes a model record if it is newer than the shop's current one.
    pub fn offer(&self, record: &ShopModel) -> bool {
        let Some(model) = Model::from_record(record) else {
            tracing::warn!(shop = %record.shop_id, version = record.version, "Ignoring a model with parameters out of range.");
            return false;
        };
        let mut map = self.by_shop.write().expect("models lock");
        if map
            .get(&record.shop_id)
            .is_some_and(|m| m.version >= model.version)
        {
            return false;
        }
        map.insert(record.shop_id.clone(), Arc::new(model));
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        true
    }

    /// Changes whenever a new model is taken.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Follows the models topic on a thread of its own until `shutdown`.
pub fn follow(
    models: Arc<Models>,
    config: &Config,
    bootstrap: &str,
    decoder: Decoder,
    runtime: tokio::runtime::Handle,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let consumer: woostream_core::kafka::reading::Reader =
        woostream_core::kafka::reading::follower(
            &config.kafka,
            bootstrap,
            "enricher-models",
            false,
        )?;
    let topic = config.topics.models.name.clone();
    let mut tpl = TopicPartitionList::new();
    for p in partitions_of(&consumer, &topic)? {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
    }
    consumer
        .assign(&tpl)
        .context("assigning the models topic")?;
    std::thread::Builder::new()
        .name("model-follower".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else { continue };
                let Some(payload) = m.payload() else { continue };
                match runtime.block_on(decoder.decode_async::<ShopModel>(payload)) {
                    Ok(record) => {
                        if models.offer(&record) {
                            metrics.model_version.set(record.version);
                            tracing::info!(shop = %record.shop_id, version = record.version, bgnbd_fitted = record.bgnbd_fitted, gamma_gamma_fitted = record.gamma_gamma_fitted, "Using a new model.");
                        }
                    }
                    Err(e) => tracing::warn!(offset = m.offset(), error = %e, "Skipping an unreadable model record."),
                }
            }
        })
        .context("spawning the model follower")
}

/// The newest profile of every customer in the profile topic (erased customers left out).
pub fn read_profiles(
    config: &Config,
    bootstrap: &str,
    decoder: &Decoder,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Vec<CustomerProfile>> {
    let consumer = reader(&config.kafka, bootstrap, "enricher-fit")?;
    let topic = &config.topics.profiles.name;
    let partitions: Vec<(i32, Option<i64>)> = partitions_of(&consumer, topic)?
        .into_iter()
        .map(|p| (p, None))
        .collect();
    let mut latest: HashMap<(String, String), CustomerProfile> = HashMap::new();
    let mut unreadable = 0u64;
    read_to_end(
        &consumer,
        topic,
        &partitions,
        Duration::from_secs(60),
        |m| {
            // The end markers reading writes (and every earlier read left behind).
            if m.key() == Some(woostream_core::kafka::reading::END_MARKER.as_bytes()) {
                return;
            }
            let key = m.key().and_then(|k| {
                runtime
                    .block_on(decoder.decode_async::<CustomerKey>(k))
                    .ok()
            });
            let Some(key) = key else {
                unreadable += 1;
                return;
            };
            match m.payload() {
                None => {
                    latest.remove(&(key.shop_id, key.customer));
                }
                Some(v) => match runtime.block_on(decoder.decode_async::<CustomerProfile>(v)) {
                    Ok(p) => {
                        let slot = latest
                            .entry((key.shop_id, key.customer))
                            .or_insert_with(|| p.clone());
                        if p.version >= slot.version {
                            *slot = p;
                        }
                    }
                    Err(_) => unreadable += 1,
                },
            }
        },
    )?;
    if unreadable > 0 {
        tracing::warn!(
            unreadable,
            "Profile records that could not be read were left out of the fit."
        );
    }
    Ok(latest.into_values().collect())
}

/// "Now" for a shop's fit on the configured clock: the newest event time in its profiles
/// (stream, the default) or the wall clock.
pub fn clock_now(
    config: &EnricherConfig,
    profiles: &[&CustomerProfile],
    wall: chrono::DateTime<Utc>,
) -> chrono::DateTime<Utc> {
    match config.clock {
        Clock::Stream => super::fit::stream_time(profiles).unwrap_or(wall),
        Clock::Wall => wall,
    }
}

/// Fits every shop found in the profile topic as of `as_of` (None: the configured clock's
/// now) and publishes the models; returns them.
pub async fn fit_and_publish<C: rdkafka::ClientContext + 'static>(
    config: &Config,
    bootstrap: &str,
    decoder: &Decoder,
    producer: &FutureProducer<C>,
    model_encoder: &Encoder<ShopModel>,
    key_encoder: &Encoder<String>,
    as_of: Option<chrono::DateTime<Utc>>,
) -> anyhow::Result<Vec<ShopModel>> {
    let profiles = {
        let (config, bootstrap, decoder) = (config.clone(), bootstrap.to_string(), decoder.clone());
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || read_profiles(&config, &bootstrap, &decoder, &runtime))
            .await??
    };
    let mut by_shop: HashMap<&str, Vec<&CustomerProfile>> = HashMap::new();
    for p in &profiles {
        by_shop.entry(p.shop_id.as_str()).or_default().push(p);
    }
    let fitted_at = Utc::now();
    let mut shops: Vec<&str> = by_shop.keys().copied().collect();
    shops.sort_unstable();
    let mut out = Vec::new();
    for shop in shops {
        let as_of = as_of.unwrap_or_else(|| clock_now(&config.enricher, &by_shop[shop], fitted_at));
        let record = fit_shop(shop, &by_shop[shop], as_of, fitted_at, &config.enricher);
        let (key, value) = (
            key_encoder.encode(&shop.to_string())?,
            model_encoder.encode(&record)?,
        );
        publish(producer, &config.topics.models.name, &key, &value)
            .await
            .with_context(|| format!("publishing the model of shop {shop}"))?;
        out.push(record);
    }
    Ok(out)
}

/// Backtests every shop in the profile topic: each customer's full ledger is in their
/// profile, so the model is fitted on the orders created up to `as_of` and checked against the
/// orders of the `horizon_days` after it. Publishes each shop's report to the backtests topic
/// (what the insight page shows) and returns them.
pub async fn backtest_and_publish(
    config: &Config,
    bootstrap: &str,
    as_of: chrono::DateTime<Utc>,
    horizon_days: u32,
) -> anyhow::Result<Vec<woostream_core::contract::enriched::Backtest>> {
    use woostream_core::contract::enriched::Backtest;
    let t = &config.topics;
    let codecs = woostream_core::contract::codec::Codecs::register(
        config,
        &[
            (t.backtests.name.as_str(), "key", String::schema()),
            (t.backtests.name.as_str(), "value", Backtest::schema()),
        ],
    )
    .await
    .context("registering the backtest schemas")?;
    let profiles = {
        let (config, bootstrap, decoder) = (
            config.clone(),
            bootstrap.to_string(),
            codecs.decoder.clone(),
        );
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || read_profiles(&config, &bootstrap, &decoder, &runtime))
            .await??
    };
    let mut by_shop: HashMap<&str, Vec<crate::customer::CustomerState>> = HashMap::new();
    for p in &profiles {
        by_shop
            .entry(p.shop_id.as_str())
            .or_default()
            .push(crate::customer::from_profile(p));
    }
    let mut shops: Vec<&str> = by_shop.keys().copied().collect();
    shops.sort_unstable();
    let producer = woostream_core::kafka::create_producer(&config.kafka, bootstrap)?;
    let (key_encoder, encoder) = (codecs.encoder::<String>(), codecs.encoder::<Backtest>());
    let mut out = Vec::new();
    for shop in shops {
        let (report, _) = super::backtest::backtest(
            shop,
            &by_shop[shop],
            as_of,
            horizon_days,
            Utc::now(),
            &config.enricher,
        );
        let (key, value) = (
            key_encoder.encode(&shop.to_string())?,
            encoder.encode(&report)?,
        );
        publish(&producer, &t.backtests.name, &key, &value)
            .await
            .with_context(|| format!("publishing the backtest of shop {shop}"))?;
        out.push(report);
    }
    Ok(out)
}

/// Sends one record of a shop (a model, a backtest) and waits for the broker's acknowledgement.
async fn publish<C: rdkafka::ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    key: &[u8],
    value: &[u8],
) -> Result<(), rdkafka::error::KafkaError> {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}
