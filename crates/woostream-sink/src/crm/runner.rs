//! The CRM sink at the Kafka edge: orders, customer accounts and profiles in; contacts and
//! deals coalesced, flushed within the CRM's budget one flush at a time; every outcome in the
//! audit topic (and refusals in the dead-letter topic) before the offsets that caused it are
//! committed.
//!
//! One sink per CRM account: the budget is the account's, so the sink takes every partition
//! itself, as the Slack sink does. What the CRM already has (contact ids, associated deals) is
//! restored from the audit topic at start.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audit::fold_audit;
use anyhow::Context;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{BorrowedMessage, Message};
use tokio_util::sync::CancellationToken;
use woostream_core::codec::{Contract, Decoder, Encoder, Framing};
use woostream_core::config::Config;
use woostream_core::crm_config::ContactErasure;
use woostream_core::crm_config::CrmConfig;
use woostream_core::erasure::erase::erasure_of;
use woostream_core::erasure::personal::{customer_fields, order_fields, Sealing};
use woostream_core::erasure::receipt::Receipt;
use woostream_core::erasure::OpenError;
use woostream_core::events::{CustomerEvent, CustomerKey, OrderEvent};
use woostream_core::insights::CustomerProfile;
use woostream_core::kafka;
use woostream_core::kafka::reading::END_MARKER;
use woostream_core::records::{CrmDeadLetter, Delivery, DeliveryOutcome, SourceOffset};
use woostream_core::registry::RegistryClient;
use woostream_core::resume::{ResumeGuard, Verdict};

use super::api::Crm;
use super::changes;
use super::erase::Erased;
use super::flush::{Interrupted, Known, Report, Sender, SharedKnown};
use super::hubspot::HubSpot;
use super::memory::{MemoryCrm, Store};
use super::metrics::Metrics;
use super::pending::{Item, Pending, Policy};
use super::records::{cipher, Recorder};
use super::setup;
use crate::edge::{assign_all, Offsets};
use woostream_core::resume::seek_back;

/// A running CRM sink.
pub struct CrmSink {
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The dry run's CRM.
    pub store: Option<Arc<Mutex<Store>>>,
    pub metrics: Metrics,
}

/// What the audit topic says the CRM has.
pub fn apply_audit(known: &mut Known, d: &Delivery) {
    if d.sink != "crm" || d.outcome != DeliveryOutcome::Posted {
        return;
    }
    // The id's last part is the version of the contact or deal.
    let last = d
        .delivery_id
        .rsplit_once(':')
        .and_then(|(_, v)| v.parse::<i64>().ok());
    match d.destination.as_str() {
        "contacts" => known.saw_contact(
            (d.shop_id.clone(), d.alert_id.clone()),
            d.message_ts.clone(),
            last,
        ),
        "deals" => {
            if let (Some(order), Some(version)) = (d.order_id, last) {
                known.saw_deal((d.shop_id.clone(), order), version);
            }
        }
        "associations" => {
            if let Some(order) = d.order_id {
                known.associated.insert((d.shop_id.clone(), order));
            }
        }
        _ => {}
    }
}

/// The recorder (audit and dead letters) and a decoder, framed as the configuration says.
pub async fn recorder(
    config: &Config,
    bootstrap: &str,
    metrics: Metrics,
) -> anyhow::Result<(Recorder, Decoder)> {
    let t = &config.topics;
    let (framings, decoder) = match &config.schema_registry {
        None => (None, Decoder::new()),
        Some(r) => {
            let client = RegistryClient::new(&r.url, r.username.clone(), r.resolved_password());
            let subjects = [
                (t.deliveries.name.as_str(), "key", String::schema()),
                (t.deliveries.name.as_str(), "value", Delivery::schema()),
                (t.crm_dead_letter.name.as_str(), "key", String::schema()),
                (
                    t.crm_dead_letter.name.as_str(),
                    "value",
                    CrmDeadLetter::schema(),
                ),
            ];
            let f = woostream_core::codec::register_subjects(&client, &subjects)
                .await
                .context("registering the CRM sink's schemas")?;
            (Some(f), Decoder::with_registry(client))
        }
    };
    let framing = |name: &str| {
        framings
            .as_ref()
            .map_or(Framing::SingleObject, |f| f[name].clone())
    };
    Ok((
        Recorder {
            producer: kafka::renewing_producer(&config.kafka, bootstrap, "crm")?,
            deliveries_topic: t.deliveries.name.clone(),
            dead_letter_topic: t.crm_dead_letter.name.clone(),
            key: Encoder::new(&framing(String::SCHEMA_NAME)),
            delivery: Encoder::new(&framing(Delivery::SCHEMA_NAME)),
            dead_letter: Encoder::new(&framing(CrmDeadLetter::SCHEMA_NAME)),
            cipher: cipher(config),
            keys: crate::edge::subject_keys(config, bootstrap).await?,
            metrics,
        },
        decoder,
    ))
}

/// Starts the CRM sink: restores what the CRM has, then consumes until `shutdown`.
pub async fn start(
    config: &Config,
    bootstrap: &str,
    registry: &prometheus::Registry,
    shutdown: CancellationToken,
    create_topics: bool,
) -> anyhow::Result<CrmSink> {
    // The token only where HubSpot is called (a dry run keeps the CRM in memory).
    let used: &[&str] = if config.crm.dry_run {
        &["crm.dead_letter_key", "schema_registry."]
    } else {
        &["crm.", "schema_registry."]
    };
    config.check_secrets(used)?;
    let metrics = Metrics::register(registry).context("registering CRM metrics")?;
    kafka::first_contact(config, bootstrap, create_topics).await?;
    let t = &config.topics;
    kafka::lag::watch(
        &config.kafka,
        bootstrap,
        &config.crm.group_id,
        [&t.orders, &t.customers, &t.profiles]
            .map(|t| t.name.clone())
            .to_vec(),
        registry,
        shutdown.clone(),
    )?;
    let (recorder, decoder) = recorder(config, bootstrap, metrics.clone()).await?;
    let restored = fold_audit(
        config,
        bootstrap,
        &decoder,
        "crm",
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
    let known = Arc::new(Mutex::new(restored));
    let (task, store) = if config.crm.dry_run {
        let crm = MemoryCrm::new(Store::permissive());
        let store = crm.0.clone();
        let task = launch(config, bootstrap, crm, recorder, decoder, known, shutdown)?;
        (task, Some(store))
    } else {
        let token = config
            .crm
            .resolved_token()
            .context("crm.token (or crm.token_env) is not set")?;
        let crm = HubSpot::new(&config.crm.api_url, token)?;
        check_properties(&crm, &config.crm).await?;
        let task = launch(config, bootstrap, crm, recorder, decoder, known, shutdown)?;
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

fn launch<C: Crm>(
    config: &Config,
    bootstrap: &str,
    crm: C,
    recorder: Recorder,
    decoder: Decoder,
    known: SharedKnown,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let consumer: StreamConsumer =
        kafka::consumer_config(&config.kafka, bootstrap, &config.crm.group_id)
            // Changes wait in `pending` (bounded); librdkafka's own prefetch would otherwise hold
            // up to 64 MiB and 100,000 records more of a backlog.
            .set("queued.max.messages.kbytes", "16384")
            .set("queued.min.messages", "10000")
            .create()
            .context("creating the CRM sink consumer")?;
    let t = &config.topics;
    let topics = Topics {
        orders: t.orders.name.clone(),
        customers: t.customers.name.clone(),
        profiles: t.profiles.name.clone(),
    };
    let mut guard = ResumeGuard::default();
    assign_all(
        &consumer,
        &[&topics.orders, &topics.customers, &topics.profiles],
        &mut guard,
    )?;
    let c = &config.crm;
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
    };
    Ok(tokio::spawn(
        async move { l.run(&consumer, shutdown).await },
    ))
}

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
}

type Flushing = tokio::task::JoinHandle<Result<Report, Interrupted>>;

/// Memory bound: stop reading while this many contacts and deals wait for the CRM.
const MAX_PENDING: usize = 200_000;

/// What one record asks of the CRM; `None`: its personal fields are sealed under a deleted
/// key (its person was erased), so nothing.
type Decoded = Option<(Option<changes::ContactChange>, Option<changes::DealChange>)>;

impl<C: Crm> Loop<C> {
    /// Decodes a record and opens its sealed fields.
    async fn decode(&self, topic: &str, payload: &[u8]) -> anyhow::Result<Decoded> {
        let (sealing, mut contact, deal) = if topic == self.topics.orders {
            let mut e: OrderEvent = self.decoder.decode(payload)?;
            let sealing = self.open(e.order.as_mut().map(order_fields)).await?;
            let (contact, deal) = changes::from_order(&e);
            (sealing, contact, deal)
        } else if topic == self.topics.customers {
            let mut e: CustomerEvent = self.decoder.decode(payload)?;
            let sealing = self.open(e.customer.as_mut().map(customer_fields)).await?;
            (sealing, changes::from_customer(&e), None)
        } else {
            let p: CustomerProfile = self.decoder.decode(payload)?;
            if self
                .erased
                .contains(&(p.shop_id.clone(), p.customer.clone()))
            {
                return Ok(None);
            }
            return Ok(Some((Some(changes::from_profile(&p)), None)));
        };
        if sealing == Sealing::Erased {
            return Ok(None);
        }
        // Its dead letter is sealed under the key the identity came sealed under.
        if let (Some(i), Sealing::Opened(key)) =
            (contact.as_mut().and_then(|c| c.identity.as_mut()), &sealing)
        {
            i.sealed_with = Some(key.id().to_string());
        }
        Ok(Some((contact, deal)))
    }

    /// Opens a record's sealed fields (none: nothing to open).
    async fn open(&self, fields: Option<Vec<&mut Option<String>>>) -> anyhow::Result<Sealing> {
        match (fields, &self.recorder.keys) {
            (Some(fields), Some(keys)) => Ok(keys.open_async(fields).await?),
            _ => Ok(Sealing::Clear),
        }
    }

    /// A tombstone: on the customers topic with an erasure's header, the person's contact is
    /// erased; on the profiles topic, an erased person's last profile has gone by. Returns
    /// whether it is done (false: interrupted by shutdown).
    async fn on_tombstone(&mut self, m: &BorrowedMessage<'_>) -> anyhow::Result<bool> {
        let Some(key) = m.key() else { return Ok(true) };
        let Ok(key) = self.decoder.decode::<CustomerKey>(key) else {
            return Ok(true);
        };
        let who = (key.shop_id.clone(), key.customer.clone());
        if m.topic() == self.topics.profiles {
            self.erased.remove(&who);
            return Ok(true);
        }
        if m.topic() != self.topics.customers {
            return Ok(true);
        }
        let Some((erasure_id, requested_at)) = erasure_of(m) else {
            return Ok(true);
        };
        self.erase(&erasure_id, requested_at, who).await
    }

    async fn erase(
        &mut self,
        erasure_id: &str,
        requested_at: chrono::DateTime<chrono::Utc>,
        (shop, customer): (String, String),
    ) -> anyhow::Result<bool> {
        let dropped = self.pending.forget(&shop, &customer);
        for source in &dropped {
            self.offsets
                .done(&source.topic, source.partition, source.offset);
        }
        let dropped = dropped.len();
        self.erased.insert((shop.clone(), customer.clone()));
        let contact = self
            .known
            .lock()
            .expect("known")
            .contacts
            .get(&(shop.clone(), customer.clone()))
            .cloned();
        let mut attempts = Vec::new();
        let (outcome, done) = match &contact {
            None => (
                DeliveryOutcome::Erased,
                "no contact was written for this customer key".to_string(),
            ),
            Some(id) => match self
                .sender
                .erase_contact(id, self.erasure, &mut attempts)
                .await
            {
                Erased::Done(done) => (DeliveryOutcome::Erased, done),
                Erased::Refused(r) => {
                    tracing::error!(erasure = erasure_id, status = r.status, reason = %r.reason, "The CRM refused an erasure; it is on the dead-letter topic: `woostream replay` once the cause is fixed.");
                    self.recorder
                        .erasure_dead_letter(
                            (&shop, &customer),
                            erasure_id,
                            id,
                            &r,
                            std::mem::take(&mut attempts),
                        )
                        .await?;
                    (
                        DeliveryOutcome::DeadLettered,
                        format!("the CRM refused: {}", r.reason),
                    )
                }
                Erased::Interrupted => return Ok(false),
            },
        };
        if outcome == DeliveryOutcome::Erased {
            let mut known = self.known.lock().expect("known");
            let who = (shop.clone(), customer.clone());
            known.contacts.remove(&who);
            known.contact_versions.remove(&who);
        }
        self.sender_metrics()
            .erasures
            .with_label_values(&[outcome.as_str()])
            .inc();
        let receipt = Receipt {
            erasure_id,
            shop_id: &shop,
            role: "crm",
            destination: "contacts".into(),
            done: format!("{done}; {dropped} waiting changes dropped"),
            object_id: contact,
            requested_at,
            outcome,
            attempts: attempts.len() as i32 + 1,
        };
        self.recorder.receipt(&receipt).await?;
        tracing::info!(
            erasure = erasure_id,
            outcome = outcome.as_str(),
            "Erased a customer key in the CRM."
        );
        Ok(true)
    }

    async fn run(
        &mut self,
        consumer: &StreamConsumer,
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
                    match self.guard.check(m.topic(), m.partition(), m.offset()) {
                        Verdict::Process => self.on_record(&m).await?,
                        Verdict::Skip => {}
                        Verdict::SeekTo(o) => seek_back(consumer, m.topic(), m.partition(), o)?,
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
                    for (topic, partition, o) in self.guard.stalled(Instant::now()) {
                        seek_back(consumer, &topic, partition, o)?;
                    }
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

    async fn on_record(&mut self, m: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        let payload = match m.payload() {
            Some(p) if m.key() != Some(END_MARKER.as_bytes()) => p,
            // Markers, tombstones.
            _ => {
                let done = if m.payload().is_none() && m.key() != Some(END_MARKER.as_bytes()) {
                    self.on_tombstone(m).await?
                } else {
                    true
                };
                // An erasure the CRM has not finished (shutting down) is read again at start.
                self.offsets
                    .read(topic, partition, offset, if done { 0 } else { 1 });
                return Ok(());
            }
        };
        let written_ms = m.timestamp().to_millis().unwrap_or_default();
        let source = SourceOffset {
            topic: topic.to_string(),
            partition,
            offset,
        };
        let now = Instant::now();
        let decoded = self.decode(topic, payload).await;
        let (contact, deal) = match decoded {
            Ok(None) => {
                // Sealed for a person erased since: nothing of it goes to the CRM.
                self.sender_metrics().erased_skipped.inc();
                self.offsets.read(topic, partition, offset, 0);
                return Ok(());
            }
            Ok(Some((contact, deal))) => (contact, deal),
            // Without the key topic nothing sealed can be read: stop, and resume from here.
            Err(e) if matches!(e.downcast_ref(), Some(OpenError::KeysUnavailable(_))) => {
                return Err(e)
            }
            Err(e) => {
                self.sender_metrics().unreadable.inc();
                tracing::warn!(topic, partition, offset, error = %e, "A record cannot be read; dead-lettering it.");
                self.recorder
                    .unreadable(
                        m.key().map(<[u8]>::to_vec),
                        payload.to_vec(),
                        &format!("unreadable {topic}[{partition}]@{offset}: {e}"),
                    )
                    .await?;
                self.offsets.read(topic, partition, offset, 0);
                return Ok(());
            }
        };
        // What the CRM already has newer (a late redelivery) is left out.
        let (contact, deal) = {
            let k = self.known.lock().expect("known");
            (
                contact.and_then(|c| k.fresh_contact(c)),
                deal.and_then(|d| k.fresh_deal(d)),
            )
        };
        let outputs = contact.is_some() as usize + deal.is_some() as usize;
        self.offsets.read(topic, partition, offset, outputs);
        if outputs > 0 {
            self.events += outputs as u64;
            self.sender_metrics()
                .events
                .with_label_values(&[topic])
                .inc_by(outputs as u64);
        }
        if let Some(c) = contact {
            self.pending
                .add_contact(Item::new(c, Some(source.clone()), written_ms, now));
        }
        if let Some(d) = deal {
            self.pending
                .add_deal(Item::new(d, Some(source), written_ms, now));
        }
        Ok(())
    }
}
