//! Driving the enricher as its users run it: a separate `woostream enricher` process (so it can
//! be killed with SIGKILL), fed with a simulated sale, its outputs read back through the same
//! deduplicating view a downstream consumer uses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use woostream::simulate;
use woostream_core::config::Config;
use woostream_core::contract::codec::Decoder;
use woostream_core::contract::enriched::{Alert, CustomerProfile};
use woostream_core::contract::events::{CustomerKey, Origin};
use woostream_core::kafka::reading::{read_all_now, reader};
use woostream_enricher::published::View;
use woostream_producer::publish::{Encoders, Record, Topics};
use woostream_woo::normalise::{normalise, WebhookDelivery};

/// The records a simulated sale puts on the shop topics, as the producer would write them,
/// with WooCommerce's habits added: every seventh order delivery arrives twice, and some
/// arrive again much later (a retry after a timeout), out of order.
pub fn sale_records(orders: usize, history: usize, seed: u64) -> Vec<Record> {
    let options = simulate::Options {
        orders,
        customers: orders / 3 + 1,
        // CDNOW's process gives about three orders per customer.
        history_customers: history / 3,
        seed,
        ..simulate::Options::default()
    };
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-20T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let encoders = Encoders::single_object(Topics::from_config(&Config::default().topics));
    let mut out = Vec::new();
    let mut late = Vec::new();
    let catalogue = woostream_producer::catalogue::Catalogue::default();
    for (i, w) in simulate::plan(&options, start).iter().enumerate() {
        let correlation = format!("sim-{i}");
        let d = WebhookDelivery {
            shop_id: "eu",
            source: crate::SOURCE,
            wc_topic: Some(&w.topic),
            webhook_id: Some(1),
            delivery_id: None,
            correlation_id: &correlation,
            received_at: start,
            origin: Origin::Webhook,
            customers: &woostream_core::privacy::CustomerHasher::new(b"test"),
        };
        let mut event = normalise(&d, &w.body).expect("the simulator's payloads are valid");
        // What the producer adds: the categories of each line's product.
        match &mut event {
            woostream_woo::normalise::Event::Order(_, e) => {
                if let Some(order) = &mut e.order {
                    catalogue.fill("eu", order);
                }
            }
            woostream_woo::normalise::Event::Product(_, e) => catalogue.apply(e),
            _ => {}
        }
        let record = encoders.event_record(&event).expect("encodes");
        if w.topic.starts_with("order.") && i % 7 == 0 {
            out.push(record.clone());
        }
        if w.topic.starts_with("order.") && i % 11 == 0 {
            late.push(record.clone());
        }
        out.push(record);
        if i % 50 == 49 {
            out.append(&mut late);
        }
    }
    out.append(&mut late);
    out
}

/// Writes the records (murmur2 on the key, as the producer does) and returns how many went to
/// each (topic, partition).
pub async fn produce_all(bootstrap: &str, records: &[Record]) -> HashMap<(String, i32), i64> {
    let producer: FutureProducer =
        woostream_core::kafka::producer_config(&Config::default().kafka, bootstrap)
            .set("linger.ms", "20")
            .create()
            .expect("producer");
    let mut counts = HashMap::new();
    for chunk in records.chunks(2_000) {
        let sends = chunk.iter().map(|r| send(&producer, r));
        for (result, r) in futures::future::join_all(sends)
            .await
            .into_iter()
            .zip(chunk)
        {
            let partition = result.map_err(|(e, _)| e).expect("delivered").partition;
            *counts.entry((r.topic.clone(), partition)).or_insert(0) += 1;
        }
    }
    counts
}

/// Writes one record with its headers.
pub async fn send(
    producer: &FutureProducer,
    r: &Record,
) -> rdkafka::producer::future_producer::OwnedDeliveryResult {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v),
        });
    }
    producer
        .send(
            FutureRecord::to(&r.topic)
                .key(&r.key)
                .payload(&r.value)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
}

/// The `woostream` binary of this build, brought up to date once per test process: `cargo test`
/// does not build another package's binary, and one left from an earlier build would test old
/// code. `WOOSTREAM_BIN` names another binary instead (a benchmark comparing two builds).
pub fn woostream_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("WOOSTREAM_BIN") {
                return PathBuf::from(bin);
            }
            let exe = std::env::current_exe().expect("test executable");
            // Tests run from target/<profile>/deps, benchmark binaries from target/<profile>.
            let here = exe.parent().expect("executable directory");
            let dir = if here.ends_with("deps") {
                here.parent().expect("target directory")
            } else {
                here
            };
            let mut args = vec!["build", "-p", "woostream", "--bin", "woostream"];
            if dir.ends_with("release") {
                args.push("--release");
            }
            let status = Command::new(env!("CARGO"))
                .args(&args)
                .current_dir(crate::repo_root())
                .status()
                .expect("cargo build");
            assert!(status.success(), "building the woostream binary");
            dir.join("woostream")
        })
        .clone()
}

/// The `woostream` binary of an earlier commit (a release), built once from git into
/// `target/previous-release/` and kept there. The build shares this build's target directory,
/// so only woostream's own crates are compiled; the binary it leaves in `target/debug` is
/// replaced by this build's again before anything runs. Call it from a test binary of its own.
pub fn previous_release_binary(commit: &str) -> PathBuf {
    let root = crate::repo_root();
    let here = woostream_bin();
    let target = here
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf();
    let kept = target
        .join("previous-release")
        .join(format!("woostream-{commit}"));
    if kept.exists() {
        return kept;
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&root)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !git(&["cat-file", "-e", &format!("{commit}^{{commit}}")]) {
        // A shallow clone: fetch the history once.
        assert!(
            git(&["fetch", "--unshallow", "--quiet"])
                || git(&["fetch", "--quiet", "origin", commit]),
            "commit {commit} (the previous release) is not in this clone and cannot be fetched"
        );
    }
    let tree = target.join("previous-release").join(commit);
    let _ = std::fs::remove_dir_all(&tree);
    let _ = git(&["worktree", "prune"]);
    assert!(
        git(&[
            "worktree",
            "add",
            "--detach",
            "--force",
            tree.to_str().unwrap(),
            commit
        ]),
        "checking out {commit}"
    );
    let profile_dir = here.parent().expect("profile directory");
    let mut args = vec![
        "build",
        "-p",
        "woostream",
        "--bin",
        "woostream",
        "--manifest-path",
    ];
    let manifest = tree.join("Cargo.toml");
    args.push(manifest.to_str().unwrap());
    if profile_dir.ends_with("release") {
        args.push("--release");
    }
    let status = Command::new(env!("CARGO"))
        .args(&args)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&tree)
        .status()
        .expect("cargo build");
    assert!(status.success(), "building woostream at {commit}");
    std::fs::copy(&here, &kept).expect("keeping the previous release's binary");
    // This build's binary back where every other test takes it from.
    let mut args = vec!["build", "-p", "woostream", "--bin", "woostream"];
    if profile_dir.ends_with("release") {
        args.push("--release");
    }
    let status = Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(&root)
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the woostream binary again");
    assert_ne!(
        std::fs::read(&here).unwrap(),
        std::fs::read(&kept).unwrap(),
        "the previous release's binary is still in target/"
    );
    let _ = git(&["worktree", "remove", "--force", tree.to_str().unwrap()]);
    kept
}

/// Topic names of one enricher run: the shop topics are shared, outputs are per run.
pub fn run_config(bootstrap: &str, run: &str, group: &str) -> Config {
    let mut c = crate::config(bootstrap);
    c.topics.profiles.name = format!("woostream.customer-profiles.{run}");
    c.topics.alerts.name = format!("woostream.alerts.{run}");
    c.enricher.group_id = group.into();
    c.enricher.commit_interval_ms = 100;
    c.enricher.refit_interval_secs = 0;
    c.enricher.session_timeout_ms = 6_000;
    // Prove the second layer alone: ids and versions, no transactions.
    c.enricher.transactions = woostream_core::config::Transactions::Off;
    c
}

/// Runs `woostream <args> --config <path>` to its end (killed after `limit`): success and output.
pub fn woostream_cli(args: &[&str], config_path: &Path, limit: Duration) -> (bool, String) {
    // The output beside the configuration, named after the arguments (paths among them too).
    let name: String = args
        .join("-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let out_path = config_path.with_extension(format!("{name}.out"));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = std::process::Command::new(woostream_bin())
        .args(args)
        .arg("--config")
        .arg(config_path)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&out_path).unwrap();
    match status {
        Some(status) => (status.success(), text),
        None => panic!("woostream {args:?} still running after {limit:?}: {text}"),
    }
}

/// A `woostream` role process (the enricher, the Slack sink).
pub struct EnricherProcess {
    child: Child,
    pub metrics_url: String,
    pub log: PathBuf,
}

/// Starts `woostream <role...>` with the configuration `toml` (whose `[ops] listen` must use
/// `port`), logging to a file in `dir`.
pub fn spawn(role: &str, toml: &str, instance: &str, port: u16, dir: &Path) -> EnricherProcess {
    spawn_binary(&woostream_bin(), role, toml, instance, port, dir)
}

/// [`spawn`] with another build of woostream (the previous release).
pub fn spawn_binary(
    binary: &Path,
    role: &str,
    toml: &str,
    instance: &str,
    port: u16,
    dir: &Path,
) -> EnricherProcess {
    let path = dir.join(format!("{}-{instance}.toml", role.replace(' ', "-")));
    std::fs::write(&path, toml).unwrap();
    let log = dir.join(format!("{}-{instance}-{port}.log", role.replace(' ', "-")));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(binary)
        .args(role.split(' '))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap_or_else(|e| panic!("starting woostream {role}: {e}"));
    EnricherProcess {
        child,
        metrics_url: format!("http://127.0.0.1:{port}/metrics"),
        log,
    }
}

/// A free TCP port on loopback (see `free_tcp_port`).
pub fn free_port() -> u16 {
    crate::free_tcp_port()
}

impl EnricherProcess {
    pub fn start(config: &Config, instance: &str, dir: &Path) -> EnricherProcess {
        Self::start_binary(&woostream_bin(), config, instance, dir)
    }

    /// [`EnricherProcess::start`] with another build of woostream.
    pub fn start_binary(
        binary: &Path,
        config: &Config,
        instance: &str,
        dir: &Path,
    ) -> EnricherProcess {
        let port = free_port();
        let c = &config;
        let toml = format!(
            r#"[kafka]
bootstrap_servers = "{bootstrap}"
[topics]
create = false
[topics.profiles]
name = "{profiles}"
cleanup_policy = "compact"
[topics.alerts]
name = "{alerts}"
[enricher]
group_id = "{group}"
instance_id = "{instance}"
transactions = "{transactions}"
commit_interval_ms = {commit}
refit_interval_secs = 0
session_timeout_ms = {session}
[ops]
listen = "127.0.0.1:{port}"
[log]
format = "json"
level = "info"
"#,
            bootstrap = c.kafka.bootstrap_servers.as_deref().unwrap(),
            profiles = c.topics.profiles.name,
            alerts = c.topics.alerts.name,
            group = c.enricher.group_id,
            transactions = match c.enricher.transactions {
                woostream_core::config::Transactions::Auto => "auto",
                woostream_core::config::Transactions::On => "on",
                woostream_core::config::Transactions::Off => "off",
            },
            commit = c.enricher.commit_interval_ms,
            session = c.enricher.session_timeout_ms,
        );
        let toml = match &config.schema_registry {
            Some(r) => format!("{toml}[schema_registry]\nurl = \"{}\"\n", r.url),
            None => toml,
        };
        spawn_binary(binary, "enricher", &toml, instance, port, dir)
    }

    /// A counter or gauge from /metrics (summed over labels); 0 until the server answers.
    pub fn metric(&self, name: &str) -> f64 {
        self.metric_with(name, &[])
    }

    /// [`EnricherProcess::metric`] over the series whose labels include `labels`.
    pub fn metric_with(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metrics_text()
            .lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{'))
            })
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The process's /metrics page; empty until the server answers.
    pub fn metrics_text(&self) -> String {
        reqwest::blocking_get(&self.metrics_url).unwrap_or_default()
    }

    /// What `/readyz` answers (the conditions, and any partition held and why).
    pub fn readyz(&self) -> String {
        let url = self.metrics_url.replace("/metrics", "/readyz");
        reqwest::blocking_get(&url).unwrap_or_default()
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        let url = self.metrics_url.replace("/metrics", "/readyz");
        matches!(reqwest::blocking_get_status(&url), Ok((200, _)))
    }

    /// CPU seconds the process has used (user + system), from /proc.
    pub fn cpu_seconds(&self) -> f64 {
        crate::cpu_seconds_of(self.child.id())
    }

    /// The process's peak resident memory (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// SIGTERM, as Kubernetes stops a pod, and waits for the process to end.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("waiting for the process")
    }

    /// SIGKILL: no shutdown, no final commit.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// The process's exit status, if it has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until `/readyz` answers 200; panics with the log if the process exits first or
    /// `timeout` passes.
    pub async fn ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.is_ready() {
            assert!(self.exited().is_none(), "exited: {}", self.log_text());
            assert!(
                Instant::now() < deadline,
                "not ready after {timeout:?}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a process that is meant to end (a one-shot command); panics with its log
    /// after `timeout`.
    pub async fn finished(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {timeout:?}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for EnricherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod reqwest {
    /// A tiny blocking GET over std TCP, so that tests need no second HTTP client.
    pub fn blocking_get(url: &str) -> Result<String, std::io::Error> {
        blocking_get_status(url).map(|(_, body)| body)
    }

    /// The answer's status code and body.
    pub fn blocking_get_status(url: &str) -> Result<(u16, String), std::io::Error> {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = std::net::TcpStream::connect(host)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }
}

/// Offsets committed by `group` on `topic`, per partition.
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("broker.address.family", "v4")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let c = match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("committed offsets of {group}: {e}");
            return HashMap::new();
        }
    };
    c.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Joins `group` with a short-lived member and leaves it again, which makes the coordinator
/// form a new generation. Tansu 0.6 can carry a member whose session expired into the next
/// generation and then never expire it, leaving its partitions unowned; a fresh generation
/// drops it (as the next rolling deploy would in production).
pub fn nudge_group(bootstrap: &str, group: &str, topics: &[&str]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "6000")
        .set("broker.address.family", "v4")
        .create()
        .expect("consumer");
    consumer.subscribe(topics).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(100));
        if consumer.assignment().is_ok_and(|a| a.count() > 0) {
            break;
        }
    }
    consumer.unsubscribe();
    let _ = consumer.poll(Duration::from_millis(100));
}

/// Waits until `group` has committed every record `produced` on the shop topics.
pub fn await_caught_up(
    bootstrap: &str,
    group: &str,
    produced: &HashMap<(String, i32), i64>,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    let mut topics: Vec<&String> = produced.keys().map(|(t, _)| t).collect();
    topics.sort();
    topics.dedup();
    loop {
        let behind: Vec<String> = topics
            .iter()
            .flat_map(|t| {
                let c = committed(bootstrap, group, t, 6);
                produced
                    .iter()
                    .filter(move |((topic, _), _)| topic == *t)
                    .filter(move |((_, p), n)| c.get(p).copied().unwrap_or(0) < **n)
                    .map(|((topic, p), n)| format!("{topic}[{p}] < {n}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            alive(),
            "the enricher stopped before catching up ({behind:?})"
        );
        assert!(
            Instant::now() < deadline,
            "group {group} did not catch up: {behind:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The log end of every partition of `topics` that holds records.
pub fn log_ends(bootstrap: &str, topics: &[&str]) -> HashMap<(String, i32), i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .create()
        .unwrap();
    let mut out = HashMap::new();
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        for p in md.topics()[0].partitions() {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            if high > 0 {
                out.insert((topic.to_string(), p.id()), high);
            }
        }
    }
    out
}

/// Runs an enricher (run `name`, with output topics of its own) over the shop topics
/// `bootstrap` holds until it has committed all of them, and reads its outputs back.
pub async fn enrich_everything(bootstrap: &str, dir: &Path, name: &str) -> View {
    let config = run_config(bootstrap, name, &format!("enricher-{name}"));
    woostream_core::kafka::ensure_topics(
        &config.kafka,
        bootstrap,
        &config.topics,
        &config.retention,
    )
    .await
    .unwrap();
    let (bootstrap, dir, name) = (bootstrap.to_string(), dir.to_path_buf(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let inputs = log_ends(
            &bootstrap,
            &["woo.orders", "woo.customers", "woo.products", "woo.reviews"],
        );
        let mut enricher = EnricherProcess::start(&config, &name, &dir);
        await_caught_up(
            &bootstrap,
            &config.enricher.group_id,
            &inputs,
            Duration::from_secs(300),
            || enricher.exited().is_none(),
        );
        let (view, _, _) = read_view(&config);
        enricher.stop();
        view
    })
    .await
    .unwrap()
}

/// What each customer's profile says, without what differs by delivery path (versions,
/// offsets, event and correlation ids): the orders, their statuses and money, and with
/// `scores` the RFM scores, segment, P(alive), CLV, churn band and VIP flag too (these depend
/// on the order in which a partition saw the orders).
pub fn customer_facts(view: &View, scores: bool) -> std::collections::BTreeMap<String, String> {
    view.profiles
        .iter()
        .map(|(key, p)| {
            let ledger: Vec<(i64, String)> = p
                .orders
                .iter()
                .map(|o| (o.order_id, o.status.clone()))
                .collect();
            let mut facts = format!(
                "id {:?} orders {} tx {} revenue {} refunded {} aov {} first {:?} last {:?} ledger {ledger:?}",
                p.customer_id,
                p.orders_count,
                p.transactions,
                p.revenue,
                p.refunded,
                p.average_order_value,
                p.first_order_at,
                p.last_order_at,
            );
            if scores {
                facts.push_str(&format!(
                    " rfm {}{}{} {:?} alive {:.6} clv {} churn {:?} vip {}",
                    p.recency_score,
                    p.frequency_score,
                    p.monetary_score,
                    p.segment,
                    p.p_alive,
                    p.clv_12_months,
                    p.churn_risk,
                    p.vip,
                ));
            }
            (format!("{key:?}"), facts)
        })
        .collect()
}

/// Everything on a run's profile and alert topics, through the deduplicating view; also the
/// raw record counts (before deduplication).
pub fn read_view(config: &Config) -> (View, usize, usize) {
    read_view_with(config, &Decoder::new())
}

/// [`read_view`] with `decoder` (one that knows a registry's schema ids).
pub fn read_view_with(config: &Config, decoder: &Decoder) -> (View, usize, usize) {
    let bootstrap = config.kafka.bootstrap_servers.as_deref().unwrap();
    let consumer = reader(&config.kafka, bootstrap, "test-view").unwrap();
    let mut view = View::default();
    let (mut raw_profiles, mut raw_alerts) = (0, 0);
    read_all(&consumer, bootstrap, &config.topics.profiles.name, |m| {
        raw_profiles += 1;
        let key: CustomerKey = decoder.decode(m.key().unwrap()).unwrap();
        let profile = m
            .payload()
            .map(|p| decoder.decode::<CustomerProfile>(p).unwrap());
        view.apply_profile(&key.shop_id, &key.customer, profile);
    });
    read_all(&consumer, bootstrap, &config.topics.alerts.name, |m| {
        raw_alerts += 1;
        view.apply_alert(decoder.decode::<Alert>(m.payload().unwrap()).unwrap());
    });
    (view, raw_profiles, raw_alerts)
}

/// Every profile record of one customer, summarised (debugging aid).
pub fn profile_history(config: &Config, customer: &str) -> Vec<String> {
    let bootstrap = config.kafka.bootstrap_servers.as_deref().unwrap();
    let decoder = Decoder::new();
    let consumer = reader(&config.kafka, bootstrap, "test-history").unwrap();
    let mut out = Vec::new();
    read_all(&consumer, bootstrap, &config.topics.profiles.name, |m| {
        let key: CustomerKey = decoder.decode(m.key().unwrap()).unwrap();
        if key.customer != customer {
            return;
        }
        let p = m
            .payload()
            .map(|p| decoder.decode::<CustomerProfile>(p).unwrap());
        out.push(match p {
            None => format!("[{}@{}] tombstone", m.partition(), m.offset()),
            Some(p) => format!(
                "[{}@{}] v{} src {} as_of {} {:?} orders {} ledger {:?}",
                m.partition(),
                m.offset(),
                p.version,
                p.source_offset,
                p.as_of,
                p.segment,
                p.orders_count,
                p.orders
                    .iter()
                    .map(|o| (o.order_id, o.status.clone()))
                    .collect::<Vec<_>>()
            ),
        });
    });
    out
}

/// Every record of every partition of `topic` written before now.
fn read_all(
    consumer: &woostream_core::kafka::reading::Reader,
    bootstrap: &str,
    topic: &str,
    f: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) {
    read_all_now(&Config::default().kafka, bootstrap, consumer, topic, f).unwrap();
}

/// A profile without the names looked up in the product catalogue: they are the
/// catalogue's when the record was made, and a run that meets a product before its product
/// event names it later than another run does. Everything else must be equal.
fn unnamed_profile(p: &CustomerProfile) -> CustomerProfile {
    let mut p = p.clone();
    for e in p
        .top_categories
        .iter_mut()
        .chain(&mut p.top_products)
        .chain(&mut p.frequent_products)
    {
        e.name = None;
    }
    p.last_products.iter_mut().for_each(|e| e.name = None);
    p.replenishment.iter_mut().for_each(|e| e.name = None);
    p
}

/// An alert without the names looked up in the product catalogue (see [`unnamed_profile`]).
fn unnamed_alert(a: &Alert) -> Alert {
    let mut a = a.clone();
    // A sealed value is encrypted with a fresh nonce each time it is sealed: two runs seal the
    // same initial differently. Compared as "sealed".
    let sealed = |v: &mut String| {
        if woostream_core::privacy::seal::is_sealed(v) {
            *v = "sealed".into();
        }
    };
    if let Some(c) = &mut a.customer {
        c.top_category = None;
        if let Some(initial) = &mut c.first_name_initial {
            sealed(initial);
        }
    }
    if let Some(q) = &mut a.question {
        sealed(&mut q.note);
    }
    if let Some(r) = &mut a.replenishment {
        r.name = None;
    }
    a
}

/// Asserts two runs' views hold the same profiles and the same alerts (catalogue names
/// aside: see [`unnamed_profile`]).
pub fn assert_same_outcome(name: &str, reference: &View, other: &View) {
    assert_eq!(
        reference.profiles.len(),
        other.profiles.len(),
        "{name}: customers with a profile"
    );
    for (key, p) in &reference.profiles {
        let q = other
            .profiles
            .get(key)
            .unwrap_or_else(|| panic!("{name}: {key:?} has no profile"));
        assert_eq!(
            unnamed_profile(p),
            unnamed_profile(q),
            "{name}: profile of {key:?}"
        );
    }
    let by_id = |v: &View| -> HashMap<String, Alert> {
        v.alerts
            .iter()
            .map(|a| (a.alert_id.clone(), a.clone()))
            .collect()
    };
    let (a, b) = (by_id(reference), by_id(other));
    let missing: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{name}: alerts missing {missing:?}, extra {extra:?} (of {} vs {})",
        a.len(),
        b.len()
    );
    for (id, alert) in &a {
        assert_eq!(
            unnamed_alert(alert),
            unnamed_alert(&b[id]),
            "{name}: alert {id}"
        );
    }
}
