//! `[producer]` and `[[shops]]`: the webhook endpoint and the shops allowed to post to it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::secret::resolve_secret;
use crate::secret::Secret;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProducerConfig {
    pub listen: SocketAddr,
    pub webhook_path: String,
    /// Larger bodies are answered 413 (WooCommerce orders are a few KiB; 4 MiB is generous).
    pub max_body_bytes: usize,
    /// Where deliveries wait when Kafka does not acknowledge in time; absent: answer 503.
    pub spool_dir: Option<PathBuf>,
    /// Spooled bytes beyond which deliveries are answered 503 rather than filling the disk.
    pub spool_max_bytes: u64,
    /// Base64 of 32 bytes: when set, raw bodies in the ingest dead-letter topic are sealed with
    /// ChaCha20-Poly1305 (they hold personal data).
    pub dead_letter_key: Option<Secret>,
    /// A connection that has not sent a whole request head within this is closed (slow
    /// clients would otherwise hold it forever).
    pub header_timeout_ms: u64,
    /// A request whose body has not fully arrived within this is answered 408.
    pub body_timeout_ms: u64,
    /// Open connections beyond this are closed at once.
    pub max_connections: usize,
    /// Requests being handled at once; beyond this, 503 with Retry-After.
    pub max_in_flight: usize,
    /// An exact resend (same shop, delivery id and signed body) within this many seconds is
    /// answered 200 without producing it again; 0 turns the check off.
    pub dedup_window_secs: u64,
    /// Deliveries remembered for that check at most (about 100 bytes each).
    pub dedup_capacity: usize,
    /// At shutdown, how long the producer goes on draining its spool into Kafka (when the
    /// brokers answer) before it exits; what remains is drained by the next start on the
    /// same volume.
    pub shutdown_drain_secs: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            listen: "0.0.0.0:8080".parse().expect("valid address"),
            webhook_path: "/webhooks/woocommerce".into(),
            max_body_bytes: 4 * 1024 * 1024,
            spool_dir: None,
            spool_max_bytes: 1024 * 1024 * 1024,
            dead_letter_key: None,
            header_timeout_ms: 5_000,
            body_timeout_ms: 15_000,
            max_connections: 4_096,
            max_in_flight: 256,
            dedup_window_secs: 600,
            dedup_capacity: 100_000,
            shutdown_drain_secs: 20,
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
    /// The webhook secret exactly as typed into WooCommerce (or `{ env = … }`, `{ file = … }`).
    #[serde(default)]
    pub secret: Option<Secret>,
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
            .field("secret", &self.secret)
            .field("secret_env", &self.secret_env)
            .finish()
    }
}

impl ShopConfig {
    pub fn resolved_secret(&self) -> Option<String> {
        resolve_secret(&self.secret, &self.secret_env)
    }
}
