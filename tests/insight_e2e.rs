//! Customer intelligence on a real broker (Tansu), as shipped: a shop's history and a flash
//! sale go through the enricher with its default settings; `woostream fit` publishes a model
//! with the shop's repurchase intervals, which the running enricher applies at once;
//! `woostream backtest` checks it against what followed its cut-off; and the insight role's
//! page, opened in headless Chromium, draws the numbers the topics hold.

use std::time::{Duration, Instant};

use woostream_core::contract::enriched::{AlertKind, Backtest};
use woostream_tests::enricher::{
    await_caught_up, free_port, log_ends, produce_all, read_view, sale_records, spawn,
    woostream_cli,
};
use woostream_tests::Tansu;

fn toml(bootstrap: &str, port: u16) -> String {
    toml_with_page(bootstrap, port, free_port())
}

fn toml_with_page(bootstrap: &str, port: u16, page: u16) -> String {
    format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
[ops]
listen = "127.0.0.1:{port}"
[insight]
listen = "127.0.0.1:{page}"
[log]
format = "json"
level = "info"
"#
    )
}

/// GET `url` (the ops port speaks plain HTTP/1.1).
async fn get(url: &str) -> Option<String> {
    reqwest::get(url).await.ok()?.text().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intelligence_end_to_end_and_the_insight_page_in_a_real_browser() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let dir = tempfile::tempdir().unwrap();
    let config = woostream_tests::config(&bootstrap);
    woostream_core::kafka::ensure_topics(
        &config.kafka,
        &bootstrap,
        &config.topics,
        &config.retention,
    )
    .await
    .unwrap();
    // Two years of a shop drawn from CDNOW's purchase process (about 600 customers), then a
    // sale of 600 orders with products, stock changes and checkout notes.
    let records = sale_records(600, 1_800, 29);
    produce_all(&bootstrap, &records).await;

    // The enricher as shipped.
    let port = free_port();
    let mut enricher = spawn(
        "enricher",
        &toml(&bootstrap, port),
        "intel",
        port,
        dir.path(),
    );
    let inputs = log_ends(
        &bootstrap,
        &["woo.orders", "woo.customers", "woo.products", "woo.reviews"],
    );
    {
        let bootstrap = bootstrap.clone();
        let group = config.enricher.group_id.clone();
        tokio::task::spawn_blocking(move || {
            await_caught_up(
                &bootstrap,
                &group,
                &inputs,
                Duration::from_secs(300),
                || true,
            )
        })
        .await
        .unwrap();
    }
    assert!(enricher.exited().is_none(), "{}", enricher.log_text());

    // A fit as of the stream's now, with the shop's repurchase intervals.
    let config_path = dir.path().join("cli.toml");
    std::fs::write(&config_path, toml(&bootstrap, free_port())).unwrap();
    let (ok, out) = woostream_cli(&["fit"], &config_path, Duration::from_secs(120));
    assert!(ok, "{out}");
    println!("{out}");
    let (view, _, _) = tokio::task::spawn_blocking({
        let c = config.clone();
        move || read_view(&c)
    })
    .await
    .unwrap();
    let customers = view
        .profiles
        .values()
        .filter(|p| p.orders_count > 0)
        .count();
    // The new model reaches every customer at once (at the configured rate), without a new
    // order: the rescore counter says how many were looked at.
    let deadline = Instant::now() + Duration::from_secs(120);
    while enricher.metric("woostream_enricher_model_rescored_total") < customers as f64 {
        assert!(
            Instant::now() < deadline && enricher.exited().is_none(),
            "the new model was not applied: {} of {customers} rescored\n{}",
            enricher.metric("woostream_enricher_model_rescored_total"),
            enricher.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (view, _, _) = tokio::task::spawn_blocking({
        let c = config.clone();
        move || read_view(&c)
    })
    .await
    .unwrap();
    let profiles: Vec<_> = view
        .profiles
        .values()
        .filter(|p| p.orders_count > 0)
        .collect();

    // Profiles with taste, named from the product catalogue.
    let named = profiles
        .iter()
        .filter(|p| {
            p.top_categories.first().is_some_and(|c| c.name.is_some())
                && p.top_products.first().is_some_and(|c| c.name.is_some())
        })
        .count();
    assert!(
        named * 10 >= profiles.len() * 9,
        "{named} of {} named",
        profiles.len()
    );
    assert!(profiles
        .iter()
        .all(|p| p.top_products.len() <= 5 && p.last_products.len() <= 5));
    assert!(profiles
        .iter()
        .all(|p| (0.0..=1.0).contains(&p.discount_share)));
    let repeat = profiles.iter().filter(|p| p.transactions > 1).count();
    let with_rhythm = profiles
        .iter()
        .filter(|p| p.typical_interval_days.is_some_and(|d| d >= 1.0))
        .count();
    assert_eq!(with_rhythm, repeat, "every repeat customer has a rhythm");
    assert!(profiles
        .iter()
        .any(|p| p.expected_next_purchase_at.is_some()));
    assert!(profiles
        .iter()
        .all(|p| p.preferred_payment_method.is_some()));
    // The fitted model with its repurchase intervals is applied: profiles carry its version
    // and the products due again.
    let model_version = profiles.iter().map(|p| p.model_version).max().unwrap();
    assert!(model_version > 0, "a fitted model scored the profiles");
    assert!(profiles.iter().any(|p| !p.replenishment.is_empty()));

    // The new alerts, each with what a message needs.
    let of = |k: AlertKind| view.alerts.iter().filter(move |a| a.kind == k);
    let due: Vec<_> = of(AlertKind::ReplenishmentDue).collect();
    assert!(
        !due.is_empty(),
        "replenishment_due after the model learned intervals"
    );
    for a in &due {
        let r = a.replenishment.as_ref().unwrap();
        assert!(r.due_at >= r.last_bought_at && r.interval_days > 0.0);
        assert!(r.due_at <= a.occurred_at, "due when announced");
    }
    // Once per cycle: never two alerts for one customer, product and purchase.
    let mut cycles = std::collections::HashSet::new();
    for a in &due {
        let r = a.replenishment.as_ref().unwrap();
        let c = a.customer.as_ref().unwrap();
        assert!(
            cycles.insert((c.customer.clone(), r.product_id, r.last_bought_at)),
            "announced twice: {:?}",
            r
        );
    }
    let churn: Vec<_> = of(AlertKind::ChurnRiskChanged).collect();
    assert!(!churn.is_empty());
    assert!(churn.iter().all(|a| {
        let c = a.customer.as_ref().unwrap();
        c.previous_churn_risk
            .as_deref()
            .is_some_and(|p| p != c.churn_risk)
    }));
    let questions: Vec<_> = of(AlertKind::CustomerQuestion).collect();
    assert!(!questions.is_empty());
    assert!(questions
        .iter()
        .all(|a| a.question.as_ref().is_some_and(|q| !q.note.is_empty()) && a.order.is_some()));

    // A backtest half a year back, published for the page.
    let newest = profiles.iter().map(|p| p.as_of).max().unwrap();
    let cut = (newest - chrono::Duration::days(183))
        .format("%Y-%m-%d")
        .to_string();
    let (ok, out) = woostream_cli(
        &["backtest", "--as-of", &cut, "--horizon", "182"],
        &config_path,
        Duration::from_secs(120),
    );
    assert!(ok, "{out}");
    println!("{out}");
    assert!(out.contains("by repeat purchases at the cut-off"));
    let backtests =
        woostream_tests::read_topic_now(&config, "test-backtests", "woostream.backtests").await;
    assert_eq!(backtests.len(), 1);
    let report: Backtest = woostream_core::contract::codec::Decoder::new()
        .decode(rdkafka::Message::payload(&backtests[0]).unwrap())
        .unwrap();
    assert_eq!(report.deciles.len(), 10);
    assert!(report.actual_purchases > 0.0 && report.predicted_purchases > 0.0);

    // The insight role: its page once it has read the topics.
    // The page on its own port, apart from the ops port.
    let (port, page) = (free_port(), free_port());
    let mut insight = spawn(
        "insight",
        &toml_with_page(&bootstrap, port, page),
        "page",
        port,
        dir.path(),
    );
    insight.ready(Duration::from_secs(60)).await;
    assert_eq!(
        reqwest::get(format!("http://127.0.0.1:{port}/insight"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        404,
        "not on the ops port"
    );
    let data = format!("http://127.0.0.1:{page}/insight/data.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let summary: Option<serde_json::Value> =
            get(&data).await.and_then(|t| serde_json::from_str(&t).ok());
        let caught_up = summary.as_ref().is_some_and(|s| {
            s["customers"].as_u64() == Some(customers as u64)
                && !s["backtests"].as_array().unwrap().is_empty()
                && !s["models"].as_array().unwrap().is_empty()
        });
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not catch up: {summary:?}\n{}",
            insight.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The insight role reads no consumer group but says whether it reaches Kafka.
    let deadline = Instant::now() + Duration::from_secs(30);
    while insight.metric_with("woostream_kafka_reachable", &[("role", "insight")]) != 1.0 {
        assert!(Instant::now() < deadline, "{}", insight.metrics_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let screenshot = dir.path().join("insight.png");
    let out = std::process::Command::new(woostream_tests::python())
        .arg(woostream_tests::repo_root().join("tests/independent/insight_browser.py"))
        .arg(format!("http://127.0.0.1:{page}/insight"))
        .arg(&bootstrap)
        .arg(&config.topics.profiles.name)
        .arg(woostream_tests::repo_root().join("schemas"))
        .arg(&screenshot)
        .current_dir(woostream_tests::repo_root().join("tests/independent"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if let Ok(keep) = std::env::var("WOOSTREAM_INSIGHT_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).unwrap();
    }
    assert_eq!(seen["title"], "woostream · insight");
    assert_eq!(
        seen["console_errors"],
        serde_json::json!([]),
        "the page logs no error"
    );
    let figures = seen["figures"].as_object().unwrap();
    for id in [
        "segments",
        "segments-over-time",
        "clv",
        "p-alive",
        "categories",
        "flow",
    ] {
        let f = &figures[id];
        assert_eq!(f["svg"], 1, "{id}: one chart");
        assert!(f["drawn"].as_u64().unwrap() > 5, "{id}: drawn: {f}");
        assert!(f["width"].as_f64().unwrap() > 100.0, "{id}: laid out");
    }
    assert!(
        figures.keys().any(|k| k.starts_with("backtest-")),
        "the backtest's chart"
    );
    // The numbers drawn are the numbers in the topic, read independently.
    let topic = seen["topic_segments"].as_object().unwrap();
    let drawn = figures["segments"]["values"].as_array().unwrap();
    for s in drawn {
        let name = s["segment"].as_str().unwrap();
        assert_eq!(s["customers"], topic[name], "{name}: page against topic");
    }
    let labels: Vec<u64> = seen["segment_labels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str()?.parse().ok())
        .collect();
    for s in drawn {
        let n = s["customers"].as_u64().unwrap();
        if n > 0 {
            assert!(labels.contains(&n), "{n} written on its bar: {labels:?}");
        }
    }
    let total: u64 = topic.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, customers as u64);
    insight.stop();
    enricher.stop();
}
