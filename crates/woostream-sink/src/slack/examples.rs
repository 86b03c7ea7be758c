//! Example alerts, shaped like the enricher's: what `woostream slack preview --example` starts
//! from, and what the Slack tests route and render.

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use woostream_core::insights::{Alert, AlertCustomer, AlertItem, AlertKind, AlertOrder};
use woostream_core::Money;

/// An order alert for order `n` with two mugs, total `total` PLN.
pub fn order_alert(n: i64, kind: AlertKind, total: &str) -> Alert {
    let total = Money::new(Decimal::from_str(total).expect("decimal"));
    Alert {
        alert_id: format!("{:032x}", (n as u128) << 8 | kind as u128),
        kind,
        shop_id: "eu".into(),
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap(),
        correlation_id: format!("corr-{n}"),
        caused_by_event_id: format!("event-{n}"),
        order: Some(AlertOrder {
            order_id: n,
            number: n.to_string(),
            status: "processing".into(),
            previous_status: Some("pending".into()),
            currency: "PLN".into(),
            total,
            refunded_total: Money::ZERO,
            payment_method: Some("stripe".into()),
            payment_method_title: Some("Card".into()),
            created_via: Some("checkout".into()),
            created_at: None,
            items: vec![AlertItem {
                product_id: Some(7),
                variation_id: None,
                name: "Mug".into(),
                sku: Some("MUG-1".into()),
                quantity: 2,
                total,
                category_ids: vec![15],
            }],
        }),
        customer: Some(AlertCustomer {
            customer: format!("{}", 5000 + n),
            customer_id: Some(5000 + n),
            first_name_initial: Some("J".into()),
            segment: "Champions".into(),
            previous_segment: None,
            orders_count: 3,
            revenue: Money::new(Decimal::from(900)),
            clv_12_months: Money::new(Decimal::from(1234)),
            p_alive: 0.9,
            churn_risk: "LOW".into(),
            vip: false,
            profile_version: 3,
        }),
        product: None,
        review: None,
        origin: woostream_core::events::Origin::Webhook,
        erasure: None,
    }
}
