//! The enricher at the Kafka edge: a consume → process → produce → commit loop on one thread,
//! as rust-rdkafka's examples write it, with state restored on assignment and handed back on
//! revocation.
//!
//! Delivery, in two layers:
//! - With transactions (real Kafka), each commit interval is one transaction holding the
//!   profiles, the alerts and the input offsets; a zombie instance is fenced by the group
//!   metadata and its transactional id.
//! - Underneath, and alone on brokers without transactions (Tansu): offsets are committed only
//!   after every output of the processed records is acknowledged, and a restarted or new owner
//!   of a partition restores each customer's newest profile *below its committed offset*, then
//!   replays from there. The replay recomputes the same profile versions and alert ids, so
//!   consumers that drop what they already applied see every change exactly once.
//!
//! Partitions are assigned with the range assignor so that partition n of the orders and the
//! customers topics always land on the same instance (both are keyed by customer).
//!
//! The loop reads top-down in this file: [`start`] builds the producer (finding out whether the
//! broker ends transactions), the consumer and the shared [`Work`]; [`run`] polls, processes
//! and commits. The rest is in its own file: `process` (one record: decode, apply the pure
//! state change, emit), `outputs` (encoders, delivery tracking, commits), `restore`
//! (rebalancing: state restored on assignment, dropped on revocation), `transactions` (the
//! producer and the start-up probe) and `refit` (the periodic model refit).

mod io;
mod outputs;
mod process;
mod refit;
mod restore;
mod supervise;
mod transactions;
mod writer;

pub use outputs::{Deliveries, Outputs};
pub use restore::{Rebalancer, MARKER_HEADER};
pub use supervise::{start_supervised, Supervised};

use io::Io;
use outputs::{OutputProducer, Progress};
use process::State;
use refit::spawn_refit;
use restore::Restores;
use transactions::{create_producer, probe_transactions};
use writer::Writer;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;
use woostream_core::config::{Config, Transactions};
use woostream_core::kafka;
use woostream_core::kafka::admit::{admit, hold, seek_stalled};
use woostream_core::ops::Readiness;
use woostream_core::role::RoleContext;

use crate::metrics::Metrics;
use crate::model::topic::{self as models, Models};
use crate::partition::Settings;
use crate::products::ProductWatchSettings;

/// The role's name where the process reports on it.
const ROLE: &str = "enricher";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Input {
    Orders,
    Customers,
    Products,
    Reviews,
}

/// Everything the loop and the rebalance callbacks share. Only the polling thread touches it:
/// the callbacks run inside `poll`, while the loop does not hold the lock.
struct Work {
    /// The Kafka side: encoders, the producers and the writer, the key follower.
    io: Io,
    /// Partitions being restored, and the state revoked in the rebalance under way.
    restores: Restores,
    /// What was processed and not yet committed.
    progress: Progress,
    /// The customers and products of the assigned partitions, and what they are scored with.
    state: State,
    /// When the record being processed was written to Kafka: a recent one's subject key may
    /// not have been read yet (see `SubjectKeys::keys_for_record`).
    written_at: Option<chrono::DateTime<chrono::Utc>>,
    config: Config,
    bootstrap: String,
    metrics: Metrics,
    leader: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    failure: Option<anyhow::Error>,
    /// The loop ended with an error.
    stopped: bool,
    /// Holds partitions at a newer writer's record, and says so on `/readyz`.
    readiness: Readiness,
    /// Why the record [`Work::process`] just took was left for a newer release: the loop holds
    /// its partition there.
    newly_held: Option<anyhow::Error>,
}

pub struct Running {
    pub thread: std::thread::JoinHandle<anyhow::Result<()>>,
    pub model_thread: std::thread::JoinHandle<()>,
    pub catalogue_thread: std::thread::JoinHandle<()>,
    /// Whether this enricher publishes in Kafka transactions.
    pub transactional: bool,
}

impl Running {
    /// Waits for the enricher to stop (after `shutdown`, or on a fatal error).
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = tokio::task::spawn_blocking(move || {
            let r = self
                .thread
                .join()
                .map_err(|_| anyhow!("the enricher thread panicked"))?;
            let _ = self.model_thread.join();
            let _ = self.catalogue_thread.join();
            r
        })
        .await?;
        result
    }
}

/// What both starts do once per process, however often the enricher is started in it: its
/// secrets checked, its metrics registered, the group's lag on its input topics and whether
/// the brokers answer watched.
fn prologue(
    config: &Config,
    bootstrap: &str,
    registry: &prometheus::Registry,
    shutdown: &CancellationToken,
) -> anyhow::Result<Metrics> {
    config.check_secrets(&["schema_registry."])?;
    let metrics = Metrics::register(registry).context("registering enricher metrics")?;
    let t = &config.topics;
    kafka::lag::watch(
        "enricher",
        &config.kafka,
        bootstrap,
        &config.enricher.group_id,
        [&t.orders, &t.customers, &t.products, &t.reviews]
            .map(|t| t.name.clone())
            .to_vec(),
        registry,
        shutdown.clone(),
    )?;
    Ok(metrics)
}

/// Starts the enricher; it runs until `shutdown` or a fatal error.
pub async fn start(ctx: &RoleContext) -> anyhow::Result<Running> {
    let (config, bootstrap, registry) = (&ctx.config, ctx.bootstrap.as_str(), &ctx.registry);
    let (readiness, shutdown, create_topics) =
        (&ctx.readiness, ctx.shutdown.clone(), ctx.create_topics);
    let metrics = prologue(config, bootstrap, registry, &shutdown)?;
    launch(
        config,
        bootstrap,
        metrics,
        readiness,
        shutdown,
        create_topics,
    )
    .await
}

async fn launch(
    config: &Config,
    bootstrap: &str,
    metrics: Metrics,
    readiness: &Readiness,
    shutdown: CancellationToken,
    create_topics: bool,
) -> anyhow::Result<Running> {
    kafka::first_contact(config, bootstrap, create_topics).await?;
    let (outputs, decoder) = Outputs::for_config(config).await?;
    let with_registry = config.schema_registry.is_some();
    let runtime = tokio::runtime::Handle::current();
    let e = &config.enricher;
    let mut settings = Settings::from_config(e)?;
    let watch_settings = ProductWatchSettings {
        default_low_stock: e.default_low_stock,
        negative_review_max_rating: e.negative_review_max_rating,
    };
    let models = Arc::new(Models::new(e));
    // The follower also stops when the loop ends on its own (a fatal error).
    let loop_ended = shutdown.child_token();
    let model_thread = models::follow(
        models.clone(),
        config,
        bootstrap,
        decoder.clone(),
        runtime.clone(),
        metrics.clone(),
        loop_ended.clone(),
    )?;

    let timeout = Duration::from_millis(config.kafka.delivery_timeout_ms);
    let (producer, transactional) = {
        let (config, bootstrap) = (config.clone(), bootstrap.to_string());
        tokio::task::spawn_blocking(move || -> anyhow::Result<(OutputProducer, bool)> {
            if config.enricher.transactions == Transactions::Off {
                return Ok((create_producer(&config, &bootstrap, false)?, false));
            }
            let producer = create_producer(&config, &bootstrap, true)?;
            let probe_topic = &config.topics.transactions_probe.name;
            match probe_transactions(&producer, probe_topic, timeout) {
                Ok(()) => Ok((producer, true)),
                Err(e) if config.enricher.transactions == Transactions::Auto => {
                    tracing::warn!(error = %format!("{e:#}"), "The broker does not end transactions; relying on profile versions and alert ids for exactly-once effect.");
                    drop(producer);
                    Ok((create_producer(&config, &bootstrap, false)?, false))
                }
                Err(e) => Err(e.context(format!("enricher.transactions is on but the broker did not commit a transaction to {probe_topic}"))),
            }
        })
        .await??
    };
    tracing::info!(transactional, "Enricher producer ready.");

    let keys = {
        let (config, bootstrap) = (config.clone(), bootstrap.to_string());
        tokio::task::spawn_blocking(move || {
            woostream_core::privacy::SubjectKeys::start(&config, &bootstrap, false)
        })
        .await??
    };
    // Names of products and categories for the customers' taste.
    let (catalogue, catalogue_thread) = woostream_core::catalogue::follow_products(
        config,
        bootstrap,
        decoder.clone(),
        "enricher",
        // The enricher names what it writes from the catalogue: a restarted one must start
        // from the same catalogue the first saw.
        true,
        loop_ended.clone(),
    )
    .await?;
    settings.names = crate::partition::Names(catalogue);
    settings.defer_profiles = true;
    let ready = readiness.condition("enricher");
    let leader = Arc::new(AtomicBool::new(false));
    let producer = Arc::new(producer);
    let writer = Writer::start(producer.clone(), outputs.clone(), config)?;
    let work = Arc::new(Mutex::new(Work {
        io: Io {
            outputs: outputs.clone(),
            decoder: decoder.clone(),
            with_registry,
            runtime: runtime.clone(),
            producer,
            writer,
            marker_producer: kafka::create_producer(&config.kafka, bootstrap)?,
            transactional,
            keys,
        },
        restores: Restores::default(),
        progress: Progress::default(),
        state: State {
            settings,
            watch_settings,
            models: models.clone(),
            customers: HashMap::new(),
            product_watches: HashMap::new(),
            erasure_follows_deletion: config.privacy.seal_personal_data
                && config.privacy.erase_on_customer_deleted,
            models_seen: 0,
            rescore_allowance: (0.0, Instant::now()),
        },
        written_at: None,
        config: config.clone(),
        bootstrap: bootstrap.to_string(),
        metrics: metrics.clone(),
        leader: leader.clone(),
        ready: ready.clone(),
        failure: None,
        stopped: false,
        readiness: readiness.clone(),
        newly_held: None,
    }));
    let mut consumer_config = kafka::consumer_config(&config.kafka, bootstrap, &e.group_id);
    consumer_config
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", e.session_timeout_ms.to_string());
    // Static membership: a pod restarted under its own name (the StatefulSet ordinal) within
    // the session timeout gets its partitions back without a rebalance.
    if let Some(instance) = transactions::static_instance(config) {
        consumer_config.set("group.instance.id", instance);
    }
    kafka::stats::enable(&mut consumer_config, &config.kafka);
    let consumer: BaseConsumer<Rebalancer> = consumer_config
        .create_with_context(Rebalancer { work: work.clone() })
        .context("creating the enricher's consumer")?;
    let t = &config.topics;
    let inputs = [
        t.orders.name.as_str(),
        t.customers.name.as_str(),
        t.products.name.as_str(),
        t.reviews.name.as_str(),
    ];
    consumer
        .subscribe(&inputs)
        .context("subscribing to the shop topics")?;
    // Ready once the group assigned this instance its partitions (possibly none) and their
    // state is restored: the rebalance callback sets it.

    if e.refit_interval_secs > 0 {
        spawn_refit(
            config.clone(),
            bootstrap.to_string(),
            decoder,
            outputs,
            leader,
            metrics,
            models.clone(),
            // Ends with this run's loop: a restarted enricher starts its own.
            loop_ended.clone(),
        );
    }

    let interval = Duration::from_millis(e.commit_interval_ms);
    let idle_commit = Duration::from_millis(e.idle_commit_ms);
    let thread = std::thread::Builder::new()
        .name("enricher".into())
        .spawn(move || {
            let result = run(consumer, work, interval, idle_commit, shutdown);
            loop_ended.cancel();
            result
        })
        .context("spawning the enricher thread")?;
    Ok(Running {
        thread,
        model_thread,
        catalogue_thread,
        transactional,
    })
}

/// The loop: poll, process, commit every `interval`; commit once more on shutdown.
fn run(
    consumer: BaseConsumer<Rebalancer>,
    work: Arc<Mutex<Work>>,
    interval: Duration,
    idle_commit: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut last_commit = Instant::now();
    let mut last_record = Instant::now();
    let mut uncommitted = false;
    let result = (|| -> anyhow::Result<()> {
        while !shutdown.is_cancelled() {
            // While something is uncommitted, poll in steps short enough to notice a quiet input.
            let wait = if uncommitted {
                idle_commit.clamp(Duration::from_millis(1), Duration::from_millis(100))
            } else {
                Duration::from_millis(100)
            };
            let polled = consumer.poll(wait);
            if polled.is_some() {
                last_record = Instant::now();
            }
            let idle = last_record.elapsed() >= idle_commit;
            let mut w = work.lock().expect("work lock");
            if let Some(e) = w.failure.take() {
                return Err(e);
            }
            let w = &mut *w;
            match polled {
                Some(Ok(m))
                    if admit(&consumer, &mut w.progress.resume, &w.readiness, ROLE, &m)? =>
                {
                    w.process(&m)?;
                    if let Some(e) = w.newly_held.take() {
                        hold(&consumer, &w.readiness, ROLE, &m, &e)?;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "Kafka consumer error."),
                None => {}
            }
            // One partition's restore between polls: the others go on meanwhile.
            if !w.restores.restoring.is_empty() {
                w.restore_next(&consumer)?;
            }
            w.apply_new_models()?;
            seek_stalled(&consumer, &mut w.progress.resume, ROLE)?;
            // Between bursts, commit at once instead of at the next interval: what was
            // processed becomes durable progress as soon as its outputs are acknowledged.
            uncommitted = w.has_uncommitted();
            if last_commit.elapsed() >= interval || (idle && uncommitted) {
                w.commit(&consumer, false)?;
                w.update_gauges();
                last_commit = Instant::now();
                uncommitted = w.has_uncommitted();
            }
        }
        work.lock().expect("work lock").commit(&consumer, true)
    })();
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "The enricher stops.");
        work.lock().expect("work lock").stopped = true;
    }
    // Leaving the group (inside drop) runs the revoke callback once more.
    drop(consumer);
    result
}
