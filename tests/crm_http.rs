//! The CRM sink's HubSpot client and flush against the local HubSpot over HTTP, no Kafka: an
//! account whose limit is lower than configured (a smaller tier, or other apps of the account
//! using most of it) is found by the rate-limit headers and 429s, and nothing is lost.

use std::time::Instant;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use woostream_core::config::crm::CrmConfig;
use woostream_hubspot::client::HubSpot;
use woostream_sink::crm::changes::{ContactChange, Identity};
use woostream_sink::crm::flush::{Outcome, Sender, SharedKnown};
use woostream_sink::crm::metrics::Metrics;
use woostream_sink::crm::pending::{Item, Taken};
use woostream_tests::hubspot::FakeHubSpot;

const TOKEN: &str = "pat-eu1-00000000-test";

fn contact(n: usize) -> ContactChange {
    ContactChange {
        shop_id: "eu".into(),
        customer: n.to_string(),
        customer_id: Some(n as i64),
        identity: Some(Identity {
            email: Some(format!("c{n}@shop.example")),
            first_name: Some("Ola".into()),
            last_name: None,
            phone: None,
            at: Utc::now(),
            sealed_with: None,
        }),
        metrics: None,
        correlation_id: format!("c-{n}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_limit_than_configured_is_found_by_its_headers_and_429s_and_nothing_is_lost() {
    // The account allows 3 requests per 10 s; the sink is configured for HubSpot's 190.
    let hubspot = FakeHubSpot::start(TOKEN, 3).await;
    let config = CrmConfig {
        api_url: hubspot.url.clone(),
        concurrency: 4,
        max_backoff_secs: 2,
        ..CrmConfig::default()
    };
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let sender = Sender::new(
        HubSpot::new(&hubspot.url, TOKEN.into()).unwrap(),
        &config,
        metrics.clone(),
        CancellationToken::new(),
    );
    let now = Instant::now();
    let taken = Taken {
        contacts: (0..700)
            .map(|n| Item::new(contact(n), None, 0, now))
            .collect(),
        ..Taken::default()
    };
    let report = sender
        .flush(taken, &SharedKnown::default())
        .await
        .expect("not interrupted");

    assert!(report
        .contacts
        .iter()
        .all(|(_, o)| matches!(o, Outcome::Delivered { .. })));
    assert_eq!(hubspot.with_store(|s| s.contacts.records.len()), 700);
    let requests = hubspot.requests();
    let limited = requests.iter().filter(|r| r.status == 429).count();
    let upserts = requests
        .iter()
        .filter(|r| r.status == 200 && r.endpoint == "contacts/batch/upsert")
        .count();
    println!(
        "{upserts} batches delivered, {limited} answered 429, busiest 10 s: {}",
        hubspot.busiest_window()
    );
    assert_eq!(upserts, 7, "batches of 100");
    assert!(limited > 0, "the first burst meets the real limit");
    // After a 429 the sink waits for the window rather than retrying every second.
    assert!(
        limited <= 2 * config.concurrency,
        "{limited} requests answered 429"
    );
    assert_eq!(metrics.rate_limited.get() as usize, limited);
    assert!(hubspot.busiest_window() <= 3 + limited);
}
