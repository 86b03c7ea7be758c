//! The shared core of woostream: configuration, the canonical events and their Avro codec,
//! Kafka client set-up, the operations server and shutdown. No role logic lives here.

pub mod catalogue;
pub mod codec;
pub mod config;
pub mod erasure;
pub mod events;
pub mod http;
pub mod insights;
pub mod kafka;
pub mod listener;
pub mod money;
pub mod ops;
pub mod pace;
pub mod privacy;
pub mod records;
pub mod registry;
pub mod resume;
pub mod retry;
pub mod role;
pub mod sealing;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod traces;

pub use money::Money;

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
