//! The long-running roles, each in its own process: `producer`, `enricher`, `slack run`,
//! `crm run`, `crm inbound`, `rest`, `insight`.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use woostream_core::config::Config;

use super::Process;
use crate::cli::SlackCommand;

pub(crate) async fn producer(config: Config) -> anyhow::Result<()> {
    let process = Process::start(config).await?;
    let running = woostream_producer::start(&process.ctx).await?;
    let result = running.task.await?;
    process.finish(result).await
}

pub(crate) async fn enricher(config: Config) -> anyhow::Result<()> {
    let process = Process::start(config).await?;
    let running = woostream_enricher::runner::start_supervised(&process.ctx).await?;
    let result = running.wait().await;
    // A fatal error ends the process: stop serving too.
    process.finish(result).await
}

pub(crate) async fn rest(config: Config, once: bool) -> anyhow::Result<()> {
    config.check_secrets(&["shops[", "schema_registry."])?;
    let process = Process::start(config).await?;
    process.ctx.watch_kafka("rest")?;
    // Ready once the first pass is done.
    let ready = process.ctx.readiness.condition("rest");
    let result = woostream_producer::rest::reconcile::run(&process.ctx, ready, once).await;
    process.finish(result).await
}

pub(crate) async fn insight(config: Config) -> anyhow::Result<()> {
    let view = Arc::new(Mutex::new(woostream_insight::View::default()));
    let process = Process::start(config).await?;
    let ctx = &process.ctx;
    ctx.watch_kafka("insight")?;
    let (page_addr, page_task) = woostream_insight::serve(
        &ctx.config.insight,
        view.clone(),
        &ctx.registry,
        ctx.shutdown.clone(),
    )
    .await?;
    if ctx.config.topics.create {
        woostream_core::kafka::first_contact(&ctx.config, &ctx.bootstrap, true).await?;
    }
    let ready = ctx.readiness.condition("insight");
    let running = woostream_insight::start(ctx, view, ready).await?;
    tracing::info!(listen = %page_addr, "Insight page at /insight.");
    ctx.shutdown.cancelled().await;
    let _ = tokio::task::spawn_blocking(move || {
        for t in running.threads {
            let _ = t.join();
        }
    })
    .await;
    let _ = page_task.await;
    process.finish(Ok(())).await
}

pub(crate) async fn crm(config: Config) -> anyhow::Result<()> {
    let process = Process::start(config).await?;
    let ready = process.ctx.readiness.condition("crm");
    let sink = woostream_sink::crm::runner::start(&process.ctx).await?;
    process.run_sink(ready, sink.task).await
}

pub(crate) async fn crm_inbound(config: Config) -> anyhow::Result<()> {
    let process = Process::start(config).await?;
    process.ctx.watch_kafka("crm-inbound")?;
    let ready = process.ctx.readiness.condition("crm inbound");
    let running = woostream_producer::crm_inbound::start(&process.ctx).await?;
    process.run_sink(ready, running.task).await
}

pub(crate) async fn slack(command: SlackCommand) -> anyhow::Result<()> {
    use woostream_sink::slack::{preview, rules::Rules};
    match command {
        SlackCommand::Run { config } => {
            let process = Process::start(config.load()?).await?;
            let ready = process.ctx.readiness.condition("slack");
            let sink = woostream_sink::slack::runner::start(&process.ctx).await?;
            process.run_sink(ready, sink.task).await
        }
        SlackCommand::Preview {
            config,
            event,
            example,
        } => {
            if let Some(kind) = example {
                let alert = preview::example(&kind).map_err(|e| anyhow::anyhow!(e))?;
                println!("{}", preview::alert_to_json(&alert));
                return Ok(());
            }
            let config = config.load()?;
            let path = event.expect("required unless --example");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let alert = preview::alert_from_json(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let rules =
                Rules::compile(&config.slack).map_err(|(k, m)| anyhow::anyhow!("{k}: {m}"))?;
            let admin = woostream_sink::slack::runner::admin_urls(&config).remove(&alert.shop_id);
            let previews = preview::preview(&rules, &alert, admin, chrono::Utc::now());
            if previews.is_empty() {
                println!("No rule matches this {} alert.", alert.kind.as_str());
            }
            for p in previews {
                println!(
                    "── rule {:?} → {} ({}){}",
                    p.rule,
                    p.channel,
                    p.priority,
                    p.skipped
                        .map(|s| format!(", not posted: {s}"))
                        .unwrap_or_default()
                );
                match p.message {
                    Ok(m) => println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"text": m.text, "blocks": m.blocks})
                        )?
                    ),
                    Err(e) => println!("cannot render: {e}"),
                }
            }
            Ok(())
        }
    }
}
