//! `make bench-enrich`: the enricher's figures, each beside its baseline measured in the same
//! run. Prints; asserts nothing about time.
//!
//! - Orders/s through `woostream enricher` (a separate release process) on a Tansu broker, and a
//!   plain rdkafka consume → produce passthrough of the same records, same broker, same
//!   producer settings, as the limit.
//! - BG/NBD + Gamma-Gamma fit time on CDNOW and on a million simulated customers, beside
//!   `lifetimes` 0.11.3 fitting the same CSV in its own process.
//! - Heap bytes of enricher state per customer, counted by the allocator.

use std::alloc::System;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Exp, Gamma};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use woostream_core::config::Config;
use woostream_core::contract::codec::Decoder;
use woostream_core::contract::events::{CustomerKey, OrderEvent};
use woostream_enricher::clv::{self, History, Sample, Spend};
use woostream_enricher::model::Model;
use woostream_enricher::partition::{CustomerPartition, Settings};
use woostream_producer::publish::Record;
use woostream_tests::enricher::{produce_all, run_config, sale_records, EnricherProcess};
use woostream_tests::Tansu;

// Counting allocations is what the bytes-per-customer figure needs; the enricher process that
// is timed has its own allocator.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CDNOW: &str = "tests/fixtures/cdnow/cdnow_customers_summary_with_transactions.csv";

#[derive(Parser)]
struct Args {
    /// Sale orders of the throughput run (plus duplicate and late deliveries).
    #[arg(long, default_value_t = 30_000)]
    orders: usize,
    /// History orders delivered before the sale.
    #[arg(long, default_value_t = 15_000)]
    history: usize,
    /// Only the CDNOW fit (quick).
    #[arg(long)]
    only_cdnow: bool,
    /// Simulated customers of the large fit.
    #[arg(long, default_value_t = 1_000_000)]
    customers: usize,
    /// Skip the broker runs (fit and memory only).
    #[arg(long)]
    no_broker: bool,
    /// Only the broker runs.
    #[arg(long)]
    only_broker: bool,
    /// The enricher's commit interval (default: the configuration's default).
    #[arg(long)]
    commit_interval_ms: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let records = sale_records(args.orders, args.history, 7);
    if !args.no_broker {
        throughput(&records, args.commit_interval_ms)?;
    }
    if args.only_broker {
        return Ok(());
    }
    stages(&records)?;
    state_bytes(&records)?;
    let dir = tempfile::tempdir()?;
    let cdnow = woostream_tests::repo_root().join(CDNOW);
    fits("CDNOW (2,357 customers)", &cdnow, 5)?;
    if args.only_cdnow {
        return Ok(());
    }
    let large = dir.path().join("simulated.csv");
    simulate_summary(&large, args.customers, 11)?;
    fits(
        &format!("simulated ({} customers)", args.customers),
        &large,
        1,
    )?;
    Ok(())
}

/// Orders/s through the enricher and through a plain passthrough of the same input.
fn throughput(records: &[Record], commit_interval_ms: Option<u64>) -> anyhow::Result<()> {
    let tansu = Tansu::start();
    let bootstrap = tansu.bootstrap.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    let mut config = run_config(&bootstrap, "bench", "enricher-bench");
    config.enricher.commit_interval_ms =
        commit_interval_ms.unwrap_or(Config::default().enricher.commit_interval_ms);
    runtime.block_on(woostream_core::kafka::ensure_topics(
        &config.kafka,
        &bootstrap,
        &config.topics,
        &config.retention,
    ))?;
    let produced = runtime.block_on(produce_all(&bootstrap, records));
    let inputs: i64 = produced.values().sum();
    let orders: i64 = produced
        .iter()
        .filter(|((t, _), _)| *t == config.topics.orders.name)
        .map(|(_, n)| n)
        .sum();
    println!(
        "broker: Tansu 0.6.0 memory:// at {bootstrap}; {inputs} input records ({orders} order deliveries) on {} partitions",
        config.topics.partitions
    );

    let broker_before = tansu.cpu_seconds();
    let passthrough = passthrough_rate(&config, &bootstrap, inputs, 1.0, "passthrough-bench")?;
    let broker_passthrough = tansu.cpu_seconds() - broker_before;
    println!("plain rdkafka consume → produce passthrough: {passthrough:.0} records/s (broker CPU {broker_passthrough:.1} s)");
    // The enricher writes about 1.85 records per record read (1.84 alerts and 0.81 profile
    // versions per order, profiles coalesced within a commit interval): the same passthrough
    // writing that many is the floor of its contract, before any decoding or scoring.
    let broker_before = tansu.cpu_seconds();
    let fan_out = passthrough_rate(
        &config,
        &bootstrap,
        inputs,
        ENRICHER_FAN_OUT,
        "fan-out-bench",
    )?;
    let broker_fan_out = tansu.cpu_seconds() - broker_before;
    println!("plain rdkafka consume → produce writing {ENRICHER_FAN_OUT} records per record read: {fan_out:.0} records/s (broker CPU {broker_fan_out:.1} s)");
    let broker_before = tansu.cpu_seconds();

    let dir = tempfile::tempdir()?;
    let enricher = EnricherProcess::start(&config, "bench", dir.path());
    // The clock starts at the first processed record, as the passthrough's does: group joins
    // and restores are not throughput.
    let mut first = None;
    while first.is_none() {
        if enricher.metric("woostream_enricher_records_total") > 0.0 {
            first = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = first.expect("set above");
    let caught_up = caught_up_at(&config, &bootstrap, &produced, Duration::from_secs(600))?;
    let seconds = (caught_up - first).as_secs_f64();
    let rate = inputs as f64 / seconds;
    let cpu = enricher.cpu_seconds();
    let broker = tansu.cpu_seconds() - broker_before;
    println!(
        "woostream enricher (commit every {} ms, transactions off on Tansu): {rate:.0} records/s ({:.0} order deliveries/s), {:.0} profiles and {:.0} alerts written",
        config.enricher.commit_interval_ms,
        orders as f64 / seconds,
        enricher.metric("woostream_enricher_profiles_total"),
        enricher.metric("woostream_enricher_alerts_total"),
    );
    println!(
        "ratio enricher / passthrough: {:.0} %; enricher / passthrough at its fan-out: {:.0} %  (enricher CPU {cpu:.1} s, broker CPU {broker:.1} s over {seconds:.1} s on 2 cores)",
        100.0 * rate / passthrough,
        100.0 * rate / fan_out
    );
    // A rebalance's cost: a new instance of the group takes every partition and restores
    // each customer's newest profile from the profile topic; against a plain read of that topic.
    let mut enricher = enricher;
    enricher.stop();
    let started = Instant::now();
    let restorer = EnricherProcess::start(&config, "bench-restore", dir.path());
    while !restorer.is_ready() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the restoring enricher is not ready after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let restore = restorer.metric("woostream_enricher_restore_seconds_sum");
    let customers = restorer.metric("woostream_enricher_customers");
    let profile_records = restorer.metric_with(
        "woostream_enricher_restored_records_total",
        &[("topic", &config.topics.profiles.name)],
    );
    drop(restorer);
    let read_started = Instant::now();
    let plain_read = {
        let consumer =
            woostream_core::kafka::reading::reader(&config.kafka, &bootstrap, "restore-bench")?;
        let mut n = 0u64;
        woostream_core::kafka::reading::read_all_now(
            &config.kafka,
            &bootstrap,
            &consumer,
            &config.topics.profiles.name,
            |_| n += 1,
        )?;
        n as f64 / read_started.elapsed().as_secs_f64()
    };
    println!(
        "restore after a rebalance: {customers:.0} customers from {profile_records:.0} profile records in {restore:.2} s = {:.0} profiles/s, {:.0} s per million customers; a plain read of the profile topic: {plain_read:.0} records/s (restore reads at {:.0} % of it)",
        customers / restore,
        1e6 * restore / customers,
        100.0 * profile_records / restore / plain_read
    );
    drop(tansu);

    // Scaling out: one and then two instances in one group, each on a fresh broker, joined
    // before the sale is written, so that no rebalance falls into the measurement.
    let one = instances_rate(records, 1)?;
    let two = instances_rate(records, 2)?;
    println!(
        "one group, input written while it runs: 1 instance {one:.0} records/s, 2 instances {two:.0} records/s ({:.2}×; {} partitions, 2 cores shared with the broker and the producer of the input)",
        two / one,
        Config::default().topics.partitions
    );
    Ok(())
}

/// Records/s through `n` enricher instances of one group on a fresh broker: the instances
/// join first, then the sale is written; from the first record processed to the last
/// committed.
fn instances_rate(records: &[Record], n: usize) -> anyhow::Result<f64> {
    let tansu = Tansu::start();
    let bootstrap = tansu.bootstrap.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    let config = run_config(&bootstrap, "scale", "enricher-scale");
    runtime.block_on(woostream_core::kafka::ensure_topics(
        &config.kafka,
        &bootstrap,
        &config.topics,
        &config.retention,
    ))?;
    let dir = tempfile::tempdir()?;
    let enrichers: Vec<EnricherProcess> = (0..n)
        .map(|i| EnricherProcess::start(&config, &format!("scale-{i}"), dir.path()))
        .collect();
    // Every input partition held by someone, each instance holding some. The gauge counts a
    // customer partition (orders and customers n together) and the product and review
    // partitions: three per partition number.
    let inputs = 3.0 * config.topics.partitions as f64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let held: Vec<f64> = enrichers
            .iter()
            .map(|e| e.metric("woostream_enricher_assigned_partitions"))
            .collect();
        if held.iter().sum::<f64>() >= inputs && held.iter().all(|h| *h > 0.0) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the group never settled: {held:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let writing = std::thread::spawn({
        let (bootstrap, records) = (bootstrap.clone(), records.to_vec());
        move || {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(produce_all(&bootstrap, &records))
        }
    });
    let processed = || -> f64 {
        enrichers
            .iter()
            .map(|e| e.metric("woostream_enricher_records_total"))
            .sum()
    };
    while processed() == 0.0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let first = Instant::now();
    let produced = writing.join().expect("the input was written");
    let caught_up = caught_up_at(&config, &bootstrap, &produced, Duration::from_secs(600))?;
    let total: i64 = produced.values().sum();
    Ok(total as f64 / (caught_up - first).as_secs_f64())
}

/// When `config`'s enricher group has committed every produced record, watched every 10 ms
/// through one client (the enricher's clock stops there, as the passthrough's stops at its
/// last acknowledgement).
fn caught_up_at(
    config: &Config,
    bootstrap: &str,
    produced: &HashMap<(String, i32), i64>,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let consumer: BaseConsumer = woostream_core::kafka::client_config(&config.kafka, bootstrap)
        .set("group.id", &config.enricher.group_id)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (topic, partition) in produced.keys() {
        tpl.add_partition(topic, *partition);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let committed = consumer.committed_offsets(tpl.clone(), Duration::from_secs(10))?;
        let now = Instant::now();
        let behind = committed.elements().iter().any(|e| {
            let want = produced[&(e.topic().to_string(), e.partition())];
            !matches!(e.offset(), rdkafka::Offset::Offset(o) if o >= want)
        });
        if !behind {
            return Ok(now);
        }
        anyhow::ensure!(
            now < deadline,
            "the enricher did not catch up within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Records the enricher writes per record it reads in this benchmark's sale (alerts plus
/// coalesced profile versions), as its own run reports them.
const ENRICHER_FAN_OUT: f64 = 1.85;

/// Reads every shop-topic record with a consumer group and writes its key and value unchanged
/// `fan_out` times on average to one output topic, with the enricher's producer settings;
/// records read per second from the first read to the last acknowledgement.
fn passthrough_rate(
    config: &Config,
    bootstrap: &str,
    inputs: i64,
    fan_out: f64,
    group: &str,
) -> anyhow::Result<f64> {
    let t = &config.topics;
    let consumer: BaseConsumer = woostream_core::kafka::client_config(&config.kafka, bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[
        &t.orders.name,
        &t.customers.name,
        &t.products.name,
        &t.reviews.name,
    ])?;
    let producer: ThreadedProducer<DefaultProducerContext> =
        woostream_core::kafka::producer_config(&config.kafka, bootstrap).create()?;
    let out = &t.alerts.name;
    let mut first = None;
    let mut seen = 0i64;
    let mut owed = 0.0;
    while seen < inputs {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m?;
        first.get_or_insert_with(Instant::now);
        owed += fan_out;
        while owed >= 1.0 {
            owed -= 1.0;
            let mut record = BaseRecord::<[u8], [u8]>::to(out)
                .key(m.key().unwrap_or_default())
                .partition(m.partition());
            if let Some(v) = m.payload() {
                record = record.payload(v);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
        }
        seen += 1;
    }
    producer.flush(Duration::from_secs(60))?;
    let seconds = first.expect("records were read").elapsed().as_secs_f64();
    Ok(inputs as f64 / seconds)
}

/// Deliveries between two commits in the stage figures (the runner commits every 500 ms, at
/// about 30,000 deliveries, or sooner when the input goes quiet).
const COMMIT_EVERY: usize = 5_000;

/// CPU per order delivery of each stage of the enricher's work, on one core and without
/// Kafka: decode (key and value; apache-avro's value tree beside the direct decoder that
/// replaced it), apply (state, scores, alerts), encode (every alert and profile version the
/// order caused). What the broker run adds on top of these is the Kafka edge (consume,
/// produce, acknowledgements).
fn stages(records: &[Record]) -> anyhow::Result<()> {
    use woostream_core::contract::codec::{
        decode_direct_datum, decode_through_values, encode_with_apache_avro, Encoder, Framing,
    };
    use woostream_core::contract::enriched::{Alert, AlertKey, CustomerProfile};
    let config = Config::default();
    let orders: Vec<&Record> = records
        .iter()
        .filter(|r| r.topic == config.topics.orders.name)
        .collect();
    let n = orders.len() as f64;
    // Single-object framing: a 10-byte header before the datum.
    let datum = |bytes: &[u8]| bytes[10..].to_vec();
    let data: Vec<(Vec<u8>, Vec<u8>)> = orders
        .iter()
        .map(|r| (datum(&r.key), datum(&r.value)))
        .collect();
    let per_order = |started: Instant| started.elapsed().as_secs_f64() * 1e6 / n;

    let started = Instant::now();
    for (k, v) in &data {
        std::hint::black_box(decode_through_values::<CustomerKey>(k)?);
        std::hint::black_box(decode_through_values::<OrderEvent>(v)?);
    }
    let through_values = per_order(started);
    let started = Instant::now();
    let mut decoded = Vec::with_capacity(data.len());
    for (k, v) in &data {
        let key: CustomerKey = decode_direct_datum(k)?;
        let event: OrderEvent = decode_direct_datum(v)?;
        decoded.push((key, event));
    }
    let direct = per_order(started);

    let e = &config.enricher;
    let model = Model::prior(e);
    // As the runner applies: each customer's newest version kept in the partition and built
    // at the commit (here every COMMIT_EVERY deliveries).
    let settings = Settings {
        defer_profiles: true,
        ..Settings::from_config(e)?
    };
    let mut partition = CustomerPartition::new(0);
    let started = Instant::now();
    let mut outputs = Vec::with_capacity(decoded.len());
    for (offset, (key, event)) in decoded.iter().enumerate() {
        let mut output = partition.on_order(key, event, offset as i64, &model, &settings);
        if offset % COMMIT_EVERY == COMMIT_EVERY - 1 || offset == decoded.len() - 1 {
            output.profiles.extend(
                partition
                    .take_profiles(&settings)
                    .into_iter()
                    .map(|(k, p)| (k, Some(p))),
            );
        }
        outputs.push(output);
    }
    let apply = per_order(started);
    // One customer's scores (BG/NBD, Gamma-Gamma, 12 months of CLV, RFM): what every order
    // and every customer's daily rescore costs.
    let started = Instant::now();
    let mut scored = 0usize;
    for (_, _, state) in partition.customers() {
        std::hint::black_box(woostream_enricher::customer::score(
            state,
            &model,
            &settings.scoring,
            state.as_of_ms,
        ));
        scored += 1;
    }
    let score = started.elapsed().as_secs_f64() * 1e6 / scored.max(1) as f64;

    let framing = Framing::SingleObject;
    let (customer_key, profile) = (
        Encoder::<CustomerKey>::new(&framing),
        Encoder::<CustomerProfile>::new(&framing),
    );
    let (alert_key, alert) = (
        Encoder::<AlertKey>::new(&framing),
        Encoder::<Alert>::new(&framing),
    );
    let (mut alerts, mut profiles) = (0usize, 0usize);
    let started = Instant::now();
    for output in &outputs {
        for (k, a) in &output.alerts {
            std::hint::black_box((alert_key.encode(k)?, alert.encode(a)?));
            alerts += 1;
        }
        for (k, p) in &output.profiles {
            std::hint::black_box(customer_key.encode(k)?);
            if let Some(p) = p {
                std::hint::black_box(profile.encode(p)?);
            }
            profiles += 1;
        }
    }
    let encode = per_order(started);
    let started = Instant::now();
    for output in &outputs {
        for (k, a) in &output.alerts {
            std::hint::black_box((encode_with_apache_avro(k)?, encode_with_apache_avro(a)?));
        }
        for (k, p) in &output.profiles {
            std::hint::black_box(encode_with_apache_avro(k)?);
            if let Some(p) = p {
                std::hint::black_box(encode_with_apache_avro(p)?);
            }
        }
    }
    let encode_apache = per_order(started);
    println!(
        "
stages, CPU µs per order delivery on one core ({} deliveries, {:.2} alerts and {:.2} profile versions each):",
        data.len(),
        alerts as f64 / n,
        profiles as f64 / n
    );
    println!(
        "  decode {direct:.2} (direct; apache-avro value tree {through_values:.2}, {:.1}× slower) · apply {apply:.2} (scoring one customer: {score:.2}) · encode {encode:.2} (direct; apache-avro {encode_apache:.2}, {:.1}× slower) · total {:.2} µs = {:.0} deliveries/s before Kafka",
        through_values / direct,
        encode_apache / encode,
        direct + apply + encode,
        1e6 / (direct + apply + encode)
    );
    Ok(())
}

/// Heap bytes per customer of the enricher's state, after the sale's orders.
fn state_bytes(records: &[Record]) -> anyhow::Result<()> {
    let config = Config::default();
    let decoder = Decoder::new();
    let orders: Vec<(i32, CustomerKey, OrderEvent)> = records
        .iter()
        .filter(|r| r.topic == config.topics.orders.name)
        .map(|r| {
            let key: CustomerKey = decoder.decode(&r.key).expect("key");
            let event: OrderEvent = decoder.decode(&r.value).expect("order");
            (0, key, event)
        })
        .collect();
    let model = Model::prior(&config.enricher);
    let e = &config.enricher;
    let settings = Settings::from_config(e)?;
    let region = Region::new(ALLOCATOR);
    let started = Instant::now();
    let mut partition = CustomerPartition::new(0);
    for (offset, (_, key, event)) in orders.iter().enumerate() {
        drop(partition.on_order(key, event, offset as i64, &model, &settings));
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = region.change();
    // stats_alloc already books a realloc's growth or shrinkage as allocated or deallocated.
    let bytes = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
    let customers = partition.len().max(1) as f64;
    let entries: usize = partition
        .customers()
        .map(|(_, _, c)| c.orders.capacity())
        .sum();
    let per_entry = std::mem::size_of::<woostream_enricher::customer::LedgerEntry>();
    let per_customer = bytes as f64 / customers;
    let ledger = (entries * per_entry) as f64 / customers;
    // What taste keeps per order: its largest lines (product, quantity, total, categories)
    // and the payment method.
    let (mut items, mut lines) = (0usize, 0usize);
    for (_, _, c) in partition.customers() {
        for o in &c.orders {
            lines += o.items.len();
            items += o.items.len() * std::mem::size_of::<woostream_enricher::customer::Item>();
        }
    }
    let taste = items as f64 / customers;
    println!(
        "\nstate: {customers} customers after {} order deliveries: {per_customer:.0} heap bytes per customer = {:.0} B for the customer (map entry, key, scores) + {ledger:.0} B of ledger ({:.2} orders × {per_entry} B) + {taste:.0} B of taste ({:.2} lines per order held); pure processing {:.0} deliveries/s on one core",
        orders.len(),
        per_customer - ledger - taste,
        entries as f64 / customers,
        lines as f64 / entries.max(1) as f64,
        orders.len() as f64 / seconds
    );
    drop(partition);
    Ok(())
}

/// Fits BG/NBD and Gamma-Gamma to a summary CSV (ID,x,t_x,T,zbar) with woostream, best of
/// `repeats`, and with `lifetimes` in its own process.
fn fits(name: &str, csv: &Path, repeats: usize) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(csv)?;
    let rows: Vec<[f64; 4]> = text
        .lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f64> = l.split(',').skip(1).map(|f| f.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect();
    let mut best = f64::INFINITY;
    let mut fitted = None;
    let mut split = (0.0, 0.0, 0, 0);
    for _ in 0..repeats {
        let started = Instant::now();
        let sample = Sample::new(rows.iter().map(|v| History {
            frequency: v[0],
            recency: v[1],
            age: v[2],
        }));
        let spends: Vec<Spend> = rows
            .iter()
            .filter(|v| v[0] > 0.0)
            .map(|v| Spend {
                frequency: v[0],
                mean_value: v[3],
            })
            .collect();
        let built = started.elapsed().as_secs_f64();
        let (bg, bg_report) = clv::fit_bgnbd(&sample)?;
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!("sample built in {built:.6} s, {} terms", sample.terms());
        }
        let bg_seconds = started.elapsed().as_secs_f64();
        let (gg, gg_report) = clv::fit_gamma_gamma(&spends)?;
        let total = started.elapsed().as_secs_f64();
        if total < best {
            best = total;
            split = (
                bg_seconds,
                total - bg_seconds,
                bg_report.iterations,
                gg_report.iterations,
            );
        }
        fitted = Some((bg, gg));
    }
    let (bg, gg) = fitted.expect("at least one fit");
    let out = Command::new(woostream_tests::python())
        .arg(woostream_tests::repo_root().join("tests/independent/lifetimes_reference.py"))
        .arg("fit-time")
        .arg(csv)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "lifetimes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let theirs = reference["fit_seconds"]["bgnbd"]
        .as_f64()
        .unwrap_or(f64::NAN)
        + reference["fit_seconds"]["gamma_gamma"]
            .as_f64()
            .unwrap_or(f64::NAN);
    let r = &reference["bgnbd"];
    println!(
        "\nfit, {name}: woostream {:.4} s (r={:.4} α={:.4} a={:.4} b={:.4}; p={:.3} q={:.3} v={:.3}); lifetimes {:.3} s (r={:.4} α={:.4} a={:.4} b={:.4}); {:.0}× faster",
        best,
        bg.r,
        bg.alpha,
        bg.a,
        bg.b,
        gg.p,
        gg.q,
        gg.v,
        theirs,
        r["r"].as_f64().unwrap_or(f64::NAN),
        r["alpha"].as_f64().unwrap_or(f64::NAN),
        r["a"].as_f64().unwrap_or(f64::NAN),
        r["b"].as_f64().unwrap_or(f64::NAN),
        theirs / best
    );
    println!(
        "    woostream: BG/NBD {:.4} s ({} iterations), Gamma-Gamma {:.4} s ({} iterations); lifetimes: BG/NBD {:.3} s, Gamma-Gamma {:.3} s",
        split.0,
        split.2,
        split.1,
        split.3,
        reference["fit_seconds"]["bgnbd"].as_f64().unwrap_or(f64::NAN),
        reference["fit_seconds"]["gamma_gamma"].as_f64().unwrap_or(f64::NAN),
    );
    Ok(())
}

/// Customers drawn from the BG/NBD and Gamma-Gamma generative processes with the CDNOW
/// parameters of the paper, observed for 39 to 78 weeks, written as a summary CSV.
fn simulate_summary(path: &Path, customers: usize, seed: u64) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rate: Gamma<f64> = Gamma::new(0.243, 1.0 / 4.414)?;
    let dropout = Beta::new(0.793, 2.426)?;
    let (p, q, v) = (6.25, 3.74, 15.44);
    let nu = Gamma::new(q, 1.0 / v)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "ID,x,t_x,T,zbar")?;
    let mut counts: HashMap<bool, usize> = HashMap::new();
    for id in 1..=customers {
        let age: f64 = rng.random_range(39.0..78.0);
        let lambda = f64::max(rate.sample(&mut rng), 1e-9);
        let p_drop: f64 = dropout.sample(&mut rng);
        let gap = Exp::new(lambda)?;
        let (mut t, mut x, mut last) = (0.0, 0u32, 0.0);
        loop {
            t += gap.sample(&mut rng);
            if t > age {
                break;
            }
            x += 1;
            last = t;
            if rng.random::<f64>() < p_drop {
                break;
            }
        }
        // Mean spend of x purchases: each ~ Gamma(p, ν) with ν ~ Gamma(q, γ).
        let zbar = if x > 0 {
            let scale = 1.0 / nu.sample(&mut rng);
            let spend = Gamma::new(p * x as f64, scale)?;
            (spend.sample(&mut rng) / x as f64).max(0.01)
        } else {
            0.0
        };
        *counts.entry(x > 0).or_default() += 1;
        writeln!(out, "{id},{x},{last:.2},{age:.2},{zbar:.2}")?;
    }
    out.flush()?;
    println!(
        "\nsimulated {customers} customers from BG/NBD(0.243, 4.414, 0.793, 2.426) and Gamma-Gamma(6.25, 3.74, 15.44): {} repeat buyers",
        counts.get(&true).copied().unwrap_or(0)
    );
    Ok(())
}
