//! The spool as a running producer process meets a full disk and a second owner, on a real
//! broker (Tansu). The disk fills for real: the producer runs under a file-size limit
//! (`prlimit --fsize`), so its writes fail with EFBIG exactly where a full volume fails them
//! with ENOSPC, without needing root to mount a small filesystem.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use woostream_tests::enricher::{free_port, woostream_bin};
use woostream_tests::{config, fixture, read_topic_now, Post, Tansu};

struct ProducerProcess {
    child: Child,
    url: String,
    ops: String,
    log: std::path::PathBuf,
}

impl ProducerProcess {
    /// `woostream producer` with a spool in `spool`; `file_size_limit` caps every file it writes.
    fn spawn(
        bootstrap: &str,
        spool: &Path,
        dir: &Path,
        name: &str,
        file_size_limit: Option<u64>,
    ) -> ProducerProcess {
        let (web, ops) = (free_port(), free_port());
        let toml = format!(
            r#"[kafka]
bootstrap_servers = "{bootstrap}"
delivery_timeout_ms = 1500
[producer]
listen = "127.0.0.1:{web}"
spool_dir = "{spool}"
[[shops]]
id = "eu"
source = "{source}"
secret = "{secret}"
[ops]
listen = "127.0.0.1:{ops}"
"#,
            spool = spool.display(),
            source = woostream_tests::SOURCE,
            secret = woostream_tests::SECRET,
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, toml).unwrap();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = match file_size_limit {
            // A signal for a file grown past the limit would kill the process; ignored, the
            // write fails with EFBIG instead, as a full disk's does with ENOSPC.
            Some(limit) => {
                let mut c = Command::new("sh");
                c.args(["-c", "trap '' XFSZ; exec \"$@\"", "sh", "prlimit"])
                    .arg(format!("--fsize={limit}"))
                    .arg("--")
                    .arg(woostream_bin());
                c
            }
            None => Command::new(woostream_bin()),
        };
        let child = cmd
            .args(["producer", "--config"])
            .arg(&path)
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        ProducerProcess {
            child,
            url: format!("http://127.0.0.1:{web}/webhooks/woocommerce"),
            ops: format!("http://127.0.0.1:{ops}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn readyz(&self) -> Option<u16> {
        reqwest::get(format!("{}/readyz", self.ops))
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Waits until `/readyz` answers `status`.
    async fn await_readyz(&self, status: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.readyz().await != Some(status) {
            assert!(
                Instant::now() < deadline,
                "/readyz never answered {status}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.ops))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for ProducerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The distinct event ids among `records` (a record Kafka took twice counts once).
fn event_ids(records: &[rdkafka::message::OwnedMessage]) -> std::collections::HashSet<String> {
    records
        .iter()
        .map(|m| {
            woostream_tests::header(m, woostream_core::headers::EVENT_ID)
                .unwrap()
                .to_string()
        })
        .collect()
}

fn order(id: i64) -> Vec<u8> {
    let mut o: serde_json::Value =
        serde_json::from_slice(&fixture("woo_order_example.webhook_body.json")).unwrap();
    o["id"] = id.into();
    serde_json::to_vec(&o).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_answered_503_corrupts_nothing_and_every_202_reaches_kafka() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // Topics first (the role creates them too, but the reader below needs them either way).
    let config = config(&tansu.bootstrap);
    woostream_core::kafka::ensure_topics(
        &config.kafka,
        &tansu.bootstrap,
        &config.topics,
        &config.retention,
    )
    .await
    .unwrap();
    let p = ProducerProcess::spawn(
        &tansu.bootstrap,
        &spool,
        dir.path(),
        "full",
        Some(64 * 1024),
    );
    p.await_readyz(200).await;
    let (code, text) = Post::signed("order.created", &order(1)).send(&p.url).await;
    assert_eq!(code, 200, "{text}");

    // Kafka goes away: deliveries are spooled (202) until the segment cannot grow any more.
    tansu.freeze();
    let mut spooled = Vec::new();
    let mut refused = None;
    for id in 2..200 {
        let body = order(id);
        let client = reqwest::Client::new();
        let sig = woostream_woo::signature::sign(&body, woostream_tests::SECRET);
        let resp = client
            .post(&p.url)
            .header("content-type", "application/json")
            .header("x-wc-webhook-topic", "order.created")
            .header("x-wc-webhook-source", woostream_tests::SOURCE)
            .header("x-wc-webhook-delivery-id", format!("d-{id}"))
            .header("x-wc-webhook-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            202 => spooled.push(id),
            503 => {
                refused = Some(
                    resp.headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string()),
                );
                break;
            }
            other => panic!("order {id}: {other} {}", resp.text().await.unwrap()),
        }
    }
    assert!(!spooled.is_empty(), "some deliveries were spooled first");
    let retry_after = refused.expect("the full disk was answered 503");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    // Neither Kafka nor the spool can take deliveries: out of the load balancer.
    p.await_readyz(503).await;

    // Kafka comes back: everything answered 202 is drained, nothing was damaged by the
    // failed write, and the spool takes deliveries again.
    tansu.thaw();
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.metric("woostream_spool_pending_bytes").await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the spool did not drain: {}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        p.metric("woostream_spool_records_total{direction=\"damaged\"")
            .await,
        0.0
    );
    let quarantined = std::fs::read_dir(&spool)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("quarantine")
        })
        .count();
    assert_eq!(quarantined, 0, "no damaged frame was left behind");
    // Every delivery answered 2xx is in Kafka. A record whose acknowledgement timed out when
    // the broker froze may be there twice (the broker took it after all): the event id, the
    // same for both, is how consumers drop that copy.
    let orders = read_topic_now(&config, "edge-disk", "woo.orders").await;
    let events = event_ids(&orders);
    assert_eq!(events.len(), 1 + spooled.len(), "every 2xx is in Kafka");
    assert!(orders.len() <= events.len() + 1, "{} records", orders.len());
    p.await_readyz(200).await;
    let (code, text) = Post::signed("order.created", &order(500))
        .send(&p.url)
        .await;
    assert_eq!(code, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_on_the_same_spool_directory_refuses_to_start() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let first = ProducerProcess::spawn(&tansu.bootstrap, &spool, dir.path(), "first", None);
    first.await_readyz(200).await;
    let mut second = ProducerProcess::spawn(&tansu.bootstrap, &spool, dir.path(), "second", None);
    let status = tokio::task::spawn_blocking(move || {
        let status = second.child.wait().unwrap();
        (status, second.log())
    })
    .await
    .unwrap();
    assert!(!status.0.success(), "the second producer must not run");
    assert!(
        status.1.contains("in use by another producer"),
        "{}",
        status.1
    );
    // The owner goes on taking deliveries.
    let (code, text) = Post::signed("order.created", &order(1))
        .send(&first.url)
        .await;
    assert_eq!(code, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_stopped_producer_could_not_hand_over_is_drained_by_the_next_on_its_volume() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&tansu.bootstrap);
    config.producer.spool_dir = Some(dir.path().join("spool"));
    config.kafka.delivery_timeout_ms = 1_500;
    config.producer.shutdown_drain_secs = 3;
    let p = woostream_tests::Producer::start(&config, true)
        .await
        .unwrap();
    tansu.freeze();
    let mut spooled = 0;
    for id in 1..=3 {
        let (code, text) = Post::signed("order.created", &order(id)).send(&p.url).await;
        assert_eq!(code, 202, "{text}");
        spooled += 1;
    }
    // Stopped while Kafka is away: the hand-over cannot reach it within its limit, so the
    // records stay on the volume.
    p.stop().await.unwrap();
    let segments = std::fs::read_dir(dir.path().join("spool"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.ends_with(".sealed") || name.ends_with(".active")
        })
        .count();
    assert!(segments > 0, "the spool is left on the volume");
    tansu.thaw();

    // The next producer on the same volume drains it.
    let next = woostream_tests::Producer::start(&config, false)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while next.metric("woostream_spool_pending_bytes", &[]) > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the next producer did not drain the spool"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let orders = read_topic_now(&config, "edge-hand-over", "woo.orders").await;
    let events = event_ids(&orders);
    assert_eq!(events.len(), spooled);
    next.stop().await.unwrap();
}
