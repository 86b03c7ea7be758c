//! What a flush leaves in Kafka: one audit record per contact, deal and association
//! (`woostream.deliveries`, sink `crm`), and a dead letter per refused change
//! (`woostream.dlq.crm`) holding the reason, the HTTP status, the attempts and the original.

use anyhow::anyhow;
use chacha20poly1305::ChaCha20Poly1305;
use chrono::Utc;
use rdkafka::message::{Header, OwnedHeaders};
use std::sync::Arc;
use woostream_core::config::Config;
use woostream_core::contract::codec::Encoder;
use woostream_core::contract::sink_records::{CrmDeadLetter, Delivery, DeliveryOutcome};
use woostream_core::headers;
use woostream_core::kafka::RenewingProducer;
use woostream_core::privacy::cipher;
use woostream_core::privacy::receipt::Receipt;
use woostream_core::privacy::seal::{self, SUBJECT_KEY};
use woostream_core::privacy::SubjectKeys;

use super::changes::{ContactChange, DealChange};
use super::flush::{Outcome, Refusal, Report};
use super::metrics::Metrics;
use super::pending::{Item, Original};
use crate::audit::{write_all, Outgoing};

pub fn contact_dead_letter_id(c: &ContactChange) -> String {
    format!("contact:{}:{}:{}", c.shop_id, c.customer, c.version())
}

pub fn deal_dead_letter_id(d: &DealChange) -> String {
    format!("deal:{}:{}:{}", d.shop_id, d.order_id, d.version())
}

/// Opens a dead letter's original (sealed with `cipher`, or under its person's key, when it
/// says so). Blocking: a person's key may have to be looked up.
pub fn open_original(
    dl: &CrmDeadLetter,
    cipher: Option<&ChaCha20Poly1305>,
    keys: Option<&SubjectKeys>,
) -> anyhow::Result<Original> {
    let bytes = if dl.original_encryption == SUBJECT_KEY {
        let keys = keys.ok_or_else(|| {
            anyhow!(
                "{}: sealed under a person's key, and privacy.seal_personal_data is off",
                dl.dead_letter_id
            )
        })?;
        let id = std::str::from_utf8(&dl.original)
            .ok()
            .and_then(seal::key_id_of)
            .ok_or_else(|| anyhow!("{}: damaged sealed original", dl.dead_letter_id))?;
        let key = keys.key(id)?;
        seal::open_bytes(&dl.original, key.as_deref())
            .map_err(|e| anyhow!("{}: {e}", dl.dead_letter_id))?
            .ok_or_else(|| anyhow!("{}: its person was erased", dl.dead_letter_id))?
    } else {
        cipher::open(cipher, &dl.original_encryption, &dl.original)
            .map_err(|e| anyhow!("{}: {e} (crm.dead_letter_key)", dl.dead_letter_id))?
    };
    Ok(serde_json::from_slice(&bytes)?)
}

/// The person's key a change's identity was sealed under, if any.
fn sealed_with(original: &Original) -> Option<&str> {
    let contact = match original {
        Original::Contact { contact } => Some(contact),
        Original::Deal { contact, .. } => contact.as_ref(),
        Original::ContactErasure { .. } => None,
    };
    contact?.identity.as_ref()?.sealed_with.as_deref()
}

pub fn cipher(config: &Config) -> Option<ChaCha20Poly1305> {
    config
        .crm
        .resolved_dead_letter_key()
        .as_deref()
        .map(cipher::cipher)
}

pub struct Recorder {
    /// This sink in the audit topic (`crm`, `crm@<account>`).
    pub sink: String,
    /// What this account's dead-letter ids start with (see `CrmConfig::dead_letter_prefix`).
    pub dead_letter_prefix: String,
    pub producer: Arc<RenewingProducer>,
    pub deliveries_topic: String,
    pub dead_letter_topic: String,
    pub key: Encoder<String>,
    pub delivery: Encoder<Delivery>,
    pub dead_letter: Encoder<CrmDeadLetter>,
    pub cipher: Option<ChaCha20Poly1305>,
    /// Seals dead letters under their person's key.
    pub keys: Option<SubjectKeys>,
    pub metrics: Metrics,
}

impl Recorder {
    #[allow(clippy::too_many_arguments)]
    fn audit<T>(
        &self,
        out: &mut Vec<Outgoing>,
        item: &Item<T>,
        (kind, destination, subject): (&str, &str, String),
        shop_id: &str,
        order_id: Option<i64>,
        correlation_id: &str,
        outcome: &Outcome,
        delivery_id: String,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        let latency_ms = (now.timestamp_millis() - item.written_ms).max(0);
        let (outcome_kind, object_id, reason) = match outcome {
            Outcome::Delivered { object_id, .. } => {
                (DeliveryOutcome::Posted, Some(object_id.clone()), None)
            }
            Outcome::Skipped(why) => (DeliveryOutcome::Skipped, None, Some(why.clone())),
            Outcome::Refused(r) => (DeliveryOutcome::DeadLettered, None, Some(r.reason.clone())),
        };
        let label = match outcome {
            Outcome::Delivered { new: true, .. } => "created",
            Outcome::Delivered { new: false, .. } => "updated",
            Outcome::Skipped(_) => "skipped",
            Outcome::Refused(_) => "dead_lettered",
        };
        self.metrics.upserts.with_label_values(&[kind, label]).inc();
        if matches!(outcome, Outcome::Delivered { .. }) {
            self.metrics.latency.observe(latency_ms as f64 / 1000.0);
        }
        let record = Delivery {
            delivery_id: delivery_id.clone(),
            sink: self.sink.clone(),
            destination: destination.into(),
            alert_id: subject,
            kind: kind.into(),
            shop_id: shop_id.into(),
            correlation_id: correlation_id.into(),
            outcome: outcome_kind,
            message_ts: object_id,
            thread_ts: None,
            order_id,
            priority: "normal".into(),
            reason,
            attempts: item.attempts.len() as i32,
            latency_ms,
            delivered_at: now,
        };
        out.push(Outgoing {
            topic: self.deliveries_topic.clone(),
            key: self.key.encode(&delivery_id)?,
            value: self.delivery.encode(&record)?,
            correlation_id: correlation_id.into(),
            dead_letter: None,
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn dead_letter<T>(
        &self,
        out: &mut Vec<Outgoing>,
        item: &Item<T>,
        id: String,
        object: &str,
        (shop_id, customer, order_id): (&str, &str, Option<i64>),
        refusal: &Refusal,
        original: &Original,
        correlation_id: &str,
    ) -> anyhow::Result<()> {
        self.metrics
            .dead_lettered
            .with_label_values(&[object])
            .inc();
        tracing::warn!(
            dead_letter_id = %id,
            status = refusal.status,
            reason = %refusal.reason,
            "The CRM refused a change; it is kept in the dead-letter topic."
        );
        let json = serde_json::to_vec(original)?;
        let person = sealed_with(original)
            .zip(self.keys.as_ref())
            .and_then(|(id, keys)| keys.cached(id));
        let (encryption, original) = match person {
            Some(key) => (SUBJECT_KEY, seal::seal_bytes(&key, &json)),
            None => cipher::seal(self.cipher.as_ref(), &json),
        };
        let record = CrmDeadLetter {
            dead_letter_id: id.clone(),
            object: object.into(),
            shop_id: shop_id.into(),
            customer: customer.into(),
            order_id,
            reason: refusal.reason.clone(),
            category: refusal.category.clone(),
            http_status: refusal.status.map(i32::from),
            attempts: item.attempts.clone(),
            original,
            original_encryption: encryption.into(),
            correlation_id: correlation_id.into(),
            sources: item.sources.clone(),
            dead_lettered_at: Utc::now(),
            replays: item.replays,
        };
        out.push(Outgoing {
            topic: self.dead_letter_topic.clone(),
            key: self.key.encode(&id)?,
            value: self.dead_letter.encode(&record)?,
            correlation_id: correlation_id.into(),
            dead_letter: Some((refusal.reason.clone(), Vec::new())),
        });
        Ok(())
    }

    /// Keeps an erasure the CRM refused (ids only) on the dead-letter topic, for a replay.
    pub async fn erasure_dead_letter(
        &self,
        (shop_id, customer): (&str, &str),
        erasure_id: &str,
        contact_id: &str,
        refusal: &Refusal,
        attempts: Vec<woostream_core::contract::sink_records::CrmAttempt>,
    ) -> anyhow::Result<()> {
        let item = Item {
            change: (),
            sources: Vec::new(),
            written_ms: Utc::now().timestamp_millis(),
            first_seen: std::time::Instant::now(),
            attempts,
            replays: 0,
        };
        let original = Original::ContactErasure {
            erasure_id: erasure_id.to_string(),
            contact_id: contact_id.to_string(),
        };
        let mut out = Vec::new();
        self.dead_letter(
            &mut out,
            &item,
            format!(
                "{}contact_erasure:{shop_id}:{customer}:{erasure_id}",
                self.dead_letter_prefix
            ),
            "contact_erasure",
            (shop_id, customer, None),
            refusal,
            &original,
            erasure_id,
        )?;
        write_all(&self.producer, &out, "keeping a refused erasure").await
    }

    /// Writes an erasure receipt and waits until Kafka has it.
    pub async fn receipt(&self, receipt: &Receipt<'_>) -> anyhow::Result<()> {
        let record = receipt.record();
        let out = vec![Outgoing {
            topic: self.deliveries_topic.clone(),
            key: self.key.encode(&record.delivery_id)?,
            value: self.delivery.encode(&record)?,
            correlation_id: receipt.erasure_id.to_string(),
            dead_letter: None,
        }];
        write_all(&self.producer, &out, "recording an erasure receipt").await
    }

    /// Writes the audit records and dead letters of a flush and waits until Kafka has them.
    pub async fn record(&self, report: &Report) -> anyhow::Result<()> {
        let mut out = Vec::new();
        for (item, outcome) in &report.contacts {
            let c = &item.change;
            self.audit(
                &mut out,
                item,
                ("contact", "contacts", c.customer.clone()),
                &c.shop_id,
                None,
                &c.correlation_id,
                outcome,
                format!("{}:{}", self.sink, contact_dead_letter_id(c)),
            )?;
            if let Outcome::Refused(r) = outcome {
                let original = Original::Contact {
                    contact: Box::new(c.clone()),
                };
                let who = (c.shop_id.as_str(), c.customer.as_str(), None);
                let id = format!("{}{}", self.dead_letter_prefix, contact_dead_letter_id(c));
                self.dead_letter(
                    &mut out,
                    item,
                    id,
                    "contact",
                    who,
                    r,
                    &original,
                    &c.correlation_id,
                )?;
            }
        }
        for (item, outcome, contact) in &report.deals {
            let d = &item.change;
            self.audit(
                &mut out,
                item,
                ("deal", "deals", d.order_id.to_string()),
                &d.shop_id,
                Some(d.order_id),
                &d.correlation_id,
                outcome,
                format!("{}:{}", self.sink, deal_dead_letter_id(d)),
            )?;
            if let Outcome::Refused(r) = outcome {
                let original = Original::Deal {
                    deal: Box::new(d.clone()),
                    contact: contact.clone().map(Box::new),
                };
                let who = (d.shop_id.as_str(), d.customer.as_str(), Some(d.order_id));
                let id = format!("{}{}", self.dead_letter_prefix, deal_dead_letter_id(d));
                self.dead_letter(
                    &mut out,
                    item,
                    id,
                    "deal",
                    who,
                    r,
                    &original,
                    &d.correlation_id,
                )?;
            }
            if report.associated.contains(&(d.shop_id.clone(), d.order_id)) {
                self.audit(
                    &mut out,
                    item,
                    ("association", "associations", d.order_id.to_string()),
                    &d.shop_id,
                    Some(d.order_id),
                    &d.correlation_id,
                    outcome,
                    format!("{}:association:{}:{}", self.sink, d.shop_id, d.order_id),
                )?;
            }
        }
        self.send(out).await
    }

    /// Marks a dead letter done: replayed, or `superseded` (the CRM has a newer state).
    pub async fn replayed(&self, dl: &CrmDeadLetter, superseded: bool) -> anyhow::Result<()> {
        let id = format!("{}:replay:{}", self.sink, dl.dead_letter_id);
        let record = Delivery {
            delivery_id: id.clone(),
            sink: self.sink.clone(),
            destination: "replay".into(),
            alert_id: dl.dead_letter_id.clone(),
            kind: dl.object.clone(),
            shop_id: dl.shop_id.clone(),
            correlation_id: dl.correlation_id.clone(),
            outcome: if superseded {
                DeliveryOutcome::Skipped
            } else {
                DeliveryOutcome::Posted
            },
            message_ts: None,
            thread_ts: None,
            order_id: dl.order_id,
            priority: "normal".into(),
            reason: Some(if superseded { "superseded" } else { "replayed" }.into()),
            attempts: dl.attempts.len() as i32,
            latency_ms: (Utc::now() - dl.dead_lettered_at).num_milliseconds().max(0),
            delivered_at: Utc::now(),
        };
        self.send(vec![Outgoing {
            topic: self.deliveries_topic.clone(),
            key: self.key.encode(&id)?,
            value: self.delivery.encode(&record)?,
            correlation_id: dl.correlation_id.clone(),
            dead_letter: None,
        }])
        .await
    }

    /// A record the sink cannot read, kept with the reason.
    pub async fn unreadable(
        &self,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        reason: &str,
    ) -> anyhow::Result<()> {
        let hs = OwnedHeaders::new().insert(Header {
            key: headers::DEAD_LETTER_REASON,
            value: Some(reason),
        });
        crate::intake::keep_unreadable(
            &self.producer,
            &self.dead_letter_topic,
            key.as_deref(),
            &value,
            hs,
        )
        .await
    }

    async fn send(&self, out: Vec<Outgoing>) -> anyhow::Result<()> {
        write_all(&self.producer, &out, "recording a CRM delivery").await
    }
}
