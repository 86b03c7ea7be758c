//! woostream read as an attacker would, each attack played against it on Tansu.
//!
//! A replayed deletion: WooCommerce signs only the body, the topic is an unsigned header, and
//! every `*.deleted` body is the same `{"id":N}`. A signed `product.deleted` for id 42 (every
//! trashed product makes one) re-sent as `customer.deleted` must not erase customer 42 while
//! the shop still has the account; once the shop answers 404 for it, one erasure, however
//! often the deletion is delivered.

use rdkafka::Message;
use serde_json::{json, Value};
use woostream::shop::{Behaviour, ShopServer};
use woostream_core::config::ShopRest;
use woostream_tests::*;

const KEY: &str = "ck_trust_0123456789abcdef";
const SECRET_KEY: &str = "cs_trust_0123456789abcdef";

/// A simulated shop with `customers` and the test configuration with its REST API.
async fn shop_with(
    tansu: &Tansu,
    customers: std::collections::BTreeMap<i64, Value>,
) -> (ShopServer, woostream_core::config::Config) {
    let shop = ShopServer::start(
        std::collections::BTreeMap::from([("customers".to_string(), customers)]),
        KEY,
        SECRET_KEY,
        Behaviour::default(),
    )
    .await
    .unwrap();
    let mut config = config(&tansu.bootstrap);
    config.shops[0].rest = Some(ShopRest {
        url: Some(shop.url.clone()),
        consumer_key: Some(KEY.into()),
        consumer_secret: Some(SECRET_KEY.into()),
        ..ShopRest::default()
    });
    (shop, config)
}

fn status_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_replayed_as_customer_deleted_erases_no_one_and_a_real_one_erases_once() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let mut customers = std::collections::BTreeMap::new();
    customers.insert(
        42,
        json!({"id": 42, "email": "victim@example.com", "first_name": "Vic", "role": "customer"}),
    );
    let (shop, config) = shop_with(&tansu, customers).await;
    let p = Producer::start(&config, true).await.unwrap();
    let erasures = |outcome: &str| {
        p.metric(
            "woostream_webhook_erasures_total",
            &[("shop", "eu"), ("outcome", outcome)],
        )
    };

    // What trashing product 42 delivers, signed with the shop's one secret, re-labelled.
    let body = br#"{"id":42}"#;
    let (code, text) = Post::signed("customer.deleted", body).send(&p.url).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(status_of(&text)["status"], "ignored", "{text}");
    assert_eq!(erasures("account_exists"), 1.0);
    assert_eq!(erasures("erased"), 0.0);
    assert!(
        read_topic_now(&config, "trust-customers", "woo.customers")
            .await
            .is_empty(),
        "nothing written: no deletion, no tombstone"
    );
    assert!(
        read_topic_now(&config, "trust-keys", "woostream.subject-keys")
            .await
            .iter()
            .all(|m| m.payload().is_some()),
        "no key tombstoned"
    );

    // The account is deleted in the shop: now the deletion is real, and erases once.
    shop.remove("customers", 42);
    let (code, text) = Post::signed("customer.deleted", body).send(&p.url).await;
    assert_eq!(code, 200, "{text}");
    let answer = status_of(&text);
    assert_eq!(answer["status"], "accepted", "{text}");
    assert!(
        answer["erasure"]
            .as_str()
            .is_some_and(|e| e.starts_with("er-")),
        "{text}"
    );
    assert_eq!(erasures("erased"), 1.0);
    let tombstones = |records: &[rdkafka::message::OwnedMessage]| {
        records.iter().filter(|m| m.payload().is_none()).count()
    };
    let after_one = read_topic_now(&config, "trust-customers-1", "woo.customers").await;
    assert!(tombstones(&after_one) >= 1, "the erasure's tombstone");
    // Delivered again (a new delivery id, as a replay would carry): no second erasure.
    for _ in 0..3 {
        let (code, text) = Post::signed("customer.deleted", body).send(&p.url).await;
        assert_eq!(code, 200, "{text}");
        assert_eq!(status_of(&text)["erasure"], "already erased", "{text}");
    }
    assert_eq!(erasures("erased"), 1.0);
    assert_eq!(erasures("already_erased"), 3.0);
    let after_more = read_topic_now(&config, "trust-customers-2", "woo.customers").await;
    assert_eq!(
        tombstones(&after_more),
        tombstones(&after_one),
        "erased once"
    );

    // Erasure is sticky: the erased-subject list names them (pseudonymously), and an update
    // of their old order (a refund) writes nothing — no new key, no record to make a contact.
    let marks = read_topic_now(&config, "trust-erased", "woostream.erased-subjects").await;
    assert_eq!(marks.len(), 1, "one mark");
    assert!(
        !String::from_utf8_lossy(marks[0].key().unwrap()).contains("42"),
        "the mark names no one"
    );
    let keys_before = read_topic_now(&config, "trust-keys-3", "woostream.subject-keys").await;
    let orders_before = read_topic_now(&config, "trust-orders-1", "woo.orders").await;
    let mut order: Value = serde_json::from_slice(&fixture("woo_order_example.json")).unwrap();
    order["customer_id"] = 42.into();
    order["status"] = "refunded".into();
    order["date_created_gmt"] = "2020-01-01T10:00:00".into();
    let (code, text) = Post::signed("order.updated", &serde_json::to_vec(&order).unwrap())
        .send(&p.url)
        .await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(status_of(&text)["status"], "ignored", "{text}");
    let keys_after = read_topic_now(&config, "trust-keys-4", "woostream.subject-keys").await;
    let orders_after = read_topic_now(&config, "trust-orders-2", "woo.orders").await;
    assert_eq!(keys_after.len(), keys_before.len(), "no new key");
    assert_eq!(orders_after.len(), orders_before.len(), "no order record");
    p.stop().await.unwrap();
}

/// Opens a connection to `addr` from the loopback address `from` (127.0.0.0/8 is all this
/// machine's): one address per attacker, as the per-address cap sees them.
async fn connect_from(from: &str, addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// Whether the server closed `s` within `limit` (an answer may come first).
async fn closed_within(mut s: tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Sockets that send nothing, sockets that open with HTTP/2's preface, and 300 bodies trickled
/// under a junk signature, all at once and from other addresses, while WooCommerce delivers a
/// signed order every 100 ms: every delivery is answered 200, and every attacking socket is
/// closed by the producer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_h2_prefaces_and_trickled_bodies_do_not_starve_deliveries() {
    use tokio::io::AsyncWriteExt;
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let mut config = config(&tansu.bootstrap);
    config.producer.max_connections = 512;
    config.producer.max_connections_per_address = 128;
    config.producer.header_timeout_ms = 2_000;
    let p = Producer::start(&config, true).await.unwrap();
    let addr = addr_of(&p.url);
    let mut silent = Vec::new();
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        for _ in 0..128 {
            silent.push(connect_from(from, &addr).await);
        }
    }
    let mut h2 = Vec::new();
    for _ in 0..128 {
        let mut s = connect_from("127.0.0.6", &addr).await;
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        h2.push(s);
    }
    let mut trickled = Vec::new();
    for from in ["127.0.0.7", "127.0.0.8", "127.0.0.9"] {
        for _ in 0..100 {
            let mut s = connect_from(from, &addr).await;
            s.write_all(
                b"POST /webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-WC-Webhook-Source: https://example.com/\r\nX-WC-Webhook-Signature: anVuaw==\r\nContent-Length: 3000\r\n\r\n{",
            )
            .await
            .unwrap();
            trickled.push(s);
        }
    }
    // Deliveries meanwhile, from the shop's own address.
    let body = fixture("woo_order_example.webhook_body.json");
    let client = reqwest::Client::builder()
        .local_address(Some("127.0.0.1".parse().unwrap()))
        .build()
        .unwrap();
    let mut answers = Vec::new();
    for _ in 0..30 {
        let resp = Post::signed("order.updated", &body)
            .request(&client, &p.url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        answers.push(resp);
        // A trickle keeps each trickled body alive, as an attacker would.
        for s in trickled.iter_mut() {
            let _ = s.write_all(b" ").await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(answers.iter().all(|a| *a == 200), "{answers:?}");
    let limit = std::time::Duration::from_secs(10);
    let closed = |socks: Vec<tokio::net::TcpStream>| {
        futures::future::join_all(socks.into_iter().map(|s| closed_within(s, limit)))
    };
    let (silent, h2, trickled) = tokio::join!(closed(silent), closed(h2), closed(trickled));
    for (what, closed) in [
        ("silent", silent),
        ("h2 preface", h2),
        ("trickled", trickled),
    ] {
        let open = closed.iter().filter(|c| !**c).count();
        assert_eq!(open, 0, "{what} sockets left open");
    }
    p.stop().await.unwrap();
}

/// An erasure from `customer.deleted` while the broker is stalled: WooCommerce never delivers a
/// deletion again, so the answer is 2xx and the erasure request waits in the spool beside the
/// deletion; once the broker answers, the drain carries it out — keys tombstoned, the
/// customer key tombstoned under the erasure's id, the receipt written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_asked_for_while_the_broker_stalls_is_carried_out_once_it_returns() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let mut customers = std::collections::BTreeMap::new();
    let account = json!({"id": 42, "email": "stalled@example.com", "first_name": "Sten",
        "role": "customer", "billing": {"email": "stalled@example.com", "phone": "+46 1"}});
    customers.insert(42, account.clone());
    let (shop, mut config) = shop_with(&tansu, customers).await;
    let spool = tempfile::tempdir().unwrap();
    config.producer.spool_dir = Some(spool.path().to_path_buf());
    let p = Producer::start(&config, true).await.unwrap();
    let erasures = |outcome: &str| {
        p.metric(
            "woostream_webhook_erasures_total",
            &[("shop", "eu"), ("outcome", outcome)],
        )
    };
    // The customer signs up: their key is made and written.
    let body = serde_json::to_vec(&account).unwrap();
    let (code, text) = Post::signed("customer.created", &body).send(&p.url).await;
    assert_eq!(code, 200, "{text}");

    // The account is deleted in the shop while the broker stalls.
    shop.remove("customers", 42);
    tansu.freeze();
    let (code, text) = Post::signed("customer.deleted", br#"{"id":42}"#)
        .send(&p.url)
        .await;
    assert_eq!(code, 202, "kept, not refused: {text}");
    let erasure = status_of(&text)["erasure"].as_str().unwrap().to_string();
    assert!(erasure.starts_with("er-"), "{text}");
    assert_eq!(erasures("spooled"), 1.0);
    assert_eq!(erasures("erased"), 0.0);

    // The broker answers again: the drain carries the erasure out.
    tansu.thaw();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while erasures("erased_from_spool") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the spooled erasure was not carried out within 2 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let keys = read_topic_now(&config, "stall-keys", "woostream.subject-keys").await;
    assert!(
        keys.iter().any(|m| m.payload().is_some()) && keys.iter().any(|m| m.payload().is_none()),
        "the key was written, then tombstoned"
    );
    let customers = read_topic_now(&config, "stall-customers", "woo.customers").await;
    let erased_under = |m: &rdkafka::message::OwnedMessage| {
        use rdkafka::message::Headers;
        m.payload().is_none()
            && m.headers()
                .is_some_and(|h| h.iter().any(|h| h.value == Some(erasure.as_bytes())))
    };
    assert_eq!(
        customers.iter().filter(|m| erased_under(m)).count(),
        1,
        "one tombstone under the erasure's id"
    );
    let receipts = read_topic_now(&config, "stall-receipts", "woostream.deliveries").await;
    let decoder = woostream_core::contract::codec::Decoder::new();
    assert!(
        receipts.iter().any(|m| m
            .payload()
            .and_then(|v| decoder
                .decode::<woostream_core::contract::sink_records::Delivery>(v)
                .ok())
            .is_some_and(|d| d.alert_id == erasure)),
        "the erasure's receipt"
    );
    assert_eq!(
        p.metric("woostream_spool_pending_bytes", &[]),
        0.0,
        "nothing left in the spool"
    );
    p.stop().await.unwrap();
}

/// A consumer that meets a recent record whose subject key it cannot find reads it as "not
/// yet" (the record overtook its key, e.g. while a producer's spool drains) and reads it again
/// later — never as erased. An old record's absent key was erased and compacted away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recent_record_whose_key_is_not_there_yet_is_not_taken_for_an_erasure() {
    use woostream_core::privacy::subject_keys::NotYet;
    use woostream_core::privacy::SubjectKeys;
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let config = config(&tansu.bootstrap);
    woostream_core::kafka::first_contact(&config, &tansu.bootstrap, true)
        .await
        .unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let keys = tokio::task::spawn_blocking(move || SubjectKeys::start(&config, &bootstrap, false))
        .await
        .unwrap()
        .unwrap();
    let absent = vec!["0123456789abcdef".to_string()];
    let now = chrono::Utc::now();
    let (k, ids) = (keys.clone(), absent.clone());
    let recent = tokio::task::spawn_blocking(move || k.keys_for_record(&ids, Some(now)))
        .await
        .unwrap();
    let err = recent.expect_err("a recent record's absent key is not yet there");
    assert!(err.downcast_ref::<NotYet>().is_some(), "{err:#}");
    let (k, ids) = (keys.clone(), absent.clone());
    let old = tokio::task::spawn_blocking(move || {
        k.keys_for_record(&ids, Some(now - chrono::Duration::days(2)))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        old.get(&absent[0]).map(Option::is_none),
        Some(true),
        "erased"
    );
}

/// An account deleted in the shop whose `customer.deleted` never reached woostream (lost,
/// refused, or never sent): reconciliation lists every account id, asks for the one no longer
/// listed, and erases it once the shop answers 404 — once, and only that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_erases_an_account_the_shop_deleted_without_telling() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let mut customers = std::collections::BTreeMap::new();
    for id in [42, 43] {
        customers.insert(
            id,
            json!({"id": id, "email": format!("c{id}@example.com"), "role": "customer",
                "date_created_gmt": "2026-01-01T10:00:00", "date_modified_gmt": "2026-01-01T10:00:00"}),
        );
    }
    let (shop, mut config) = shop_with(&tansu, customers).await;
    let rest = config.shops[0].rest.as_mut().unwrap();
    rest.reconcile_interval_secs = 1;
    rest.deleted_accounts_check_secs = 0;
    let registry = prometheus::Registry::new();
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let (config, registry, ready, shutdown) = (
            config.clone(),
            registry.clone(),
            ready.clone(),
            shutdown.clone(),
        );
        async move {
            let bootstrap = config.kafka.bootstrap_servers.clone().unwrap();
            woostream_producer::rest::reconcile::run(
                &woostream_tests::role_context(
                    &config,
                    &bootstrap,
                    &registry,
                    &Default::default(),
                    shutdown,
                    true,
                ),
                ready,
                false,
            )
            .await
        }
    });
    // The first pass has listed both accounts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready.load(std::sync::atomic::Ordering::Relaxed) {
        assert!(!running.is_finished(), "{:?}", running.await);
        assert!(std::time::Instant::now() < deadline, "no first pass");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // WordPress deletes 42; no webhook says so.
    shop.remove("customers", 42);
    let erased = || {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "woostream_rest_deleted_accounts_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == "erased"))
            .map(|m| m.get_counter().get_value())
            .sum::<f64>()
    };
    while erased() < 1.0 {
        assert!(!running.is_finished(), "{:?}", running.await);
        assert!(std::time::Instant::now() < deadline, "42 was not erased");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A few more passes: nothing more is erased.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(erased(), 1.0);
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let marks = read_topic_now(&config, "deleted-marks", "woostream.erased-subjects").await;
    assert_eq!(marks.len(), 1, "one person erased");
    let tombstones: Vec<_> = read_topic_now(&config, "deleted-customers", "woo.customers")
        .await
        .into_iter()
        .filter(|m| m.payload().is_none())
        .collect();
    assert_eq!(tombstones.len(), 1, "42's key tombstoned, 43 untouched");
}
