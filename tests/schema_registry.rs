//! Confluent framing: with `schema_registry.url` set, the producer registers every key and
//! value schema at start-up (TopicNameStrategy subjects) and writes `00 | schema id | datum`.
//! The registry here is a local server speaking the Confluent REST subset woostream uses.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::Message;
use serde_json::Value;
use woostream_core::contract::codec::{Contract, Decoder};
use woostream_core::contract::events::{CustomerKey, OrderEvent};
use woostream_core::contract::registry::RegistryClient;
use woostream_tests::registry::start_registry;
use woostream_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_registry_records_carry_registered_schema_ids() {
    let mut config = config("placeholder:1");
    let cluster = MockCluster::new(3).unwrap();
    for (_, t) in config.topics.all() {
        cluster
            .create_topic(&t.name, config.topics.partitions_of(t), 1)
            .unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    config.kafka.bootstrap_servers = Some(bootstrap.clone());
    let (url, registry) = start_registry().await;
    config.schema_registry = Some(woostream_core::config::SchemaRegistryConfig {
        url: url.clone(),
        username: None,
        password: None,
        auto_register: true,
    });
    let p = Producer::start(&config, false).await.unwrap();

    let (orders_value, orders_key, customers_key) = {
        let r = registry.lock().unwrap();
        // The shop topics and the dead letters, and the audit topic for erasure receipts.
        assert_eq!(
            r.subjects.len(),
            16,
            "every key and value subject: {:?}",
            r.subjects.keys()
        );
        (
            r.subjects["woo.orders-value"],
            r.subjects["woo.orders-key"],
            r.subjects["woo.customers-key"],
        )
    };
    assert_eq!(
        orders_key, customers_key,
        "one schema, one global id: keys partition alike"
    );
    assert_eq!(
        registry.lock().unwrap().schemas[orders_value as usize - 1],
        OrderEvent::schema().text
    );

    let body = fixture("woo_order_example.webhook_body.json");
    assert_eq!(
        Post::signed("order.created", &body).send(&p.url).await.0,
        200
    );
    let b = bootstrap.clone();
    let records = tokio::task::spawn_blocking(move || {
        read_records(&b, "woo.orders", 1, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let (key, value) = (records[0].key().unwrap(), records[0].payload().unwrap());
    assert_eq!(value[0], 0, "Confluent magic byte");
    assert_eq!(
        i32::from_be_bytes(value[1..5].try_into().unwrap()),
        orders_value
    );
    assert_eq!(
        i32::from_be_bytes(key[1..5].try_into().unwrap()),
        orders_key
    );

    // A decoder that knows nothing fetches the writer schema by id.
    let decoder = Decoder::with_registry(RegistryClient::new(&url, None, None));
    let event: OrderEvent = decoder.decode_async(value).await.unwrap();
    assert_eq!(event.order_id, 727);
    let key: CustomerKey = decoder.decode_async(key).await.unwrap();
    assert_eq!(key.shop_id, "eu");

    // And so does the independent Python reader.
    let python = woostream_tests::python();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(repo_root().join("tests/independent/decode.py"))
            .args([
                "--bootstrap",
                &bootstrap,
                "--topic",
                "woo.orders",
                "--count",
                "1",
                "--registry",
                &url,
            ])
            .arg("--schemas")
            .arg(repo_root().join("schemas"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["value"]["order"]["total"], "29.35");
    assert_eq!(record["key"]["customer"], key.customer);
    p.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_registration_a_role_uses_registered_schemas_and_refuses_to_start_without_them(
) {
    let mut config = config("placeholder:1");
    let cluster = MockCluster::new(1).unwrap();
    for (_, t) in config.topics.all() {
        cluster
            .create_topic(&t.name, config.topics.partitions_of(t), 1)
            .unwrap();
    }
    config.kafka.bootstrap_servers = Some(cluster.bootstrap_servers());
    let (url, registry) = start_registry().await;
    config.schema_registry = Some(woostream_core::config::SchemaRegistryConfig {
        url,
        username: None,
        password: None,
        auto_register: false,
    });
    // Nothing registered yet: the start names the subject, the schema and the switch.
    let err = match Producer::start(&config, false).await {
        Ok(_) => panic!("started without its schemas registered"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("is not registered under subject woo.")
            && err.contains("auto_register is false"),
        "{err}"
    );
    assert_eq!(
        registry.lock().unwrap().registrations,
        0,
        "registered anyway"
    );

    // Registered by someone else (here: a producer allowed to), it starts and registers nothing.
    let mut registering = config.clone();
    registering.schema_registry.as_mut().unwrap().auto_register = true;
    Producer::start(&registering, false)
        .await
        .unwrap()
        .stop()
        .await
        .unwrap();
    let registered = registry.lock().unwrap().registrations;
    let p = Producer::start(&config, false).await.unwrap();
    assert_eq!(registry.lock().unwrap().registrations, registered);
    let body = fixture("woo_order_example.webhook_body.json");
    assert_eq!(
        Post::signed("order.created", &body).send(&p.url).await.0,
        200
    );
    p.stop().await.unwrap();
}
