//! Every role as its own process, as a Kubernetes deployment runs them, carrying one webhook
//! from WooCommerce to Slack and the CRM: the shipped-defaults test runs it on a plain broker,
//! the Kafka-security tests over TLS and SASL.

use std::time::{Duration, Instant};

use woostream_woo::signature::sign;

use crate::enricher::{free_port, spawn, EnricherProcess};
use crate::hubspot::FakeHubSpot;
use crate::slack::{ChannelState, FakeSlack};
use crate::{fixture, SECRET, SOURCE};

/// The correlation id the webhook of [`every_role_carries_a_webhook_to_slack_and_the_crm`]
/// carries (WooCommerce sends none; a proxy in front may, and the producer keeps it).
pub const CORRELATION_ID: &str = "shipped-roles-880001";

/// A role process and the log line that says its readiness condition holds.
struct Role {
    name: &'static str,
    process: EnricherProcess,
    condition: &'static str,
}

/// Starts the producer, the enricher, the Slack sink and the CRM sink as their own processes,
/// each with `kafka` (the whole `[kafka]` section), one shop and what the role must reach —
/// everything else as shipped. Each role's `/readyz` is probed from its first moment and must
/// not answer 200 before the role's own condition holds; then one signed webhook must travel
/// through all of them to a Slack message and a CRM deal, and every role must stop cleanly.
/// The webhook carries the correlation id [`CORRELATION_ID`].
pub async fn every_role_carries_a_webhook_to_slack_and_the_crm(kafka: &str) {
    let slack = FakeSlack::start("xoxb-shipped", &[("C0ORDERS00", ChannelState::Open)]).await;
    let hubspot = FakeHubSpot::start("pat-shipped", 190).await;
    let dir = tempfile::tempdir().unwrap();
    let base = |ops_port: u16| {
        format!(
            "{kafka}\n\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\n"
        )
    };
    let webhook_port = free_port();
    let roles: Vec<(&str, String, &str)> = vec![
        (
            "producer",
            format!("[producer]\nlisten = \"127.0.0.1:{webhook_port}\"\n"),
            "Producer accepting WooCommerce webhooks",
        ),
        ("enricher", String::new(), "Partitions assigned and their state restored"),
        (
            "slack run",
            format!(
                "[slack]\ntoken = \"xoxb-shipped\"\napi_url = \"{}\"\n[[slack.channels]]\nname = \"#orders\"\nid = \"C0ORDERS00\"\n[[slack.rules]]\nname = \"new orders\"\nkinds = [\"order_placed\"]\nchannels = [\"#orders\"]\n",
                slack.api_url()
            ),
            "Slack accepted the bot token",
        ),
        (
            "crm run",
            format!(
                "[crm]\nenabled = true\ntoken = \"pat-shipped\"\napi_url = \"{}\"\n",
                hubspot.url
            ),
            "The CRM has every property the mapping writes",
        ),
    ];
    let mut started: Vec<Role> = Vec::new();
    for (role, section, condition) in roles {
        let port = free_port();
        // The role's own section first, so that it cannot land inside the [[shops]] table.
        let toml = format!("{section}\n{}", base(port));
        started.push(Role {
            name: role,
            process: spawn(role, &toml, "shipped", port, dir.path()),
            condition,
        });
    }
    let started = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut pending: Vec<usize> = (0..started.len()).collect();
        while !pending.is_empty() {
            pending.retain(|&i| {
                let role = &mut started[i];
                assert!(
                    role.process.exited().is_none(),
                    "{} exited: {}",
                    role.name,
                    role.process.log_text()
                );
                if !role.process.is_ready() {
                    return true;
                }
                assert!(
                    role.process.log_text().contains(role.condition),
                    "{} answered ready before {:?}: {}",
                    role.name,
                    role.condition,
                    role.process.log_text()
                );
                false
            });
            assert!(
                Instant::now() < deadline,
                "not ready within 3 minutes: {:?}",
                pending.iter().map(|&i| started[i].name).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        started
    })
    .await
    .unwrap();

    // Every role says which release and source revision it runs, the one `--version` names
    // and git has checked out.
    let version = std::process::Command::new(crate::enricher::woostream_bin())
        .arg("--version")
        .output()
        .expect("woostream --version");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let revision = version
        .split_once(" (")
        .and_then(|(_, r)| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no revision in {version:?}"))
        .to_string();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(crate::repo_root())
        .output()
        .expect("git");
    assert_eq!(
        revision,
        String::from_utf8_lossy(&head.stdout).trim(),
        "woostream --version: {version}"
    );
    let mut started = tokio::task::spawn_blocking(move || {
        for role in &started {
            let labels = [
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", revision.as_str()),
            ];
            assert_eq!(
                role.process.metric_with("woostream_build_info", &labels),
                1.0,
                "{}: {}",
                role.name,
                role.process.metrics_text()
            );
        }
        started
    })
    .await
    .unwrap();

    let mut order: serde_json::Value =
        serde_json::from_slice(&fixture("woo_order_example.json")).unwrap();
    order["id"] = 880_001.into();
    order["number"] = "880001".into();
    order["customer_id"] = 4_242.into();
    let body = serde_json::to_vec(&order).unwrap();
    let answer = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{webhook_port}/webhooks/woocommerce"
        ))
        .header("content-type", "application/json")
        .header("x-wc-webhook-source", SOURCE)
        .header("x-wc-webhook-topic", "order.created")
        .header("x-wc-webhook-id", "9")
        .header("x-wc-webhook-delivery-id", "880001")
        .header("x-correlation-id", CORRELATION_ID)
        .header("x-wc-webhook-signature", sign(&body, SECRET))
        .body(body)
        .send()
        .await
        .expect("the producer answers");
    assert_eq!(answer.status().as_u16(), 200, "acknowledged by the broker");

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let in_slack = slack
            .posted()
            .iter()
            .any(|p| p.all_text().contains("#880001"));
        let in_crm = hubspot.with_store(|s| {
            s.deals
                .records
                .values()
                .any(|d| d.get("woo_order_id").map(String::as_str) == Some("eu:880001"))
        });
        if in_slack && in_crm {
            break;
        }
        for role in &mut started {
            assert!(
                role.process.exited().is_none(),
                "{} exited: {}",
                role.name,
                role.process.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the order did not reach both: Slack {in_slack}, CRM {in_crm}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // librdkafka's statistics of each role's clients (every 15 s as shipped): the brokers'
    // round trips and the queued records.
    let started = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        for role in &started {
            let label = role.name.split(' ').next().unwrap_or(role.name);
            while role
                .process
                .metric_with("woostream_kafka_broker_rtt_seconds", &[("role", label)])
                <= 0.0
            {
                assert!(
                    Instant::now() < deadline,
                    "{}: no broker round trip from librdkafka's statistics: {}",
                    role.name,
                    role.process.metrics_text()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            let metrics = role.process.metrics_text();
            assert!(
                metrics.contains("woostream_kafka_client_queued_messages{"),
                "{}: {metrics}",
                role.name
            );
            // Every role says whether it reaches Kafka; each consuming role how far behind its
            // group is (the enricher role once exported neither).
            assert_eq!(
                role.process
                    .metric_with("woostream_kafka_reachable", &[("role", label)]),
                1.0,
                "{}: {metrics}",
                role.name
            );
            if label != "producer" {
                assert!(
                    metrics.contains("woostream_consumer_lag{"),
                    "{}: {metrics}",
                    role.name
                );
            }
        }
        started
    })
    .await
    .unwrap();
    for mut role in started {
        let status = role.process.stop();
        assert!(status.success(), "{} stops cleanly: {status}", role.name);
    }
}
