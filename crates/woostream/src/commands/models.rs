//! `fit` and `backtest`: every shop's model, fitted from the profile topic (at a cut-off, and
//! checked against what followed).

use woostream_core::config::Config;
use woostream_core::telemetry;

use super::bootstrap;

pub(crate) async fn backtest(
    config: Config,
    as_of: chrono::DateTime<chrono::Utc>,
    horizon: u32,
) -> anyhow::Result<()> {
    telemetry::init(&config);
    let bootstrap = bootstrap(&config)?;
    if config.topics.create {
        woostream_core::kafka::first_contact(&config, &bootstrap, true).await?;
    }
    let reports =
        woostream_enricher::model::topic::backtest_and_publish(&config, &bootstrap, as_of, horizon)
            .await?;
    if reports.is_empty() {
        println!(
            "No profiles in {}: nothing to backtest.",
            config.topics.profiles.name
        );
    }
    for r in &reports {
        println!("{}", woostream::all_in_one::describe_backtest(r));
    }
    Ok(())
}

pub(crate) async fn fit(
    config: Config,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<()> {
    telemetry::init(&config);
    let bootstrap = bootstrap(&config)?;
    let (outputs, decoder) = woostream_enricher::runner::Outputs::for_config(&config).await?;
    let producer = woostream_core::kafka::create_producer(&config.kafka, &bootstrap)?;
    let models = woostream_enricher::model::topic::fit_and_publish(
        &config,
        &bootstrap,
        &decoder,
        &producer,
        &outputs.model,
        &outputs.model_key,
        as_of,
    )
    .await?;
    if models.is_empty() {
        println!(
            "No profiles in {}: nothing to fit.",
            config.topics.profiles.name
        );
    }
    for m in models {
        println!("{}", woostream::all_in_one::describe_model(&m));
    }
    Ok(())
}
