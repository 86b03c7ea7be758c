//! What the sinks record: the delivery audit (`schemas/delivery.avsc`, topic
//! woostream.deliveries) and the CRM's dead letters (`schemas/crm-dead-letter.avsc`); field
//! order follows the schemas.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::money::ts_millis;

/// How one alert ended at one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryOutcome {
    Posted,
    Digested,
    DeadLettered,
    Skipped,
    /// An erasure receipt: what one role erased (kind `erasure`, alert id the erasure's id).
    Erased,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Posted => "posted",
            DeliveryOutcome::Digested => "digested",
            DeliveryOutcome::DeadLettered => "dead_lettered",
            DeliveryOutcome::Skipped => "skipped",
            DeliveryOutcome::Erased => "erased",
        }
    }
}

/// The identity of a sink that is the only one of its kind (and of every sink of earlier
/// releases): its names carry no suffix.
pub const DEFAULT_IDENTITY: &str = "default";

pub fn default_identity() -> String {
    DEFAULT_IDENTITY.into()
}

/// A sink's name in the audit topic: `kind`, or `kind@identity` for a named one.
pub fn sink_name(kind: &str, identity: &str) -> String {
    if identity == DEFAULT_IDENTITY {
        kind.into()
    } else {
        format!("{kind}@{identity}")
    }
}

/// A named sink's consumer group: the default group with `-identity` added; a group set in the
/// configuration is taken as it is.
pub fn consumer_group(configured: &str, default: &str, identity: &str) -> String {
    if identity == DEFAULT_IDENTITY || configured != default {
        configured.into()
    } else {
        format!("{configured}-{identity}")
    }
}

/// Whether `name` can name a sink (it goes into group ids, audit records and object names).
pub fn is_identity(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
}

/// One record of the delivery audit topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub delivery_id: String,
    pub sink: String,
    pub destination: String,
    pub alert_id: String,
    pub kind: String,
    pub shop_id: String,
    pub correlation_id: String,
    pub outcome: DeliveryOutcome,
    pub message_ts: Option<String>,
    pub thread_ts: Option<String>,
    pub order_id: Option<i64>,
    pub priority: String,
    pub reason: Option<String>,
    pub attempts: i32,
    pub latency_ms: i64,
    #[serde(with = "ts_millis")]
    pub delivered_at: DateTime<Utc>,
}

impl Delivery {
    /// The kind of sink that wrote it (`slack`, `crm`, `shop`), whatever its identity.
    pub fn sink_kind(&self) -> &str {
        self.sink.split('@').next().unwrap_or_default()
    }
}

/// One request that carried a CRM change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrmAttempt {
    #[serde(with = "ts_millis")]
    pub at: DateTime<Utc>,
    pub http_status: Option<i32>,
    pub error: String,
    pub batch_size: i32,
}

/// A Kafka record a CRM change was made from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A change the CRM refused for good (topic woostream.dlq.crm).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrmDeadLetter {
    pub dead_letter_id: String,
    pub object: String,
    pub shop_id: String,
    pub customer: String,
    pub order_id: Option<i64>,
    pub reason: String,
    pub category: Option<String>,
    pub http_status: Option<i32>,
    pub attempts: Vec<CrmAttempt>,
    #[serde(with = "crate::contract::events::bytes_field")]
    pub original: Vec<u8>,
    pub original_encryption: String,
    pub correlation_id: String,
    pub sources: Vec<SourceOffset>,
    #[serde(with = "ts_millis")]
    pub dead_lettered_at: DateTime<Utc>,
    pub replays: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::codec::tests::round_trip;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 9, 30, 0).unwrap()
    }

    #[test]
    fn every_record_round_trips_through_its_schema() {
        for (outcome, ts) in [
            (
                DeliveryOutcome::Posted,
                Some("1503435956.000247".to_string()),
            ),
            (DeliveryOutcome::DeadLettered, None),
        ] {
            round_trip(Delivery {
                delivery_id: "slack:#orders:abc".into(),
                sink: "slack".into(),
                destination: "#orders".into(),
                alert_id: "abc".into(),
                kind: "order_paid".into(),
                shop_id: "main".into(),
                correlation_id: "c-1".into(),
                outcome,
                message_ts: ts.clone(),
                thread_ts: ts,
                order_id: Some(7),
                priority: "normal".into(),
                reason: None,
                attempts: 1,
                latency_ms: 120,
                delivered_at: at(),
            });
        }
        round_trip(CrmDeadLetter {
            dead_letter_id: "deal:main:1234:5".into(),
            object: "deal".into(),
            shop_id: "main".into(),
            customer: "guest:ab".into(),
            order_id: Some(1234),
            reason: "stage shipping does not exist".into(),
            category: Some("VALIDATION_ERROR".into()),
            http_status: Some(400),
            attempts: vec![CrmAttempt {
                at: at(),
                http_status: Some(400),
                error: "rejected".into(),
                batch_size: 100,
            }],
            original: b"{}".to_vec(),
            original_encryption: "none".into(),
            correlation_id: "c-1".into(),
            sources: vec![SourceOffset {
                topic: "woo.orders".into(),
                partition: 3,
                offset: 99,
            }],
            dead_lettered_at: at(),
            replays: 0,
        });
    }
}
