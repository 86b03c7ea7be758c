//! A simulated flash sale through the running roles (`woostream run --simulate`): the shop's
//! history first (through its REST API), then the sale's webhooks with a live line a second,
//! then what came of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use woostream_core::contract::codec::Decoder;
use woostream_core::kafka;
use woostream_core::role::RoleContext;
use woostream_enricher::model::synthetic::PurchaseProcess;
use woostream_enricher::runner::Outputs;

use super::demo::{self, Demo};
use super::summary::{
    counter, crm_line, describe_backtest, describe_model, insights_line, print_crm, print_slack,
    slack_line, taste_line,
};
use super::Roles;
use crate::simulate::{self, Stats};

pub(super) struct Sale<'a> {
    pub ctx: &'a RoleContext,
    pub roles: &'a Roles,
    /// The demo shop, when the run added it (its history, its deleted account).
    pub demo: Option<&'a Demo>,
}

/// The sale's own reader of the profiles and alerts (the live line and the summary).
pub(super) struct ViewFollower {
    stop: CancellationToken,
    thread: std::thread::JoinHandle<()>,
}

impl ViewFollower {
    pub async fn close(self) {
        self.stop.cancel();
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

type SharedView = Arc<std::sync::Mutex<woostream_enricher::published::View>>;

impl Sale<'_> {
    /// Runs the sale and prints its summary; the view it followed the profiles with is
    /// closed by the caller once the roles have stopped (as every other reader of the
    /// topics).
    pub async fn run(&self, mut sim: simulate::Options) -> anyhow::Result<ViewFollower> {
        let ctx = self.ctx;
        let config = &ctx.config;
        let sim_process = (sim.history_customers > 0).then_some(sim.process);
        let (outputs, decoder) = Outputs::for_config(config).await?;
        let view_stop = CancellationToken::new();
        let (view, view_thread) = woostream_enricher::published::follow(
            config,
            &ctx.bootstrap,
            decoder.clone(),
            view_stop.clone(),
        )?;
        sim.url = self.roles.webhook_url(config);
        sim.erase_one = self.demo.is_some();
        if let Some(server) = self.demo.and_then(|d| d.api.as_ref()) {
            if sim.history_customers > 0 {
                demo::backfill_history(ctx, server, &mut sim).await?;
            }
        }
        let sale_started = chrono::Utc::now();
        let view_follower = ViewFollower {
            stop: view_stop,
            thread: view_thread,
        };
        let posted = self.post(&sim, &view).await;
        let summary = match posted {
            Ok(()) => {
                self.summarise(&view, &outputs, &decoder, sale_started, sim_process)
                    .await
            }
            Err(e) => Err(e),
        };
        match summary {
            Ok(()) => Ok(view_follower),
            Err(e) => {
                view_follower.close().await;
                Err(e)
            }
        }
    }

    /// Posts the sale's webhooks, printing a line a second until every one is answered.
    async fn post(&self, sim: &simulate::Options, view: &SharedView) -> anyhow::Result<()> {
        println!(
            "Flash sale: {} orders from {} customers over {:?}, {} requests in flight\n",
            sim.orders, sim.customers, sim.duration, sim.concurrency
        );
        let stats = Arc::new(Stats::default());
        let started = Instant::now();
        let ticker = {
            let (stats, view) = (stats.clone(), view.clone());
            let registry = self.ctx.registry.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    println!("{}", stats.line(started.elapsed()));
                    println!("    {}", insights_line(&view.lock().expect("view lock")));
                    if let Some(line) = slack_line(&registry) {
                        println!("    {line}");
                    }
                    if let Some(line) = crm_line(&registry) {
                        println!("    {line}");
                    }
                }
            })
        };
        let result = tokio::select! {
            r = simulate::run(sim, stats.clone()) => r,
            _ = self.ctx.shutdown.cancelled() => Ok(()),
        };
        ticker.abort();
        result?;
        println!("{}", stats.line(started.elapsed()));
        let (p50, p99, max) = stats.latency_ms();
        println!("\nAll webhooks answered in {:.1}s (latency p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms).", started.elapsed().as_secs_f64());
        Ok(())
    }

    /// What came of the sale: segments and alerts, the models and a backtest, what Slack and
    /// the CRM received, the records in every topic.
    async fn summarise(
        &self,
        view: &SharedView,
        outputs: &Outputs,
        decoder: &Decoder,
        sale_started: chrono::DateTime<chrono::Utc>,
        sim_process: Option<PurchaseProcess>,
    ) -> anyhow::Result<()> {
        self.wait_for_enricher().await?;
        print_profiles(view);
        self.fit(outputs, decoder, sale_started, sim_process)
            .await?;
        let (config, registry) = (&self.ctx.config, &self.ctx.registry);
        if let Some(s) = &self.roles.slack {
            print_slack(config, registry, s).await;
        }
        if let Some(c) = &self.roles.crm {
            print_crm(registry, c).await;
        }
        self.print_records().await
    }

    /// The enricher works behind the webhooks: waits (two minutes at most) until it has
    /// processed every order record the sale produced.
    async fn wait_for_enricher(&self) -> anyhow::Result<()> {
        let config = &self.ctx.config;
        let produced = {
            let (kafka, bootstrap, topic) = (
                config.kafka.clone(),
                self.ctx.bootstrap.clone(),
                config.topics.orders.name.clone(),
            );
            tokio::task::spawn_blocking(move || kafka::record_count(&kafka, &bootstrap, &topic))
                .await??
        };
        let enriched = || {
            counter(
                &self.ctx.registry,
                "woostream_enricher_records_total",
                &config.topics.orders.name,
            )
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while enriched() < produced as f64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("\nEnriched {} order records.", enriched());
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }

    /// Fits the models (on the history alone too, for the demo shop), prints them beside the
    /// parameters the history was drawn from, and backtests the half year before the sale.
    async fn fit(
        &self,
        outputs: &Outputs,
        decoder: &Decoder,
        sale_started: chrono::DateTime<chrono::Utc>,
        sim_process: Option<PurchaseProcess>,
    ) -> anyhow::Result<()> {
        let (config, bootstrap) = (&self.ctx.config, self.ctx.bootstrap.as_str());
        let demo = self.demo.is_some();
        let model_producer = kafka::create_producer(&config.kafka, bootstrap)?;
        let fit = |as_of| {
            woostream_enricher::model::topic::fit_and_publish(
                config,
                bootstrap,
                decoder,
                &model_producer,
                &outputs.model,
                &outputs.model_key,
                as_of,
            )
        };
        if demo && sim_process.is_some() {
            // The history alone, as the shop knew it the moment the sale began.
            if let Ok(models) = fit(Some(sale_started)).await {
                println!(
                    "\nModels fitted on the history alone (woostream fit --as-of {}):",
                    sale_started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
                for m in &models {
                    println!("  {}", describe_model(m));
                }
            }
        }
        let models = match fit(None).await {
            Ok(models) => models,
            Err(e) => {
                println!("\nModel fit failed: {e:#}");
                return Ok(());
            }
        };
        println!("\nModels fitted from the profiles (woostream fit, as of the newest event):");
        for m in &models {
            println!("  {}", describe_model(m));
        }
        if let Some(p) = sim_process.filter(|_| demo) {
            println!(
                "  simulated: BG/NBD r={:.4} alpha={:.2}d a={:.4} b={:.4}; Gamma-Gamma p={:.3} q={:.3} v={:.2} (the history's true parameters; the sale's orders come on top)",
                p.bgnbd.r, p.bgnbd.alpha, p.bgnbd.a, p.bgnbd.b, p.gamma_gamma.p, p.gamma_gamma.q, p.gamma_gamma.v
            );
        }
        // Fit on what the shop knew half a year before the sale, check on the half year up to
        // the day before it: the sale itself no model could foresee.
        let Some(newest) = models
            .iter()
            .filter(|m| m.customers > 0)
            .filter_map(|m| m.as_of)
            .max()
        else {
            return Ok(());
        };
        let horizon = 182;
        let as_of = newest - chrono::Duration::days(horizon + 1);
        match woostream_enricher::model::topic::backtest_and_publish(
            config,
            bootstrap,
            as_of,
            horizon as u32,
        )
        .await
        {
            Ok(reports) => {
                println!(
                    "\nBacktest (woostream backtest --as-of {} --horizon {horizon}):",
                    as_of.format("%Y-%m-%d")
                );
                for r in &reports {
                    println!("{}", describe_backtest(r));
                }
            }
            Err(e) => println!("\nBacktest failed: {e:#}"),
        }
        Ok(())
    }

    async fn print_records(&self) -> anyhow::Result<()> {
        let config = &self.ctx.config;
        println!("\nRecords in Kafka:");
        for (key, t) in config.topics.all() {
            let (kafka, bootstrap, topic) = (
                config.kafka.clone(),
                self.ctx.bootstrap.clone(),
                t.name.clone(),
            );
            let n = tokio::task::spawn_blocking(move || {
                kafka::record_count(&kafka, &bootstrap, &topic)
            })
            .await?
            .unwrap_or(-1);
            println!("  {:<24} {:>7}   ({key})", t.name, n);
        }
        Ok(())
    }
}

/// The customers by segment, their taste, and the alerts by kind.
fn print_profiles(view: &SharedView) {
    let v = view.lock().expect("view lock");
    println!(
        "\nCustomer segments ({} customers with a paid order):",
        v.segments().values().sum::<usize>()
    );
    for (segment, n) in v.segments() {
        println!("  {:<20} {:>6}", segment.name(), n);
    }
    if let Some(line) = taste_line(&v) {
        println!("\n{line}");
    }
    println!(
        "\nAlerts ({} distinct, {} repeats dropped):",
        v.alerts.len(),
        v.repeated_alerts
    );
    for (kind, n) in v.alert_kinds() {
        println!("  {:<22} {:>6}", kind.as_str(), n);
    }
}
