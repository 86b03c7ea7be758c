//! `make bench-crm`: the CRM sink's figures, each beside its baseline measured in the same run.
//! Prints; asserts nothing about time.
//!
//! A flash sale's records (orders with WooCommerce's duplicate and late deliveries, and the
//! profiles an enricher writes) wait in Kafka as a backlog — the CRM was down, or the sink is
//! new — and `woostream crm run` (a separate release process) drains it into the local HubSpot:
//!
//! - within HubSpot's budget (190 requests per 10 s): the time and the requests it takes, beside
//!   the fewest requests the end state needs and the budget's minimum time for them, and beside
//!   the requests a sink calling once per event (as shop plugins do) would make;
//! - with no limit: records/s, beside a plain rdkafka consumer reading the same topics.

use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use woostream_core::config::Config;
use woostream_tests::crm::{await_complete, sale, sink_toml, Sale, BUDGET, TOKEN};
use woostream_tests::enricher::{free_port, produce_all, spawn};
use woostream_tests::hubspot::FakeHubSpot;
use woostream_tests::Tansu;

#[derive(Parser)]
struct Args {
    /// Orders in the sale (plus duplicate and late deliveries and profiles).
    #[arg(long, default_value_t = 20_000)]
    orders: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sale = sale(args.orders, 11);
    let runtime = tokio::runtime::Runtime::new()?;
    let tansu = Tansu::start();
    let mut config = woostream_tests::config(&tansu.bootstrap);
    config.topics.partitions = 3;
    runtime.block_on(woostream_core::kafka::ensure_topics(
        &config.kafka,
        &tansu.bootstrap,
        &config.topics,
        &config.retention,
    ))?;
    runtime.block_on(produce_all(&tansu.bootstrap, &sale.records));
    let t = &config.topics;
    let read = [&t.orders.name, &t.customers.name, &t.profiles.name];
    // The sale has product events too; the sink does not read them.
    let records = sale
        .records
        .iter()
        .filter(|r| read.contains(&&r.topic))
        .count();
    let changes: usize = sale
        .records
        .iter()
        .filter(|r| read.contains(&&r.topic))
        .map(|r| if r.topic == t.orders.name { 2 } else { 1 })
        .sum();
    println!(
        "backlog: {records} records ({} orders, {} customers) on Tansu 0.6.0, {} partitions a topic",
        sale.orders.len(),
        sale.customers.len(),
        config.topics.partitions
    );

    let baseline = plain_read(&config, records)?;
    println!("plain rdkafka consumer reading the same topics: {baseline:.0} records/s");

    let fewest = sale.customers.len().div_ceil(100) + 2 * sale.orders.len().div_ceil(100);
    let budget_time = fewest as f64 / (BUDGET as f64 / 10.0);
    let limited = runtime.block_on(drain(&tansu, &sale, BUDGET, "budgeted"))?;
    println!(
        "woostream crm run within {BUDGET} requests / 10 s: drained in {:.1} s with {} requests ({:.1} inputs each, {} answered 429, busiest 10 s {}, peak RSS {:.0} MiB); fewest the end state needs: {fewest} ({:.2}×), the budget's minimum time for them {budget_time:.1} s",
        limited.seconds,
        limited.requests,
        limited.inputs as f64 / limited.requests.max(1) as f64,
        limited.rate_limited,
        limited.busiest,
        limited.peak_rss as f64 / (1024.0 * 1024.0),
        limited.requests as f64 / fewest as f64,
    );
    println!(
        "a sink calling once per event would make {changes} requests ({:.0}× as many; {:.0} min at {BUDGET} / 10 s)",
        changes as f64 / limited.requests.max(1) as f64,
        changes as f64 / (BUDGET as f64 / 10.0) / 60.0
    );

    let free = runtime.block_on(drain(&tansu, &sale, 1_000_000, "unlimited"))?;
    let rate = records as f64 / free.seconds;
    println!(
        "woostream crm run with no CRM limit: {rate:.0} records/s ({:.1} s, {} requests, CPU {:.1} s, peak RSS {:.0} MiB)",
        free.seconds,
        free.requests,
        free.cpu_seconds,
        free.peak_rss as f64 / (1024.0 * 1024.0)
    );
    println!(
        "ratio sink / plain consumer: {:.0} %  (the sink decodes, coalesces, calls HubSpot over HTTP and writes its audit; the local HubSpot and the broker share the 2 cores)",
        100.0 * rate / baseline
    );
    Ok(())
}

struct Drained {
    seconds: f64,
    requests: usize,
    inputs: usize,
    rate_limited: usize,
    busiest: usize,
    cpu_seconds: f64,
    peak_rss: u64,
}

/// Starts a sink with its own consumer group and audit topic on the backlog; waits until the
/// CRM holds the sale's end state.
async fn drain(tansu: &Tansu, sale: &Sale, budget: usize, run: &str) -> anyhow::Result<Drained> {
    let hubspot = FakeHubSpot::start(TOKEN, budget).await;
    let port = free_port();
    let toml = sink_toml(&tansu.bootstrap, &hubspot, port, budget).replace(
        "[crm]\n",
        &format!("[topics.deliveries]\nname = \"woostream.deliveries.{run}\"\n[crm]\ngroup_id = \"bench-crm-{run}\"\n"),
    );
    let mut config = woostream_tests::config(&tansu.bootstrap);
    config.topics.deliveries.name = format!("woostream.deliveries.{run}");
    config.topics.partitions = 3;
    woostream_core::kafka::ensure_topics(
        &config.kafka,
        &tansu.bootstrap,
        &config.topics,
        &config.retention,
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let sink = spawn("crm run", &toml, run, port, dir.path());
    // The clock starts at the first record read, as the plain consumer's does: start-up (the
    // audit read back, the CRM's properties checked) is not throughput.
    let started = loop {
        if sink.metric("woostream_crm_events_total") > 0.0 {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    await_complete(&hubspot, sale, Duration::from_secs(900)).await;
    let seconds = started.elapsed().as_secs_f64();
    let requests = hubspot.requests();
    let ok: Vec<_> = requests.iter().filter(|r| r.status == 200).collect();
    Ok(Drained {
        seconds,
        requests: ok.len(),
        inputs: ok.iter().map(|r| r.inputs).sum(),
        rate_limited: requests.iter().filter(|r| r.status == 429).count(),
        busiest: hubspot.busiest_window(),
        cpu_seconds: sink.cpu_seconds(),
        peak_rss: sink.peak_rss_bytes(),
    })
}

/// Reads every record of the sink's three topics once, every partition assigned from its
/// beginning; records/s from the first record to the last.
fn plain_read(config: &Config, records: usize) -> anyhow::Result<f64> {
    let bootstrap = config.kafka.bootstrap_servers.clone().unwrap_or_default();
    let consumer: BaseConsumer = woostream_core::kafka::client_config(&config.kafka, &bootstrap)
        .set("group.id", "bench-crm-plain")
        .set("enable.auto.commit", "false")
        .create()?;
    let t = &config.topics;
    let mut all = TopicPartitionList::new();
    for topic in [&t.orders.name, &t.customers.name, &t.profiles.name] {
        for p in 0..config.topics.partitions {
            all.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    consumer.assign(&all)?;
    let mut first = None;
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen < records && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m?;
            first.get_or_insert_with(Instant::now);
            seen += 1;
        }
    }
    anyhow::ensure!(seen == records, "read {seen} of {records} records");
    Ok(seen as f64 / first.expect("read").elapsed().as_secs_f64())
}
