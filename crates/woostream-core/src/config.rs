//! Configuration: one TOML or YAML file plus `WOOSTREAM__…` environment overrides.
//!
//! Every mistake is reported at start-up with the file, the line and what was expected; a value
//! set through the environment is reported with the variable's name instead.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Prefix of environment overrides: `WOOSTREAM__KAFKA__BOOTSTRAP_SERVERS=broker:9092`,
/// `WOOSTREAM__SHOPS__0__SECRET=…` (list entries by index).
pub const ENV_PREFIX: &str = "WOOSTREAM__";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub topics: TopicsConfig,
    #[serde(default)]
    pub schema_registry: Option<SchemaRegistryConfig>,
    #[serde(default)]
    pub producer: ProducerConfig,
    #[serde(default)]
    pub shops: Vec<ShopConfig>,
    #[serde(default)]
    pub enricher: EnricherConfig,
    #[serde(default)]
    pub slack: crate::slack_config::SlackConfig,
    #[serde(default)]
    pub crm: crate::crm_config::CrmConfig,
    #[serde(default)]
    pub ops: OpsConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// When the enricher publishes in Kafka transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transactions {
    /// Use them when the broker supports them (real Kafka); otherwise rely on ids and versions.
    Auto,
    /// Require them: refuse to start on a broker without transactions.
    On,
    Off,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnricherConfig {
    #[serde(default = "default_enricher_group")]
    pub group_id: String,
    /// This instance's stable name, for its transactional id; default: $HOSTNAME.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// How long the group waits for a silent instance before giving its partitions away.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    #[serde(default = "default_transactions")]
    pub transactions: Transactions,
    /// How often processed input is committed (and a transaction ends).
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// How often the enricher that owns partition 0 refits the model; 0 turns refitting off.
    #[serde(default = "default_refit_interval_secs")]
    pub refit_interval_secs: u64,
    /// Months of CLV in the profile.
    #[serde(default = "default_clv_months")]
    pub clv_months: u32,
    /// Monthly discount rate of the CLV (0.01 = 1 % a month).
    #[serde(default = "default_monthly_discount_rate")]
    pub monthly_discount_rate: f64,
    /// Share of customers that are not VIP: 0.95 makes the top 5 % by CLV VIPs.
    #[serde(default = "default_vip_quantile")]
    pub vip_quantile: f64,
    /// High-value order: an amount ("500.00") or a percentile of the shop's order values ("p95").
    #[serde(default = "default_high_value_order")]
    pub high_value_order: String,
    /// Stock level at or below which a product is low, when WooCommerce gives none.
    #[serde(default = "default_low_stock")]
    pub default_low_stock: i64,
    /// Reviews with at most this many stars are negative.
    #[serde(default = "default_negative_review_rating")]
    pub negative_review_max_rating: i32,
    /// Mean order value assumed by the Gamma-Gamma prior until a shop has a fitted model.
    #[serde(default = "default_prior_order_value")]
    pub prior_order_value: f64,
    /// Customers with a repeat purchase needed before the model is fitted rather than prior.
    #[serde(default = "default_min_repeat_customers")]
    pub min_repeat_customers: u64,
}

fn default_enricher_group() -> String {
    "woostream-enricher".into()
}
const fn default_session_timeout_ms() -> u64 {
    10_000
}
const fn default_transactions() -> Transactions {
    Transactions::Auto
}
const fn default_commit_interval_ms() -> u64 {
    500
}
const fn default_refit_interval_secs() -> u64 {
    3600
}
const fn default_clv_months() -> u32 {
    12
}
const fn default_monthly_discount_rate() -> f64 {
    0.01
}
const fn default_vip_quantile() -> f64 {
    0.95
}
fn default_high_value_order() -> String {
    "p95".into()
}
const fn default_low_stock() -> i64 {
    5
}
const fn default_negative_review_rating() -> i32 {
    2
}
const fn default_prior_order_value() -> f64 {
    50.0
}
const fn default_min_repeat_customers() -> u64 {
    20
}

impl Default for EnricherConfig {
    fn default() -> Self {
        EnricherConfig {
            group_id: default_enricher_group(),
            instance_id: None,
            session_timeout_ms: default_session_timeout_ms(),
            transactions: default_transactions(),
            commit_interval_ms: default_commit_interval_ms(),
            refit_interval_secs: default_refit_interval_secs(),
            clv_months: default_clv_months(),
            monthly_discount_rate: default_monthly_discount_rate(),
            vip_quantile: default_vip_quantile(),
            high_value_order: default_high_value_order(),
            default_low_stock: default_low_stock(),
            negative_review_max_rating: default_negative_review_rating(),
            prior_order_value: default_prior_order_value(),
            min_repeat_customers: default_min_repeat_customers(),
        }
    }
}

/// A high-value order threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HighValueOrder {
    Amount(rust_decimal::Decimal),
    /// Percentile (0–100) of the shop's order values, from the fitted model.
    Percentile(f64),
}

impl EnricherConfig {
    pub fn high_value_order(&self) -> Result<HighValueOrder, String> {
        let s = self.high_value_order.trim();
        if let Some(p) = s.strip_prefix('p') {
            return match p.parse::<f64>() {
                Ok(v) if v == 95.0 => Ok(HighValueOrder::Percentile(v)),
                _ => Err("expected an amount such as \"500.00\" or \"p95\" (the shop's 95th percentile order value)".into()),
            };
        }
        match s.parse::<rust_decimal::Decimal>() {
            Ok(d) if d > rust_decimal::Decimal::ZERO => Ok(HighValueOrder::Amount(d)),
            _ => Err("expected an amount such as \"500.00\" or \"p95\" (the shop's 95th percentile order value)".into()),
        }
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let at = |k: &str| format!("enricher.{k}");
        self.high_value_order()
            .map_err(|m| (at("high_value_order"), m))?;
        if !(self.vip_quantile > 0.0 && self.vip_quantile < 1.0) {
            return Err((
                at("vip_quantile"),
                "expected a share between 0 and 1, e.g. 0.95".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.monthly_discount_rate) {
            return Err((
                at("monthly_discount_rate"),
                "expected a monthly rate from 0 to 1, e.g. 0.01".into(),
            ));
        }
        if self.clv_months == 0 || self.clv_months > 120 {
            return Err((at("clv_months"), "expected 1 to 120 months".into()));
        }
        if self.commit_interval_ms == 0 {
            return Err((at("commit_interval_ms"), "expected at least 1 ms".into()));
        }
        if self.prior_order_value.is_nan() || self.prior_order_value <= 0.0 {
            return Err((at("prior_order_value"), "expected a positive amount".into()));
        }
        if !(0..=5).contains(&self.negative_review_max_rating) {
            return Err((
                at("negative_review_max_rating"),
                "expected 0 to 5 stars".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port,…`. Absent: `woostream run` starts the embedded mock cluster; the separate
    /// roles refuse to start.
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// How long the producer lets librdkafka try before a record counts as not delivered
    /// (then it is spooled to disk, if a spool is configured).
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// none, gzip, snappy, lz4 or zstd.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Passed to librdkafka last, e.g. `"security.protocol" = "SASL_SSL"`. Settings woostream
    /// relies on (acks, idempotence, partitioner) cannot be overridden here.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_client_id() -> String {
    "woostream".into()
}
const fn default_delivery_timeout_ms() -> u64 {
    10_000
}
const fn default_linger_ms() -> u64 {
    5
}
fn default_compression() -> String {
    "lz4".into()
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: None,
            client_id: default_client_id(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            linger_ms: default_linger_ms(),
            compression: default_compression(),
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
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Create missing topics at start-up through the admin API.
    #[serde(default = "yes")]
    pub create: bool,
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    #[serde(default = "default_orders_topic")]
    pub orders: TopicConfig,
    #[serde(default = "default_products_topic")]
    pub products: TopicConfig,
    #[serde(default = "default_customers_topic")]
    pub customers: TopicConfig,
    #[serde(default = "default_coupons_topic")]
    pub coupons: TopicConfig,
    #[serde(default = "default_reviews_topic")]
    pub reviews: TopicConfig,
    #[serde(default = "default_actions_topic")]
    pub actions: TopicConfig,
    #[serde(default = "default_ingest_dead_letter_topic")]
    pub ingest_dead_letter: TopicConfig,
    /// Customer profiles; also the enricher's changelog, so compacted and partitioned like orders.
    #[serde(default = "default_profiles_topic")]
    pub profiles: TopicConfig,
    #[serde(default = "default_alerts_topic")]
    pub alerts: TopicConfig,
    /// Population models, one record per shop.
    #[serde(default = "default_models_topic")]
    pub models: TopicConfig,
    /// Audit of every sink delivery; also what the sinks restore what they delivered from.
    #[serde(default = "default_deliveries_topic")]
    pub deliveries: TopicConfig,
    /// Alerts Slack refused for good, with the reason.
    #[serde(default = "default_slack_dead_letter_topic")]
    pub slack_dead_letter: TopicConfig,
    /// Contacts, deals and associations the CRM refused for good, with the reason, the HTTP
    /// status, the attempts and the original change; `woostream crm replay` re-drives them.
    #[serde(default = "default_crm_dead_letter_topic")]
    pub crm_dead_letter: TopicConfig,
    /// Where the enricher commits one small transaction at start to learn whether the broker
    /// really ends transactions. Nothing reads it: on a broker that begins transactions but
    /// never ends them, the open one pins only this topic, never an output.
    #[serde(default = "default_transactions_probe_topic")]
    pub transactions_probe: TopicConfig,
}

const fn yes() -> bool {
    true
}
const fn default_partitions() -> i32 {
    6
}
const fn default_replication_factor() -> i32 {
    1
}
fn default_orders_topic() -> TopicConfig {
    topic("woo.orders", "delete")
}
fn default_products_topic() -> TopicConfig {
    topic("woo.products", "compact")
}
fn default_customers_topic() -> TopicConfig {
    topic("woo.customers", "compact")
}
fn default_coupons_topic() -> TopicConfig {
    topic("woo.coupons", "compact")
}
fn default_reviews_topic() -> TopicConfig {
    topic("woo.reviews", "delete")
}
fn default_actions_topic() -> TopicConfig {
    topic("woo.actions", "delete")
}
fn default_ingest_dead_letter_topic() -> TopicConfig {
    topic("woostream.dlq.ingest", "delete")
}
fn default_profiles_topic() -> TopicConfig {
    topic("woostream.customer-profiles", "compact")
}
fn default_alerts_topic() -> TopicConfig {
    topic("woostream.alerts", "delete")
}
fn default_models_topic() -> TopicConfig {
    TopicConfig {
        partitions: Some(1),
        ..topic("woostream.models", "compact")
    }
}

fn default_deliveries_topic() -> TopicConfig {
    topic("woostream.deliveries", "delete")
}
fn default_slack_dead_letter_topic() -> TopicConfig {
    topic("woostream.dlq.slack", "delete")
}
fn default_transactions_probe_topic() -> TopicConfig {
    TopicConfig {
        partitions: Some(1),
        retention_ms: Some(3_600_000),
        ..topic("woostream.transactions-probe", "delete")
    }
}
fn default_crm_dead_letter_topic() -> TopicConfig {
    topic("woostream.dlq.crm", "delete")
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            create: true,
            partitions: default_partitions(),
            replication_factor: default_replication_factor(),
            orders: default_orders_topic(),
            products: default_products_topic(),
            customers: default_customers_topic(),
            coupons: default_coupons_topic(),
            reviews: default_reviews_topic(),
            actions: default_actions_topic(),
            ingest_dead_letter: default_ingest_dead_letter_topic(),
            profiles: default_profiles_topic(),
            alerts: default_alerts_topic(),
            models: default_models_topic(),
            deliveries: default_deliveries_topic(),
            slack_dead_letter: default_slack_dead_letter_topic(),
            crm_dead_letter: default_crm_dead_letter_topic(),
            transactions_probe: default_transactions_probe_topic(),
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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    #[serde(default = "default_producer_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_webhook_path")]
    pub webhook_path: String,
    /// Larger bodies are answered 413 (WooCommerce orders are a few KiB; 4 MiB is generous).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Where deliveries wait when Kafka does not acknowledge in time; absent: answer 503.
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Spooled bytes beyond which deliveries are answered 503 rather than filling the disk.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// Base64 of 32 bytes: when set, raw bodies in the ingest dead-letter topic are sealed with
    /// ChaCha20-Poly1305 (they hold personal data).
    #[serde(default)]
    pub dead_letter_key: Option<String>,
}

fn default_producer_listen() -> SocketAddr {
    "0.0.0.0:8080".parse().expect("valid address")
}
fn default_webhook_path() -> String {
    "/webhooks/woocommerce".into()
}
const fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
const fn default_spool_max_bytes() -> u64 {
    1024 * 1024 * 1024
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            listen: default_producer_listen(),
            webhook_path: default_webhook_path(),
            max_body_bytes: default_max_body_bytes(),
            spool_dir: None,
            spool_max_bytes: default_spool_max_bytes(),
            dead_letter_key: None,
        }
    }
}

/// A WooCommerce shop allowed to post webhooks.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopConfig {
    /// Short stable name used in keys and metrics, e.g. `eu-store`.
    pub id: String,
    /// The shop's home URL as WooCommerce sends it in `X-WC-Webhook-Source`.
    pub source: String,
    /// The webhook secret exactly as typed into WooCommerce.
    #[serde(default)]
    pub secret: Option<String>,
    /// Or: the environment variable holding it.
    #[serde(default)]
    pub secret_env: Option<String>,
}

impl fmt::Debug for ShopConfig {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShopConfig")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_env", &self.secret_env)
            .finish()
    }
}

/// A secret given in the file, or else read from the environment variable the file names.
pub fn resolve_secret(value: &Option<String>, env: &Option<String>) -> Option<String> {
    value
        .clone()
        .or_else(|| env.as_ref().and_then(|v| std::env::var(v).ok()))
}

impl ShopConfig {
    pub fn resolved_secret(&self) -> Option<String> {
        resolve_secret(&self.secret, &self.secret_env)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_ops_listen")]
    pub listen: SocketAddr,
}

fn default_ops_listen() -> SocketAddr {
    "0.0.0.0:9090".parse().expect("valid address")
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            listen: default_ops_listen(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// json (default, for Kubernetes) or pretty.
    #[serde(default = "default_log_format")]
    pub format: String,
    /// A tracing filter, e.g. `info` or `woostream_producer=debug,info`; RUST_LOG wins.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_format() -> String {
    "json".into()
}
fn default_log_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: default_log_format(),
            level: default_log_level(),
        }
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
        let config = apply_env_overrides(parsed, env)?;
        config.validate().map_err(|(key, message)| ConfigError {
            origin: origin.into(),
            line: locate_key(format, text, &key),
            column: None,
            key: Some(key),
            message,
        })?;
        Ok(config)
    }

    /// Checks what types alone cannot; returns the offending key and what was expected.
    fn validate(&self) -> Result<(), (String, String)> {
        let mut ids = std::collections::HashSet::new();
        let mut sources = std::collections::HashSet::new();
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
            match (&shop.secret, &shop.secret_env) {
                (Some(_), Some(_)) => {
                    return Err((at("secret"), "set secret or secret_env, not both".into()))
                }
                (None, None) => {
                    return Err((
                        at("secret"),
                        "expected the webhook secret (secret = \"…\") or the name of an environment variable holding it (secret_env = \"…\")".into(),
                    ))
                }
                (Some(s), None) if s.is_empty() => {
                    return Err((at("secret"), "the webhook secret is empty".into()))
                }
                (None, Some(var)) if shop.resolved_secret().is_none_or(|s| s.is_empty()) => {
                    return Err((
                        at("secret_env"),
                        format!("environment variable {var} is not set or empty"),
                    ))
                }
                _ => {}
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
        if p.dead_letter_key
            .as_ref()
            .is_some_and(|k| !crate::sealing::key_is_valid(k))
        {
            return Err((
                "producer.dead_letter_key".into(),
                crate::sealing::KEY_EXPECTED.into(),
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
        self.enricher.validate()?;
        self.crm.validate()?;
        Ok(())
    }

    pub fn shop_by_source(&self, source: &str) -> Option<&ShopConfig> {
        let wanted = normalise_source(source);
        self.shops
            .iter()
            .find(|s| normalise_source(&s.source) == wanted)
    }
}

/// `https://Shop.example.com` and `https://shop.example.com/` are the same shop.
pub fn normalise_source(source: &str) -> String {
    source.trim().trim_end_matches('/').to_ascii_lowercase()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Finds the line of a dotted key such as `shops[1].secret` in the source text.
fn locate_key(format: Format, text: &str, key: &str) -> Option<usize> {
    let segments: Vec<(&str, Option<usize>)> = key
        .split('.')
        .map(|s| match s.split_once('[') {
            Some((name, idx)) => (name, idx.trim_end_matches(']').parse().ok()),
            None => (s, None),
        })
        .collect();
    match format {
        Format::Toml => {
            let doc = text.parse::<toml_edit::ImDocument<String>>().ok()?;
            let mut table: &dyn toml_edit::TableLike = doc.as_table();
            let mut line = None;
            for (name, idx) in &segments {
                // A missing key (e.g. a required secret) is reported at its table.
                let Some((k, v)) = table.get_key_value(name) else {
                    break;
                };
                line = k.span().map(|s| line_col(text, s.start).0).or(line);
                let next: Option<&dyn toml_edit::TableLike> = match (v, idx) {
                    (toml_edit::Item::ArrayOfTables(a), Some(i)) => {
                        let t = a.get(*i)?;
                        line = t.span().map(|s| line_col(text, s.start).0).or(line);
                        Some(t)
                    }
                    (toml_edit::Item::Table(t), None) => Some(t),
                    (toml_edit::Item::Value(toml_edit::Value::InlineTable(t)), None) => Some(t),
                    _ => None,
                };
                match next {
                    Some(t) => table = t,
                    None => break,
                }
            }
            line
        }
        Format::Yaml => {
            // YAML has no span API in serde_norway: walk the keys in order through the text.
            let mut from = 0;
            let lines: Vec<&str> = text.lines().collect();
            let mut found = None;
            for (name, idx) in &segments {
                let Some(pos) = lines[from..].iter().position(|l| {
                    let t = l.trim_start().trim_start_matches("- ");
                    t.starts_with(&format!("{name}:"))
                }) else {
                    break;
                };
                from += pos;
                found = Some(from + 1);
                if let Some(i) = idx {
                    let Some(entry) = lines[from..]
                        .iter()
                        .enumerate()
                        .filter(|(_, l)| l.trim_start().starts_with("- "))
                        .nth(*i)
                        .map(|(n, _)| n)
                    else {
                        break;
                    };
                    from += entry;
                    found = Some(from + 1);
                }
            }
            found
        }
    }
}

/// Applies `WOOSTREAM__A__B=value` overrides to the parsed configuration.
fn apply_env_overrides(
    config: Config,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    if overrides.is_empty() {
        return Ok(config);
    }
    overrides.sort();
    let mut tree = serde_json::to_value(&config).expect("config serialises");
    for (var, raw) in &overrides {
        let env_err = |message: String| ConfigError {
            origin: "environment".into(),
            line: None,
            column: None,
            key: Some(var.clone()),
            message,
        };
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let mut node = &mut tree;
        for (i, seg) in path.iter().enumerate() {
            let last = i == path.len() - 1;
            node = match node {
                serde_json::Value::Object(map) => {
                    let entry = map.entry(seg.clone()).or_insert(serde_json::Value::Null);
                    if !last && entry.is_null() {
                        *entry = if path[i + 1].parse::<usize>().is_ok() {
                            serde_json::Value::Array(vec![])
                        } else {
                            serde_json::Value::Object(Default::default())
                        };
                    }
                    entry
                }
                serde_json::Value::Array(items) => {
                    let idx: usize = seg
                        .parse()
                        .map_err(|_| env_err(format!("expected a list index, found {seg:?}")))?;
                    if idx > items.len() {
                        return Err(env_err(format!(
                            "list index {idx} skips entries (the list has {})",
                            items.len()
                        )));
                    }
                    if idx == items.len() {
                        items.push(serde_json::Value::Object(Default::default()));
                    }
                    &mut items[idx]
                }
                _ => return Err(env_err(format!("{seg:?} is not a table"))),
            };
        }
        *node = match node {
            serde_json::Value::Number(_) => serde_json::Value::Number(
                raw.trim()
                    .parse()
                    .map_err(|_| env_err(format!("expected a number, found {raw:?}")))?,
            ),
            serde_json::Value::Bool(_) => serde_json::Value::Bool(
                raw.trim()
                    .parse()
                    .map_err(|_| env_err(format!("expected true or false, found {raw:?}")))?,
            ),
            serde_json::Value::String(_) => serde_json::Value::String(raw.clone()),
            // Unset optional values: numbers and booleans as such, anything else as text.
            _ => serde_json::from_str::<serde_json::Value>(raw)
                .ok()
                .filter(|v| v.is_number() || v.is_boolean())
                .unwrap_or_else(|| serde_json::Value::String(raw.clone())),
        };
    }
    serde_json::from_value(tree).map_err(|e| ConfigError {
        origin: "environment".into(),
        line: None,
        column: None,
        key: Some(
            overrides
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_kubernetes_config_map_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/kubernetes/producer.yaml"
        );
        let yaml = std::fs::read_to_string(path).unwrap();
        // The ConfigMap's `woostream.toml: |` block, its indentation removed.
        let toml: String = yaml
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("woostream.toml: |"))
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .map(|l| format!("{}\n", &l[4..]))
            .collect();
        assert!(toml.contains("[kafka]"), "{toml}");
        let env = |k: &str| (k.to_string(), "PATH".to_string());
        let c = Config::from_text(
            &format!("{path}: woostream.toml"),
            &toml,
            vec![
                env("WOOSTREAM__SHOPS__0__SECRET_ENV"),
                env("WOOSTREAM__CRM__TOKEN_ENV"),
            ],
        )
        .unwrap();
        assert_eq!(c.crm.token_env.as_deref(), Some("PATH"));
        assert_eq!(c.crm.stages().get("checkout-draft"), None);
    }
}
