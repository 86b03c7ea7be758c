//! `make bench-backfill`: a backfill's own cost, beside its limit measured in the same run.
//! Prints; asserts nothing about time.
//!
//! The simulated shop's REST server holds a history of orders (no rate limit, no failures);
//! `woostream backfill`'s pipeline (in this process, release build) pages through it and
//! produces every object to Tansu with checkpoints — orders/s; and a plain paginated download
//! of the same orders (GET page after page, parse, nothing else) — orders/s, the most any
//! backfill could do against this server.

use std::time::Instant;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use woostream::shop::{objects_of, Behaviour, ShopServer};
use woostream::simulate;
use woostream_core::config::ShopRest;
use woostream_producer::rest::backfill::{self, Request};
use woostream_tests::Tansu;
use woostream_woo::rest::{Resource, WooRest};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    orders: usize,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = simulate::plan(
        &simulate::Options {
            orders: 0,
            // CDNOW's process gives about three orders per customer.
            history_customers: args.orders / 3,
            customers: args.orders / 10,
            ..simulate::Options::default()
        },
        chrono::Utc::now(),
    );
    let objects = objects_of(&plan);
    let orders = objects["orders"].len();
    let (key, secret) = ("ck_bench", "cs_bench");
    let shop = ShopServer::start(objects, key, secret, Behaviour::default()).await?;
    let tansu = tokio::task::spawn_blocking(Tansu::start).await?;
    let mut config = woostream_tests::config(&tansu.bootstrap);
    let mut shop_config = config.shops[0].clone();
    shop_config.rest = Some(ShopRest {
        url: Some(shop.url.clone()),
        consumer_key: Some(key.into()),
        consumer_secret: Some(secret.into()),
        requests_per_second: 1000.0,
        concurrency: 4,
        ..ShopRest::default()
    });
    config.shops[0] = shop_config.clone();
    println!(
        "simulated shop: {orders} orders, {} customers, {} products; broker: Tansu 0.6.0 memory://",
        shop.count("customers"),
        shop.count("products")
    );

    // The limit: the same orders downloaded page after page, parsed, nothing else.
    let client = WooRest::for_shop(&shop_config)?;
    let started = Instant::now();
    let mut downloaded = 0;
    for page in 1.. {
        let p = client
            .list(
                Resource::Orders.endpoint(),
                &Resource::Orders.backfill_query(None),
                page,
            )
            .await?;
        downloaded += p.items.len();
        if p.items.len() < 100 {
            break;
        }
    }
    let download_secs = started.elapsed().as_secs_f64();
    let download_rate = downloaded as f64 / download_secs;
    println!(
        "plain paginated download: {downloaded} orders in {download_secs:.1} s = {download_rate:.0} orders/s"
    );

    // woostream's backfill of the same orders: normalised, encoded, produced, checkpointed.
    let request = Request {
        since: None,
        resources: vec![Resource::Orders],
        restart: true,
    };
    let started = Instant::now();
    let outcomes = backfill::run(
        &config,
        &tansu.bootstrap,
        &shop_config,
        &request,
        true,
        CancellationToken::new(),
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let produced = outcomes[0].produced;
    let rate = produced as f64 / secs;
    println!(
        "woostream backfill (orders, no rate limit): {produced} orders in {secs:.1} s = {rate:.0} orders/s (start-up and checkpoints included)"
    );
    println!(
        "ratio backfill / plain download: {:.0} %",
        100.0 * rate / download_rate
    );
    Ok(())
}
