//! `make bench-ingest`: the producer under load on a Tansu broker, and in the same run the raw
//! rate of a plain rdkafka producer (same settings, same Avro payloads, no woostream logic) to
//! the same broker. Prints figures and ratios; asserts nothing about time.
//!
//! The maximum rate is measured with `wrk` (a C load generator in its own process, cycling
//! through signed order webhooks), so the client's own cost is not charged to woostream; the
//! latency at a fixed rate with an in-process open-loop client.
//!
//! The floor of a webhook receiver's contract is measured beside it with the same wrk load: a
//! bare receiver (axum + rdkafka) that checks the HMAC over the raw body, produces the raw bytes
//! with acks=all and answers after the acknowledgement, without parsing anything — with
//! keep-alive, and with a new connection per request as WooCommerce delivers.

use std::time::{Duration, Instant};

use clap::Parser;
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use woostream::simulate;
use woostream_core::config::KafkaSecurity;
use woostream_core::contract::events::Origin;
use woostream_producer::publish::{Encoders, Record, Topics};
use woostream_tests::secure::{ClientAuth, Pki, SecureBroker};
use woostream_tests::{config, Producer, Tansu};
use woostream_woo::normalise::{normalise, WebhookDelivery};
use woostream_woo::signature::{sign, topic_secret, verify};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Distinct signed order webhooks (also the records of the plain-rdkafka baseline).
    #[arg(long, default_value_t = 30_000)]
    requests: usize,
    /// Connections wrk keeps open in the maximum-rate run.
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// Seconds of the maximum-rate run.
    #[arg(long, default_value_t = 10)]
    wrk_seconds: u64,
    /// Target rate of the open-loop (latency) run.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Seconds of the open-loop run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

struct Body {
    topic: String,
    body: Vec<u8>,
    signature: String,
}

fn bodies(n: usize, secret: &str) -> Vec<Body> {
    let o = simulate::Options {
        orders: n,
        customers: n / 3 + 1,
        ..Default::default()
    };
    simulate::plan(&o, chrono::Utc::now())
        .into_iter()
        .filter(|w| w.topic.starts_with("order."))
        .take(n)
        .map(|w| Body {
            // As a shop whose webhooks `woostream webhooks sync` made: each topic's own secret.
            signature: sign(&w.body, &topic_secret(secret, &w.topic)),
            topic: w.topic,
            body: w.body,
        })
        .collect()
}

/// Resident memory a keyring of `n` keys (with their people) takes, per key.
fn keyring_bytes_per_key(n: usize) -> f64 {
    let rss = || -> f64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: f64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0.0);
        pages * 4096.0
    };
    let before = rss();
    let mut ring = woostream_core::privacy::Keyring::by_subject();
    for i in 0..n {
        let key = std::sync::Arc::new(woostream_core::privacy::SubjectKey::generate(true));
        ring.insert(&format!("{i:032x}"), key);
    }
    let per_key = (rss() - before) / n as f64;
    drop(ring);
    per_key
}

/// The events the producer makes of `work` (what the baseline sends, encoded beforehand).
fn events_of(
    work: &[Body],
    config: &woostream_core::config::Config,
    shop: &str,
    source: &str,
) -> Vec<woostream_woo::normalise::Event> {
    let customers = woostream_core::privacy::CustomerHasher::for_shop(config, shop);
    work.iter()
        .map(|b| {
            let d = WebhookDelivery {
                shop_id: shop,
                source,
                wc_topic: Some(&b.topic),
                webhook_id: None,
                delivery_id: None,
                correlation_id: "bench",
                received_at: chrono::Utc::now(),
                origin: Origin::Webhook,
                customers: &customers,
            };
            normalise(&d, &b.body).unwrap()
        })
        .collect()
}

/// Mean encoded size of `events`, in clear and with their personal fields sealed (one key
/// per customer, as the producer does).
fn sealed_sizes(
    mut events: Vec<woostream_woo::normalise::Event>,
    encoders: &Encoders,
) -> (f64, f64) {
    use woostream_core::privacy::personal::{order_fields, seal_fields};
    use woostream_woo::normalise::Event;
    let mut keys = std::collections::HashMap::new();
    let size = |e: &Event| encoders.event_record(e).unwrap().value.len();
    let plain: usize = events.iter().map(size).sum();
    for event in &mut events {
        if let Event::Order(k, e) = event {
            if let Some(o) = &mut e.order {
                let key = keys
                    .entry(k.customer.clone())
                    .or_insert_with(|| woostream_core::privacy::SubjectKey::generate(true));
                seal_fields(order_fields(o), key);
            }
        }
    }
    let sealed: usize = events.iter().map(size).sum();
    let n = events.len() as f64;
    (plain as f64 / n, sealed as f64 / n)
}

async fn post(client: &reqwest::Client, url: &str, b: &Body, source: &str) -> bool {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-wc-webhook-topic", &b.topic)
        .header("x-wc-webhook-source", source)
        .header("x-wc-webhook-signature", &b.signature)
        .body(b.body.clone())
        .send()
        .await
        .map(|r| r.status().as_u16() == 200)
        .unwrap_or(false)
}

/// A load generator posting signed order webhooks to the producer.
struct Load {
    client: reqwest::Client,
    url: String,
    source: String,
}

impl Load {
    /// Posts `n` requests (cycling through `work`), at most `in_flight` at once; request i is
    /// due at i × pace and its latency counts from then (open loop, so queueing in the client
    /// counts). Returns (accepted, latency µs, seconds).
    async fn drive(
        &self,
        work: &[Body],
        n: usize,
        pace: Duration,
        in_flight: usize,
    ) -> (usize, Histogram<u64>, f64) {
        let hist = std::sync::Mutex::new(Histogram::<u64>::new(3).expect("histogram"));
        let start = tokio::time::Instant::now();
        let ok = stream::iter(0..n)
            .map(|i| {
                let hist = &hist;
                async move {
                    let due = start + pace * i as u32;
                    tokio::time::sleep_until(due).await;
                    let ok =
                        post(&self.client, &self.url, &work[i % work.len()], &self.source).await;
                    hist.lock()
                        .unwrap()
                        .record(due.elapsed().as_micros() as u64)
                        .ok();
                    ok
                }
            })
            .buffer_unordered(in_flight)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await;
        let secs = start.elapsed().as_secs_f64();
        (ok, hist.into_inner().unwrap(), secs)
    }
}

/// Records per second a plain rdkafka producer gets acknowledged, cycling through `records`
/// for `seconds` with up to 10,000 in flight.
async fn raw_rate(producer: &FutureProducer, records: &[Record], seconds: u64) -> f64 {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(seconds);
    let acked = stream::iter(records.iter().cycle())
        .take_while(|_| futures::future::ready(Instant::now() < deadline))
        .map(|r| {
            let mut hs = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                hs = hs.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let record = FutureRecord::to(&r.topic)
                .key(&r.key)
                .payload(&r.value)
                .headers(hs);
            producer.send(record, Duration::from_secs(30))
        })
        .buffer_unordered(10_000)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    acked as f64 / t0.elapsed().as_secs_f64()
}

struct WrkResult {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

/// The topic the bare receiver writes the raw bodies to.
const RAW_TOPIC: &str = "bench.raw-webhooks";

/// The bare receiver: HMAC over the raw body, the raw bytes produced with acks=all, 200 after
/// the acknowledgement, 401 for a bad signature; nothing parsed. Returns its URL.
async fn bare_receiver(
    config: &woostream_core::config::Config,
    bootstrap: &str,
    secret: String,
) -> anyhow::Result<String> {
    use axum::http::{HeaderMap, StatusCode};
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::producer::FutureRecord;
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        woostream_core::kafka::client_config(&config.kafka, bootstrap).create()?;
    admin
        .create_topics(
            &[NewTopic::new(
                RAW_TOPIC,
                config.topics.partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await?;
    let producer = woostream_core::kafka::create_producer(&config.kafka, bootstrap)?;
    // The same secrets woostream checks: each topic's own.
    let secrets: std::sync::Arc<std::collections::HashMap<String, String>> = std::sync::Arc::new(
        woostream_producer::rest::reconcile::WEBHOOK_TOPICS
            .iter()
            .map(|t| (t.to_string(), topic_secret(&secret, t)))
            .collect(),
    );
    let receive = move |headers: HeaderMap, body: axum::body::Bytes| {
        let (producer, secrets) = (producer.clone(), secrets.clone());
        async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
            };
            let signature = header("x-wc-webhook-signature");
            let Some(secret) = secrets.get(header("x-wc-webhook-topic")) else {
                return StatusCode::UNAUTHORIZED;
            };
            if !verify(&body, secret, signature) {
                return StatusCode::UNAUTHORIZED;
            }
            let record = FutureRecord::<(), [u8]>::to(RAW_TOPIC).payload(&body[..]);
            match producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => StatusCode::OK,
                Err(_) => StatusCode::SERVICE_UNAVAILABLE,
            }
        }
    };
    let app = axum::Router::new().route("/webhooks/woocommerce", axum::routing::post(receive));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks/woocommerce", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// CPU seconds this process has used (user + system): the producer and the bare receiver both
/// run in it, wrk and the broker in their own.
fn own_cpu_seconds() -> f64 {
    woostream_tests::cpu_seconds_of(std::process::id())
}

/// wrk against `url` while this process's CPU is counted: the result and CPU seconds per
/// 1,000 answered webhooks.
fn wrk_with_cpu(
    url: &str,
    source: &str,
    work: &[Body],
    connections: usize,
    seconds: u64,
    new_connection_each: bool,
) -> anyhow::Result<(WrkResult, f64)> {
    let before = own_cpu_seconds();
    let r = wrk(url, source, work, connections, seconds, new_connection_each)?;
    let cpu = own_cpu_seconds() - before;
    let per_thousand = cpu / (r.rate * seconds as f64 / 1000.0);
    Ok((r, per_thousand))
}

/// Runs wrk against the producer with a Lua script that cycles through the signed webhooks;
/// `new_connection_each` closes the connection after every request, as WooCommerce's
/// deliveries (one HTTP request each) do.
fn wrk(
    url: &str,
    source: &str,
    work: &[Body],
    connections: usize,
    seconds: u64,
    new_connection_each: bool,
) -> anyhow::Result<WrkResult> {
    use std::fmt::Write as _;
    let lua_string = |s: &[u8]| {
        let mut out = String::from("\"");
        for &b in s {
            if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
                let _ = write!(out, "\\{b:03}");
            } else {
                out.push(b as char);
            }
        }
        out.push('"');
        out
    };
    let path = url
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap_or_default();
    let connection = if new_connection_each {
        ", [\"Connection\"]=\"close\""
    } else {
        ""
    };
    let mut script = String::from("local r = {}\n");
    for b in work.iter().take(500) {
        let _ = writeln!(
            script,
            "r[#r+1] = wrk.format(\"POST\", {}, {{[\"Content-Type\"]=\"application/json\", [\"X-WC-Webhook-Topic\"]={}, [\"X-WC-Webhook-Source\"]={}, [\"X-WC-Webhook-Signature\"]={}{connection}}}, {})",
            lua_string(path.as_bytes()),
            lua_string(b.topic.as_bytes()),
            lua_string(source.as_bytes()),
            lua_string(b.signature.as_bytes()),
            lua_string(&b.body)
        );
    }
    script.push_str("local i = 0\nrequest = function() i = i % #r + 1; return r[i] end\n");
    let dir = tempfile::tempdir()?;
    let script_path = dir.path().join("webhooks.lua");
    std::fs::write(&script_path, script)?;
    let out = std::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&script_path)
        .arg(url)
        .output()
        .map_err(|e| {
            anyhow::anyhow!("running wrk (apt-get install wrk; `make bench-ingest` does): {e}")
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
            .ok_or_else(|| anyhow::anyhow!("wrk printed no {prefix:?}: {text}"))
    };
    let millis = |v: String| -> anyhow::Result<f64> {
        let (num, scale) = if let Some(n) = v.strip_suffix("us") {
            (n, 0.001)
        } else if let Some(n) = v.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1000.0)
        } else {
            (v.as_str(), 1.0)
        };
        Ok(num.parse::<f64>()? * scale)
    };
    Ok(WrkResult {
        rate: field("Requests/sec:")?.parse()?,
        p50_ms: millis(field("50%")?)?,
        p99_ms: millis(field("99%")?)?,
        non_2xx: field("Non-2xx or 3xx responses:")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tansu = tokio::task::spawn_blocking(Tansu::start).await?;
    let config = config(&tansu.bootstrap);
    let shop = &config.shops[0];
    let secret = shop
        .resolved_secret()
        .expect("the bench configures a secret");
    let source = shop.source.clone();
    let producer = Producer::start(&config, true).await?;
    println!(
        "broker: Tansu 0.6.0 memory:// at {}; {} partitions",
        tansu.bootstrap, config.topics.partitions
    );
    let work = bodies(args.requests, &secret);

    // Baseline: the same records, encoded beforehand, through a plain rdkafka producer with the
    // same settings (idempotent, acks=all, linger, compression, murmur2).
    let encoders = Encoders::single_object(Topics::from_config(&config.topics));
    let events = events_of(&work, &config, &shop.id, &source);
    let records: Vec<Record> = events
        .iter()
        .map(|e| encoders.event_record(e).unwrap())
        .collect();
    // What sealing adds to a record: the same orders, their personal fields sealed.
    let (plain_bytes, sealed_bytes) = sealed_sizes(events, &encoders);
    println!(
        "order records: {plain_bytes:.0} bytes in clear, {sealed_bytes:.0} bytes sealed (+{:.0} bytes, +{:.0} %)",
        sealed_bytes - plain_bytes,
        100.0 * (sealed_bytes - plain_bytes) / plain_bytes
    );
    let per_key = keyring_bytes_per_key(200_000);
    println!("subject keys in memory: {per_key:.0} bytes per key (a producer's keyring, which also knows whose each key is)");
    let raw: FutureProducer =
        woostream_core::kafka::create_producer(&config.kafka, &tansu.bootstrap)?;
    let secs = args.wrk_seconds;
    let before = raw_rate(&raw, &records, secs).await;
    println!("\nplain rdkafka producer, before: {before:.0} records/s (acks=all, {secs}s)");

    // woostream at its maximum rate, driven by wrk from another process, beside the bare
    // receiver under the same load: with keep-alive, and a new connection per request.
    let bare = bare_receiver(&config, &tansu.bootstrap, secret.clone()).await?;
    let mut max = None;
    for new_connection_each in [false, true] {
        let how = if new_connection_each {
            "a new connection per request"
        } else {
            "keep-alive"
        };
        let run = |url: &str| {
            wrk_with_cpu(
                url,
                &source,
                &work,
                args.connections,
                args.wrk_seconds,
                new_connection_each,
            )
        };
        let (ours, ours_cpu) = tokio::task::block_in_place(|| run(&producer.url))?;
        let (floor, floor_cpu) = tokio::task::block_in_place(|| run(&bare))?;
        for (name, r) in [("woostream", &ours), ("bare receiver", &floor)] {
            anyhow::ensure!(
                r.non_2xx == 0,
                "{name}: {} webhooks were not accepted: the rate would be meaningless",
                r.non_2xx
            );
        }
        println!(
            "woostream producer (wrk, {} connections, {}s, {how}): {:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms, {ours_cpu:.3} CPU s per 1,000 webhooks",
            args.connections, args.wrk_seconds, ours.rate, ours.p50_ms, ours.p99_ms
        );
        println!(
            "bare receiver (HMAC, raw produce, answer after the ack; same load): {:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms, {floor_cpu:.3} CPU s per 1,000 webhooks",
            floor.rate, floor.p50_ms, floor.p99_ms
        );
        println!(
            "ratio woostream / bare receiver ({how}): {:.0} %, p99 {:+.1} ms",
            100.0 * ours.rate / floor.rate,
            ours.p99_ms - floor.p99_ms
        );
        if !new_connection_each {
            max = Some(ours);
        }
    }
    let max = max.expect("the keep-alive run");
    // The same producer with sealing off: what sealing (a key per new customer, written first,
    // and 20 fields sealed per order) costs at the maximum rate.
    let mut unsealed_config = config.clone();
    unsealed_config.privacy.seal_personal_data = false;
    unsealed_config.producer.listen = "127.0.0.1:0".parse()?;
    unsealed_config.ops.listen = "127.0.0.1:0".parse()?;
    let unsealed = Producer::start(&unsealed_config, true).await?;
    let (clear, _) = tokio::task::block_in_place(|| {
        wrk_with_cpu(
            &unsealed.url,
            &source,
            &work,
            args.connections,
            args.wrk_seconds,
            false,
        )
    })?;
    unsealed.stop().await?;
    println!(
        "woostream producer without sealing (keep-alive, same load): {:.0} requests/s; sealed / not sealed: {:.0} %",
        clear.rate,
        100.0 * max.rate / clear.rate
    );
    // Measured again afterwards: the broker's state differs between the runs, so the baseline
    // is the mean of one run before and one after.
    let after = raw_rate(&raw, &records, secs).await;
    println!("plain rdkafka producer, after: {after:.0} records/s");
    println!(
        "ratio woostream / plain rdkafka: {:.0} %",
        200.0 * max.rate / (before + after)
    );

    // woostream, open loop at a fixed rate: latency as WooCommerce would see it.
    let total = (args.rate * args.seconds) as usize;
    let pace = Duration::from_secs_f64(1.0 / args.rate as f64);
    let load = Load {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(2_000)
            .build()?,
        url: producer.url.clone(),
        source: source.clone(),
    };
    let (ok, h, secs) = load.drive(&work, total, pace, 2_000).await;
    println!(
        "woostream producer (open loop at {} requests/s for {}s): {ok}/{total} accepted, achieved {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        args.rate,
        args.seconds,
        ok as f64 / secs,
        ms(&h, 0.5),
        ms(&h, 0.99),
        h.max() as f64 / 1000.0
    );
    producer.stop().await?;

    // The same producer and the same load over TLS with a client certificate (as Aiven and
    // most platform teams run Kafka), beside the plaintext keep-alive run above. The TLS
    // listener is stunnel in front of Tansu (Tansu 0.6 has none), on the same two cores.
    let broker =
        tokio::task::spawn_blocking(|| SecureBroker::start(ClientAuth::Certificate)).await?;
    let mut tls = config.clone();
    tls.kafka.bootstrap_servers = Some(broker.bootstrap.clone());
    tls.kafka.security = KafkaSecurity {
        protocol: Some("SSL".into()),
        ca_file: Some(broker.pki.ca.clone()),
        cert_file: Some(broker.pki.client_cert.clone()),
        key_file: Some(broker.pki.client_key.clone()),
        key_password: Some(Pki::CLIENT_KEY_PASSWORD.into()),
        ..KafkaSecurity::default()
    };
    // Started first: it creates the topics on this broker.
    let producer = Producer::start(&tls, true).await?;
    let raw_tls: FutureProducer =
        woostream_core::kafka::create_producer(&tls.kafka, &broker.bootstrap)?;
    let raw_tls_rate = raw_rate(&raw_tls, &records, args.wrk_seconds).await;
    let (over_tls, tls_cpu) = tokio::task::block_in_place(|| {
        wrk_with_cpu(
            &producer.url,
            &source,
            &work,
            args.connections,
            args.wrk_seconds,
            false,
        )
    })?;
    anyhow::ensure!(
        over_tls.non_2xx == 0,
        "over TLS: {} webhooks not accepted",
        over_tls.non_2xx
    );
    println!(
        "\nplain rdkafka producer over TLS (mutual, via stunnel): {raw_tls_rate:.0} records/s"
    );
    println!(
        "woostream producer over TLS (wrk, {} connections, {}s, keep-alive): {:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms, {tls_cpu:.3} CPU s per 1,000 webhooks",
        args.connections, args.wrk_seconds, over_tls.rate, over_tls.p50_ms, over_tls.p99_ms
    );
    println!(
        "ratio over TLS / plaintext (woostream, keep-alive): {:.0} %; plain rdkafka over TLS / plaintext: {:.0} %",
        100.0 * over_tls.rate / max.rate,
        200.0 * raw_tls_rate / (before + after)
    );
    producer.stop().await?;
    Ok(())
}
