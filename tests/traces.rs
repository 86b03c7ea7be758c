//! Following one event: every role's handling of a record is a span carrying the record's
//! correlation id, so its log lines name it; with `[traces] endpoint`, the spans of every hop
//! (webhook, enricher, Slack sink, CRM sink) reach an OTLP/HTTP collector as one trace whose id
//! is derived from the correlation id. On Tansu; the collector is a small receiver here that
//! keeps what it is sent (OTLP/HTTP with JSON bodies, as the OpenTelemetry Collector takes it).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};
use woostream_core::kafka;
use woostream_tests::enricher::*;
use woostream_tests::roles::{every_role_carries_a_webhook_to_slack_and_the_crm, CORRELATION_ID};
use woostream_tests::Tansu;

/// An OTLP/HTTP trace receiver: keeps each request body posted to /v1/traces.
async fn collector() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                let json: serde_json::Value =
                    serde_json::from_slice(&body).expect("an OTLP/JSON body");
                keep.lock().unwrap().push(json);
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Every span received: (service name, trace id, parent span id, its attributes).
fn spans(received: &[serde_json::Value]) -> Vec<(String, String, String, serde_json::Value)> {
    let mut out = Vec::new();
    for request in received {
        for resource in request["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_string();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    out.push((
                        service.clone(),
                        span["traceId"].as_str().unwrap_or_default().to_string(),
                        span["parentSpanId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        span["attributes"].clone(),
                    ));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hop_of_a_traced_event_reaches_the_collector_as_one_trace() {
    let (endpoint, received) = collector().await;
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    every_role_carries_a_webhook_to_slack_and_the_crm(&format!(
        "[kafka]\nbootstrap_servers = \"{}\"\n\n[traces]\nendpoint = \"{endpoint}\"",
        tansu.bootstrap
    ))
    .await;
    // Each role has stopped, sending its last spans on the way out.
    let digest = Sha256::digest(CORRELATION_ID.as_bytes());
    let trace_id = hex::encode(&digest[..16]);
    let root = hex::encode(&digest[16..24]);
    let all = spans(&received.lock().unwrap());
    let of_the_event: Vec<_> = all.iter().filter(|s| s.1 == trace_id).collect();
    let services: BTreeSet<&str> = of_the_event.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from([
            "woostream-crm-run",
            "woostream-enricher",
            "woostream-producer",
            "woostream-slack-run"
        ]),
        "one trace over every hop; all spans: {all:?}"
    );
    for (service, _, parent, attributes) in &of_the_event {
        assert_eq!(parent, &root, "{service}: a child of the event");
        assert!(
            attributes.to_string().contains(CORRELATION_ID),
            "{service}: the span names the correlation id: {attributes}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_enricher_cannot_read_is_logged_with_its_correlation_id() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let bootstrap = tansu.bootstrap.clone();
    let config = run_config(&bootstrap, "traces", "enricher-traces");
    kafka::ensure_topics(&config.kafka, &bootstrap, &config.topics, &config.retention)
        .await
        .unwrap();
    let producer: FutureProducer = kafka::producer_config(&config.kafka, &bootstrap)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to("woo.orders")
                .key("not a customer key")
                .payload("not an order")
                .headers(OwnedHeaders::new().insert(Header {
                    key: woostream_core::headers::CORRELATION_ID,
                    value: Some("damaged-record-7f3a"),
                })),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let mut enricher = EnricherProcess::start(&config, "traces", dir.path());
        let deadline = Instant::now() + Duration::from_secs(120);
        while enricher.metric("woostream_enricher_unreadable_records_total") < 1.0 {
            assert!(enricher.exited().is_none(), "{}", enricher.log_text());
            assert!(Instant::now() < deadline, "{}", enricher.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = enricher.log_text();
        let line = log
            .lines()
            .find(|l| l.contains("Skipping an input record"))
            .unwrap_or_else(|| panic!("no log line for the damaged record: {log}"));
        let json: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        // The line's own field (the enricher's hot path makes no span unless tracing), or the
        // record's span.
        assert!(
            json["correlation_id"] == "damaged-record-7f3a"
                || json["span"]["correlation_id"] == "damaged-record-7f3a",
            "{line}"
        );
        assert!(enricher.stop().success());
    })
    .await
    .unwrap();
}
