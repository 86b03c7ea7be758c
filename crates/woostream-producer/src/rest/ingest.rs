//! What the backfill and reconciliation share: a REST object turned into the record the
//! webhook path would write (same normaliser, keys, categories; the origin says where it came
//! from), or kept as a dead letter when it cannot be read; and producing a page of them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chacha20poly1305::ChaCha20Poly1305;
use chrono::Utc;
use sha2::{Digest, Sha256};
use woostream_core::config::{Config, ShopConfig};
use woostream_core::contract::events::{IngestDeadLetter, Origin};
use woostream_core::kafka::{self, RenewingProducer};
use woostream_core::privacy::CustomerHasher;

use crate::catalogue::Catalogue;
use crate::personal::{seal_kept_body, NewKeys, Sealer};
use crate::publish::{self, Encoders, Record};
use woostream_woo::normalise::{
    normalise, normalise_review, Event, RejectCode, Rejection, WebhookDelivery,
};
use woostream_woo::rest::Resource;

/// Turns one shop's REST objects into records.
pub struct RestIngest {
    pub shop: ShopConfig,
    encoders: Encoders,
    catalogue: Arc<Catalogue>,
    customers: CustomerHasher,
    dead_letter_cipher: Option<ChaCha20Poly1305>,
    sealer: Option<Sealer>,
}

impl RestIngest {
    pub fn new(
        config: &Config,
        shop: &ShopConfig,
        encoders: Encoders,
        catalogue: Arc<Catalogue>,
        sealer: Option<Sealer>,
    ) -> RestIngest {
        RestIngest {
            shop: shop.clone(),
            encoders,
            catalogue,
            customers: CustomerHasher::for_shop(config, &shop.id),
            // Sealed like the webhook path's dead letters when a key is configured.
            dead_letter_cipher: config
                .producer
                .dead_letter_key
                .as_ref()
                .and_then(|k| k.resolve().ok())
                .as_deref()
                .map(woostream_core::privacy::cipher::cipher),
            sealer,
        }
    }

    /// The record for one object of `resource`: its event, or its dead letter (`true`) —
    /// kept like an unreadable webhook, never dropped. Personal fields are sealed; keys made
    /// for people met for the first time are added to `new_keys`, to be written first (see
    /// [`RestIngest::produce`]). `None`: the object is an erased person's past, not written.
    pub fn record(
        &self,
        resource: Resource,
        item: &serde_json::Value,
        origin: Origin,
        new_keys: &mut NewKeys,
    ) -> anyhow::Result<Option<(Record, bool)>> {
        let body = serde_json::to_vec(item).context("re-encoding a REST object")?;
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let delivery = WebhookDelivery {
            shop_id: &self.shop.id,
            source: &self.shop.source,
            wc_topic: Some(resource.wc_topic()),
            webhook_id: None,
            delivery_id: None,
            correlation_id: &correlation_id,
            received_at: Utc::now(),
            origin,
            customers: &self.customers,
        };
        let normalised = match resource {
            Resource::Reviews => normalise_review(&delivery, &body),
            _ => normalise(&delivery, &body),
        };
        let rejection = match normalised {
            Ok(mut event) => {
                match &mut event {
                    Event::Order(_, e) => {
                        if let Some(order) = &mut e.order {
                            self.catalogue.fill(&self.shop.id, order);
                        }
                    }
                    Event::Product(_, e) => self.catalogue.apply(e),
                    _ => {}
                }
                if let Some(sealer) = &self.sealer {
                    if sealer.is_erased_past(&self.customers, &event) {
                        return Ok(None);
                    }
                    sealer.seal_event(&self.customers, &mut event, new_keys);
                }
                match self.encoders.event_record(&event) {
                    Ok(record) => return Ok(Some((record, false))),
                    Err(e) => Rejection {
                        code: RejectCode::InvalidField,
                        reason: format!("the event does not fit its schema: {e}"),
                    },
                }
            }
            Err(rejection) => rejection,
        };
        tracing::warn!(shop = %self.shop.id, resource = resource.name(), reason = rejection.code.as_str(), "A REST object could not be read; kept as a dead letter.");
        let (encryption, stored) = seal_kept_body(
            self.sealer.as_ref(),
            self.dead_letter_cipher.as_ref(),
            &self.customers,
            &self.shop.id,
            &body,
            new_keys,
        );
        let dead_letter = IngestDeadLetter {
            received_at: Utc::now(),
            correlation_id,
            shop_id: Some(self.shop.id.clone()),
            source: Some(self.shop.source.clone()),
            wc_topic: Some(resource.wc_topic().to_string()),
            webhook_id: None,
            delivery_id: None,
            content_type: Some("application/json".into()),
            reason_code: rejection.code.as_str().to_string(),
            reason: rejection.reason,
            body_sha256: hex::encode(Sha256::digest(&body)),
            body_encryption: encryption.to_string(),
            body: stored,
        };
        let record = self
            .encoders
            .dead_letter_record(&dead_letter)
            .context("encoding a dead letter")?;
        Ok(Some((record, true)))
    }
}

impl RestIngest {
    /// Produces a page: the keys made for it first, then its records.
    pub async fn produce(
        &self,
        producer: &RenewingProducer,
        config: &Config,
        records: &[Record],
        new_keys: NewKeys,
    ) -> anyhow::Result<()> {
        if let (Some(sealer), false) = (&self.sealer, new_keys.is_empty()) {
            produce(producer, config, &new_keys.records())
                .await
                .context("writing new subject keys")?;
            sealer.made_durable(new_keys);
        }
        produce(producer, config, records).await
    }
}

/// Produces records and waits until Kafka has every one; a timeout or a replaced producer is
/// retried, a refusal no retry can fix is returned.
pub async fn produce(
    producer: &RenewingProducer,
    config: &Config,
    records: &[Record],
) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(config.kafka.delivery_timeout_ms);
    let sends = records.iter().map(|r| async move {
        let mut backoff =
            woostream_core::retry::Policy::new(Duration::from_millis(500), Duration::from_secs(10))
                .backoff();
        loop {
            match publish::send(producer, r, timeout).await {
                Ok(_) => return Ok(()),
                Err(e) if kafka::renewing::is_permanent(&e) => {
                    return Err(anyhow::anyhow!("Kafka refused a record for {}: {e}", r.topic))
                }
                Err(e) => {
                    let wait = backoff.next_wait().expect("no attempt limit");
                    tracing::warn!(topic = %r.topic, error = %e, "Kafka did not acknowledge; sending again.");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    });
    for result in futures::future::join_all(sends).await {
        result?;
    }
    Ok(())
}
