//! Several tenants on one broker: two Slack workspaces and two CRM accounts, each sink named
//! after its workspace or account (as the chart names them). Each keeps its own consumer group
//! and its own audit records, so each receives everything — a sink started after the other
//! has delivered is not taken for it — and nothing twice through restarts. Both workspaces
//! have an `#orders` channel. On Tansu.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use woostream_core::contract::codec::{Encoder, Framing};
use woostream_core::contract::enriched::{Alert, AlertKey, AlertKind};
use woostream_sink::slack::examples::order_alert;
use woostream_tests::crm::{await_complete, sale, TOKEN as HUBSPOT_TOKEN};
use woostream_tests::enricher::{committed, free_port, produce_all, spawn, EnricherProcess};
use woostream_tests::hubspot::FakeHubSpot;
use woostream_tests::slack::{ChannelState, FakeSlack};
use woostream_tests::Tansu;

const SLACK_TOKEN: &str = "xoxb-tenants";

fn slack_toml(
    bootstrap: &str,
    workspace: &str,
    slack: &FakeSlack,
    channel_id: &str,
    port: u16,
) -> String {
    woostream_tests::sink_toml(
        bootstrap,
        port,
        &format!(
            r##"[slack]
workspace = "{workspace}"
api_url = "{api}"
token = "{SLACK_TOKEN}"
per_channel_per_second = 50.0
per_channel_burst = 50
[[slack.channels]]
name = "#orders"
id = "{channel_id}"
[[slack.rules]]
name = "paid orders"
kinds = ["order_paid"]
channels = ["#orders"]"##,
            api = slack.api_url()
        ),
    )
}

fn crm_toml(bootstrap: &str, account: &str, hubspot: &FakeHubSpot, port: u16) -> String {
    woostream_tests::sink_toml(
        bootstrap,
        port,
        &format!(
            "[crm]\naccount = \"{account}\"\nenabled = true\napi_url = \"{}\"\ntoken = \"{HUBSPOT_TOKEN}\"\nmax_delay_ms = 500\n[crm.deal_stages]\nawaiting-shipment = \"shipping\"",
            hubspot.url
        ),
    )
}

/// Order number → how many messages named it, in one workspace.
fn posted_orders(slack: &FakeSlack) -> BTreeMap<i64, usize> {
    let mut seen = BTreeMap::new();
    for p in slack.posted() {
        let text = p.all_text();
        let mut in_message = std::collections::BTreeSet::new();
        for (i, _) in text.match_indices('#') {
            let digits: String = text[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse::<i64>() {
                in_message.insert(n);
            }
        }
        for n in in_message {
            *seen.entry(n).or_default() += 1;
        }
    }
    seen
}

async fn await_orders(slack: &FakeSlack, orders: std::ops::RangeInclusive<i64>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !orders
        .clone()
        .all(|n| posted_orders(slack).contains_key(&n))
    {
        assert!(
            Instant::now() < deadline,
            "{what}: not every order posted: {:?}",
            posted_orders(slack)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send_alerts(producer: &FutureProducer, topic: &str, alerts: impl Iterator<Item = Alert>) {
    for a in alerts {
        let key = Encoder::<AlertKey>::new(&Framing::SingleObject)
            .encode(&AlertKey {
                shop_id: a.shop_id.clone(),
                subject: format!("customer:{}", a.customer.as_ref().unwrap().customer),
            })
            .unwrap();
        let value = Encoder::<Alert>::new(&Framing::SingleObject)
            .encode(&a)
            .unwrap();
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

fn start(role: &str, toml: &str, name: &str, port: u16, dir: &std::path::Path) -> EnricherProcess {
    spawn(role, toml, name, port, dir)
}

async fn ready(mut p: EnricherProcess) -> EnricherProcess {
    p.ready(Duration::from_secs(120)).await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workspaces_and_two_crm_accounts_on_one_broker_each_receive_everything_through_restarts(
) {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let mut config = woostream_tests::config(&bootstrap);
    config.topics.partitions = 3;
    woostream_core::kafka::ensure_topics(
        &config.kafka,
        &bootstrap,
        &config.topics,
        &config.retention,
    )
    .await
    .unwrap();
    let producer: FutureProducer =
        woostream_core::kafka::producer_config(&config.kafka, &bootstrap)
            .create()
            .unwrap();
    let alerts_topic = config.topics.alerts.name.clone();
    let dir = tempfile::tempdir().unwrap();
    let sales = FakeSlack::start(SLACK_TOKEN, &[("C0SALES000", ChannelState::Open)]).await;
    let support = FakeSlack::start(SLACK_TOKEN, &[("C0SUPPORT0", ChannelState::Open)]).await;
    let eu = FakeHubSpot::start(HUBSPOT_TOKEN, 190).await;
    let us = FakeHubSpot::start(HUBSPOT_TOKEN, 190).await;
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let tomls = [
        slack_toml(&bootstrap, "sales", &sales, "C0SALES000", ports[0]),
        slack_toml(&bootstrap, "support", &support, "C0SUPPORT0", ports[1]),
        crm_toml(&bootstrap, "eu-hubspot", &eu, ports[2]),
        crm_toml(&bootstrap, "us-hubspot", &us, ports[3]),
    ];

    // One workspace and one account deliver a first batch before the others start.
    let sales_sink = ready(start("slack run", &tomls[0], "sales", ports[0], dir.path())).await;
    let eu_sink = ready(start("crm run", &tomls[2], "eu", ports[2], dir.path())).await;
    send_alerts(
        &producer,
        &alerts_topic,
        (1..=30).map(|n| order_alert(n, AlertKind::OrderPaid, "120.00")),
    )
    .await;
    let the_sale = sale(60, 31);
    produce_all(&bootstrap, &the_sale.records).await;
    await_orders(&sales, 1..=30, "sales").await;
    await_complete(&eu, &the_sale, Duration::from_secs(180)).await;

    // The others start afterwards and still receive everything: nothing the first ones
    // delivered or committed counts for them.
    let support_sink = ready(start(
        "slack run",
        &tomls[1],
        "support",
        ports[1],
        dir.path(),
    ))
    .await;
    let us_sink = ready(start("crm run", &tomls[3], "us", ports[3], dir.path())).await;
    await_orders(&support, 1..=30, "support").await;
    await_complete(&us, &the_sale, Duration::from_secs(180)).await;

    // Every sink restarts; a second batch reaches both workspaces, nothing is posted twice.
    let mut sinks = vec![sales_sink, support_sink, eu_sink, us_sink];
    for s in &mut sinks {
        s.stop();
    }
    drop(sinks);
    let sinks = vec![
        ready(start(
            "slack run",
            &tomls[0],
            "sales-2",
            ports[0],
            dir.path(),
        ))
        .await,
        ready(start(
            "slack run",
            &tomls[1],
            "support-2",
            ports[1],
            dir.path(),
        ))
        .await,
    ];
    send_alerts(
        &producer,
        &alerts_topic,
        (31..=50).map(|n| order_alert(n, AlertKind::OrderPaid, "120.00")),
    )
    .await;
    await_orders(&sales, 1..=50, "sales after the restart").await;
    await_orders(&support, 1..=50, "support after the restart").await;
    for (name, slack) in [("sales", &sales), ("support", &support)] {
        let twice: Vec<(i64, usize)> = posted_orders(slack)
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect();
        assert!(
            twice.is_empty(),
            "{name}: orders posted more than once: {twice:?}"
        );
    }
    // Each sink's offsets are in its own group.
    let b = bootstrap.clone();
    let groups = tokio::task::spawn_blocking(move || {
        [
            "woostream-slack-sales",
            "woostream-slack-support",
            "woostream-crm-eu-hubspot",
            "woostream-crm-us-hubspot",
            "woostream-slack",
            "woostream-crm",
        ]
        .map(|g| {
            (
                g,
                committed(
                    &b,
                    g,
                    if g.contains("slack") {
                        "woostream.alerts"
                    } else {
                        "woo.orders"
                    },
                    3,
                )
                .values()
                .sum::<i64>(),
            )
        })
    })
    .await
    .unwrap();
    for (group, offsets) in groups {
        if group == "woostream-slack" || group == "woostream-crm" {
            assert_eq!(
                offsets, 0,
                "{group}: a named sink committed to the shared group"
            );
        } else {
            assert!(offsets > 0, "{group}: no offsets of its own");
        }
    }
    drop(sinks);
}
