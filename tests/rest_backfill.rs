//! A shop's history through its REST API, on a real broker (Tansu) against the simulated shop's
//! WooCommerce REST server: a backfill of 20,000 orders, killed with SIGKILL in the middle and
//! run again, ends with exactly the customer profiles that the same history delivered as
//! webhooks gives; the shop's rate limit is never exceeded; a wrong key stops it with what to
//! fix.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use woostream::shop::{objects_of, Behaviour, ShopServer};
use woostream::simulate;
use woostream_tests::enricher::{customer_facts, enrich_everything, free_port, spawn};
use woostream_tests::{Post, Producer, Tansu, SECRET, SOURCE};

const KEY: &str = "ck_5f1e0d6b2c7a4e9f8a3b1c0d9e8f7a6b5c4d3e2f";
const SECRET_KEY: &str = "cs_0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b";
/// The shop's own limit, and woostream's (below it).
const SHOP_LIMIT: u32 = 40;
const OUR_RATE: f64 = 30.0;

fn history() -> Vec<simulate::Webhook> {
    let options = simulate::Options {
        orders: 0,
        // About three orders each over two years (CDNOW's process): over 20,000 orders.
        history_customers: 7_500,
        history_days: 720,
        customers: 3_000,
        seed: 11,
        ..simulate::Options::default()
    };
    let start = "2026-06-01T00:00:00Z".parse().unwrap();
    simulate::plan(&options, start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_midway_and_resumed_gives_the_profiles_the_same_history_gives_as_webhooks(
) {
    let plan = history();
    let objects = objects_of(&plan);
    let orders = objects["orders"].len();
    let customers_with_orders = objects["orders"]
        .values()
        .map(|o| o["billing"]["email"].as_str().unwrap().to_string())
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert!(
        orders >= 20_000 && customers_with_orders >= 2_000,
        "{orders} orders of {customers_with_orders} customers"
    );
    let dir = tempfile::tempdir().unwrap();

    // The reference: the same history delivered as signed webhooks to a producer.
    let webhooks = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let mut config = woostream_tests::config(&webhooks.bootstrap);
    // Sent one at a time: no batch to wait for.
    config.kafka.linger_ms = 0;
    let started = Instant::now();
    let producer = Producer::start(&config, true).await.unwrap();
    let url = producer.url.clone();
    use futures::StreamExt;
    let answers: Vec<u16> = futures::stream::iter(plan.iter())
        .map(|w| {
            let url = url.clone();
            async move { Post::signed(&w.topic, &w.body).send(&url).await.0 }
        })
        // One at a time, as WooCommerce delivers them in this order: concurrent posts could
        // land one customer's orders out of order, and the scores depend on the order.
        .buffered(1)
        .collect()
        .await;
    assert!(
        answers.iter().all(|s| *s == 200),
        "every webhook acknowledged"
    );
    producer.stop().await.unwrap();
    println!(
        "{} webhooks delivered in {:.1} s",
        plan.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();

    // The backfill: the shop's REST API serving the state those webhooks describe.
    let shop = ShopServer::start(
        objects,
        KEY,
        SECRET_KEY,
        Behaviour {
            rate_limit: Some(SHOP_LIMIT),
            fail_every: Some(97),
            // 1 % answered 429 besides the 503s: retries are requests too, within the rate.
            throttle_every: Some(101),
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let backfilled = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{}\"\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n[shops.rest]\nurl = \"{}\"\nconsumer_key = \"{KEY}\"\nconsumer_secret = {{ file = \"{}\" }}\nrequests_per_second = {OUR_RATE}\nconcurrency = 4\n[ops]\nlisten = \"127.0.0.1:{}\"\n",
        backfilled.bootstrap,
        shop.url,
        dir.path().join("consumer-secret").display(),
        free_port()
    );
    std::fs::write(dir.path().join("consumer-secret"), SECRET_KEY).unwrap();
    let order_pages = |shop: &ShopServer| {
        shop.served()
            .iter()
            .filter(|s| s.path.ends_with("/orders") && s.status == 200)
            .count()
    };
    let mut first = spawn("backfill", &toml, "first", free_port(), dir.path());
    let deadline = Instant::now() + Duration::from_secs(300);
    while order_pages(&shop) < 60 {
        assert!(
            first.exited().is_none(),
            "the backfill ended early: {}",
            first.log_text()
        );
        assert!(
            Instant::now() < deadline,
            "no progress: {}",
            first.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill9();
    let pages_before = order_pages(&shop);

    let mut second = spawn("backfill", &toml, "second", free_port(), dir.path());
    let status = second.finished(Duration::from_secs(300)).await;
    let log = second.log_text();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("resumed at page"),
        "the second run resumed: {log}"
    );
    let summary = log
        .lines()
        .find(|l| l.trim_start().starts_with("orders"))
        .unwrap_or_default()
        .to_string();
    assert!(summary.contains(&format!("{orders} events")), "{summary}");
    println!(
        "backfill (killed and resumed) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let pages = orders.div_ceil(100);
    let fetched = order_pages(&shop);
    println!("order pages: {pages}; fetched {pages_before} before the kill, {fetched} in all (repeated: {})", fetched - pages);
    // Fetched again: at most the page being produced and the next one, fetched ahead.
    assert!(
        fetched <= pages + 2,
        "at most two pages fetched again: {fetched} for {pages}"
    );

    // The shop's limit was never reached: no 429, and never more requests in a second than
    // woostream allows itself.
    let served = shop.served();
    assert_eq!(
        served.iter().filter(|s| s.over_rate_limit).count(),
        0,
        "answered 429 for the rate"
    );
    assert!(
        served.iter().any(|s| s.status == 429),
        "throttled on purpose"
    );
    let peak = shop.peak_requests_per_second();
    println!(
        "REST requests: {}, peak {peak} per second, {} answered 503 and {} answered 429 (retried)",
        served.len(),
        served.iter().filter(|s| s.status == 503).count(),
        served.iter().filter(|s| s.status == 429).count()
    );
    assert!(
        peak as f64 <= OUR_RATE + 1.0,
        "peak {peak}/s above {OUR_RATE}/s"
    );

    let reference = customer_facts(
        &enrich_everything(&webhooks.bootstrap, dir.path(), "webhooks").await,
        true,
    );
    let from_rest = customer_facts(
        &enrich_everything(&backfilled.bootstrap, dir.path(), "backfill").await,
        true,
    );
    println!("both enriched in {:.1} s", started.elapsed().as_secs_f64());
    assert!(reference.len() >= 2_000, "{} profiles", reference.len());
    assert_eq!(reference.len(), from_rest.len(), "customers with a profile");
    let differing: Vec<_> = reference
        .iter()
        .filter(|(k, v)| from_rest.get(*k) != Some(v))
        .take(3)
        .map(|(k, v)| format!("{k}:\n  webhooks {v}\n  backfill {:?}", from_rest.get(k)))
        .collect();
    assert!(
        differing.is_empty(),
        "profiles differ:\n{}",
        differing.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_stops_the_backfill_with_the_shop_the_endpoint_and_what_to_fix() {
    let shop = ShopServer::start(BTreeMap::new(), KEY, SECRET_KEY, Behaviour::default())
        .await
        .unwrap();
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{}\"\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n[shops.rest]\nurl = \"{}\"\nconsumer_key = \"{KEY}\"\nconsumer_secret = \"cs_not_the_secret_of_this_key\"\n[ops]\nlisten = \"127.0.0.1:{}\"\n",
        tansu.bootstrap,
        shop.url,
        free_port()
    );
    let mut run = spawn("backfill", &toml, "wrong-key", free_port(), dir.path());
    let status = run.finished(Duration::from_secs(120)).await;
    let log = run.log_text();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("shop eu: GET products: HTTP 401")
            && log.contains("check the consumer key and secret"),
        "{log}"
    );
    assert!(
        !log.contains("cs_not_the_secret"),
        "the secret is not printed"
    );
    assert_eq!(shop.served().len(), 1, "a 401 is not retried");
}

/// A shop behind a certificate the built-in roots do not trust (a private CA): named at once,
/// never retried, and trusted once `[http] ca_file` holds its CA. Over HTTPS the key goes as
/// Basic auth (`auth = "auto"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_named_at_once_and_a_ca_file_trusts_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = woostream_tests::secure::Pki::generate(dir.path());
    let tls_port = free_port();
    let mut objects = BTreeMap::new();
    objects.insert(
        "products".to_string(),
        BTreeMap::from([(
            1,
            serde_json::from_slice::<serde_json::Value>(&woostream_tests::fixture(
                "woo_product_example.json",
            ))
            .unwrap(),
        )]),
    );
    let shop = ShopServer::start(
        objects,
        KEY,
        SECRET_KEY,
        Behaviour {
            https_origin: Some(format!("https://127.0.0.1:{tls_port}")),
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let plain = woostream_tests::addr_of(&shop.url);
    let conf = dir.path().join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[shop]\naccept = 127.0.0.1:{tls_port}\nconnect = {plain}\ncert = {}\nkey = {}\n",
            pki.server_cert.display(),
            pki.server_key.display()
        ),
    )
    .unwrap();
    let mut stunnel = std::process::Command::new("stunnel")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("stunnel (make test installs it)");
    woostream_tests::await_port(&format!("127.0.0.1:{tls_port}"), "stunnel");
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let toml = |extra: &str| {
        format!(
            "{extra}[kafka]\nbootstrap_servers = \"{}\"\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n[shops.rest]\nurl = \"https://127.0.0.1:{tls_port}/wp-json/wc/v3/\"\nconsumer_key = \"{KEY}\"\nconsumer_secret = \"{SECRET_KEY}\"\n[ops]\nlisten = \"127.0.0.1:{}\"\n",
            tansu.bootstrap,
            free_port()
        )
    };
    let mut run = spawn("backfill", &toml(""), "untrusted", free_port(), dir.path());
    let status = run.finished(Duration::from_secs(120)).await;
    let log = run.log_text();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("TLS certificate is not trusted") && log.contains("[http] ca_file"),
        "{log}"
    );
    assert!(!log.contains("trying again"), "not retried: {log}");
    assert_eq!(shop.served().len(), 0, "nothing reached the shop");

    let trusted = toml(&format!("[http]\nca_file = \"{}\"\n", pki.ca.display()));
    let mut run = spawn("backfill", &trusted, "trusted", free_port(), dir.path());
    let status = run.finished(Duration::from_secs(120)).await;
    let log = run.log_text();
    assert!(status.success(), "{log}");
    assert!(
        shop.served().iter().all(|s| s.status == 200),
        "Basic auth over https"
    );
    assert!(log.contains("products          1 events"), "{log}");
    let _ = stunnel.kill();
    let _ = stunnel.wait();
}
