//! Two installations on one Kafka (staging and production), told apart by `kafka.namespace`
//! alone: each writes and reads only its own topics and keeps its offsets in its own groups;
//! nothing lands in the topics or groups of an installation without a namespace. On Tansu.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::Message;
use woostream_core::contract::codec::Decoder;
use woostream_core::contract::enriched::CustomerProfile;
use woostream_tests::enricher::{committed, free_port, log_ends, spawn};
use woostream_tests::{config, fixture, read_topic_now, Post, Producer, Tansu};

async fn profiled_orders(config: &woostream_core::config::Config) -> BTreeSet<i64> {
    let decoder = Decoder::new();
    read_topic_now(config, "namespaces-check", &config.topics.profiles.name)
        .await
        .iter()
        .filter_map(|m| m.payload())
        .flat_map(|v| decoder.decode::<CustomerProfile>(v).unwrap().orders)
        .map(|o| o.order_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_installations_on_one_broker_see_nothing_of_each_other() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut installations = Vec::new();
    for (namespace, order_id) in [("staging", 910_001), ("production", 920_001)] {
        let mut c = config(&tansu.bootstrap);
        c.kafka.namespace = Some(namespace.into());
        c.apply_namespace();
        let producer = Producer::start(&c, true).await.unwrap();
        let port = free_port();
        let toml = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\nnamespace = \"{namespace}\"\n[enricher]\nrefit_interval_secs = 0\n[ops]\nlisten = \"127.0.0.1:{port}\"\n[log]\nformat = \"json\"\n",
            tansu.bootstrap
        );
        let mut enricher = spawn("enricher", &toml, namespace, port, dir.path());
        enricher.ready(Duration::from_secs(120)).await;
        let mut order: serde_json::Value =
            serde_json::from_slice(&fixture("woo_order_example.json")).unwrap();
        order["id"] = order_id.into();
        let body = serde_json::to_vec(&order).unwrap();
        assert_eq!(
            Post::signed("order.created", &body)
                .send(&producer.url)
                .await
                .0,
            200
        );
        installations.push((namespace, order_id, c, producer, enricher));
    }

    for (namespace, order_id, c, _, _) in &installations {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let orders = profiled_orders(c).await;
            if !orders.is_empty() {
                assert_eq!(
                    orders,
                    BTreeSet::from([*order_id]),
                    "{namespace} profiled another installation's order"
                );
                break;
            }
            assert!(Instant::now() < deadline, "{namespace}: no profile");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(c.topics.orders.name.starts_with(&format!("{namespace}.")));
    }
    let bootstrap = tansu.bootstrap.clone();
    let offsets = tokio::task::spawn_blocking(move || {
        [
            ("staging.woostream-enricher", "staging.woo.orders"),
            ("production.woostream-enricher", "production.woo.orders"),
            ("woostream-enricher", "woo.orders"),
            ("woostream-enricher", "staging.woo.orders"),
        ]
        .map(|(g, t)| (g, t, committed(&bootstrap, g, t, 6).values().sum::<i64>()))
    })
    .await
    .unwrap();
    for (group, topic, sum) in offsets {
        if group.starts_with(topic.split('.').next().unwrap())
            && topic.contains('.')
            && group.contains('.')
        {
            assert!(sum > 0, "{group} committed nothing on {topic}");
        } else {
            assert_eq!(
                sum, 0,
                "{group} committed on {topic}: a group outside the namespaces"
            );
        }
    }
    // Nothing was written where an installation without a namespace would read.
    let bootstrap = tansu.bootstrap.clone();
    let bare = tokio::task::spawn_blocking(move || {
        log_ends(&bootstrap, &["woo.orders", "woostream.customer-profiles"])
    })
    .await
    .unwrap();
    assert!(bare.is_empty(), "records outside the namespaces: {bare:?}");
    for (_, _, _, producer, mut enricher) in installations {
        producer.stop().await.unwrap();
        enricher.stop();
    }
}
