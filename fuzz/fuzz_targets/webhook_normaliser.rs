//! Any signed body under any topic: an event or a rejection, never a panic. The first byte
//! picks the topic; the corpus starts from the WooCommerce fixtures.
#![no_main]

use libfuzzer_sys::fuzz_target;
use woostream_core::contract::events::Origin;
use woostream_core::privacy::CustomerHasher;
use woostream_woo::normalise::{normalise, normalise_review, WebhookDelivery};

const TOPICS: &[&str] = &[
    "order.created",
    "order.updated",
    "order.deleted",
    "order.restored",
    "product.created",
    "product.updated",
    "product.deleted",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "coupon.created",
    "coupon.updated",
    "coupon.deleted",
    "action.woocommerce_low_stock",
];

fuzz_target!(|data: &[u8]| {
    let Some((pick, body)) = data.split_first() else {
        return;
    };
    let customers = CustomerHasher::new(b"fuzz");
    let d = WebhookDelivery {
        shop_id: "eu",
        source: "https://shop.example.com/",
        wc_topic: Some(TOPICS[*pick as usize % TOPICS.len()]),
        webhook_id: Some(1),
        delivery_id: Some("d"),
        correlation_id: "c",
        received_at: chrono::Utc::now(),
        origin: Origin::Webhook,
        customers: &customers,
    };
    let _ = normalise(&d, body);
    let _ = normalise_review(&d, body);
});
