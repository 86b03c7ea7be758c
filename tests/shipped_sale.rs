//! What ships, in a sale, on the real broker (Tansu): `woostream run --simulate` with nothing
//! but the broker configured, and the example configuration's own Slack rules through a
//! 6,000-order flash sale on a fresh shop — a failed payment posted mid-sale must reach Slack
//! while the sale is still running, not behind a backlog of high-value orders, and "high
//! value" must mean high for this shop.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use woostream::all_in_one::{self, RunOptions};
use woostream::simulate;
use woostream_core::config::Config;
use woostream_core::contract::enriched::AlertKind;
use woostream_tests::enricher::{free_port, read_view, woostream_bin};
use woostream_tests::slack::{ChannelState, FakeSlack};
use woostream_tests::{fixture, repo_root, Tansu};
use woostream_woo::signature::sign;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_simulate_with_only_the_broker_configured_enriches_and_alerts() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("woostream.toml");
    std::fs::write(
        &path,
        format!("[kafka]\nbootstrap_servers = \"{}\"\n", tansu.bootstrap),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(woostream_bin())
            .args(["run", "--simulate", "--orders", "300", "--duration", "5"])
            .args(["--config", path.to_str().unwrap()])
            .stdin(Stdio::null())
            .output()
            .expect("running woostream")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "woostream run --simulate exits 0: {}\n{stdout}\n{stderr}",
        out.status
    );
    let number_after = |prefix: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.trim_end_matches(',').parse().ok())
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{stdout}"))
    };
    assert!(
        number_after("Enriched") > 0,
        "the enricher processed the sale's orders:\n{stdout}"
    );
    assert!(
        number_after("Alerts (") > 0,
        "alerts were raised:\n{stdout}"
    );
    assert!(
        !stdout.contains("Customer segments (0 customers"),
        "profiles were written:\n{stdout}"
    );
}

/// The example configuration as a user copies it, pointed at this broker and the local Slack;
/// the CRM left to the in-memory one `woostream run` keeps when none is enabled.
fn example_config(bootstrap: &str, slack: &FakeSlack, producer_port: u16, spool: &str) -> Config {
    let example = std::fs::read_to_string(repo_root().join("deploy/woostream.example.toml"))
        .expect("the example configuration");
    let replace = |text: String, from: &str, to: &str| {
        assert!(
            text.contains(from),
            "the example configuration has {from:?}"
        );
        text.replacen(from, to, 1)
    };
    let mut text = example;
    for (from, to) in [
        (
            "\"kafka-bootstrap.kafka.svc:9092\"",
            format!("\"{bootstrap}\""),
        ),
        ("replication_factor = 3", "replication_factor = 1".into()),
        (
            "listen = \"0.0.0.0:8080\"",
            format!("listen = \"127.0.0.1:{producer_port}\""),
        ),
        (
            "listen = \"0.0.0.0:9090\"",
            "listen = \"127.0.0.1:0\"".into(),
        ),
        (
            "listen = \"0.0.0.0:9091\"",
            "listen = \"127.0.0.1:0\"".into(),
        ),
        ("\"/var/lib/woostream/spool\"", format!("\"{spool}\"")),
        (
            "token_env = \"SLACK_BOT_TOKEN\"",
            format!("token = \"xoxb-sale\"\napi_url = \"{}\"", slack.api_url()),
        ),
        (
            "webhook_url_env = \"SLACK_OPS_WEBHOOK\"",
            format!("webhook_url = \"{}\"", slack.webhook_url("ops")),
        ),
        ("enabled = true", "enabled = false".into()),
        (
            "secret_env = \"WOO_EU_STORE_WEBHOOK_SECRET\"",
            "secret = \"flash-sale-secret\"".into(),
        ),
        (
            "\"https://shop.example.com/\"",
            "\"https://flash-sale.example/\"".into(),
        ),
    ] {
        text = replace(text, from, &to);
    }
    Config::from_text(
        "woostream.example.toml",
        &text,
        Vec::<(String, String)>::new(),
    )
    .expect("the example configuration is valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_payment_reaches_slack_mid_sale_with_the_example_rules() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let slack = FakeSlack::start(
        "xoxb-sale",
        &[
            ("C0123ABCDEF", ChannelState::Open),
            ("ops", ChannelState::Open),
        ],
    )
    .await;
    let spool = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = example_config(
        &tansu.bootstrap,
        &slack,
        port,
        spool.path().to_str().unwrap(),
    );
    let sale = simulate::Options {
        orders: 6_000,
        customers: 2_500,
        duration: Duration::from_secs(60),
        concurrency: 32,
        seed: 12,
        ..Default::default()
    };
    let plan = simulate::plan(&sale, chrono::Utc::now());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(all_in_one::run(
        config.clone(),
        RunOptions {
            simulate: Some(sale.clone()),
            keep_serving: false,
        },
        shutdown.clone(),
    ));

    // A third of the way into the sale, a payment fails.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let mut order: serde_json::Value =
        serde_json::from_slice(&fixture("woo_order_example.json")).unwrap();
    order["id"] = 990_001.into();
    order["number"] = "990001".into();
    order["status"] = "failed".into();
    let body = serde_json::to_vec(&order).unwrap();
    let url = format!("http://127.0.0.1:{port}{}", config.producer.webhook_path);
    let sent = Instant::now();
    let answer = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("x-wc-webhook-source", "https://flash-sale.example/")
        .header("x-wc-webhook-topic", "order.updated")
        .header("x-wc-webhook-id", "3")
        .header("x-wc-webhook-delivery-id", "990001")
        .header("x-wc-webhook-signature", sign(&body, "flash-sale-secret"))
        .body(body)
        .send()
        .await
        .expect("the producer answers");
    assert!(answer.status().is_success(), "{}", answer.status());

    let mut reached = None;
    while !running.is_finished() {
        if let Some(p) = slack
            .posted()
            .into_iter()
            .find(|p| p.all_text().contains("#990001"))
        {
            reached = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(reached) = reached else {
        let ended = running.await.unwrap();
        panic!("the failed payment was not in Slack before the sale's run ended: {ended:?}")
    };
    let time_to_slack = reached.at.duration_since(sent);
    assert_eq!(reached.channel, "ops", "the urgent rule's channel");
    assert!(
        reached.all_text().contains("Payment failed")
            || reached.all_text().contains("failed payment"),
        "{}",
        reached.all_text()
    );

    running.await.unwrap().expect("the sale runs to its end");
    let (view, _, _) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || read_view(&config)
    })
    .await
    .unwrap();
    let orders = plan.iter().filter(|w| w.topic == "order.created").count();
    let high_value = view
        .alerts
        .iter()
        .filter(|a| a.kind == AlertKind::HighValueOrder)
        .count();
    // What the old default (3 × the prior mean order value, before any fit) would have called
    // high value in this sale.
    let prior_level = 3.0 * config.enricher.prior_order_value;
    let under_prior = plan
        .iter()
        .filter(|w| w.topic == "order.created")
        .filter_map(|w| serde_json::from_slice::<serde_json::Value>(&w.body).ok())
        .filter(|o| {
            o["total"]
                .as_str()
                .and_then(|t| t.parse::<f64>().ok())
                .is_some_and(|t| t >= prior_level)
        })
        .count();
    let ops_messages = slack.posted().iter().filter(|p| p.channel == "ops").count();
    println!(
        "example rules, {orders}-order sale: failed payment in Slack {:.2} s after its webhook; {high_value} orders high value ({:.1} %; {:.1} % under the old prior level {prior_level}); {ops_messages} messages in #ops",
        time_to_slack.as_secs_f64(),
        100.0 * high_value as f64 / orders as f64,
        100.0 * under_prior as f64 / orders as f64,
    );
    assert!(
        high_value * 10 < orders,
        "high value means high for this shop: {high_value} of {orders} orders"
    );
}
