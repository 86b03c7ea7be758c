//! The CRM sink's Prometheus metrics.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct Metrics {
    /// Objects by kind (contact, deal, association) and outcome (created, updated,
    /// dead_lettered, skipped).
    pub upserts: IntCounterVec,
    /// HTTP requests by endpoint and status (`network` when there was no answer).
    pub requests: IntCounterVec,
    pub batch_size: HistogramVec,
    /// Changes read (an order is a contact change and a deal change), by topic.
    pub events: IntCounterVec,
    /// Changes sent, by object: events ÷ changes is the coalescing ratio.
    pub changes: IntCounterVec,
    pub coalescing: Gauge,
    pub budget_remaining: IntGaugeVec,
    pub rate_limited: IntCounter,
    pub retries: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub latency: Histogram,
    pub pending: IntGauge,
    pub commits: IntCounter,
    pub unreadable: IntCounter,
    /// Records of erased people, skipped.
    pub erased_skipped: IntCounter,
    /// Erasures of contacts, by outcome (erased, dead_lettered).
    pub erasures: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let m = Metrics {
            upserts: counter(
                "woostream_crm_upserts_total",
                "CRM objects written, by object and outcome.",
                &["object", "outcome"],
            )?,
            requests: counter(
                "woostream_crm_requests_total",
                "CRM API requests, by endpoint and HTTP status.",
                &["endpoint", "status"],
            )?,
            batch_size: HistogramVec::new(
                HistogramOpts::new("woostream_crm_batch_size", "Inputs per batch request.")
                    .buckets(vec![1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 99.0, 100.0]),
                &["endpoint"],
            )?,
            events: counter(
                "woostream_crm_events_total",
                "Contact and deal changes read from Kafka (an order is one of each), by topic.",
                &["topic"],
            )?,
            changes: counter(
                "woostream_crm_changes_total",
                "Coalesced changes sent to the CRM, by object.",
                &["object"],
            )?,
            coalescing: Gauge::new(
                "woostream_crm_coalescing_ratio",
                "Changes read per change sent (higher: more events folded together).",
            )?,
            budget_remaining: IntGaugeVec::new(
                Opts::new(
                    "woostream_crm_budget_remaining",
                    "Requests left in the CRM's budget, by window (10s, day).",
                ),
                &["window"],
            )?,
            rate_limited: IntCounter::new(
                "woostream_crm_rate_limited_total",
                "HTTP 429 answers from the CRM.",
            )?,
            retries: counter(
                "woostream_crm_retries_total",
                "Requests retried, by cause (rate_limited, transient).",
                &["cause"],
            )?,
            dead_lettered: counter(
                "woostream_crm_dead_lettered_total",
                "Changes the CRM refused for good, by object.",
                &["object"],
            )?,
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "woostream_crm_event_to_crm_seconds",
                    "From the event reaching Kafka to the CRM having it.",
                )
                .buckets(vec![
                    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
                ]),
            )?,
            pending: IntGauge::new(
                "woostream_crm_pending",
                "Contacts and deals waiting to be sent.",
            )?,
            commits: IntCounter::new(
                "woostream_crm_commits_total",
                "Offset commits of the CRM sink.",
            )?,
            erased_skipped: IntCounter::new(
                "woostream_crm_erased_records_skipped_total",
                "Records sealed for a person erased since, skipped.",
            )?,
            erasures: counter(
                "woostream_crm_erasures_total",
                "Erasures of a customer key's contact, by outcome.",
                &["outcome"],
            )?,
            unreadable: IntCounter::new(
                "woostream_crm_unreadable_total",
                "Records that could not be decoded (kept in the dead-letter topic).",
            )?,
        };
        registry.register(Box::new(m.upserts.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.batch_size.clone()))?;
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.changes.clone()))?;
        registry.register(Box::new(m.coalescing.clone()))?;
        registry.register(Box::new(m.budget_remaining.clone()))?;
        registry.register(Box::new(m.rate_limited.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.dead_lettered.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.pending.clone()))?;
        registry.register(Box::new(m.commits.clone()))?;
        registry.register(Box::new(m.unreadable.clone()))?;
        registry.register(Box::new(m.erased_skipped.clone()))?;
        registry.register(Box::new(m.erasures.clone()))?;
        Ok(m)
    }
}
