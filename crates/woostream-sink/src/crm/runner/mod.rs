//! The CRM sink at the Kafka edge: orders, customer accounts and profiles in; contacts and
//! deals coalesced, flushed within the CRM's budget one flush at a time; every outcome in the
//! audit topic (and refusals in the dead-letter topic) before the offsets that caused it are
//! committed.
//!
//! One sink per CRM account: the budget is the account's, so the sink takes every partition
//! itself, as the Slack sink does. What the CRM already has (contact ids, associated deals) is
//! restored from the audit topic at start.
//!
//! The loop reads top-down here (start, run, flushes and their reports); one record in is in
//! `record`, tombstones and erasures in `erasure`, the audit topic's reading and writing in
//! `audit`.

mod audit;
mod record;
mod tombstones;
pub use audit::{apply_audit, recorder};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

use crate::audit::fold_audit;
use anyhow::Context;
use rdkafka::consumer::StreamConsumer;

/// The CRM sink's consumer: librdkafka's statistics become metrics.
type RecordConsumer = StreamConsumer<kafka::stats::ClientStats>;
use tokio_util::sync::CancellationToken;
use woostream_core::config::crm::ContactErasure;
use woostream_core::config::crm::CrmConfig;
use woostream_core::config::Config;
use woostream_core::contract::codec::Decoder;
use woostream_core::kafka;
use woostream_core::kafka::admit::{admit, hold, seek_stalled};
use woostream_core::kafka::exact_resume::ResumeGuard;
use woostream_core::privacy::erased::ErasedSubjects;
use woostream_core::privacy::CustomerHasher;
use woostream_core::role::Consumes;

use super::changes;
use super::flush::{Interrupted, Known, Report, Sender, SharedKnown};
use super::metrics::Metrics;
use super::pending::{Pending, Policy};
use super::records::Recorder;
use crate::intake::{assign_all, Offsets};
use woostream_hubspot::api::Crm;
use woostream_hubspot::client::HubSpot;
use woostream_hubspot::memory::{MemoryCrm, Store};
use woostream_hubspot::setup;

/// A running CRM sink.
pub struct CrmSink {
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The dry run's CRM.
    pub store: Option<Arc<Mutex<Store>>>,
    pub metrics: Metrics,
}

/// Starts the CRM sink: restores what the CRM has, then consumes until `shutdown`.
pub async fn start(ctx: &woostream_core::role::RoleContext) -> anyhow::Result<CrmSink> {
    let (config, bootstrap, registry) = (&ctx.config, ctx.bootstrap.as_str(), &ctx.registry);
    let (readiness, shutdown) = (&ctx.readiness, ctx.shutdown.clone());
    // The token only where HubSpot is called (a dry run keeps the CRM in memory).
    let used: &[&str] = if config.crm.dry_run {
        &["crm.dead_letter_key", "schema_registry."]
    } else {
        &["crm.", "schema_registry."]
    };
    let t = &config.topics;
    let consumes = Consumes {
        role: ROLE,
        group: &config.crm.consumer_group(),
        topics: [&t.orders, &t.customers, &t.profiles]
            .map(|t| t.name.clone())
            .to_vec(),
    };
    ctx.begin(used, Some(consumes)).await?;
    let metrics = Metrics::register(registry).context("registering CRM metrics")?;
    let (recorder, decoder) = recorder(config, bootstrap, metrics.clone()).await?;
    let restored = fold_audit(
        config,
        bootstrap,
        &decoder,
        vec![config.crm.sink_name()],
        "crm-restore",
        Known::default(),
        apply_audit,
    )
    .await?;
    tracing::info!(
        contacts = restored.contacts.len(),
        associated = restored.associated.len(),
        "CRM state restored from the audit topic."
    );
    let restored = Restored {
        recorder,
        decoder,
        known: Arc::new(Mutex::new(restored)),
    };
    let (task, store) = if config.crm.dry_run {
        let crm = MemoryCrm::new(Store::permissive());
        let store = crm.0.clone();
        let task = launch(config, bootstrap, crm, restored, readiness, shutdown)?;
        (task, Some(store))
    } else {
        let token = config
            .crm
            .resolved_token()
            .context("crm.token (or crm.token_env) is not set")?;
        let crm = HubSpot::new(&config.crm.api_url, token)?;
        check_properties(&crm, &config.crm).await?;
        let task = launch(config, bootstrap, crm, restored, readiness, shutdown)?;
        (task, None)
    };
    Ok(CrmSink {
        task,
        store,
        metrics,
    })
}

/// A property the mapping writes that the CRM lacks stops the start with the key to fix; a CRM
/// that cannot answer now does not (it is retried like every call).
async fn check_properties<C: Crm>(crm: &C, config: &CrmConfig) -> anyhow::Result<()> {
    match setup::check(crm, config).await {
        Ok(checked) if checked.problems.is_empty() => {
            for (status, stage) in &checked.unknown_stages {
                tracing::warn!(
                    status = status.as_str(),
                    stage = stage.as_str(),
                    pipeline = config.pipeline.as_str(),
                    "The pipeline has no such stage: deals of orders in this status will be dead-lettered until it exists (then `woostream replay`)."
                );
            }
            tracing::info!("The CRM has every property the mapping writes, and the pipeline.");
            Ok(())
        }
        Ok(checked) => {
            let list: Vec<String> = checked
                .problems
                .iter()
                .map(setup::Problem::describe)
                .collect();
            anyhow::bail!("{}", list.join("\n"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "The CRM's properties cannot be checked now; starting anyway.");
            Ok(())
        }
    }
}

/// What the sink starts from: its audit trail read back, and what reads and records.
struct Restored {
    recorder: Recorder,
    decoder: Decoder,
    known: SharedKnown,
}

fn launch<C: Crm>(
    config: &Config,
    bootstrap: &str,
    crm: C,
    restored: Restored,
    readiness: &woostream_core::ops::Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let Restored {
        recorder,
        decoder,
        known,
    } = restored;
    let mut consumer_config =
        kafka::consumer_config(&config.kafka, bootstrap, &config.crm.consumer_group());
    // Changes wait in `pending` (bounded); librdkafka's own prefetch would otherwise hold up to
    // 64 MiB and 100,000 records more of a backlog.
    consumer_config
        .set("queued.max.messages.kbytes", "16384")
        .set("queued.min.messages", "10000");
    let consumer: RecordConsumer = kafka::stats::create(consumer_config, &config.kafka, "crm")
        .context("creating the CRM sink consumer")?;
    let t = &config.topics;
    let topics = Topics {
        orders: t.orders.name.clone(),
        customers: t.customers.name.clone(),
        profiles: t.profiles.name.clone(),
    };
    let mut guard = ResumeGuard::default();
    let earlier = config.crm.earlier_group();
    assign_all(
        &consumer,
        &[&topics.orders, &topics.customers, &topics.profiles],
        &mut guard,
        earlier.as_deref().map(|g| (&config.kafka, bootstrap, g)),
    )?;
    let c = &config.crm;
    let erased_list = match &recorder.keys {
        Some(_) => Some(ErasedList {
            subjects: ErasedSubjects::start(config, bootstrap, "crm-erased-subjects")
                .context("reading the erased-subject list")?,
            hashers: config
                .shops
                .iter()
                .map(|s| (s.id.clone(), CustomerHasher::for_shop(config, &s.id)))
                .collect(),
        }),
        None => None,
    };
    let sender = Sender::new(crm, c, recorder.metrics.clone(), shutdown.child_token());
    let mut l = Loop {
        policy: Policy {
            batch_size: c.batch_size,
            max_delay: Duration::from_millis(c.max_delay_ms),
            guest_wait: Duration::from_secs(c.guest_wait_secs),
        },
        topics,
        decoder,
        recorder: Arc::new(recorder),
        sender: Arc::new(sender),
        known,
        pending: Pending::default(),
        offsets: Offsets::default(),
        guard,
        events: 0,
        sent: 0,
        erasure: c.erasure,
        erased: HashSet::new(),
        erased_list,
        readiness: readiness.clone(),
        newly_held: None,
    };
    Ok(tokio::spawn(
        async move { l.run(&consumer, shutdown).await },
    ))
}

/// The role's name where the process reports on it.
const ROLE: &str = "crm";

struct Topics {
    orders: String,
    customers: String,
    profiles: String,
}

struct Loop<C> {
    policy: Policy,
    topics: Topics,
    decoder: Decoder,
    recorder: Arc<Recorder>,
    sender: Arc<Sender<C>>,
    known: SharedKnown,
    pending: Pending,
    offsets: Offsets,
    guard: ResumeGuard,
    /// Changes read and changes sent: the coalescing ratio.
    events: u64,
    sent: u64,
    erasure: ContactErasure,
    /// People erased whose profile tombstone has not been read yet: an older profile version
    /// still to come must not write their contact again.
    erased: HashSet<(String, String)>,
    /// Who was erased and when (with sealing on): their past never makes a contact again.
    erased_list: Option<ErasedList>,
    /// Holds partitions at a newer writer's record, and says so on `/readyz`.
    readiness: woostream_core::ops::Readiness,
    /// A newer writer's record [`Loop::on_record`] just stopped at, for the loop to hold.
    newly_held: Option<anyhow::Error>,
}

/// The erased-subject list with each shop's subject references.
struct ErasedList {
    subjects: ErasedSubjects,
    hashers: HashMap<String, CustomerHasher>,
}

impl ErasedList {
    fn erased_at(&self, shop: &str, customer: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        if self.subjects.is_empty() {
            return None;
        }
        let hasher = self.hashers.get(shop)?;
        self.subjects.erased_at(&hasher.subject_ref(shop, customer))
    }
}

type Flushing = tokio::task::JoinHandle<Result<Report, Interrupted>>;

/// Memory bound: stop reading while this many contacts and deals wait for the CRM.
const MAX_PENDING: usize = 200_000;

/// What one record asks of the CRM; `None`: its personal fields are sealed under a deleted
/// key (its person was erased), so nothing.
type Decoded = Option<(Option<changes::ContactChange>, Option<changes::DealChange>)>;

impl<C: Crm> Loop<C> {
    async fn run(
        &mut self,
        consumer: &RecordConsumer,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut flushing: Option<Flushing> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut commit_every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                m = consumer.recv(), if self.pending.len() < MAX_PENDING => {
                    let m = m.context("reading the CRM sink's topics")?;
                    if admit(consumer, &mut self.guard, &self.readiness, ROLE, &m)? {
                        let record = woostream_core::kafka::span::record_span("crm", &m);
                        self.on_record(&m).instrument(record).await?;
                        if let Some(e) = self.newly_held.take() {
                            hold(consumer, &self.readiness, ROLE, &m, &e)?;
                        }
                    }
                }
                r = async { flushing.as_mut().expect("guarded").await }, if flushing.is_some() => {
                    flushing = None;
                    if let Ok(report) = r.context("the CRM flush task")? {
                        self.on_report(report).await?;
                    }
                }
                _ = tick.tick() => {
                    if flushing.is_none() {
                        flushing = self.start_flush();
                    }
                    seek_stalled(consumer, &mut self.guard, ROLE)?;
                    self.sender_metrics().pending.set(self.pending.len() as i64);
                }
                _ = commit_every.tick() => {
                    if self.offsets.commit(consumer)? {
                        self.sender_metrics().commits.inc();
                    }
                }
            }
        }
        // The flush in progress stops at its next wait; what it finished is recorded.
        if let Some(f) = flushing {
            if let Ok(Ok(Ok(report))) = tokio::time::timeout(Duration::from_secs(35), f).await {
                self.on_report(report).await?;
            }
        }
        self.offsets.commit(consumer)?;
        Ok(())
    }

    fn sender_metrics(&self) -> &Metrics {
        &self.recorder.metrics
    }

    fn start_flush(&mut self) -> Option<Flushing> {
        let taken = {
            let known = self.known.lock().expect("known");
            self.pending.take(
                Instant::now(),
                self.policy,
                &self.sender.mapping,
                |shop, c| {
                    known
                        .contacts
                        .contains_key(&(shop.to_string(), c.to_string()))
                },
            )
        };
        if taken.is_empty() {
            return None;
        }
        let (sender, known) = (self.sender.clone(), self.known.clone());
        Some(tokio::spawn(
            async move { sender.flush(taken, &known).await },
        ))
    }

    async fn on_report(&mut self, report: Report) -> anyhow::Result<()> {
        self.recorder.record(&report).await?;
        let sources = report
            .contacts
            .iter()
            .flat_map(|(i, _)| &i.sources)
            .chain(report.deals.iter().flat_map(|(i, _, _)| &i.sources));
        for s in sources {
            self.offsets.done(&s.topic, s.partition, s.offset);
        }
        self.sent += (report.contacts.len() + report.deals.len()) as u64;
        if self.sent > 0 {
            self.sender_metrics()
                .coalescing
                .set(self.events as f64 / self.sent as f64);
        }
        Ok(())
    }
}
