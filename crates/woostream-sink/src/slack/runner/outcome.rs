//! One channel's outcome out: the audit record, or the dead letter, then the offset freed.

use super::restored::{delivery_id, DLQ_CHANNEL};
use super::Loop;
use crate::audit::{write_all, Outgoing};
use crate::slack::channel::Done;
use chrono::Utc;
use rdkafka::message::{Header, OwnedHeaders};
use woostream_core::contract::sink_records::{Delivery, DeliveryOutcome};
use woostream_core::headers;
use woostream_core::privacy::receipt::Receipt;

impl Loop {
    pub(super) async fn on_done(&mut self, d: Done) -> anyhow::Result<()> {
        self.record(&d).await?;
        for (alert, ticket, _) in &d.alerts {
            self.inflight
                .remove(&delivery_id(&self.sink, &d.channel, &alert.alert_id));
            let alerts = &self.config.topics.alerts.name;
            self.offsets.done(alerts, ticket.partition, ticket.offset);
        }
        Ok(())
    }

    /// Writes the audit records (and dead letters) of `d` and waits until they are durable.
    pub(super) async fn record(&mut self, d: &Done) -> anyhow::Result<()> {
        let now = Utc::now();
        let mut sends = Vec::new();
        for (alert, ticket, priority) in &d.alerts {
            if let (Some(e), DeliveryOutcome::Erased) = (&alert.erasure, d.outcome) {
                let receipt = Receipt {
                    erasure_id: &e.erasure_id,
                    shop_id: &alert.shop_id,
                    role: &self.sink,
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
            let id = delivery_id(&self.sink, &d.channel, &alert.alert_id);
            let record = Delivery {
                delivery_id: id.clone(),
                sink: self.sink.clone(),
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
                // Kept as Kafka had it: personal fields sealed under their person's key.
                let mut kept = (**alert).clone();
                ticket.sealed.restore(&mut kept);
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

    pub(super) async fn dead_letter(
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
        crate::intake::keep_unreadable(
            &self.producer,
            &self.config.topics.slack_dead_letter.name,
            key.as_deref(),
            &value,
            hs,
        )
        .await
    }
}
