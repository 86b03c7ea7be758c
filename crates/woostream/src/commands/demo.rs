//! `run` (every role in one process, the demo of `make run`) and `simulate` (a flash sale
//! posted to a running producer).

use woostream::all_in_one::{self, RunOptions};
use woostream::simulate;
use woostream_core::config::Config;
use woostream_core::{shutdown, telemetry};

use crate::cli::SaleArgs;

pub(crate) async fn run(mut config: Config, simulate: bool, sale: SaleArgs) -> anyhow::Result<()> {
    if config.kafka.bootstrap_servers.is_none() {
        // One machine, nothing installed: ephemeral ports on loopback.
        config.producer.listen = "127.0.0.1:0".parse().expect("address");
        config.ops.listen = "127.0.0.1:0".parse().expect("address");
        config.insight.listen = "127.0.0.1:0".parse().expect("address");
    }
    if std::env::var_os("RUST_LOG").is_none() {
        config.log.level = "warn".into();
        config.log.format = "pretty".into();
    }
    telemetry::init(&config);
    let opts = RunOptions {
        simulate: simulate.then(|| sale.options(simulate::Options::default())),
        keep_serving: sale.keep_serving,
    };
    all_in_one::run(config, opts, shutdown::on_signal()).await
}

pub(crate) async fn simulate(
    url: String,
    secret: String,
    source: String,
    sale: SaleArgs,
) -> anyhow::Result<()> {
    let o = sale.options(simulate::Options {
        url,
        secret,
        source,
        ..simulate::Options::default()
    });
    let stats = std::sync::Arc::new(simulate::Stats::default());
    let started = std::time::Instant::now();
    let r = simulate::run(&o, stats.clone()).await;
    println!("{}", stats.line(started.elapsed()));
    r
}
