//! The transactional path on librdkafka's mock cluster (Tansu has no transactions): the
//! enricher initialises a transactional producer, adds the input offsets to each transaction
//! and commits it; a fenced producer (a zombie, after another instance took its transactional
//! id) stops the instance instead of writing on. The mock cluster neither fences by itself nor
//! stores transactional offsets, so the fencing answer is injected as a real broker gives it.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio_util::sync::CancellationToken;
use woostream_core::config::{Config, Transactions};
use woostream_core::ops::Readiness;
use woostream_enricher::runner::{self, Running};
use woostream_tests::await_counter_in as await_counter;
use woostream_tests::enricher::*;

async fn start(
    config: &Config,
    instance: &str,
) -> (Running, CancellationToken, prometheus::Registry) {
    let mut config = config.clone();
    config.enricher.instance_id = Some(instance.into());
    let shutdown = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let bootstrap = config.kafka.bootstrap_servers.clone().unwrap();
    let running = runner::start(&woostream_tests::role_context(
        &config,
        &bootstrap,
        &registry,
        &Readiness::default(),
        shutdown.clone(),
        false,
    ))
    .await
    .expect("the enricher starts");
    (running, shutdown, registry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_outputs_with_offsets_and_a_fenced_zombie_stops() {
    let cluster = MockCluster::new(3).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let mut config = run_config(&bootstrap, "tx", "enricher-tx");
    config.enricher.transactions = Transactions::On;
    for (_, t) in config.topics.all() {
        cluster
            .create_topic(&t.name, config.topics.partitions_of(t), 1)
            .unwrap();
    }
    let records = sale_records(600, 300, 5);
    let (first, second) = records.split_at(records.len() / 2);
    let first_count = produce_all(&bootstrap, first).await.values().sum::<i64>() as f64;

    let (a, a_shutdown, a_metrics) = start(&config, "one").await;
    assert!(
        a.transactional,
        "the mock cluster serves transactions, so the enricher uses them"
    );
    await_counter(&a_metrics, "woostream_enricher_records_total", first_count).await;
    await_counter(&a_metrics, "woostream_enricher_commits_total", 1.0).await;
    let (view, _, _) = {
        let c = config.clone();
        tokio::task::spawn_blocking(move || read_view(&c))
            .await
            .unwrap()
    };
    assert!(
        !view.profiles.is_empty() && !view.alerts.is_empty(),
        "committed transactions are readable"
    );

    // The broker answers the next transaction's end as it does to a zombie.
    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    );
    let second_count = produce_all(&bootstrap, second).await.values().sum::<i64>() as f64;
    let zombie = tokio::time::timeout(Duration::from_secs(120), a.wait())
        .await
        .expect("the zombie stops by itself");
    let err = format!("{:#}", zombie.expect_err("a fenced commit is fatal"));
    assert!(
        err.to_lowercase().contains("fenced"),
        "stopped because fenced: {err}"
    );
    a_shutdown.cancel();

    // The instance that took over the transactional id carries on with everything.
    let (b, b_shutdown, b_metrics) = start(&config, "one").await;
    assert!(b.transactional);
    await_counter(&b_metrics, "woostream_enricher_records_total", second_count).await;
    await_counter(&b_metrics, "woostream_enricher_commits_total", 1.0).await;
    b_shutdown.cancel();
    b.wait()
        .await
        .expect("the live instance shuts down cleanly");
}

/// A broker that begins transactions but never ends them (Tansu 0.6 has no EndTxn): the
/// shipped `transactions = "auto"` must find that out at start — by committing its probe, not
/// by initialising — and run on without transactions instead of dying at its first commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_runs_without_transactions_on_a_broker_that_never_ends_them() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let mut config = run_config(&bootstrap, "auto", "enricher-auto");
    config.enricher.transactions = Transactions::Auto;
    for (_, t) in config.topics.all() {
        cluster
            .create_topic(&t.name, config.topics.partitions_of(t), 1)
            .unwrap();
    }
    cluster
        .apiversion(RDKafkaApiKey::EndTxn, None, None)
        .unwrap();
    let records = sale_records(200, 100, 3);
    let count = produce_all(&bootstrap, &records)
        .await
        .values()
        .sum::<i64>() as f64;

    let (running, shutdown, metrics) = start(&config, "auto").await;
    assert!(
        !running.transactional,
        "a broker that cannot end a transaction is not transactional"
    );
    await_counter(&metrics, "woostream_enricher_records_total", count).await;
    await_counter(&metrics, "woostream_enricher_commits_total", 1.0).await;
    shutdown.cancel();
    running
        .wait()
        .await
        .expect("the enricher runs and stops cleanly");

    // "on" is an explicit promise: the same broker stops the start, naming the probe topic.
    config.enricher.transactions = Transactions::On;
    let err = runner::start(&woostream_tests::role_context(
        &config,
        &bootstrap,
        &prometheus::Registry::new(),
        &Readiness::default(),
        CancellationToken::new(),
        false,
    ))
    .await
    .err()
    .expect("transactions = on refuses a broker without EndTxn");
    let err = format!("{err:#}");
    assert!(
        err.contains(&config.topics.transactions_probe.name),
        "the error names the probe: {err}"
    );
}
