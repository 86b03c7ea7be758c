//! woostream's producer role: the only thing WooCommerce talks to.
//!
//! What WooCommerce sends and how it is read (payloads, signatures, the normaliser, the REST
//! client) is `woostream_woo`; here `answer` is pure, `publish` and `spool` are the Kafka and
//! disk edges, `server` is the HTTP edge, and [`start`] wires them together.

pub mod answer;
pub mod catalogue;
pub mod crm_inbound;
pub mod dedup;
pub mod metrics;
pub mod personal;
pub mod publish;
pub mod rest;
pub mod server;
pub mod spool;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use woostream_core::config::Config;
use woostream_core::kafka;
use woostream_core::role::RoleContext;

use crate::metrics::Metrics;
use crate::publish::{Encoders, Publisher};
use crate::spool::Spool;

/// A started producer: where it listens and the task that ends after a graceful shutdown.
pub struct Running {
    pub addr: SocketAddr,
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// At shutdown, what was spooled goes to Kafka, tried again and again while `limit` lasts (the
/// pod's termination grace): a pod scaled away during a Kafka incident holds on until the
/// brokers return rather than leave acknowledged deliveries on a volume nobody reads.
async fn hand_over(
    spool: &Arc<Spool>,
    producer: &kafka::RenewingProducer,
    timeout: Duration,
    limit: Duration,
) {
    if spool.pending_bytes() == 0 || limit.is_zero() {
        return;
    }
    tracing::info!(
        pending_bytes = spool.pending_bytes(),
        limit_secs = limit.as_secs(),
        "Draining the spool into Kafka before exiting."
    );
    match spool::drain_until_empty(spool, producer, timeout, limit).await {
        Ok(records) => tracing::info!(records, "Drained the spool into Kafka before exiting."),
        Err(e) => tracing::warn!(
            pending_bytes = spool.pending_bytes(),
            error = format!("{e:#}"),
            "The spool was not drained within producer.shutdown_drain_secs; it stays on its volume, for the next start with this volume or `woostream spool drain`."
        ),
    }
}

/// Starts the producer role against `bootstrap` and serves webhooks until `shutdown`; then it
/// stops accepting, finishes in-flight requests and flushes the Kafka producer.
pub async fn start(ctx: &RoleContext) -> anyhow::Result<Running> {
    let (config, bootstrap, registry) = (&ctx.config, ctx.bootstrap.as_str(), &ctx.registry);
    let (readiness, shutdown) = (&ctx.readiness, ctx.shutdown.clone());
    if config.shops.is_empty() {
        anyhow::bail!("no shops are configured: add a [[shops]] entry with id, source and secret");
    }
    ctx.begin(
        &["shops[", "producer.", "privacy.", "schema_registry."],
        None,
    )
    .await?;
    // Not ready until the webhook port is bound (the catalogue is loaded before that).
    let webhooks_ready = readiness.condition("webhooks");
    let metrics = Metrics::register(registry).context("registering producer metrics")?;
    kafka::stats::register(registry)?;
    metrics.start_counting(
        &config
            .shops
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
    );
    kafka::renewing::register_metrics(registry).context("registering Kafka metrics")?;
    let producer = kafka::renewing_producer(&config.kafka, bootstrap, "producer")?;
    let (encoders, decoder) = Encoders::register(config).await?;
    let (catalogue, catalogue_thread) =
        catalogue::follow_products(config, bootstrap, decoder, shutdown.clone()).await?;
    let timeout = Duration::from_millis(config.kafka.delivery_timeout_ms);
    let spool = match &config.producer.spool_dir {
        Some(dir) => Some(Arc::new(Spool::open(
            dir,
            config.producer.spool_max_bytes,
            metrics.clone(),
        )?)),
        None => None,
    };
    let publisher = Publisher::new(producer.clone(), spool.clone(), metrics.clone(), timeout);

    // With a spool, deliveries are kept on disk while Kafka is away: an unreachable broker must
    // not make the pod unready, or a load balancer would send WooCommerce's deliveries nowhere
    // while the spool stands empty. So the condition is "the broker answers, or the spool can
    // take deliveries" (it has room and its last write succeeded), checked with every probe.
    // Without a spool, readiness follows the broker.
    let deliveries_ready = match &spool {
        None => readiness.condition("kafka"),
        Some(_) => readiness.condition("kafka or spool"),
    };
    if spool.is_some() {
        deliveries_ready.store(true, Ordering::Relaxed);
    }
    tokio::spawn(producer.clone().watch(shutdown.clone(), {
        let (metrics, spool) = (metrics.clone(), spool.clone());
        move |up| {
            let spool_writable = spool.as_ref().is_some_and(|s| s.is_writable());
            deliveries_ready.store(up || spool_writable, Ordering::Relaxed);
            metrics
                .kafka_reachable
                .with_label_values(&["producer"])
                .set(up as i64);
        }
    }));

    let sealer = personal::Sealer::start_async(config, bootstrap).await?;
    let eraser = match &sealer {
        Some(s) if config.privacy.erase_on_customer_deleted => Some(Arc::new(
            personal::Eraser::new(config, s, producer.clone()).await?,
        )),
        _ => None,
    };
    if let (Some(spool), Some(eraser)) = (&spool, &eraser) {
        spool.carry_erasures_with(eraser.clone());
    }
    // Draining starts once the spool can carry out the erasure requests it may hold.
    if let Some(spool) = &spool {
        tokio::spawn(
            spool
                .clone()
                .drain_forever(producer.clone(), timeout, shutdown.clone()),
        );
    }
    let ingest = Arc::new(server::Ingest::new(
        config,
        encoders,
        publisher,
        metrics.clone(),
        catalogue,
        sealer,
        eraser,
    ));
    let limits = woostream_core::listener::ConnectionLimits {
        header_timeout: Duration::from_millis(config.producer.header_timeout_ms),
        max_connections: config.producer.max_connections,
        max_connections_per_address: config.producer.max_connections_per_address,
    };
    let app = server::router(&config.producer.webhook_path, ingest);
    let listener = tokio::net::TcpListener::bind(config.producer.listen)
        .await
        .with_context(|| format!("binding the webhook listener to {}", config.producer.listen))?;
    let addr = listener.local_addr()?;
    webhooks_ready.store(true, Ordering::Relaxed);
    tracing::info!(%addr, path = %config.producer.webhook_path, shops = config.shops.len(), "Producer accepting WooCommerce webhooks.");
    let shutdown_drain = Duration::from_secs(config.producer.shutdown_drain_secs);
    let task = tokio::spawn(async move {
        let counters = woostream_core::listener::ListenerMetrics {
            connections: metrics.connections.clone(),
            refused: metrics.connections_refused.clone(),
        };
        woostream_core::listener::serve(listener, app, limits, counters, shutdown).await;
        if let Some(spool) = &spool {
            hand_over(spool, &producer, timeout, shutdown_drain).await;
        }
        tracing::info!("Webhook listener closed; flushing the Kafka producer.");
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
            .await?
            .context("flushing the Kafka producer")?;
        // Its consumer leaves cleanly while the brokers are still there.
        tokio::task::spawn_blocking(move || catalogue_thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the product catalogue thread panicked"))?;
        if let Some(spool) = spool {
            if spool.pending_bytes() > 0 {
                tracing::warn!(
                    pending_bytes = spool.pending_bytes(),
                    "Spooled records remain; they are drained at the next start."
                );
            }
        }
        Ok(())
    });
    Ok(Running { addr, task })
}

/// What `woostream spool drain` did.
#[derive(Debug)]
pub struct Drained {
    pub records: usize,
    pub pending_bytes_before: u64,
}

/// `woostream spool drain`: empties into Kafka a spool directory no producer runs on — the
/// volume of a pod scaled away during a Kafka incident — waiting up to `wait` for the brokers.
/// The directory's lock keeps it from racing a producer that does run on it. Erasure requests
/// kept in it are carried out as the producer would.
pub async fn drain_spool_directory(
    config: &Config,
    bootstrap: &str,
    dir: &std::path::Path,
    wait: Duration,
) -> anyhow::Result<Drained> {
    config.check_secrets(&["shops[", "privacy.", "schema_registry."])?;
    let metrics = Metrics::register(&prometheus::Registry::new())?;
    let spool = Arc::new(Spool::open(dir, config.producer.spool_max_bytes, metrics)?);
    let pending_bytes_before = spool.pending_bytes();
    if pending_bytes_before == 0 {
        return Ok(Drained {
            records: 0,
            pending_bytes_before,
        });
    }
    let started = tokio::time::Instant::now();
    kafka::check_connection(&config.kafka, bootstrap, wait)
        .await
        .context("waiting for Kafka")?;
    let producer = kafka::renewing_producer(&config.kafka, bootstrap, "spool-drain")?;
    let sealer = personal::Sealer::start_async(config, bootstrap).await?;
    if let Some(s) = &sealer {
        if config.privacy.erase_on_customer_deleted {
            spool.carry_erasures_with(Arc::new(
                personal::Eraser::new(config, s, producer.clone()).await?,
            ));
        }
    }
    let timeout = Duration::from_millis(config.kafka.delivery_timeout_ms);
    let left = wait.saturating_sub(started.elapsed()).max(timeout);
    let records = spool::drain_until_empty(&spool, &producer, timeout, left).await?;
    tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
        .await?
        .context("flushing the Kafka producer")?;
    Ok(Drained {
        records,
        pending_bytes_before,
    })
}
