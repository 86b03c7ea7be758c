//! The enricher's logic on hand-made deliveries: duplicates, reordering, refunds, transitions.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use woostream_core::config::HighValueOrder;
use woostream_core::contract::enriched::{AlertKind, CustomerProfile, Segment};
use woostream_core::contract::events::*;
use woostream_core::Money;

use crate::customer::ScoringSettings;
use crate::model::Model;
use crate::partition::{CustomerPartition, Output, Settings};

fn m(s: &str) -> Money {
    Money::new(s.parse().unwrap())
}

fn settings() -> Settings {
    Settings {
        scoring: ScoringSettings {
            clv_months: 12,
            monthly_discount_rate: 0.01,
        },
        high_value_order: HighValueOrder::Amount("500".parse().unwrap()),
        replenishment_margin: 0.2,
        names: Default::default(),
        defer_profiles: false,
    }
}

fn model() -> Model {
    Model::prior(&woostream_core::config::EnricherConfig::default())
}

fn key(customer: &str) -> CustomerKey {
    CustomerKey {
        shop_id: "main".into(),
        customer: customer.into(),
    }
}

/// Order `id` of customer 25 as WooCommerce would send it at `day` (of Nov 2026) + `second`.
fn order(id: i64, status: &str, total: &str, day: u32, second: u32) -> OrderEvent {
    let at = Utc.with_ymd_and_hms(2026, 11, day, 10, 0, second).unwrap();
    let created = Utc.with_ymd_and_hms(2026, 11, day, 10, 0, 0).unwrap();
    OrderEvent {
        envelope: Envelope {
            event_id: format!("ev-{id}-{status}-{day}-{second}"),
            shop_id: "main".into(),
            source: "https://example.com/".into(),
            wc_topic: "order.updated".into(),
            webhook_id: Some(1),
            delivery_id: None,
            correlation_id: format!("corr-{id}"),
            received_at: at,
            origin: Origin::Webhook,
        },
        action: Action::Updated,
        order_id: id,
        order: Some(Order {
            id,
            parent_id: None,
            number: id.to_string(),
            created_via: Some("checkout".into()),
            status: OrderStatus::from_slug(status),
            status_slug: status.into(),
            currency: "PLN".into(),
            prices_include_tax: true,
            created_at: Some(created),
            modified_at: Some(at),
            paid_at: None,
            completed_at: None,
            total: m(total),
            total_tax: Money::ZERO,
            subtotal: m(total),
            discount_total: Money::ZERO,
            discount_tax: Money::ZERO,
            shipping_total: Money::ZERO,
            shipping_tax: Money::ZERO,
            cart_tax: Money::ZERO,
            fee_total: Money::ZERO,
            refunded_total: Money::ZERO,
            customer_id: Some(25),
            customer_key: "25".into(),
            email_hash: Some("h".into()),
            billing: Some(Address {
                first_name: Some("john".into()),
                email: Some("john.doe@example.com".into()),
                phone: Some("+48 601 013 447".into()),
                ..Default::default()
            }),
            shipping: None,
            payment_method: Some("bacs".into()),
            payment_method_title: Some("Direct Bank Transfer".into()),
            transaction_id: None,
            line_items: vec![LineItem {
                id: 1,
                product_id: Some(93),
                variation_id: None,
                name: "Hoodie".into(),
                sku: None,
                quantity: 1,
                subtotal: m(total),
                subtotal_tax: Money::ZERO,
                total: m(total),
                total_tax: Money::ZERO,
                category_ids: vec![9],
            }],
            coupon_codes: vec![],
            refunds: vec![],
            customer_note: None,
        }),
    }
}

struct Run {
    partition: CustomerPartition,
    offset: i64,
    model: Model,
}

impl Run {
    fn new() -> Run {
        Run {
            partition: CustomerPartition::new(0),
            offset: 0,
            model: model(),
        }
    }
    fn send(&mut self, event: &OrderEvent) -> Output {
        self.offset += 1;
        self.partition
            .on_order(&key("25"), event, self.offset, &self.model, &settings())
    }
}

/// A profile as the enricher writes it after one paid order.
pub(crate) fn sample_profile() -> CustomerProfile {
    let mut p = CustomerPartition::new(0);
    let out = p.on_order(
        &key("7"),
        &order(1, "processing", "120.00", 3, 0),
        10,
        &model(),
        &settings(),
    );
    out.profiles
        .into_iter()
        .find_map(|(_, p)| p)
        .expect("a profile")
}

fn kinds(out: &Output) -> Vec<AlertKind> {
    out.alerts.iter().map(|(_, a)| a.kind).collect()
}

#[test]
fn a_paid_order_is_placed_paid_and_a_first_order_once_however_often_it_is_delivered() {
    let mut run = Run::new();
    let placed = run.send(&order(727, "pending", "120.00", 20, 0));
    assert_eq!(
        kinds(&placed),
        [AlertKind::OrderPlaced, AlertKind::FirstOrder]
    );
    let paid = run.send(&order(727, "processing", "120.00", 20, 5));
    assert_eq!(
        kinds(&paid),
        [AlertKind::OrderStatusChanged, AlertKind::OrderPaid]
    );
    let profile = paid.profiles[0].1.as_ref().unwrap();
    assert_eq!((profile.orders_count, profile.version), (1, 2));
    assert_eq!(profile.revenue, m("120"));
    // Redeliveries of either version change nothing and say nothing.
    for again in [
        order(727, "processing", "120.00", 20, 5),
        order(727, "pending", "120.00", 20, 0),
    ] {
        assert!(run.send(&again).is_empty());
    }
}

#[test]
fn an_older_version_arriving_late_changes_nothing_and_same_second_versions_keep_progress() {
    let mut run = Run::new();
    run.send(&order(727, "completed", "80.00", 20, 9));
    assert!(run
        .send(&order(727, "processing", "80.00", 20, 5))
        .is_empty());
    // Saved within the same second: "pending" never undoes "processing".
    let mut run = Run::new();
    run.send(&order(728, "processing", "80.00", 20, 5));
    assert!(run.send(&order(728, "pending", "80.00", 20, 5)).is_empty());
}

#[test]
fn refunds_and_cancellations_come_off_revenue_and_are_announced() {
    let mut run = Run::new();
    run.send(&order(1, "processing", "100.00", 10, 0));
    run.send(&order(2, "processing", "50.00", 11, 0));
    let mut partial = order(1, "processing", "100.00", 12, 1);
    partial.order.as_mut().unwrap().refunded_total = m("30");
    let out = run.send(&partial);
    assert_eq!(kinds(&out)[0], AlertKind::OrderRefunded);
    assert_eq!(
        kinds(&out)
            .iter()
            .filter(|k| **k == AlertKind::OrderRefunded)
            .count(),
        1
    );
    assert_eq!(out.profiles[0].1.as_ref().unwrap().revenue, m("120"));
    let out = run.send(&order(2, "cancelled", "50.00", 12, 2));
    assert!(kinds(&out).contains(&AlertKind::OrderStatusChanged));
    let p = out.profiles[0].1.as_ref().unwrap();
    assert_eq!(
        (p.orders_count, p.revenue, p.refunded),
        (1, m("70"), m("30"))
    );
}

#[test]
fn failed_payments_high_value_orders_and_transactions_per_day() {
    let mut run = Run::new();
    let out = run.send(&order(5, "failed", "900.00", 10, 0));
    assert_eq!(
        kinds(&out),
        [
            AlertKind::OrderPlaced,
            AlertKind::FirstOrder,
            AlertKind::PaymentFailed
        ]
    );
    let out = run.send(&order(5, "processing", "900.00", 10, 30));
    assert_eq!(
        kinds(&out),
        [
            AlertKind::OrderStatusChanged,
            AlertKind::OrderPaid,
            AlertKind::HighValueOrder
        ]
    );
    // A second order on the same day is the same BG/NBD transaction.
    run.send(&order(6, "processing", "10.00", 10, 40));
    let out = run.send(&order(7, "processing", "10.00", 15, 0));
    let p = out.profiles[0].1.as_ref().unwrap();
    assert_eq!((p.orders_count, p.transactions), (3, 2));
}

#[test]
fn alerts_carry_no_personal_data_and_ids_are_deterministic() {
    let mut a = Run::new();
    let mut b = Run::new();
    let ea = a.send(&order(9, "processing", "20.00", 10, 0));
    let eb = b.send(&order(9, "processing", "20.00", 10, 0));
    assert_eq!(ea, eb);
    for (_, alert) in &ea.alerts {
        let text = format!("{alert:?}");
        assert!(
            !text.contains("john.doe@example.com") && !text.contains("013 447"),
            "{text}"
        );
        assert_eq!(
            alert
                .customer
                .as_ref()
                .unwrap()
                .first_name_initial
                .as_deref(),
            Some("J")
        );
        assert_eq!(alert.correlation_id, "corr-9");
    }
}

#[test]
fn time_passing_moves_a_customer_between_segments_with_one_alert() {
    let mut run = Run::new();
    run.send(&order(1, "processing", "100.00", 1, 0));
    let first = run.send(&order(2, "processing", "100.00", 2, 0));
    let segment = first.profiles[0].1.as_ref().unwrap().segment;
    assert_ne!(segment, Segment::Lost);
    // Another customer's order months later advances the partition's clock.
    let mut later = order(3, "processing", "5.00", 1, 0);
    let o = later.order.as_mut().unwrap();
    let t = Utc.with_ymd_and_hms(2027, 9, 1, 10, 0, 0).unwrap();
    (o.created_at, o.modified_at) = (Some(t), Some(t));
    run.offset += 1;
    let out = run
        .partition
        .on_order(&key("other"), &later, run.offset, &run.model, &settings());
    let changed: Vec<_> = out
        .alerts
        .iter()
        .filter(|(_, a)| a.kind == AlertKind::SegmentChanged)
        .collect();
    assert_eq!(changed.len(), 1, "{:?}", kinds(&out));
    let c = changed[0].1.customer.as_ref().unwrap();
    assert_eq!(c.previous_segment.as_deref(), Some(segment.name()));
    assert_ne!(c.segment, segment.name());
    // The rescored profile is a new version of customer 25.
    assert!(out
        .profiles
        .iter()
        .any(|(k, p)| k.customer == "25" && p.as_ref().unwrap().version == 3));
}

#[test]
fn a_restored_profile_continues_exactly_where_the_live_state_was() {
    let mut live = Run::new();
    live.send(&order(1, "processing", "100.00", 1, 0));
    let out = live.send(&order(2, "pending", "40.00", 3, 0));
    let mut restored = Run::new();
    restored
        .partition
        .restore(out.profiles[0].1.as_ref().unwrap());
    restored.offset = live.offset;
    let next = order(2, "processing", "40.00", 3, 10);
    assert_eq!(live.send(&next), restored.send(&next));
}

#[test]
fn high_value_and_vip_wait_for_thresholds_the_shops_own_orders_informed() {
    let percentile = Settings {
        high_value_order: HighValueOrder::Percentile(95.0),
        ..settings()
    };
    let config = woostream_core::config::EnricherConfig::default();
    let mut partition = CustomerPartition::new(0);
    let prior = model();
    // Under the priors nothing is high value and nobody is a VIP, however large the order.
    let out = partition.on_order(
        &key("1"),
        &order(1, "processing", "100000.00", 1, 0),
        1,
        &prior,
        &percentile,
    );
    assert!(!kinds(&out).contains(&AlertKind::HighValueOrder));
    assert!(!out.profiles[0].1.as_ref().unwrap().vip);

    // A fit from fewer orders than `threshold_min_orders` still sets no threshold.
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap();
    let mut profiles = Vec::new();
    let mut offset = 1;
    let mut fit_after = |partition: &mut CustomerPartition, customers: usize| {
        for c in profiles.len()..customers {
            offset += 1;
            let total = format!("{}.00", 20 + c % 100);
            let out = partition.on_order(
                &key(&format!("c{c}")),
                &order(1_000 + c as i64, "processing", &total, 2, 0),
                offset,
                &prior,
                &percentile,
            );
            profiles.push(out.profiles[0].1.clone().unwrap());
        }
        let refs: Vec<&CustomerProfile> = profiles.iter().collect();
        Model::from_record(&crate::model::fit::fit_shop("eu", &refs, now, now, &config)).unwrap()
    };
    let early = fit_after(&mut partition, config.threshold_min_orders as usize - 2);
    assert_eq!(
        (early.order_value_p95, early.vip_clv_threshold),
        (None, None)
    );

    let informed = fit_after(&mut partition, config.threshold_min_orders as usize + 50);
    let p95 = informed.order_value_p95.expect("informed by enough orders");
    assert!((110.0..=120.0).contains(&p95), "the shop's own p95: {p95}");
    assert_eq!(
        informed.vip_clv_threshold, None,
        "no VIPs while the purchase process is the prior (no repeat customers yet)"
    );
    // In day order: every new day in the stream rescores the whole partition.
    let mut repeat_orders: Vec<(u32, i64, i64)> = (0..60_i64)
        .flat_map(|c| (0..(2 + c % 3)).map(move |n| ((3 + n * (2 + c % 5)) as u32, c, n)))
        .collect();
    repeat_orders.sort();
    let mut latest = std::collections::BTreeMap::new();
    for (i, (day, c, n)) in repeat_orders.into_iter().enumerate() {
        let total = format!("{}.00", 30 + (c * 7) % 90);
        let out = partition.on_order(
            &key(&format!("r{c}")),
            &order(50_000 + c * 10 + n, "processing", &total, day, 0),
            20_000 + i as i64,
            &prior,
            &percentile,
        );
        latest.insert(c, out.profiles[0].1.clone().unwrap());
    }
    profiles.extend(latest.into_values());
    let refs: Vec<&CustomerProfile> = profiles.iter().collect();
    let record = crate::model::fit::fit_shop("eu", &refs, now, now, &config);
    // Sixty customers who all keep buying tell nothing about dropout: the fit runs away
    // (a and b in the millions), which would make every score take millions of series
    // terms. It keeps the priors instead, and so no VIPs.
    assert!(
        !record.bgnbd_fitted,
        "a runaway fit is not used: a={} b={}",
        record.a, record.b
    );
    assert!(record.a < 10.0 && record.b < 10.0, "the prior's a and b");
    assert_eq!(Model::from_record(&record).unwrap().vip_clv_threshold, None);

    let out = partition.on_order(
        &key("big"),
        &order(9_999, "processing", "500.00", 3, 0),
        10_000,
        &informed,
        &percentile,
    );
    assert!(kinds(&out).contains(&AlertKind::HighValueOrder));
    let out = partition.on_order(
        &key("small"),
        &order(9_998, "processing", "30.00", 3, 0),
        10_001,
        &informed,
        &percentile,
    );
    assert!(!kinds(&out).contains(&AlertKind::HighValueOrder));
}

/// An order of customer `customer` created at `t`.
fn order_at(id: i64, customer: i64, t: chrono::DateTime<Utc>) -> OrderEvent {
    let mut e = order(id, "processing", "40.00", 1, 0);
    let o = e.order.as_mut().unwrap();
    (o.created_at, o.modified_at) = (Some(t), Some(t));
    o.customer_id = Some(customer);
    o.customer_key = customer.to_string();
    e
}

#[test]
fn a_checkout_note_is_a_customer_question_once_with_the_orders_first_version() {
    let mut run = Run::new();
    let mut placed = order(727, "pending", "120.00", 20, 0);
    placed.order.as_mut().unwrap().customer_note = Some("Can you gift-wrap it?".into());
    let out = run.send(&placed);
    let q: Vec<_> = out
        .alerts
        .iter()
        .filter(|(_, a)| a.kind == AlertKind::CustomerQuestion)
        .collect();
    assert_eq!(q.len(), 1, "{:?}", kinds(&out));
    assert_eq!(
        q[0].1.question.as_ref().unwrap().note,
        "Can you gift-wrap it?"
    );
    assert_eq!(q[0].1.order.as_ref().unwrap().order_id, 727);
    // Later versions of the order carry the same note: asked once.
    let mut paid = order(727, "processing", "120.00", 20, 5);
    paid.order.as_mut().unwrap().customer_note = Some("Can you gift-wrap it?".into());
    assert!(!kinds(&run.send(&paid)).contains(&AlertKind::CustomerQuestion));
    // An order without a note asks nothing.
    assert!(!kinds(&run.send(&order(728, "pending", "10.00", 21, 0)))
        .contains(&AlertKind::CustomerQuestion));
}

#[test]
fn a_churn_band_change_is_announced_with_the_previous_band() {
    let mut run = Run::new();
    run.send(&order(1, "processing", "100.00", 1, 0));
    run.send(&order(2, "processing", "100.00", 5, 0));
    // A year later another customer's order moves the partition's clock: customer 25's
    // P(alive) falls.
    let t = Utc.with_ymd_and_hms(2027, 12, 1, 10, 0, 0).unwrap();
    run.offset += 1;
    let out = run.partition.on_order(
        &key("other"),
        &order_at(3, 99, t),
        run.offset,
        &run.model,
        &settings(),
    );
    let changed: Vec<_> = out
        .alerts
        .iter()
        .filter(|(k, a)| a.kind == AlertKind::ChurnRiskChanged && k.subject == "customer:25")
        .collect();
    assert_eq!(changed.len(), 1, "{:?}", kinds(&out));
    let c = changed[0].1.customer.as_ref().unwrap();
    assert_eq!(c.previous_churn_risk.as_deref(), Some("LOW"));
    assert_ne!(c.churn_risk, "LOW");
    // The other customer's first order announces no band change.
    assert!(!out
        .alerts
        .iter()
        .any(|(k, a)| a.kind == AlertKind::ChurnRiskChanged && k.subject == "customer:other"));
}

#[test]
fn profiles_carry_taste_and_a_next_purchase_date() {
    let mut run = Run::new();
    run.send(&order(1, "processing", "100.00", 1, 0));
    let out = run.send(&order(2, "processing", "60.00", 11, 0));
    // With the taste of the state it was written from.
    let p = out.profiles[0].1.as_ref().unwrap();
    assert_eq!(p.top_products[0].id, 93);
    assert_eq!(p.top_products[0].orders, 2);
    assert_eq!(p.top_categories[0].id, 9);
    assert_eq!(p.typical_interval_days, Some(10.0));
    assert_eq!(p.preferred_payment_method.as_deref(), Some("bacs"));
    assert_eq!(p.orders[0].items[0].product_id, 93);
    let next = p.expected_next_purchase_at.expect("a next purchase");
    assert!(next > p.last_order_at.unwrap());
    // Restored from the profile, the state is the same: taste comes back with the ledger.
    let mut restored = CustomerPartition::new(0);
    restored.restore(p);
    let again = restored.on_order(
        &key("25"),
        &order(3, "processing", "10.00", 12, 0),
        run.offset + 1,
        &run.model,
        &settings(),
    );
    let again = again.profiles[0].1.clone().unwrap();
    assert_eq!(again.top_products[0].orders, 3);
}

#[test]
fn replenishment_is_due_once_per_cycle_when_the_stream_passes_the_interval() {
    let mut run = Run::new();
    let mut model = model();
    model.repurchase_days = std::sync::Arc::new(HashMap::from([(93, 10.0)]));
    run.model = model;
    run.send(&order(1, "processing", "100.00", 1, 0));
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 9, 0, 0).unwrap();
    let mut due_alerts = Vec::new();
    // Another customer's orders move the clock a day at a time; customer 25 is due on
    // day 1 + 10 x 1.2 = day 13.
    for (i, d) in (2..=20).enumerate() {
        run.offset += 1;
        let out = run.partition.on_order(
            &key("other"),
            &order_at(100 + i as i64, 99, day(d)),
            run.offset,
            &run.model,
            &settings(),
        );
        for (k, a) in out.alerts {
            if a.kind == AlertKind::ReplenishmentDue && k.subject == "customer:25" {
                due_alerts.push((d, a));
            }
        }
    }
    assert_eq!(due_alerts.len(), 1, "announced once in its cycle");
    let (d, a) = &due_alerts[0];
    assert_eq!(*d, 14, "the first day that starts after the due moment");
    let r = a.replenishment.as_ref().unwrap();
    assert_eq!((r.product_id, r.interval_days), (93, 10.0));
    // A new purchase starts a new cycle.
    run.send(&order(2, "processing", "100.00", 21, 0));
    run.offset += 1;
    let out = run.partition.on_order(
        &key("other"),
        &order_at(
            200,
            99,
            Utc.with_ymd_and_hms(2026, 12, 15, 9, 0, 0).unwrap(),
        ),
        run.offset,
        &run.model,
        &settings(),
    );
    assert!(out
        .alerts
        .iter()
        .any(|(k, a)| a.kind == AlertKind::ReplenishmentDue && k.subject == "customer:25"));
}

#[test]
fn a_new_model_rescores_existing_customers_at_the_given_rate_writing_only_visible_changes() {
    let mut run = Run::new();
    for (i, c) in ["a", "b", "c"].into_iter().enumerate() {
        run.offset += 1;
        run.partition.on_order(
            &key(c),
            &order(i as i64 + 1, "processing", "100.00", 1, 0),
            run.offset,
            &run.model,
            &settings(),
        );
    }
    // A model whose VIP threshold every customer passes: a visible change for all three.
    let mut model = model();
    model.version = 42;
    model.vip_clv_threshold = Some(1e-6);
    let shared = std::sync::Arc::new(model);
    let model_of = |_: &str| shared.clone();
    run.partition.queue_model_rescore();
    assert_eq!(run.partition.model_rescore_pending(), 3);
    let (out, used) = run.partition.rescore_with_models(&model_of, &settings(), 2);
    assert_eq!(used, 2, "the budget bounds the customers looked at");
    assert_eq!(run.partition.model_rescore_pending(), 1);
    let (rest, used) = run
        .partition
        .rescore_with_models(&model_of, &settings(), 10);
    assert_eq!(used, 1);
    let profiles: Vec<_> = out.profiles.iter().chain(&rest.profiles).collect();
    assert_eq!(profiles.len(), 3, "a visible change writes a version");
    assert_eq!(
        kinds(&out)
            .iter()
            .chain(&kinds(&rest))
            .filter(|k| **k == AlertKind::BecameVip)
            .count(),
        3
    );
    for (_, p) in profiles {
        assert_eq!(p.as_ref().unwrap().model_version, 42);
    }
    // Nothing left: the same model again rescores nobody.
    run.partition.queue_model_rescore();
    let (again, _) = run
        .partition
        .rescore_with_models(&model_of, &settings(), 10);
    assert!(again.is_empty());
}

/// The runner keeps each customer's newest version and builds it at the commit; what it writes
/// must be exactly the newest version built at once, across customers, day
/// crossings that rescore everyone, an erasure, and an order after the erasure.
#[test]
fn deferred_profiles_are_the_newest_versions_built_at_once() {
    let deferred_settings = Settings {
        defer_profiles: true,
        ..settings()
    };
    let (mut at_once, mut deferred) = (CustomerPartition::new(0), CustomerPartition::new(0));
    let model = model();
    let mut expected: HashMap<String, Option<CustomerProfile>> = HashMap::new();
    let mut written: HashMap<String, Option<CustomerProfile>> = HashMap::new();
    let check = |expected: &mut HashMap<_, _>, written: &mut HashMap<_, _>| {
        assert!(!expected.is_empty());
        assert_eq!(expected, written);
        expected.clear();
        written.clear();
    };
    let customers = ["25", "26", "27"];
    for (i, day) in [1u32, 1, 1, 3, 3, 9, 9, 20, 20, 21].into_iter().enumerate() {
        for (j, c) in customers.iter().enumerate() {
            let id = (i * 10 + j) as i64;
            let mut event = order(
                id,
                "processing",
                &format!("{}.00", 40 + 7 * i + j),
                day,
                j as u32,
            );
            if let Some(o) = &mut event.order {
                o.customer_key = (*c).into();
            }
            let offset = id;
            let a = at_once.on_order(&key(c), &event, offset, &model, &settings());
            let d = deferred.on_order(&key(c), &event, offset, &model, &deferred_settings);
            assert_eq!(a.alerts, d.alerts, "the same alerts either way");
            assert!(d.profiles.is_empty(), "versions stay in the partition");
            for (k, p) in a.profiles {
                expected.insert(k.customer, p);
            }
        }
        if i == 4 {
            // Customer 26 is erased, then orders again before the commit.
            expected.insert("26".into(), at_once.erase(&key("26")).profiles[0].1.clone());
            let tombstones = deferred.erase(&key("26")).profiles;
            assert_eq!(tombstones.len(), 1);
            written.insert("26".into(), None);
        }
        // A commit every other step.
        if i % 2 == 1 {
            assert!(deferred.has_unwritten());
            for (k, p) in deferred.take_profiles(&deferred_settings) {
                written.insert(k.customer, Some(p));
            }
            assert!(!deferred.has_unwritten());
            check(&mut expected, &mut written);
        }
    }
    assert!(!deferred.has_unwritten());
}

#[test]
fn a_trashed_order_stops_counting_and_its_restore_counts_again_whatever_the_clocks_say() {
    let mut run = Run::new();
    run.send(&order(1, "completed", "100.00", 10, 0));
    let two = run.send(&order(2, "completed", "50.00", 11, 0));
    assert_eq!(
        two.profiles
            .last()
            .unwrap()
            .1
            .as_ref()
            .unwrap()
            .orders_count,
        2
    );
    // order.deleted carries only {"id":2}; the producer names the customer. It is timed by
    // when woostream received it, here later than the shop's clock at the restore below.
    let mut deleted = order(2, "completed", "50.00", 20, 0);
    deleted.action = Action::Deleted;
    deleted.order = None;
    let trashed = run.send(&deleted);
    let p = trashed.profiles.last().unwrap().1.as_ref().unwrap();
    assert_eq!((p.orders_count, p.revenue), (1, m("100")));
    // order.restored: the whole order back in its status, modified earlier by the shop's clock.
    let mut restored = order(2, "completed", "50.00", 12, 0);
    restored.action = Action::Restored;
    let back = run.send(&restored);
    let p = back.profiles.last().unwrap().1.as_ref().unwrap();
    assert_eq!((p.orders_count, p.revenue), (2, m("150")));
    // A trashed order from the REST API (reconciliation lists status=trash) also stops counting.
    let rest_trash = run.send(&order(1, "trash", "100.00", 21, 0));
    let p = rest_trash.profiles.last().unwrap().1.as_ref().unwrap();
    assert_eq!((p.orders_count, p.revenue), (1, m("50")));
}
