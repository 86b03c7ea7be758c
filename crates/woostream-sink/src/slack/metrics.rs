//! The Slack sink's Prometheus metrics.

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct Metrics {
    /// Messages by channel and outcome (posted, digest, dead_lettered).
    pub messages: IntCounterVec,
    /// Alerts by channel and outcome (posted, digested, dead_lettered, skipped, duplicate).
    pub alerts: IntCounterVec,
    pub digests: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub retries: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    pub behind_seconds: GaugeVec,
    pub latency: Histogram,
    pub commits: IntCounter,
    pub unreadable: IntCounter,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let m = Metrics {
            messages: counter(
                "woostream_slack_messages_total",
                "Slack messages, by channel and outcome.",
                &["channel", "outcome"],
            )?,
            alerts: counter(
                "woostream_slack_alerts_total",
                "Alerts handled, by channel and outcome.",
                &["channel", "outcome"],
            )?,
            digests: counter(
                "woostream_slack_digests_total",
                "Digest messages posted, by channel.",
                &["channel"],
            )?,
            rate_limited: counter(
                "woostream_slack_rate_limited_total",
                "HTTP 429 answers, by channel.",
                &["channel"],
            )?,
            retries: counter(
                "woostream_slack_retries_total",
                "Retried posts after transient errors, by channel and error.",
                &["channel", "error"],
            )?,
            queue_depth: IntGaugeVec::new(
                Opts::new(
                    "woostream_slack_queue_depth",
                    "Alerts waiting to be posted, by channel.",
                ),
                &["channel"],
            )?,
            behind_seconds: GaugeVec::new(
                Opts::new(
                    "woostream_slack_channel_behind_seconds",
                    "How long the oldest alert waiting for a channel has waited since it was written.",
                ),
                &["channel"],
            )?,
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "woostream_slack_event_to_slack_seconds",
                    "From the alert's occurrence in the shop to its Slack message.",
                )
                .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
            )?,
            commits: IntCounter::new(
                "woostream_slack_commits_total",
                "Offset commits of the alerts topic.",
            )?,
            unreadable: IntCounter::new(
                "woostream_slack_unreadable_alerts_total",
                "Alert records that could not be decoded (kept in the dead-letter topic).",
            )?,
        };
        registry.register(Box::new(m.messages.clone()))?;
        registry.register(Box::new(m.alerts.clone()))?;
        registry.register(Box::new(m.digests.clone()))?;
        registry.register(Box::new(m.rate_limited.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.queue_depth.clone()))?;
        registry.register(Box::new(m.behind_seconds.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.commits.clone()))?;
        registry.register(Box::new(m.unreadable.clone()))?;
        Ok(m)
    }
}
