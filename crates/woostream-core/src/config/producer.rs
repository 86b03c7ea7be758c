//! `[producer]` and `[[shops]]`: the webhook endpoint and the shops allowed to post to it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::secret::resolve_secret;
use crate::secret::Secret;

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProducerConfig {
    /// Address the webhook receiver listens on.
    pub listen: SocketAddr,
    /// Path WooCommerce's webhooks post to (the delivery URL's path).
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
    /// Open connections beyond this are closed at once (or, when a connection that has not
    /// sent a request head yet can be closed instead, it is).
    pub max_connections: usize,
    /// Open connections from one address at most: one shop's PHP workers fit well within it,
    /// and one prober cannot take every slot.
    pub max_connections_per_address: usize,
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
            max_connections_per_address: 1_024,
            max_in_flight: 256,
            dedup_window_secs: 600,
            dedup_capacity: 100_000,
            shutdown_drain_secs: 20,
        }
    }
}

/// A WooCommerce shop allowed to post webhooks.
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShopConfig {
    /// Short stable name used in keys and metrics, e.g. `eu-store`.
    pub id: String,
    /// The shop's home URL as WooCommerce sends it in `X-WC-Webhook-Source`.
    pub source: String,
    /// Other home URLs the shop's deliveries may name (`http://` and `https://`, `www.`, an old
    /// domain): WooCommerce takes the source from the request that fired the hook, so a
    /// delivery fired from WP-CLI, cron or another host name carries another one. A delivery
    /// whose source no shop names is still accepted when a shop's secret verifies it; it is
    /// then counted as a source mismatch.
    #[serde(default)]
    pub source_aliases: Vec<String>,
    /// The webhook secret exactly as typed into WooCommerce (or `{ env = … }`, `{ file = … }`).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Or: the environment variable holding it.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// During a rotation, the secret being replaced: deliveries it signs (or its topics'
    /// secrets) are accepted as well, so none fails while WooCommerce's webhooks and the
    /// pods change over. Counted in `woostream_webhook_previous_secret_signatures_total`;
    /// remove it once that stays 0.
    #[serde(default)]
    pub previous_secret: Option<Secret>,
    /// The shop's REST API, for backfill and reconciliation; absent: webhooks only.
    #[serde(default)]
    pub rest: Option<ShopRest>,
    /// Accept a delivery only when it is signed with its topic's secret (derived from
    /// `secret`; `woostream webhooks sync` gives every webhook of woostream's its topic's),
    /// refusing the shop-wide secret. Off by default so that webhooks made by hand or before a
    /// sync keep working; turn on once `woostream_webhook_shop_wide_signatures_total` stays 0.
    #[serde(default)]
    pub require_topic_secrets: bool,
}

/// `[shops.rest]`: how woostream reads the shop's WooCommerce REST API (v3). The key needs
/// Read permission (Read/Write to keep the webhooks in order).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ShopRest {
    /// The API's base, e.g. `https://shop.example.com/wp-json/wc/v3/`; absent: the shop's
    /// `source` followed by `wp-json/wc/v3/`.
    pub url: Option<String>,
    /// The consumer key (`ck_…`) and secret (`cs_…`) made under WooCommerce → Settings →
    /// Advanced → REST API; secrets like every other.
    pub consumer_key: Option<Secret>,
    /// The REST API key's consumer secret (`cs_…`).
    pub consumer_secret: Option<Secret>,
    /// `auto` (default): HTTP Basic over `https://`, OAuth 1.0a over `http://` (WooCommerce
    /// refuses Basic and query-string keys over plain HTTP); `basic`; `query`: the key and
    /// secret as query parameters, for servers that drop the Authorization header; `oauth1`:
    /// one-legged OAuth 1.0a with HMAC-SHA256 (the secret never crosses the wire).
    pub auth: RestAuth,
    /// Requests per second at most, for the whole process: a backfill must never hurt the shop.
    pub requests_per_second: f64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Objects per page (WooCommerce allows at most 100).
    pub per_page: u32,
    /// How long one REST request may take.
    pub timeout_secs: u64,
    /// The producer's public webhook URL, for `woostream webhooks sync`, e.g.
    /// `https://hooks.shop.example/webhooks/woocommerce`.
    pub delivery_url: Option<String>,
    /// How often reconciliation asks for what changed (seconds).
    pub reconcile_interval_secs: u64,
    /// How far before its watermark reconciliation asks again (seconds), for clocks and
    /// transactions that commit late.
    pub reconcile_overlap_secs: u64,
    /// How often reconciliation lists every account's id to find those deleted since (their
    /// `customer.deleted` lost or refused): each one the shop then answers 404 for is erased.
    /// 0: every pass.
    pub deleted_accounts_check_secs: u64,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RestAuth {
    #[default]
    Auto,
    Basic,
    Query,
    Oauth1,
}

impl RestAuth {
    /// What `auto` means for the API at `base_url`.
    pub fn for_url(self, base_url: &str) -> RestAuth {
        match self {
            RestAuth::Auto if base_url.starts_with("https://") => RestAuth::Basic,
            RestAuth::Auto => RestAuth::Oauth1,
            other => other,
        }
    }
}

impl Default for ShopRest {
    fn default() -> Self {
        ShopRest {
            url: None,
            consumer_key: None,
            consumer_secret: None,
            auth: RestAuth::Auto,
            requests_per_second: 2.0,
            concurrency: 2,
            per_page: 100,
            timeout_secs: 30,
            delivery_url: None,
            reconcile_interval_secs: 300,
            reconcile_overlap_secs: 600,
            deleted_accounts_check_secs: 3600,
        }
    }
}

impl ShopRest {
    /// The API base URL, ending in `/`.
    pub fn base_url(&self, source: &str) -> String {
        let mut url = match &self.url {
            Some(u) => u.clone(),
            None => format!("{}/wp-json/wc/v3/", source.trim_end_matches('/')),
        };
        if !url.ends_with('/') {
            url.push('/');
        }
        url
    }

    /// What types alone cannot check; the offending key (under `at`) and what was expected.
    pub fn check(&self, source: &str) -> Result<(), (String, String)> {
        let base = self.base_url(source);
        if has_credentials(&base) {
            return Err(("url".into(), NO_CREDENTIALS_IN_URLS.into()));
        }
        if !is_https_or_loopback(&base) {
            return Err((
                "url".into(),
                "expected an https:// URL (plain http:// only on loopback, where the key is signed with OAuth 1.0a)".into(),
            ));
        }
        if self.consumer_key.is_none() || self.consumer_secret.is_none() {
            return Err((
                "consumer_key".into(),
                "expected consumer_key and consumer_secret (WooCommerce → Settings → Advanced → REST API)".into(),
            ));
        }
        if !(1..=100).contains(&self.per_page) {
            return Err((
                "per_page".into(),
                "expected 1 to 100 (WooCommerce refuses more with 400 rest_invalid_param)".into(),
            ));
        }
        if !(self.requests_per_second > 0.0 && self.requests_per_second <= 1000.0) {
            return Err((
                "requests_per_second".into(),
                "expected a rate above 0 and at most 1000".into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(("concurrency".into(), "expected at least 1".into()));
        }
        Ok(())
    }
}

/// Whether `url` is `https://`, or plain `http://` to this machine only: the host parsed and
/// compared, never the text's prefix (`http://localhost.evil.example/` is not loopback).
/// Whether a URL carries a user name or password: URLs reach logs and error messages, so
/// credentials belong in the settings meant for them (each a secret).
pub fn has_credentials(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

/// What a URL with credentials in it is refused with.
pub const NO_CREDENTIALS_IN_URLS: &str =
    "expected a URL without a user name or password in it (URLs reach logs and errors): put credentials in their own settings";

pub fn is_https_or_loopback(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => true,
        "http" => parsed.host_str().is_some_and(|host| {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

impl fmt::Debug for ShopConfig {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShopConfig")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("source_aliases", &self.source_aliases)
            .field("secret", &self.secret)
            .field("secret_env", &self.secret_env)
            .field("previous_secret", &self.previous_secret)
            .field("rest", &self.rest)
            .field("require_topic_secrets", &self.require_topic_secrets)
            .finish()
    }
}

impl ShopConfig {
    pub fn resolved_secret(&self) -> Option<String> {
        resolve_secret(&self.secret, &self.secret_env)
    }
}

#[cfg(test)]
mod rest_tests {
    use super::*;

    fn rest(url: &str, per_page: u32) -> ShopRest {
        ShopRest {
            url: Some(url.into()),
            consumer_key: Some("ck_x".into()),
            consumer_secret: Some("cs_x".into()),
            per_page,
            ..ShopRest::default()
        }
    }

    #[test]
    fn the_rest_api_is_https_with_at_most_100_per_page_and_a_key() {
        let source = "https://shop.example.com/";
        assert!(rest("https://shop.example.com/wp-json/wc/v3", 100)
            .check(source)
            .is_ok());
        assert!(rest("http://127.0.0.1:8080/wp-json/wc/v3/", 100)
            .check(source)
            .is_ok());
        for outside in [
            "http://localhost.evil.example/wp-json/wc/v3/",
            "http://127.0.0.1.evil.example/wp-json/wc/v3/",
            "http://[::2]/wp-json/wc/v3/",
        ] {
            assert_eq!(
                rest(outside, 100).check(source).unwrap_err().0,
                "url",
                "{outside}"
            );
        }
        assert!(rest("http://localhost:8080/wp-json/wc/v3/", 100)
            .check(source)
            .is_ok());
        let (key, why) = rest("http://shop.example.com/wp-json/wc/v3/", 100)
            .check(source)
            .unwrap_err();
        assert_eq!(key, "url");
        assert!(why.contains("https://"), "{why}");
        let (key, why) = rest("https://shop.example.com/", 101)
            .check(source)
            .unwrap_err();
        assert_eq!(key, "per_page");
        assert!(why.contains("rest_invalid_param"), "{why}");
        let no_key = ShopRest {
            consumer_key: None,
            ..rest("https://shop.example.com/", 100)
        };
        assert_eq!(no_key.check(source).unwrap_err().0, "consumer_key");
        assert_eq!(
            ShopRest::default().base_url("https://shop.example.com"),
            "https://shop.example.com/wp-json/wc/v3/"
        );
    }
}
