//! The Slack sink at the Kafka edge: alerts in, routed to channel tasks, outcomes recorded in
//! the audit topic (and refused alerts in the dead-letter topic), offsets committed only up to
//! the oldest alert not yet posted or dead-lettered.
//!
//! What was delivered is restored from the audit topic at start, so an alert redelivered by
//! Kafka or re-emitted by a restarted enricher is not posted again; order threads are restored
//! from it too. The residual window: a message Slack accepted whose audit record was not yet
//! written when the process died is posted again after the restart.
//!
//! The loop reads top-down here (start, run, commit); one alert in is in `alert`, one channel's
//! outcome out in `outcome`, what the audit topic tells at start in `restored`.

mod alert;
mod outcome;
mod restored;
pub use restored::{admin_urls, delivery_id, Restored, DLQ_CHANNEL};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

use crate::audit::fold_audit;
use crate::intake::Offsets;
use anyhow::{anyhow, Context};
use rdkafka::consumer::StreamConsumer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use woostream_core::config::Config;
use woostream_core::contract::codec::{Codecs, Contract, Decoder, Encoder};
use woostream_core::contract::enriched::Alert;
use woostream_core::contract::sink_records::Delivery;
use woostream_core::kafka;
use woostream_core::kafka::admit::{admit, hold, seek_stalled};
use woostream_core::kafka::exact_resume::ResumeGuard;
use woostream_core::kafka::RenewingProducer;
use woostream_core::retry::Policy;
use woostream_core::role::Consumes;

use super::channel::{Channel, Done, Shared, Ticket};
use super::client::{Destination, Failure, Poster, Recorded};
use super::digest::Queued;
use super::metrics::Metrics;
use super::rules::Rules;

type AlertConsumer = StreamConsumer<kafka::stats::ClientStats>;

/// The role's name where the process reports on it.
const ROLE: &str = "slack";

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
pub async fn start(ctx: &woostream_core::role::RoleContext) -> anyhow::Result<SlackSink> {
    let (config, bootstrap, registry) = (&ctx.config, ctx.bootstrap.as_str(), &ctx.registry);
    let (readiness, shutdown) = (&ctx.readiness, ctx.shutdown.clone());
    // Slack's credentials only where Slack is called (a dry run records the messages).
    let used: &[&str] = if config.slack.dry_run {
        &["schema_registry."]
    } else {
        &["slack.", "schema_registry."]
    };
    let slack = &config.slack;
    // Before Kafka is reached: a rule that cannot work stops the start at once.
    let rules = Arc::new(Rules::compile(slack).map_err(|(k, m)| anyhow!("{k}: {m}"))?);
    let consumes = Consumes {
        role: ROLE,
        group: &slack.consumer_group(),
        topics: vec![config.topics.alerts.name.clone()],
    };
    ctx.begin(used, Some(consumes)).await?;
    let metrics = Metrics::register(registry).context("registering Slack metrics")?;
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
    // A named workspace upgraded from an earlier release also takes what the unnamed sink
    // delivered to its channels: nothing is posted twice for the rename.
    let sink = slack.sink_name();
    let mut sinks = vec![sink.clone()];
    if sink != "slack" {
        sinks.push("slack".into());
    }
    let restored = fold_audit(
        config,
        bootstrap,
        &decoder,
        sinks,
        "slack-restore",
        Restored::for_sink(&sink, slack.channels.iter().map(|c| c.name.clone())),
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
    let consumer: AlertConsumer = kafka::stats::create(
        kafka::consumer_config(&config.kafka, bootstrap, &slack.consumer_group()),
        &config.kafka,
        "slack",
    )
    .context("creating the Slack sink consumer")?;
    let mut guard = ResumeGuard::default();
    let alerts_topic = config.topics.alerts.name.clone();
    let earlier = slack.earlier_group();
    crate::intake::assign_all(
        &consumer,
        &[&alerts_topic],
        &mut guard,
        earlier.as_deref().map(|g| (&config.kafka, bootstrap, g)),
    )?;
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
        offsets: Offsets::default(),
        senders: HashMap::new(),
        guard,
        keys: crate::intake::subject_keys(config, bootstrap).await?,
        readiness: readiness.clone(),
        sink: slack.sink_name(),
        newly_held: None,
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
    let t = &config.topics;
    let subjects = [
        (t.deliveries.name.as_str(), "key", String::schema()),
        (t.deliveries.name.as_str(), "value", Delivery::schema()),
        (t.slack_dead_letter.name.as_str(), "value", Alert::schema()),
    ];
    let codecs = Codecs::register(config, &subjects)
        .await
        .context("registering the Slack sink's schemas")?;
    Ok((
        Encoders {
            key: codecs.encoder(),
            delivery: codecs.encoder(),
            alert: codecs.encoder(),
        },
        codecs.decoder,
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
    /// Alerts read and not yet done by every channel they were queued for.
    offsets: Offsets,
    senders: HashMap<String, mpsc::UnboundedSender<Queued<Ticket>>>,
    guard: ResumeGuard,
    /// Opens the customers' initials.
    keys: Option<woostream_core::privacy::SubjectKeys>,
    /// Holds partitions at a newer writer's record, and says so on `/readyz`.
    readiness: woostream_core::ops::Readiness,
    /// This sink in the audit topic (`slack`, `slack@<workspace>`).
    sink: String,
    /// A newer writer's alert [`Loop::on_alert`] just stopped at, for the loop to hold.
    newly_held: Option<anyhow::Error>,
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
                    if admit(consumer, &mut self.guard, &self.readiness, ROLE, &m)? {
                        let record = woostream_core::kafka::span::record_span("slack", &m);
                        self.on_alert(&m).instrument(record).await?;
                        if let Some(e) = self.newly_held.take() {
                            hold(consumer, &self.readiness, ROLE, &m, &e)?;
                        }
                    }
                }
                Some(d) = done.recv() => self.on_done(d).await?,
                _ = commit_every.tick() => {
                    self.commit(consumer)?;
                    seek_stalled(consumer, &mut self.guard, ROLE)?;
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

    /// Commits, per partition, up to the oldest alert still waiting for Slack.
    fn commit(&mut self, consumer: &AlertConsumer) -> anyhow::Result<()> {
        if self
            .offsets
            .commit(consumer)
            .context("committing alert offsets")?
        {
            self.metrics.commits.inc();
        }
        Ok(())
    }
}
