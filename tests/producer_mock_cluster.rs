//! The producer against librdkafka's mock cluster (3 brokers, in-process, injected errors):
//! what WooCommerce is answered and what lands in Kafka, for good and bad deliveries.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::Message;
use woostream_core::config::Config;
use woostream_core::contract::codec::Decoder;
use woostream_core::contract::events::{CustomerKey, IngestDeadLetter, OrderEvent};
use woostream_core::headers;
use woostream_core::privacy::CustomerHasher;
use woostream_tests::*;

fn cluster(config: &Config) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let c = MockCluster::new(3).expect("mock cluster");
    for (_, t) in config.topics.all() {
        c.create_topic(&t.name, config.topics.partitions_of(t), 1)
            .expect("topic");
    }
    c
}

fn setup() -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    Config,
) {
    let mut config = config("placeholder:1");
    let c = cluster(&config);
    config.kafka.bootstrap_servers = Some(c.bootstrap_servers());
    (c, config)
}

async fn read(config: &Config, topic: &str, n: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let (b, t) = (
        config.kafka.bootstrap_servers.clone().unwrap(),
        topic.to_string(),
    );
    tokio::task::spawn_blocking(move || read_records(&b, &t, n, Duration::from_secs(30)))
        .await
        .unwrap()
}

async fn count(config: &Config, topic: &str) -> i64 {
    let (b, t) = (
        config.kafka.bootstrap_servers.clone().unwrap(),
        topic.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        woostream_core::kafka::record_count(&Default::default(), &b, &t).expect("record count")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn an_accepted_order_is_in_kafka_keyed_by_its_customer_with_headers() {
    let (_cluster, config) = setup();
    let p = Producer::start(&config, false).await.unwrap();
    let body = fixture("woo_order_example.webhook_body.json");
    let post = Post {
        delivery_id: Some("d3adb33f"),
        ..Post::signed("order.created", &body)
    };
    let (status, text) = post.send(&p.url).await;
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["status"], "accepted");

    let records = read(&config, "woo.orders", 1).await;
    assert_eq!(records.len(), 1);
    let m = &records[0];
    let d = Decoder::new();
    let key: CustomerKey = d.decode(m.key().unwrap()).unwrap();
    assert_eq!(
        key.customer,
        format!(
            "guest:{}",
            CustomerHasher::for_shop(&config, &config.shops[0].id)
                .email_hash("john.doe@example.com")
                .unwrap()
        )
    );
    let event: OrderEvent = d.decode(m.payload().unwrap()).unwrap();
    assert_eq!(
        event.envelope.event_id,
        answer["event_id"].as_str().unwrap()
    );
    assert_eq!(event.order.unwrap().total.to_string(), "29.35");
    assert_eq!(header(m, headers::WC_TOPIC), Some("order.created"));
    assert_eq!(header(m, headers::SHOP), Some("eu"));
    assert_eq!(header(m, headers::DELIVERY_ID), Some("d3adb33f"));
    assert_eq!(
        header(m, headers::CORRELATION_ID),
        Some(event.envelope.correlation_id.as_str())
    );
    assert_eq!(
        p.metric(
            "woostream_webhook_requests_total",
            &[("outcome", "accepted"), ("topic", "order.created")]
        ),
        1.0
    );
    assert_eq!(
        p.metric(
            "woostream_kafka_produce_latency_seconds",
            &[("topic", "woo.orders")]
        ),
        1.0
    );
    p.stop().await.unwrap();
}

#[tokio::test]
async fn the_ping_gets_exactly_200_and_produces_nothing() {
    let (_cluster, config) = setup();
    let p = Producer::start(&config, false).await.unwrap();
    let ping = Post::ping();
    assert_eq!(ping.send(&p.url).await.0, 200);
    // Then a real order: it must be the first and only record anywhere.
    let body = fixture("woo_order_example.webhook_body.json");
    assert_eq!(
        Post::signed("order.updated", &body).send(&p.url).await.0,
        200
    );
    let records = read(&config, "woo.orders", 1).await;
    assert_eq!(
        header(&records[0], headers::WC_TOPIC),
        Some("order.updated")
    );
    assert_eq!(count(&config, "woo.orders").await, 1);
    assert_eq!(count(&config, "woostream.dlq.ingest").await, 0);
    assert_eq!(
        p.metric("woostream_webhook_requests_total", &[("outcome", "ping")]),
        1.0
    );
}

#[tokio::test]
async fn missing_wrong_or_foreign_signatures_get_401_and_are_counted() {
    let (_cluster, config) = setup();
    let p = Producer::start(&config, false).await.unwrap();
    let body = fixture("woo_order_example.webhook_body.json");
    let unsigned = Post {
        secret: None,
        ..Post::signed("order.created", &body)
    };
    let wrong = Post {
        secret: Some("not-the-secret"),
        ..Post::signed("order.created", &body)
    };
    // Another shop's source with a secret no shop has.
    let foreign = Post {
        source: Some("https://other-shop.example/"),
        secret: Some("another-shops-secret"),
        ..Post::signed("order.created", &body)
    };
    let mut answers = Vec::new();
    for post in [unsigned, wrong, foreign] {
        let (status, text) = post.send(&p.url).await;
        assert_eq!(status, 401, "{text}");
        assert!(!text.contains("john"), "no body in the answer");
        answers.push(text);
    }
    // One answer for every cause: an unknown source is not told apart from a bad signature.
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "the same 401 for every cause: {answers:?}"
    );
    // Without a source header, the secret alone identifies the shop.
    let sourceless = Post {
        source: None,
        ..Post::signed("order.created", &body)
    };
    assert_eq!(sourceless.send(&p.url).await.0, 200);
    assert_eq!(
        p.metric("woostream_webhook_source_mismatch_total", &[]),
        0.0
    );
    // A source the shop is not configured with (WooCommerce names the host of the request that
    // fired the hook: WP-CLI, cron, www. or http://) with the shop's own signature: the event
    // is the shop's, kept, and counted as a mismatch, never refused.
    let moved = Post {
        source: Some("https://www.shop-fired-from-cron.example/"),
        ..Post::signed("order.updated", &body)
    };
    assert_eq!(moved.send(&p.url).await.0, 200);
    assert_eq!(
        p.metric("woostream_webhook_source_mismatch_total", &[("shop", "eu")]),
        1.0
    );
    assert_eq!(
        p.metric("woostream_webhook_signature_failures_total", &[]),
        3.0
    );
    assert_eq!(
        p.metric(
            "woostream_webhook_signature_failures_total",
            &[("reason", "bad_signature"), ("shop", "eu")]
        ),
        1.0
    );
    assert_eq!(
        p.metric(
            "woostream_webhook_signature_failures_total",
            &[("reason", "unknown_source")]
        ),
        1.0
    );
    assert_eq!(count(&config, "woo.orders").await, 2);
}

/// The source header is unsigned: a delivery naming one shop and signed by another is that
/// other shop's (it was refused before), and junk naming a shop is counted under the shop it
/// names while that shop's own deliveries go on.
#[tokio::test]
async fn a_source_header_is_a_claim_the_signature_decides() {
    let (_cluster, mut config) = setup();
    let mut us = config.shops[0].clone();
    us.id = "us".into();
    us.source = "https://us-shop.example/".into();
    us.secret = Some("us-webhook-secret".into());
    config.shops.push(us);
    let p = Producer::start(&config, false).await.unwrap();
    let body = fixture("woo_order_example.webhook_body.json");
    // Fired by "us" under the host name of "eu" (one WordPress multisite, or a copied site).
    let us_under_eu = Post {
        secret: Some("us-webhook-secret"),
        ..Post::signed("order.created", &body)
    };
    assert_eq!(us_under_eu.send(&p.url).await.0, 200);
    let records = read(&config, "woo.orders", 1).await;
    assert_eq!(header(&records[0], headers::SHOP), Some("us"));
    assert_eq!(
        p.metric("woostream_webhook_source_mismatch_total", &[("shop", "us")]),
        1.0
    );
    // Junk naming "eu": refused, counted as a claim of eu's; eu's own delivery passes.
    let junk = Post {
        secret: Some("made-up"),
        ..Post::signed("order.created", &body)
    };
    assert_eq!(junk.send(&p.url).await.0, 401);
    assert_eq!(
        Post::signed("order.updated", &body).send(&p.url).await.0,
        200
    );
    assert_eq!(
        p.metric(
            "woostream_webhook_signature_failures_total",
            &[("reason", "bad_signature"), ("shop", "eu")]
        ),
        1.0
    );
    assert_eq!(
        p.metric(
            "woostream_webhook_requests_total",
            &[("shop", "eu"), ("outcome", "accepted")]
        ),
        1.0
    );
    assert_eq!(count(&config, "woo.orders").await, 2);
}

/// `webhooks sync` gives each webhook its topic's secret: a body signed for one topic does not
/// verify under another, which closes the re-labelled `{"id":N}` deletion for good once the
/// shop requires it; until then the shop-wide secret still passes and is counted.
#[tokio::test]
async fn a_body_signed_with_its_topics_secret_verifies_as_that_topic_only() {
    use woostream_woo::signature::topic_secret;
    let (_cluster, mut config) = setup();
    config.shops[0].require_topic_secrets = true;
    let p = Producer::start(&config, false).await.unwrap();
    let body = br#"{"id":42}"#;
    let product_secret = topic_secret(SECRET, "product.deleted");
    let as_product = Post {
        secret: Some(&product_secret),
        ..Post::signed("product.deleted", body)
    };
    assert_ne!(as_product.send(&p.url).await.0, 401);
    // The same signed body re-labelled as a customer's deletion.
    let relabelled = Post {
        topic: Some("customer.deleted"),
        ..as_product
    };
    assert_eq!(relabelled.send(&p.url).await.0, 401);
    // The shop-wide secret signs nothing once topic secrets are required.
    assert_eq!(
        Post::signed("customer.deleted", body).send(&p.url).await.0,
        401
    );
    assert_eq!(
        p.metric(
            "woostream_webhook_signature_failures_total",
            &[("shop", "eu"), ("reason", "bad_signature")]
        ),
        2.0
    );
    let order = fixture("woo_order_example.webhook_body.json");
    let order_secret = topic_secret(SECRET, "order.created");
    let signed_for_order = Post {
        secret: Some(&order_secret),
        ..Post::signed("order.created", &order)
    };
    assert_eq!(signed_for_order.send(&p.url).await.0, 200);
    p.stop().await.unwrap();

    // Not required (the default): the shop-wide secret passes, counted, so an operator sees
    // when every webhook carries its topic's.
    config.shops[0].require_topic_secrets = false;
    let p = Producer::start(&config, false).await.unwrap();
    assert_eq!(
        Post::signed("order.updated", &order).send(&p.url).await.0,
        200
    );
    assert_eq!(signed_for_order.send(&p.url).await.0, 200);
    assert_eq!(
        p.metric(
            "woostream_webhook_shop_wide_signatures_total",
            &[("shop", "eu")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_rotated_secret_and_the_previous_one_both_verify_until_the_previous_is_removed() {
    use woostream_woo::signature::topic_secret;
    let (_cluster, mut config) = setup();
    // Mid-rotation: the pods have the new secret, WooCommerce's webhooks still the old one
    // (SECRET), shop-wide and per topic.
    let new_secret = "rotated-in-5a7e0c";
    config.shops[0].secret = Some(new_secret.into());
    config.shops[0].previous_secret = Some(SECRET.into());
    let p = Producer::start(&config, false).await.unwrap();
    let order = fixture("woo_order_example.webhook_body.json");
    let old_topic = topic_secret(SECRET, "order.created");
    let new_topic = topic_secret(new_secret, "order.created");
    fn signed<'a>(secret: &'a str, body: &'a [u8]) -> Post<'a> {
        Post {
            secret: Some(secret),
            ..Post::signed("order.created", body)
        }
    }
    for (secret, expected) in [
        (SECRET, 200),
        (old_topic.as_str(), 200),
        (new_secret, 200),
        (new_topic.as_str(), 200),
        ("someone-elses", 401),
    ] {
        assert_eq!(
            signed(secret, &order).send(&p.url).await.0,
            expected,
            "{secret}"
        );
    }
    assert_eq!(
        p.metric(
            "woostream_webhook_previous_secret_signatures_total",
            &[("shop", "eu")]
        ),
        2.0,
        "the two deliveries signed with the previous secret"
    );
    p.stop().await.unwrap();

    // Rotation done: the previous secret is removed and signs nothing.
    config.shops[0].previous_secret = None;
    let p = Producer::start(&config, false).await.unwrap();
    assert_eq!(signed(SECRET, &order).send(&p.url).await.0, 401);
    assert_eq!(signed(&old_topic, &order).send(&p.url).await.0, 401);
    assert_eq!(signed(&new_topic, &order).send(&p.url).await.0, 200);
}

#[tokio::test]
async fn bad_input_is_kept_in_the_dead_letter_topic_and_never_disables_the_webhook() {
    let (_cluster, config) = setup();
    let p = Producer::start(&config, false).await.unwrap();
    let product = fixture("woo_product_example.json");
    let rest_error = br#"{"code":"woocommerce_rest_shop_order_invalid_id","message":"Invalid ID.","data":{"status":404}}"#;
    let cases: Vec<(&str, Vec<u8>, &str, &str, u16)> = vec![
        (
            "order.created",
            b"".to_vec(),
            "application/json",
            "invalid_json",
            200,
        ),
        (
            "order.created",
            b"{\"id\":727,".to_vec(),
            "application/json",
            "invalid_json",
            200,
        ),
        (
            "order.created",
            product.clone(),
            "application/json",
            "wrong_resource",
            200,
        ),
        (
            "order.archived",
            b"{\"id\":1}".to_vec(),
            "application/json",
            "unknown_topic",
            200,
        ),
        (
            "order.updated",
            rest_error.to_vec(),
            "application/json",
            "resource_error",
            200,
        ),
        (
            "order.created",
            vec![b'{', 0xff, 0xfe, b'}'],
            "application/json",
            "not_utf8",
            400,
        ),
        (
            "order.created",
            b"id=1".to_vec(),
            "application/x-www-form-urlencoded",
            "unsupported_media_type",
            415,
        ),
    ];
    for (topic, body, ct, code, want) in &cases {
        let post = Post {
            content_type: ct,
            ..Post::signed(topic, body)
        };
        let (status, text) = post.send(&p.url).await;
        assert_eq!(status, *want, "{code}: {text}");
        assert!(text.contains(code), "{code}: {text}");
    }
    let dead = read(&config, "woostream.dlq.ingest", cases.len()).await;
    assert_eq!(dead.len(), cases.len());
    let d = Decoder::new();
    let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
    for m in &dead {
        let dl: IngestDeadLetter = d.decode(m.payload().unwrap()).unwrap();
        // Sealed (under the shop's key of the day: these bodies name no one), never in clear.
        assert_eq!(dl.body_encryption, "subject-key");
        assert_eq!(dl.shop_id.as_deref(), Some("eu"));
        let key: String = d.decode(m.key().unwrap()).unwrap();
        assert_eq!(key, dl.correlation_id);
        let body = woostream_tests::opened_body(&config, &dl).await;
        kept.push((dl.reason_code, body));
    }
    kept.sort();
    let mut sent: Vec<(String, Vec<u8>)> = cases
        .iter()
        .map(|(_, b, _, c, _)| (c.to_string(), b.clone()))
        .collect();
    sent.sort();
    assert_eq!(kept, sent, "every bad delivery is kept byte for byte");
    assert_eq!(
        p.metric("woostream_webhook_dead_lettered_total", &[]),
        cases.len() as f64
    );
    assert_eq!(count(&config, "woo.orders").await, 0);

    // Oversized: refused before anything is read into memory beyond the limit.
    let huge = vec![b' '; 10 * 1024 * 1024];
    let (status, text) = Post::signed("order.created", &huge).send(&p.url).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(
        p.metric(
            "woostream_webhook_requests_total",
            &[("outcome", "too_large")]
        ),
        1.0
    );
}

#[tokio::test]
async fn dead_letter_bodies_are_sealed_when_a_key_is_configured() {
    let (_cluster, mut config) = setup();
    config.producer.dead_letter_key = Some("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into());
    let p = Producer::start(&config, false).await.unwrap();
    let body = br#"{"email":"jane.roe@example.com","broken":"#;
    assert_eq!(
        Post::signed("order.created", body).send(&p.url).await.0,
        200
    );
    let dead = read(&config, "woostream.dlq.ingest", 1).await;
    let dl: IngestDeadLetter = Decoder::new().decode(dead[0].payload().unwrap()).unwrap();
    assert_eq!(dl.body_encryption, "chacha20poly1305");
    assert!(!String::from_utf8_lossy(&dl.body).contains("jane"));
    assert!(!String::from_utf8_lossy(dead[0].payload().unwrap()).contains("jane"));
}

#[tokio::test]
async fn transient_broker_errors_are_retried_before_answering() {
    let (cluster, config) = setup();
    let p = Producer::start(&config, false).await.unwrap();
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 3],
    );
    let body = fixture("woo_order_example.webhook_body.json");
    let (status, text) = Post::signed("order.created", &body).send(&p.url).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("accepted"));
    assert_eq!(count(&config, "woo.orders").await, 1);
}

#[tokio::test]
async fn while_the_broker_refuses_writes_deliveries_are_spooled_then_drained() {
    let (cluster, mut config) = setup();
    let spool = tempfile::tempdir().unwrap();
    config.producer.spool_dir = Some(spool.path().to_path_buf());
    config.kafka.delivery_timeout_ms = 1500;
    let p = Producer::start(&config, false).await.unwrap();
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 100_000],
    );
    let body = fixture("woo_order_example.webhook_body.json");
    let (status, text) = Post::signed("order.created", &body).send(&p.url).await;
    assert_eq!(status, 202, "a 2xx keeps the webhook enabled: {text}");
    assert!(text.contains("spooled"));
    // The order, and the new key its person's fields are sealed with (spooled before it).
    assert_eq!(
        p.metric("woostream_spool_records_total", &[("direction", "written")]),
        2.0
    );
    assert_eq!(count(&config, "woo.orders").await, 0);

    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    let records = read(&config, "woo.orders", 1).await;
    assert_eq!(
        records.len(),
        1,
        "the spooled delivery reached Kafka once the broker recovered"
    );
    let e: OrderEvent = Decoder::new()
        .decode(records[0].payload().unwrap())
        .unwrap();
    assert_eq!(e.order_id, 727);
}

#[tokio::test]
async fn without_a_spool_a_refusing_broker_gets_503_with_retry_after() {
    let (cluster, mut config) = setup();
    config.kafka.delivery_timeout_ms = 1000;
    let p = Producer::start(&config, false).await.unwrap();
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 100_000],
    );
    let body = fixture("woo_order_example.webhook_body.json");
    let client = reqwest::Client::new();
    let resp = client
        .post(&p.url)
        .header("content-type", "application/json")
        .header("x-wc-webhook-topic", "order.created")
        .header("x-wc-webhook-source", SOURCE)
        .header(
            "x-wc-webhook-signature",
            woostream_woo::signature::sign(&body, SECRET),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "30");
}

#[tokio::test]
async fn readiness_follows_the_broker() {
    let (_cluster, config) = setup();
    let p = Producer::start(&config, false).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !p.readiness.is_ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready although the broker is up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        p.metric("woostream_kafka_reachable", &[("role", "producer")]),
        1.0
    );
    assert!(
        p.readiness
            .condition("webhooks")
            .load(std::sync::atomic::Ordering::Relaxed),
        "ready includes the bound webhook port"
    );
}

/// The fixture product as product 22, the parent of the fixture order's second line item.
fn product_22() -> Vec<u8> {
    let mut p: serde_json::Value =
        serde_json::from_slice(&fixture("woo_product_example.json")).unwrap();
    p["id"] = 22.into();
    serde_json::to_vec(&p).unwrap()
}

fn line_categories(m: &rdkafka::message::OwnedMessage) -> Vec<Vec<i64>> {
    let e: OrderEvent = Decoder::new().decode(m.payload().unwrap()).unwrap();
    e.order
        .unwrap()
        .line_items
        .into_iter()
        .map(|l| l.category_ids)
        .collect()
}

#[tokio::test]
async fn line_items_carry_the_categories_of_products_the_shop_sent() {
    let (_cluster, config) = setup();
    let p = Producer::start(&config, false).await.unwrap();
    assert_eq!(
        Post::signed("product.created", &product_22())
            .send(&p.url)
            .await
            .0,
        200
    );
    let order = fixture("woo_order_example.webhook_body.json");
    assert_eq!(
        Post::signed("order.created", &order).send(&p.url).await.0,
        200
    );
    let records = read(&config, "woo.orders", 1).await;
    assert_eq!(
        line_categories(&records[0]),
        vec![vec![], vec![9, 14]],
        "product 93 is unknown; 22 is Clothing, T-shirts"
    );
}

#[tokio::test]
async fn a_new_replica_learns_categories_from_the_products_topic() {
    let (_cluster, config) = setup();
    let first = Producer::start(&config, false).await.unwrap();
    assert_eq!(
        Post::signed("product.created", &product_22())
            .send(&first.url)
            .await
            .0,
        200
    );
    first.stop().await.unwrap();
    // This replica never saw the product webhook: it loads the topic at start.
    let second = Producer::start(&config, false).await.unwrap();
    let order = fixture("woo_order_example.webhook_body.json");
    assert_eq!(
        Post::signed("order.created", &order)
            .send(&second.url)
            .await
            .0,
        200
    );
    let records = read(&config, "woo.orders", 1).await;
    assert_eq!(line_categories(&records[0])[1], vec![9, 14]);
}

/// With a spool the producer stays ready while every broker is down (it keeps deliveries on
/// disk); without one it turns unready, so that a load balancer sends deliveries elsewhere.
#[tokio::test]
async fn readiness_without_brokers_depends_on_the_spool() {
    let (cluster, config) = setup();
    let spool = tempfile::tempdir().unwrap();
    let mut spooling = config.clone();
    spooling.producer.spool_dir = Some(spool.path().to_path_buf());
    let plain = Producer::start(&config, false).await.unwrap();
    let with_spool = Producer::start(&spooling, false).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(plain.readiness.is_ready() && with_spool.readiness.is_ready()) {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for broker in 1..=3 {
        cluster.broker_down(broker).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while plain.readiness.is_ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "the producer without a spool stayed ready with every broker down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once the producer with a spool has noticed too, it is still ready.
    while with_spool.metric("woostream_kafka_reachable", &[("role", "producer")]) != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the producer with a spool never noticed the brokers were down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        with_spool.readiness.is_ready(),
        "the producer with a spool is still ready"
    );
}
