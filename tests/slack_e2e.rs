//! The Slack sink end to end on a real Kafka-protocol broker (Tansu) against a local Slack
//! that enforces Slack's limits: a 2,000-order burst to one channel, urgent alerts in the
//! middle of it, alerts re-emitted as a restarted enricher would, a refusing (archived)
//! channel, and the sink killed with SIGKILL mid-burst and started again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use woostream_core::config::Config;
use woostream_core::contract::codec::{Decoder, Encoder, Framing};
use woostream_core::contract::enriched::{Alert, AlertKey, AlertKind};
use woostream_core::contract::sink_records::{Delivery, DeliveryOutcome};
use woostream_sink::slack::examples::order_alert;
use woostream_tests::enricher::{free_port, spawn, EnricherProcess};
use woostream_tests::slack::{ChannelState, FakeSlack, Posted};
use woostream_tests::Tansu;

const TOKEN: &str = "xoxb-test-token";
const ORDERS: i64 = 2_000;

fn sink_config(bootstrap: &str, slack: &FakeSlack, port: u16) -> String {
    let slack = format!(
        r##"[slack]
api_url = "{api}"
token = "{TOKEN}"
digest_after_secs = 5
per_channel_per_second = 1.0
per_channel_burst = 2
[[slack.channels]]
name = "#orders"
id = "C0ORDERS00"
[[slack.channels]]
name = "#old-orders"
id = "C0ARCHIVED"
[[slack.rules]]
name = "failed payments"
kinds = ["payment_failed"]
channels = ["#orders"]
priority = "urgent"
emoji = ":rotating_light:"
[[slack.rules]]
name = "paid orders"
kinds = ["order_paid"]
channels = ["#orders"]
[[slack.rules]]
name = "big orders to an archived channel"
kinds = ["order_paid"]
min_total = "1000"
channels = ["#old-orders"]"##,
        api = slack.api_url(),
    );
    woostream_tests::sink_toml(bootstrap, port, &slack)
}

/// Order numbers (`#1234`) in a message.
fn order_numbers(p: &Posted) -> Vec<i64> {
    let text = p.all_text();
    let mut out = Vec::new();
    for (i, _) in text.match_indices('#') {
        let digits: String = text[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse() {
            out.push(n);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn is_digest(p: &Posted) -> bool {
    p.all_text().contains("order events in the last")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_slack_within_its_limits_once_even_across_a_crash() {
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
    let slack = FakeSlack::start(
        TOKEN,
        &[
            ("C0ORDERS00", ChannelState::Open),
            ("C0ARCHIVED", ChannelState::Archived),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();

    // The alerts: 2,000 paid orders, every 40th above 1,000 PLN; failed payments in the
    // middle of the burst; and 100 alerts emitted a second time, as an enricher replaying
    // after a crash re-emits them with the same ids.
    let mut alerts: Vec<Alert> = Vec::new();
    for n in 1..=ORDERS {
        let total = if n % 40 == 0 { "1500.00" } else { "120.00" };
        alerts.push(order_alert(n, AlertKind::OrderPaid, total));
        if n % 200 == 100 && n > 1_000 {
            alerts.push(order_alert(90_000 + n, AlertKind::PaymentFailed, "80.00"));
        }
        if n % 20 == 0 && n > 500 && n <= 1_500 && n % 40 != 0 {
            alerts.push(order_alert(n - 10, AlertKind::OrderPaid, "120.00"));
        }
    }
    let urgent: HashSet<i64> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::PaymentFailed)
        .map(|a| a.order.as_ref().unwrap().order_id)
        .collect();
    let big: usize = (1..=ORDERS).filter(|n| n % 40 == 0).count();

    let port = free_port();
    let toml = sink_config(&bootstrap, &slack, port);
    let first = spawn("slack run", &toml, "first", port, dir.path());

    // The burst: 2,000 orders (and the rest) in 60 s, 33 a second against Slack's one.
    let producer: FutureProducer =
        woostream_core::kafka::producer_config(&config.kafka, &bootstrap)
            .create()
            .unwrap();
    let started = Instant::now();
    let mut urgent_sent: HashMap<i64, Instant> = HashMap::new();
    let mut killed = None;
    let mut first = Some(first);
    let mut second: Option<EnricherProcess> = None;
    for (i, a) in alerts.iter().enumerate() {
        send_alert(&producer, &config, a).await;
        if a.kind == AlertKind::PaymentFailed {
            urgent_sent.insert(a.order.as_ref().unwrap().order_id, Instant::now());
        }
        if i % 100 == 99 {
            let due = started + Duration::from_millis(i as u64 * 60_000 / alerts.len() as u64);
            tokio::time::sleep_until(due.into()).await;
        }
        // Mid-burst, once the sink is busy posting: kill -9 and start it again.
        if killed.is_none() && i > alerts.len() / 3 && slack.posted().len() >= 6 {
            let mut p = first.take().unwrap();
            p.kill9();
            killed = Some(slack.posted().len());
            second = Some(spawn("slack run", &toml, "second", port, dir.path()));
        }
    }
    let killed = killed.expect("the sink was killed mid-burst");
    let second = second.unwrap();

    // Wait until every alert has its outcome in the audit topic.
    let deadline = Instant::now() + Duration::from_secs(240);
    let expected_outcomes = ORDERS as usize + urgent.len() + big;
    let mut deliveries: HashMap<String, Delivery> = HashMap::new();
    while deliveries.len() < expected_outcomes {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected_outcomes} deliveries recorded",
            deliveries.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        deliveries = read_deliveries(&config, &bootstrap).await;
    }
    let posted: Vec<Posted> = slack
        .posted()
        .into_iter()
        .filter(|p| p.channel == "C0ORDERS00")
        .collect();

    // Every order in exactly one message (the residual window — a message Slack accepted
    // whose audit record the killed process had not yet written — is measured, and may hold
    // at most the one message in flight when it died).
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for p in &posted {
        for n in order_numbers(p) {
            *seen.entry(n).or_default() += 1;
        }
    }
    let missing: Vec<i64> = (1..=ORDERS).filter(|n| !seen.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "orders never posted: {:?}",
        &missing[..missing.len().min(20)]
    );
    for n in &urgent {
        assert_eq!(seen.get(n), Some(&1), "failed payment #{n} posted once");
    }
    let twice: Vec<i64> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    let twice_messages = posted
        .iter()
        .filter(|p| order_numbers(p).iter().any(|n| twice.contains(n)))
        .count();
    eprintln!(
        "{} messages to #orders ({} digests) for {} orders; killed after {killed} messages; posted twice: {} orders in {} messages; 429s: {}",
        posted.len(),
        posted.iter().filter(|p| is_digest(p)).count(),
        ORDERS,
        twice.len(),
        twice_messages,
        slack.rate_limited()
    );
    // The residual window: only what one message, in flight when the process died, carried
    // may be posted again (the repeat can be split over more messages).
    if let Some(first) = posted
        .iter()
        .find(|p| order_numbers(p).iter().any(|n| twice.contains(n)))
    {
        let in_flight = order_numbers(first);
        assert!(
            twice.iter().all(|n| in_flight.contains(n)),
            "orders posted twice beyond the one message in flight at the kill: {twice:?}"
        );
    }

    // Within Slack's limits: the burst was folded into digests, the channel's rate held (the
    // only 429s allowed are right after the restart, when the new process does not know how
    // much of the channel's burst the old one had spent), and no message broke Block Kit.
    assert!(posted.iter().filter(|p| is_digest(p)).count() >= 3);
    assert!(
        posted.len() < 200,
        "{} messages for 2,000 orders: the burst was not folded",
        posted.len()
    );
    assert!(
        slack.rate_limited() <= 3,
        "{} answers were 429",
        slack.rate_limited()
    );
    let refused: Vec<_> = slack
        .rejected()
        .into_iter()
        .filter(|(c, _)| c != "C0ARCHIVED")
        .collect();
    assert!(refused.is_empty(), "Slack refused messages: {refused:?}");

    // Urgent alerts jump the queue and are never folded: between a failed payment reaching
    // Kafka and its message, the channel posted at most the message already in flight (two
    // around the restart, when the new process may post before it has read that far).
    let mut waits = Vec::new();
    for p in posted
        .iter()
        .filter(|p| p.all_text().contains("Payment failed"))
    {
        assert!(!is_digest(p));
        let n = order_numbers(p)[0];
        let sent = urgent_sent[&n];
        let before = posted.iter().filter(|q| q.at > sent && q.at < p.at).count();
        waits.push(before);
        assert!(
            before <= 2,
            "failed payment #{n} waited behind {before} messages"
        );
    }
    assert_eq!(waits.len(), urgent.len());
    eprintln!("messages posted before each failed payment after it reached Kafka: {waits:?}");

    // The archived channel refused every big order; each is in the dead-letter topic with the
    // reason, and did not hold up #orders.
    let dead: Vec<&Delivery> = deliveries
        .values()
        .filter(|d| d.outcome == DeliveryOutcome::DeadLettered)
        .collect();
    assert_eq!(dead.len(), big);
    assert!(dead
        .iter()
        .all(|d| d.destination == "#old-orders" && d.reason.as_deref() == Some("is_archived")));
    let dlq = read_dead_letters(&config, &bootstrap).await;
    assert_eq!(
        dlq.len(),
        big,
        "every refused alert is kept in the dead-letter topic"
    );
    assert!(dlq
        .iter()
        .all(|(reason, a)| reason == "is_archived" && a.kind == AlertKind::OrderPaid));
    drop(second);
}

async fn read_deliveries(config: &Config, bootstrap: &str) -> HashMap<String, Delivery> {
    let mut config = config.clone();
    config.kafka.bootstrap_servers = Some(bootstrap.to_string());
    let decoder = Decoder::new();
    woostream_tests::read_topic_now(&config, "test-deliveries", &config.topics.deliveries.name)
        .await
        .iter()
        .filter_map(|m| {
            let d: Delivery = decoder.decode(m.payload()?).unwrap();
            Some((d.delivery_id.clone(), d))
        })
        .collect()
}

async fn read_dead_letters(config: &Config, bootstrap: &str) -> Vec<(String, Alert)> {
    let mut config = config.clone();
    config.kafka.bootstrap_servers = Some(bootstrap.to_string());
    let decoder = Decoder::new();
    woostream_tests::read_topic_now(&config, "test-dlq", &config.topics.slack_dead_letter.name)
        .await
        .iter()
        .map(|m| {
            let reason = woostream_tests::header_of(m, woostream_core::headers::DEAD_LETTER_REASON)
                .unwrap_or_default();
            (
                reason,
                decoder.decode::<Alert>(m.payload().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// Writes one alert to the alerts topic, keyed as the enricher keys it.
async fn send_alert(producer: &FutureProducer, config: &Config, a: &Alert) {
    let key = Encoder::<AlertKey>::new(&Framing::SingleObject)
        .encode(&AlertKey {
            shop_id: a.shop_id.clone(),
            subject: format!("customer:{}", a.customer.as_ref().unwrap().customer),
        })
        .unwrap();
    let value = Encoder::<Alert>::new(&Framing::SingleObject)
        .encode(a)
        .unwrap();
    producer
        .send(
            FutureRecord::to(&config.topics.alerts.name)
                .key(&key)
                .payload(&value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Writes alerts to the alerts topic, as the enricher does.
async fn produce_alerts(config: &Config, bootstrap: &str, alerts: &[Alert]) {
    let producer: FutureProducer = woostream_core::kafka::producer_config(&config.kafka, bootstrap)
        .create()
        .unwrap();
    for a in alerts {
        send_alert(&producer, config, a).await;
    }
}

fn thread_config(bootstrap: &str, slack: &FakeSlack) -> Config {
    let text = format!(
        r##"[kafka]
bootstrap_servers = "{bootstrap}"
[topics]
partitions = 2
[[shops]]
id = "eu"
source = "https://shop.example/"
secret = "s"
[slack]
api_url = "{api}"
token = "{TOKEN}"
[[slack.channels]]
name = "#orders"
id = "C0ORDERS00"
[[slack.channels]]
name = "#hook"
webhook_url = "{hook}"
[[slack.channels]]
name = "#gone"
webhook_url = "{gone}"
[[slack.rules]]
name = "order life"
kinds = ["order_placed", "order_paid", "order_status_changed", "order_refunded"]
channels = ["#orders"]
[[slack.rules]]
name = "paid, by webhook"
kinds = ["order_paid"]
channels = ["#hook", "#gone"]
"##,
        api = slack.api_url(),
        hook = slack.webhook_url("T1-B1-hook"),
        gone = slack.webhook_url("T1-B1-revoked"),
    );
    let c = Config::from_text("slack.toml", &text, Vec::<(String, String)>::new()).unwrap();
    woostream_sink::slack::rules::Rules::compile(&c.slack).unwrap();
    c
}

/// Waits until `slack` holds `n` accepted messages.
async fn await_posted(slack: &FakeSlack, n: usize) -> Vec<Posted> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let posted = slack.posted();
        if posted.len() >= n {
            return posted;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} messages posted: {posted:?}",
            posted.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_of_an_order_are_thread_replies_under_its_first_message_across_restarts() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let slack = FakeSlack::start(
        TOKEN,
        &[
            ("C0ORDERS00", ChannelState::Open),
            ("T1-B1-hook", ChannelState::Open),
        ],
    )
    .await;
    let config = thread_config(&bootstrap, &slack);
    woostream_core::kafka::ensure_topics(
        &config.kafka,
        &bootstrap,
        &config.topics,
        &config.retention,
    )
    .await
    .unwrap();
    let start = |shutdown: tokio_util::sync::CancellationToken, registry: prometheus::Registry| {
        let config = config.clone();
        let bootstrap = bootstrap.clone();
        async move {
            woostream_sink::slack::runner::start(&woostream_tests::role_context(
                &config,
                &bootstrap,
                &registry,
                &Default::default(),
                shutdown,
                false,
            ))
            .await
            .unwrap()
        }
    };

    let placed = order_alert(501, AlertKind::OrderPlaced, "99.00");
    let paid = order_alert(501, AlertKind::OrderPaid, "99.00");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let sink = start(shutdown.clone(), prometheus::Registry::new()).await;
    produce_alerts(&config, &bootstrap, &[placed.clone(), paid.clone()]).await;
    // #orders: the placed order, then its payment as a reply; #hook: the payment.
    let posted = await_posted(&slack, 3).await;
    let root = posted
        .iter()
        .find(|p| p.channel == "C0ORDERS00")
        .unwrap()
        .clone();
    assert_eq!(root.thread_ts, None);
    assert!(root.all_text().contains("New order #501"));
    let reply = posted
        .iter()
        .filter(|p| p.channel == "C0ORDERS00")
        .nth(1)
        .unwrap();
    assert_eq!(reply.thread_ts.as_deref(), Some(root.ts.as_str()));
    assert!(reply.all_text().contains("Order paid #501"));
    assert!(posted
        .iter()
        .any(|p| p.channel == "T1-B1-hook" && p.all_text().contains("Order paid #501")));
    // A graceful stop, then a start: the thread is remembered in Kafka, and the alerts
    // already delivered, sent again by a replaying enricher, are not posted again.
    shutdown.cancel();
    sink.task.await.unwrap().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let registry = prometheus::Registry::new();
    let sink = start(shutdown.clone(), registry.clone()).await;
    let mut shipped = order_alert(501, AlertKind::OrderStatusChanged, "99.00");
    shipped.order.as_mut().unwrap().status = "completed".into();
    shipped.order.as_mut().unwrap().previous_status = Some("processing".into());
    produce_alerts(&config, &bootstrap, &[placed, paid, shipped]).await;
    let posted = await_posted(&slack, 4).await;
    let last = posted.last().unwrap();
    assert!(
        last.all_text().contains("processing* → *completed"),
        "{}",
        last.all_text()
    );
    assert_eq!(last.thread_ts.as_deref(), Some(root.ts.as_str()));
    // One customer, one partition: the repeats came before the update that was just posted.
    assert_eq!(
        slack.posted().len(),
        4,
        "nothing posted twice: {:?}",
        slack.posted()
    );
    let duplicates: f64 = registry
        .gather()
        .iter()
        .filter(|f| f.name() == "woostream_slack_alerts_total")
        .flat_map(|f| f.get_metric().to_vec())
        .filter(|m| m.get_label().iter().any(|l| l.value() == "duplicate"))
        .map(|m| m.get_counter().get_value())
        .sum();
    assert_eq!(
        duplicates, 4.0,
        "placed and paid to #orders, paid to #hook and #gone"
    );
    // The revoked webhook answered 404 no_service: dead-lettered, never retried.
    let dlq = read_dead_letters(&config, &bootstrap).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].0, "no_service");
    shutdown.cancel();
    sink.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_faster_than_slack_waits_out_429s_and_retries_through_an_outage() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let slack = FakeSlack::start(TOKEN, &[("C0ORDERS00", ChannelState::Open)]).await;
    let mut config = thread_config(&bootstrap, &slack);
    // Configured above what Slack allows (one a second, bursts of three), and never folding.
    config.slack.per_channel_per_second = 20.0;
    config.slack.per_channel_burst = 10;
    config.slack.digest_after_secs = 1_000;
    config.slack.rules.truncate(1);
    config.slack.channels.truncate(1);
    woostream_core::kafka::ensure_topics(
        &config.kafka,
        &bootstrap,
        &config.topics,
        &config.retention,
    )
    .await
    .unwrap();
    // Slack is down (HTTP 503) when the first alerts arrive.
    slack.set_down(true);
    let registry = prometheus::Registry::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let sink = woostream_sink::slack::runner::start(&woostream_tests::role_context(
        &config,
        &bootstrap,
        &registry,
        &Default::default(),
        shutdown.clone(),
        false,
    ))
    .await
    .unwrap();
    let alerts: Vec<Alert> = (1..=8)
        .map(|n| order_alert(700 + n, AlertKind::OrderPaid, "50.00"))
        .collect();
    produce_alerts(&config, &bootstrap, &alerts).await;
    let metric = |name: &str| -> f64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().to_vec())
            .map(|m| m.get_counter().get_value())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric("woostream_slack_retries_total") < 1.0 {
        assert!(Instant::now() < deadline, "no retry while Slack was down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    slack.set_down(false);
    let posted = await_posted(&slack, 8).await;
    let mut numbers: Vec<i64> = posted.iter().flat_map(order_numbers).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (701..=708).collect::<Vec<_>>(), "each order once");
    assert!(
        slack.rate_limited() >= 1,
        "the sink outran Slack's limit at least once"
    );
    assert_eq!(
        metric("woostream_slack_rate_limited_total"),
        slack.rate_limited() as f64
    );
    shutdown.cancel();
    sink.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_token_slack_refuses_stops_the_start_with_what_to_fix() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let slack = FakeSlack::start(TOKEN, &[("C0ORDERS00", ChannelState::Open)]).await;
    let mut config = thread_config(&bootstrap, &slack);
    config.slack.token = Some("xoxb-revoked".into());
    let err = woostream_sink::slack::runner::start(&woostream_tests::role_context(
        &config,
        &bootstrap,
        &prometheus::Registry::new(),
        &Default::default(),
        tokio_util::sync::CancellationToken::new(),
        false,
    ))
    .await
    .err()
    .expect("a refused token stops the start");
    let message = format!("{err:#}");
    assert!(
        message.contains("invalid_auth") && message.contains("slack.token"),
        "{message}"
    );
    assert!(slack.posted().is_empty());
}
