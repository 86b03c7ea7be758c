//! One customer's state, how an order delivery changes it, and how it is scored.
//!
//! WooCommerce delivers an order many times (every save fires `order.updated`, retries repeat
//! deliveries) and not always in order. The ledger keeps the newest version of each order by
//! `date_modified`; a version that is older, or the same again, changes nothing. Two versions
//! saved within the same second (WooCommerce's resolution) are ordered by how far along the
//! order's life their status is, so a late "pending" never undoes a "processing".

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use woostream_core::contract::enriched::{
    ChurnRisk, CustomerProfile, LedgerItem, OrderLedgerEntry, Segment,
};
use woostream_core::contract::events::{Action, Order, OrderEvent, OrderStatus};
use woostream_core::Money;

use crate::clv::{self, History, Spend};
use crate::model::Model;
use crate::rfm::{segment_of, Scores};
use crate::taste::Taste;
use woostream_core::contract::enriched::Replenishment;

pub const DAY_MS: i64 = 86_400_000;

/// The newest version of one order. Amounts in millionths of the currency unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub order_id: i64,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub total: i64,
    pub refunded: i64,
    pub status: OrderStatus,
    /// Paid at some point: set once, never cleared, so "order paid" is announced once.
    pub paid: bool,
    pub payment_method: Option<PaymentMethod>,
    /// A coupon or a discount was applied.
    pub discounted: bool,
    /// The order's largest lines, by product (at most [`LedgerItem::MAX_PER_ORDER`]).
    pub items: Box<[Item]>,
}

/// One product of an order, as the customer's taste counts it. 32 bytes, nothing on the heap:
/// a customer's state stays small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    /// The product (a variation's parent): taste is about products, not sizes.
    pub product_id: i64,
    /// Line total in millionths, after discounts, before tax.
    pub total: i64,
    pub quantity: i32,
    /// The product's first two categories (0: none); WooCommerce term ids fit in 32 bits.
    pub categories: [u32; 2],
}

impl Item {
    pub fn new(product_id: i64, quantity: i32, total: i64, category_ids: &[i64]) -> Item {
        let mut categories = [0u32; 2];
        for (slot, id) in categories.iter_mut().zip(
            category_ids
                .iter()
                .filter_map(|c| u32::try_from(*c).ok())
                .filter(|c| *c > 0),
        ) {
            *slot = id;
        }
        Item {
            product_id,
            total,
            quantity,
            categories,
        }
    }

    pub fn category_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.categories
            .iter()
            .filter(|c| **c > 0)
            .map(|c| i64::from(*c))
    }
}

/// A payment method id (`stripe`, `bacs`, …), interned: a shop has a handful and orders by
/// the million, so each order holds two bytes instead of a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PaymentMethod(u16);

type Interned = (
    Vec<&'static str>,
    std::collections::HashMap<&'static str, u16>,
);

fn payment_methods() -> &'static std::sync::RwLock<Interned> {
    static METHODS: std::sync::OnceLock<std::sync::RwLock<Interned>> = std::sync::OnceLock::new();
    METHODS.get_or_init(Default::default)
}

impl PaymentMethod {
    /// The method named `s`; None beyond 65,535 distinct names (no shop has them).
    pub fn of(s: &str) -> Option<PaymentMethod> {
        if let Some(i) = payment_methods().read().expect("interner lock").1.get(s) {
            return Some(PaymentMethod(*i));
        }
        let mut w = payment_methods().write().expect("interner lock");
        if let Some(i) = w.1.get(s) {
            return Some(PaymentMethod(*i));
        }
        let i = u16::try_from(w.0.len()).ok()?;
        // Leaked once per distinct name: a few dozen bytes for the process's life.
        let name: &'static str = Box::leak(s.to_string().into_boxed_str());
        w.0.push(name);
        w.1.insert(name, i);
        Some(PaymentMethod(i))
    }

    pub fn as_str(self) -> &'static str {
        payment_methods().read().expect("interner lock").0[usize::from(self.0)]
    }
}

/// An order's lines grouped by product, the largest first, capped.
pub fn items_of(order: &Order) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::new();
    for line in &order.line_items {
        let Some(product_id) = line.product_id.filter(|id| *id > 0) else {
            continue;
        };
        match items.iter_mut().find(|i| i.product_id == product_id) {
            Some(i) => {
                i.quantity = i.quantity.saturating_add(line.quantity);
                i.total = i.total.saturating_add(micros(&line.total));
            }
            None => items.push(Item::new(
                product_id,
                line.quantity,
                micros(&line.total),
                &line.category_ids,
            )),
        }
    }
    items.sort_by(|a, b| b.total.cmp(&a.total).then(a.product_id.cmp(&b.product_id)));
    items.truncate(LedgerItem::MAX_PER_ORDER);
    items
}

impl LedgerEntry {
    /// Counts towards orders and revenue: paid and neither cancelled, failed nor refunded.
    pub fn counted(&self) -> bool {
        match self.status {
            OrderStatus::Processing | OrderStatus::Completed | OrderStatus::ReadyForPickup => true,
            OrderStatus::Other => self.paid,
            _ => false,
        }
    }

    /// Revenue this order contributes, net of refunds.
    pub fn net(&self) -> i64 {
        if self.counted() {
            (self.total - self.refunded).max(0)
        } else {
            0
        }
    }
}

pub fn status_slug(status: OrderStatus) -> &'static str {
    use OrderStatus::*;
    match status {
        Pending => "pending",
        Processing => "processing",
        OnHold => "on-hold",
        Completed => "completed",
        Cancelled => "cancelled",
        Refunded => "refunded",
        Failed => "failed",
        Trash => "trash",
        CheckoutDraft => "checkout-draft",
        ReadyForPickup => "ready-for-pickup",
        Draft => "draft",
        Other => "other",
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CustomerState {
    pub customer_id: Option<i64>,
    /// Per-customer profile version; +1 for every change.
    pub version: i64,
    pub as_of_ms: i64,
    pub source_offset: i64,
    /// What the last profile said, to announce changes.
    pub segment: Option<Segment>,
    pub churn_risk: Option<ChurnRisk>,
    pub vip: bool,
    pub currency: Option<Box<str>>,
    pub orders: Vec<LedgerEntry>,
    /// Replenishment cycles announced: (product, the purchase day it was due from). A new
    /// purchase starts a new cycle; an announced one is never announced again.
    pub replenishment_announced: Vec<(i64, i64)>,
    /// Version of the model the newest profile was scored with.
    pub model_version: i64,
}

/// An order delivery that changed the ledger.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderChange {
    pub previous: Option<LedgerEntry>,
    pub current: LedgerEntry,
    /// The customer had no order before this one.
    pub first_order: bool,
}

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// When an order event happened in the shop: its `date_modified`, else its creation, else
/// when woostream received it.
pub fn order_event_time(event: &OrderEvent) -> i64 {
    event
        .order
        .as_ref()
        .and_then(|o| o.modified_at.or(o.created_at))
        .unwrap_or(event.envelope.received_at)
        .timestamp_millis()
}

fn micros(m: &Money) -> i64 {
    m.to_micros().unwrap_or(i64::MAX)
}

fn entry_from(order: &Order, modified_ms: i64, was_paid: bool) -> LedgerEntry {
    let paid_status = matches!(
        order.status,
        OrderStatus::Processing
            | OrderStatus::Completed
            | OrderStatus::ReadyForPickup
            | OrderStatus::Refunded
    );
    LedgerEntry {
        order_id: order.id,
        created_ms: order.created_at.map_or(modified_ms, millis),
        modified_ms,
        total: micros(&order.total),
        refunded: micros(&order.refunded_total),
        status: order.status,
        paid: was_paid
            || paid_status
            || (order.paid_at.is_some()
                && !matches!(order.status, OrderStatus::Failed | OrderStatus::Pending)),
        payment_method: order.payment_method.as_deref().and_then(PaymentMethod::of),
        discounted: !order.coupon_codes.is_empty() || order.discount_total.amount() > Decimal::ZERO,
        items: items_of(order).into_boxed_slice(),
    }
}

impl CustomerState {
    /// Applies one order delivery. `None` when it changes nothing: an older or repeated
    /// version, or a deletion of an order never seen.
    pub fn apply_order(&mut self, event: &OrderEvent) -> Option<OrderChange> {
        let modified_ms = order_event_time(event);
        let index = self
            .orders
            .iter()
            .position(|o| o.order_id == event.order_id);
        let previous = index.map(|i| self.orders[i].clone());
        let current = match (&event.order, &previous) {
            (Some(order), _) => entry_from(
                order,
                modified_ms,
                previous.as_ref().is_some_and(|p| p.paid),
            ),
            // A deleted order stops counting, as if trashed.
            (None, Some(p)) => LedgerEntry {
                status: OrderStatus::Trash,
                modified_ms,
                ..p.clone()
            },
            (None, None) => return None,
        };
        if let Some(p) = &previous {
            let newer = current.modified_ms > p.modified_ms
                || (current.modified_ms == p.modified_ms
                    && (current.status.progress() > p.status.progress()
                        || current.refunded > p.refunded));
            // A restore undoes a trash whatever the clocks say: a deletion of the order alone
            // is timed by when woostream received it, the restore by the shop's clock.
            let restores = event.action == Action::Restored
                && p.status == OrderStatus::Trash
                && current.status != OrderStatus::Trash;
            if !newer && !restores {
                return None;
            }
        }
        if let Some(order) = &event.order {
            if order.customer_id.is_some() {
                self.customer_id = order.customer_id;
            }
            if !order.currency.is_empty() {
                self.currency = Some(order.currency.as_str().into());
            }
        }
        let first_order = self.orders.is_empty();
        match index {
            Some(i) => self.orders[i] = current.clone(),
            None => {
                // Kept sorted by order id so that restored and live state compare equal.
                let at = self
                    .orders
                    .partition_point(|o| o.order_id < current.order_id);
                // Most customers have one or two orders: exact growth, not Vec's minimum of
                // four, keeps the state per customer small.
                self.orders.reserve_exact(1);
                self.orders.insert(at, current.clone());
            }
        }
        Some(OrderChange {
            previous,
            current,
            first_order,
        })
    }
}

/// A customer's figures and scores at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub summary: Summary,
    pub scores: Scores,
    pub segment: Segment,
    pub p_alive: f64,
    pub expected_purchases: [f64; 3],
    pub expected_order_value: f64,
    pub clv: f64,
    pub churn_risk: ChurnRisk,
    pub vip: bool,
    /// When the next purchase is expected (see [`crate::taste::next_purchase`]); set only for
    /// a version that is written ([`Scored::with_next_purchase`]): a daily rescore of every
    /// customer does not pay for it.
    pub next_purchase_ms: Option<i64>,
}

impl Scored {
    /// With the expected next purchase of `state` as of `as_of_ms`.
    pub fn with_next_purchase(mut self, state: &CustomerState, as_of_ms: i64) -> Scored {
        self.next_purchase_ms = crate::taste::next_purchase(
            &crate::taste::purchase_days(state),
            self.expected_purchases[1],
            self.expected_purchases[2],
            as_of_ms,
        );
        self
    }
}

/// The settings scoring needs besides the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoringSettings {
    pub clv_months: u32,
    pub monthly_discount_rate: f64,
}

/// A customer's purchase history in the models' terms, at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub orders_count: u32,
    pub transactions: u32,
    pub revenue: i64,
    pub refunded: i64,
    pub first_order_ms: Option<i64>,
    pub last_order_ms: Option<i64>,
    pub history: History,
    pub spend: Spend,
}

impl Summary {
    pub fn days_since_last_order(&self, as_of_ms: i64) -> f64 {
        self.last_order_ms
            .map_or(f64::INFINITY, |l| ((as_of_ms - l).max(0) / DAY_MS) as f64)
    }
}

/// Counted orders grouped into BG/NBD transactions (UTC days); a transaction's value is the
/// day's net revenue, and Gamma-Gamma's mean leaves out the first transaction, as
/// `lifetimes.utils.summary_data_from_transaction_data` does.
pub fn summarise(state: &CustomerState, as_of_ms: i64) -> Summary {
    let mut orders_count = 0u32;
    let (mut revenue, mut refunded) = (0i64, 0i64);
    // (day, net revenue that day) of counted orders.
    let mut days: Vec<(i64, i64)> = Vec::new();
    let (mut first, mut last) = (None::<i64>, None::<i64>);
    for o in &state.orders {
        refunded = refunded.saturating_add(o.refunded);
        if !o.counted() {
            continue;
        }
        orders_count += 1;
        revenue = revenue.saturating_add(o.net());
        first = Some(first.map_or(o.created_ms, |f: i64| f.min(o.created_ms)));
        last = Some(last.map_or(o.created_ms, |l: i64| l.max(o.created_ms)));
        let day = o.created_ms.div_euclid(DAY_MS);
        match days.iter_mut().find(|(d, _)| *d == day) {
            Some((_, v)) => *v = v.saturating_add(o.net()),
            None => days.push((day, o.net())),
        }
    }
    days.sort_unstable();
    let as_of_day = as_of_ms.div_euclid(DAY_MS);
    let (history, spend) = match (days.first(), days.last()) {
        (Some(&(first_day, _)), Some(&(last_day, _))) => {
            let repeat = &days[1..];
            let mean_value = if repeat.is_empty() {
                0.0
            } else {
                repeat.iter().map(|(_, v)| *v as f64 / 1e6).sum::<f64>() / repeat.len() as f64
            };
            (
                History {
                    frequency: repeat.len() as f64,
                    recency: (last_day - first_day) as f64,
                    age: (as_of_day.max(last_day) - first_day) as f64,
                },
                Spend {
                    frequency: repeat.len() as f64,
                    mean_value,
                },
            )
        }
        _ => (
            History {
                frequency: 0.0,
                recency: 0.0,
                age: 0.0,
            },
            Spend {
                frequency: 0.0,
                mean_value: 0.0,
            },
        ),
    };
    Summary {
        orders_count,
        transactions: days.len() as u32,
        revenue,
        refunded,
        first_order_ms: first,
        last_order_ms: last,
        history,
        spend,
    }
}

pub fn score(
    state: &CustomerState,
    model: &Model,
    settings: &ScoringSettings,
    as_of_ms: i64,
) -> Scored {
    let summary = summarise(state, as_of_ms);
    let (orders_count, revenue, history, spend) = (
        summary.orders_count,
        summary.revenue,
        summary.history,
        summary.spend,
    );
    let days_since_last = summary.days_since_last_order(as_of_ms);
    let scores = model
        .quintiles
        .score(days_since_last, orders_count as f64, revenue as f64 / 1e6);
    let segment = segment_of(scores, orders_count);
    let bg = &model.bgnbd;
    let p_alive = bg.p_alive(history);
    // Months 1 and 3 of the CLV's series are the 30- and 90-day figures, and the year is summed
    // with them: the hypergeometric sums are the largest cost of scoring, and summed together
    // they share each term's coefficient.
    let months = settings.clv_months.max(3) as usize;
    let mut horizons: Vec<f64> = (1..=months).map(|m| m as f64 * 30.0).collect();
    horizons.push(365.0);
    let mut monthly = vec![0.0; horizons.len()];
    bg.expected_purchases_by(&horizons, history, &mut monthly);
    let expected_purchases = [monthly[0], monthly[2], monthly[months]];
    let expected_order_value = model.gamma_gamma.expected_value(spend);
    let clv = clv::lifetime_value_of(
        &monthly[..settings.clv_months as usize],
        expected_order_value,
        settings.monthly_discount_rate,
    );
    let churn_risk = if history.frequency > 0.0 {
        match p_alive {
            p if p >= 0.7 => ChurnRisk::Low,
            p if p >= 0.3 => ChurnRisk::Medium,
            _ => ChurnRisk::High,
        }
    } else {
        // BG/NBD says nothing about one-time buyers' dropout (P(alive) = 1): use recency.
        match scores.recency {
            4..=5 => ChurnRisk::Low,
            2..=3 => ChurnRisk::Medium,
            _ => ChurnRisk::High,
        }
    };
    Scored {
        next_purchase_ms: None,
        summary,
        scores,
        segment,
        p_alive,
        expected_purchases,
        expected_order_value,
        clv,
        churn_risk,
        vip: orders_count > 0 && model.vip_clv_threshold.is_some_and(|t| clv >= t),
    }
}

/// What caused a profile version.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause<'a> {
    pub partition: i32,
    pub offset: i64,
    pub event_id: &'a str,
    pub correlation_id: &'a str,
}

#[allow(clippy::too_many_arguments)]
pub fn to_profile(
    shop_id: &str,
    customer: &str,
    state: &CustomerState,
    scored: &Scored,
    taste: Taste,
    replenishment: &[Replenishment],
    model_version: i64,
    cause: &Cause,
) -> CustomerProfile {
    let average = if scored.summary.orders_count > 0 {
        Money::new(
            Money::from_micros(scored.summary.revenue).amount()
                / rust_decimal::Decimal::from(scored.summary.orders_count),
        )
    } else {
        Money::ZERO
    };
    CustomerProfile {
        shop_id: shop_id.into(),
        customer: customer.into(),
        customer_id: state.customer_id,
        version: state.version,
        model_version,
        as_of: from_millis(state.as_of_ms),
        source_partition: cause.partition,
        source_offset: cause.offset,
        caused_by_event_id: cause.event_id.into(),
        correlation_id: cause.correlation_id.into(),
        currency: state.currency.as_deref().map(String::from),
        orders_count: scored.summary.orders_count as i32,
        transactions: scored.summary.transactions as i32,
        revenue: Money::from_micros(scored.summary.revenue),
        refunded: Money::from_micros(scored.summary.refunded),
        average_order_value: average,
        first_order_at: scored.summary.first_order_ms.map(from_millis),
        last_order_at: scored.summary.last_order_ms.map(from_millis),
        recency_score: scored.scores.recency as i32,
        frequency_score: scored.scores.frequency as i32,
        monetary_score: scored.scores.monetary as i32,
        segment: scored.segment,
        p_alive: scored.p_alive,
        expected_purchases_30d: scored.expected_purchases[0],
        expected_purchases_90d: scored.expected_purchases[1],
        expected_purchases_365d: scored.expected_purchases[2],
        expected_order_value: Money::from_estimate(scored.expected_order_value),
        clv_12_months: Money::from_estimate(scored.clv),
        churn_risk: scored.churn_risk,
        vip: scored.vip,
        orders: state
            .orders
            .iter()
            .map(|o| OrderLedgerEntry {
                order_id: o.order_id,
                created_at: from_millis(o.created_ms),
                modified_at: from_millis(o.modified_ms),
                status: status_slug(o.status).into(),
                total: Money::from_micros(o.total),
                refunded: Money::from_micros(o.refunded),
                paid: o.paid,
                payment_method: o.payment_method.map(|m| m.as_str().to_string()),
                discounted: o.discounted,
                items: o
                    .items
                    .iter()
                    .map(|i| LedgerItem {
                        product_id: i.product_id,
                        quantity: i.quantity,
                        total: Money::from_micros(i.total),
                        category_ids: i.category_ids().collect(),
                    })
                    .collect(),
            })
            .collect(),
        top_categories: taste.top_categories,
        top_products: taste.top_products,
        frequent_products: taste.frequent_products,
        last_products: taste.last_products,
        mean_interval_days: taste.mean_interval_days,
        typical_interval_days: taste.typical_interval_days,
        preferred_payment_method: taste.preferred_payment_method,
        discount_share: taste.discount_share,
        expected_next_purchase_at: scored.next_purchase_ms.map(from_millis),
        replenishment: replenishment.to_vec(),
    }
}

/// The state a profile was written from: what a restarted enricher restores.
pub fn from_profile(profile: &CustomerProfile) -> CustomerState {
    let mut orders: Vec<LedgerEntry> = profile
        .orders
        .iter()
        .map(|o| LedgerEntry {
            order_id: o.order_id,
            created_ms: millis(o.created_at),
            modified_ms: millis(o.modified_at),
            total: micros(&o.total),
            refunded: micros(&o.refunded),
            status: OrderStatus::from_slug(&o.status),
            paid: o.paid,
            payment_method: o.payment_method.as_deref().and_then(PaymentMethod::of),
            discounted: o.discounted,
            items: o
                .items
                .iter()
                .map(|i| Item::new(i.product_id, i.quantity, micros(&i.total), &i.category_ids))
                .collect(),
        })
        .collect();
    orders.sort_by_key(|o| o.order_id);
    CustomerState {
        customer_id: profile.customer_id,
        version: profile.version,
        as_of_ms: millis(profile.as_of),
        source_offset: profile.source_offset,
        segment: (profile.orders_count > 0).then_some(profile.segment),
        churn_risk: (profile.orders_count > 0).then_some(profile.churn_risk),
        vip: profile.vip,
        currency: profile.currency.as_deref().map(Into::into),
        orders,
        model_version: profile.model_version,
        replenishment_announced: profile
            .replenishment
            .iter()
            .filter(|r| r.announced)
            .map(|r| (r.product_id, millis(r.last_bought_at)))
            .collect(),
    }
}
