//! A broker that stalls for 20 s in the middle of a flash sale (Tansu frozen with SIGSTOP, then
//! resumed). librdkafka's idempotent producer can come out of such a stall in a fatal state
//! (ProducerFenced, out-of-order sequence) in which every later send fails; the producer role
//! must replace it, spool deliveries at once while the broker is known to be away, and drain the
//! spool as soon as the broker answers again — without a restart.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use woostream::simulate;
use woostream_tests::{config, header, read_topic_now, Producer, Tansu};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_order_reaches_kafka_after_a_broker_stall_without_a_restart() {
    let tansu = Arc::new(tokio::task::spawn_blocking(Tansu::start).await.unwrap());
    let spool = tempfile::tempdir().unwrap();
    let mut config = config(&tansu.bootstrap);
    config.producer.spool_dir = Some(spool.path().to_path_buf());
    let sim = simulate::Options {
        orders: 2_500,
        customers: 900,
        duration: Duration::from_secs(40),
        concurrency: 32,
        seed: 20,
        ..Default::default()
    };
    config.shops.push(woostream::all_in_one::demo_shop(&sim));
    let p = Producer::start(&config, true).await.unwrap();
    let plan = simulate::plan(&sim, chrono::Utc::now());
    let stats = Arc::new(simulate::Stats::default());
    let sale = tokio::spawn({
        let (sim, stats) = (
            simulate::Options {
                url: p.url.clone(),
                ..sim
            },
            stats.clone(),
        );
        async move { simulate::run(&sim, stats).await }
    });

    // Mid-sale, the broker stops answering for 20 s. The sleeps are the scenario, not a wait
    // for an event.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let before_stall = stats.sent.load(Relaxed);
    tansu.freeze();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during_stall = stats.sent.load(Relaxed) - before_stall;
    let spooled_during_stall = stats.spooled.load(Relaxed);
    tansu.thaw();
    let resumed = Instant::now();

    // The spool drains while the sale goes on, as soon as the broker answers.
    let deadline = resumed + Duration::from_secs(60);
    while p.metric("woostream_spool_pending_bytes", &[]) > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the spool still holds {} bytes a minute after the broker returned",
            p.metric("woostream_spool_pending_bytes", &[])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained_at = resumed.elapsed();

    sale.await.unwrap().unwrap();
    assert_eq!(
        stats.failed.load(Relaxed),
        0,
        "every delivery was answered 2xx, during the stall too"
    );
    // Each request waiting out the 10 s delivery timeout would let at most two rounds of
    // 32 concurrent requests through in 20 s; spooling at once lets the sale go on.
    assert!(
        spooled_during_stall > 2 * 32,
        "deliveries were spooled at once while the broker was known to be away: {spooled_during_stall} spooled, {during_stall} answered during the stall"
    );
    assert!(
        p.metric("woostream_spool_records_total", &[("direction", "drained")]) > 0.0,
        "the stall made the producer spool, and the spool drained"
    );
    let renewals = p.metric(
        "woostream_kafka_producer_renewals_total",
        &[("role", "producer")],
    );

    // Every acknowledged order (200 or 202) is in Kafka, with the same producer process
    // still running: records spooled after the first drain went too.
    let want = plan
        .iter()
        .filter(|w| w.topic.starts_with("order."))
        .count();
    let distinct: HashSet<(&str, &[u8])> = plan
        .iter()
        .filter(|w| w.topic.starts_with("order."))
        .map(|w| (w.topic.as_str(), w.body.as_slice()))
        .collect();
    assert_eq!(
        distinct.len(),
        want,
        "the plan's order deliveries are distinct"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.metric("woostream_spool_pending_bytes", &[]) > 0.0 {
        assert!(Instant::now() < deadline, "the spool drains after the sale");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records = read_topic_now(&config, "stall-check", "woo.orders").await;
    let events: HashSet<String> = records
        .iter()
        .filter_map(|m| header(m, "woostream-event-id").map(String::from))
        .collect();
    println!(
        "broker stall: {} deliveries, {} spooled ({spooled_during_stall} during the stall), spool empty {:.1} s after the broker returned, producer replaced {renewals} times, {} order records for {want} order deliveries",
        stats.sent.load(Relaxed),
        stats.spooled.load(Relaxed),
        drained_at.as_secs_f64(),
        records.len(),
    );
    assert_eq!(
        events.len(),
        want,
        "every acknowledged order delivery is in Kafka"
    );
    p.stop().await.unwrap();
}

/// The enricher's outputs live on a broker that stalls for longer than the delivery timeout
/// (librdkafka's mock cluster with a 30 s round trip on that broker; the inputs and the group
/// stay on the other one). The enricher stops on the failed deliveries, starts itself again
/// in-process, restores and catches up: the profiles and alerts are the same as in a run
/// without the stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enricher_starts_again_by_itself_after_a_stall_and_loses_nothing() {
    let records = woostream_tests::enricher::sale_records(400, 200, 17);
    let reference = enrich_on_mock_cluster(&records, false).await;
    let stalled = enrich_on_mock_cluster(&records, true).await;
    woostream_tests::enricher::assert_same_outcome("after a stall", &reference, &stalled);
}

async fn enrich_on_mock_cluster(
    records: &[woostream_producer::publish::Record],
    stall: bool,
) -> woostream_enricher::published::View {
    use rdkafka::mocking::{MockCluster, MockCoordinator};
    use woostream_tests::enricher::*;

    let cluster = MockCluster::new(2).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let mut config = run_config(&bootstrap, "stall", "enricher-stall");
    config.kafka.delivery_timeout_ms = 3_000;
    let outputs = [
        config.topics.profiles.name.clone(),
        config.topics.alerts.name.clone(),
    ];
    for (_, t) in config.topics.all() {
        let partitions = config.topics.partitions_of(t);
        cluster.create_topic(&t.name, partitions, 1).unwrap();
        let leader = if outputs.contains(&t.name) { 2 } else { 1 };
        for p in 0..partitions {
            cluster.partition_leader(&t.name, p, Some(leader)).unwrap();
        }
    }
    cluster
        .coordinator(MockCoordinator::Group(config.enricher.group_id.clone()), 1)
        .unwrap();
    let (first, second) = records.split_at(records.len() / 2);
    let mut produced = produce_all(&bootstrap, first).await;

    let registry = prometheus::Registry::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let enricher = woostream_enricher::runner::start_supervised(&woostream_tests::role_context(
        &config,
        &bootstrap,
        &registry,
        &woostream_core::ops::Readiness::default(),
        shutdown.clone(),
        false,
    ))
    .await
    .unwrap();
    woostream_tests::await_counter_in(&registry, "woostream_enricher_commits_total", 1.0).await;
    if stall {
        cluster
            .broker_round_trip_time(2, Duration::from_secs(30))
            .unwrap();
    }
    for (k, v) in produce_all(&bootstrap, second).await {
        *produced.entry(k).or_default() += v;
    }
    if stall {
        woostream_tests::await_counter_in(&registry, "woostream_enricher_restarts_total", 1.0)
            .await;
        cluster
            .broker_round_trip_time(2, Duration::from_millis(0))
            .unwrap();
    }
    let group = config.enricher.group_id.clone();
    tokio::task::spawn_blocking(move || {
        await_caught_up(
            &bootstrap,
            &group,
            &produced,
            Duration::from_secs(180),
            || true,
        )
    })
    .await
    .unwrap();
    shutdown.cancel();
    enricher
        .wait()
        .await
        .expect("the enricher shuts down cleanly");
    let (view, _, _) = tokio::task::spawn_blocking(move || read_view(&config))
        .await
        .unwrap();
    view
}
