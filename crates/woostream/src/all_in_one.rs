//! Every role in one process: for a single machine, for development and for `make run`. With
//! no `kafka.bootstrap_servers` it starts the embedded mock cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use woostream_core::config::{Config, ShopConfig};
use woostream_core::kafka::{self, EmbeddedKafka};
use woostream_core::ops::{self, Readiness};

use crate::simulate::{self, Stats};

pub struct RunOptions {
    /// Post a simulated flash sale and exit when it is answered.
    pub simulate: Option<simulate::Options>,
}

/// The shop the simulator posts as, added when the configuration names none.
pub fn demo_shop(o: &simulate::Options) -> ShopConfig {
    ShopConfig {
        id: "flash-sale-demo".into(),
        source: o.source.clone(),
        secret: Some(o.secret.clone()),
        secret_env: None,
    }
}

pub async fn run(
    mut config: Config,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(sim) = &opts.simulate {
        if config.shops.is_empty() {
            config.shops.push(demo_shop(sim));
        }
    }
    let embedded;
    let (bootstrap, create_topics) = match &config.kafka.bootstrap_servers {
        Some(b) => (b.clone(), config.topics.create),
        None => {
            embedded = EmbeddedKafka::start(3, &config.topics)?;
            println!(
                "Kafka: embedded mock cluster (3 brokers) at {}; topics created: {}",
                embedded.bootstrap_servers(),
                config
                    .topics
                    .all()
                    .iter()
                    .map(|(_, t)| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            (embedded.bootstrap_servers().to_string(), false)
        }
    };
    let registry = prometheus::Registry::new();
    let readiness = Readiness::default();
    let (ops_addr, ops_task) = ops::serve(
        config.ops.listen,
        registry.clone(),
        readiness.clone(),
        shutdown.clone(),
    )
    .await?;
    let producer = woostream_producer::start(
        &config,
        &bootstrap,
        &registry,
        &readiness,
        shutdown.clone(),
        create_topics,
    )
    .await?;
    let url = format!("http://{}{}", producer.addr, config.producer.webhook_path);
    println!("Producer: POST {url}");
    println!("Ops:      http://{ops_addr}/metrics  /healthz  /readyz");

    let Some(mut sim) = opts.simulate else {
        shutdown.cancelled().await;
        producer.task.await??;
        let _ = ops_task.await;
        return Ok(());
    };
    sim.url = url;
    println!(
        "Flash sale: {} orders from {} customers over {:?}, {} requests in flight\n",
        sim.orders, sim.customers, sim.duration, sim.concurrency
    );
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let ticker = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                println!("{}", stats.line(started.elapsed()));
            }
        })
    };
    let result = tokio::select! {
        r = simulate::run(&sim, stats.clone()) => r,
        _ = shutdown.cancelled() => Ok(()),
    };
    ticker.abort();
    result?;
    println!("{}", stats.line(started.elapsed()));
    let (p50, p99, max) = stats.latency_ms();
    println!("\nAll webhooks answered in {:.1}s (latency p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms).", started.elapsed().as_secs_f64());
    println!("\nRecords in Kafka:");
    for (key, t) in config.topics.all() {
        let (kafka, bootstrap, topic) = (config.kafka.clone(), bootstrap.clone(), t.name.clone());
        let n =
            tokio::task::spawn_blocking(move || kafka::record_count(&kafka, &bootstrap, &topic))
                .await?
                .unwrap_or(-1);
        println!("  {:<24} {:>7}   ({key})", t.name, n);
    }
    shutdown.cancel();
    producer.task.await?.context("producer shutdown")?;
    let _ = ops_task.await;
    Ok(())
}
