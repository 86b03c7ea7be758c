//! The shop writer: each change of the `crm_changes` topic, in order per customer, applied to
//! the shop through its REST API (rate-limited and retried by the REST client), decided by
//! [`super::change::decide`] against the customer as the shop has it. Every outcome goes to the
//! audit topic (sink `shop`); a change the shop refuses for good goes to the shop dead-letter
//! topic (its value still sealed), and the next one follows.

use std::collections::HashMap;
use std::time::Duration;
use tracing::Instrument;

use anyhow::Context;
use chrono::Utc;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureRecord;
use reqwest::Method;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use woostream_core::config::Config;
use woostream_core::contract::codec::{Codecs, Contract, Encoder};
use woostream_core::contract::sink_records::{Delivery, DeliveryOutcome};
use woostream_core::kafka::{self, RenewingProducer};
use woostream_core::privacy::CustomerHasher;
use woostream_core::privacy::{OpenError, SubjectKeys};

use super::change::{decide, CrmChange, Decision};
use super::Metrics;
use woostream_woo::rest::client::{RestError, WooRest};

pub struct Writer {
    consumer: StreamConsumer,
    keys: SubjectKeys,
    shops: HashMap<String, (WooRest, CustomerHasher)>,
    producer: std::sync::Arc<RenewingProducer>,
    audit_topic: String,
    dead_letter_topic: String,
    receipt: Encoder<Delivery>,
    receipt_key: Encoder<String>,
    metrics: Metrics,
}

/// What became of one change.
enum Outcome {
    Written,
    Skipped(String),
    Refused(String),
    Erased,
}

impl Writer {
    pub async fn new(
        config: &Config,
        bootstrap: &str,
        keys: SubjectKeys,
        metrics: Metrics,
    ) -> anyhow::Result<Writer> {
        let mut shops = HashMap::new();
        for s in &config.shops {
            if s.rest.is_some() {
                let rest = WooRest::for_shop(s)?;
                shops.insert(
                    s.id.clone(),
                    (rest, CustomerHasher::for_shop(config, &s.id)),
                );
            }
        }
        if shops.is_empty() {
            anyhow::bail!("crm.inbound writes to the shop through its REST API: add [shops.rest] (a key with Read/Write)");
        }
        let t = &config.topics;
        let codecs = Codecs::register(
            config,
            &[
                (&t.deliveries.name, "key", String::schema()),
                (&t.deliveries.name, "value", Delivery::schema()),
            ],
        )
        .await?;
        let consumer: StreamConsumer =
            kafka::consumer_config(&config.kafka, bootstrap, &config.crm.inbound.group_id)
                .create()
                .context("creating the shop writer's consumer")?;
        consumer
            .subscribe(&[t.crm_changes.name.as_str()])
            .context("subscribing to the CRM changes")?;
        Ok(Writer {
            consumer,
            keys,
            shops,
            producer: kafka::renewing_producer(&config.kafka, bootstrap, "shop-writer")?,
            audit_topic: t.deliveries.name.clone(),
            dead_letter_topic: t.shop_dead_letter.name.clone(),
            receipt: codecs.encoder(),
            receipt_key: codecs.encoder(),
            metrics,
        })
    }

    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            let m = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = self.consumer.recv() => m.context("reading the CRM changes")?,
            };
            // A shop that does not answer is waited for: the change stays uncommitted.
            loop {
                let record = woostream_core::kafka::span::record_span("crm-inbound", &m);
                match self.handle(&m).instrument(record).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "A CRM change could not be written yet; trying again.");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        }
                    }
                }
            }
            self.consumer
                .commit_message(&m, CommitMode::Async)
                .context("committing the shop writer's offset")?;
        }
        Ok(())
    }

    async fn handle(&self, m: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let Some(payload) = m.payload() else {
            return Ok(());
        };
        let change: CrmChange = match serde_json::from_slice(payload) {
            Ok(c) => c,
            Err(e) => {
                return self
                    .dead_letter(payload, &format!("unreadable: {e}"), None)
                    .await
            }
        };
        let outcome = self.apply(&change).await?;
        let (label, outcome_kind, reason) = match &outcome {
            Outcome::Written => ("written", DeliveryOutcome::Posted, None),
            Outcome::Skipped(why) => ("skipped", DeliveryOutcome::Skipped, Some(why.clone())),
            Outcome::Refused(why) => (
                "dead_lettered",
                DeliveryOutcome::DeadLettered,
                Some(why.clone()),
            ),
            Outcome::Erased => (
                "erased",
                DeliveryOutcome::Skipped,
                Some("its person was erased".into()),
            ),
        };
        self.metrics.written.with_label_values(&[label]).inc();
        if let Outcome::Refused(why) = &outcome {
            self.dead_letter(payload, why, Some(&change)).await?;
        }
        tracing::info!(change = %change.change_id, customer = change.customer_id, field = %change.field, outcome = label, "A CRM change for the shop.");
        self.audit(&change, outcome_kind, reason).await
    }

    async fn apply(&self, change: &CrmChange) -> anyhow::Result<Outcome> {
        let Some((rest, hasher)) = self.shops.get(&change.shop_id) else {
            return Ok(Outcome::Refused(format!(
                "shop {} has no [shops.rest] to write with",
                change.shop_id
            )));
        };
        let mut value = Some(change.value.clone());
        match self
            .keys
            .open_async(vec![(
                woostream_core::privacy::personal::fields::CRM_VALUE,
                &mut value,
            )])
            .await
        {
            Ok(_) => {}
            // Damaged or forged: that change alone is kept aside, the next one follows.
            Err(OpenError::Damaged(why)) => return Ok(Outcome::Refused(why)),
            Err(e) => return Err(e.into()),
        }
        let Some(value) = value else {
            return Ok(Outcome::Erased);
        };
        let endpoint = format!("customers/{}", change.customer_id);
        let current = match rest.object(Method::GET, &endpoint, None).await {
            Ok(c) => c,
            Err(e) => return refusal_or_retry(e),
        };
        match decide(change, &value, &current, |c| hasher.identity_fingerprint(c)) {
            Decision::Skip(why) => Ok(Outcome::Skipped(why)),
            Decision::Update(update) => {
                match rest.object(Method::PUT, &endpoint, Some(&update)).await {
                    Ok(_) => Ok(Outcome::Written),
                    Err(e) => refusal_or_retry(e),
                }
            }
        }
    }

    async fn audit(
        &self,
        change: &CrmChange,
        outcome: DeliveryOutcome,
        reason: Option<String>,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        let record = Delivery {
            delivery_id: format!("shop:customers:{}", change.change_id),
            sink: "shop".into(),
            destination: "customers".into(),
            alert_id: change.change_id.clone(),
            kind: "crm_change".into(),
            shop_id: change.shop_id.clone(),
            correlation_id: change.change_id.clone(),
            outcome,
            message_ts: Some(change.customer_id.to_string()),
            thread_ts: None,
            order_id: None,
            priority: "normal".into(),
            reason,
            attempts: 1,
            latency_ms: (now - change.occurred_at).num_milliseconds().max(0),
            delivered_at: now,
        };
        let key = self.receipt_key.encode(&record.delivery_id)?;
        let value = self.receipt.encode(&record)?;
        self.producer
            .send(
                FutureRecord::to(&self.audit_topic)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .context("recording a CRM change in the audit topic")?;
        Ok(())
    }

    /// Keeps a change the shop refused (its value still sealed), with the reason.
    async fn dead_letter(
        &self,
        payload: &[u8],
        reason: &str,
        change: Option<&CrmChange>,
    ) -> anyhow::Result<()> {
        let record = json!({
            "reason": reason,
            "dead_lettered_at": Utc::now(),
            "change": change,
            "raw": change.is_none().then(|| String::from_utf8_lossy(payload).len()),
        });
        let value = serde_json::to_vec(&record)?;
        let key = change.map(CrmChange::key).unwrap_or_default();
        self.producer
            .send(
                FutureRecord::to(&self.dead_letter_topic)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .context("writing a shop dead letter")?;
        Ok(())
    }
}

/// A refusal no retry can fix (4xx) is the change's outcome; anything else is tried again.
fn refusal_or_retry(e: RestError) -> anyhow::Result<Outcome> {
    match e.status {
        Some(s) if (400..500).contains(&s) && s != 429 => Ok(Outcome::Refused(e.to_string())),
        _ => Err(e.into()),
    }
}
