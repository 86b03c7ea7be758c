//! Kafka client set-up shared by every role: producer settings woostream relies on, topic
//! creation through the admin API, broker reachability, and the embedded mock cluster.

use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, Producer};

pub mod admit;
pub mod connect;
pub mod exact_resume;
pub mod follow;
pub mod hold;
pub mod lag;
pub mod reading;
pub mod renewing;
pub mod span;
pub mod stats;
pub mod topic_settings;

pub use connect::check_connection;

/// How long a role waits at start for a first answer from the brokers before it carries on
/// (refusals such as wrong credentials end the wait at once).
pub const FIRST_CONTACT_WAIT: Duration = Duration::from_secs(10);

/// What every role does first: connect with its settings (a refusal stops it here, naming the
/// setting to fix; see [`check_connection`]), then create the missing topics when
/// `create_topics`.
pub async fn first_contact(
    config: &crate::config::Config,
    bootstrap: &str,
    create_topics: bool,
) -> anyhow::Result<()> {
    check_connection(&config.kafka, bootstrap, FIRST_CONTACT_WAIT).await?;
    // Topics someone else creates are checked by every role that starts.
    if create_topics || !config.topics.create {
        ensure_topics(&config.kafka, bootstrap, &config.topics, &config.retention).await?;
    }
    Ok(())
}

pub use renewing::RenewingProducer;

use crate::config::{KafkaConfig, TopicsConfig};

/// librdkafka settings woostream's guarantees depend on; the configuration may not override them.
pub const RESERVED_PRODUCER_OPTIONS: &[&str] = &[
    "bootstrap.servers",
    "acks",
    "enable.idempotence",
    "partitioner",
    "max.in.flight.requests.per.connection",
];

/// Base client settings: servers, client id, then the user's passthrough options.
pub fn client_config(kafka: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", &kafka.client_id)
        // Tansu and some proxies advertise 127.0.0.1; never let librdkafka try ::1 first.
        .set("broker.address.family", "v4");
    for (k, v) in kafka.security.client_settings() {
        c.set(k, v);
    }
    for (k, v) in &kafka.options {
        c.set(k, v);
    }
    c
}

/// The producer every role writes with: idempotent, acks=all, murmur2 partitioning so that Java
/// clients agree on where a key lives.
pub fn producer_config(kafka: &KafkaConfig, bootstrap: &str) -> ClientConfig {
    let mut c = client_config(kafka, bootstrap);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", kafka.linger_ms.to_string())
        .set("compression.codec", &kafka.compression)
        .set("message.timeout.ms", kafka.delivery_timeout_ms.to_string());
    c
}

/// The consumer every role reads its input with: in `group` (offsets committed by the role
/// itself, only once what it made of a record is durable), from the beginning when the group
/// has no offsets, and only records of committed transactions.
pub fn consumer_config(kafka: &KafkaConfig, bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = client_config(kafka, bootstrap);
    c.set("group.id", kafka.namespaced(group))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    c
}

/// A [`RenewingProducer`] with [`producer_config`]: what every long-running role writes with.
pub fn renewing_producer(
    kafka: &KafkaConfig,
    bootstrap: &str,
    role: &'static str,
) -> anyhow::Result<std::sync::Arc<RenewingProducer>> {
    let mut config = producer_config(kafka, bootstrap);
    stats::enable(&mut config, kafka);
    RenewingProducer::with_max_message(config, role, kafka.max_message_bytes)
}

pub fn create_producer(kafka: &KafkaConfig, bootstrap: &str) -> anyhow::Result<FutureProducer> {
    producer_config(kafka, bootstrap)
        .create()
        .with_context(|| format!("creating the Kafka producer for {bootstrap}"))
}

/// Asks the cluster for metadata (a blocking librdkafka call, so off the async threads).
pub async fn broker_reachable<C: rdkafka::ClientContext + 'static>(
    producer: &FutureProducer<C>,
    timeout: Duration,
) -> bool {
    let client = producer.clone();
    tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(None, timeout)
            .map(|m| !m.brokers().is_empty())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Creates the configured topics that do not exist yet, then checks that the topics keyed by
/// customer have the same number of partitions.
pub async fn ensure_topics(
    kafka: &KafkaConfig,
    bootstrap: &str,
    topics: &TopicsConfig,
    retention: &crate::config::RetentionConfig,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka, bootstrap)
        .create()
        .context("creating the Kafka admin client")?;
    if topics.create {
        let all = topics.all();
        // Retention by kind of data (see the README's "Personal data").
        let extras: Vec<Vec<(&str, String)>> = all
            .iter()
            .map(|(key, t)| retention.topic_settings(topics.kind_of(key), t))
            .collect();
        // Topics take the records the producer may write (a large order, the dead letter of a
        // body at producer.max_body_bytes); a broker's default is about 1 MB.
        let max_message = kafka.max_message_bytes.to_string();
        let min_insyncs: Vec<Option<String>> = all
            .iter()
            .map(|(_, t)| {
                topic_settings::min_insync_replicas(topics.replication_of(t)).map(|n| n.to_string())
            })
            .collect();
        let new_topics: Vec<NewTopic> = all
            .iter()
            .zip(&extras)
            .zip(&min_insyncs)
            .map(|(((_, t), extra), min_insync)| {
                let rf = TopicReplication::Fixed(topics.replication_of(t));
                let mut new = NewTopic::new(&t.name, topics.partitions_of(t), rf)
                    .set("cleanup.policy", &t.cleanup_policy)
                    .set("max.message.bytes", &max_message);
                if let Some(n) = &min_insync {
                    new = new.set("min.insync.replicas", n);
                }
                for (k, v) in extra {
                    new = new.set(k, v);
                }
                new
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .context("creating topics through the admin API")?;
        for result in results {
            match result {
                Ok(name) => tracing::info!(topic = %name, "Created topic."),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => bail!("creating topic {name}: {code}"),
            }
        }
    }
    let names: Vec<String> = topics.all().iter().map(|(_, t)| t.name.clone()).collect();
    // (name, partitions, replicas) of each topic; the admin client comes back for the settings.
    type Counts = Vec<(String, usize, usize)>;
    let (admin, counts) = tokio::task::spawn_blocking(
        move || -> anyhow::Result<(AdminClient<DefaultClientContext>, Counts)> {
            let mut out = Vec::new();
            for name in names {
                let md = admin
                    .inner()
                    .fetch_metadata(Some(&name), Duration::from_secs(10))
                    .with_context(|| format!("reading metadata of topic {name}"))?;
                let (partitions, replicas) =
                    md.topics()
                        .iter()
                        .find(|t| t.name() == name)
                        .map_or((0, 0), |t| {
                            let replicas = t.partitions().first().map_or(0, |p| p.replicas().len());
                            (t.partitions().len(), replicas)
                        });
                out.push((name, partitions, replicas));
            }
            Ok((admin, out))
        },
    )
    .await??;
    let count = |name: &str| {
        counts
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(0, |(_, c, _)| *c)
    };
    for (key, t) in topics.all() {
        if count(&t.name) == 0 {
            bail!(
                "topic {} (topics.{key}) does not exist and topics.create is false",
                t.name
            );
        }
    }
    let (orders, customers) = (count(&topics.orders.name), count(&topics.customers.name));
    if orders != customers {
        bail!(
            "topics {} ({orders} partitions) and {} ({customers} partitions) are both keyed by customer and must have the same partition count",
            topics.orders.name,
            topics.customers.name
        );
    }
    let found = topic_settings::read(
        &admin,
        counts
            .into_iter()
            .map(|(name, _, replicas)| (name, replicas)),
    )
    .await;
    let problems = topic_settings::problems(
        topics,
        kafka.max_message_bytes,
        &found,
        topics.warn_single_replica,
    );
    for warning in &problems.warnings {
        tracing::warn!(warning = %warning, "A topic is weaker than woostream's promises need (topics.warn_single_replica = false for a development broker).");
    }
    if !problems.refusals.is_empty() {
        bail!("{}", problems.refusals.join("; "));
    }
    Ok(())
}

/// Records in `topic` now: the sum over its partitions of high minus low watermark. Blocking
/// (librdkafka metadata calls); on Tansu, whose ListOffsets is unreliable, it can undercount.
pub fn record_count(kafka: &KafkaConfig, bootstrap: &str, topic: &str) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = client_config(kafka, bootstrap)
        .create()
        .context("creating a Kafka client")?;
    let (low, high) = watermarks(&consumer, topic, Duration::from_secs(10))?;
    Ok(high - low)
}

/// The low and high watermarks of `topic`, each summed over its partitions.
pub fn watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<(i64, i64)> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("reading metadata of topic {topic}"))?;
    let (mut low, mut high) = (0, 0);
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        let (l, h) = consumer
            .fetch_watermarks(topic, p.id(), timeout)
            .with_context(|| format!("reading watermarks of {topic}/{}", p.id()))?;
        (low, high) = (low + l, high + h);
    }
    Ok((low, high))
}

/// librdkafka's in-process mock cluster, kept on its own thread (it is not `Send`) for as long
/// as this handle lives. The embedded default for `woostream run` and for fast tests.
pub struct EmbeddedKafka {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedKafka {
    /// Starts `brokers` mock brokers and creates the configured topics on them (the mock
    /// cluster does not serve the admin API).
    pub fn start(brokers: i32, topics: &TopicsConfig) -> anyhow::Result<EmbeddedKafka> {
        let specs: Vec<(String, i32)> = topics
            .all()
            .iter()
            .map(|(_, t)| (t.name.clone(), topics.partitions_of(t)))
            .collect();
        let replication = topics.replication_factor.min(brokers);
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(anyhow::anyhow!("starting the mock cluster: {e}")));
                        return;
                    }
                };
                for (name, partitions) in &specs {
                    if let Err(e) = cluster.create_topic(name, *partitions, replication) {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("creating {name}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Blocks until the handle is dropped.
                let _ = stop_rx.recv();
                drop(cluster);
            })
            .context("spawning the embedded Kafka thread")?;
        let bootstrap = ready_rx
            .recv()
            .context("the embedded Kafka thread ended before starting")??;
        Ok(EmbeddedKafka {
            bootstrap,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
