//! The enricher's exactly-once effect on a real Kafka-protocol broker without transactions
//! (Tansu): a `woostream enricher` process killed with SIGKILL mid-stream and restarted, and one
//! of two enrichers sharing six partitions killed mid-stream, must each end with exactly the
//! profiles and alerts of an uninterrupted run, once a consumer drops what it already applied
//! (profile versions, alert ids). The input is a simulated sale with a year of history, with
//! WooCommerce's duplicate and late deliveries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use woostream_core::kafka;
use woostream_tests::enricher::*;
use woostream_tests::Tansu;

fn total(produced: &HashMap<(String, i32), i64>) -> f64 {
    produced.values().sum::<i64>() as f64
}

/// Every input partition of the orders, products and reviews topics (6 each).
fn holds_all(p: &EnricherProcess) -> bool {
    p.metric("woostream_enricher_assigned_partitions") >= 18.0
}

/// Waits for `p` to hold every partition once the dead member's session (6 s) expires.
fn take_over(bootstrap: &str, config: &woostream_core::config::Config, p: &EnricherProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !holds_all(p) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !holds_all(p) {
        eprintln!("Tansu kept the killed member in the group; nudging it into a new generation");
        let t = &config.topics;
        let topics = [&t.orders, &t.customers, &t.products, &t.reviews];
        nudge_group(
            bootstrap,
            &config.enricher.group_id,
            &topics.map(|t| t.name.as_str()),
        );
    }
}

/// Waits until `condition` holds, failing after `timeout` with `what`.
fn await_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_enrichers_leave_the_same_profiles_and_alerts_as_an_uninterrupted_run() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let reference = run_config(&bootstrap, "reference", "enricher-reference");
    let restarted = run_config(&bootstrap, "restarted", "enricher-restarted");
    let mut pair = run_config(&bootstrap, "pair", "enricher-pair");
    let scaled = run_config(&bootstrap, "scaled", "enricher-scaled");
    // The pair keeps up with the input as it arrives; a long commit interval, and no commit
    // in the input's short pauses, make sure the one killed has written outputs for records it
    // has not committed yet.
    pair.enricher.commit_interval_ms = 10_000;
    pair.enricher.idle_commit_ms = 10_000;
    for c in [&reference, &restarted, &pair, &scaled] {
        kafka::ensure_topics(&c.kafka, &bootstrap, &c.topics, &c.retention)
            .await
            .unwrap();
    }
    let records = sale_records(4_000, 3_000, 11);
    let dir = tempfile::tempdir().unwrap();

    // Two enrichers share the group before any input exists, so that one can die mid-stream.
    let (a, b) = {
        let (pair, path) = (pair.clone(), dir.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            let a = EnricherProcess::start(&pair, "pair-a", &path);
            let b = EnricherProcess::start(&pair, "pair-b", &path);
            await_until(
                "both enrichers of the pair hold partitions",
                Duration::from_secs(60),
                || {
                    a.metric("woostream_enricher_assigned_partitions") > 0.0
                        && b.metric("woostream_enricher_assigned_partitions") > 0.0
                },
            );
            (a, b)
        })
        .await
        .unwrap()
    };
    let produced = produce_all(&bootstrap, &records).await;
    let orders: i64 = produced
        .iter()
        .filter(|((t, _), _)| t == "woo.orders")
        .map(|(_, n)| n)
        .sum();
    assert!(
        orders > 10_000,
        "a sale big enough to interrupt: {orders} order records"
    );

    tokio::task::spawn_blocking(move || {
        let (mut a, mut b) = (a, b);
        let dir = dir.path();
        // The pair: kill one while both are working; the survivor takes over its partitions.
        await_until("the pair is mid-stream", Duration::from_secs(120), || {
            a.metric("woostream_enricher_alerts_total") >= 1_000.0 && b.metric("woostream_enricher_records_total") > 0.0
        });
        let done_by_a = a.metric("woostream_enricher_records_total");
        a.kill9();
        assert!(done_by_a < total(&produced), "the pair finished before one could be killed");
        // The survivor takes over once the dead member's session expires (6 s).
        take_over(&bootstrap, &pair, &b);
        await_caught_up(&bootstrap, "enricher-pair", &produced, Duration::from_secs(300), || b.exited().is_none());
        assert!(holds_all(&b), "the survivor holds every partition");
        assert!(b.log_text().contains("restored"), "the survivor restored the partitions it took over");
        drop(b);

        // The reference: one enricher, never interrupted.
        let mut r = EnricherProcess::start(&reference, "reference", dir);
        await_caught_up(&bootstrap, "enricher-reference", &produced, Duration::from_secs(300), || r.exited().is_none());
        drop(r);

        // One enricher, SIGKILLed a third of the way through and started again.
        let mut first = EnricherProcess::start(&restarted, "restarted", dir);
        await_until("a third of the input is processed", Duration::from_secs(120), || {
            first.metric("woostream_enricher_records_total") >= total(&produced) / 3.0
        });
        first.kill9();
        let mut second = EnricherProcess::start(&restarted, "restarted", dir);
        take_over(&bootstrap, &restarted, &second);
        await_caught_up(&bootstrap, "enricher-restarted", &produced, Duration::from_secs(300), || second.exited().is_none());
        drop(second);

        // Scaled out 1 → 3 mid-stream, then in 3 → 2 by a kill: each assigned partition's state
        // is kept where the partition stayed and restored where it moved.
        let assigned = |ps: &[&EnricherProcess], state: &str| -> f64 {
            ps.iter().map(|p| p.metric_with("woostream_enricher_partitions_assigned_total", &[("state", state)])).sum()
        };
        let processed = |ps: &[&EnricherProcess]| -> f64 { ps.iter().map(|p| p.metric("woostream_enricher_records_total")).sum() };
        let holding = |p: &EnricherProcess| p.metric("woostream_enricher_assigned_partitions") > 0.0;
        let s1 = EnricherProcess::start(&scaled, "scaled-1", dir);
        await_until("a quarter of the input is processed", Duration::from_secs(120), || processed(&[&s1]) >= total(&produced) / 4.0);
        let before_out = (assigned(&[&s1], "restored"), assigned(&[&s1], "kept"));
        let s2 = EnricherProcess::start(&scaled, "scaled-2", dir);
        let mut s3 = EnricherProcess::start(&scaled, "scaled-3", dir);
        await_until("three enrichers share the partitions", Duration::from_secs(120), || holding(&s1) && holding(&s2) && holding(&s3));
        let out = (
            assigned(&[&s1, &s2, &s3], "restored") - before_out.0,
            assigned(&[&s1, &s2, &s3], "kept") - before_out.1,
        );
        await_until("half of the input is processed", Duration::from_secs(120), || processed(&[&s1, &s2, &s3]) >= total(&produced) / 2.0);
        let before_in = (assigned(&[&s1, &s2], "restored"), assigned(&[&s1, &s2], "kept"));
        s3.kill9();
        let survivors_hold_all = |a: &EnricherProcess, b: &EnricherProcess| {
            a.metric("woostream_enricher_assigned_partitions") + b.metric("woostream_enricher_assigned_partitions") >= 18.0
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !survivors_hold_all(&s1, &s2) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !survivors_hold_all(&s1, &s2) {
            eprintln!("Tansu kept the killed member in the group; nudging it into a new generation");
            let t = &scaled.topics;
            nudge_group(&bootstrap, "enricher-scaled", &[&t.orders, &t.customers, &t.products, &t.reviews].map(|t| t.name.as_str()));
        }
        let (mut s1, mut s2) = (s1, s2);
        await_caught_up(&bootstrap, "enricher-scaled", &produced, Duration::from_secs(300), || s1.exited().is_none() && s2.exited().is_none());
        let inward = (
            assigned(&[&s1, &s2], "restored") - before_in.0,
            assigned(&[&s1, &s2], "kept") - before_in.1,
        );
        assert!(out.0 > 0.0 && out.1 > 0.0, "scaling out moved some partitions and kept the others: {out:?}");
        assert_eq!(
            s1.metric("woostream_enricher_partitions_restoring") + s2.metric("woostream_enricher_partitions_restoring"),
            0.0,
            "a partition still waits for its restore"
        );
        println!(
            "enricher scaling on Tansu: 1 → 3: {} partitions restored, {} kept; 3 → 2 (one killed): {} restored, {} kept",
            out.0, out.1, inward.0, inward.1
        );
        drop((s1, s2));

        let (expected, ref_profiles, ref_alerts) = read_view(&reference);
        assert_eq!((expected.repeated_profiles, expected.repeated_alerts), (0, 0), "an uninterrupted run repeats nothing");
        assert!(expected.profiles.len() > 1_000 && expected.alerts.len() > 10_000, "{} profiles, {} alerts", expected.profiles.len(), expected.alerts.len());
        assert!(ref_profiles > expected.profiles.len() && ref_alerts == expected.alerts.len());
        let kinds = expected.alert_kinds();
        for kind in ["order_placed", "order_paid", "order_status_changed", "payment_failed", "order_refunded", "first_order", "segment_changed"] {
            assert!(kinds.keys().any(|k| k.as_str() == kind), "no {kind} alert in {kinds:?}");
        }

        for (name, config) in [("restarted", &restarted), ("pair", &pair), ("scaled", &scaled)] {
            let (view, raw_profiles, raw_alerts) = read_view(config);
            for (key, p) in &expected.profiles {
                if view.profiles.get(key) != Some(p) {
                    for (n, c) in [("reference", &reference), (name, config)] {
                        for line in profile_history(c, &key.1) {
                            eprintln!("DEBUG {n} {line}");
                        }
                    }
                    break;
                }
            }
            assert_same_outcome(name, &expected, &view);
            // The interruption did replay work: repeats were written and dropped by version and
            // id. (Scaling commits at each rebalance: it may leave nothing to replay.)
            assert!(
                name == "scaled" || view.repeated_profiles + view.repeated_alerts > 0,
                "{name}: no record was repeated ({raw_profiles} profile and {raw_alerts} alert records), so the kill did not interrupt anything"
            );
        }
    })
    .await
    .unwrap();
}
