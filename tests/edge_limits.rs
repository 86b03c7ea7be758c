//! The public webhook endpoint as an attacker tries it, on a real broker (Tansu): clients that
//! send their request head or body slowly, too many connections, too many requests at once,
//! a lying Content-Length. Each is cut off by a limit while a signed delivery sent meanwhile
//! is answered 2xx.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use woostream_tests::{addr_of, config, fixture, Post, Producer, Tansu};

/// Waits until the server closes `stream` (a read returns 0 or fails); how long that took.
async fn closed_by_server(mut stream: TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // An answer (408) first; the close follows.
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_and_slow_bodies_are_cut_off_while_a_real_delivery_gets_through() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    // The shipped header timeout (5 s); a shorter body timeout keeps the test short.
    let mut config = config(&tansu.bootstrap);
    config.producer.body_timeout_ms = 2_000;
    let p = Producer::start(&config, true).await.unwrap();
    let addr = addr_of(&p.url);

    // 300 connections that never finish their request head, and 50 that declare a 4 MB body
    // and send 1 KB of it.
    let mut slow_heads = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nX-WC-Webhook-")
            .await
            .unwrap();
        slow_heads.push(s);
    }
    let mut slow_bodies = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            b"POST /webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-WC-Webhook-Signature: c2ln\r\nContent-Length: 4000000\r\n\r\n",
        )
        .await
        .unwrap();
        s.write_all(&[b' '; 1024]).await.unwrap();
        slow_bodies.push(s);
    }

    // Meanwhile a signed delivery is answered as usual.
    let body = fixture("woo_order_example.json");
    let (status, text) = Post::signed("order.created", &body).send(&p.url).await;
    assert_eq!(status, 200, "{text}");

    let heads = futures::future::join_all(
        slow_heads
            .into_iter()
            .map(|s| closed_by_server(s, Duration::from_secs(30))),
    );
    let bodies = futures::future::join_all(
        slow_bodies
            .into_iter()
            .map(|s| closed_by_server(s, Duration::from_secs(30))),
    );
    let (heads, bodies) = tokio::join!(heads, bodies);
    let open_heads = heads.iter().filter(|c| c.is_none()).count();
    let open_bodies = bodies.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        open_heads, 0,
        "connections without a request head are closed"
    );
    assert_eq!(
        open_bodies, 0,
        "requests whose body never arrives are closed"
    );
    let slowest = heads.iter().chain(&bodies).flatten().max().unwrap();
    println!(
        "slow clients: 300 slow heads and 50 slow bodies all closed, the last after {:.1} s",
        slowest.as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.metric("woostream_webhook_connections", &[]) > 0.0 {
        assert!(Instant::now() < deadline, "no connection is left open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_and_request_limits_the_producer_sheds_load_and_recovers() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let mut config = config(&tansu.bootstrap);
    config.producer.max_connections = 20;
    config.producer.max_in_flight = 1;
    config.producer.body_timeout_ms = 3_000;
    let p = Producer::start(&config, true).await.unwrap();
    let addr = addr_of(&p.url);

    // A lying Content-Length over the limit is refused before its body is read.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nX-WC-Webhook-Signature: c2ln\r\nContent-Length: 999999999\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    // A request whose body is slow holds a connection, never the only in-flight slot: a
    // signed delivery meanwhile is answered 200 (a body still arriving was what let anyone
    // holding a few hundred connections starve deliveries).
    let mut holder = TcpStream::connect(&addr).await.unwrap();
    holder
        .write_all(
            b"POST /webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nX-WC-Webhook-Signature: c2ln\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    let body = fixture("woo_order_example.json");
    let (status, text) = Post::signed("order.created", &body).send(&p.url).await;
    assert_eq!(status, 200, "a slow body holds no in-flight slot: {text}");
    assert!(closed_by_server(holder, Duration::from_secs(30))
        .await
        .is_some());
    // A request Kafka has not acknowledged yet holds the only slot: the next is shed with 503
    // and Retry-After, and is answered once the slot is free again.
    tansu.freeze();
    let held = {
        let (url, body) = (p.url.clone(), body.clone());
        tokio::spawn(async move { Post::signed("order.updated", &body).send(&url).await })
    };
    // The held request has its permit (it waits on the frozen broker) before the next comes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.metric("woostream_webhook_in_flight", &[]) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the held request never reached Kafka"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let shed = loop {
        let resp = Post::signed("order.updated", &body)
            .request(&reqwest::Client::new(), &p.url)
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 503 {
            break resp;
        }
        // The held request may not have reached the handler yet.
        assert!(Instant::now() < deadline, "never shed: {}", resp.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tansu.thaw();
    assert_eq!(shed.headers()["retry-after"], "1");
    held.await.unwrap();
    let (status, text) = Post::signed("order.created", &body).send(&p.url).await;
    assert_eq!(status, 200, "answered once the slot is free: {text}");

    // Signed amounts beyond what the contract holds: a dead letter answered 200 (WooCommerce
    // must not count a failure), never a reset connection; the in-flight gauge comes back down.
    let mut order: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let line = order["line_items"][0].clone();
    order["line_items"] = serde_json::json!([line.clone(), line]);
    order["line_items"][0]["subtotal"] = "79228162514264337593543950335".into();
    order["line_items"][1]["subtotal"] = "79228162514264337593543950335".into();
    let huge = serde_json::to_vec(&order).unwrap();
    let (status, text) = Post::signed("order.created", &huge).send(&p.url).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("dead-lettered"), "{text}");
    assert_eq!(p.metric("woostream_webhook_in_flight", &[]), 0.0);

    // At max_connections, a new connection takes the place of the oldest one that has not
    // sent a request head yet (silent sockets cannot lock deliveries out)...
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.metric("woostream_webhook_connections", &[]) < 20.0 {
        assert!(
            Instant::now() < deadline,
            "the 20 connections were not all accepted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, text) = Post::signed("order.created", &body).send(&p.url).await;
    assert_eq!(
        status, 200,
        "a delivery takes a silent socket's place: {text}"
    );
    let oldest = silent.remove(0);
    assert!(
        closed_by_server(oldest, Duration::from_secs(2))
            .await
            .is_some(),
        "the oldest silent socket was closed to make room"
    );
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.metric("woostream_webhook_connections", &[]) > 0.0 {
        assert!(
            Instant::now() < deadline,
            "silent sockets are closed in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and when every connection is inside a request, one more is closed at once. Each held
    // request asks for `100 Continue`, which hyper sends once the handler reads the body: proof
    // that its head reached the handler.
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            b"POST /webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-WC-Webhook-Signature: c2ln\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut answer))
            .await
            .expect("100 Continue")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 100"),
            "{}",
            String::from_utf8_lossy(&answer[..n])
        );
        held.push(s);
    }
    let extra = TcpStream::connect(&addr).await.unwrap();
    assert!(
        closed_by_server(extra, Duration::from_secs(2))
            .await
            .is_some(),
        "the 21st connection is closed at once"
    );
    assert!(
        p.metric(
            "woostream_webhook_connections_refused_total",
            &[("reason", "max_connections")]
        ) >= 1.0
    );
    drop(held);
    p.stop().await.unwrap();
}

/// `read_topic_now` with the names of the test's own reader group.
async fn records_in(
    config: &woostream_core::config::Config,
    topic: &str,
) -> Vec<rdkafka::message::OwnedMessage> {
    woostream_tests::read_topic_now(config, &format!("edge-{topic}"), topic).await
}

/// The dead letters, their bodies opened (sealed under a person's key or the shop's key of
/// the day: never in clear).
async fn dead_letter_reasons(
    config: &woostream_core::config::Config,
    records: &[rdkafka::message::OwnedMessage],
) -> Vec<woostream_core::contract::events::IngestDeadLetter> {
    use rdkafka::Message;
    let d = woostream_core::contract::codec::Decoder::new();
    let mut out = Vec::new();
    for m in records {
        let mut dl: woostream_core::contract::events::IngestDeadLetter =
            d.decode(m.payload().unwrap()).unwrap();
        assert_ne!(dl.body_encryption, "none", "a kept body is never in clear");
        dl.body = woostream_tests::opened_body(config, &dl).await;
        out.push(dl);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivery_is_kept_once_and_a_topic_swap_or_deep_nesting_changes_nothing() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let config = config(&tansu.bootstrap);
    let p = Producer::start(&config, true).await.unwrap();
    let order = fixture("woo_order_example.webhook_body.json");
    let status_of = |text: &str| -> String {
        serde_json::from_str::<serde_json::Value>(text).unwrap()["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    let first = Post {
        delivery_id: Some("delivery-1"),
        ..Post::signed("order.created", &order)
    };
    let (code, text) = first.send(&p.url).await;
    assert_eq!(
        (code, status_of(&text).as_str()),
        (200, "accepted"),
        "{text}"
    );
    // The same request again, then with the topic header swapped: WooCommerce signs only the
    // body, so the header is the replayer's to choose.
    let (code, text) = first.send(&p.url).await;
    assert_eq!(
        (code, status_of(&text).as_str()),
        (200, "duplicate"),
        "{text}"
    );
    let swapped = Post {
        topic: Some("customer.deleted"),
        ..first
    };
    let (code, text) = swapped.send(&p.url).await;
    assert_eq!(
        (code, status_of(&text).as_str()),
        (200, "duplicate"),
        "{text}"
    );
    // With a new delivery id it is not a resend, and an order body cannot be a deletion.
    let (code, text) = Post::signed("customer.deleted", &order).send(&p.url).await;
    assert_eq!(
        (code, status_of(&text).as_str()),
        (200, "dead-lettered"),
        "{text}"
    );
    assert!(text.contains("wrong_resource"), "{text}");

    // JSON nested far deeper than any order: a dead letter, not a stack overflow.
    let mut deep = String::from(r#"{"id": 1, "line_items": [], "meta_data": "#);
    deep.push_str(&"[".repeat(100_000));
    deep.push_str(&"]".repeat(100_000));
    deep.push('}');
    let (code, text) = Post::signed("order.created", deep.as_bytes())
        .send(&p.url)
        .await;
    assert_eq!(
        (code, status_of(&text).as_str()),
        (200, "dead-lettered"),
        "{text}"
    );
    assert!(text.contains("invalid_json"), "{text}");

    // Afterwards the producer still takes deliveries.
    let (code, _) = Post::signed("order.updated", &order).send(&p.url).await;
    assert_eq!(code, 200);

    let orders = records_in(&config, "woo.orders").await;
    assert_eq!(orders.len(), 2, "the order once, then its update");
    assert!(
        records_in(&config, "woo.customers").await.is_empty(),
        "no customer was erased"
    );
    let dead = records_in(&config, "woostream.dlq.ingest").await;
    let dead = dead_letter_reasons(&config, &dead).await;
    // Keyed by correlation id, so spread over partitions: compared in no particular order.
    let mut codes: Vec<&str> = dead.iter().map(|d| d.reason_code.as_str()).collect();
    codes.sort();
    assert_eq!(codes, ["invalid_json", "wrong_resource"]);
    assert_eq!(
        p.metric(
            "woostream_webhook_requests_total",
            &[("outcome", "duplicate")]
        ),
        2.0
    );
    p.stop().await.unwrap();
}

/// A real order with thousands of line items: about 1.5 MB of JSON, over librdkafka's default
/// 1,000,000-byte record limit once encoded.
fn large_order() -> Vec<u8> {
    let mut order: serde_json::Value =
        serde_json::from_slice(&fixture("woo_order_example.webhook_body.json")).unwrap();
    let item = order["line_items"][0].clone();
    let items: Vec<serde_json::Value> = (0..4_000)
        .map(|i| {
            let mut it = item.clone();
            it["id"] = (1_000 + i).into();
            it["name"] = format!(
                "Limited print no. {i} — {}",
                "signed and numbered ".repeat(10)
            )
            .into();
            it["sku"] = format!("PRINT-{i:05}").into();
            it
        })
        .collect();
    order["line_items"] = items.into();
    serde_json::to_vec(&order).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_legitimate_order_is_accepted_and_one_kafka_cannot_take_is_a_dead_letter() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let config = config(&tansu.bootstrap);
    let p = Producer::start(&config, true).await.unwrap();
    let body = large_order();
    assert!(body.len() > 1_400_000, "{} bytes", body.len());
    let (code, text) = Post::signed("order.created", &body).send(&p.url).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("accepted"), "{text}");
    let orders = records_in(&config, "woo.orders").await;
    assert_eq!(orders.len(), 1);
    let d = woostream_core::contract::codec::Decoder::new();
    let event: woostream_core::contract::events::OrderEvent = {
        use rdkafka::Message;
        let payload = orders[0].payload().unwrap();
        assert!(
            payload.len() > 1_000_000,
            "over librdkafka's default limit: {} bytes",
            payload.len()
        );
        d.decode(payload).unwrap()
    };
    assert_eq!(event.order.unwrap().line_items.len(), 4_000);
    p.stop().await.unwrap();

    // A Kafka that takes less than the event, as a topic created with a smaller
    // max.message.bytes does (set here on the client, past the start-up check that keeps the
    // defaults in agreement): a permanent refusal. The delivery is kept as a dead letter and
    // answered 200, never a 503 that WooCommerce would retry until it disables the webhook.
    let mut small = config.clone();
    small.kafka.max_message_bytes = 300_000;
    let p = Producer::start(&small, false).await.unwrap();
    let (code, text) = Post::signed("order.created", &body).send(&p.url).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("refused_by_kafka"), "{text}");
    let dead = records_in(&small, "woostream.dlq.ingest").await;
    let dead = dead_letter_reasons(&small, &dead).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason_code, "refused_by_kafka");
    // Too large as a dead letter too: its start, its size and its hash are kept.
    assert_eq!(dead[0].body.len(), 64 * 1024);
    assert_eq!(&dead[0].body[..], &body[..64 * 1024]);
    assert!(
        dead[0].reason.contains(&format!("of {} bytes", body.len())),
        "{}",
        dead[0].reason
    );
    use sha2::Digest;
    assert_eq!(
        dead[0].body_sha256,
        hex::encode(sha2::Sha256::digest(&body))
    );
    p.stop().await.unwrap();
}

/// Sends a request head and no body; returns the status line of the answer.
async fn status_without_body(addr: &str, head: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_headers_decide_is_refused_before_the_body_is_read() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let mut config = config(&tansu.bootstrap);
    // Waiting for the body would end in a 408 after this; an early refusal is a 401.
    config.producer.body_timeout_ms = 1_000;
    let p = Producer::start(&config, true).await.unwrap();
    let addr = addr_of(&p.url);
    let unsigned = "POST /webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
    assert!(
        status_without_body(&addr, unsigned).await.contains(" 401 "),
        "unsigned and longer than a ping"
    );
    let too_large = "POST /webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\nX-WC-Webhook-Signature: c2ln\r\n\r\n";
    assert!(
        status_without_body(&addr, too_large)
            .await
            .contains(" 413 "),
        "declared too large"
    );
    // A signed delivery from a known shop still waits for its body, and so does one whose
    // source no shop names (WooCommerce names the host the hook fired on: the shop's secret,
    // checked on the body, decides), and a ping still works.
    let known = format!("POST /webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\nX-WC-Webhook-Source: {}\r\nX-WC-Webhook-Signature: c2ln\r\n\r\n", woostream_tests::SOURCE);
    assert!(
        status_without_body(&addr, &known).await.contains(" 408 "),
        "a known shop's body is waited for"
    );
    let unknown_source = "POST /webhooks/woocommerce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\nX-WC-Webhook-Source: https://not-a-shop.example/\r\nX-WC-Webhook-Signature: c2ln\r\n\r\n";
    assert!(
        status_without_body(&addr, unknown_source)
            .await
            .contains(" 408 "),
        "an unknown source's body is waited for"
    );
    let ping = Post::ping();
    assert_eq!(ping.send(&p.url).await.0, 200);
    p.stop().await.unwrap();
}
