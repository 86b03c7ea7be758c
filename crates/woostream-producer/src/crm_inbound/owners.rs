//! Whose each CRM contact is, by woostream's own record: the CRM sink's audit trail (every
//! contact it wrote, and for whom; every contact it erased). A contact's `woo_customer_id`
//! alone is not proof — a form, an import or another app can set any property — so a change
//! reaches a shop account only when this record names the same customer for that contact.
//!
//! [`owner_seen`] is the pure part; [`Owners`] follows the audit topic and catches up with it
//! on demand (a contact written a moment ago).

use std::collections::HashMap;

use rdkafka::message::Message;
use woostream_core::config::Config;
use woostream_core::contract::codec::Decoder;
use woostream_core::contract::sink_records::{Delivery, DeliveryOutcome};
use woostream_core::kafka::follow::Followed;

/// (shop, customer key) by CRM contact id.
pub type OwnerMap = HashMap<String, (String, String)>;

/// Folds one audit record in: a contact the CRM sink wrote belongs to the customer it wrote it
/// for; a contact it erased belongs to no one.
/// Only the records of `sink`, this account's CRM sink, count: another account's contact ids
/// are another CRM's.
pub fn owner_seen(owners: &mut OwnerMap, d: &Delivery, sink: &str) {
    if d.sink != sink || d.destination != "contacts" {
        return;
    }
    let Some(contact) = &d.message_ts else { return };
    match d.outcome {
        DeliveryOutcome::Posted => {
            owners.insert(contact.clone(), (d.shop_id.clone(), d.alert_id.clone()));
        }
        DeliveryOutcome::Erased => {
            owners.remove(contact);
        }
        _ => {}
    }
}

/// The followed record of contact owners.
#[derive(Clone)]
pub struct Owners(Followed<OwnerMap>);

impl Owners {
    /// Starts following the audit topic and returns once everything written to it before
    /// the call has been read.
    pub async fn follow(config: &Config, bootstrap: &str) -> anyhow::Result<Owners> {
        let decoder = Decoder::for_config(config);
        let sink = config.crm.sink_name();
        let handle = tokio::runtime::Handle::current();
        let followed = Followed::start_async(
            &config.kafka,
            bootstrap,
            &config.topics.deliveries.name,
            "crm-inbound-owners",
            OwnerMap::new(),
            move |owners, m| {
                if let Some(Ok(d)) = m
                    .payload()
                    .map(|v| decoder.decode_blocking::<Delivery>(&handle, v))
                {
                    owner_seen(owners, &d, &sink);
                }
            },
        )
        .await?;
        Ok(Owners(followed))
    }

    /// Stops following (the role is stopping).
    pub fn stop(&self) {
        self.0.stop();
    }

    /// The customer woostream wrote `contact` for, if any.
    pub fn of(&self, contact: &str) -> Option<(String, String)> {
        self.0.read(|owners| owners.get(contact).cloned())
    }

    /// [`Owners::of`], after catching up with the audit when the contact is not known yet.
    pub async fn of_now(&self, contact: &str) -> anyhow::Result<Option<(String, String)>> {
        if let Some(owner) = self.of(contact) {
            return Ok(Some(owner));
        }
        self.0.sync_async().await?;
        Ok(self.of(contact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn delivery(outcome: DeliveryOutcome, customer: &str, contact: &str) -> Delivery {
        Delivery {
            delivery_id: format!("crm:{customer}:1"),
            sink: "crm".into(),
            destination: "contacts".into(),
            alert_id: customer.into(),
            kind: "contact".into(),
            shop_id: "eu".into(),
            correlation_id: "c".into(),
            outcome,
            message_ts: Some(contact.into()),
            thread_ts: None,
            order_id: None,
            priority: "normal".into(),
            reason: None,
            attempts: 1,
            latency_ms: 0,
            delivered_at: Utc::now(),
        }
    }

    #[test]
    fn a_contact_belongs_to_whom_the_sink_wrote_it_for_until_it_is_erased() {
        let mut owners = OwnerMap::new();
        owner_seen(
            &mut owners,
            &delivery(DeliveryOutcome::Posted, "42", "1001"),
            "crm",
        );
        owner_seen(
            &mut owners,
            &delivery(DeliveryOutcome::DeadLettered, "9", "1002"),
            "crm",
        );
        let mut slack = delivery(DeliveryOutcome::Posted, "9", "1003");
        slack.sink = "slack".into();
        owner_seen(&mut owners, &slack, "crm");
        assert_eq!(owners.get("1001"), Some(&("eu".into(), "42".into())));
        assert_eq!(owners.len(), 1, "only contacts the CRM sink wrote");
        owner_seen(
            &mut owners,
            &delivery(DeliveryOutcome::Erased, "er-1", "1001"),
            "crm",
        );
        assert!(owners.is_empty());
    }
}
