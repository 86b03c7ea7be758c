//! `make bench-ingest`: the producer under load on a Tansu broker, and in the same run the raw
//! rate of a plain rdkafka producer (same settings, same Avro payloads, no woostream logic) to
//! the same broker. Prints figures and ratios; asserts nothing about time.

use std::time::{Duration, Instant};

use clap::Parser;
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use rdkafka::producer::FutureProducer;
use woostream::simulate;
use woostream_core::events::Origin;
use woostream_producer::normalise::{normalise, Delivery};
use woostream_producer::publish::{send, Encoders, Record, Topics};
use woostream_producer::signature::sign;
use woostream_tests::{config, Producer, Tansu};

#[derive(Parser)]
struct Args {
    /// Requests in the closed-loop (maximum rate) run.
    #[arg(long, default_value_t = 30_000)]
    requests: usize,
    /// Concurrent requests in the closed-loop run.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
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
            signature: sign(&w.body, secret),
            topic: w.topic,
            body: w.body,
        })
        .collect()
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
    /// Posts `n` requests (cycling through `work`), at most `in_flight` at once; with `pace`,
    /// request i is due at i × pace and its latency counts from then (open loop, so queueing in
    /// the client counts), else from when it is sent. Returns (accepted, latency µs, seconds).
    async fn drive(
        &self,
        work: &[Body],
        n: usize,
        pace: Option<Duration>,
        in_flight: usize,
    ) -> (usize, Histogram<u64>, f64) {
        let hist = std::sync::Mutex::new(Histogram::<u64>::new(3).expect("histogram"));
        let start = tokio::time::Instant::now();
        let ok = stream::iter(0..n)
            .map(|i| {
                let hist = &hist;
                async move {
                    let due = match pace {
                        Some(p) => {
                            let due = start + p * i as u32;
                            tokio::time::sleep_until(due).await;
                            due
                        }
                        None => tokio::time::Instant::now(),
                    };
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

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tansu = tokio::task::spawn_blocking(Tansu::start).await?;
    let config = config(&tansu.bootstrap);
    let shop = &config.shops[0];
    let secret = shop.secret.clone().unwrap();
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
    let records: Vec<Record> = work
        .iter()
        .map(|b| {
            let d = Delivery {
                shop_id: &shop.id,
                source: &source,
                wc_topic: Some(&b.topic),
                webhook_id: None,
                delivery_id: None,
                correlation_id: "bench",
                received_at: chrono::Utc::now(),
                origin: Origin::Webhook,
            };
            encoders
                .event_record(&normalise(&d, &b.body).unwrap())
                .unwrap()
        })
        .collect();
    let raw: FutureProducer =
        woostream_core::kafka::create_producer(&config.kafka, &tansu.bootstrap)?;
    let t0 = Instant::now();
    let acked = stream::iter(records.iter())
        .map(|r| send(&raw, r, Duration::from_secs(30)))
        .buffer_unordered(10_000)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    let raw_secs = t0.elapsed().as_secs_f64();
    let raw_rate = acked as f64 / raw_secs;
    println!("\nplain rdkafka producer: {acked} records in {raw_secs:.2}s = {raw_rate:.0} records/s (acks=all)");

    // woostream, closed loop: as fast as `concurrency` clients can post.
    let load = Load {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .build()?,
        url: producer.url.clone(),
        source: source.clone(),
    };
    let (ok, h, secs) = load.drive(&work, work.len(), None, args.concurrency).await;
    let rate = ok as f64 / secs;
    println!(
        "woostream producer (closed loop, {} in flight): {ok}/{} accepted in {secs:.2}s = {rate:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms",
        args.concurrency,
        work.len(),
        ms(&h, 0.5),
        ms(&h, 0.99)
    );
    println!(
        "ratio woostream / plain rdkafka: {:.0} %",
        100.0 * rate / raw_rate
    );

    // woostream, open loop at a fixed rate: latency as WooCommerce would see it.
    let total = (args.rate * args.seconds) as usize;
    let pace = Duration::from_secs_f64(1.0 / args.rate as f64);
    let (ok, h, secs) = load.drive(&work, total, Some(pace), 2_000).await;
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
    Ok(())
}
