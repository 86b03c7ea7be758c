//! The periodic refit: the instance that owns orders partition 0 refits every shop's model.

use super::*;

/// Every `refit_interval_secs`, the instance that owns orders partition 0 refits all shops.
pub(super) fn spawn_refit(
    config: Config,
    bootstrap: String,
    decoder: Decoder,
    outputs: Outputs,
    leader: Arc<AtomicBool>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let producer = match kafka::create_producer(&config.kafka, &bootstrap) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "No model refits: cannot create a producer.");
                return;
            }
        };
        let interval = Duration::from_secs(config.enricher.refit_interval_secs);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if !leader.load(Ordering::Relaxed) {
                continue;
            }
            match models::fit_and_publish(
                &config,
                &bootstrap,
                &decoder,
                &producer,
                &outputs.model,
                &outputs.model_key,
            )
            .await
            {
                Ok(fitted) => {
                    metrics.fits.with_label_values(&["ok"]).inc();
                    tracing::info!(shops = fitted.len(), "Refitted the models.");
                }
                Err(e) => {
                    metrics.fits.with_label_values(&["error"]).inc();
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "Model refit failed; the current models stay."
                    );
                }
            }
        }
    });
}
