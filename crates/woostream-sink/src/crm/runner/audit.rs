//! What the audit topic says the CRM has, and the recorder that writes it.

use crate::crm::flush::Known;
use crate::crm::metrics::Metrics;
use crate::crm::records::{cipher, Recorder};
use anyhow::Context;
use woostream_core::config::Config;
use woostream_core::contract::codec::{Codecs, Contract, Decoder};
use woostream_core::contract::sink_records::{CrmDeadLetter, Delivery, DeliveryOutcome};
use woostream_core::kafka;

/// What the audit topic says the CRM has.
pub fn apply_audit(known: &mut Known, d: &Delivery) {
    if d.outcome != DeliveryOutcome::Posted {
        return;
    }
    // The id's last part is the version of the contact or deal.
    let last = d
        .delivery_id
        .rsplit_once(':')
        .and_then(|(_, v)| v.parse::<i64>().ok());
    match d.destination.as_str() {
        "contacts" => known.saw_contact(
            (d.shop_id.clone(), d.alert_id.clone()),
            d.message_ts.clone(),
            last,
        ),
        "deals" => {
            if let (Some(order), Some(version)) = (d.order_id, last) {
                known.saw_deal((d.shop_id.clone(), order), version);
            }
        }
        "associations" => {
            if let Some(order) = d.order_id {
                known.associated.insert((d.shop_id.clone(), order));
            }
        }
        _ => {}
    }
}

/// The recorder (audit and dead letters) and a decoder, framed as the configuration says.
pub async fn recorder(
    config: &Config,
    bootstrap: &str,
    metrics: Metrics,
) -> anyhow::Result<(Recorder, Decoder)> {
    let t = &config.topics;
    let subjects = [
        (t.deliveries.name.as_str(), "key", String::schema()),
        (t.deliveries.name.as_str(), "value", Delivery::schema()),
        (t.crm_dead_letter.name.as_str(), "key", String::schema()),
        (
            t.crm_dead_letter.name.as_str(),
            "value",
            CrmDeadLetter::schema(),
        ),
    ];
    let codecs = Codecs::register(config, &subjects)
        .await
        .context("registering the CRM sink's schemas")?;
    Ok((
        Recorder {
            sink: config.crm.sink_name(),
            dead_letter_prefix: config.crm.dead_letter_prefix(),
            producer: kafka::renewing_producer(&config.kafka, bootstrap, "crm")?,
            deliveries_topic: t.deliveries.name.clone(),
            dead_letter_topic: t.crm_dead_letter.name.clone(),
            key: codecs.encoder(),
            delivery: codecs.encoder(),
            dead_letter: codecs.encoder(),
            cipher: cipher(config),
            keys: crate::intake::subject_keys(config, bootstrap).await?,
            metrics,
        },
        codecs.decoder,
    ))
}
