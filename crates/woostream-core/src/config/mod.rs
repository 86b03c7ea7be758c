//! Configuration: one TOML or YAML file plus `WOOSTREAM__…` environment overrides.
//!
//! Every mistake is reported at start-up with the file, the line and what was expected; a value
//! set through the environment is reported with the variable's name instead.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

pub mod crm;
mod enricher;
mod env;
mod kafka;
mod locate;
mod ops;
mod producer;
pub mod slack;

pub use enricher::{Clock, EnricherConfig, HighValueOrder, Transactions};
pub use kafka::{DataKind, KafkaConfig, KafkaSecurity, RetentionConfig, TopicConfig, TopicsConfig};
pub use ops::{InsightConfig, LogConfig, OpsConfig, TracesConfig};
pub use producer::{
    is_https_or_loopback, resolve_secret, ProducerConfig, RestAuth, ShopConfig, ShopRest,
};

use env::apply_env_overrides;
use locate::{line_col, locate_key};

/// Prefix of environment overrides: `WOOSTREAM__KAFKA__BOOTSTRAP_SERVERS=broker:9092`,
/// `WOOSTREAM__SHOPS__0__SECRET=…` (list entries by index).
pub const ENV_PREFIX: &str = "WOOSTREAM__";

#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The Kafka cluster every role talks to; without `bootstrap_servers`, `woostream run`
    /// starts an embedded one.
    pub kafka: KafkaConfig,
    /// The name of every topic woostream reads or writes, and how each is created.
    pub topics: TopicsConfig,
    /// A Confluent-compatible schema registry; absent: Avro single-object encoding.
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// The webhook receiver (`woostream producer`).
    pub producer: ProducerConfig,
    /// The WooCommerce shops allowed to post webhooks, one table each.
    pub shops: Vec<ShopConfig>,
    /// Customer state, CLV, segments and alerts (`woostream enricher`).
    pub enricher: EnricherConfig,
    /// The Slack sink: channels, rules and templates (`woostream slack run`).
    pub slack: crate::config::slack::SlackConfig,
    /// The CRM sink, HubSpot (`woostream crm run`).
    pub crm: crate::config::crm::CrmConfig,
    /// The operations port every role serves: metrics, health, readiness.
    pub ops: OpsConfig,
    /// The insight page (`woostream insight`).
    pub insight: InsightConfig,
    /// How each role logs.
    pub log: LogConfig,
    /// OpenTelemetry traces of each event's hops; off without an endpoint.
    pub traces: TracesConfig,
    /// Personal data: hashing, sealing and erasure.
    pub privacy: PrivacyConfig,
    /// Retention of the topics woostream creates.
    pub retention: RetentionConfig,
    /// What the outbound HTTPS clients trust.
    pub http: HttpConfig,
}

/// `[http]`: what every outbound HTTPS client (the shop's REST API, schema registry, Slack,
/// CRM) trusts besides the built-in roots and the platform's trust store.
#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A PEM file of CA certificates to trust as well (a private CA, a self-signed shop).
    pub ca_file: Option<std::path::PathBuf>,
}

/// `[privacy]`: how personal data is made pseudonymous, sealed and erased.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The installation's key for customer hashes (an HMAC of the normalised email): without
    /// it, a list of emails would reverse them. Absent: a key derived from each shop's webhook
    /// secret.
    pub customer_hash_key: Option<crate::secret::Secret>,
    /// Seal personal fields per person before they reach Kafka, so that erasing a person
    /// (deleting their keys) makes what the topics keep about them unreadable.
    pub seal_personal_data: bool,
    /// 32 bytes of base64 that the per-person keys are sealed under in their topic: a reader
    /// of the topics without it cannot open personal fields. Absent: the keys are stored as
    /// they are, and erasure works the same.
    pub key_wrapping_key: Option<crate::secret::Secret>,
    /// WooCommerce's `customer.deleted` erases the person in woostream too.
    pub erase_on_customer_deleted: bool,
    /// Bind each sealed value to its key id and field, and each wrapped key to its id and
    /// person, with 128-bit key ids for new people. Values and keys written so are read only by
    /// this release and later: during a rolling upgrade from an earlier one, set false until
    /// every role runs this release (or roll the readers first). Both kinds are always read.
    pub bind_sealed_values: bool,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            customer_hash_key: None,
            seal_personal_data: true,
            key_wrapping_key: None,
            erase_on_customer_deleted: true,
            bind_sealed_values: true,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// The registry's base URL; subjects are `{topic}-key` and `{topic}-value`.
    pub url: String,
    /// Basic-auth user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Option<crate::secret::Secret>,
    /// Register the schemas a role writes at start-up (true), or only look them up and refuse
    /// to start when one is missing (false: where schemas are registered by a pipeline and
    /// writers have no right to).
    #[serde(default = "yes")]
    pub auto_register: bool,
}

fn yes() -> bool {
    true
}

impl SchemaRegistryConfig {
    pub fn resolved_password(&self) -> Option<String> {
        crate::secret::resolve_secret(&self.password, &None)
    }
}

/// A configuration mistake, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `environment` for overrides.
    pub origin: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The key, e.g. `shops[0].secret`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Toml,
    Yaml,
}

impl Format {
    fn of(origin: &str) -> Format {
        if origin.ends_with(".yaml") || origin.ends_with(".yml") {
            Format::Yaml
        } else {
            Format::Toml
        }
    }
}

impl Config {
    /// Reads a file (`.toml`, `.yaml` or `.yml`), applies `WOOSTREAM__…` overrides from the
    /// process environment and validates the result.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: path.display().to_string(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Config::from_text(&path.display().to_string(), &text, std::env::vars())
    }

    /// [`Config::load`] plus a role's own checks (`check` returns the offending key and what
    /// was expected), reported with the file and line like every other mistake.
    pub fn load_checked(
        path: Option<&Path>,
        check: impl Fn(&Config) -> Result<(), (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (origin, text) = match path {
            Some(path) => (
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|e| ConfigError {
                    origin: path.display().to_string(),
                    line: None,
                    column: None,
                    key: None,
                    message: format!("cannot read the file: {e}"),
                })?,
            ),
            None => ("<defaults>.toml".to_string(), String::new()),
        };
        let config = Config::from_text(&origin, &text, std::env::vars())?;
        check(&config).map_err(|(key, message)| ConfigError {
            line: locate_key(Format::of(&origin), &text, &key),
            origin,
            column: None,
            key: Some(key),
            message,
        })?;
        Ok(config)
    }

    /// Defaults plus environment overrides, for deployments configured by environment alone.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_text("<defaults>.toml", "", std::env::vars())
    }

    pub fn from_text(
        origin: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let format = Format::of(origin);
        let parsed: Config = match format {
            Format::Toml => toml::from_str(text).map_err(|e| {
                let (line, column) = e
                    .span()
                    .map(|s| line_col(text, s.start))
                    .map_or((None, None), |(l, c)| (Some(l), Some(c)));
                ConfigError {
                    origin: origin.into(),
                    line,
                    column,
                    key: None,
                    message: e.message().trim().to_string(),
                }
            })?,
            Format::Yaml if text.trim().is_empty() => Config::default(),
            Format::Yaml => serde_norway::from_str(text).map_err(|e| {
                let loc = e.location();
                let message = e.to_string();
                // serde_norway appends " at line N column M"; we print the location ourselves.
                let message = match message.find(" at line ") {
                    Some(i) => message[..i].to_string(),
                    None => message,
                };
                ConfigError {
                    origin: origin.into(),
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                    key: None,
                    message,
                }
            })?,
        };
        let mut config = apply_env_overrides(parsed, env)?;
        config.validate().map_err(|(key, message)| ConfigError {
            origin: origin.into(),
            line: locate_key(format, text, &key),
            column: None,
            key: Some(key),
            message,
        })?;
        config.apply_namespace();
        Ok(config)
    }

    /// Puts every topic and consumer group into `kafka.namespace` (once: a configuration
    /// printed by `check-config` reads back the same).
    pub fn apply_namespace(&mut self) {
        if self.kafka.namespace.is_none() {
            return;
        }
        let kafka = self.kafka.clone();
        for name in self.topics.names_mut() {
            *name = kafka.namespaced(name);
        }
        self.enricher.group_id = kafka.namespaced(&self.enricher.group_id);
        self.slack.group_id = kafka.namespaced(&self.slack.consumer_group());
        self.crm.group_id = kafka.namespaced(&self.crm.consumer_group());
        self.crm.inbound.group_id = kafka.namespaced(&self.crm.inbound.group_id);
    }

    /// The configuration as `check-config` prints it: every credential hidden (values written
    /// in the file; where a secret is read from stays), passwords in URLs too.
    pub fn redacted(&self) -> Config {
        use crate::secret::Secret;
        fn hide(s: &mut Option<Secret>) {
            if let Some(v) = s {
                *v = v.redacted();
            }
        }
        let mut c = self.clone();
        for (_, secret, _) in c.secrets_mut() {
            hide(secret);
        }
        if let Some(r) = &mut c.schema_registry {
            r.url = hide_url_password(&r.url);
        }
        c.slack.api_url = hide_url_password(&c.slack.api_url);
        c.crm.api_url = hide_url_password(&c.crm.api_url);
        for (key, value) in c.kafka.options.iter_mut() {
            if kafka::is_secret_option(key) {
                *value = crate::secret::REDACTED.into();
            }
        }
        c
    }

    /// Every secret in the configuration, by key, with its older `*_env` form where it has one.
    pub fn secrets(&self) -> Vec<(String, Option<Secret>, Option<String>)> {
        let mut c = self.clone();
        c.secrets_mut()
            .into_iter()
            .map(|(key, secret, env)| (key, secret.clone(), env))
            .collect()
    }

    /// The one list of secrets (`secrets` reads it, `redacted` changes it).
    fn secrets_mut(&mut self) -> Vec<(String, &mut Option<Secret>, Option<String>)> {
        let mut all: Vec<(String, &mut Option<Secret>, Option<String>)> = Vec::new();
        for (i, shop) in self.shops.iter_mut().enumerate() {
            let env = shop.secret_env.clone();
            all.push((format!("shops[{i}].secret"), &mut shop.secret, env));
            all.push((
                format!("shops[{i}].previous_secret"),
                &mut shop.previous_secret,
                None,
            ));
            if let Some(rest) = &mut shop.rest {
                all.push((
                    format!("shops[{i}].rest.consumer_key"),
                    &mut rest.consumer_key,
                    None,
                ));
                all.push((
                    format!("shops[{i}].rest.consumer_secret"),
                    &mut rest.consumer_secret,
                    None,
                ));
            }
        }
        let p = &mut self.producer;
        all.push((
            "producer.dead_letter_key".into(),
            &mut p.dead_letter_key,
            None,
        ));
        if let Some(r) = &mut self.schema_registry {
            all.push(("schema_registry.password".into(), &mut r.password, None));
        }
        let slack = &mut self.slack;
        all.push((
            "slack.token".into(),
            &mut slack.token,
            slack.token_env.clone(),
        ));
        for (i, c) in slack.channels.iter_mut().enumerate() {
            let env = c.webhook_url_env.clone();
            all.push((
                format!("slack.channels[{i}].webhook_url"),
                &mut c.webhook_url,
                env,
            ));
        }
        let crm = &mut self.crm;
        all.push(("crm.token".into(), &mut crm.token, crm.token_env.clone()));
        all.push(("crm.dead_letter_key".into(), &mut crm.dead_letter_key, None));
        all.push((
            "crm.inbound.client_secret".into(),
            &mut crm.inbound.client_secret,
            None,
        ));
        all.push(("ops.token".into(), &mut self.ops.token, None));
        all.push(("insight.token".into(), &mut self.insight.token, None));
        let k = &mut self.kafka.security;
        // A managed Kafka's "username" is often a key (Confluent Cloud's API key, Event Hubs'
        // `$ConnectionString`), so it is read and hidden like a secret.
        all.push(("kafka.security.username".into(), &mut k.username, None));
        all.push(("kafka.security.password".into(), &mut k.password, None));
        all.push((
            "kafka.security.key_password".into(),
            &mut k.key_password,
            None,
        ));
        let privacy = &mut self.privacy;
        all.push((
            "privacy.customer_hash_key".into(),
            &mut privacy.customer_hash_key,
            None,
        ));
        all.push((
            "privacy.key_wrapping_key".into(),
            &mut privacy.key_wrapping_key,
            None,
        ));
        all
    }

    /// Fails unless every secret under one of `prefixes` that is configured can be read, is not
    /// empty and is not a placeholder: what a role checks at start for the secrets it uses.
    pub fn check_secrets(&self, prefixes: &[&str]) -> anyhow::Result<()> {
        for (key, value, env) in self.secrets() {
            // Every role talks to Kafka, so the Kafka credentials are always checked.
            if key.starts_with("kafka.") || prefixes.iter().any(|p| key.starts_with(p)) {
                crate::secret::check_secret(&value, &env)
                    .map_err(|e| anyhow::anyhow!("configuration error: {key}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The configuration in the format of `origin` (TOML, or YAML for `.yaml`/`.yml`).
    pub fn to_text(&self, origin: &str) -> anyhow::Result<String> {
        Ok(match Format::of(origin) {
            Format::Toml => toml::to_string(self)?,
            Format::Yaml => serde_norway::to_string(self)?,
        })
    }

    /// Checks what types alone cannot; returns the offending key and what was expected.
    fn validate(&self) -> Result<(), (String, String)> {
        if !(0.0..=1.0).contains(&self.traces.sample_ratio) {
            return Err((
                "traces.sample_ratio".into(),
                "expected a share from 0 to 1, e.g. 0.1 for one event in ten".into(),
            ));
        }
        if let Some(endpoint) = &self.traces.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err((
                    "traces.endpoint".into(),
                    "expected the collector's OTLP/HTTP URL, e.g. \"http://otel-collector:4318\""
                        .into(),
                ));
            }
        }
        if let Some(ns) = &self.kafka.namespace {
            if ns.is_empty()
                || ns.len() > 100
                || !ns
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            {
                return Err((
                    "kafka.namespace".into(),
                    "expected a name of letters, digits, '-' or '_' (at most 100), e.g. \"staging\": it prefixes every topic and group".into(),
                ));
            }
        }
        for (key, name) in [
            ("slack.workspace", &self.slack.workspace),
            ("crm.account", &self.crm.account),
        ] {
            if !crate::contract::sink_records::is_identity(name) {
                return Err((
                    key.into(),
                    "expected a name of lowercase letters, digits and '-' (at most 40): it goes into consumer groups and audit records".into(),
                ));
            }
        }
        let mut ids = std::collections::HashSet::new();
        let mut sources = std::collections::HashSet::new();
        let mut secrets = std::collections::HashSet::new();
        for (i, shop) in self.shops.iter().enumerate() {
            let at = |f: &str| format!("shops[{i}].{f}");
            if shop.id.is_empty()
                || !shop
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err((
                    at("id"),
                    "expected a non-empty name of letters, digits, '-' or '_'".into(),
                ));
            }
            if !ids.insert(shop.id.clone()) {
                return Err((at("id"), format!("shop id {:?} is used twice", shop.id)));
            }
            if !(shop.source.starts_with("http://") || shop.source.starts_with("https://")) {
                return Err((
                    at("source"),
                    "expected the shop's home URL as WooCommerce sends it in X-WC-Webhook-Source, e.g. \"https://shop.example.com/\"".into(),
                ));
            }
            if !sources.insert(normalise_source(&shop.source)) {
                return Err((at("source"), "two shops have the same source URL".into()));
            }
            for (j, alias) in shop.source_aliases.iter().enumerate() {
                let key = at(&format!("source_aliases[{j}]"));
                if !(alias.starts_with("http://") || alias.starts_with("https://")) {
                    return Err((key, "expected another home URL of the shop, e.g. \"https://www.shop.example.com/\"".into()));
                }
                if !sources.insert(normalise_source(alias)) {
                    return Err((
                        key,
                        "this URL is already another shop's source or alias".into(),
                    ));
                }
            }
            if shop.secret.is_none() && shop.secret_env.is_none() {
                return Err((
                    at("secret"),
                    "expected the webhook secret: secret = \"…\", { env = \"VARIABLE\" } or { file = \"/path\" }".into(),
                ));
            }
            // A placeholder copied from an example would sign nothing: every forged delivery
            // with it would pass.
            crate::secret::check_secret(&shop.secret, &shop.secret_env).map_err(|e| {
                let key = if shop.secret.is_some() {
                    "secret"
                } else {
                    "secret_env"
                };
                (at(key), e)
            })?;
            // A delivery whose source names no shop is the shop's whose secret verifies it:
            // two shops with one secret could not be told apart (nor could either be trusted
            // with the other's deliveries).
            if let Some(secret) = shop.resolved_secret() {
                if !secrets.insert(secret) {
                    return Err((
                        at("secret"),
                        "two shops have the same webhook secret: give each shop its own".into(),
                    ));
                }
            }
            if let Some(rest) = &shop.rest {
                rest.check(&shop.source)
                    .map_err(|(k, e)| (at(&format!("rest.{k}")), e))?;
                for (k, v) in [
                    ("consumer_key", &rest.consumer_key),
                    ("consumer_secret", &rest.consumer_secret),
                ] {
                    crate::secret::check_written(v, &None)
                        .map_err(|e| (at(&format!("rest.{k}")), e))?;
                }
            }
        }
        let p = &self.producer;
        if !p.webhook_path.starts_with('/') {
            return Err((
                "producer.webhook_path".into(),
                "expected a path starting with '/'".into(),
            ));
        }
        if p.max_body_bytes < 1024 {
            return Err((
                "producer.max_body_bytes".into(),
                "expected at least 1024 bytes".into(),
            ));
        }
        for (key, value, least, what) in [
            (
                "header_timeout_ms",
                p.header_timeout_ms,
                100,
                "milliseconds",
            ),
            ("body_timeout_ms", p.body_timeout_ms, 100, "milliseconds"),
            (
                "max_connections",
                p.max_connections as u64,
                1,
                "connections",
            ),
            (
                "max_connections_per_address",
                p.max_connections_per_address as u64,
                1,
                "connections",
            ),
            ("max_in_flight", p.max_in_flight as u64, 1, "requests"),
        ] {
            if value < least {
                return Err((
                    format!("producer.{key}"),
                    format!("expected at least {least} {what}"),
                ));
            }
        }
        crate::privacy::cipher::check_key(&p.dead_letter_key)
            .map_err(|e| ("producer.dead_letter_key".to_string(), e))?;
        for (key, value, env) in self.secrets() {
            if !key.starts_with("shops[") {
                crate::secret::check_written(&value, &env).map_err(|e| (key, e))?;
            }
        }
        self.kafka.security.check()?;
        // Room for a dead letter's headers and fields around the largest body.
        if self.kafka.max_message_bytes < p.max_body_bytes + 64 * 1024 {
            return Err((
                "kafka.max_message_bytes".into(),
                format!(
                    "expected at least producer.max_body_bytes + 65536 = {} (the dead letter of the largest accepted body must fit in one record)",
                    p.max_body_bytes + 64 * 1024
                ),
            ));
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.kafka.compression.as_str()) {
            return Err((
                "kafka.compression".into(),
                "expected one of none, gzip, snappy, lz4, zstd".into(),
            ));
        }
        for reserved in crate::kafka::RESERVED_PRODUCER_OPTIONS {
            if self.kafka.options.contains_key(*reserved) {
                return Err((
                    format!("kafka.options.{reserved}"),
                    "woostream relies on this setting and does not let it be changed".into(),
                ));
            }
        }
        if !["json", "pretty"].contains(&self.log.format.as_str()) {
            return Err(("log.format".into(), "expected json or pretty".into()));
        }
        let t = &self.topics;
        if t.partitions < 1 || t.replication_factor < 1 {
            return Err((
                "topics.partitions".into(),
                "expected partitions and replication_factor of at least 1".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (key, topic) in t.all() {
            if topic.name.is_empty()
                || topic.name.len() > 249
                || !topic
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
            {
                return Err((
                    format!("topics.{key}.name"),
                    "expected a Kafka topic name: 1–249 of letters, digits, '.', '-', '_'".into(),
                ));
            }
            if !names.insert(topic.name.as_str()) {
                return Err((
                    format!("topics.{key}.name"),
                    format!("topic {} is used for two purposes", topic.name),
                ));
            }
            if topic.partitions.is_some_and(|p| p < 1) {
                return Err((
                    format!("topics.{key}.partitions"),
                    "expected at least 1".into(),
                ));
            }
            let policies: Vec<&str> = topic.cleanup_policy.split(',').map(str::trim).collect();
            if policies.is_empty() || !policies.iter().all(|p| *p == "delete" || *p == "compact") {
                return Err((
                    format!("topics.{key}.cleanup_policy"),
                    "expected delete, compact or \"compact,delete\"".into(),
                ));
            }
        }
        // One customer's events must land in the same partition number on every topic keyed
        // by customer, so the enricher's state stays local.
        for (key, topic) in [("customers", &t.customers), ("profiles", &t.profiles)] {
            if t.partitions_of(&t.orders) != t.partitions_of(topic) {
                return Err((
                    format!("topics.{key}.partitions"),
                    format!(
                        "expected the same partition count as topics.orders ({}): both are keyed by customer",
                        t.partitions_of(&t.orders)
                    ),
                ));
            }
        }
        // A token goes with these in its own setting; credentials in the URL would reach logs.
        // (A schema registry's are taken out of its URL by the client instead.)
        for (key, url) in [
            ("slack.api_url", &self.slack.api_url),
            ("crm.api_url", &self.crm.api_url),
        ] {
            if producer::has_credentials(url) {
                return Err((key.into(), producer::NO_CREDENTIALS_IN_URLS.into()));
            }
        }
        if !is_https_or_loopback(&self.slack.api_url) {
            return Err((
                "slack.api_url".into(),
                "expected an https:// URL (plain http:// only to 127.0.0.1, ::1 or localhost)"
                    .into(),
            ));
        }
        if let Some(path) = &self.http.ca_file {
            crate::http::read_ca_file(path)
                .map_err(|e| ("http.ca_file".to_string(), format!("{e:#}")))?;
        }
        self.enricher.validate()?;
        self.crm.validate()?;
        Ok(())
    }

    pub fn shop_by_source(&self, source: &str) -> Option<&ShopConfig> {
        let wanted = normalise_source(source);
        self.shops.iter().find(|s| {
            std::iter::once(&s.source)
                .chain(&s.source_aliases)
                .any(|u| normalise_source(u) == wanted)
        })
    }
}

/// `https://user:password@host/` → `https://user:<redacted>@host/`.
fn hide_url_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some(crate::secret::REDACTED));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `https://Shop.example.com` and `https://shop.example.com/` are the same shop.
pub fn normalise_source(source: &str) -> String {
    source.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_prefixes_every_topic_and_group_once_and_reads_back_the_same() {
        let text = "[kafka]\nnamespace = \"staging\"\n[topics.orders]\nname = \"shop.orders\"\n[slack]\nworkspace = \"sales\"\n";
        let c = Config::from_text("w.toml", text, Vec::<(String, String)>::new()).unwrap();
        assert!(c
            .topics
            .all()
            .iter()
            .all(|(_, t)| t.name.starts_with("staging.")));
        assert_eq!(c.topics.orders.name, "staging.shop.orders");
        assert_eq!(c.enricher.group_id, "staging.woostream-enricher");
        assert_eq!(c.slack.consumer_group(), "staging.woostream-slack-sales");
        assert_eq!(c.crm.consumer_group(), "staging.woostream-crm");
        assert_eq!(c.crm.inbound.group_id, "staging.woostream-shop-writer");
        assert_eq!(c.slack.earlier_group(), None);
        // Printed by check-config and read again: nothing is prefixed twice.
        let again = Config::from_text(
            "w.toml",
            &c.to_text("w.toml").unwrap(),
            Vec::<(String, String)>::new(),
        )
        .unwrap();
        let names = |c: &Config| c.topics.all().map(|(_, t)| t.name.clone());
        assert_eq!(names(&again), names(&c));
        assert_eq!(again.slack.consumer_group(), c.slack.consumer_group());
        // Not a name a topic can start with.
        let e = Config::from_text(
            "w.toml",
            "[kafka]\nnamespace = \"a b\"\n",
            Vec::<(String, String)>::new(),
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("kafka.namespace"));
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn two_shops_may_not_share_a_webhook_secret() {
        let text = "[[shops]]\nid = \"a\"\nsource = \"https://a.example/\"\nsecret = \"one secret\"\n\n[[shops]]\nid = \"b\"\nsource = \"https://b.example/\"\nsecret = \"one secret\"\n";
        let e = Config::from_text("w.toml", text, Vec::<(String, String)>::new()).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("shops[1].secret"), "{e}");
        assert_eq!(e.line, Some(9), "{e}");
    }

    /// Every field typed `Secret` in the configuration's source is in the one list that
    /// `check-config` hides and roles check: a secret added without it would print in clear.
    #[test]
    fn every_secret_typed_field_is_in_the_list_of_secrets() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("producer.rs"),
            include_str!("kafka.rs"),
            include_str!("enricher.rs"),
            include_str!("ops.rs"),
            include_str!("slack.rs"),
            include_str!("crm.rs"),
        ];
        let declared: std::collections::BTreeSet<String> = sources
            .iter()
            .flat_map(|s| s.lines())
            .filter_map(|l| {
                let (name, ty) = l.trim().strip_prefix("pub ")?.split_once(':')?;
                (ty.contains("Secret>") || ty.trim_end_matches(',').trim().ends_with("Secret"))
                    .then(|| name.trim().to_string())
            })
            .collect();
        assert!(declared.len() >= 12, "{declared:?}");
        let mut config = Config::default();
        config.shops.push(ShopConfig {
            id: "eu".into(),
            source: "https://shop.example/".into(),
            source_aliases: Vec::new(),
            secret: Some("a".into()),
            secret_env: None,
            rest: Some(ShopRest::default()),
            require_topic_secrets: false,
            previous_secret: None,
        });
        config.schema_registry = Some(SchemaRegistryConfig {
            url: "https://registry.example".into(),
            username: None,
            password: None,
            auto_register: true,
        });
        config
            .slack
            .channels
            .push(serde_json::from_value(serde_json::json!({"name": "#a", "id": "C1"})).unwrap());
        let keys: Vec<String> = config
            .secrets_mut()
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        for field in &declared {
            assert!(
                keys.iter().any(|k| k.ends_with(&format!(".{field}"))),
                "{field} is typed Secret but not in Config::secrets_mut: {keys:?}"
            );
        }
        // Debug shows none of them, whatever config type holds them.
        for (n, (_, secret, _)) in config.secrets_mut().into_iter().enumerate() {
            *secret = Some(format!("secret-value-{n}-x").into());
        }
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret-value-"), "{debug}");
        // And check-config hides them: the inbound client secret was printed in clear.
        config.crm.inbound.client_secret = Some("hubspot-app-client-secret".into());
        let printed = config.redacted().to_text("x.toml").unwrap();
        assert!(!printed.contains("hubspot-app-client-secret"), "{printed}");
    }

    const GOOD: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9092"

[[shops]]
id = "eu"
source = "https://shop.example.com/"
secret = "s3cr&t<>\"'"

[[shops]]
id = "us"
source = "https://us.example.com"
secret = "other"
"#;

    fn no_env() -> Vec<(String, String)> {
        vec![]
    }

    #[test]
    fn loads_toml_with_defaults() {
        let c = Config::from_text("w.toml", GOOD, no_env()).unwrap();
        assert_eq!(c.shops.len(), 2);
        assert_eq!(c.shops[0].resolved_secret().unwrap(), "s3cr&t<>\"'");
        assert_eq!(c.topics.orders.name, "woo.orders");
        assert_eq!(c.topics.products.cleanup_policy, "compact");
        assert_eq!(
            c.shop_by_source("https://US.example.com/").unwrap().id,
            "us"
        );
    }

    #[test]
    fn type_errors_name_file_line_and_expectation() {
        let text = "[producer]\nmax_body_bytes = \"big\"\n";
        let e = Config::from_text("conf/w.toml", text, no_env()).unwrap_err();
        assert_eq!(e.origin, "conf/w.toml");
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("invalid type"), "{e}");
        assert!(e.to_string().starts_with("conf/w.toml:2:"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let text = "[kafka]\nbootstrap_servers = \"x:1\"\nbootstrap_server = \"typo\"\n";
        let e = Config::from_text("w.toml", text, no_env()).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(
            e.message.contains("unknown field `bootstrap_server`"),
            "{e}"
        );
    }

    #[test]
    fn semantic_errors_point_at_the_key() {
        let text = "[[shops]]\nid = \"a\"\nsource = \"https://a.example/\"\nsecret = \"x\"\n\n[[shops]]\nid = \"b\"\nsource = \"shop.example\"\nsecret = \"y\"\n";
        let e = Config::from_text("w.toml", text, no_env()).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("shops[1].source"));
        assert_eq!(e.line, Some(8), "{e}");
        assert!(e.message.contains("home URL"), "{e}");

        let e = Config::from_text(
            "w.toml",
            "[topics.customers]\nname = \"c\"\npartitions = 3\n",
            no_env(),
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("topics.customers.partitions"));
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn credentials_in_urls_are_refused_or_kept_out_of_logs() {
        let shop = "[[shops]]\nid = \"eu\"\nsource = \"https://shop.example/\"\nsecret = \"s\"\n";
        for (section, key) in [
            (
                "[crm]\napi_url = \"https://me:hunter2@api.hubapi.example\"\n",
                "crm.api_url",
            ),
            (
                "[slack]\napi_url = \"https://token@slack.example/api\"\n",
                "slack.api_url",
            ),
        ] {
            let e = Config::from_text("w.toml", &format!("{section}{shop}"), no_env()).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert_eq!(e.line, Some(2), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let rest = format!("{shop}[shops.rest]\nurl = \"https://ck:cs@shop.example/\"\nconsumer_key = \"ck_1\"\nconsumer_secret = \"cs_1\"\n");
        let e = Config::from_text("w.toml", &rest, no_env()).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("shops[0].rest.url"), "{e}");
        // A registry's credentials may be in its URL: the client takes them out of it.
        for registry in [
            "[schema_registry]\nurl = \"http://registry.kafka.svc:8081\"\nusername = \"sr\"\npassword = \"hunter2\"\n",
            "[schema_registry]\nurl = \"http://sr:hunter%32@registry.kafka.svc:8081/\"\n",
        ] {
            let config = Config::from_text("w.toml", &format!("{registry}{shop}"), no_env()).unwrap();
            let client = crate::contract::registry::RegistryClient::from_config(
                config.schema_registry.as_ref().unwrap(),
            );
            let debug = format!("{client:?}");
            assert!(!debug.contains("hunter"), "{debug}");
            assert!(debug.contains("\"http://registry.kafka.svc:8081\""), "{debug}");
            assert!(debug.contains("Some(\"sr\")"), "{debug}");
        }
    }

    #[test]
    fn a_placeholder_webhook_secret_is_refused_at_start() {
        for placeholder in ["change-me", "CHANGEME", " your-secret "] {
            let text = format!(
                "[[shops]]\nid = \"eu\"\nsource = \"https://shop.example/\"\nsecret = \"{placeholder}\"\n"
            );
            let e = Config::from_text("w.toml", &text, no_env()).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("shops[0].secret"), "{e}");
            assert!(e.to_string().contains("placeholder"), "{e}");
        }
        let text =
            "[[shops]]\nid = \"eu\"\nsource = \"https://shop.example/\"\nsecret = \"a real one\"\n";
        assert!(Config::from_text("w.toml", text, no_env()).is_ok());
    }

    #[test]
    fn yaml_errors_are_located_too() {
        let text = "kafka:\n  bootstrap_servers: x:1\nshops:\n  - id: eu\n    source: https://shop.example.com/\n";
        let e = Config::from_text("w.yaml", text, no_env()).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("shops[0].secret"));
        assert_eq!(e.line, Some(4), "{e}");
        let e = Config::from_text("w.yml", "producer:\n  listen: [1]\n", no_env()).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn environment_overrides_file_and_reports_the_variable() {
        let env = vec![
            (
                "WOOSTREAM__KAFKA__BOOTSTRAP_SERVERS".to_string(),
                "b:9093".to_string(),
            ),
            ("WOOSTREAM__SHOPS__1__SECRET".into(), "from-env".into()),
            ("WOOSTREAM__TOPICS__PARTITIONS".into(), "12".into()),
            ("UNRELATED".into(), "x".into()),
        ];
        let c = Config::from_text("w.toml", GOOD, env).unwrap();
        assert_eq!(c.kafka.bootstrap_servers.as_deref(), Some("b:9093"));
        assert_eq!(c.shops[1].resolved_secret().unwrap(), "from-env");
        assert_eq!(c.topics.partitions, 12);

        let env = vec![("WOOSTREAM__TOPICS__PARTITIONS".into(), "many".into())];
        let e = Config::from_text("w.toml", GOOD, env).unwrap_err();
        assert_eq!(e.origin, "environment");
        assert_eq!(e.key.as_deref(), Some("WOOSTREAM__TOPICS__PARTITIONS"));
        assert!(e.message.contains("expected a number"), "{e}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = Config::from_text("w.toml", GOOD, no_env()).unwrap();
        let shown = format!("{:?}", c);
        assert!(!shown.contains("s3cr&t"), "{shown}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_shipped_example_configuration_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/woostream.example.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let c = Config::from_text(
            path,
            &text,
            vec![
                (
                    "WOOSTREAM__SHOPS__0__SECRET_ENV".to_string(),
                    "PATH".to_string(),
                ),
                ("WOOSTREAM__CRM__TOKEN_ENV".to_string(), "PATH".to_string()),
            ],
        )
        .unwrap();
        assert_eq!(c.shops[0].id, "eu-store");
        assert_eq!(c.topics.replication_factor, 3);
        assert_eq!(c.crm.stages().get("checkout-draft"), None);
        assert_eq!(c.crm.stages()["completed"], "closedwon");
    }
}
