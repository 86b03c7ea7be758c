//! What the end-to-end tests and benchmarks share: a Tansu broker on a free port, a producer
//! started in-process, signed deliveries, and reading topics back.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use woostream_core::config::{Config, ShopConfig};
use woostream_core::ops::Readiness;
use woostream_woo::signature::sign;

pub mod crm;
pub mod enricher;
pub mod hubspot;
pub mod registry;
pub mod roles;
pub mod secure;
pub mod slack;

pub const SECRET: &str = "test-secret";
pub const SOURCE: &str = "https://example.com/";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python with the independent checkers (confluent-kafka, fastavro, lifetimes) that
/// `make tools` installs; `python3` when run outside make.
pub fn python() -> String {
    std::env::var("WOOSTREAM_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Every file below `dir` whose name ends with `.{ext}`, sorted.
pub fn files_under(dir: &std::path::Path, ext: &str) -> Vec<PathBuf> {
    let mut dirs = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Every Rust file of the crates (by its path below the repository) with its text up to its
/// test module: the code that ships. Unit tests kept in a file of their own are left out.
pub fn shipped_sources() -> Vec<(String, String)> {
    let root = repo_root();
    files_under(&root.join("crates"), "rs")
        .into_iter()
        .filter(|path| !path.to_string_lossy().ends_with("_tests.rs"))
        .map(|path| {
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            let mut text = std::fs::read_to_string(&path).unwrap();
            if let Some(i) = text.find("#[cfg(test)]") {
                text.truncate(i);
            }
            (name, text)
        })
        .collect()
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures/woocommerce").join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A sink process's configuration file: this broker (topics made by the test), one shop `eu`,
/// the role's own `sections`, the ops server on `port`, JSON logs.
pub fn sink_toml(bootstrap: &str, port: u16, sections: &str) -> String {
    format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
[topics]
create = false
[[shops]]
id = "eu"
source = "https://shop.example/"
secret = "s"
{sections}
[ops]
listen = "127.0.0.1:{port}"
[log]
format = "json"
level = "info"
"#
    )
}

/// A configuration with one shop (`eu`, secret `test-secret`) on ephemeral loopback ports.
/// A role's context from the pieces a test holds.
pub fn role_context(
    config: &Config,
    bootstrap: &str,
    registry: &prometheus::Registry,
    readiness: &Readiness,
    shutdown: CancellationToken,
    create_topics: bool,
) -> woostream_core::role::RoleContext {
    woostream_core::role::RoleContext {
        config: config.clone(),
        bootstrap: bootstrap.to_string(),
        registry: registry.clone(),
        readiness: readiness.clone(),
        shutdown,
        create_topics,
    }
}

pub fn config(bootstrap: &str) -> Config {
    let mut c = Config::from_text("test.toml", "", Vec::<(String, String)>::new())
        .expect("defaults are valid");
    c.kafka.bootstrap_servers = Some(bootstrap.to_string());
    c.producer.listen = "127.0.0.1:0".parse().unwrap();
    c.ops.listen = "127.0.0.1:0".parse().unwrap();
    c.insight.listen = "127.0.0.1:0".parse().unwrap();
    c.shops.push(ShopConfig {
        id: "eu".into(),
        source: SOURCE.into(),
        secret: Some(SECRET.into()),
        source_aliases: Vec::new(),
        secret_env: None,
        rest: None,
        require_topic_secrets: false,
        previous_secret: None,
    });
    c
}

/// A producer running in this process.
pub struct Producer {
    pub url: String,
    pub registry: prometheus::Registry,
    pub readiness: Readiness,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Producer {
    pub async fn start(config: &Config, create_topics: bool) -> anyhow::Result<Producer> {
        let bootstrap = config
            .kafka
            .bootstrap_servers
            .clone()
            .expect("bootstrap set");
        let ctx = woostream_core::role::RoleContext::new(config.clone(), bootstrap)
            .creating_topics(create_topics);
        let running = woostream_producer::start(&ctx).await?;
        Ok(Producer {
            url: format!("http://{}{}", running.addr, config.producer.webhook_path),
            registry: ctx.registry,
            readiness: ctx.readiness,
            shutdown: ctx.shutdown,
            task: Some(running.task),
        })
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests, flush.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.take().expect("running").await?
    }

    /// The value of a counter or gauge in the registry, summed over label sets matching `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        use prometheus::proto::MetricType;
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter().map(move |m| (f.get_field_type(), m)))
            .filter(|(_, m)| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|(kind, m)| match kind {
                MetricType::COUNTER => m.get_counter().get_value(),
                MetricType::GAUGE => m.get_gauge().get_value(),
                _ => m.get_histogram().get_sample_count() as f64,
            })
            .sum()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The sum of a counter's series in `registry`.
pub fn counter_in(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value())
        .sum()
}

/// Waits (up to 2 minutes) until a counter in `registry` reaches `at_least`.
pub async fn await_counter_in(registry: &prometheus::Registry, name: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while counter_in(registry, name) < at_least {
        assert!(
            Instant::now() < deadline,
            "{name} stayed below {at_least}: {}",
            counter_in(registry, name)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a WooCommerce delivery looks like on the wire.
pub struct Post<'a> {
    pub topic: Option<&'a str>,
    pub body: &'a [u8],
    pub secret: Option<&'a str>,
    pub source: Option<&'a str>,
    pub content_type: &'a str,
    /// X-WC-Webhook-Delivery-ID; absent: a new one per send, as WooCommerce does.
    pub delivery_id: Option<&'a str>,
}

impl<'a> Post<'a> {
    pub fn signed(topic: &'a str, body: &'a [u8]) -> Post<'a> {
        Post {
            topic: Some(topic),
            body,
            secret: Some(SECRET),
            source: Some(SOURCE),
            content_type: "application/json",
            delivery_id: None,
        }
    }

    /// WooCommerce's ping when a webhook is saved: unsigned, form-encoded, no topic.
    pub fn ping() -> Post<'static> {
        Post {
            topic: None,
            body: b"webhook_id=12",
            secret: None,
            source: None,
            content_type: "application/x-www-form-urlencoded",
            delivery_id: None,
        }
    }

    pub async fn send(&self, url: &str) -> (u16, String) {
        let resp = self
            .request(&reqwest::Client::new(), url)
            .send()
            .await
            .expect("the producer answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// The delivery as a request of `client` (one bound to an address, say), to send and read
    /// as the test needs.
    pub fn request(&self, client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
        let mut req = client
            .post(url)
            .header("content-type", self.content_type)
            .body(self.body.to_vec());
        if let Some(t) = self.topic {
            req = req
                .header("x-wc-webhook-topic", t)
                .header("x-wc-webhook-id", "7")
                .header(
                    "x-wc-webhook-delivery-id",
                    self.delivery_id
                        .map(str::to_string)
                        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                );
        }
        if let Some(s) = self.source {
            req = req.header("x-wc-webhook-source", s);
        }
        if let Some(secret) = self.secret {
            req = req.header("x-wc-webhook-signature", sign(self.body, secret));
        }
        req
    }
}

/// Reads `count` records of `topic` from the beginning (all partitions), waiting up to
/// `timeout` for them to arrive. Blocking: call from `spawn_blocking` in async tests.
pub fn read_records(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "woostream-tests-reader")
        .set("enable.auto.commit", "false")
        .set("broker.address.family", "v4")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(m.detach());
        }
    }
    out
}

/// Every record written to `topic` before now, all partitions, end markers left out.
pub async fn read_topic_now(config: &Config, group: &str, topic: &str) -> Vec<OwnedMessage> {
    use woostream_core::kafka::reading::{read_all_now, reader, END_MARKER};
    let (config, group, topic) = (config.clone(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let bootstrap = config.kafka.bootstrap_servers.clone().expect("bootstrap");
        let consumer = reader(&config.kafka, &bootstrap, &group).expect("reader");
        let mut out = Vec::new();
        read_all_now(&config.kafka, &bootstrap, &consumer, &topic, |m| {
            if m.key() != Some(END_MARKER.as_bytes()) {
                out.push(m.detach());
            }
        })
        .expect("reading the topic");
        out
    })
    .await
    .expect("reader thread")
}

/// Posts simulated deliveries one after the other, each answered 2xx.
pub async fn post_all(url: &str, webhooks: &[woostream::simulate::Webhook]) {
    for w in webhooks {
        let (status, answer) = Post::signed(&w.topic, &w.body).send(url).await;
        assert!(
            (200..300).contains(&status),
            "{} answered {status}: {answer}",
            w.topic
        );
    }
}

pub fn header<'m>(m: &'m OwnedMessage, name: &str) -> Option<&'m str> {
    use rdkafka::message::Headers;
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// A header of any message as text.
pub fn header_of<M: Message>(m: &M, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(String::from)
}

/// A Tansu broker (`memory://`) on a free loopback port, stopped when dropped.
pub struct Tansu {
    pub bootstrap: String,
    child: Child,
}

/// CPU seconds (user + system) process `pid` has used, from /proc; 0 when it cannot be read.
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses: utime is the 14th field.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

impl Tansu {
    /// Freezes the broker (SIGSTOP): its sockets stay open but nothing answers, as in a long
    /// garbage-collection pause or a stalled disk.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen broker run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let status = Command::new("kill")
            .args([which, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {which} the broker");
    }

    /// CPU seconds the broker has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(self.child.id())
    }

    /// Starts the binary named by `TANSU_BIN` (`make test` installs it) with in-memory storage
    /// and waits until it answers metadata requests.
    pub fn start() -> Tansu {
        let tansu = Tansu::launch(
            free_tcp_port(),
            "memory://tansu/",
            None,
            &[],
            &std::env::temp_dir(),
        );
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &tansu.bootstrap)
            .set("broker.address.family", "v4")
            .create()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while probe.fetch_metadata(None, Duration::from_secs(1)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Tansu did not answer on {} within 60 s",
                tansu.bootstrap
            );
        }
        tansu
    }

    /// Starts Tansu in `dir` (where a `sqlite://` path is relative to) on `port` with
    /// `storage`, advertising `advertised` (another listener in front of it, such as a TLS
    /// proxy) and `extra` flags, and waits until the port accepts connections (a broker that
    /// requires authentication refuses a plain metadata probe).
    pub fn launch(
        port: u16,
        storage: &str,
        advertised: Option<&str>,
        extra: &[&str],
        dir: &Path,
    ) -> Tansu {
        let bin = std::env::var("TANSU_BIN").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            format!("{home}/.cache/woostream/tansu-0.6.0/bin/tansu")
        });
        assert!(
            Path::new(&bin).exists(),
            "Tansu is not installed at {bin}: run `make test` (it installs Tansu once), or set TANSU_BIN"
        );
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = advertised.map_or(url.clone(), str::to_string);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::temp_dir().join(format!("tansu-{port}.log")))
            .unwrap();
        let child = Command::new(&bin)
            .args([
                "broker",
                "--storage-engine",
                storage,
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(extra)
            .current_dir(dir)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let bootstrap = format!("127.0.0.1:{port}");
        await_port(&bootstrap, "Tansu");
        Tansu { bootstrap, child }
    }
}

/// `host:port` of an `http://` URL.
pub fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// A free TCP port on loopback, taken below the kernel's ephemeral range (32768 and up on
/// Linux): a port the kernel handed out for `:0` goes back into that pool at once and can become
/// the local port of any outgoing connection (a Kafka client's) before the process told to listen
/// on it binds it. Each test process walks its own stretch of 20000–31999.
pub fn free_tcp_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = (std::process::id() % 600) * 20;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + ((start + n) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until something accepts TCP connections on `address`.
pub fn await_port(address: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(address).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {address} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        // A frozen broker ignores nothing but SIGKILL, which is what kill() sends.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kept body as it was received: opened with the key topic when it is sealed under a key
/// (a person's, or the shop's key of the day for what names no one), as the replay opens it.
pub async fn opened_body(
    config: &Config,
    dl: &woostream_core::contract::events::IngestDeadLetter,
) -> Vec<u8> {
    use woostream_core::privacy::seal;
    if dl.body_encryption != seal::SUBJECT_KEY {
        return dl.body.clone();
    }
    let (config, sealed) = (config.clone(), dl.body.clone());
    tokio::task::spawn_blocking(move || {
        let bootstrap = config.kafka.bootstrap_servers.clone().expect("bootstrap");
        let keys = woostream_core::privacy::SubjectKeys::start(&config, &bootstrap, false)
            .expect("reading the subject keys");
        let id = std::str::from_utf8(&sealed)
            .ok()
            .and_then(seal::key_id_of)
            .expect("a sealed body names its key")
            .to_string();
        let key = keys
            .key(&id)
            .expect("the key topic")
            .expect("the key exists");
        seal::open_bytes(&sealed, Some(&key))
            .expect("the body opens")
            .expect("not erased")
    })
    .await
    .unwrap()
}
