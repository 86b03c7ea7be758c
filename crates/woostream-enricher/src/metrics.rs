//! The enricher's Prometheus metrics.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub records: IntCounterVec,
    pub unreadable: IntCounterVec,
    pub erased_skipped: IntCounter,
    pub model_rescored: IntCounter,
    pub profiles: IntCounter,
    pub alerts: IntCounterVec,
    pub customers: IntGauge,
    pub profile_segments: IntCounterVec,
    pub products: IntGauge,
    pub partitions: IntGauge,
    pub commits: IntCounter,
    pub restore_seconds: Histogram,
    pub restored_records: IntCounterVec,
    pub model_version: IntGauge,
    pub fits: IntCounterVec,
    pub restarts: IntCounter,
    /// Input partitions assigned, by how their state came: `restored` (read from Kafka) or
    /// `kept` (still in memory from before the rebalance).
    pub partitions_assigned: IntCounterVec,
    /// Input partitions assigned and still waiting for their state to be restored.
    pub restoring: IntGauge,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            records: IntCounterVec::new(
                Opts::new(
                    "woostream_enricher_records_total",
                    "Input records processed, by topic.",
                ),
                &["topic"],
            )?,
            unreadable: IntCounterVec::new(
                Opts::new(
                    "woostream_enricher_unreadable_records_total",
                    "Input records that could not be decoded and were skipped, by topic.",
                ),
                &["topic"],
            )?,
            erased_skipped: IntCounter::new(
                "woostream_enricher_erased_orders_skipped_total",
                "Order records sealed for a person erased since, skipped.",
            )?,
            profiles: IntCounter::new(
                "woostream_enricher_profiles_total",
                "Customer profile versions written (tombstones included).",
            )?,
            alerts: IntCounterVec::new(
                Opts::new(
                    "woostream_enricher_alerts_total",
                    "Alerts written, by kind.",
                ),
                &["kind"],
            )?,
            profile_segments: IntCounterVec::new(
                Opts::new(
                    "woostream_enricher_profile_segments_total",
                    "Customer profile versions written, by the segment the customer is in after the change.",
                ),
                &["segment"],
            )?,
            customers: IntGauge::new(
                "woostream_enricher_customers",
                "Customers in state on this instance.",
            )?,
            products: IntGauge::new(
                "woostream_enricher_products",
                "Products with stock state on this instance.",
            )?,
            partitions: IntGauge::new(
                "woostream_enricher_assigned_partitions",
                "Input partitions assigned to this instance.",
            )?,
            commits: IntCounter::new(
                "woostream_enricher_commits_total",
                "Offset commits (or transactions) completed.",
            )?,
            restore_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "woostream_enricher_restore_seconds",
                    "Time to restore the state of newly assigned partitions.",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0]),
            )?,
            restored_records: IntCounterVec::new(
                Opts::new(
                    "woostream_enricher_restored_records_total",
                    "Records read to restore state, by topic.",
                ),
                &["topic"],
            )?,
            model_version: IntGauge::new(
                "woostream_enricher_model_version",
                "Newest model version seen (0: priors).",
            )?,
            fits: IntCounterVec::new(
                Opts::new("woostream_enricher_fits_total", "Model fits, by outcome."),
                &["outcome"],
            )?,
            model_rescored: IntCounter::new(
                "woostream_enricher_model_rescored_total",
                "Customers rescored because a new model arrived.",
            )?,
            restarts: IntCounter::new(
                "woostream_enricher_restarts_total",
                "Times the enricher stopped on a failure and was started again in-process.",
            )?,
            partitions_assigned: IntCounterVec::new(
                Opts::new(
                    "woostream_enricher_partitions_assigned_total",
                    "Input partitions assigned in rebalances, by how their state came: restored from Kafka, or kept in memory (the partition stayed with this instance).",
                ),
                &["state"],
            )?,
            restoring: IntGauge::new(
                "woostream_enricher_partitions_restoring",
                "Input partitions assigned and still waiting for their state to be restored (the instance is ready at 0).",
            )?,
        };
        registry.register(Box::new(m.records.clone()))?;
        registry.register(Box::new(m.unreadable.clone()))?;
        registry.register(Box::new(m.erased_skipped.clone()))?;
        registry.register(Box::new(m.profiles.clone()))?;
        registry.register(Box::new(m.alerts.clone()))?;
        registry.register(Box::new(m.customers.clone()))?;
        registry.register(Box::new(m.profile_segments.clone()))?;
        registry.register(Box::new(m.products.clone()))?;
        registry.register(Box::new(m.partitions.clone()))?;
        registry.register(Box::new(m.commits.clone()))?;
        registry.register(Box::new(m.restore_seconds.clone()))?;
        registry.register(Box::new(m.restored_records.clone()))?;
        registry.register(Box::new(m.model_version.clone()))?;
        registry.register(Box::new(m.fits.clone()))?;
        registry.register(Box::new(m.restarts.clone()))?;
        registry.register(Box::new(m.partitions_assigned.clone()))?;
        registry.register(Box::new(m.restoring.clone()))?;
        registry.register(Box::new(m.model_rescored.clone()))?;
        Ok(m)
    }
}
