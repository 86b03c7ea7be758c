//! One alert in: decoded, routed by the rules, queued on its channels.

use super::restored::delivery_id;
use super::Loop;
use crate::slack::channel::SealedForms;
use crate::slack::channel::{Done, Ticket};
use crate::slack::digest::Queued;
use chrono::Utc;
use rdkafka::message::{BorrowedMessage, Message};
use std::sync::Arc;
use woostream_core::contract::enriched::Alert;
use woostream_core::contract::sink_records::DeliveryOutcome;
use woostream_core::kafka::admit::{unreadable, Unreadable};

impl Loop {
    pub(super) async fn on_alert(&mut self, m: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let (partition, offset) = (m.partition(), m.offset());
        self.offsets.read(m.topic(), partition, offset, 0);
        let Some(payload) = m.payload() else {
            return Ok(());
        };
        let decoded = self.decoder.decode_async::<Alert>(payload).await;
        let alert = match decoded.map_err(|e| unreadable(e.into())) {
            Ok(a) => a,
            Err(Unreadable::KeysUnavailable(e)) => return Err(e),
            // Never done, so nothing at or past it is committed; the loop holds the partition
            // (see `woostream_core::kafka::hold`).
            Err(Unreadable::NewerWriter(e)) => {
                self.offsets.read(m.topic(), partition, offset, 1);
                self.newly_held = Some(e);
                return Ok(());
            }
            Err(Unreadable::Damaged(e)) => {
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
        let (alert, sealed) = self.open_personal(alert).await?;
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
                    sealed: SealedForms::default(),
                };
                let q = Queued {
                    priority: woostream_core::config::slack::Priority::Urgent,
                    alert: alert.clone(),
                    ticket,
                };
                if sender.send(q).is_ok() {
                    queued += 1;
                }
            }
            self.hold(partition, offset, queued);
            return Ok(());
        }
        let routes = self.rules.route(&alert, Utc::now());
        let mut queued = 0;
        for route in routes {
            let id = delivery_id(&self.sink, &route.channel, &alert.alert_id);
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
                sealed: sealed.clone(),
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
        self.hold(partition, offset, queued);
        Ok(())
    }

    /// Opens the customer's initial (sealed like the name it comes from), the customer note
    /// and a review's text; returns the alert with them opened and the sealed forms, kept for
    /// a dead letter. A person erased since has none of them any more. Whether a message shows
    /// them is the rule's decision (its `personal` list), made when rendering.
    pub(super) async fn open_personal(
        &self,
        mut alert: Alert,
    ) -> anyhow::Result<(Alert, SealedForms)> {
        let Some(keys) = &self.keys else {
            return Ok((alert, SealedForms::default()));
        };
        let sealed = |v: &Option<String>| {
            v.clone()
                .filter(|v| woostream_core::privacy::seal::is_sealed(v))
        };
        let mut note = alert.question.as_ref().map(|q| q.note.clone());
        let mut review_text = alert.review.as_ref().map(|r| r.text.clone());
        let forms = SealedForms {
            initial: alert
                .customer
                .as_ref()
                .and_then(|c| sealed(&c.first_name_initial)),
            note: sealed(&note),
            review_text: sealed(&review_text),
        };
        use woostream_core::privacy::personal::{fields as named, Field};
        let mut fields: Vec<Field<'_>> = vec![
            (named::CUSTOMER_NOTE, &mut note),
            (named::REVIEW_TEXT, &mut review_text),
        ];
        if let Some(c) = alert.customer.as_mut() {
            fields.push((named::FIRST_NAME_INITIAL, &mut c.first_name_initial));
        }
        match keys.open_async(fields).await {
            Ok(_) => {}
            // A damaged value is left out; the alert still goes.
            Err(woostream_core::privacy::OpenError::Damaged(why)) => {
                tracing::warn!(alert = %alert.alert_id, reason = %why, "An alert's personal fields cannot be opened; posting without them.");
                if let Some(c) = alert.customer.as_mut() {
                    c.first_name_initial = None;
                }
                note = None;
                review_text = None;
            }
            Err(e) => return Err(e.into()),
        }
        // An erased person's note and review are gone: shown as nothing.
        if let Some(q) = alert.question.as_mut() {
            q.note = note.unwrap_or_default();
        }
        if let Some(r) = alert.review.as_mut() {
            r.text = review_text.unwrap_or_default();
        }
        Ok((alert, forms))
    }

    /// The alert at `offset` stays uncommitted until its `queued` channels are done.
    fn hold(&mut self, partition: i32, offset: i64, queued: usize) {
        let alerts = &self.config.topics.alerts.name;
        self.offsets.read(alerts, partition, offset, queued);
    }
}
