//! `woostream repartition` on Tansu: an installation on 3 partitions runs a sale through its
//! producer, enricher and Slack sink; it is stopped and `woostream repartition` copies it into
//! a namespace on 6 partitions. That installation's enricher rebuilds every customer (the same
//! orders, revenue and dates per customer) and the same order alerts, its Slack sink posts
//! nothing a second time (the deliveries audit came along), its subject keys open what was
//! sealed, and it carries on with new orders.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use woostream::simulate;
use woostream_core::config::Config;
use woostream_core::contract::enriched::AlertKind;
use woostream_tests::enricher::*;
use woostream_tests::slack::{ChannelState, FakeSlack};
use woostream_tests::{post_all, read_topic_now, Producer, Tansu, SECRET, SOURCE};

const SLACK_TOKEN: &str = "xoxb-repartition";

fn installation_toml(bootstrap: &str, namespace: Option<&str>, partitions: i32) -> String {
    let namespace = namespace.map_or(String::new(), |n| format!("namespace = \"{n}\"\n"));
    format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\n{namespace}[topics]\npartitions = {partitions}\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n[enricher]\ncommit_interval_ms = 100\nrefit_interval_secs = 0\n[log]\nformat = \"json\"\n"
    )
}

fn load(name: &str, text: &str) -> Config {
    Config::from_text(name, text, Vec::<(String, String)>::new()).unwrap()
}

/// The installation's enricher as its own process.
fn start_enricher(installation: &str, name: &str, dir: &std::path::Path) -> EnricherProcess {
    let port = free_port();
    let toml = format!("{installation}[ops]\nlisten = \"127.0.0.1:{port}\"\n");
    spawn("enricher", &toml, name, port, dir)
}

fn slack_toml(installation: &str, slack: &FakeSlack, port: u16) -> String {
    format!(
        "{installation}[slack]\napi_url = \"{}\"\ntoken = \"{SLACK_TOKEN}\"\nper_channel_per_second = 50.0\nper_channel_burst = 50\n[[slack.channels]]\nname = \"#orders\"\nid = \"C0ORDERS00\"\n[[slack.rules]]\nname = \"paid orders\"\nkinds = [\"order_paid\"]\nchannels = [\"#orders\"]\n[ops]\nlisten = \"127.0.0.1:{port}\"\n",
        slack.api_url()
    )
}

/// Waits until `group` has committed every record of `topic` as it stands now.
async fn delivered(bootstrap: &str, group: &str, topic: &str, partitions: i32) {
    let ends = log_ends(bootstrap, &[topic]);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let done = committed(bootstrap, group, topic, partitions);
        if ends
            .iter()
            .all(|((_, p), end)| done.get(p).copied().unwrap_or(0) >= *end)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{group} did not deliver {topic}: {done:?} of {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `group` has committed what the shop topics hold now; the log if it does not.
async fn caught_up(
    bootstrap: &str,
    group: &'static str,
    topics: &[&str],
    mut enricher: EnricherProcess,
) -> EnricherProcess {
    let produced = log_ends(bootstrap, topics);
    let b = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            await_caught_up(&b, group, &produced, Duration::from_secs(180), || {
                enricher.exited().is_none()
            })
        }));
        if let Err(e) = waited {
            println!("enricher log:\n{}", enricher.log_text());
            std::panic::resume_unwind(e);
        }
        enricher
    })
    .await
    .unwrap()
}

fn paid_alert_ids(view: &woostream_enricher::published::View) -> BTreeSet<String> {
    view.alerts
        .iter()
        .filter(|a| a.kind == AlertKind::OrderPaid)
        .map(|a| a.alert_id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repartitioned_installation_rebuilds_every_customer_and_posts_nothing_again() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let dir = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(SLACK_TOKEN, &[("C0ORDERS00", ChannelState::Open)]).await;

    // The installation as it runs today: 3 partitions.
    let a_text = installation_toml(&bootstrap, None, 3);
    let a = load("a.toml", &a_text);
    let a_path = dir.path().join("a.toml");
    std::fs::write(&a_path, &a_text).unwrap();
    let producer = Producer::start(&a, true).await.unwrap();
    let mut enricher = start_enricher(&a_text, "a", dir.path());
    enricher.ready(Duration::from_secs(120)).await;
    let port = free_port();
    let mut sink = spawn(
        "slack run",
        &slack_toml(&a_text, &slack, port),
        "a-slack",
        port,
        dir.path(),
    );
    sink.ready(Duration::from_secs(120)).await;
    let sale = simulate::plan(
        &simulate::Options {
            orders: 40,
            customers: 20,
            seed: 11,
            ..Default::default()
        },
        chrono::Utc::now(),
    );
    post_all(&producer.url, &sale).await;
    let shop_topics = ["woo.orders", "woo.customers", "woo.products"];
    let enricher = caught_up(&bootstrap, "woostream-enricher", &shop_topics, enricher).await;
    delivered(&bootstrap, "woostream-slack", "woostream.alerts", 3).await;
    let posted_before = slack.posted().len();
    let (a_view, _, _) = read_view(&a);
    // Messages, not alerts: the sink folds a burst into digests when Slack slows it down.
    assert!(posted_before > 0, "{posted_before} posts");

    // Stopped, then copied into namespace "b" on 6 partitions.
    drop((enricher, sink));
    producer.stop().await.unwrap();
    let b_text = installation_toml(&bootstrap, Some("b"), 6);
    let b_path = dir.path().join("b.toml");
    std::fs::write(&b_path, &b_text).unwrap();
    let (ok, out) = tokio::task::spawn_blocking({
        let (a_path, b_path) = (a_path.clone(), b_path.clone());
        move || {
            woostream_cli(
                &["repartition", "--to", b_path.to_str().unwrap()],
                &a_path,
                Duration::from_secs(300),
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    println!("{out}");
    assert!(
        out.contains("rebuilt woostream.customer-profiles -> b.woostream.customer-profiles"),
        "{out}"
    );
    let b = load("b.toml", &b_text);
    for (topic, partitions) in [("b.woo.orders", 6), ("b.woostream.subject-keys", 1)] {
        assert_eq!(log_ends(&bootstrap, &[topic]).len(), partitions, "{topic}");
    }
    let count = |c: &Config, t: &str| {
        let (c, t) = (c.clone(), t.to_string());
        async move { read_topic_now(&c, "repartition-count", &t).await.len() }
    };
    for (from, to) in [
        ("woo.orders", "b.woo.orders"),
        ("woostream.subject-keys", "b.woostream.subject-keys"),
        ("woostream.deliveries", "b.woostream.deliveries"),
    ] {
        assert_eq!(
            count(&a, from).await,
            count(&b, to).await,
            "{from} copied whole"
        );
    }

    // The new installation's enricher rebuilds every customer.
    let b_topics = ["b.woo.orders", "b.woo.customers", "b.woo.products"];
    let enricher = start_enricher(&b_text, "b", dir.path());
    let enricher = caught_up(&bootstrap, "b.woostream-enricher", &b_topics, enricher).await;
    let (b_view, _, _) = read_view(&b);
    let (facts_a, facts_b) = (
        customer_facts(&a_view, false),
        customer_facts(&b_view, false),
    );
    assert!(facts_a.len() > 10, "{} customers", facts_a.len());
    let differing: Vec<_> = facts_a
        .iter()
        .filter(|(k, v)| facts_b.get(*k) != Some(v))
        .take(3)
        .map(|(k, v)| format!("{k}:\n  before {v}\n  after  {:?}", facts_b.get(k)))
        .collect();
    assert_eq!(facts_a.len(), facts_b.len(), "customers with a profile");
    assert!(differing.is_empty(), "{}", differing.join("\n"));
    assert_eq!(
        paid_alert_ids(&a_view),
        paid_alert_ids(&b_view),
        "the same order alerts"
    );

    // Its Slack sink posts nothing again, then the new installation carries on.
    let port = free_port();
    let mut sink = spawn(
        "slack run",
        &slack_toml(&b_text, &slack, port),
        "b-slack",
        port,
        dir.path(),
    );
    sink.ready(Duration::from_secs(120)).await;
    delivered(&bootstrap, "b.woostream-slack", "b.woostream.alerts", 6).await;
    // Every paid order of the sale posted once over both installations: what the first
    // installation's sink had posted before it stopped is not posted again, what it had not
    // yet posted the new one posts.
    let mut posts_per_order: std::collections::BTreeMap<String, usize> = Default::default();
    for p in slack.posted() {
        let text = p.all_text();
        let numbers: BTreeSet<&str> = text
            .match_indices("#100")
            .map(|(at, _)| &text[at..at + 6])
            .collect();
        for n in numbers {
            *posts_per_order.entry(n.to_string()).or_default() += 1;
        }
    }
    assert!(
        posts_per_order.values().all(|n| *n == 1),
        "an order posted twice: {posts_per_order:?}"
    );
    assert_eq!(
        posts_per_order.len(),
        paid_alert_ids(&a_view).len(),
        "every paid order posted (first installation: {posted_before} messages)"
    );
    let posted_before = slack.posted().len();
    let producer = Producer::start(&b, false).await.unwrap();
    // More orders (order ids of their own), some of them by the same customers.
    let more: Vec<simulate::Webhook> = simulate::plan(
        &simulate::Options {
            orders: 6,
            customers: 20,
            seed: 12,
            ..Default::default()
        },
        chrono::Utc::now(),
    )
    .into_iter()
    .map(|mut w| {
        if w.topic.starts_with("order.") {
            let mut v: serde_json::Value = serde_json::from_slice(&w.body).unwrap();
            let id = v["id"].as_i64().unwrap() + 890_000;
            v["id"] = id.into();
            v["number"] = id.to_string().into();
            w.body = serde_json::to_vec(&v).unwrap();
        }
        w
    })
    .collect();
    post_all(&producer.url, &more).await;
    let enricher = caught_up(&bootstrap, "b.woostream-enricher", &b_topics, enricher).await;
    delivered(&bootstrap, "b.woostream-slack", "b.woostream.alerts", 6).await;
    let (after, _, _) = read_view(&b);
    let new_paid = paid_alert_ids(&after).len() - paid_alert_ids(&b_view).len();
    assert!(new_paid > 0, "the new orders were paid");
    let new_posts = slack.posted().len() - posted_before;
    assert!(
        (1..=new_paid).contains(&new_posts),
        "{new_posts} posts for {new_paid} new paid orders"
    );
    assert!(
        slack
            .posted()
            .iter()
            .skip(posted_before)
            .all(|p| !p.all_text().contains("#100")),
        "no order of the sale (#10000…) posted again"
    );
    drop((enricher, sink, producer));
}
