//! End to end on a real Kafka-protocol broker (Tansu): WooCommerce-signed fixtures posted to a
//! running producer, topics created through the admin API, and everything read back by an
//! independent consumer and decoder (Python confluent-kafka + fastavro, given only schemas/).
#![recursion_limit = "256"]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use woostream::simulate;
use woostream_core::contract::codec::Decoder;
use woostream_core::contract::events::OrderEvent;
use woostream_core::privacy::CustomerHasher;
use woostream_tests::*;

/// Runs tests/independent/decode.py and returns its records.
fn independent_read(bootstrap: &str, topic: &str, count: usize) -> Vec<Value> {
    let python = woostream_tests::python();
    let root = repo_root();
    let out = Command::new(&python)
        .arg(root.join("tests/independent/decode.py"))
        .args(["--bootstrap", bootstrap, "--topic", topic, "--count", &count.to_string()])
        .args(["--keys-topic", "woostream.subject-keys"])
        .arg("--schemas")
        .arg(root.join("schemas"))
        .output()
        .unwrap_or_else(|e| panic!("running {python} (make test creates a venv with confluent-kafka and fastavro): {e}"));
    assert!(
        out.status.success(),
        "independent decoder failed on {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_fixtures_reach_tansu_and_an_independent_decoder_reads_every_field() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let config = config(&tansu.bootstrap);
    // create_topics: Tansu does not auto-create topics; woostream must.
    let p = Producer::start(&config, true).await.unwrap();

    let order = fixture("woo_order_example.webhook_body.json");
    let product = fixture("woo_product_example.json");
    let customer = fixture("woo_customer_example.json");
    for (topic, body) in [
        ("order.created", &order[..]),
        ("product.created", &product[..]),
        ("customer.created", &customer[..]),
        ("order.deleted", br#"{"id":727}"#),
        ("order.created", b"{not json"),
    ] {
        let post = Post {
            delivery_id: Some("d3adb33f"),
            ..Post::signed(topic, body)
        };
        let (status, text) = post.send(&p.url).await;
        assert_eq!(status, 200, "{topic}: {text}");
    }

    let b = tansu.bootstrap.clone();
    let orders = tokio::task::spawn_blocking(move || independent_read(&b, "woo.orders", 2))
        .await
        .unwrap();
    assert_eq!(orders.len(), 2);
    let created = orders
        .iter()
        .find(|r| r["value"]["action"] == "CREATED")
        .expect("created order");
    let deleted = orders
        .iter()
        .find(|r| r["value"]["action"] == "DELETED")
        .expect("deleted order");

    // Keyed with what the producer derives for the shop (no privacy.customer_hash_key set).
    let email_hash = CustomerHasher::for_shop(&config, &config.shops[0].id)
        .email_hash("john.doe@example.com")
        .unwrap();
    let guest = format!("guest:{email_hash}");
    assert_eq!(created["key_schema"], "customer-key");
    assert_eq!(
        created["key"],
        serde_json::json!({"shop_id": "eu", "customer": guest})
    );
    assert_eq!(created["value_schema"], "order-event");
    let v = &created["value"];
    let env = &v["envelope"];
    assert_eq!(env["shop_id"], "eu");
    assert_eq!(env["source"], SOURCE);
    assert_eq!(env["wc_topic"], "order.created");
    assert_eq!(env["webhook_id"], 7);
    assert_eq!(env["delivery_id"], "d3adb33f");
    assert_eq!(env["origin"], "WEBHOOK");
    assert_eq!(env["event_id"].as_str().unwrap().len(), 32);
    assert_eq!(
        created["headers"]["woostream-correlation-id"],
        env["correlation_id"]
    );
    assert_eq!(created["headers"]["woostream-event-id"], env["event_id"]);
    assert_eq!(v["order_id"], 727);
    // Personal fields are sealed in Kafka, each under the person's key, and open to what was
    // sent with the keys the key topic holds; country and state stay readable.
    let sealed: Vec<&str> = created["sealed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for field in [
        "first_name",
        "last_name",
        "address_1",
        "city",
        "postcode",
        "email",
        "phone",
    ] {
        assert!(
            sealed.contains(&format!("order.billing.{field}").as_str()),
            "{field}: {sealed:?}"
        );
    }
    assert!(!sealed
        .iter()
        .any(|p| p.ends_with(".country") || p.ends_with(".state")));
    let o = &v["order"];
    let expect = serde_json::json!({
        "id": 727, "parent_id": null, "number": "727", "created_via": "rest-api",
        "status": "PROCESSING", "status_slug": "processing", "currency": "USD", "prices_include_tax": false,
        "created_at": "2017-03-22T19:28:02+00:00", "modified_at": "2017-03-22T19:28:08+00:00",
        "paid_at": "2017-03-22T19:28:08+00:00", "completed_at": null,
        "total": "29.35", "total_tax": "1.35", "subtotal": "18", "discount_total": "0", "discount_tax": "0",
        "shipping_total": "10", "shipping_tax": "0", "cart_tax": "1.35", "fee_total": "0", "refunded_total": "0",
        "customer_id": null, "customer_key": guest, "email_hash": email_hash,
        "billing": {"first_name": "John", "last_name": "Doe", "company": null, "address_1": "969 Market", "address_2": null,
                    "city": "San Francisco", "state": "CA", "postcode": "94103", "country": "US",
                    "email": "john.doe@example.com", "phone": "(555) 555-5555"},
        "shipping": {"first_name": "John", "last_name": "Doe", "company": null, "address_1": "969 Market", "address_2": null,
                     "city": "San Francisco", "state": "CA", "postcode": "94103", "country": "US", "phone": null},
        "payment_method": "bacs", "payment_method_title": "Direct Bank Transfer", "transaction_id": null,
        "line_items": [
            {"id": 315, "product_id": 93, "variation_id": null, "name": "Woo Single #1", "sku": null, "quantity": 2,
             "subtotal": "6", "subtotal_tax": "0.45", "total": "6", "total_tax": "0.45", "category_ids": []},
            {"id": 316, "product_id": 22, "variation_id": 23, "name": "Ship Your Idea &ndash; Color: Black, Size: M Test",
             "sku": "Bar3", "quantity": 1, "subtotal": "12", "subtotal_tax": "0.9", "total": "12", "total_tax": "0.9", "category_ids": []}
        ],
        "coupon_codes": [], "refunds": [],
        // WooCommerce sends "" when the buyer wrote nothing.
        "customer_note": null
    });
    for (k, want) in expect.as_object().unwrap() {
        assert_eq!(&o[k], want, "order.{k}, as an independent decoder reads it");
    }
    assert_eq!(
        o.as_object().unwrap().len(),
        expect.as_object().unwrap().len(),
        "no field unchecked"
    );
    assert_eq!(deleted["value"]["order"], Value::Null);
    // The deletion names only the order; the producer saw the order and writes the deletion
    // under its customer, where the order counts.
    assert_eq!(deleted["key"]["customer"], created["key"]["customer"]);

    let b = tansu.bootstrap.clone();
    let products = tokio::task::spawn_blocking(move || independent_read(&b, "woo.products", 1))
        .await
        .unwrap();
    let product = &products[0]["value"]["product"];
    assert_eq!(products[0]["key"]["product_id"], product["id"]);
    assert_eq!(product["price"], "21.99");
    assert_eq!(product["categories"][0]["name"], "Clothing");

    let b = tansu.bootstrap.clone();
    let customers = tokio::task::spawn_blocking(move || independent_read(&b, "woo.customers", 1))
        .await
        .unwrap();
    assert_eq!(
        customers[0]["value"]["customer"]["email"],
        "john.doe@example.com"
    );
    assert_eq!(
        customers[0]["key"]["customer"],
        customers[0]["value"]["customer_id"].to_string()
    );

    let b = tansu.bootstrap.clone();
    let dead = tokio::task::spawn_blocking(move || independent_read(&b, "woostream.dlq.ingest", 1))
        .await
        .unwrap();
    assert_eq!(dead[0]["value"]["reason_code"], "invalid_json");
    // Sealed under the shop's key of the day (it names no one): opened with the key topic.
    assert_eq!(dead[0]["value"]["body_encryption"], "opened");
    assert_eq!(
        dead[0]["value"]["body"], "e25vdCBqc29u",
        "the raw body, base64 of {{not json"
    );

    // woostream's own decoder reads the same bytes the same way.
    let b = tansu.bootstrap.clone();
    let raw = tokio::task::spawn_blocking(move || {
        read_records(&b, "woo.orders", 2, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let ours: Vec<OrderEvent> = raw
        .iter()
        .map(|m| {
            Decoder::new()
                .decode(rdkafka::Message::payload(m).unwrap())
                .unwrap()
        })
        .collect();
    let ours_created = ours.iter().find(|e| e.order.is_some()).unwrap();
    assert_eq!(
        ours_created.envelope.event_id,
        env["event_id"].as_str().unwrap()
    );
    p.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_flash_sale_lands_completely_on_tansu() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let mut config = config(&tansu.bootstrap);
    let sim = simulate::Options {
        orders: 300,
        customers: 120,
        duration: Duration::from_secs(3),
        concurrency: 32,
        ..Default::default()
    };
    config.shops.push(woostream::all_in_one::demo_shop(&sim));
    let p = Producer::start(&config, true).await.unwrap();
    let plan = simulate::plan(&sim, chrono::Utc::now());
    let stats = Arc::new(simulate::Stats::default());
    simulate::run(
        &simulate::Options {
            url: p.url.clone(),
            ..sim
        },
        stats.clone(),
    )
    .await
    .unwrap();

    let sent = plan.len() as u64;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.sent.load(Relaxed), sent);
    assert_eq!(
        stats.accepted.load(Relaxed),
        sent,
        "every delivery acknowledged by the broker"
    );
    let per_topic =
        |prefix: &str| plan.iter().filter(|w| w.topic.starts_with(prefix)).count() as i64;
    for (topic, prefix) in [
        ("woo.orders", "order."),
        ("woo.products", "product."),
        ("woo.customers", "customer."),
    ] {
        let (b, want) = (tansu.bootstrap.clone(), per_topic(prefix) as usize);
        let records = tokio::task::spawn_blocking(move || {
            read_records(&b, topic, want + 1, Duration::from_secs(5))
        })
        .await
        .unwrap();
        assert_eq!(
            records.len(),
            want,
            "{topic}: every acknowledged delivery is there, once"
        );
    }
    p.stop().await.unwrap();
}
