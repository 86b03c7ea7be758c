//! The demo of `make run`: a simulated shop (its webhooks and its REST API) and the Slack
//! channels and rules a shop would start with, for a configuration that names none.

use tokio_util::sync::CancellationToken;
use woostream_core::config::slack::{Priority, SlackChannel, SlackConfig, SlackRule};
use woostream_core::config::{Config, ShopConfig};
use woostream_core::role::RoleContext;

use crate::simulate;

/// The demo shop, when the run simulates a sale and the configuration names no shop.
pub struct Demo {
    /// The simulated shop's REST API, serving its history (absent without one).
    pub api: Option<crate::shop::ShopServer>,
}

/// Fills in what a simulated sale needs and the configuration lacks: the shop (with its REST
/// API when it has a history), Slack rules, an in-memory CRM. Returns the demo shop when it
/// added one.
pub async fn prepare(
    config: &mut Config,
    sim: Option<&simulate::Options>,
) -> anyhow::Result<Option<Demo>> {
    let Some(sim) = sim else {
        return Ok(None);
    };
    let mut demo = None;
    if config.shops.is_empty() {
        let mut shop = demo_shop(sim);
        let mut api = None;
        if sim.history_customers > 0 {
            let erasing = simulate::Options {
                erase_one: true,
                ..sim.clone()
            };
            let (server, rest) = demo_shop_api(&erasing).await?;
            shop.rest = Some(rest);
            api = Some(server);
        }
        config.shops.push(shop);
        demo = Some(Demo { api });
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
    Ok(demo)
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
pub async fn backfill_history(
    ctx: &RoleContext,
    server: &crate::shop::ShopServer,
    sim: &mut simulate::Options,
) -> anyhow::Result<()> {
    let (config, bootstrap) = (&ctx.config, ctx.bootstrap.as_str());
    let (create_topics, shutdown): (bool, &CancellationToken) = (ctx.create_topics, &ctx.shutdown);
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
        resources: woostream_woo::rest::Resource::ALL.to_vec(),
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
