//! One webhook followed by its correlation id through everything it touches: the producer
//! keeps the id WooCommerce's caller sent, and it is on the order record, on every alert and
//! profile the enricher derives from it, on the Slack message's audit record (whose message
//! timestamp is a message the local Slack received) and on the CRM's audit record of the deal
//! (which the local HubSpot holds). Every role runs in this process on librdkafka's mock
//! cluster, with the configuration a team would write.

use std::time::{Duration, Instant};

use rdkafka::message::{Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;
use woostream_core::config::Config;
use woostream_core::contract::codec::Decoder;
use woostream_core::contract::enriched::{Alert, CustomerProfile};
use woostream_core::contract::sink_records::{Delivery, DeliveryOutcome};
use woostream_core::headers;
use woostream_core::ops::Readiness;
use woostream_tests::hubspot::FakeHubSpot;
use woostream_tests::slack::{ChannelState, FakeSlack};
use woostream_tests::{fixture, header_of, read_topic_now, Producer, SECRET, SOURCE};
use woostream_woo::signature::sign;

const TRACE: &str = "trace-order-727";
const SLACK_TOKEN: &str = "xoxb-test-token";
const CRM_TOKEN: &str = "pat-eu1-00000000-test";

fn configuration(bootstrap: &str, slack: &FakeSlack, crm: &FakeHubSpot) -> Config {
    let text = format!(
        r##"[kafka]
bootstrap_servers = "{bootstrap}"
[topics]
create = false
[[shops]]
id = "eu"
source = "{SOURCE}"
secret = "{SECRET}"
[producer]
listen = "127.0.0.1:0"
[ops]
listen = "127.0.0.1:0"
[enricher]
commit_interval_ms = 100
refit_interval_secs = 0
[slack]
api_url = "{slack_api}"
token = "{SLACK_TOKEN}"
[[slack.channels]]
name = "#orders"
id = "C0ORDERS00"
[[slack.rules]]
name = "paid orders"
kinds = ["order_paid"]
channels = ["#orders"]
[crm]
enabled = true
api_url = "{crm_api}"
token = "{CRM_TOKEN}"
max_delay_ms = 200
"##,
        slack_api = slack.api_url(),
        crm_api = crm.url,
    );
    Config::from_text("correlation.toml", &text, Vec::<(String, String)>::new())
        .expect("a valid configuration")
}

/// Waits until `found` returns something from `topic`'s records.
async fn await_in<T>(
    config: &Config,
    topic: &str,
    mut found: impl FnMut(&[OwnedMessage]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = read_topic_now(config, "test-correlation", topic).await;
        if let Some(t) = found(&records) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "nothing with correlation id {TRACE} in {topic} ({} records)",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn traced(m: &OwnedMessage) -> bool {
    header_of(m, headers::CORRELATION_ID).as_deref() == Some(TRACE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_webhooks_correlation_id_reaches_every_topic_slack_and_the_crm() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let slack = FakeSlack::start(SLACK_TOKEN, &[("C0ORDERS00", ChannelState::Open)]).await;
    let crm = FakeHubSpot::start(CRM_TOKEN, 190).await;
    let config = configuration(&bootstrap, &slack, &crm);
    for (_, t) in config.topics.all() {
        cluster
            .create_topic(&t.name, config.topics.partitions_of(t), 1)
            .unwrap();
    }
    let shutdown = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let producer = Producer::start(&config, false).await.expect("producer");
    let enricher = woostream_enricher::runner::start(&woostream_tests::role_context(
        &config,
        &bootstrap,
        &prometheus::Registry::new(),
        &Readiness::default(),
        shutdown.clone(),
        false,
    ))
    .await
    .expect("enricher");
    let slack_sink = woostream_sink::slack::runner::start(&woostream_tests::role_context(
        &config,
        &bootstrap,
        &registry,
        &Default::default(),
        shutdown.clone(),
        false,
    ))
    .await
    .expect("Slack sink");
    let crm_sink = woostream_sink::crm::runner::start(&woostream_tests::role_context(
        &config,
        &bootstrap,
        &registry,
        &Default::default(),
        shutdown.clone(),
        false,
    ))
    .await
    .expect("CRM sink");

    // WooCommerce's delivery of order 727, sent with the caller's correlation id.
    let body = fixture("woo_order_example.webhook_body.json");
    let answer = reqwest::Client::new()
        .post(&producer.url)
        .header("content-type", "application/json")
        .header("x-wc-webhook-topic", "order.created")
        .header("x-wc-webhook-source", SOURCE)
        .header("x-wc-webhook-signature", sign(&body, SECRET))
        .header("x-correlation-id", TRACE)
        .body(body)
        .send()
        .await
        .expect("the producer answers");
    assert!(answer.status().is_success(), "{}", answer.status());
    assert_eq!(
        answer.headers()["x-correlation-id"],
        TRACE,
        "the answer carries the id"
    );

    let decoder = Decoder::new();
    let t = &config.topics;
    let order = await_in(&config, &t.orders.name, |rs| {
        rs.iter().find(|m| traced(m)).cloned()
    })
    .await;
    let event: woostream_core::contract::events::OrderEvent =
        decoder.decode(order.payload().unwrap()).unwrap();
    assert_eq!(
        (event.order_id, event.envelope.correlation_id.as_str()),
        (727, TRACE)
    );

    let alerts: Vec<Alert> = await_in(&config, &t.alerts.name, |rs| {
        let traced: Vec<Alert> = rs
            .iter()
            .filter(|m| traced(m))
            .map(|m| decoder.decode(m.payload().unwrap()).unwrap())
            .collect();
        traced
            .iter()
            .any(|a: &Alert| a.kind.as_str() == "order_paid")
            .then_some(traced)
    })
    .await;
    assert!(alerts.iter().all(|a| a.correlation_id == TRACE));

    let profile: CustomerProfile = await_in(&config, &t.profiles.name, |rs| {
        rs.iter()
            .find(|m| traced(m))
            .map(|m| decoder.decode(m.payload().unwrap()).unwrap())
    })
    .await;
    assert_eq!(profile.correlation_id, TRACE);

    // The audit: the Slack message and the CRM's deal, each with the id.
    let deliveries: Vec<Delivery> = await_in(&config, &t.deliveries.name, |rs| {
        let traced: Vec<Delivery> = rs
            .iter()
            .map(|m| decoder.decode::<Delivery>(m.payload().unwrap()).unwrap())
            .filter(|d| d.correlation_id == TRACE)
            .collect();
        let slack = traced.iter().any(|d| d.sink == "slack");
        let crm = traced
            .iter()
            .any(|d| d.sink == "crm" && d.destination.contains("deal"));
        (slack && crm).then_some(traced)
    })
    .await;
    let posted = deliveries
        .iter()
        .find(|d| d.sink == "slack")
        .expect("checked above");
    assert_eq!(posted.outcome, DeliveryOutcome::Posted);
    assert_eq!(posted.order_id, Some(727));
    let ts = posted
        .message_ts
        .clone()
        .expect("a posted message has a ts");
    let message = slack
        .posted()
        .into_iter()
        .find(|p| p.ts == ts)
        .expect("the audited message is one Slack received");
    assert!(message.all_text().contains("727"), "{}", message.all_text());
    let deal = deliveries
        .iter()
        .find(|d| d.sink == "crm" && d.destination.contains("deal"))
        .expect("checked above");
    assert_eq!(deal.order_id, Some(727));
    assert!(
        crm.requests().iter().any(|r| r.endpoint.contains("deals")),
        "the local HubSpot received the deal"
    );

    shutdown.cancel();
    enricher.wait().await.expect("enricher stops");
    slack_sink.task.await.unwrap().expect("Slack sink stops");
    crm_sink.task.await.unwrap().expect("CRM sink stops");
    producer.stop().await.expect("producer stops");
}
