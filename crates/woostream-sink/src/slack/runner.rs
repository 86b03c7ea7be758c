//! The Slack sink at the Kafka edge: alerts in, routed to channel tasks, outcomes recorded in
//! the audit topic (and refused alerts in the dead-letter topic), offsets committed only up to
//! the oldest alert not yet posted or dead-lettered.
//!
//! What was delivered is restored from the audit topic at start, so an alert redelivered by
//! Kafka or re-emitted by a restarted enricher is not posted again; order threads are restored
//! from it too. The residual window: a message Slack accepted whose audit record was not yet
//! written when the process died is posted again after the restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::{fold_audit, write_all, Outgoing};
use anyhow::{anyhow, Context};
use chrono::Utc;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use woostream_core::codec::{Contract, Decoder, Encoder, Framing};
use woostream_core::config::Config;
use woostream_core::erasure::receipt::Receipt;
use woostream_core::headers;
use woostream_core::insights::Alert;
use woostream_core::kafka;
use woostream_core::kafka::RenewingProducer;
use woostream_core::records::{Delivery, DeliveryOutcome};
use woostream_core::registry::RegistryClient;
use woostream_core::resume::{ResumeGuard, Verdict};
use woostream_core::retry::Policy;

use super::channel::{Channel, Done, Shared, Ticket};
use super::client::{Destination, Failure, Poster, Recorded};
use super::digest::Queued;
use super::metrics::Metrics;
use super::rules::Rules;

/// Header of dead-letter records: the channel that refused it.
pub const DLQ_CHANNEL: &str = "woostream-dlq-channel";

/// Shop id → link to an order in its admin, with `{order_id}` to replace: `slack.admin_url`,
/// else the shop's `wp-admin/post.php?post={order_id}&action=edit`.
pub fn admin_urls(config: &Config) -> HashMap<String, String> {
    config
        .shops
        .iter()
        .map(|s| {
            let url = config.slack.admin_url.clone().unwrap_or_else(|| {
                format!(
                    "{}/wp-admin/post.php?post={{order_id}}&action=edit",
                    s.source.trim_end_matches('/')
                )
            });
            (s.id.clone(), url)
        })
        .collect()
}

pub fn delivery_id(channel: &str, alert_id: &str) -> String {
    format!("slack:{channel}:{alert_id}")
}

/// What a restart needs from the audit topic.
#[derive(Debug, Default)]
pub struct Restored {
    pub delivered: HashSet<String>,
    /// channel → (shop, order) → ts of the order's first message.
    pub threads: HashMap<String, HashMap<(String, i64), String>>,
}

impl Restored {
    pub fn apply(&mut self, d: &Delivery) {
        if d.sink != "slack" {
            return;
        }
        self.delivered.insert(d.delivery_id.clone());
        if let (Some(order), Some(ts), None) = (d.order_id, &d.message_ts, &d.thread_ts) {
            if d.outcome == DeliveryOutcome::Posted {
                self.threads
                    .entry(d.destination.clone())
                    .or_default()
                    .entry((d.shop_id.clone(), order))
                    .or_insert_with(|| ts.clone());
            }
        }
    }
}

/// Offsets of one partition not yet done.
#[derive(Debug, Default)]
struct Progress {
    /// offset → channels still to finish.
    pending: BTreeMap<i64, usize>,
    /// One past the newest offset seen.
    next: i64,
    committed: i64,
}

impl Progress {
    fn committable(&self) -> i64 {
        self.pending.keys().next().copied().unwrap_or(self.next)
    }
}

type AlertConsumer = StreamConsumer;

struct Encoders {
    key: Encoder<String>,
    delivery: Encoder<Delivery>,
    alert: Encoder<Alert>,
}

/// A running Slack sink.
pub struct SlackSink {
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// What a dry run would have posted.
    pub recorded: Option<Arc<Mutex<Vec<Recorded>>>>,
}

/// Transient failures: 8 attempts in all, backing off from half a second to a minute.
const SLACK_RETRY: Policy =
    Policy::new(Duration::from_millis(500), Duration::from_secs(60)).attempts(8);

/// Starts the Slack sink: restores what was delivered, then consumes alerts until `shutdown`.
pub async fn start(
    config: &Config,
    bootstrap: &str,
    registry: &prometheus::Registry,
    shutdown: CancellationToken,
    create_topics: bool,
) -> anyhow::Result<SlackSink> {
    // Slack's credentials only where Slack is called (a dry run records the messages).
    let used: &[&str] = if config.slack.dry_run {
        &["schema_registry."]
    } else {
        &["slack.", "schema_registry."]
    };
    config.check_secrets(used)?;
    let slack = &config.slack;
    let rules = Arc::new(Rules::compile(slack).map_err(|(k, m)| anyhow!("{k}: {m}"))?);
    let metrics = Metrics::register(registry).context("registering Slack metrics")?;
    kafka::first_contact(config, bootstrap, create_topics).await?;
    kafka::lag::watch(
        &config.kafka,
        bootstrap,
        &slack.group_id,
        vec![config.topics.alerts.name.clone()],
        registry,
        shutdown.clone(),
    )?;
    let (encoders, decoder) = codecs(config).await?;
    let recorded = slack.dry_run.then(|| Arc::new(Mutex::new(Vec::new())));
    let poster = match &recorded {
        Some(log) => Poster::DryRun(log.clone()),
        None => Poster::http(&slack.api_url, slack.resolved_token())?,
    };
    // A token Slack refuses stops the start with what to fix; a Slack that cannot answer now
    // does not (posts are retried like every call). The sink is ready only after this.
    match poster.check_token().await {
        Ok(Some(team)) => tracing::info!(%team, "Slack accepted the bot token."),
        Ok(None) => {}
        Err(Failure::Rejected(code)) => anyhow::bail!(
            "Slack refused the bot token ({code}): set slack.token or slack.token_env to a bot token (xoxb-…) of the workspace, with the chat:write scope"
        ),
        Err(e) => {
            tracing::warn!(error = ?e, "Slack cannot check the bot token now; starting anyway.")
        }
    }
    let restored = fold_audit(
        config,
        bootstrap,
        &decoder,
        "slack",
        "slack-restore",
        Restored::default(),
        |restored, d| restored.apply(d),
    )
    .await?;
    tracing::info!(
        delivered = restored.delivered.len(),
        threads = restored.threads.values().map(HashMap::len).sum::<usize>(),
        "Slack deliveries restored from the audit topic."
    );
    let admin_urls = admin_urls(config);
    let shared = Arc::new(Shared {
        rules: rules.clone(),
        poster,
        workspace: Shared::workspace_limiter(slack),
        metrics: metrics.clone(),
        admin_urls,
        per_second: slack.per_channel_per_second,
        burst: slack.per_channel_burst,
        digest_after_secs: slack.digest_after_secs,
        digest_max_events: slack.digest_max_events,
        urgent_within_secs: slack.urgent_within_secs,
        retry: SLACK_RETRY,
    });
    // One Slack sink per workspace: Slack's limits are per channel and per workspace, so a
    // second poster would break them. It therefore takes every partition itself (no group
    // rebalances to wait for, no dead members to expire) and keeps its offsets in the group.
    let consumer: AlertConsumer = kafka::consumer_config(&config.kafka, bootstrap, &slack.group_id)
        .create()
        .context("creating the Slack sink consumer")?;
    let mut guard = ResumeGuard::default();
    let alerts_topic = config.topics.alerts.name.clone();
    crate::edge::assign_all(&consumer, &[&alerts_topic], &mut guard)?;
    let guard = Arc::new(Mutex::new(guard));
    let producer = kafka::renewing_producer(&config.kafka, bootstrap, "slack")?;
    let mut restored = restored;
    let mut loop_ = Loop {
        config: config.clone(),
        rules,
        metrics,
        encoders,
        decoder,
        producer,
        delivered: std::mem::take(&mut restored.delivered),
        inflight: HashSet::new(),
        progress: HashMap::new(),
        senders: HashMap::new(),
        guard,
        keys: crate::edge::subject_keys(config, bootstrap).await?,
    };
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let stopping = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in &slack.channels {
        let destination = match c.resolved_webhook() {
            Some(url) => Destination::Webhook { url },
            None => Destination::Bot {
                channel: c
                    .id
                    .clone()
                    .unwrap_or_else(|| c.name.trim_start_matches('#').to_string()),
            },
        };
        let channel = Channel {
            name: c.name.clone(),
            destination,
            threads: restored.threads.remove(&c.name).unwrap_or_default(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        loop_.senders.insert(c.name.clone(), tx);
        tasks.push(tokio::spawn(channel.run(
            shared.clone(),
            rx,
            done_tx.clone(),
            stopping.clone(),
        )));
    }
    drop(done_tx);
    let task = tokio::spawn(async move {
        let result = loop_.run(&consumer, done_rx, shutdown, &stopping).await;
        for t in tasks {
            t.abort();
        }
        result
    });
    Ok(SlackSink { task, recorded })
}

async fn codecs(config: &Config) -> anyhow::Result<(Encoders, Decoder)> {
    let Some(r) = &config.schema_registry else {
        return Ok((
            Encoders {
                key: Encoder::new(&Framing::SingleObject),
                delivery: Encoder::new(&Framing::SingleObject),
                alert: Encoder::new(&Framing::SingleObject),
            },
            Decoder::new(),
        ));
    };
    let client = RegistryClient::new(&r.url, r.username.clone(), r.resolved_password());
    let t = &config.topics;
    let subjects = [
        (t.deliveries.name.as_str(), "key", String::schema()),
        (t.deliveries.name.as_str(), "value", Delivery::schema()),
        (t.slack_dead_letter.name.as_str(), "value", Alert::schema()),
    ];
    let f = woostream_core::codec::register_subjects(&client, &subjects)
        .await
        .context("registering the Slack sink's schemas")?;
    Ok((
        Encoders {
            key: Encoder::new(&f[String::SCHEMA_NAME]),
            delivery: Encoder::new(&f[Delivery::SCHEMA_NAME]),
            alert: Encoder::new(&f[Alert::SCHEMA_NAME]),
        },
        Decoder::with_registry(client),
    ))
}

struct Loop {
    config: Config,
    rules: Arc<Rules>,
    metrics: Metrics,
    encoders: Encoders,
    decoder: Decoder,
    producer: Arc<RenewingProducer>,
    delivered: HashSet<String>,
    /// Deliveries queued and not yet done: a re-emitted alert is not queued twice.
    inflight: HashSet<String>,
    progress: HashMap<i32, Progress>,
    senders: HashMap<String, mpsc::UnboundedSender<Queued<Ticket>>>,
    guard: Arc<Mutex<ResumeGuard>>,
    /// Opens the customers' initials.
    keys: Option<woostream_core::erasure::SubjectKeys>,
}

impl Loop {
    async fn run(
        &mut self,
        consumer: &AlertConsumer,
        mut done: mpsc::UnboundedReceiver<Done>,
        shutdown: CancellationToken,
        stopping: &AtomicBool,
    ) -> anyhow::Result<()> {
        let mut commit_every = tokio::time::interval(Duration::from_millis(500));
        // Bounded memory: stop reading while this many alerts wait for Slack.
        const MAX_INFLIGHT: usize = 50_000;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                m = consumer.recv(), if self.inflight.len() < MAX_INFLIGHT => {
                    let m = m.context("reading alerts")?;
                    let verdict = self.guard.lock().expect("resume guard").check(m.topic(), m.partition(), m.offset());
                    match verdict {
                        Verdict::Process => self.on_alert(&m).await?,
                        Verdict::Skip => {}
                        Verdict::SeekTo(o) => woostream_core::resume::seek_back(consumer, m.topic(), m.partition(), o)?,
                    }
                }
                Some(d) = done.recv() => self.on_done(d).await?,
                _ = commit_every.tick() => {
                    self.commit(consumer)?;
                    let stalled = self.guard.lock().expect("resume guard").stalled(std::time::Instant::now());
                    for (topic, partition, o) in stalled {
                        woostream_core::resume::seek_back(consumer, &topic, partition, o)?;
                    }
                }
            }
        }
        // Let every channel finish the message it is posting, record it, commit, stop.
        stopping.store(true, Ordering::Relaxed);
        self.senders.clear();
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(20), done.recv()).await {
            self.on_done(d).await?;
        }
        self.commit(consumer)
    }

    async fn on_alert(&mut self, m: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let (partition, offset) = (m.partition(), m.offset());
        let p = self.progress.entry(partition).or_default();
        p.next = p.next.max(offset + 1);
        let Some(payload) = m.payload() else {
            return Ok(());
        };
        let alert = match self.decoder.decode::<Alert>(payload) {
            Ok(a) => a,
            Err(e) => {
                // Kept, with the reason, rather than dropped.
                self.metrics.unreadable.inc();
                tracing::warn!(partition, offset, error = %e, "An alert cannot be read; dead-lettering it.");
                self.dead_letter(
                    m.key().map(<[u8]>::to_vec),
                    payload.to_vec(),
                    &format!("unreadable: {e}"),
                    "",
                )
                .await?;
                return Ok(());
            }
        };
        let (alert, sealed_initial, sealed_note) = self.open_personal(alert).await?;
        let alert = Arc::new(alert);
        let written_ms = m.timestamp().to_millis().unwrap_or_default();
        if alert.erasure.is_some() {
            // Never posted: every channel forgets the person (see `Channel::take_in`).
            let mut queued = 0;
            for sender in self.senders.values() {
                let ticket = Ticket {
                    partition,
                    offset,
                    rule: 0,
                    written_ms,
                    sealed_initial: None,
                    sealed_note: None,
                };
                let q = Queued {
                    priority: woostream_core::slack_config::Priority::Urgent,
                    alert: alert.clone(),
                    ticket,
                };
                if sender.send(q).is_ok() {
                    queued += 1;
                }
            }
            if queued > 0 {
                self.progress
                    .entry(partition)
                    .or_default()
                    .pending
                    .insert(offset, queued);
            }
            return Ok(());
        }
        let routes = self.rules.route(&alert, Utc::now());
        let mut queued = 0;
        for route in routes {
            let id = delivery_id(&route.channel, &alert.alert_id);
            if self.delivered.contains(&id) || self.inflight.contains(&id) {
                self.metrics
                    .alerts
                    .with_label_values(&[&route.channel, "duplicate"])
                    .inc();
                continue;
            }
            let ticket = Ticket {
                partition,
                offset,
                rule: route.rule,
                written_ms,
                sealed_initial: sealed_initial.clone(),
                sealed_note: sealed_note.clone(),
            };
            if let Some(reason) = route.skip {
                let d = Done {
                    channel: route.channel.clone(),
                    alerts: vec![(alert.clone(), ticket, route.priority)],
                    outcome: DeliveryOutcome::Skipped,
                    message_ts: None,
                    thread_ts: None,
                    reason: Some(reason.into()),
                    attempts: 0,
                };
                self.record(&d).await?;
                continue;
            }
            let Some(sender) = self.senders.get(&route.channel) else {
                continue;
            };
            self.inflight.insert(id);
            if sender
                .send(Queued {
                    priority: route.priority,
                    alert: alert.clone(),
                    ticket,
                })
                .is_ok()
            {
                queued += 1;
            }
        }
        if queued > 0 {
            self.progress
                .entry(partition)
                .or_default()
                .pending
                .insert(offset, queued);
        }
        Ok(())
    }

    /// Opens the customer's initial (sealed like the name it comes from) and the customer
    /// note; returns the alert with them opened and the sealed forms, kept for a dead letter.
    /// A person erased since has neither any more. Whether a message shows them is the rule's
    /// decision (its `personal` list), made when rendering.
    async fn open_personal(
        &self,
        mut alert: Alert,
    ) -> anyhow::Result<(Alert, Option<String>, Option<String>)> {
        let Some(keys) = &self.keys else {
            return Ok((alert, None, None));
        };
        let sealed = |v: &Option<String>| {
            v.clone()
                .filter(|v| woostream_core::erasure::seal::is_sealed(v))
        };
        let sealed_initial = alert
            .customer
            .as_ref()
            .and_then(|c| sealed(&c.first_name_initial));
        let mut note = alert.question.as_ref().map(|q| q.note.clone());
        let sealed_note = sealed(&note);
        let mut fields: Vec<&mut Option<String>> = vec![&mut note];
        if let Some(c) = alert.customer.as_mut() {
            fields.push(&mut c.first_name_initial);
        }
        match keys.open_async(fields).await {
            Ok(_) => {}
            // A damaged value is left out; the alert still goes.
            Err(woostream_core::erasure::OpenError::Damaged(why)) => {
                tracing::warn!(alert = %alert.alert_id, reason = %why, "An alert's personal fields cannot be opened; posting without them.");
                if let Some(c) = alert.customer.as_mut() {
                    c.first_name_initial = None;
                }
                note = None;
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(q) = alert.question.as_mut() {
            // An erased person's note is gone: shown as nothing.
            q.note = note.unwrap_or_default();
        }
        Ok((alert, sealed_initial, sealed_note))
    }

    async fn on_done(&mut self, d: Done) -> anyhow::Result<()> {
        self.record(&d).await?;
        for (alert, ticket, _) in &d.alerts {
            self.inflight
                .remove(&delivery_id(&d.channel, &alert.alert_id));
            if let Some(p) = self.progress.get_mut(&ticket.partition) {
                if let Some(n) = p.pending.get_mut(&ticket.offset) {
                    *n -= 1;
                    if *n == 0 {
                        p.pending.remove(&ticket.offset);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the audit records (and dead letters) of `d` and waits until they are durable.
    async fn record(&mut self, d: &Done) -> anyhow::Result<()> {
        let now = Utc::now();
        let mut sends = Vec::new();
        for (alert, ticket, priority) in &d.alerts {
            if let (Some(e), DeliveryOutcome::Erased) = (&alert.erasure, d.outcome) {
                let receipt = Receipt {
                    erasure_id: &e.erasure_id,
                    shop_id: &alert.shop_id,
                    role: "slack",
                    destination: d.channel.clone(),
                    done: d.reason.clone().unwrap_or_default(),
                    object_id: None,
                    requested_at: alert.occurred_at,
                    outcome: DeliveryOutcome::Erased,
                    attempts: 0,
                }
                .record();
                sends.push(Outgoing {
                    topic: self.config.topics.deliveries.name.clone(),
                    key: self.encoders.key.encode(&receipt.delivery_id)?,
                    value: self.encoders.delivery.encode(&receipt)?,
                    correlation_id: alert.correlation_id.clone(),
                    dead_letter: None,
                });
                continue;
            }
            let id = delivery_id(&d.channel, &alert.alert_id);
            let record = Delivery {
                delivery_id: id.clone(),
                sink: "slack".into(),
                destination: d.channel.clone(),
                alert_id: alert.alert_id.clone(),
                kind: alert.kind.as_str().into(),
                shop_id: alert.shop_id.clone(),
                correlation_id: alert.correlation_id.clone(),
                outcome: d.outcome,
                message_ts: d.message_ts.clone(),
                thread_ts: d.thread_ts.clone(),
                order_id: alert.order.as_ref().map(|o| o.order_id),
                priority: priority.as_str().into(),
                reason: d.reason.clone(),
                attempts: d.attempts as i32,
                latency_ms: (now.timestamp_millis() - ticket.written_ms).max(0),
                delivered_at: now,
            };
            if matches!(
                d.outcome,
                DeliveryOutcome::Posted | DeliveryOutcome::Digested
            ) {
                self.metrics
                    .latency
                    .observe(record.latency_ms as f64 / 1000.0);
            }
            self.metrics
                .alerts
                .with_label_values(&[&d.channel, d.outcome.as_str()])
                .inc();
            sends.push(Outgoing {
                topic: self.config.topics.deliveries.name.clone(),
                key: self.encoders.key.encode(&id)?,
                value: self.encoders.delivery.encode(&record)?,
                correlation_id: alert.correlation_id.clone(),
                dead_letter: None,
            });
            if d.outcome == DeliveryOutcome::DeadLettered {
                let reason = d.reason.clone().unwrap_or_default();
                // Kept as Kafka had it: the initial sealed under its person's key.
                let mut kept = (**alert).clone();
                if let (Some(c), Some(sealed)) = (kept.customer.as_mut(), &ticket.sealed_initial) {
                    c.first_name_initial = Some(sealed.clone());
                }
                if let (Some(q), Some(sealed)) = (kept.question.as_mut(), &ticket.sealed_note) {
                    q.note = sealed.clone();
                }
                sends.push(Outgoing {
                    topic: self.config.topics.slack_dead_letter.name.clone(),
                    key: self.encoders.key.encode(&id)?,
                    value: self.encoders.alert.encode(&kept)?,
                    correlation_id: alert.correlation_id.clone(),
                    dead_letter: Some((reason, vec![(DLQ_CHANNEL, d.channel.clone())])),
                });
            }
            self.delivered.insert(id);
        }
        write_all(&self.producer, &sends, "recording a delivery").await?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        reason: &str,
        channel: &str,
    ) -> anyhow::Result<()> {
        let hs = OwnedHeaders::new()
            .insert(Header {
                key: headers::DEAD_LETTER_REASON,
                value: Some(reason),
            })
            .insert(Header {
                key: DLQ_CHANNEL,
                value: Some(channel),
            });
        crate::edge::keep_unreadable(
            &self.producer,
            &self.config.topics.slack_dead_letter.name,
            key.as_deref(),
            &value,
            hs,
        )
        .await
    }

    /// Commits, per assigned partition, up to the oldest alert still waiting for Slack.
    fn commit(&mut self, consumer: &AlertConsumer) -> anyhow::Result<()> {
        let assigned: HashSet<i32> = consumer
            .assignment()
            .map(|a| a.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default();
        let mut tpl = TopicPartitionList::new();
        for (partition, p) in &self.progress {
            let offset = p.committable();
            if assigned.contains(partition) && offset > p.committed {
                tpl.add_partition_offset(
                    &self.config.topics.alerts.name,
                    *partition,
                    Offset::Offset(offset),
                )?;
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .context("committing alert offsets")?;
        for e in tpl.elements() {
            if let (Some(p), Offset::Offset(o)) =
                (self.progress.get_mut(&e.partition()), e.offset())
            {
                p.committed = o;
            }
        }
        self.metrics.commits.inc();
        Ok(())
    }
}
