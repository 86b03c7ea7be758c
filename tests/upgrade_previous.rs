//! A rolling upgrade from the previous release, on Tansu: the previous release's binary is
//! built from git; a sale runs through its producer and enricher, then the producer is rolled
//! (a new writer before an old reader), then the enricher. Every order is in the profiles,
//! which equal a run of this build alone over the same input; no record was skipped or held.
//! (Its own test binary: building the previous release briefly puts its binary in `target/`.)

use std::collections::HashMap;
use std::time::Duration;

use woostream::simulate;
use woostream_tests::enricher::*;
use woostream_tests::{Post, Tansu, SECRET, SOURCE};

/// The commit before the work that this test came with: the release it upgrades from.
const PREVIOUS_RELEASE: &str = "c2c765bee97e14c6ef9019633ddf25dfb08b12db";

fn producer_toml(
    bootstrap: &str,
    webhook_port: u16,
    ops_port: u16,
    spool: &std::path::Path,
) -> String {
    format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n[producer]\nlisten = \"127.0.0.1:{webhook_port}\"\nspool_dir = \"{}\"\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\n[log]\nformat = \"json\"\n",
        spool.display()
    )
}

async fn post_all(url: &str, webhooks: &[simulate::Webhook]) {
    for w in webhooks {
        let (status, answer) = Post::signed(&w.topic, &w.body).send(url).await;
        assert!(
            (200..300).contains(&status),
            "{} answered {status}: {answer}",
            w.topic
        );
    }
}

fn shop_topics_now(bootstrap: &str) -> HashMap<(String, i32), i64> {
    log_ends(
        bootstrap,
        &["woo.orders", "woo.customers", "woo.products", "woo.reviews"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_from_the_previous_release_loses_nothing() {
    let previous = tokio::task::spawn_blocking(|| previous_release_binary(PREVIOUS_RELEASE))
        .await
        .unwrap();
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let sale = simulate::plan(
        &simulate::Options {
            orders: 400,
            customers: 150,
            history_customers: 100,
            seed: 27,
            ..simulate::Options::default()
        },
        chrono::Utc::now(),
    );
    let (first, rest) = sale.split_at(sale.len() / 2);
    let (second, third) = rest.split_at(rest.len() / 2);
    let upgraded = run_config(&bootstrap, "upgraded", "enricher-upgraded");
    let reference = run_config(&bootstrap, "reference", "enricher-reference");

    // The previous release: its producer creates the topics, its enricher follows.
    let (webhooks, ops) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{webhooks}/webhooks/woocommerce");
    let mut old_producer = spawn_binary(
        &previous,
        "producer",
        &producer_toml(&bootstrap, webhooks, ops, &spool),
        "old",
        ops,
        dir.path(),
    );
    old_producer.ready(Duration::from_secs(120)).await;
    woostream_core::kafka::ensure_topics(
        &upgraded.kafka,
        &bootstrap,
        &upgraded.topics,
        &upgraded.retention,
    )
    .await
    .unwrap();
    woostream_core::kafka::ensure_topics(
        &reference.kafka,
        &bootstrap,
        &reference.topics,
        &reference.retention,
    )
    .await
    .unwrap();
    let mut old_enricher =
        EnricherProcess::start_binary(&previous, &upgraded, "upgraded", dir.path());
    old_enricher.ready(Duration::from_secs(120)).await;
    post_all(&url, first).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        await_caught_up(
            &b,
            "enricher-upgraded",
            &shop_topics_now(&b),
            Duration::from_secs(300),
            || true,
        )
    })
    .await
    .unwrap();

    // Rolled: the producer first (this build writes, the previous release's enricher reads).
    old_producer.stop();
    let (webhooks, ops) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{webhooks}/webhooks/woocommerce");
    let mut producer = spawn(
        "producer",
        &producer_toml(&bootstrap, webhooks, ops, &spool),
        "new",
        ops,
        dir.path(),
    );
    producer.ready(Duration::from_secs(120)).await;
    post_all(&url, second).await;

    // Then the enricher, mid-stream.
    old_enricher.stop();
    let mut enricher = EnricherProcess::start(&upgraded, "upgraded", dir.path());
    post_all(&url, third).await;
    let produced = tokio::task::spawn_blocking({
        let b = bootstrap.clone();
        move || shop_topics_now(&b)
    })
    .await
    .unwrap();
    let b = bootstrap.clone();
    let (enricher, produced) = tokio::task::spawn_blocking(move || {
        await_caught_up(
            &b,
            "enricher-upgraded",
            &produced,
            Duration::from_secs(300),
            || enricher.exited().is_none(),
        );
        (enricher, produced)
    })
    .await
    .unwrap();
    assert_eq!(
        enricher.metric("woostream_partitions_held"),
        0.0,
        "a record was held"
    );
    assert_eq!(
        enricher.metric("woostream_enricher_unreadable_records_total"),
        0.0,
        "a record was skipped"
    );

    // This build alone over the same input.
    let mut alone = EnricherProcess::start(&reference, "reference", dir.path());
    let b = bootstrap.clone();
    let alone = tokio::task::spawn_blocking(move || {
        await_caught_up(
            &b,
            "enricher-reference",
            &produced,
            Duration::from_secs(300),
            || alone.exited().is_none(),
        );
        alone
    })
    .await
    .unwrap();
    let (expected, _, _) = read_view(&reference);
    let (view, _, _) = read_view(&upgraded);
    let orders = sale
        .iter()
        .filter(|w| w.topic.starts_with("order."))
        .count();
    assert!(
        expected.profiles.len() > 100,
        "{} profiles for {orders} order deliveries",
        expected.profiles.len()
    );
    assert_same_outcome("rolled from the previous release", &expected, &view);
    println!(
        "upgrade from {}: {} order deliveries over both builds, {} profiles equal to this build's alone",
        &PREVIOUS_RELEASE[..8],
        orders,
        view.profiles.len()
    );
    drop((enricher, alone, producer));
}
