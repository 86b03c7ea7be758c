//! What a customer buys and when: their taste (categories, products, payment method,
//! discounts), their rhythm, when their next purchase is expected, and which products they are
//! due to buy again. Pure functions of the customer's ledger, the model and the catalogue's
//! names.

use std::collections::HashMap;

use woostream_core::catalogue::NameBook;
use woostream_core::contract::enriched::{ProductPurchase, Replenishment, TasteEntry};
use woostream_core::Money;

use crate::customer::{from_millis, CustomerState, DAY_MS};

/// Entries kept in each list of a profile: enough for a CRM field or a message, and the
/// profile stays small.
pub const LIST_LIMIT: usize = 5;

/// A customer's taste, as the profile carries it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Taste {
    pub top_categories: Vec<TasteEntry>,
    pub top_products: Vec<TasteEntry>,
    pub frequent_products: Vec<TasteEntry>,
    pub last_products: Vec<ProductPurchase>,
    pub mean_interval_days: Option<f64>,
    pub typical_interval_days: Option<f64>,
    pub preferred_payment_method: Option<String>,
    pub discount_share: f64,
}

#[derive(Clone, Copy, Default)]
struct Tally {
    id: i64,
    revenue: i64,
    orders: i32,
    quantity: i32,
}

/// The tally of `id` in `tallies`: a customer has a handful of products and categories, so a
/// linear search beats hashing.
fn tally(tallies: &mut Vec<Tally>, id: i64) -> &mut Tally {
    let at = match tallies.iter().position(|t| t.id == id) {
        Some(at) => at,
        None => {
            tallies.push(Tally {
                id,
                ..Tally::default()
            });
            tallies.len() - 1
        }
    };
    &mut tallies[at]
}

fn entries(
    mut tallies: Vec<Tally>,
    name: impl Fn(i64) -> Option<String>,
    by_count: bool,
) -> Vec<TasteEntry> {
    tallies.sort_by(|a, b| {
        let primary = if by_count {
            (b.orders, b.quantity, b.revenue).cmp(&(a.orders, a.quantity, a.revenue))
        } else {
            (b.revenue, b.orders).cmp(&(a.revenue, a.orders))
        };
        primary.then(a.id.cmp(&b.id))
    });
    tallies
        .into_iter()
        .take(LIST_LIMIT)
        .map(|t| TasteEntry {
            id: t.id,
            name: name(t.id),
            revenue: Money::from_micros(t.revenue),
            orders: t.orders,
            quantity: t.quantity,
        })
        .collect()
}

/// The UTC days of the customer's counted orders, sorted, each once.
pub fn purchase_days(state: &CustomerState) -> Vec<i64> {
    let mut days: Vec<i64> = state
        .orders
        .iter()
        .filter(|o| o.counted())
        .map(|o| o.created_ms.div_euclid(DAY_MS))
        .collect();
    days.sort_unstable();
    days.dedup();
    days
}

/// Days between consecutive purchase days.
fn intervals(days: &[i64]) -> Vec<f64> {
    days.windows(2).map(|w| (w[1] - w[0]) as f64).collect()
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The customer's taste from their counted orders.
pub fn taste_of(state: &CustomerState, shop_id: &str, names: &dyn NameBook) -> Taste {
    let mut products: Vec<Tally> = Vec::new();
    let mut categories: Vec<Tally> = Vec::new();
    // (method, orders, newest order): the most used, the newest on a tie.
    let mut payments: Vec<(crate::customer::PaymentMethod, u32, i64)> = Vec::new();
    let (mut counted, mut discounted) = (0u32, 0u32);
    for o in state.orders.iter().filter(|o| o.counted()) {
        counted += 1;
        discounted += u32::from(o.discounted);
        if let Some(m) = o.payment_method {
            match payments.iter_mut().find(|p| p.0 == m) {
                Some(p) => {
                    p.1 += 1;
                    p.2 = p.2.max(o.created_ms);
                }
                None => payments.push((m, 1, o.created_ms)),
            }
        }
        let mut seen_categories =
            [0i64; 2 * woostream_core::contract::enriched::LedgerItem::MAX_PER_ORDER];
        let mut seen = 0;
        for item in o.items.iter() {
            let p = tally(&mut products, item.product_id);
            p.revenue = p.revenue.saturating_add(item.total);
            p.orders += 1;
            p.quantity = p.quantity.saturating_add(item.quantity);
            for c in item.category_ids() {
                let t = tally(&mut categories, c);
                t.revenue = t.revenue.saturating_add(item.total);
                t.quantity = t.quantity.saturating_add(item.quantity);
                if !seen_categories[..seen].contains(&c) {
                    seen_categories[seen] = c;
                    seen += 1;
                    t.orders += 1;
                }
            }
        }
    }
    let product_name = |id| names.product_name(shop_id, id);
    let frequent_products = entries(products.clone(), product_name, true);
    let mut newest: Vec<&crate::customer::LedgerEntry> =
        state.orders.iter().filter(|o| o.counted()).collect();
    newest.sort_by(|a, b| {
        b.created_ms
            .cmp(&a.created_ms)
            .then(b.order_id.cmp(&a.order_id))
    });
    let mut last_products: Vec<ProductPurchase> = Vec::new();
    'orders: for o in newest {
        for item in o.items.iter() {
            if last_products.len() == LIST_LIMIT {
                break 'orders;
            }
            if last_products
                .iter()
                .all(|p| p.product_id != item.product_id)
            {
                last_products.push(ProductPurchase {
                    product_id: item.product_id,
                    name: product_name(item.product_id),
                    bought_at: from_millis(o.created_ms),
                });
            }
        }
    }
    let mut gaps = intervals(&purchase_days(state));
    let mean_interval_days =
        (!gaps.is_empty()).then(|| gaps.iter().sum::<f64>() / gaps.len() as f64);
    Taste {
        top_categories: entries(categories, |id| names.category_name(shop_id, id), false),
        top_products: entries(products, product_name, false),
        frequent_products,
        last_products,
        mean_interval_days,
        typical_interval_days: median(&mut gaps),
        preferred_payment_method: payments
            .into_iter()
            .max_by(|a, b| (a.1, a.2).cmp(&(b.1, b.2)))
            .map(|(m, _, _)| m.as_str().to_string()),
        discount_share: if counted == 0 {
            0.0
        } else {
            f64::from(discounted) / f64::from(counted)
        },
    }
}

/// When the customer's next purchase is expected, in milliseconds, as of `as_of_ms`.
///
/// Two estimates, blended:
/// - the model's waiting time: the horizon over which BG/NBD expects one purchase, from its
///   90-day expectation when that is at least one purchase, else from its 365-day expectation
///   when that is at least half a purchase; none otherwise (the model expects the customer to
///   have left, and so does this function);
/// - the customer's own rhythm: their last purchase day plus their median interval.
///
/// The weight of the rhythm grows with the intervals behind it: n / (n + 2), so one interval
/// counts a third and six count three quarters. The result is never before `as_of_ms`.
pub fn next_purchase(
    days: &[i64],
    expected_90d: f64,
    expected_365d: f64,
    as_of_ms: i64,
) -> Option<i64> {
    let model_days = if expected_90d >= 1.0 {
        90.0 / expected_90d
    } else if expected_365d >= 0.5 {
        365.0 / expected_365d
    } else {
        return None;
    };
    let model_ms = as_of_ms as f64 + model_days * DAY_MS as f64;
    let mut gaps = intervals(days);
    let n = gaps.len() as f64;
    let blended = match (days.last(), median(&mut gaps)) {
        (Some(last), Some(typical)) => {
            let w = n / (n + 2.0);
            let own_ms = (*last as f64 + typical) * DAY_MS as f64;
            w * own_ms + (1.0 - w) * model_ms
        }
        _ => model_ms,
    };
    Some((blended as i64).max(as_of_ms))
}

/// The products the customer is expected to buy again, soonest due first (at most
/// [`LIST_LIMIT`]), and those that became due as of `as_of_ms` and were not announced in this
/// cycle yet.
pub fn replenishment(
    state: &CustomerState,
    intervals: &HashMap<i64, f64>,
    margin: f64,
    as_of_ms: i64,
    shop_id: &str,
    names: &dyn NameBook,
) -> (Vec<Replenishment>, Vec<Replenishment>) {
    if intervals.is_empty() {
        return (Vec::new(), Vec::new());
    }
    // (product, newest purchase): a handful per customer.
    let mut last_bought: Vec<(i64, i64)> = Vec::new();
    for o in state.orders.iter().filter(|o| o.counted()) {
        for item in o.items.iter() {
            if intervals.contains_key(&item.product_id) {
                match last_bought.iter_mut().find(|(p, _)| *p == item.product_id) {
                    Some((_, last)) => *last = (*last).max(o.created_ms),
                    None => last_bought.push((item.product_id, o.created_ms)),
                }
            }
        }
    }
    let mut all: Vec<Replenishment> = last_bought
        .into_iter()
        .map(|(product_id, last)| {
            let interval = intervals[&product_id];
            let due = last + (interval * (1.0 + margin) * DAY_MS as f64) as i64;
            Replenishment {
                product_id,
                name: None,
                last_bought_at: from_millis(last),
                interval_days: interval,
                due_at: from_millis(due),
                announced: state.replenishment_announced.contains(&(product_id, last)),
            }
        })
        .collect();
    all.sort_by_key(|r| (r.due_at, r.product_id));
    all.truncate(LIST_LIMIT);
    for r in &mut all {
        r.name = names.product_name(shop_id, r.product_id);
    }
    let due: Vec<Replenishment> = all
        .iter()
        .filter(|r| !r.announced && r.due_at.timestamp_millis() <= as_of_ms)
        .cloned()
        .collect();
    (all, due)
}

/// Whether any product became due as of `as_of_ms` (the cheap check a daily rescore makes
/// before building profiles).
pub fn any_newly_due(
    state: &CustomerState,
    intervals: &HashMap<i64, f64>,
    margin: f64,
    as_of_ms: i64,
) -> bool {
    if intervals.is_empty() {
        return false;
    }
    !replenishment(
        state,
        intervals,
        margin,
        as_of_ms,
        "",
        &woostream_core::catalogue::NoNames,
    )
    .1
    .is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::{Item, LedgerEntry};
    use woostream_core::catalogue::NoNames;
    use woostream_core::contract::events::OrderStatus;

    struct Book;
    impl NameBook for Book {
        fn product_name(&self, _: &str, id: i64) -> Option<String> {
            Some(format!("product {id}"))
        }
        fn category_name(&self, _: &str, id: i64) -> Option<String> {
            (id == 17).then(|| "Coffee beans".to_string())
        }
    }

    fn order(
        id: i64,
        day: i64,
        items: &[(i64, i32, i64, &[i64])],
        method: &str,
        discounted: bool,
    ) -> LedgerEntry {
        LedgerEntry {
            order_id: id,
            created_ms: day * DAY_MS + 3_600_000,
            modified_ms: day * DAY_MS + 3_600_000,
            total: items.iter().map(|i| i.2).sum(),
            refunded: 0,
            status: OrderStatus::Completed,
            paid: true,
            payment_method: crate::customer::PaymentMethod::of(method),
            discounted,
            items: items
                .iter()
                .map(|(p, q, t, c)| Item::new(*p, *q, *t, c))
                .collect(),
        }
    }

    fn coffee_buyer() -> CustomerState {
        CustomerState {
            orders: vec![
                order(
                    1,
                    100,
                    &[(5, 1, 30_000_000, &[17]), (9, 1, 80_000_000, &[3])],
                    "card",
                    false,
                ),
                order(2, 130, &[(5, 2, 60_000_000, &[17])], "card", true),
                order(3, 160, &[(5, 1, 30_000_000, &[17])], "paypal", false),
                order(4, 200, &[(5, 1, 30_000_000, &[17])], "card", false),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn taste_ranks_by_revenue_and_by_count_with_names() {
        let t = taste_of(&coffee_buyer(), "main", &Book);
        assert_eq!(t.top_categories[0].name.as_deref(), Some("Coffee beans"));
        assert_eq!(t.top_categories[0].revenue, Money::from_micros(150_000_000));
        assert_eq!(t.top_categories[0].orders, 4);
        assert_eq!(
            t.top_categories[1].name, None,
            "an unknown category has no name"
        );
        // By revenue product 5 (150) beats product 9 (80); by count too (4 orders against 1).
        assert_eq!(t.top_products[0].id, 5);
        assert_eq!(t.top_products[0].quantity, 5);
        assert_eq!(t.frequent_products[0].id, 5);
        assert_eq!(t.frequent_products[0].orders, 4);
        assert_eq!(t.last_products[0].product_id, 5);
        assert_eq!(t.last_products[1].product_id, 9);
        assert_eq!(t.preferred_payment_method.as_deref(), Some("card"));
        assert_eq!(t.discount_share, 0.25);
        assert_eq!(t.mean_interval_days, Some((30.0 + 30.0 + 40.0) / 3.0));
        assert_eq!(t.typical_interval_days, Some(30.0));
    }

    #[test]
    fn uncounted_orders_do_not_shape_taste() {
        let mut s = coffee_buyer();
        for o in &mut s.orders {
            o.status = OrderStatus::Cancelled;
        }
        let t = taste_of(&s, "main", &NoNames);
        assert!(t.top_products.is_empty() && t.last_products.is_empty());
        assert_eq!(t.discount_share, 0.0);
        assert_eq!(t.typical_interval_days, None);
    }

    #[test]
    fn lists_are_capped() {
        let items: Vec<(i64, i32, i64, &[i64])> =
            (1..=8).map(|p| (p, 1, p * 1_000_000, &[][..])).collect();
        let s = CustomerState {
            orders: vec![order(1, 10, &items, "card", false)],
            ..Default::default()
        };
        let t = taste_of(&s, "main", &NoNames);
        assert_eq!(t.top_products.len(), LIST_LIMIT);
        assert_eq!(t.top_products[0].id, 8);
        assert_eq!(t.last_products.len(), LIST_LIMIT);
    }

    #[test]
    fn next_purchase_blends_the_model_with_the_customers_rhythm() {
        let as_of = 200 * DAY_MS;
        // The model alone: one purchase expected in 90 / 1.5 = 60 days.
        assert_eq!(
            next_purchase(&[200], 1.5, 5.0, as_of),
            Some(as_of + 60 * DAY_MS)
        );
        // Three intervals of 30 days weigh 3/5: 0.6 x (day 230) + 0.4 x (day 260) = day 242.
        let got = next_purchase(&[110, 140, 170, 200], 1.5, 5.0, as_of).unwrap();
        assert_eq!(got, 242 * DAY_MS);
        // A model that expects under half a purchase in a year: no date.
        assert_eq!(next_purchase(&[110, 140], 0.01, 0.2, as_of), None);
        // Never in the past.
        assert_eq!(
            next_purchase(&[10, 11], 0.1, 0.6, 400 * DAY_MS).map(|t| t >= 400 * DAY_MS),
            Some(true)
        );
    }

    #[test]
    fn replenishment_is_due_past_the_interval_and_announced_once_per_cycle() {
        let mut s = coffee_buyer();
        let intervals = HashMap::from([(5, 30.0)]);
        // Last bought on day 200; due at 200 + 30 x 1.2 = day 236.
        let (all, due) = replenishment(&s, &intervals, 0.2, 235 * DAY_MS, "main", &Book);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].due_at.timestamp_millis(), 236 * DAY_MS + 3_600_000);
        assert_eq!(all[0].name.as_deref(), Some("product 5"));
        assert!(due.is_empty());
        let (_, due) = replenishment(&s, &intervals, 0.2, 237 * DAY_MS, "main", &Book);
        assert_eq!(due.len(), 1);
        assert!(any_newly_due(&s, &intervals, 0.2, 237 * DAY_MS));
        // Announced: never again in this cycle.
        s.replenishment_announced
            .push((5, due[0].last_bought_at.timestamp_millis()));
        assert!(!any_newly_due(&s, &intervals, 0.2, 300 * DAY_MS));
        // A new purchase starts a new cycle.
        s.orders
            .push(order(5, 240, &[(5, 1, 30_000_000, &[17])], "card", false));
        let (all, due) = replenishment(&s, &intervals, 0.2, 300 * DAY_MS, "main", &Book);
        assert!(!all[0].announced);
        assert_eq!(due.len(), 1);
        // Products without a learned interval are never due.
        assert!(
            replenishment(&s, &HashMap::new(), 0.2, 900 * DAY_MS, "main", &Book)
                .0
                .is_empty()
        );
    }
}
