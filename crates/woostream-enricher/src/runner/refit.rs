//! The periodic refit: the instance that owns orders partition 0 refits every shop's model.

use super::outputs::Outputs;
use crate::metrics::Metrics;
use crate::model::topic::{self as models, Models};
use rdkafka::error::KafkaError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use woostream_core::config::Config;
use woostream_core::contract::codec::Decoder;
use woostream_core::kafka;

/// Every `refit_interval_secs`, the instance that owns orders partition 0 refits all shops.
/// While a configured shop has no thresholds of its own yet (a fresh shop), it also refits
/// each time another `threshold_min_orders` orders were processed, so that a first flash sale
/// gets its high-value level within seconds instead of after an hour.
#[allow(clippy::too_many_arguments)]
pub(super) fn spawn_refit(
    config: Config,
    bootstrap: String,
    decoder: Decoder,
    outputs: Outputs,
    leader: Arc<AtomicBool>,
    metrics: Metrics,
    models: Arc<Models>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let producer = match kafka::renewing_producer(&config.kafka, &bootstrap, "enricher") {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "No model refits: cannot create a producer.");
                return;
            }
        };
        let interval = Duration::from_secs(config.enricher.refit_interval_secs);
        let check = interval.min(Duration::from_secs(5));
        let orders = metrics
            .records
            .with_label_values(&[config.topics.orders.name.as_str()]);
        let mut last_fit = Instant::now();
        let mut orders_at_last_fit = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(check) => {}
            }
            if !leader.load(Ordering::Relaxed) {
                continue;
            }
            let uninformed = config
                .shops
                .iter()
                .any(|s| models.get(&s.id).order_value_p95.is_none());
            let early = uninformed
                && orders.get() >= orders_at_last_fit + config.enricher.threshold_min_orders;
            if last_fit.elapsed() < interval && !early {
                continue;
            }
            last_fit = Instant::now();
            orders_at_last_fit = orders.get();
            let current = producer.current();
            match models::fit_and_publish(
                &config,
                &bootstrap,
                &decoder,
                &current,
                &outputs.model,
                &outputs.model_key,
                None,
            )
            .await
            {
                Ok(fitted) => {
                    metrics.fits.with_label_values(&["ok"]).inc();
                    tracing::info!(shops = fitted.len(), "Refitted the models.");
                }
                Err(e) => {
                    metrics.fits.with_label_values(&["error"]).inc();
                    // A producer that can no longer send is replaced before the next refit.
                    if let Some(k) = e.chain().find_map(|c| c.downcast_ref::<KafkaError>()) {
                        producer.renew_after_failure(&current, k);
                    }
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "Model refit failed; the current models stay."
                    );
                }
            }
        }
    });
}
