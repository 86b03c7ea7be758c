//! Scaling producers in during a Kafka incident strands nothing. Three producers take a sale's
//! deliveries while the broker is away (each answers 2xx from its disk spool). Two are scaled
//! away while it is still away: one whose termination grace outlasts the incident holds on and
//! drains before it exits; one whose grace runs out leaves its volume behind, and
//! `woostream spool drain` empties that volume once the broker is back (refusing a directory a
//! running producer owns). Every 2xx is in Kafka. On Tansu, with the shipped defaults (sealing on).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use woostream_core::contract::codec::Decoder;
use woostream_core::contract::events::OrderEvent;
use woostream_tests::enricher::woostream_cli;
use woostream_tests::{config, fixture, read_topic_now, Post, Producer, Tansu, SECRET, SOURCE};

/// Posts order `id` and returns whether it was acknowledged (2xx).
async fn post_order(url: &str, id: i64) -> bool {
    let mut order: serde_json::Value =
        serde_json::from_slice(&fixture("woo_order_example.json")).unwrap();
    order["id"] = id.into();
    let body = serde_json::to_vec(&order).unwrap();
    let (status, _) = Post::signed("order.created", &body).send(url).await;
    (200..300).contains(&status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn producers_scaled_in_during_a_kafka_incident_leave_every_acknowledged_order_in_kafka() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let spool_of = |i: usize| dirs[i].path().join("spool");
    let mut base = config(&tansu.bootstrap);
    base.kafka.delivery_timeout_ms = 5_000;
    let mut producers = Vec::new();
    for (i, grace) in [(0, 20), (1, 3), (2, 120)] {
        let mut c = base.clone();
        c.producer.spool_dir = Some(spool_of(i));
        c.producer.shutdown_drain_secs = grace;
        producers.push(Producer::start(&c, i == 0).await.unwrap());
    }

    // The sale: 10 orders per producer while Kafka answers, 20 per producer while it is away.
    let mut acknowledged = BTreeSet::new();
    let mut id = 880_000;
    for round in 0..30 {
        if round == 10 {
            tansu.freeze();
        }
        for p in &producers {
            id += 1;
            if post_order(&p.url, id).await {
                acknowledged.insert(id);
            }
        }
    }
    assert_eq!(
        acknowledged.len(),
        90,
        "every delivery answered 2xx, spooled or not"
    );
    let spooled = |p: &Producer| p.metric("woostream_spool_pending_bytes", &[]);
    for p in &producers {
        assert!(
            spooled(p) > 0.0,
            "the incident left deliveries in every spool"
        );
    }

    // Scaled in to one while Kafka is still away.
    let survivor = producers.remove(0);
    let short_grace = producers.remove(0);
    let long_grace = producers.remove(0);
    let holding = tokio::spawn(async move {
        let started = Instant::now();
        long_grace.stop().await.unwrap();
        started.elapsed()
    });
    short_grace.stop().await.unwrap();
    let stranded: u64 = std::fs::read_dir(spool_of(1))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("segment-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        stranded > 100,
        "a producer whose grace ran out leaves its volume behind"
    );
    assert!(
        !holding.is_finished(),
        "a producer with grace left holds on while Kafka is away"
    );

    let config_path = dirs[1].path().join("drain.toml");
    std::fs::write(
        &config_path,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n[log]\nformat = \"json\"\n",
            tansu.bootstrap
        ),
    )
    .unwrap();
    // A directory a running producer owns is refused.
    let owned = spool_of(0).display().to_string();
    let (ok, out) = {
        let path = config_path.clone();
        tokio::task::spawn_blocking(move || {
            woostream_cli(
                &["spool", "drain", "--dir", &owned, "--wait", "5"],
                &path,
                Duration::from_secs(60),
            )
        })
        .await
        .unwrap()
    };
    assert!(!ok && out.contains("in use by another producer"), "{out}");

    // The broker returns: the holding producer drains and exits, the survivor drains by
    // itself, and the stranded volume is drained by `woostream spool drain`.
    let away_at = Instant::now();
    tansu.thaw();
    let held_for = holding.await.unwrap();
    assert_eq!(
        std::fs::read_dir(spool_of(2))
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("segment-")
                && e.as_ref().unwrap().metadata().unwrap().len() > 20)
            .count(),
        0,
        "the holding producer exited with its spool empty"
    );
    let stranded_dir = spool_of(1).display().to_string();
    let (ok, out) = {
        let path = config_path.clone();
        tokio::task::spawn_blocking(move || {
            woostream_cli(
                &["spool", "drain", "--dir", &stranded_dir],
                &path,
                Duration::from_secs(120),
            )
        })
        .await
        .unwrap()
    };
    assert!(ok && out.contains("the spool is empty"), "{out}");
    let drained_at = away_at.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while spooled(&survivor) > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the survivor's spool did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    survivor.stop().await.unwrap();

    let decoder = Decoder::new();
    let in_kafka: BTreeSet<i64> = read_topic_now(&base, "scale-down-check", "woo.orders")
        .await
        .iter()
        .filter_map(|m| rdkafka::Message::payload(m))
        .map(|v| decoder.decode::<OrderEvent>(v).unwrap().order_id)
        .collect();
    let missing: Vec<&i64> = acknowledged.difference(&in_kafka).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in Kafka: {missing:?}"
    );
    println!(
        "scale-in during a Kafka incident: {} orders acknowledged, {stranded} bytes stranded on one volume; the holding producer exited {:.1} s after it was stopped, every volume empty {:.1} s after the broker returned",
        acknowledged.len(),
        held_for.as_secs_f64(),
        drained_at.as_secs_f64()
    );
}
