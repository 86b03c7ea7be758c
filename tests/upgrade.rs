//! Rolling upgrades lose nothing: a record written by a newer release (a schema this build
//! has never seen) is never skipped. The role stops reading that partition before it, commits
//! nothing past it, and says why (`/readyz`, `woostream_partitions_held`, the log), across
//! restarts, until an upgraded build reads it. On Tansu, with the shipped defaults.

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use woostream_core::contract::codec::{fingerprint_of, Contract, SINGLE_OBJECT_MAGIC};
use woostream_core::contract::events::OrderEvent;
use woostream_core::kafka;
use woostream_tests::enricher::*;
use woostream_tests::Tansu;

fn await_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `record` (an order of this build's schema) as a newer release would write it: the same
/// order with a field this build does not know, appended to the top-level record.
fn as_newer_writer(record: &[u8]) -> Vec<u8> {
    let mut schema: serde_json::Value = serde_json::from_str(OrderEvent::schema().text).unwrap();
    schema["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "loyalty_tier", "type": "string", "default": ""
        }));
    let newer = apache_avro::Schema::parse_str(&schema.to_string()).unwrap();
    let mut out = SINGLE_OBJECT_MAGIC.to_vec();
    out.extend_from_slice(&fingerprint_of(&newer));
    out.extend_from_slice(&record[10..]);
    out.extend_from_slice(&[8, b'g', b'o', b'l', b'd']);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enricher_stops_at_a_newer_writers_order_and_commits_nothing_past_it_across_restarts() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let config = run_config(&bootstrap, "upgrade", "enricher-upgrade");
    kafka::ensure_topics(&config.kafka, &bootstrap, &config.topics, &config.retention)
        .await
        .unwrap();
    let records = sale_records(300, 0, 21);
    let produced = produce_all(&bootstrap, &records).await;
    let dir = tempfile::tempdir().unwrap();

    // The newer writer's order, and after it in the same partition an order of this build's
    // schema (another of the same customer's), which must wait behind it.
    let order = records
        .iter()
        .find(|r| r.topic == "woo.orders")
        .expect("an order record");
    let producer: FutureProducer = kafka::producer_config(&config.kafka, &bootstrap)
        .create()
        .unwrap();
    let newer = as_newer_writer(&order.value);
    let (partition, held_at) = producer
        .send(
            FutureRecord::to("woo.orders")
                .key(&order.key)
                .payload(&newer),
            Duration::from_secs(30),
        )
        .await
        .map(|d| (d.partition, d.offset))
        .unwrap();
    let (after_partition, after) = producer
        .send(
            FutureRecord::to("woo.orders")
                .key(&order.key)
                .payload(&order.value),
            Duration::from_secs(30),
        )
        .await
        .map(|d| (d.partition, d.offset))
        .unwrap();
    assert_eq!((after_partition, after), (partition, held_at + 1));

    tokio::task::spawn_blocking(move || {
        let dir = dir.path();
        let mut enricher = EnricherProcess::start(&config, "upgrade", dir);
        let held = |e: &EnricherProcess| {
            e.metric_with(
                "woostream_partitions_held",
                &[
                    ("role", "enricher"),
                    ("topic", "woo.orders"),
                    ("reason", "newer_writer"),
                ],
            )
        };
        await_until(
            "the enricher holds the partition",
            Duration::from_secs(120),
            || held(&enricher) == 1.0,
        );
        // Everything before the record is done and committed, nothing at or after it.
        let mut before = produced.clone();
        before.insert(("woo.orders".into(), partition), held_at);
        await_caught_up(
            &bootstrap,
            "enricher-upgrade",
            &before,
            Duration::from_secs(120),
            || enricher.exited().is_none(),
        );
        let offsets = committed(&bootstrap, "enricher-upgrade", "woo.orders", 6);
        assert_eq!(
            offsets.get(&partition),
            Some(&held_at),
            "committed past a newer writer's record"
        );
        assert!(
            !enricher.is_ready(),
            "a role that holds a partition is not ready"
        );
        let readyz = enricher.readyz();
        assert!(
            readyz.contains("\"reason\":\"newer_writer\"")
                && readyz.contains(&format!("\"offset\":{held_at}")),
            "/readyz says which record: {readyz}"
        );
        assert!(
            enricher.log_text().contains("written by a newer release"),
            "the log names the cause"
        );
        assert_eq!(
            enricher.metric_with(
                "woostream_enricher_unreadable_records_total",
                &[("topic", "woo.orders")]
            ),
            0.0,
            "a newer writer's record is not counted as unreadable (skipped)"
        );

        // A restart (a pod rescheduled mid-upgrade) meets the same record and stops again.
        enricher.stop();
        let mut again = EnricherProcess::start(&config, "upgrade", dir);
        await_until(
            "the restarted enricher holds the partition",
            Duration::from_secs(120),
            || held(&again) == 1.0,
        );
        let offsets = committed(&bootstrap, "enricher-upgrade", "woo.orders", 6);
        assert_eq!(
            offsets.get(&partition),
            Some(&held_at),
            "a restart committed past it"
        );
        again.stop();
    })
    .await
    .unwrap();
}
