//! `[kafka]` and `[topics]`: the brokers, the client settings every role shares, and the
//! topics woostream writes with how they are created.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port,…`. Absent: `woostream run` starts the embedded mock cluster; the separate
    /// roles refuse to start.
    pub bootstrap_servers: Option<String>,
    pub client_id: String,
    /// How long the producer lets librdkafka try before a record counts as not delivered
    /// (then it is spooled to disk, if a spool is configured).
    pub delivery_timeout_ms: u64,
    pub linger_ms: u64,
    /// none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// Passed to librdkafka last, e.g. `"security.protocol" = "SASL_SSL"`. Settings woostream
    /// relies on (acks, idempotence, partitioner) cannot be overridden here.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: None,
            client_id: "woostream".into(),
            delivery_timeout_ms: 10_000,
            linger_ms: 5,
            compression: "lz4".into(),
            options: BTreeMap::new(),
        }
    }
}

/// One topic woostream writes: its name and how it is created when missing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub name: String,
    #[serde(default)]
    pub partitions: Option<i32>,
    #[serde(default)]
    pub replication_factor: Option<i32>,
    /// delete or compact (or "compact,delete").
    #[serde(default = "default_cleanup_policy")]
    pub cleanup_policy: String,
    #[serde(default)]
    pub retention_ms: Option<i64>,
}

fn default_cleanup_policy() -> String {
    "delete".into()
}

fn topic(name: &str, cleanup_policy: &str) -> TopicConfig {
    TopicConfig {
        name: name.into(),
        partitions: None,
        replication_factor: None,
        cleanup_policy: cleanup_policy.into(),
        retention_ms: None,
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Create missing topics at start-up through the admin API.
    pub create: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    pub orders: TopicConfig,
    pub products: TopicConfig,
    pub customers: TopicConfig,
    pub coupons: TopicConfig,
    pub reviews: TopicConfig,
    pub actions: TopicConfig,
    pub ingest_dead_letter: TopicConfig,
    /// Customer profiles; also the enricher's changelog, so compacted and partitioned like orders.
    pub profiles: TopicConfig,
    pub alerts: TopicConfig,
    /// Population models, one record per shop.
    pub models: TopicConfig,
    /// Audit of every sink delivery; also what the sinks restore what they delivered from.
    pub deliveries: TopicConfig,
    /// Alerts Slack refused for good, with the reason.
    pub slack_dead_letter: TopicConfig,
    /// Contacts, deals and associations the CRM refused for good, with the reason, the HTTP
    /// status, the attempts and the original change; `woostream crm replay` re-drives them.
    pub crm_dead_letter: TopicConfig,
    /// Where the enricher commits one small transaction at start to learn whether the broker
    /// really ends transactions. Nothing reads it: on a broker that begins transactions but
    /// never ends them, the open one pins only this topic, never an output.
    pub transactions_probe: TopicConfig,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            create: true,
            partitions: 6,
            replication_factor: 1,
            orders: topic("woo.orders", "delete"),
            products: topic("woo.products", "compact"),
            customers: topic("woo.customers", "compact"),
            coupons: topic("woo.coupons", "compact"),
            reviews: topic("woo.reviews", "delete"),
            actions: topic("woo.actions", "delete"),
            ingest_dead_letter: topic("woostream.dlq.ingest", "delete"),
            profiles: topic("woostream.customer-profiles", "compact"),
            alerts: topic("woostream.alerts", "delete"),
            models: TopicConfig {
                partitions: Some(1),
                ..topic("woostream.models", "compact")
            },
            deliveries: topic("woostream.deliveries", "delete"),
            slack_dead_letter: topic("woostream.dlq.slack", "delete"),
            crm_dead_letter: topic("woostream.dlq.crm", "delete"),
            transactions_probe: TopicConfig {
                partitions: Some(1),
                retention_ms: Some(3_600_000),
                ..topic("woostream.transactions-probe", "delete")
            },
        }
    }
}

impl TopicsConfig {
    /// Every topic with the configuration key it came from.
    pub fn all(&self) -> [(&'static str, &TopicConfig); 14] {
        [
            ("orders", &self.orders),
            ("products", &self.products),
            ("customers", &self.customers),
            ("coupons", &self.coupons),
            ("reviews", &self.reviews),
            ("actions", &self.actions),
            ("ingest_dead_letter", &self.ingest_dead_letter),
            ("profiles", &self.profiles),
            ("alerts", &self.alerts),
            ("models", &self.models),
            ("deliveries", &self.deliveries),
            ("slack_dead_letter", &self.slack_dead_letter),
            ("crm_dead_letter", &self.crm_dead_letter),
            ("transactions_probe", &self.transactions_probe),
        ]
    }

    pub fn partitions_of(&self, t: &TopicConfig) -> i32 {
        t.partitions.unwrap_or(self.partitions)
    }

    pub fn replication_of(&self, t: &TopicConfig) -> i32 {
        t.replication_factor.unwrap_or(self.replication_factor)
    }
}
