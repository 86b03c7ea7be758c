//! One record in: decoded, its sealed fields opened, its changes added to what is pending.

use super::{Decoded, Loop};
use crate::crm::changes;
use crate::crm::pending::Item;
use rdkafka::message::{BorrowedMessage, Message};
use std::time::Instant;
use woostream_core::contract::enriched::CustomerProfile;
use woostream_core::contract::events::{CustomerEvent, OrderEvent};
use woostream_core::contract::sink_records::SourceOffset;
use woostream_core::kafka::admit::{unreadable, Unreadable};
use woostream_core::kafka::reading::END_MARKER;
use woostream_core::privacy::erased::is_erased_past;
use woostream_core::privacy::personal::{customer_fields, order_fields, Sealing};
use woostream_hubspot::api::Crm;

impl<C: Crm> Loop<C> {
    /// Decodes a record and opens its sealed fields.
    pub(super) async fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        written_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> anyhow::Result<Decoded> {
        let (sealing, mut contact, deal) = if topic == self.topics.orders {
            let mut e: OrderEvent = self.decoder.decode_async(payload).await?;
            let sealing = self
                .open(e.order.as_mut().map(order_fields), written_at)
                .await?;
            let (contact, deal) = changes::from_order(&e);
            (sealing, contact, deal)
        } else if topic == self.topics.customers {
            let mut e: CustomerEvent = self.decoder.decode_async(payload).await?;
            let sealing = self
                .open(e.customer.as_mut().map(customer_fields), written_at)
                .await?;
            (sealing, changes::from_customer(&e), None)
        } else {
            let p: CustomerProfile = self.decoder.decode_async(payload).await?;
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
    pub(super) async fn open(
        &self,
        fields: Option<Vec<woostream_core::privacy::personal::Field<'_>>>,
        written_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> anyhow::Result<Sealing> {
        match (fields, &self.recorder.keys) {
            (Some(fields), Some(keys)) => Ok(keys.open_record_async(fields, written_at).await?),
            _ => Ok(Sealing::Clear),
        }
    }

    pub(super) async fn on_record(&mut self, m: &BorrowedMessage<'_>) -> anyhow::Result<()> {
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
        let written_at = m
            .timestamp()
            .to_millis()
            .and_then(chrono::DateTime::from_timestamp_millis);
        let decoded = self.decode(topic, payload, written_at).await;
        let (contact, deal) = match decoded {
            Ok(None) => {
                // Sealed for a person erased since: nothing of it goes to the CRM.
                self.sender_metrics().erased_skipped.inc();
                self.offsets.read(topic, partition, offset, 0);
                return Ok(());
            }
            Ok(Some((contact, deal))) => (contact, deal),
            Err(e) => match unreadable(e) {
                Unreadable::KeysUnavailable(e) => return Err(e),
                // Not done, so nothing at or past it is committed; the loop holds the
                // partition (see `woostream_core::kafka::hold`).
                Unreadable::NewerWriter(e) => {
                    self.offsets.read(topic, partition, offset, 1);
                    self.newly_held = Some(e);
                    return Ok(());
                }
                Unreadable::Damaged(e) => {
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
            },
        };
        // An erased person's past never makes a contact again (a backfill restarted, a refund
        // of an old order): the erased-subject list says who and since when.
        let (contact, deal) = match &self.erased_list {
            Some(list) => (
                contact.filter(|c| {
                    !is_erased_past(
                        list.erased_at(&c.shop_id, &c.customer),
                        changes::contact_time(c),
                    )
                }),
                deal.filter(|d| {
                    !is_erased_past(list.erased_at(&d.shop_id, &d.customer), d.created_at)
                }),
            ),
            None => (contact, deal),
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
