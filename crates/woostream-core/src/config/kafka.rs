//! `[kafka]` and `[topics]`: the brokers, the client settings every role shares, and the
//! topics woostream writes with how they are created.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port,…`. Absent: `woostream run` starts the embedded mock cluster; the separate
    /// roles refuse to start.
    pub bootstrap_servers: Option<String>,
    /// librdkafka's `client.id`: how the brokers' logs and quotas name woostream.
    pub client_id: String,
    /// How long the producer lets librdkafka try before a record counts as not delivered
    /// (then it is spooled to disk, if a spool is configured).
    pub delivery_timeout_ms: u64,
    /// How long the producer waits to fill a batch (a few ms cost little latency and save many
    /// requests).
    pub linger_ms: u64,
    /// How often the clients that carry the roles' records report librdkafka's statistics
    /// (broker round trips, queued records: `woostream_kafka_broker_rtt_seconds`, …); 0: never.
    pub statistics_interval_ms: u64,
    /// none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// The largest record woostream writes (librdkafka's `message.max.bytes`, and the
    /// `max.message.bytes` of the topics it creates). At least `producer.max_body_bytes` plus
    /// 64 KiB, so that the dead letter of any body the producer accepts fits. A record Kafka
    /// refuses as too large is dead-lettered, never retried.
    pub max_message_bytes: usize,
    /// How every client authenticates and encrypts: producers, consumers, the admin client.
    pub security: KafkaSecurity,
    /// Passed to librdkafka last, e.g. `"socket.keepalive.enable" = "true"`. Settings woostream
    /// relies on (acks, idempotence, partitioner) cannot be overridden here.
    pub options: BTreeMap<String, String>,
    /// A prefix for every topic, consumer group and transactional id of this installation
    /// (`<namespace>.woo.orders`), so that two installations (staging and production) share
    /// one Kafka without seeing anything of each other.
    pub namespace: Option<String>,
}

impl KafkaConfig {
    /// `name` in this installation's namespace: `<namespace>.<name>`, prefixed once.
    pub fn namespaced(&self, name: &str) -> String {
        match &self.namespace {
            Some(ns)
                if !name
                    .strip_prefix(ns.as_str())
                    .is_some_and(|rest| rest.starts_with('.')) =>
            {
                format!("{ns}.{name}")
            }
            _ => name.to_string(),
        }
    }
}

/// `[kafka.security]`: the credentials come from the file, the environment or a file of their
/// own like every other secret.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSecurity {
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. Absent: PLAINTEXT, or SASL_SSL when a
    /// username is set.
    pub protocol: Option<String>,
    /// PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI.
    pub mechanism: Option<String>,
    /// Inline, `{ env = "VAR" }` or `{ file = "/path" }`, like the password.
    pub username: Option<Secret>,
    /// The SASL password.
    pub password: Option<Secret>,
    /// PEM file of the certificate authorities that signed the brokers' certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that authenticate clients by certificate.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM), for mutual TLS.
    pub key_file: Option<PathBuf>,
    /// The private key's password, when it is encrypted.
    pub key_password: Option<Secret>,
    /// Check that the broker's certificate names the host connected to (default true).
    pub verify_hostname: Option<bool>,
}

impl KafkaSecurity {
    const PROTOCOLS: &'static [&'static str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
    const MECHANISMS: &'static [&'static str] = &[
        "PLAIN",
        "SCRAM-SHA-256",
        "SCRAM-SHA-512",
        "OAUTHBEARER",
        "GSSAPI",
    ];

    fn protocol(&self) -> String {
        match &self.protocol {
            Some(p) => p.to_ascii_uppercase(),
            None if self.username.is_some() => "SASL_SSL".into(),
            None => "PLAINTEXT".into(),
        }
    }

    /// What types alone cannot check; the offending key and what was expected.
    pub fn check(&self) -> Result<(), (String, String)> {
        let at = |k: &str| format!("kafka.security.{k}");
        let protocol = self.protocol();
        if !Self::PROTOCOLS.contains(&protocol.as_str()) {
            return Err((
                at("protocol"),
                format!("expected one of {}", Self::PROTOCOLS.join(", ")),
            ));
        }
        if let Some(m) = &self.mechanism {
            if !Self::MECHANISMS.contains(&m.to_ascii_uppercase().as_str()) {
                return Err((
                    at("mechanism"),
                    format!("expected one of {}", Self::MECHANISMS.join(", ")),
                ));
            }
        }
        crate::secret::check_written(&self.username, &None).map_err(|e| (at("username"), e))?;
        crate::secret::check_written(&self.password, &None).map_err(|e| (at("password"), e))?;
        crate::secret::check_written(&self.key_password, &None)
            .map_err(|e| (at("key_password"), e))?;
        if protocol.starts_with("SASL") && self.username.is_some() != self.password.is_some() {
            return Err((
                at("password"),
                "expected both a username and a password for SASL".into(),
            ));
        }
        for (key, file) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(path) = file {
                std::fs::metadata(path)
                    .map_err(|e| (at(key), format!("cannot read {}: {e}", path.display())))?;
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err((
                at("key_file"),
                "expected both cert_file and key_file for a client certificate".into(),
            ));
        }
        Ok(())
    }

    /// The librdkafka settings this section stands for.
    pub fn client_settings(&self) -> Vec<(&'static str, String)> {
        let mut s = vec![("security.protocol", self.protocol().to_ascii_lowercase())];
        let resolve = |v: &Option<Secret>| v.as_ref().and_then(|s| s.resolve().ok());
        if let Some(m) = &self.mechanism {
            s.push(("sasl.mechanism", m.to_ascii_uppercase()));
        } else if self.username.is_some() {
            s.push(("sasl.mechanism", "PLAIN".into()));
        }
        if let Some(u) = resolve(&self.username) {
            s.push(("sasl.username", u));
        }
        if let Some(p) = resolve(&self.password) {
            s.push(("sasl.password", p));
        }
        for (key, file) in [
            ("ssl.ca.location", &self.ca_file),
            ("ssl.certificate.location", &self.cert_file),
            ("ssl.key.location", &self.key_file),
        ] {
            if let Some(path) = file {
                s.push((key, path.display().to_string()));
            }
        }
        if let Some(p) = resolve(&self.key_password) {
            s.push(("ssl.key.password", p));
        }
        if self.verify_hostname == Some(false) {
            s.push(("ssl.endpoint.identification.algorithm", "none".into()));
        }
        s
    }
}

/// librdkafka settings whose value is a credential: `check-config` hides them.
pub fn is_secret_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with(".pem")
        || k == "ssl.key.pem"
        || k.contains("sasl.oauthbearer.config")
        || k.contains("token")
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: None,
            client_id: "woostream".into(),
            delivery_timeout_ms: 10_000,
            linger_ms: 5,
            statistics_interval_ms: 15_000,
            compression: "lz4".into(),
            max_message_bytes: 5 * 1024 * 1024,
            security: KafkaSecurity::default(),
            options: BTreeMap::new(),
            namespace: None,
        }
    }
}

/// One topic woostream writes: its name and how it is created when missing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// The topic's name (with `kafka.namespace`, prefixed by it).
    pub name: String,
    /// Partitions when created; default: `topics.partitions`.
    #[serde(default)]
    pub partitions: Option<i32>,
    /// Replicas when created; default: `topics.replication_factor`.
    #[serde(default)]
    pub replication_factor: Option<i32>,
    /// delete or compact (or "compact,delete").
    #[serde(default = "default_cleanup_policy")]
    pub cleanup_policy: String,
    /// `retention.ms` when created; default: from `[retention]` by the topic's kind.
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

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Create missing topics at start-up through the admin API.
    pub create: bool,
    /// Warn at start-up about a topic with one replica or `min.insync.replicas` 1 (off for a
    /// development broker, and for the embedded one of `woostream run`).
    pub warn_single_replica: bool,
    /// Partitions of every topic woostream creates, unless the topic says otherwise.
    pub partitions: i32,
    /// Replicas of every topic woostream creates, unless the topic says otherwise.
    pub replication_factor: i32,
    /// Orders, keyed by customer (one customer's history in one partition).
    pub orders: TopicConfig,
    /// Products, compacted.
    pub products: TopicConfig,
    /// Customer accounts, compacted.
    pub customers: TopicConfig,
    /// Coupons, compacted.
    pub coupons: TopicConfig,
    /// Product reviews, keyed by product.
    pub reviews: TopicConfig,
    /// WooCommerce `action.*` webhooks (e.g. a product restocked).
    pub actions: TopicConfig,
    /// Webhook deliveries that could not be read, kept with the reason.
    pub ingest_dead_letter: TopicConfig,
    /// Customer profiles; also the enricher's changelog, so compacted and partitioned like orders.
    pub profiles: TopicConfig,
    /// The enricher's alerts, which the Slack sink routes.
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
    /// Where the REST side keeps its place: a backfill's last finished page per (shop,
    /// resource), reconciliation's watermarks. Compacted: the latest per key is what counts.
    pub checkpoints: TopicConfig,
    /// Per-person keys personal fields are sealed with; an erasure deletes a person's keys.
    /// Compacted, and compacted soon after a tombstone (see [`RetentionConfig`]).
    pub subject_keys: TopicConfig,
    /// Contact property changes made in the CRM, on their way to the shop (values sealed).
    pub crm_changes: TopicConfig,
    /// CRM changes the shop refused for good.
    pub shop_dead_letter: TopicConfig,
    /// The latest backtest of every shop (`woostream backtest`): what the insight page shows.
    pub backtests: TopicConfig,
    /// Who was erased and when, by pseudonymous subject reference: no new key and no new CRM
    /// contact for an erased person's past. Compacted; kept for good.
    pub erased_subjects: TopicConfig,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            create: true,
            warn_single_replica: true,
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
            checkpoints: TopicConfig {
                partitions: Some(1),
                ..topic("woostream.checkpoints", "compact")
            },
            subject_keys: TopicConfig {
                partitions: Some(1),
                ..topic("woostream.subject-keys", "compact")
            },
            crm_changes: topic("crm.changes", "delete"),
            shop_dead_letter: topic("woostream.dlq.shop", "delete"),
            backtests: TopicConfig {
                partitions: Some(1),
                ..topic("woostream.backtests", "compact")
            },
            erased_subjects: TopicConfig {
                partitions: Some(1),
                ..topic("woostream.erased-subjects", "compact")
            },
        }
    }
}

impl TopicsConfig {
    /// Every topic's name, to change them all (the namespace).
    pub fn names_mut(&mut self) -> [&mut String; 20] {
        [
            &mut self.orders.name,
            &mut self.products.name,
            &mut self.customers.name,
            &mut self.coupons.name,
            &mut self.reviews.name,
            &mut self.actions.name,
            &mut self.ingest_dead_letter.name,
            &mut self.profiles.name,
            &mut self.alerts.name,
            &mut self.models.name,
            &mut self.deliveries.name,
            &mut self.slack_dead_letter.name,
            &mut self.crm_dead_letter.name,
            &mut self.transactions_probe.name,
            &mut self.checkpoints.name,
            &mut self.subject_keys.name,
            &mut self.crm_changes.name,
            &mut self.shop_dead_letter.name,
            &mut self.backtests.name,
            &mut self.erased_subjects.name,
        ]
    }

    /// Every topic with the configuration key it came from.
    pub fn all(&self) -> [(&'static str, &TopicConfig); 20] {
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
            ("checkpoints", &self.checkpoints),
            ("subject_keys", &self.subject_keys),
            ("crm_changes", &self.crm_changes),
            ("shop_dead_letter", &self.shop_dead_letter),
            ("backtests", &self.backtests),
            ("erased_subjects", &self.erased_subjects),
        ]
    }

    /// What kind of data a topic holds, for its retention.
    pub fn kind_of(&self, key: &str) -> DataKind {
        match key {
            "orders" | "reviews" | "actions" | "crm_changes" => DataKind::Events,
            "customers" | "profiles" | "subject_keys" => DataKind::Person,
            "alerts" => DataKind::Alerts,
            "deliveries" => DataKind::Audit,
            "ingest_dead_letter" | "slack_dead_letter" | "crm_dead_letter" => DataKind::DeadLetters,
            _ => DataKind::State,
        }
    }

    pub fn partitions_of(&self, t: &TopicConfig) -> i32 {
        t.partitions.unwrap_or(self.partitions)
    }

    pub fn replication_of(&self, t: &TopicConfig) -> i32 {
        t.replication_factor.unwrap_or(self.replication_factor)
    }
}

/// The kinds of data woostream keeps, each with its own retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// The shop's events (orders, reviews, actions): what profiles are rebuilt and models
    /// fitted from.
    Events,
    /// Compacted topics keyed by the person (accounts, profiles, subject keys): kept until
    /// erased, and an erasure's tombstones compacted away soon after.
    Person,
    Alerts,
    /// Delivery and erasure receipts.
    Audit,
    DeadLetters,
    /// Products, coupons, models, checkpoints: nothing personal.
    State,
}

/// `[retention]`: how long each kind of data is kept in the topics woostream creates (a
/// topic's own `retention_ms` wins). Days are UTC days of 24 hours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Orders, reviews, actions and CRM changes (compacted topics keep their latest values).
    pub events_days: u32,
    /// Alerts topic.
    pub alerts_days: u32,
    /// Deliveries (the audit of every sink outcome) and erasure receipts.
    pub audit_days: u32,
    /// Every dead-letter topic.
    pub dead_letters_days: u32,
    /// How soon after an erasure its tombstones may be compacted away, and the segment age at
    /// which compaction can reach what they erase, on topics keyed by the person.
    pub erased_hours: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            events_days: 400,
            alerts_days: 30,
            audit_days: 400,
            dead_letters_days: 14,
            erased_hours: 24,
        }
    }
}

const DAY_MS: i64 = 24 * 3_600_000;

impl RetentionConfig {
    /// The topic settings for a topic of `kind` (a configured `retention_ms` first).
    pub fn topic_settings(&self, kind: DataKind, t: &TopicConfig) -> Vec<(&'static str, String)> {
        let days = |d: u32| (i64::from(d) * DAY_MS).to_string();
        let mut out = Vec::new();
        let retention = t.retention_ms.map(|r| r.to_string()).or(match kind {
            DataKind::Events => Some(days(self.events_days)),
            DataKind::Alerts => Some(days(self.alerts_days)),
            DataKind::Audit => Some(days(self.audit_days)),
            DataKind::DeadLetters => Some(days(self.dead_letters_days)),
            DataKind::Person | DataKind::State => None,
        });
        if let Some(r) = retention {
            out.push(("retention.ms", r));
        }
        if kind == DataKind::Person {
            let ms = (i64::from(self.erased_hours) * 3_600_000).to_string();
            out.push(("delete.retention.ms", ms.clone()));
            out.push(("segment.ms", ms));
            out.push(("min.cleanable.dirty.ratio", "0.1".into()));
        }
        out
    }
}
