//! woostream read as an attacker would, each attack played against it on Tansu.
//!
//! A replayed deletion: WooCommerce signs only the body, the topic is an unsigned header, and
//! every `*.deleted` body is the same `{"id":N}`. A signed `product.deleted` for id 42 (every
//! trashed product makes one) re-sent as `customer.deleted` must not erase customer 42 while
//! the shop still has the account; once the shop answers 404 for it, one erasure, however
//! often the deletion is delivered.

use rdkafka::Message;
use serde_json::{json, Value};
use woostream::shop::{Behaviour, ShopServer};
use woostream_core::config::ShopRest;
use woostream_tests::*;

const KEY: &str = "ck_trust_0123456789abcdef";
const SECRET_KEY: &str = "cs_trust_0123456789abcdef";

fn status_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_replayed_as_customer_deleted_erases_no_one_and_a_real_one_erases_once() {
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let mut customers = std::collections::BTreeMap::new();
    customers.insert(
        42,
        json!({"id": 42, "email": "victim@example.com", "first_name": "Vic", "role": "customer"}),
    );
    let shop = ShopServer::start(
        std::collections::BTreeMap::from([("customers".to_string(), customers)]),
        KEY,
        SECRET_KEY,
        Behaviour::default(),
    )
    .await
    .unwrap();
    let mut config = config(&tansu.bootstrap);
    config.shops[0].rest = Some(ShopRest {
        url: Some(shop.url.clone()),
        consumer_key: Some(KEY.into()),
        consumer_secret: Some(SECRET_KEY.into()),
        ..ShopRest::default()
    });
    let p = Producer::start(&config, true).await.unwrap();
    let erasures = |outcome: &str| {
        p.metric(
            "woostream_webhook_erasures_total",
            &[("shop", "eu"), ("outcome", outcome)],
        )
    };

    // What trashing product 42 delivers, signed with the shop's one secret, re-labelled.
    let body = br#"{"id":42}"#;
    let (code, text) = Post::signed("customer.deleted", body).send(&p.url).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(status_of(&text)["status"], "ignored", "{text}");
    assert_eq!(erasures("account_exists"), 1.0);
    assert_eq!(erasures("erased"), 0.0);
    assert!(
        read_topic_now(&config, "trust-customers", "woo.customers")
            .await
            .is_empty(),
        "nothing written: no deletion, no tombstone"
    );
    assert!(
        read_topic_now(&config, "trust-keys", "woostream.subject-keys")
            .await
            .iter()
            .all(|m| m.payload().is_some()),
        "no key tombstoned"
    );

    // The account is deleted in the shop: now the deletion is real, and erases once.
    shop.remove("customers", 42);
    let (code, text) = Post::signed("customer.deleted", body).send(&p.url).await;
    assert_eq!(code, 200, "{text}");
    let answer = status_of(&text);
    assert_eq!(answer["status"], "accepted", "{text}");
    assert!(
        answer["erasure"]
            .as_str()
            .is_some_and(|e| e.starts_with("er-")),
        "{text}"
    );
    assert_eq!(erasures("erased"), 1.0);
    let tombstones = |records: &[rdkafka::message::OwnedMessage]| {
        records.iter().filter(|m| m.payload().is_none()).count()
    };
    let after_one = read_topic_now(&config, "trust-customers-1", "woo.customers").await;
    assert!(tombstones(&after_one) >= 1, "the erasure's tombstone");
    // Delivered again (a new delivery id, as a replay would carry): no second erasure.
    for _ in 0..3 {
        let (code, text) = Post::signed("customer.deleted", body).send(&p.url).await;
        assert_eq!(code, 200, "{text}");
        assert_eq!(status_of(&text)["erasure"], "already erased", "{text}");
    }
    assert_eq!(erasures("erased"), 1.0);
    assert_eq!(erasures("already_erased"), 3.0);
    let after_more = read_topic_now(&config, "trust-customers-2", "woo.customers").await;
    assert_eq!(
        tombstones(&after_more),
        tombstones(&after_one),
        "erased once"
    );
    p.stop().await.unwrap();
}
