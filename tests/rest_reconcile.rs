//! Reconciliation on a real broker (Tansu) against the simulated shop's REST API: a live sale
//! in which one webhook delivery in ten is lost ends, after one reconciliation pass, with the
//! same customers, orders, statuses and revenue as the sale with none lost; reviews, which have
//! no webhook, are polled and become review alerts; a webhook WooCommerce disabled is
//! re-enabled.

use std::time::{Duration, Instant};

use serde_json::json;
use woostream::shop::{objects_of, Behaviour, ShopServer};
use woostream::simulate;
use woostream_core::contract::enriched::AlertKind;
use woostream_core::contract::events::Origin;
use woostream_tests::enricher::{customer_facts, enrich_everything, free_port, spawn};
use woostream_tests::slack::{ChannelState, FakeSlack};
use woostream_tests::{fixture, sink_toml, Post, Producer, Tansu, SECRET, SOURCE};

const KEY: &str = "ck_reconcile_0123456789abcdef0123456789abcdef";
const SECRET_KEY: &str = "cs_reconcile_0123456789abcdef0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_that_lost_a_tenth_of_its_webhooks_is_whole_after_reconciliation_and_reviews_arrive()
{
    let options = simulate::Options {
        orders: 1_500,
        customers: 600,
        seed: 23,
        ..simulate::Options::default()
    };
    let plan = simulate::plan(&options, chrono::Utc::now() - chrono::Duration::seconds(60));
    let dir = tempfile::tempdir().unwrap();

    // The same sale twice: every delivery, and every delivery but one in ten.
    let complete = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let lossy = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let mut lost = 0;
    for (broker, drop_every) in [(&complete, None), (&lossy, Some(10))] {
        let mut config = woostream_tests::config(&broker.bootstrap);
        config.kafka.linger_ms = 0;
        let producer = Producer::start(&config, true).await.unwrap();
        for (i, w) in plan.iter().enumerate() {
            if drop_every.is_some_and(|n| i % n == n - 1) {
                lost += 1;
                continue;
            }
            let (status, answer) = Post::signed(&w.topic, &w.body).send(&producer.url).await;
            assert_eq!(status, 200, "{answer}");
        }
        producer.stop().await.unwrap();
    }
    // Which orders' final state arrived by webhook: reconciling them again is a repeat.
    let mut last_delivery: std::collections::HashMap<i64, usize> = Default::default();
    for (i, w) in plan.iter().enumerate() {
        if w.topic.starts_with("order.") {
            let id = serde_json::from_slice::<serde_json::Value>(&w.body).unwrap()["id"]
                .as_i64()
                .unwrap();
            last_delivery.insert(id, i);
        }
    }
    let final_lost = last_delivery.values().filter(|i| *i % 10 == 9).count();
    println!(
        "{} deliveries, {lost} lost; {} orders, {final_lost} of them with their final state lost, so {} of the orders a pass sends again are repeats",
        plan.len(),
        last_delivery.len(),
        last_delivery.len() - final_lost
    );

    // The shop as it is after the sale, with a new one-star review and a webhook WooCommerce
    // disabled after failed deliveries.
    let mut objects = objects_of(&plan);
    let mut review: serde_json::Value =
        serde_json::from_slice(&fixture("woo_review_example.json")).unwrap();
    review["id"] = json!(9001);
    review["product_id"] = json!(1000);
    review["rating"] = json!(1);
    review["review"] = json!("Arrived broken.");
    review["date_created_gmt"] = json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string());
    objects
        .entry("products/reviews".into())
        .or_default()
        .insert(9001, review);
    objects.entry("webhooks".into()).or_default().insert(
        1,
        json!({"id": 1, "name": "Order updated", "status": "disabled", "topic": "order.updated",
               "resource": "order", "event": "updated",
               "delivery_url": "https://woostream.example/webhooks/woocommerce"}),
    );
    // Another receiver's webhooks, disabled by WooCommerce too, more than a page of them:
    // theirs to look after, never re-enabled by woostream; ours is found past the first page.
    for id in 1001..=1120 {
        objects.entry("webhooks".into()).or_default().insert(
            id,
            json!({"id": id, "name": "ERP", "status": "disabled", "topic": "order.updated",
                   "resource": "order", "event": "updated",
                   "delivery_url": format!("https://erp.example/hooks/{id}")}),
        );
    }
    let shop = ShopServer::start(objects, KEY, SECRET_KEY, Behaviour::default())
        .await
        .unwrap();

    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{}\"\n[[shops]]\nid = \"eu\"\nsource = \"{SOURCE}\"\nsecret = \"{SECRET}\"\n[shops.rest]\nurl = \"{}\"\nconsumer_key = \"{KEY}\"\nconsumer_secret = \"{SECRET_KEY}\"\nrequests_per_second = 50\ndelivery_url = \"https://woostream.example/webhooks/woocommerce\"\n[topics.alerts]\nname = \"woostream.alerts.reconciled\"\n[ops]\nlisten = \"127.0.0.1:{}\"\n",
        lossy.bootstrap,
        shop.url,
        free_port()
    );
    let mut pass = spawn("rest --once", &toml, "once", free_port(), dir.path());
    let status = pass.finished(Duration::from_secs(300)).await;
    let log = pass.log_text();
    assert!(status.success(), "{log}");
    for line in log.lines().filter(|l| l.contains("Reconciled.")) {
        println!("{line}");
    }
    assert_eq!(
        shop.get("webhooks", 1).unwrap()["status"],
        "active",
        "re-enabled"
    );
    assert!(log.contains("re-enabled it"), "{log}");
    assert_eq!(log.matches("re-enabled it").count(), 1, "{log}");
    for id in 1001..=1120 {
        assert_eq!(
            shop.get("webhooks", id).unwrap()["status"],
            "disabled",
            "another receiver's webhook {id} left alone"
        );
    }

    // The webhooks woostream needs, made through the REST API; a second sync changes nothing.
    // Webhook 1, made before topic secrets, is given its topic's secret once.
    for (run, expected, webhook_1) in [
        (
            "first",
            "create  order.created",
            "update  order.updated (webhook 1: secret)",
        ),
        (
            "second",
            "ok      order.created",
            "ok      order.updated (webhook 1)",
        ),
    ] {
        let mut sync = spawn("webhooks sync", &toml, run, free_port(), dir.path());
        let status = sync.finished(Duration::from_secs(60)).await;
        let out = sync.log_text();
        assert!(
            status.success() && out.contains(expected),
            "{run} sync: {out}"
        );
        assert!(out.contains(webhook_1), "{out}");
        println!("{run} sync:\n{out}");
    }
    let topic_secret = woostream_woo::signature::topic_secret;
    assert_eq!(
        shop.get("webhooks", 1).unwrap()["secret"],
        topic_secret(SECRET, "order.updated")
    );
    assert_eq!(
        shop.count("webhooks"),
        120 + woostream_producer::rest::reconcile::WEBHOOK_TOPICS.len(),
        "one per topic, besides the other receiver's"
    );
    let created = shop.get("webhooks", 1121).unwrap();
    assert_eq!(
        created["delivery_url"],
        "https://woostream.example/webhooks/woocommerce"
    );
    assert_eq!(
        created["secret"],
        topic_secret(SECRET, "order.created"),
        "signed with its topic's secret"
    );

    let reference = enrich_everything(&complete.bootstrap, dir.path(), "complete").await;
    let reconciled = enrich_everything(&lossy.bootstrap, dir.path(), "reconciled").await;
    let (a, b) = (
        customer_facts(&reference, false),
        customer_facts(&reconciled, false),
    );
    assert!(a.len() > 300, "{} customers", a.len());
    assert_eq!(a.len(), b.len(), "customers with a profile");
    let differing: Vec<_> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .take(3)
        .map(|(k, v)| format!("{k}:\n  complete   {v}\n  reconciled {:?}", b.get(k)))
        .collect();
    assert!(differing.is_empty(), "{}", differing.join("\n"));

    // The review, polled, became its alerts, marked as polled.
    let reviews: Vec<_> = reconciled
        .alerts
        .iter()
        .filter(|a| matches!(a.kind, AlertKind::ReviewPosted | AlertKind::NegativeReview))
        .collect();
    assert_eq!(
        reviews.len(),
        2,
        "review_posted and negative_review: {reviews:?}"
    );
    assert!(reviews.iter().all(|a| a.origin == Origin::Poll));
    // The reviewer's words are sealed in Kafka under their key (the Slack sink opens them).
    assert!(
        reviews
            .iter()
            .all(|a| woostream_core::privacy::seal::is_sealed(&a.review.as_ref().unwrap().text)),
        "{reviews:?}"
    );
    // The disabled webhook, alerted once.
    let disabled: Vec<_> = reconciled
        .alerts
        .iter()
        .filter(|a| a.kind == AlertKind::WebhookDisabled)
        .collect();
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    assert_eq!(disabled[0].origin, Origin::Reconcile);

    // And reach the team: the Slack sink routes them like any other alert.
    let slack = FakeSlack::start(
        "xoxb-reviews",
        &[
            ("C0REVIEWS0", ChannelState::Open),
            ("C0OPS00000", ChannelState::Open),
        ],
    )
    .await;
    let port = free_port();
    let sections = format!(
        "[topics.alerts]\nname = \"woostream.alerts.reconciled\"\n[slack]\ntoken = \"xoxb-reviews\"\napi_url = \"{}\"\n[[slack.channels]]\nname = \"#reviews\"\nid = \"C0REVIEWS0\"\n[[slack.channels]]\nname = \"#ops\"\nid = \"C0OPS00000\"\n[[slack.rules]]\nname = \"bad reviews\"\nkinds = [\"negative_review\"]\nchannels = [\"#reviews\"]\n[[slack.rules]]\nname = \"lost deliveries\"\nkinds = [\"webhook_disabled\"]\nchannels = [\"#ops\"]\n",
        slack.api_url()
    );
    let mut sink = spawn(
        "slack run",
        &sink_toml(&lossy.bootstrap, port, &sections),
        "reviews",
        port,
        dir.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while slack.posted().len() < 2 {
        assert!(sink.exited().is_none(), "{}", sink.log_text());
        assert!(
            Instant::now() < deadline,
            "no review in Slack: {}",
            sink.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let posted = slack.posted();
    println!(
        "in Slack: {:?}",
        posted
            .iter()
            .map(|p| (p.channel.clone(), p.all_text()))
            .collect::<Vec<_>>()
    );
    assert_eq!(posted.len(), 2, "the negative review and the webhook");
    assert!(posted
        .iter()
        .any(|p| p.channel == "C0REVIEWS0" && p.all_text().contains("Arrived broken.")));
    assert!(posted
        .iter()
        .any(|p| p.channel == "C0OPS00000" && p.all_text().contains("Webhook re-enabled")));
    assert_eq!(sink.stop().code(), Some(0), "{}", sink.log_text());
}
