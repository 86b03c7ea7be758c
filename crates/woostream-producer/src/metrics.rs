//! The producer's Prometheus metrics. Label values are bounded: shops are the configured ids
//! (or "unknown"), topics the WooCommerce topics woostream knows (or "action"/"unknown").

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct Metrics {
    pub requests: IntCounterVec,
    pub signature_failures: IntCounterVec,
    pub source_mismatches: IntCounterVec,
    pub shop_wide_signatures: IntCounterVec,
    pub previous_secret_signatures: IntCounterVec,
    pub deletions_not_of_resource: IntCounterVec,
    pub unresolved_order_deletions: IntCounterVec,
    pub erasures: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub in_flight: IntGauge,
    pub request_seconds: HistogramVec,
    pub produce_seconds: HistogramVec,
    pub spooled: IntCounterVec,
    pub spool_pending_bytes: IntGauge,
    pub kafka_reachable: IntGaugeVec,
    pub connections: IntGauge,
    pub connections_refused: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "woostream_webhook_requests_total",
                    "Webhook deliveries by shop, WooCommerce topic and outcome.",
                ),
                &["shop", "topic", "outcome"],
            )?,
            signature_failures: IntCounterVec::new(
                Opts::new(
                    "woostream_webhook_signature_failures_total",
                    "Deliveries refused for a missing or wrong signature or an unknown source.",
                ),
                &["shop", "reason"],
            )?,
            shop_wide_signatures: IntCounterVec::new(
                Opts::new(
                    "woostream_webhook_shop_wide_signatures_total",
                    "Deliveries signed with the shop's own secret rather than their topic's (a webhook made by hand or before woostream webhooks sync).",
                ),
                &["shop"],
            )?,
            previous_secret_signatures: IntCounterVec::new(
                Opts::new(
                    "woostream_webhook_previous_secret_signatures_total",
                    "Deliveries signed with the shop's previous_secret (a rotation under way): remove previous_secret once this stays 0.",
                ),
                &["shop"],
            )?,
            source_mismatches: IntCounterVec::new(
                Opts::new(
                    "woostream_webhook_source_mismatch_total",
                    "Deliveries accepted by their shop's signature although X-WC-Webhook-Source named none of the shop's URLs (fired from WP-CLI, cron or another host name).",
                ),
                &["shop"],
            )?,
            deletions_not_of_resource: IntCounterVec::new(
                Opts::new(
                    "woostream_webhook_deletions_not_of_resource_total",
                    "product.deleted / coupon.deleted deliveries whose id is the other resource's (products and coupons share one id space), not written.",
                ),
                &["shop", "topic"],
            )?,
            unresolved_order_deletions: IntCounterVec::new(
                Opts::new(
                    "woostream_webhook_unresolved_order_deletions_total",
                    "order.deleted deliveries whose customer neither this replica nor the shop's REST API could name (written under the order's key; reconciliation repairs them).",
                ),
                &["shop"],
            )?,
            erasures: IntCounterVec::new(
                Opts::new(
                    "woostream_webhook_erasures_total",
                    "customer.deleted deliveries by what became of them: erased (the shop confirmed the account is gone), already_erased, account_exists (the shop still has it: not written), awaiting_operator (not confirmed: kept, not erased).",
                ),
                &["shop", "outcome"],
            )?,
            dead_lettered: IntCounterVec::new(
                Opts::new(
                    "woostream_webhook_dead_lettered_total",
                    "Signed deliveries kept in the ingest dead-letter topic, by reason.",
                ),
                &["shop", "reason"],
            )?,
            in_flight: IntGauge::new(
                "woostream_webhook_in_flight",
                "Webhook requests being handled now.",
            )?,
            request_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "woostream_webhook_request_duration_seconds",
                    "Time from request to answer.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["outcome"],
            )?,
            produce_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "woostream_kafka_produce_latency_seconds",
                    "Time from send to broker acknowledgement (acks=all).",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["topic"],
            )?,
            spooled: IntCounterVec::new(
                Opts::new(
                    "woostream_spool_records_total",
                    "Records written to the disk spool while Kafka did not acknowledge, and drained from it.",
                ),
                &["direction"],
            )?,
            spool_pending_bytes: IntGauge::new(
                "woostream_spool_pending_bytes",
                "Bytes in the disk spool waiting for Kafka.",
            )?,
            kafka_reachable: woostream_core::kafka::lag::KAFKA_REACHABLE.clone(),
            connections: IntGauge::new(
                "woostream_webhook_connections",
                "Open connections to the webhook endpoint.",
            )?,
            connections_refused: IntCounterVec::new(
                Opts::new(
                    "woostream_webhook_connections_refused_total",
                    "Connections closed at once, by reason (max_connections).",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.signature_failures.clone()))?;
        registry.register(Box::new(m.shop_wide_signatures.clone()))?;
        registry.register(Box::new(m.previous_secret_signatures.clone()))?;
        registry.register(Box::new(m.source_mismatches.clone()))?;
        registry.register(Box::new(m.deletions_not_of_resource.clone()))?;
        registry.register(Box::new(m.unresolved_order_deletions.clone()))?;
        registry.register(Box::new(m.erasures.clone()))?;
        registry.register(Box::new(m.dead_lettered.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.request_seconds.clone()))?;
        registry.register(Box::new(m.produce_seconds.clone()))?;
        registry.register(Box::new(m.spooled.clone()))?;
        registry.register(Box::new(m.spool_pending_bytes.clone()))?;
        // Shared with the consuming roles' lag readers (one per process).
        woostream_core::kafka::lag::register_reachable(registry)?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.connections_refused.clone()))?;
        Ok(m)
    }

    /// Shows every shop's refusal counters at 0 from the start: a counter that first appears
    /// at its first refusals has no earlier sample, so `rate()` — and the alert on it — would
    /// miss a burst that arrives within one scrape.
    pub fn start_counting(&self, shops: &[&str]) {
        for shop in shops {
            self.source_mismatches.with_label_values(&[shop]);
            self.shop_wide_signatures.with_label_values(&[shop]);
            self.previous_secret_signatures.with_label_values(&[shop]);
            for outcome in ERASURE_OUTCOMES {
                self.erasures.with_label_values(&[shop, outcome]);
            }
        }
        for shop in shops.iter().copied().chain(["unknown"]) {
            for reason in SIGNATURE_FAILURES {
                self.signature_failures.with_label_values(&[shop, reason]);
            }
        }
    }
}

/// The outcomes in `woostream_webhook_erasures_total`.
pub const ERASURE_OUTCOMES: [&str; 6] = [
    "erased",
    "already_erased",
    "account_exists",
    "awaiting_operator",
    "spooled",
    "erased_from_spool",
];

/// The reasons in `woostream_webhook_signature_failures_total`.
pub const UNKNOWN_SOURCE: &str = "unknown_source";
pub const MISSING_SIGNATURE: &str = "missing_signature";
pub const BAD_SIGNATURE: &str = "bad_signature";
pub const SIGNATURE_FAILURES: [&str; 3] = [UNKNOWN_SOURCE, MISSING_SIGNATURE, BAD_SIGNATURE];
