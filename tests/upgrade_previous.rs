//! A rolling upgrade from the previous release, on Tansu, in both framings (single-object and a
//! schema registry): the previous release's binary is built from git; a sale runs through its
//! producer, enricher and Slack sink, then the producer is rolled (a new writer before an old
//! reader, sealing as before: `privacy.bind_sealed_values = false`), then the enricher, then
//! the Slack sink, then the producer again with the shipped sealing. Every order is in the
//! profiles, which equal a run of this build alone over the same input; no record was skipped
//! or held; every alert the Slack rules route was posted exactly once across the roll.
//! (Its own test binary: building the previous release briefly puts its binary in `target/`.)

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use woostream::simulate;
use woostream_core::contract::codec::Decoder;
use woostream_tests::enricher::*;
use woostream_tests::registry::start_registry;
use woostream_tests::slack::{ChannelState, FakeSlack};
use woostream_tests::{post_all, Tansu, SECRET, SOURCE};

/// The commit before the work that this test came with: the release it upgrades from.
const PREVIOUS_RELEASE: &str = "c2c765bee97e14c6ef9019633ddf25dfb08b12db";

/// The producer's configuration; `privacy`: a `[privacy]` section (this build's only).
fn producer_toml(
    bootstrap: &str,
    registry: Option<&str>,
    ports: (u16, u16),
    spool: &Path,
    privacy: &str,
) -> String {
    let registry = registry.map_or(String::new(), |url| {
        format!("[schema_registry]\nurl = \"{url}\"\n")
    });
    format!(
        "{privacy}[kafka]\nbootstrap_servers = \"{bootstrap}\"\n{registry}[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n[producer]\nlisten = \"127.0.0.1:{}\"\nspool_dir = \"{}\"\n[ops]\nlisten = \"127.0.0.1:{}\"\n[log]\nformat = \"json\"\n",
        ports.0,
        spool.display(),
        ports.1
    )
}

/// The kinds the Slack sink posts in this test, each to a channel of its own (the local Slack
/// takes one message per second per channel, as Slack does).
const POSTED: [(&str, &str); 4] = [
    ("customer_question", "C0QUESTION"),
    ("order_refunded", "C0REFUNDS0"),
    ("payment_failed", "C0PAYMENTS"),
    ("out_of_stock", "C0STOCK000"),
];

/// A Slack sink of either build on the upgraded run's alerts (no settings the previous release
/// lacks).
fn slack_toml(
    bootstrap: &str,
    alerts: &str,
    registry: Option<&str>,
    api: &str,
    port: u16,
) -> String {
    let registry = registry.map_or(String::new(), |url| {
        format!("[schema_registry]\nurl = \"{url}\"\n")
    });
    let mut slack = format!(
        "[topics.alerts]\nname = \"{alerts}\"\n{registry}[slack]\napi_url = \"{api}\"\ntoken = \"{SLACK_TOKEN}\"\nper_channel_per_second = 20.0\nper_channel_burst = 20\n"
    );
    for (kind, id) in POSTED {
        slack.push_str(&format!(
            "[[slack.channels]]\nname = \"#{kind}\"\nid = \"{id}\"\n[[slack.rules]]\nname = \"{kind}\"\nkinds = [\"{kind}\"]\nchannels = [\"#{kind}\"]\n"
        ));
    }
    woostream_tests::sink_toml(bootstrap, port, &slack)
}

const SLACK_TOKEN: &str = "xoxb-upgrade";

fn shop_topics_now(bootstrap: &str) -> HashMap<(String, i32), i64> {
    log_ends(
        bootstrap,
        &["woo.orders", "woo.customers", "woo.products", "woo.reviews"],
    )
}

async fn caught_up(
    bootstrap: &str,
    group: &'static str,
    produced: HashMap<(String, i32), i64>,
    mut p: EnricherProcess,
) -> EnricherProcess {
    let b = bootstrap.to_string();
    tokio::task::spawn_blocking(move || {
        await_caught_up(&b, group, &produced, Duration::from_secs(300), || {
            p.exited().is_none()
        });
        p
    })
    .await
    .unwrap()
}

/// A sale through the previous release, rolled to this build and checked against this build
/// alone; returns the number of order deliveries.
async fn roll(previous: &Path, registry: bool) -> usize {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let registry = if registry {
        Some(start_registry().await)
    } else {
        None
    };
    let registry_url = registry.as_ref().map(|(url, _)| url.clone());
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let sale = simulate::plan(
        &simulate::Options {
            orders: 400,
            customers: 150,
            history_customers: 100,
            seed: 27,
            ..simulate::Options::default()
        },
        chrono::Utc::now(),
    );
    let (first, rest) = sale.split_at(sale.len() / 2);
    let (second, third) = rest.split_at(rest.len() / 2);
    let mut upgraded = run_config(&bootstrap, "upgraded", "enricher-upgraded");
    let mut reference = run_config(&bootstrap, "reference", "enricher-reference");
    for c in [&mut upgraded, &mut reference] {
        c.schema_registry =
            registry_url
                .clone()
                .map(|url| woostream_core::config::SchemaRegistryConfig {
                    url,
                    username: None,
                    password: None,
                    auto_register: true,
                });
    }

    // The previous release: its producer creates the topics, its enricher follows.
    let ports = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{}/webhooks/woocommerce", ports.0);
    let toml = producer_toml(&bootstrap, registry_url.as_deref(), ports, &spool, "");
    let mut old_producer = spawn_binary(previous, "producer", &toml, "old", ports.1, dir.path());
    old_producer.ready(Duration::from_secs(120)).await;
    for c in [&upgraded, &reference] {
        woostream_core::kafka::ensure_topics(&c.kafka, &bootstrap, &c.topics, &c.retention)
            .await
            .unwrap();
    }
    let mut old_enricher =
        EnricherProcess::start_binary(previous, &upgraded, "upgraded", dir.path());
    old_enricher.ready(Duration::from_secs(120)).await;
    let channels: Vec<(&str, ChannelState)> = POSTED
        .iter()
        .map(|(_, id)| (*id, ChannelState::Open))
        .collect();
    let slack = FakeSlack::start(SLACK_TOKEN, &channels).await;
    let alerts_topic = upgraded.topics.alerts.name.clone();
    let sink_toml = |port| {
        slack_toml(
            &bootstrap,
            &alerts_topic,
            registry_url.as_deref(),
            &slack.api_url(),
            port,
        )
    };
    let port = free_port();
    let toml = sink_toml(port);
    let mut old_sink = spawn_binary(previous, "slack run", &toml, "old-slack", port, dir.path());
    old_sink.ready(Duration::from_secs(120)).await;
    post_all(&url, first).await;
    let old_enricher = caught_up(
        &bootstrap,
        "enricher-upgraded",
        shop_topics_now(&bootstrap),
        old_enricher,
    )
    .await;

    // Rolled: the producer first (this build writes, the previous release's enricher reads),
    // sealing as the previous release did until every reader runs this build, as the upgrade
    // notes say.
    old_producer.stop();
    let ports = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{}/webhooks/woocommerce", ports.0);
    let as_before = "[privacy]\nbind_sealed_values = false\n";
    let toml = producer_toml(
        &bootstrap,
        registry_url.as_deref(),
        ports,
        &spool,
        as_before,
    );
    let mut producer = spawn("producer", &toml, "new", ports.1, dir.path());
    producer.ready(Duration::from_secs(120)).await;
    post_all(&url, &second[..second.len() / 2]).await;

    // Then the enricher, mid-stream; then the producer once more with the shipped sealing
    // (values bound to their field, 128-bit key ids), read beside what came before.
    let mut old_enricher = old_enricher;
    old_enricher.stop();
    let enricher = EnricherProcess::start(&upgraded, "upgraded", dir.path());
    post_all(&url, &second[second.len() / 2..]).await;
    // Then the Slack sink, mid-stream too.
    old_sink.stop();
    let port = free_port();
    let toml = sink_toml(port);
    let mut sink = spawn("slack run", &toml, "new-slack", port, dir.path());
    sink.ready(Duration::from_secs(120)).await;
    producer.stop();
    let ports = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{}/webhooks/woocommerce", ports.0);
    let toml = producer_toml(&bootstrap, registry_url.as_deref(), ports, &spool, "");
    let mut producer = spawn("producer", &toml, "bound", ports.1, dir.path());
    producer.ready(Duration::from_secs(120)).await;
    post_all(&url, third).await;
    let produced = shop_topics_now(&bootstrap);
    let enricher = caught_up(&bootstrap, "enricher-upgraded", produced.clone(), enricher).await;
    assert_eq!(
        enricher.metric("woostream_partitions_held"),
        0.0,
        "a record was held"
    );
    assert_eq!(
        enricher.metric("woostream_enricher_unreadable_records_total"),
        0.0,
        "a record was skipped"
    );

    // This build alone over the same input.
    let alone = caught_up(
        &bootstrap,
        "enricher-reference",
        produced,
        EnricherProcess::start(&reference, "reference", dir.path()),
    )
    .await;
    let decoder = Decoder::new();
    if let Some((_, state)) = &registry {
        state.lock().unwrap().teach(&decoder);
    }
    let (expected, _, _) = read_view_with(&reference, &decoder);
    let (view, _, _) = read_view_with(&upgraded, &decoder);
    let orders = sale
        .iter()
        .filter(|w| w.topic.starts_with("order."))
        .count();
    assert!(
        expected.profiles.len() > 100,
        "{} profiles for {orders} order deliveries",
        expected.profiles.len()
    );
    let framing = if registry.is_some() {
        "registry"
    } else {
        "single-object"
    };
    assert_same_outcome(
        &format!("rolled from the previous release ({framing})"),
        &expected,
        &view,
    );
    // Every alert the rules route was posted exactly once across the sink's roll.
    let ends = log_ends(&bootstrap, &[alerts_topic.as_str()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let done = committed(&bootstrap, "woostream-slack", &alerts_topic, 6);
        if ends
            .iter()
            .all(|((_, p), end)| done.get(p).copied().unwrap_or(0) >= *end)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Slack sink did not deliver: {done:?} of {ends:?}\n{}",
            sink.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let routed: Vec<&str> = POSTED.iter().map(|(k, _)| *k).collect();
    let expected_posts: HashMap<String, usize> = view
        .alerts
        .iter()
        .filter(|a| routed.contains(&a.kind.as_str()))
        .fold(HashMap::new(), |mut m, a| {
            *m.entry(a.kind.as_str().to_string()).or_default() += 1;
            m
        });
    let mut posts: HashMap<String, usize> = HashMap::new();
    for p in slack.posted() {
        let kind = POSTED.iter().find(|(_, id)| *id == p.channel).unwrap().0;
        *posts.entry(kind.to_string()).or_default() += 1;
    }
    // The previous release's sink read a registry's schema ids only when it had registered
    // them itself (fixed in this release): what it could not read it kept as dead letters.
    let mut kept: HashMap<String, usize> = HashMap::new();
    for m in woostream_tests::read_topic_now(&upgraded, "upgrade-dlq", "woostream.dlq.slack").await
    {
        let Some(v) = rdkafka::Message::payload(&m) else {
            continue;
        };
        let kind = decoder
            .decode::<woostream_core::contract::enriched::Alert>(v)
            .map(|a| a.kind.as_str().to_string())
            .unwrap_or_default();
        if routed.contains(&kind.as_str()) {
            *kept.entry(kind).or_default() += 1;
        }
    }
    if registry.is_none() {
        assert!(kept.is_empty(), "dead letters without a registry: {kept:?}");
    }
    for (kind, n) in &kept {
        *posts.entry(kind.clone()).or_default() += n;
    }
    let mut every_kind: std::collections::BTreeMap<&str, usize> = Default::default();
    for a in &view.alerts {
        *every_kind.entry(a.kind.as_str()).or_default() += 1;
    }
    assert!(
        expected_posts.values().sum::<usize>() > 10,
        "alerts to post: {expected_posts:?} of {every_kind:?}"
    );
    assert_eq!(
        posts,
        expected_posts,
        "each routed alert posted once (or, by the previous release, kept) across the roll ({framing}; kept {kept:?}): {}",
        sink.log_text()
    );
    println!(
        "Slack ({framing}): {} routed alerts, {} kept as dead letters by the previous release's sink, the rest posted once",
        expected_posts.values().sum::<usize>(),
        kept.values().sum::<usize>()
    );
    drop(sink);

    // Keys of both kinds were made (the previous release's and the rolled producer's with its
    // sealing, then bound ones) and the profiles above were built from values of both.
    let keys =
        woostream_tests::read_topic_now(&upgraded, "upgrade-keys", "woostream.subject-keys").await;
    let id_lengths: std::collections::BTreeSet<usize> = keys
        .iter()
        .filter_map(|m| rdkafka::Message::key(m).map(<[u8]>::len))
        .collect();
    assert_eq!(
        id_lengths,
        [16, 32].into(),
        "key ids of the earlier sealing and of the bound one"
    );
    println!(
        "upgrade from {} ({framing}): {orders} order deliveries over both builds, {} profiles equal to this build's alone",
        &PREVIOUS_RELEASE[..8],
        view.profiles.len()
    );
    drop((enricher, alone, producer));
    orders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_from_the_previous_release_loses_nothing_in_either_framing() {
    let previous = tokio::task::spawn_blocking(|| previous_release_binary(PREVIOUS_RELEASE))
        .await
        .unwrap();
    roll(&previous, false).await;
    roll(&previous, true).await;
}
