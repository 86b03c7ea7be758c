//! Tombstones: an erased person's contact erased in the CRM, and their last profile let by.

use super::Loop;
use crate::crm::contact_erasure::Erased;
use rdkafka::message::{BorrowedMessage, Message};
use woostream_core::contract::events::CustomerKey;
use woostream_core::contract::sink_records::DeliveryOutcome;
use woostream_core::privacy::erase::erasure_of;
use woostream_core::privacy::receipt::Receipt;
use woostream_hubspot::api::Crm;

impl<C: Crm> Loop<C> {
    /// A tombstone: on the customers topic with an erasure's header, the person's contact is
    /// erased; on the profiles topic, an erased person's last profile has gone by. Returns
    /// whether it is done (false: interrupted by shutdown).
    pub(super) async fn on_tombstone(&mut self, m: &BorrowedMessage<'_>) -> anyhow::Result<bool> {
        let Some(key) = m.key() else { return Ok(true) };
        let Ok(key) = self.decoder.decode_async::<CustomerKey>(key).await else {
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

    pub(super) async fn erase(
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
        let shared = contact.as_ref().and_then(|id| {
            let known = self.known.lock().expect("known");
            super::super::plan::shared_with(&known, &(shop.clone(), customer.clone()), id)
        });
        let (outcome, done) = match (&contact, shared) {
            (None, _) => (
                DeliveryOutcome::Erased,
                "no contact was written for this customer key".to_string(),
            ),
            (Some(id), Some((other_shop, _))) => (
                DeliveryOutcome::Erased,
                format!("contact {id} kept: the same person is a customer of shop {other_shop} too (one email, one contact); this shop's link to it is forgotten"),
            ),
            (Some(id), None) => match self
                .sender
                .erase_contact(
                    id,
                    &self.sender.mapping.key_of(&shop, &customer),
                    self.erasure,
                    &mut attempts,
                )
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
            role: &self.recorder.sink,
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
}
