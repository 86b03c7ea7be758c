//! Every role in one process: for a single machine, for development and for `make run`. With
//! no `kafka.bootstrap_servers` it starts the embedded mock cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use woostream_core::config::slack::{Priority, SlackChannel, SlackConfig, SlackRule};
use woostream_core::config::{Config, ShopConfig};
use woostream_core::kafka::{self, EmbeddedKafka};
use woostream_core::ops::{self, Readiness};

use crate::simulate::{self, Stats};

pub struct RunOptions {
    /// Post a simulated flash sale and exit when it is answered.
    pub simulate: Option<simulate::Options>,
    /// After the sale's summary, keep everything (the insight page too) up until a signal.
    pub keep_serving: bool,
}

/// The shop the simulator posts as, added when the configuration names none.
pub fn demo_shop(o: &simulate::Options) -> ShopConfig {
    ShopConfig {
        id: "flash-sale-demo".into(),
        source: o.source.clone(),
        secret: Some(o.secret.clone().into()),
        source_aliases: Vec::new(),
        secret_env: None,
        rest: None,
        require_topic_secrets: false,
        previous_secret: None,
    }
}

/// The demo shop's REST API: its history (what `woostream backfill` imports before the sale)
/// and its accounts, without the one the sale deletes — WooCommerce answers 404 for a deleted
/// account, and that answer is what lets the producer erase the person.
async fn demo_shop_api(
    sim: &simulate::Options,
) -> anyhow::Result<(crate::shop::ShopServer, woostream_core::config::ShopRest)> {
    let history = simulate::plan(
        &simulate::Options {
            orders: 0,
            ..sim.clone()
        },
        chrono::Utc::now(),
    );
    let mut objects = crate::shop::objects_of(&history);
    objects.insert(
        "products/reviews".into(),
        simulate::reviews(sim, chrono::Utc::now())
            .into_iter()
            .map(|r| (r["id"].as_i64().unwrap_or_default(), r))
            .collect(),
    );
    let (key, secret) = ("ck_demo_shop_history", "cs_demo_shop_history");
    let server =
        crate::shop::ShopServer::start(objects, key, secret, crate::shop::Behaviour::default())
            .await?;
    // The sale as it will be posted (the history is delivered by then).
    let sale = simulate::plan(
        &simulate::Options {
            history_customers: 0,
            ..sim.clone()
        },
        chrono::Utc::now(),
    );
    for w in sale.iter().filter(|w| w.topic == "customer.deleted") {
        if let Some(id) = serde_json::from_slice::<serde_json::Value>(&w.body)
            .ok()
            .and_then(|b| b["id"].as_i64())
        {
            server.remove("customers", id);
        }
    }
    let rest = woostream_core::config::ShopRest {
        url: Some(server.url.clone()),
        consumer_key: Some(key.into()),
        consumer_secret: Some(secret.into()),
        requests_per_second: 200.0,
        concurrency: 4,
        ..Default::default()
    };
    Ok((server, rest))
}

/// The demo shop's past, as a real shop's arrives: the simulated shop serves it through the
/// WooCommerce REST API and `woostream backfill` imports it (progress bars on a terminal),
/// before the sale's webhooks begin.
async fn backfill_history(
    config: &Config,
    bootstrap: &str,
    server: &crate::shop::ShopServer,
    sim: &mut simulate::Options,
    create_topics: bool,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    use woostream_producer::rest::backfill;
    let shop = config.shops[0].clone();
    println!(
        "The shop's history: {} orders of {} customers over {} days, imported through its REST API (woostream backfill).\nDrawn from BG/NBD r={:.3} alpha={:.2}d a={:.3} b={:.3} and Gamma-Gamma p={:.2} q={:.2} v={:.2} (CDNOW's estimates): what the fit below should recover.",
        server.count("orders"),
        server.count("customers"),
        sim.history_days,
        sim.process.bgnbd.r,
        sim.process.bgnbd.alpha,
        sim.process.bgnbd.a,
        sim.process.bgnbd.b,
        sim.process.gamma_gamma.p,
        sim.process.gamma_gamma.q,
        sim.process.gamma_gamma.v
    );
    let request = backfill::Request {
        since: None,
        resources: woostream_producer::rest::Resource::ALL.to_vec(),
        restart: false,
    };
    let outcomes = backfill::run(
        config,
        bootstrap,
        &shop,
        &request,
        create_topics,
        shutdown.clone(),
    )
    .await?;
    println!("{}\n", backfill::summary(&shop.id, &outcomes));
    // Delivered: the sale's webhooks carry only the sale.
    sim.history_customers = 0;
    Ok(())
}

/// What `make run` shows of Slack when no rules are configured: channels and rules a shop
/// would start with, posting nowhere (dry run) so that the demo needs no Slack.
pub fn demo_slack() -> SlackConfig {
    let channel = |name: &str| SlackChannel {
        name: name.into(),
        id: None,
        webhook_url: None,
        webhook_url_env: None,
    };
    let rule = |name: &str, kinds: &[&str], channel: &str, priority: Priority| SlackRule {
        name: name.into(),
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        channels: vec![channel.into()],
        priority,
        thread: true,
        ..SlackRule::default()
    };
    SlackConfig {
        dry_run: true,
        digest_after_secs: 5,
        channels: ["#orders", "#alerts", "#stock", "#customers", "#support"]
            .into_iter()
            .map(channel)
            .collect(),
        rules: vec![
            // A flash sale fails a hundred payments. Urgent alerts are never folded, so only
            // the large ones are urgent here, or the channel would post one a second for minutes.
            SlackRule {
                min_total: Some("2000".into()),
                ..rule(
                    "large failed payments",
                    &["payment_failed"],
                    "#alerts",
                    Priority::Urgent,
                )
            },
            rule(
                "failed payments",
                &["payment_failed"],
                "#alerts",
                Priority::Normal,
            ),
            rule(
                "big orders",
                &["high_value_order"],
                "#alerts",
                Priority::Normal,
            ),
            rule(
                "paid and refunded orders",
                &["order_paid", "order_refunded"],
                "#orders",
                Priority::Normal,
            ),
            rule(
                "stock",
                &["stock_low", "out_of_stock", "back_in_stock"],
                "#stock",
                Priority::Normal,
            ),
            SlackRule {
                segments: vec!["At Risk".into(), "Can't Lose Them".into()],
                vip: Some(true),
                ..rule(
                    "VIP at risk",
                    &["segment_changed"],
                    "#customers",
                    Priority::Urgent,
                )
            },
            SlackRule {
                segments: vec!["At Risk".into(), "Can't Lose Them".into()],
                ..rule(
                    "customers slipping away",
                    &["segment_changed"],
                    "#customers",
                    Priority::Low,
                )
            },
            rule("new VIPs", &["became_vip"], "#customers", Priority::Normal),
            rule(
                "due to buy again",
                &["replenishment_due"],
                "#customers",
                Priority::Normal,
            ),
            SlackRule {
                segments: vec!["Champions".into(), "Loyal Customers".into()],
                ..rule(
                    "good customers drifting",
                    &["churn_risk_changed"],
                    "#customers",
                    Priority::Normal,
                )
            },
            // The buyer's own words are personal: this rule says it may show them.
            SlackRule {
                personal: vec!["customer_note".into()],
                ..rule(
                    "customer questions",
                    &["customer_question"],
                    "#support",
                    Priority::Normal,
                )
            },
            rule(
                "reviews",
                &["review_posted", "negative_review"],
                "#support",
                Priority::Normal,
            ),
        ],
        ..SlackConfig::default()
    }
}

pub async fn run(
    mut config: Config,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The demo shop: its history comes through its REST API (a backfill), then the sale.
    let demo = opts.simulate.is_some() && config.shops.is_empty();
    let mut demo_api = None;
    if let Some(sim) = &opts.simulate {
        if config.shops.is_empty() {
            let mut shop = demo_shop(sim);
            if sim.history_customers > 0 {
                let erasing = simulate::Options {
                    erase_one: true,
                    ..sim.clone()
                };
                let (server, rest) = demo_shop_api(&erasing).await?;
                shop.rest = Some(rest);
                demo_api = Some(server);
            }
            config.shops.push(shop);
        }
        // A sale lasts seconds: refit often enough to watch the model adapt.
        config.enricher.refit_interval_secs = config.enricher.refit_interval_secs.min(10);
        if config.slack.rules.is_empty() {
            config.slack = demo_slack();
        }
        // No CRM configured: keep one in memory with HubSpot's semantics (dry run).
        if !config.crm.enabled {
            config.crm.enabled = true;
            config.crm.dry_run = true;
        }
    }
    let embedded;
    let (bootstrap, create_topics) = match &config.kafka.bootstrap_servers {
        Some(b) => (b.clone(), config.topics.create),
        None => {
            embedded = EmbeddedKafka::start(3, &config.topics)?;
            println!(
                "Kafka: embedded mock cluster (3 brokers) at {}; topics created: {}",
                embedded.bootstrap_servers(),
                config
                    .topics
                    .all()
                    .iter()
                    .map(|(_, t)| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            (embedded.bootstrap_servers().to_string(), false)
        }
    };
    let registry = prometheus::Registry::new();
    let readiness = Readiness::default();
    let insight_view =
        std::sync::Arc::new(std::sync::Mutex::new(woostream_insight::View::default()));
    let (ops_addr, ops_task) = ops::serve(
        &config.ops,
        registry.clone(),
        readiness.clone(),
        shutdown.clone(),
    )
    .await?;
    let (insight_addr, insight_task) = woostream_insight::serve(
        &config.insight,
        insight_view.clone(),
        &registry,
        shutdown.clone(),
    )
    .await?;
    let producer = woostream_producer::start(
        &config,
        &bootstrap,
        &registry,
        &readiness,
        shutdown.clone(),
        create_topics,
    )
    .await?;
    let enricher = woostream_enricher::runner::start_supervised(
        &config,
        &bootstrap,
        &registry,
        &readiness,
        shutdown.clone(),
        false,
    )
    .await?;
    // Shops with a REST API are reconciled too, as `woostream rest` does (the demo shop's
    // serves its history and confirms its deletions; the sale needs no reconciling).
    let reconcile = if !demo && config.shops.iter().any(|s| s.rest.is_some()) {
        let ready = readiness.condition("rest");
        let (c, b, r, s) = (
            config.clone(),
            bootstrap.clone(),
            registry.clone(),
            shutdown.clone(),
        );
        Some(tokio::spawn(async move {
            woostream_producer::rest::reconcile::run(&c, &b, &r, ready, false, create_topics, s)
                .await
        }))
    } else {
        None
    };
    let slack = if config.slack.rules.is_empty() {
        None
    } else {
        Some(
            woostream_sink::slack::runner::start(
                &config,
                &bootstrap,
                &registry,
                &readiness,
                shutdown.clone(),
                false,
            )
            .await?,
        )
    };
    let crm = if config.crm.enabled {
        Some(
            woostream_sink::crm::runner::start(
                &config,
                &bootstrap,
                &registry,
                &readiness,
                shutdown.clone(),
                false,
            )
            .await?,
        )
    } else {
        None
    };
    let insight = woostream_insight::start(
        &config,
        &bootstrap,
        insight_view,
        readiness.condition("insight"),
        shutdown.clone(),
    )
    .await?;
    let url = format!("http://{}{}", producer.addr, config.producer.webhook_path);
    println!("Producer: POST {url}");
    println!("Ops:      http://{ops_addr}/metrics  /healthz  /readyz");
    println!("Insight:  http://{}/insight", browsable(insight_addr));

    println!(
        "Enricher: {} (profiles → {}, alerts → {})",
        if enricher.transactional {
            "transactional"
        } else {
            "idempotent, ids and versions"
        },
        config.topics.profiles.name,
        config.topics.alerts.name
    );
    if let Some(s) = &slack {
        println!(
            "Slack:    {} rules to {} ({})",
            config.slack.rules.len(),
            config
                .slack
                .channels
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if s.recorded.is_some() {
                "dry run: printed here, posted nowhere"
            } else {
                "posting"
            }
        );
    }
    if let Some(c) = &crm {
        println!(
            "CRM:      {} ({} requests per 10 s, batches of {})",
            if c.store.is_some() {
                "dry run: an in-memory CRM with HubSpot's semantics".to_string()
            } else {
                format!("HubSpot at {}", config.crm.api_url)
            },
            config.crm.requests_per_10_seconds,
            config.crm.batch_size
        );
    }
    let Some(mut sim) = opts.simulate else {
        shutdown.cancelled().await;
        producer.task.await??;
        if let Some(r) = reconcile {
            r.await??;
        }
        enricher.wait().await?;
        if let Some(s) = slack {
            s.task.await??;
        }
        if let Some(c) = crm {
            c.task.await??;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for t in insight.threads {
                let _ = t.join();
            }
        })
        .await;
        let _ = insight_task.await;
        let _ = ops_task.await;
        return Ok(());
    };
    let sim_process = (sim.history_customers > 0).then_some(sim.process);
    let (outputs, decoder) = woostream_enricher::runner::Outputs::for_config(&config).await?;
    let view_stop = CancellationToken::new();
    let (view, view_thread) =
        woostream_enricher::view::follow(&config, &bootstrap, decoder.clone(), view_stop.clone())?;
    sim.url = url;
    sim.erase_one = demo;
    if let Some(server) = demo_api.as_ref().filter(|_| sim.history_customers > 0) {
        backfill_history(
            &config,
            &bootstrap,
            server,
            &mut sim,
            create_topics,
            &shutdown,
        )
        .await?;
    }
    println!(
        "Flash sale: {} orders from {} customers over {:?}, {} requests in flight\n",
        sim.orders, sim.customers, sim.duration, sim.concurrency
    );
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let sale_started = chrono::Utc::now();
    let ticker = {
        let (stats, view) = (stats.clone(), view.clone());
        let registry_for_ticker = registry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                println!("{}", stats.line(started.elapsed()));
                println!("    {}", insights_line(&view.lock().expect("view lock")));
                if let Some(line) = slack_line(&registry_for_ticker) {
                    println!("    {line}");
                }
                if let Some(line) = crm_line(&registry_for_ticker) {
                    println!("    {line}");
                }
            }
        })
    };
    let result = tokio::select! {
        r = simulate::run(&sim, stats.clone()) => r,
        _ = shutdown.cancelled() => Ok(()),
    };
    ticker.abort();
    result?;
    println!("{}", stats.line(started.elapsed()));
    let (p50, p99, max) = stats.latency_ms();
    println!("\nAll webhooks answered in {:.1}s (latency p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms).", started.elapsed().as_secs_f64());
    // The enricher works behind the webhooks; let it finish the sale's orders.
    let produced = {
        let (kafka, bootstrap, topic) = (
            config.kafka.clone(),
            bootstrap.clone(),
            config.topics.orders.name.clone(),
        );
        tokio::task::spawn_blocking(move || kafka::record_count(&kafka, &bootstrap, &topic))
            .await??
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while counter(
        &registry,
        "woostream_enricher_records_total",
        &config.topics.orders.name,
    ) < produced as f64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "\nEnriched {} order records.",
        counter(
            &registry,
            "woostream_enricher_records_total",
            &config.topics.orders.name
        )
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
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
    let model_producer = kafka::create_producer(&config.kafka, &bootstrap)?;
    let fit = |as_of| {
        woostream_enricher::model::topic::fit_and_publish(
            &config,
            &bootstrap,
            &decoder,
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
    match fit(None).await {
        Ok(models) => {
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
            // Fit on what the shop knew half a year before the sale, check on the half year up
            // to the day before it: the sale itself no model could foresee.
            if let Some(newest) = models
                .iter()
                .filter(|m| m.customers > 0)
                .filter_map(|m| m.as_of)
                .max()
            {
                let horizon = 182;
                let as_of = newest - chrono::Duration::days(horizon + 1);
                match woostream_enricher::model::topic::backtest_and_publish(
                    &config,
                    &bootstrap,
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
            }
        }
        Err(e) => println!("\nModel fit failed: {e:#}"),
    }
    if let Some(s) = &slack {
        print_slack(&config, &registry, s).await;
    }
    if let Some(c) = &crm {
        print_crm(&registry, c).await;
    }
    println!("\nRecords in Kafka:");
    for (key, t) in config.topics.all() {
        let (kafka, bootstrap, topic) = (config.kafka.clone(), bootstrap.clone(), t.name.clone());
        let n =
            tokio::task::spawn_blocking(move || kafka::record_count(&kafka, &bootstrap, &topic))
                .await?
                .unwrap_or(-1);
        println!("  {:<24} {:>7}   ({key})", t.name, n);
    }
    println!("\nInsight page: http://{}/insight", browsable(insight_addr));
    if opts.keep_serving {
        println!("Everything keeps running; Ctrl-C to stop.");
        shutdown.cancelled().await;
    }
    shutdown.cancel();
    producer.task.await?.context("producer shutdown")?;
    enricher.wait().await.context("enricher shutdown")?;
    if let Some(s) = slack {
        s.task.await?.context("Slack sink shutdown")?;
    }
    if let Some(c) = crm {
        c.task.await?.context("CRM sink shutdown")?;
    }
    view_stop.cancel();
    let _ = tokio::task::spawn_blocking(move || view_thread.join()).await;
    let _ = tokio::task::spawn_blocking(move || {
        for t in insight.threads {
            let _ = t.join();
        }
    })
    .await;
    let _ = insight_task.await;
    let _ = ops_task.await;
    Ok(())
}

/// Sum of a metric's series, optionally only those with `label` = `value`.
fn metric_sum(registry: &prometheus::Registry, name: &str, label: Option<(&str, &str)>) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            label.is_none_or(|(k, v)| m.get_label().iter().any(|l| l.name() == k && l.value() == v))
        })
        // A series is a counter or a gauge; the other reads 0.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum::<f64>()
        // An empty f64 sum is -0.
        + 0.0
}

/// One line: what the Slack sink has posted so far, per channel.
fn slack_line(registry: &prometheus::Registry) -> Option<String> {
    let families = registry.gather();
    let family = families
        .iter()
        .find(|f| f.name() == "woostream_slack_messages_total")?;
    let mut per_channel: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for m in family.get_metric() {
        let label = |k: &str| {
            m.get_label()
                .iter()
                .find(|l| l.name() == k)
                .map(|l| l.value().to_string())
                .unwrap_or_default()
        };
        let e = per_channel.entry(label("channel")).or_default();
        e.0 += m.get_counter().get_value();
        if label("outcome") == "digest" {
            e.1 += m.get_counter().get_value();
        }
    }
    let queued = metric_sum(registry, "woostream_slack_queue_depth", None);
    Some(format!(
        "slack: {} · {queued} queued",
        per_channel
            .iter()
            .map(|(c, (n, d))| format!("{c} {n} messages ({d} digests)"))
            .collect::<Vec<_>>()
            .join(" · ")
    ))
}

/// One line: what the CRM sink has written so far.
fn crm_line(registry: &prometheus::Registry) -> Option<String> {
    let upserts = |object: &str| {
        metric_sum(
            registry,
            "woostream_crm_upserts_total",
            Some(("object", object)),
        )
    };
    let requests = metric_sum(registry, "woostream_crm_requests_total", None);
    if requests == 0.0 && metric_sum(registry, "woostream_crm_pending", None) == 0.0 {
        return None;
    }
    Some(format!(
        "crm: {} contact and {} deal upserts in {requests} requests · {} waiting · {:.1} changes read per change sent · budget {} left in 10 s",
        upserts("contact"),
        upserts("deal"),
        metric_sum(registry, "woostream_crm_pending", None),
        metric_sum(registry, "woostream_crm_coalescing_ratio", None),
        metric_sum(
            registry,
            "woostream_crm_budget_remaining",
            Some(("window", "10s"))
        ),
    ))
}

/// Waits (at most 90 s) until `done` has stopped moving for 3 s and nothing is `queued`: a
/// sink's backlog drains after the sale's last event was read.
async fn wait_until_quiet(registry: &prometheus::Registry, done: &str, queued: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut quiet_since = Instant::now();
    let mut last = -1.0;
    while Instant::now() < deadline {
        let handled = metric_sum(registry, done, None);
        if handled != last || metric_sum(registry, queued, None) > 0.0 {
            last = handled;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the CRM holds after the sale: contacts, deals by stage, segments.
async fn print_crm(registry: &prometheus::Registry, crm: &woostream_sink::crm::runner::CrmSink) {
    wait_until_quiet(
        registry,
        "woostream_crm_upserts_total",
        "woostream_crm_pending",
    )
    .await;
    if let Some(line) = crm_line(registry) {
        println!("\n{line}");
    }
    let Some(store) = &crm.store else {
        return;
    };
    let store = store.lock().expect("CRM store");
    let mut stages: std::collections::BTreeMap<&str, usize> = Default::default();
    for d in store.deals.records.values() {
        *stages
            .entry(d.get("dealstage").map_or("?", String::as_str))
            .or_default() += 1;
    }
    let mut segments: std::collections::BTreeMap<&str, usize> = Default::default();
    for c in store.contacts.records.values() {
        *segments
            .entry(
                c.get("woo_rfm_segment")
                    .map_or("(no profile yet)", String::as_str),
            )
            .or_default() += 1;
    }
    let requests = metric_sum(registry, "woostream_crm_requests_total", None);
    let events = metric_sum(registry, "woostream_crm_events_total", None);
    println!(
        "\nCRM (dry run, HubSpot semantics): {} contacts, {} deals, {} deal→contact associations; {requests} API requests for {events} changes read from Kafka:",
        store.contacts.records.len(),
        store.deals.records.len(),
        store.associations.len()
    );
    println!("  deals by stage:");
    for (stage, n) in &stages {
        println!("    {stage:<22} {n:>6}");
    }
    println!("  contacts by RFM segment:");
    for (segment, n) in &segments {
        println!("    {segment:<22} {n:>6}");
    }
}

/// What each Slack channel received (dry run) or was sent.
async fn print_slack(
    config: &Config,
    registry: &prometheus::Registry,
    slack: &woostream_sink::slack::runner::SlackSink,
) {
    // Slack allows about one message a second per channel: the backlog takes a while.
    wait_until_quiet(
        registry,
        "woostream_slack_alerts_total",
        "woostream_slack_queue_depth",
    )
    .await;
    let Some(recorded) = &slack.recorded else {
        if let Some(line) = slack_line(registry) {
            println!("\n{line}");
        }
        return;
    };
    let recorded = recorded.lock().expect("dry-run log").clone();
    println!("\nSlack (dry run): what each channel would have received:");
    for c in &config.slack.channels {
        let messages: Vec<_> = recorded.iter().filter(|r| r.channel == c.name).collect();
        let alerts = metric_sum(
            registry,
            "woostream_slack_alerts_total",
            Some(("channel", &c.name)),
        );
        let digests = messages
            .iter()
            .filter(|m| m.message.text.contains(" in the last "))
            .count();
        let threaded = messages.iter().filter(|m| m.thread_ts.is_some()).count();
        println!(
            "  {:<12} {:>4} messages for {alerts} alerts ({digests} digests, {threaded} thread replies)",
            c.name,
            messages.len()
        );
        for m in messages.iter().take(3) {
            println!(
                "      {}",
                woostream_sink::slack::blocks::cut(&m.message.text, 150)
            );
        }
        if messages.len() > 3 {
            println!("      …");
        }
    }
}

/// One line: profiles, alerts and the segment distribution so far.
fn insights_line(v: &woostream_enricher::view::View) -> String {
    let segments: Vec<String> = v
        .segments()
        .iter()
        .map(|(s, n)| format!("{} {n}", s.name()))
        .collect();
    format!(
        "profiles {} · alerts {} · segments: {}",
        v.profiles.len(),
        v.alerts.len(),
        if segments.is_empty() {
            "—".into()
        } else {
            segments.join(" · ")
        }
    )
}

/// Sum of a counter's series whose `topic` label is `topic`.
fn counter(registry: &prometheus::Registry, name: &str, topic: &str) -> f64 {
    metric_sum(registry, name, Some(("topic", topic)))
}

pub fn describe_model(m: &woostream_core::insights::ShopModel) -> String {
    // 0: too few of the shop's orders to set a threshold of its own yet.
    let threshold = |v: f64| {
        if v > 0.0 {
            format!("{v:.2}")
        } else {
            "not set yet (too few orders)".into()
        }
    };
    format!(
        "{}: {} customers ({} repeat); BG/NBD {} r={:.4} alpha={:.2}d a={:.4} b={:.4}; Gamma-Gamma {} p={:.3} q={:.3} v={:.2}; VIP from CLV {}; p95 order {}; fitted in {:.3}s",
        m.shop_id,
        m.customers,
        m.repeat_customers,
        if m.bgnbd_fitted { "fitted" } else { "prior" },
        m.r,
        m.alpha,
        m.a,
        m.b,
        if m.gamma_gamma_fitted { "fitted" } else { "prior" },
        m.p,
        m.q,
        m.v,
        threshold(m.vip_clv_threshold),
        threshold(m.order_value_p95),
        m.fit_seconds
    )
}

/// A backtest for people: the fit, the totals, the calibration tables and the rankings.
pub fn describe_backtest(b: &woostream_core::insights::Backtest) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: fitted on {} customers ({} repeat) as of {}; BG/NBD r={:.4} alpha={:.2}d a={:.4} b={:.4}; Gamma-Gamma p={:.3} q={:.3} v={:.2}",
        b.shop_id,
        b.customers,
        b.repeat_customers,
        b.as_of.format("%Y-%m-%d %H:%M UTC"),
        b.r,
        b.alpha,
        b.a,
        b.b,
        b.p,
        b.q,
        b.v
    );
    if b.customers == 0 {
        let _ = writeln!(
            out,
            "  nothing to backtest: no customer had ordered by the cut-off"
        );
        return out;
    }
    let error = |p: f64, a: f64| {
        if a > 0.0 {
            format!("{:+.1} %", 100.0 * (p - a) / a)
        } else {
            "n/a".into()
        }
    };
    let _ = writeln!(
        out,
        "  next {} days: purchase days predicted {:.1}, actual {:.0} ({}); spend predicted {:.2}, actual {:.2} ({}); mean absolute error {:.3} per customer",
        b.horizon_days,
        b.predicted_purchases,
        b.actual_purchases,
        error(b.predicted_purchases, b.actual_purchases),
        b.predicted_spend,
        b.actual_spend,
        error(b.predicted_spend, b.actual_spend),
        b.mean_absolute_error
    );
    for (title, groups) in [
        ("by repeat purchases at the cut-off", &b.by_frequency),
        ("by decile of prediction", &b.deciles),
    ] {
        let _ = writeln!(out, "  {title}:  group  customers  predicted  actual");
        for g in groups {
            let _ = writeln!(
                out,
                "    {:>5}  {:>9}  {:>9.3}  {:>6.3}",
                g.group, g.customers, g.predicted, g.actual
            );
        }
    }
    let _ = writeln!(out, "  came back, by segment at the cut-off:");
    for s in &b.segments {
        let _ = writeln!(
            out,
            "    {:<20} {:>6} of {:>6} ({:.0} %)",
            s.segment,
            s.returned,
            s.customers,
            100.0 * s.returned as f64 / s.customers.max(1) as f64
        );
    }
    let _ = write!(
        out,
        "  ranking who came back (AUC, 0.5 = chance): expected purchases {:.3}; P(alive) among repeat buyers {:.3}",
        b.expected_purchases_auc, b.p_alive_auc
    );
    out
}

/// An address a browser can open: a wildcard listen address is reached on localhost.
fn browsable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

/// The most valuable repeat customer as their profile describes them: what the taste fields
/// say.
fn taste_line(v: &woostream_enricher::view::View) -> Option<String> {
    let p = v
        .profiles
        .values()
        .filter(|p| p.typical_interval_days.is_some())
        .max_by_key(|p| (p.clv_12_months, p.customer.clone()))?;
    let names = |l: &[woostream_core::insights::TasteEntry]| {
        l.iter()
            .take(3)
            .map(|e| {
                format!(
                    "{} ({} orders)",
                    e.name.clone().unwrap_or_else(|| format!("#{}", e.id)),
                    e.orders
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let due = p
        .replenishment
        .iter()
        .map(|r| {
            format!(
                "{} on {}{}",
                r.name
                    .clone()
                    .unwrap_or_else(|| format!("#{}", r.product_id)),
                r.due_at.format("%Y-%m-%d"),
                if r.announced { " (announced)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let with_next = v
        .profiles
        .values()
        .filter(|p| p.expected_next_purchase_at.is_some())
        .count();
    let with_due = v
        .profiles
        .values()
        .filter(|p| p.replenishment.iter().any(|r| r.due_at <= p.as_of))
        .count();
    Some(format!(
        "The most valuable repeat customer as their profile describes them (customer {}): {} · {} orders · CLV {}\n  buys most: {}\n  top products: {}\n  rhythm: every ~{:.0} days (mean {:.0}) · pays with {} · discounts on {:.0} % of orders · next purchase expected {}\n  due to buy again: {}\nProfiles with an expected next purchase: {with_next}; with a product due to be bought again: {with_due}.",
        p.customer,
        p.segment.name(),
        p.orders_count,
        p.clv_12_months.amount().round_dp(2),
        names(&p.top_categories),
        names(&p.top_products),
        p.typical_interval_days.unwrap_or_default(),
        p.mean_interval_days.unwrap_or_default(),
        p.preferred_payment_method.as_deref().unwrap_or("n/a"),
        100.0 * p.discount_share,
        p.expected_next_purchase_at
            .map_or("not within a year".into(), |t| t.format("%Y-%m-%d").to_string()),
        if due.is_empty() { "nothing yet".to_string() } else { due },
    ))
}
