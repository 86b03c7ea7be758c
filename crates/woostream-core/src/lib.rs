//! The shared core of woostream: configuration ([`config`]), the topic contracts and their Avro
//! codec ([`contract`]), Kafka client set-up ([`kafka`]), personal data and its erasure
//! ([`privacy`]), the operations server and shutdown. No role logic lives here.

pub mod catalogue;
pub mod config;
pub mod contract;
pub mod http;
pub mod kafka;
pub mod listener;
pub mod ops;
pub mod pace;
pub mod privacy;
pub mod retry;
pub mod role;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod traces;

pub use contract::money::Money;

/// Kafka header names woostream writes on every record.
pub mod headers {
    /// Follows one event from webhook to Slack/CRM.
    pub const CORRELATION_ID: &str = "woostream-correlation-id";
    /// The deterministic event id (also in the envelope).
    pub const EVENT_ID: &str = "woostream-event-id";
    /// X-WC-Webhook-Delivery-ID.
    pub const DELIVERY_ID: &str = "woostream-delivery-id";
    /// X-WC-Webhook-Topic, e.g. order.updated.
    pub const WC_TOPIC: &str = "woostream-wc-topic";
    /// X-WC-Webhook-Source.
    pub const SOURCE: &str = "woostream-source";
    /// The configured shop id.
    pub const SHOP: &str = "woostream-shop";
    /// The contract (schema file name) the value is written with.
    pub const SCHEMA: &str = "woostream-schema";
    /// Why a record is in a dead-letter topic (Slack's; the CRM's carries it in the value too).
    pub const DEAD_LETTER_REASON: &str = "woostream-dlq-reason";
}
