//! What a new user runs, as shipped: the enricher with a configuration that names only the
//! broker and a shop, on a real Kafka-protocol broker without transactions (Tansu). The
//! default `transactions = "auto"` must find out that the broker never ends a transaction and
//! run on; killed and started again, it must restore and keep up, not hang on a transaction the
//! broker will never end.

use std::time::{Duration, Instant};

use woostream_core::kafka;
use woostream_tests::enricher::*;
use woostream_tests::Tansu;

fn await_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enricher_as_shipped_runs_and_restarts_on_a_broker_without_transactions() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let defaults = woostream_tests::config(&bootstrap);
    kafka::ensure_topics(
        &defaults.kafka,
        &bootstrap,
        &defaults.topics,
        &defaults.retention,
    )
    .await
    .unwrap();
    let mut produced = produce_all(&bootstrap, &sale_records(300, 150, 5)).await;
    let group = defaults.enricher.group_id.clone();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Nothing but the broker, a shop and a free port for /readyz.
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\n\n[[shops]]\nid = \"eu\"\nsource = \"{}\"\nsecret = \"{}\"\n\n[ops]\nlisten = \"127.0.0.1:{port}\"\n",
        woostream_tests::SOURCE,
        woostream_tests::SECRET,
    );

    let second = tokio::task::spawn_blocking({
        let (bootstrap, group, produced, toml) = (
            bootstrap.clone(),
            group.clone(),
            produced.clone(),
            toml.clone(),
        );
        let dir = dir.path().to_path_buf();
        move || {
            let mut first = spawn("enricher", &toml, "shipped-1", port, &dir);
            await_caught_up(
                &bootstrap,
                &group,
                &produced,
                Duration::from_secs(180),
                || first.exited().is_none(),
            );
            assert!(
                first.metric("woostream_enricher_commits_total") >= 1.0,
                "the enricher committed"
            );
            assert!(
                first.log_text().contains("does not end transactions"),
                "auto found that the broker has no transactions: {}",
                first.log_text()
            );
            // Stopped as Kubernetes stops a pod; its probe left a transaction open that the
            // broker will never end, which must not hold up the next start's restore.
            let status = first.stop();
            assert!(status.success(), "the enricher stops cleanly: {status}");

            // Probed from its first moment: never ready before its partitions are assigned
            // and their state restored.
            let mut second = spawn("enricher", &toml, "shipped-2", port, &dir);
            await_until(
                "the restarted enricher is ready",
                Duration::from_secs(120),
                || {
                    assert!(
                        second.exited().is_none(),
                        "the restarted enricher exited: {}",
                        second.log_text()
                    );
                    let ready = second.is_ready();
                    assert!(
                        !ready
                            || second
                                .log_text()
                                .contains("Partitions assigned and their state restored"),
                        "ready before its partitions were restored: {}",
                        second.log_text()
                    );
                    ready
                },
            );
            second
        }
    })
    .await
    .unwrap();
    for (k, n) in produce_all(&bootstrap, &sale_records(120, 0, 6)).await {
        *produced.entry(k).or_default() += n;
    }
    tokio::task::spawn_blocking(move || {
        let mut second = second;
        await_caught_up(
            &bootstrap,
            &group,
            &produced,
            Duration::from_secs(180),
            || second.exited().is_none(),
        );
        assert!(
            second.metric("woostream_enricher_records_total") > 0.0,
            "the restarted enricher processes what arrives after its restore"
        );
        assert!(
            second.log_text().contains("restored"),
            "it restored its partitions: {}",
            second.log_text()
        );
    })
    .await
    .unwrap();
    drop(dir);
}
