//! What moves records around once: the shop's history (`backfill`), its webhooks (`webhooks
//! sync`), the CRM's dead letters (`replay`) and properties (`crm setup`), a spool left behind
//! (`spool drain`), a whole installation (`repartition`).

use std::time::Duration;

use anyhow::Context;
use woostream_core::config::Config;
use woostream_core::{shutdown, telemetry};

use super::bootstrap;

pub(crate) async fn backfill(
    config: Config,
    shop: Option<String>,
    request: woostream_producer::rest::backfill::Request,
) -> anyhow::Result<()> {
    telemetry::init(&config);
    let bootstrap = bootstrap(&config)?;
    let shops: Vec<&woostream_core::config::ShopConfig> = config
        .shops
        .iter()
        .filter(|s| shop.as_ref().is_none_or(|id| &s.id == id))
        .filter(|s| s.rest.is_some() || shop.is_some())
        .collect();
    if shops.is_empty() {
        anyhow::bail!(match shop {
            Some(id) => format!("no shop {id:?} in the configuration"),
            None => "no shop has a [shops.rest] section: add the REST API's url, consumer_key and consumer_secret".into(),
        });
    }
    let prefixes: Vec<String> = config
        .shops
        .iter()
        .enumerate()
        .filter(|(_, s)| shops.iter().any(|x| x.id == s.id))
        .map(|(i, _)| format!("shops[{i}]."))
        .collect();
    config.check_secrets(&prefixes.iter().map(String::as_str).collect::<Vec<_>>())?;
    let shutdown = shutdown::on_signal();
    for shop in shops {
        let outcomes = woostream_producer::rest::backfill::run(
            &config,
            &bootstrap,
            shop,
            &request,
            config.topics.create,
            shutdown.clone(),
        )
        .await?;
        println!(
            "{}",
            woostream_producer::rest::backfill::summary(&shop.id, &outcomes)
        );
        if shutdown.is_cancelled() {
            println!("Stopped; run the same command again to resume.");
            return Ok(());
        }
    }
    println!(
        "Once the enricher has caught up (woostream_consumer_lag of its group near 0), run `woostream fit` with this configuration so the model reflects the history."
    );
    Ok(())
}

pub(crate) async fn webhooks_sync(
    config: Config,
    shop: Option<String>,
    dry_run: bool,
) -> anyhow::Result<()> {
    telemetry::init(&config);
    let mut synced = 0;
    for s in config
        .shops
        .iter()
        .filter(|s| shop.as_ref().is_none_or(|id| &s.id == id) && s.rest.is_some())
    {
        let delivery_url = s
            .rest
            .as_ref()
            .and_then(|r| r.delivery_url.clone())
            .ok_or_else(|| anyhow::anyhow!("shop {}: shops.rest.delivery_url is not set: the producer's public webhook URL", s.id))?;
        let secret = s
            .resolved_secret()
            .ok_or_else(|| anyhow::anyhow!("shop {}: the webhook secret cannot be read", s.id))?;
        let client = woostream_woo::rest::WooRest::for_shop(s)?;
        let changes =
            woostream_producer::rest::webhooks::sync(&client, &delivery_url, &secret, dry_run)
                .await?;
        println!(
            "shop {}{}:",
            s.id,
            if dry_run {
                " (dry run, nothing changed)"
            } else {
                ""
            }
        );
        for c in changes {
            println!("  {c}");
        }
        synced += 1;
    }
    anyhow::ensure!(synced > 0, "no shop with a [shops.rest] section matches");
    Ok(())
}

pub(crate) async fn replay(
    config: Config,
    filter: woostream_sink::crm::replay::Filter,
) -> anyhow::Result<()> {
    telemetry::init(&config);
    let bootstrap = bootstrap(&config)?;
    let summary =
        woostream_sink::crm::replay::replay(&config, &bootstrap, &filter, shutdown::on_signal())
            .await?;
    println!(
        "{}: {} dead letters, {} replayed before, {} selected{}.",
        config.topics.crm_dead_letter.name,
        summary.dead_letters,
        summary.already_replayed,
        summary.selected.len(),
        if summary.unreadable > 0 {
            format!(
                ", {} unreadable records (not replayable)",
                summary.unreadable
            )
        } else {
            String::new()
        }
    );
    for dl in &summary.selected {
        println!(
            "  {}  customer {}  {} after {} attempts: {}",
            dl.dead_letter_id,
            dl.customer,
            dl.http_status
                .map_or("no HTTP status".into(), |s| format!("HTTP {s}")),
            dl.attempts.len(),
            dl.reason
        );
    }
    if !filter.list_only && !summary.selected.is_empty() {
        println!(
            "Replayed: {} delivered, {} refused again (dead-lettered again), {} superseded (the CRM has a newer state; not sent).",
            summary.delivered, summary.refused_again, summary.superseded
        );
        if summary.refused_again > 0 {
            anyhow::bail!("{} records were refused again", summary.refused_again);
        }
    }
    Ok(())
}

pub(crate) async fn crm_setup(config: Config) -> anyhow::Result<()> {
    telemetry::init(&config);
    let done = woostream_hubspot::setup::set_up_hubspot(&config.crm).await?;
    for n in &done.created {
        println!(
            "created {} property {} ({})",
            n.object.as_str(),
            n.property.name,
            n.key
        );
    }
    println!(
        "{} properties created, {} present.",
        done.created.len(),
        done.present
    );
    for (status, stage) in &done.checked.unknown_stages {
        println!(
            "warning: pipeline {} has no stage {stage:?} (crm.deal_stages.{status}): deals of {status} orders will be dead-lettered until it exists",
            config.crm.pipeline
        );
    }
    let problems = &done.checked.problems;
    for p in problems {
        println!("not fixed: {}", p.describe());
    }
    if !problems.is_empty() {
        anyhow::bail!("{} problems need a person", problems.len());
    }
    Ok(())
}

/// `woostream repartition`: the plan, then (unless a dry run) the copy, topic by topic.
pub(crate) async fn repartition(from: Config, to: Config, dry_run: bool) -> anyhow::Result<()> {
    use woostream::repartition::{self, Action};
    telemetry::init(&from);
    let bootstrap = bootstrap(&from)?;
    if to.kafka.bootstrap_servers.as_deref() != Some(bootstrap.as_str()) {
        anyhow::bail!(
            "--to names another Kafka ({}): repartition copies within one cluster",
            to.kafka.bootstrap_servers.as_deref().unwrap_or("none")
        );
    }
    let steps = repartition::plan(&from.topics, &to.topics).map_err(anyhow::Error::msg)?;
    for s in &steps {
        let what = match s.action {
            Action::Copy => "copy   ",
            Action::Rebuilt => "rebuilt",
            Action::Skipped => "skip   ",
        };
        println!("{what} {} -> {}", s.from, s.to);
    }
    if dry_run {
        return Ok(());
    }
    woostream_core::kafka::ensure_topics(&to.kafka, &bootstrap, &to.topics, &to.retention)
        .await
        .context("creating the destination's topics")?;
    let started = std::time::Instant::now();
    let copied = tokio::task::spawn_blocking(move || {
        repartition::copy(&from, &to, &bootstrap, |c| {
            println!(
                "copied  {} -> {}: {} records in {:.1} s",
                c.step.from, c.step.to, c.records, c.seconds
            );
        })
    })
    .await
    .context("the copy thread")??;
    let records: u64 = copied.iter().map(|c| c.records).sum();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{records} records copied in {seconds:.1} s ({:.0} records/s). Start the enrichers of the destination; they rebuild every profile.",
        records as f64 / seconds.max(0.001)
    );
    Ok(())
}

/// `woostream spool drain`: a spool directory no producer runs on, into Kafka.
pub(crate) async fn spool_drain(
    config: Config,
    dir: Option<std::path::PathBuf>,
    wait: Duration,
) -> anyhow::Result<()> {
    telemetry::init(&config);
    let bootstrap = bootstrap(&config)?;
    let dir = dir
        .or_else(|| config.producer.spool_dir.clone())
        .ok_or_else(|| anyhow::anyhow!("--dir is not given and producer.spool_dir is not set"))?;
    let drained = woostream_producer::drain_spool_directory(&config, &bootstrap, &dir, wait)
        .await
        .with_context(|| format!("draining the spool in {}", dir.display()))?;
    println!(
        "{}: {} record(s) ({} bytes) sent to Kafka; the spool is empty.",
        dir.display(),
        drained.records,
        drained.pending_bytes_before
    );
    Ok(())
}
