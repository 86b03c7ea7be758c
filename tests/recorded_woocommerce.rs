//! Real deliveries of a genuine WooCommerce 10.0.2 (WordPress 6.8.8), recorded byte for byte
//! with their headers (`tests/fixtures/woocommerce/recorded-10.0.2/`), replayed in their order
//! into the producer on Tansu, then enriched. Each fact of a real shop that woostream relies on
//! is asserted here with the delivery that shows it:
//! - the creation ping: unsigned, form-encoded `webhook_id=N`, no `X-WC-*` header, retried
//!   until answered exactly 200;
//! - `X-WC-Webhook-Delivery-ID` is not unique (a hash of the webhook id and the second): five
//!   different products share one here, and all five are kept;
//! - `X-WC-Webhook-Source` is the home URL of the request that fired the hook: the restore
//!   below was fired through another address (https, another port) and is still the shop's;
//! - trashing product 13 fired `product.deleted` and `coupon.deleted` with the same `{"id":13}`;
//! - `order.deleted` carries only `{"id":26}`, and the order must leave its customer's history;
//!   `order.restored` brings it back (timed by the shop's clock, earlier than the deletion's
//!   arrival here);
//! - action topics carry `{}` or an id as their argument.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use woostream_core::config::ShopConfig;
use woostream_core::contract::codec::Decoder;
use woostream_core::contract::events::{CouponEvent, CustomerKey, ProductEvent};
use woostream_tests::enricher::{enrich_everything, profile_history, run_config};
use woostream_tests::*;

const RECORDED_SECRET: &str = "realwoo-s3cret";
const RECORDED_SOURCE: &str = "http://127.0.0.1:8080/";

/// One recorded delivery: its headers as WooCommerce sent them and its raw body.
struct Delivery {
    name: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn recorded() -> Vec<Delivery> {
    let dir: PathBuf = repo_root().join("tests/fixtures/woocommerce/recorded-10.0.2");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") && n.as_bytes()[0].is_ascii_digit())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let meta: Value =
                serde_json::from_slice(&std::fs::read(dir.join(&name)).unwrap()).unwrap();
            let body = std::fs::read(dir.join(meta["body_file"].as_str().unwrap())).unwrap();
            let headers = meta["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            Delivery {
                name,
                headers,
                body,
            }
        })
        .collect()
}

/// Posts a delivery as WooCommerce did: every recorded header but those of the connection.
async fn replay(url: &str, d: &Delivery) -> (u16, String) {
    let mut req = reqwest::Client::new().post(url).body(d.body.clone());
    for (k, v) in &d.headers {
        if ["host", "content-length", "connection", "accept-encoding"]
            .contains(&k.to_ascii_lowercase().as_str())
        {
            continue;
        }
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("the producer answers");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_real_deliveries_are_all_kept_and_mean_what_the_shop_meant() {
    let deliveries = recorded();
    assert_eq!(deliveries.len(), 30, "the recorded set");
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let mut config = config(&tansu.bootstrap);
    config.shops = vec![ShopConfig {
        id: "real".into(),
        source: RECORDED_SOURCE.into(),
        source_aliases: Vec::new(),
        secret: Some(RECORDED_SECRET.into()),
        secret_env: None,
        rest: None,
        require_topic_secrets: false,
        previous_secret: None,
    }];
    let p = Producer::start(&config, true).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Up to order 26's trashing, enriched; then the rest (its restore among them).
    let trashed_at = deliveries
        .iter()
        .position(|d| d.name.contains("order_deleted"))
        .unwrap();
    let mut while_trashed = None;
    for (i, d) in deliveries.iter().enumerate() {
        let (status, answer) = replay(&p.url, d).await;
        // Exactly 200 for everything: the ping counts only as 200, and anything else counts
        // towards WooCommerce disabling the webhook.
        assert_eq!(status, 200, "{}: {answer}", d.name);
        if d.name.contains("_ping") {
            assert!(!d.headers.keys().any(|h| h.starts_with("X-WC-")));
        }
        if i == trashed_at {
            while_trashed = Some(enrich_everything(&tansu.bootstrap, dir.path(), "recorded").await);
        }
    }
    let while_trashed = while_trashed.unwrap();
    let of_customer_2 = |view: &woostream_enricher::published::View| {
        view.profiles
            .iter()
            .find(|((_, customer), _)| customer == "2")
            .map(|(_, p)| p.clone())
            .expect("customer 2's profile")
    };
    let trashed = of_customer_2(&while_trashed);
    assert_eq!(
        trashed.orders_count, 0,
        "order 26 trashed: {:?}",
        trashed.orders
    );
    assert!(trashed
        .orders
        .iter()
        .any(|o| o.order_id == 26 && o.status == "trash"));
    let outcome = |o: &str| p.metric("woostream_webhook_requests_total", &[("outcome", o)]);
    assert_eq!(outcome("ping"), 1.0);
    assert_eq!(outcome("accepted"), 28.0);
    assert_eq!(
        outcome("not_this_resource"),
        1.0,
        "coupon.deleted of product 13"
    );
    assert_eq!(outcome("dead_lettered"), 0.0);
    assert_eq!(
        p.metric("woostream_webhook_signature_failures_total", &[]),
        0.0
    );
    // The account deletion (no REST API configured to confirm it): kept, not erased.
    assert_eq!(
        p.metric(
            "woostream_webhook_erasures_total",
            &[("outcome", "awaiting_operator")]
        ),
        1.0
    );
    // The restore and the update after it came through https://127.0.0.1:8443/.
    assert_eq!(
        p.metric(
            "woostream_webhook_source_mismatch_total",
            &[("shop", "real")]
        ),
        2.0
    );
    p.stop().await.unwrap();

    let decoder = Decoder::new();
    // Five products under one delivery id, and product 13's deletion: all kept.
    let products = read_topic_now(&config, "recorded-products", "woo.products").await;
    let product_ids: Vec<(i64, String)> = products
        .iter()
        .map(|m| {
            let e: ProductEvent = decoder
                .decode(rdkafka::Message::payload(m).unwrap())
                .unwrap();
            (e.product_id, e.envelope.wc_topic)
        })
        .collect();
    assert_eq!(product_ids.len(), 9, "{product_ids:?}");
    assert!(product_ids.contains(&(13, "product.deleted".into())));
    // No phantom coupon 13: the coupon topic holds coupon 18's two versions only.
    let coupons = read_topic_now(&config, "recorded-coupons", "woo.coupons").await;
    let coupon_ids: Vec<i64> = coupons
        .iter()
        .map(|m| {
            decoder
                .decode::<CouponEvent>(rdkafka::Message::payload(m).unwrap())
                .unwrap()
                .coupon_id
        })
        .collect();
    assert_eq!(coupon_ids, [18, 18]);
    // The order's deletion is written under its customer (2), where the history is.
    let orders = read_topic_now(&config, "recorded-orders", "woo.orders").await;
    let deleted: Vec<CustomerKey> = orders
        .iter()
        .filter(|m| header(m, woostream_core::headers::WC_TOPIC) == Some("order.deleted"))
        .map(|m| decoder.decode(rdkafka::Message::key(m).unwrap()).unwrap())
        .collect();
    assert_eq!(orders.len(), 8);
    assert_eq!(deleted.len(), 1, "one order.deleted record");
    assert_eq!(deleted[0].customer, "2");

    // Enriched again: the restore (by the shop's clock earlier than the deletion's arrival
    // here) brought order 26 back.
    let view = enrich_everything(&tansu.bootstrap, dir.path(), "recorded").await;
    let history = profile_history(&run_config(&tansu.bootstrap, "recorded", "x"), "2");
    let profile = of_customer_2(&view);
    // Order 20 is still pending in these deliveries; order 26 is completed again.
    assert_eq!(profile.orders_count, 1, "{history:#?}");
    assert!(profile
        .orders
        .iter()
        .any(|o| o.order_id == 26 && o.status == "completed"));
}
