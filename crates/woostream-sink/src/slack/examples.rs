//! Example alerts, shaped like the enricher's: what `woostream slack preview --example` starts
//! from, and what the Slack tests route and render.

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use woostream_core::contract::enriched::{
    Alert, AlertCustomer, AlertItem, AlertKind, AlertOrder, AlertQuestion, AlertReplenishment,
};
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
            previous_churn_risk: (kind == AlertKind::ChurnRiskChanged).then(|| "LOW".into()),
            top_category: Some("Coffee beans".into()),
            typical_interval_days: Some(30.0),
            expected_next_purchase_at: Some(Utc.with_ymd_and_hms(2026, 12, 20, 0, 0, 0).unwrap()),
        }),
        product: None,
        review: None,
        origin: woostream_core::contract::events::Origin::Webhook,
        erasure: None,
        replenishment: (kind == AlertKind::ReplenishmentDue).then(|| AlertReplenishment {
            product_id: 7,
            name: Some("Mug".into()),
            last_bought_at: Utc.with_ymd_and_hms(2026, 10, 1, 10, 0, 0).unwrap(),
            interval_days: 30.0,
            due_at: Utc.with_ymd_and_hms(2026, 11, 6, 10, 0, 0).unwrap(),
        }),
        question: (kind == AlertKind::CustomerQuestion).then(|| AlertQuestion {
            note: "Can you gift-wrap it? <b>thanks</b> & see you".into(),
        }),
    }
}
