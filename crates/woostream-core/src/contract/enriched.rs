//! What the enricher publishes: customer profiles, alerts and the shop's population model.
//! The Rust side of `schemas/customer-profile.avsc`, `alert.avsc`, `alert-key.avsc` and
//! `shop-model.avsc`; field order follows the schemas.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::money::{ts_millis, Money};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChurnRisk {
    Low,
    Medium,
    High,
}

impl ChurnRisk {
    pub fn as_str(self) -> &'static str {
        match self {
            ChurnRisk::Low => "LOW",
            ChurnRisk::Medium => "MEDIUM",
            ChurnRisk::High => "HIGH",
        }
    }
}

/// The 11 RFM segments, in the schema's symbol order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Segment {
    Champions,
    LoyalCustomers,
    PotentialLoyalist,
    NewCustomers,
    Promising,
    NeedAttention,
    AboutToSleep,
    AtRisk,
    CantLoseThem,
    Hibernating,
    Lost,
}

impl Segment {
    pub const ALL: [Segment; 11] = [
        Segment::Champions,
        Segment::LoyalCustomers,
        Segment::PotentialLoyalist,
        Segment::NewCustomers,
        Segment::Promising,
        Segment::NeedAttention,
        Segment::AboutToSleep,
        Segment::AtRisk,
        Segment::CantLoseThem,
        Segment::Hibernating,
        Segment::Lost,
    ];

    /// The name people read, as the R `rfm` package writes it.
    pub fn name(self) -> &'static str {
        match self {
            Segment::Champions => "Champions",
            Segment::LoyalCustomers => "Loyal Customers",
            Segment::PotentialLoyalist => "Potential Loyalist",
            Segment::NewCustomers => "New Customers",
            Segment::Promising => "Promising",
            Segment::NeedAttention => "Need Attention",
            Segment::AboutToSleep => "About To Sleep",
            Segment::AtRisk => "At Risk",
            Segment::CantLoseThem => "Can't Lose Them",
            Segment::Hibernating => "Hibernating",
            Segment::Lost => "Lost",
        }
    }

    pub fn from_name(name: &str) -> Option<Segment> {
        Segment::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderLedgerEntry {
    pub order_id: i64,
    #[serde(with = "ts_millis")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "ts_millis")]
    pub modified_at: DateTime<Utc>,
    pub status: String,
    pub total: Money,
    pub refunded: Money,
    pub paid: bool,
    #[serde(default)]
    pub payment_method: Option<String>,
    #[serde(default)]
    pub discounted: bool,
    #[serde(default)]
    pub items: Vec<LedgerItem>,
}

/// One product of an order in the ledger (the largest lines, at most
/// [`LedgerItem::MAX_PER_ORDER`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerItem {
    pub product_id: i64,
    pub quantity: i32,
    pub total: Money,
    #[serde(default)]
    pub category_ids: Vec<i64>,
}

impl LedgerItem {
    /// Lines kept per order: a customer's taste needs the main products, and the state stays
    /// bounded whatever a B2B order of 300 lines holds.
    pub const MAX_PER_ORDER: usize = 8;
}

/// A category or product in a customer's taste.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TasteEntry {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    pub revenue: Money,
    pub orders: i32,
    pub quantity: i32,
}

/// A product the customer bought, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductPurchase {
    pub product_id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(with = "ts_millis")]
    pub bought_at: DateTime<Utc>,
}

/// A product the customer is expected to buy again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replenishment {
    pub product_id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(with = "ts_millis")]
    pub last_bought_at: DateTime<Utc>,
    pub interval_days: f64,
    #[serde(with = "ts_millis")]
    pub due_at: DateTime<Utc>,
    #[serde(default)]
    pub announced: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerProfile {
    pub shop_id: String,
    pub customer: String,
    pub customer_id: Option<i64>,
    pub version: i64,
    pub model_version: i64,
    #[serde(with = "ts_millis")]
    pub as_of: DateTime<Utc>,
    pub source_partition: i32,
    pub source_offset: i64,
    pub caused_by_event_id: String,
    pub correlation_id: String,
    pub currency: Option<String>,
    pub orders_count: i32,
    pub transactions: i32,
    pub revenue: Money,
    pub refunded: Money,
    pub average_order_value: Money,
    #[serde(with = "ts_millis::option")]
    pub first_order_at: Option<DateTime<Utc>>,
    #[serde(with = "ts_millis::option")]
    pub last_order_at: Option<DateTime<Utc>>,
    pub recency_score: i32,
    pub frequency_score: i32,
    pub monetary_score: i32,
    pub segment: Segment,
    pub p_alive: f64,
    pub expected_purchases_30d: f64,
    pub expected_purchases_90d: f64,
    pub expected_purchases_365d: f64,
    pub expected_order_value: Money,
    pub clv_12_months: Money,
    pub churn_risk: ChurnRisk,
    pub vip: bool,
    pub orders: Vec<OrderLedgerEntry>,
    #[serde(default)]
    pub top_categories: Vec<TasteEntry>,
    #[serde(default)]
    pub top_products: Vec<TasteEntry>,
    #[serde(default)]
    pub frequent_products: Vec<TasteEntry>,
    #[serde(default)]
    pub last_products: Vec<ProductPurchase>,
    #[serde(default)]
    pub mean_interval_days: Option<f64>,
    #[serde(default)]
    pub typical_interval_days: Option<f64>,
    #[serde(default)]
    pub preferred_payment_method: Option<String>,
    #[serde(default)]
    pub discount_share: f64,
    #[serde(default, with = "ts_millis::option")]
    pub expected_next_purchase_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub replenishment: Vec<Replenishment>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertKind {
    OrderPlaced,
    OrderPaid,
    OrderStatusChanged,
    PaymentFailed,
    OrderRefunded,
    HighValueOrder,
    FirstOrder,
    StockLow,
    OutOfStock,
    BackInStock,
    ReviewPosted,
    NegativeReview,
    SegmentChanged,
    BecameVip,
    /// WooCommerce had disabled one of the shop's webhooks after failed deliveries; the REST
    /// role re-enabled it (deliveries in between were lost and reconciled).
    WebhookDisabled,
    /// A person was erased: the enricher dropped their profile; the Slack sink forgets their
    /// order threads. Never posted.
    CustomerErased,
    /// A customer passed their repurchase interval for a product (once per cycle).
    ReplenishmentDue,
    /// A customer's churn-risk band changed.
    ChurnRiskChanged,
    /// A buyer wrote a note at checkout.
    CustomerQuestion,
}

impl AlertKind {
    pub const ALL: [AlertKind; 19] = [
        AlertKind::OrderPlaced,
        AlertKind::OrderPaid,
        AlertKind::OrderStatusChanged,
        AlertKind::PaymentFailed,
        AlertKind::OrderRefunded,
        AlertKind::HighValueOrder,
        AlertKind::FirstOrder,
        AlertKind::StockLow,
        AlertKind::OutOfStock,
        AlertKind::BackInStock,
        AlertKind::ReviewPosted,
        AlertKind::NegativeReview,
        AlertKind::SegmentChanged,
        AlertKind::BecameVip,
        AlertKind::WebhookDisabled,
        AlertKind::CustomerErased,
        AlertKind::ReplenishmentDue,
        AlertKind::ChurnRiskChanged,
        AlertKind::CustomerQuestion,
    ];

    /// snake_case name, as used in metrics and rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::OrderPlaced => "order_placed",
            AlertKind::OrderPaid => "order_paid",
            AlertKind::OrderStatusChanged => "order_status_changed",
            AlertKind::PaymentFailed => "payment_failed",
            AlertKind::OrderRefunded => "order_refunded",
            AlertKind::HighValueOrder => "high_value_order",
            AlertKind::FirstOrder => "first_order",
            AlertKind::StockLow => "stock_low",
            AlertKind::OutOfStock => "out_of_stock",
            AlertKind::BackInStock => "back_in_stock",
            AlertKind::ReviewPosted => "review_posted",
            AlertKind::NegativeReview => "negative_review",
            AlertKind::SegmentChanged => "segment_changed",
            AlertKind::BecameVip => "became_vip",
            AlertKind::WebhookDisabled => "webhook_disabled",
            AlertKind::CustomerErased => "customer_erased",
            AlertKind::ReplenishmentDue => "replenishment_due",
            AlertKind::ChurnRiskChanged => "churn_risk_changed",
            AlertKind::CustomerQuestion => "customer_question",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertItem {
    pub product_id: Option<i64>,
    pub variation_id: Option<i64>,
    pub name: String,
    pub sku: Option<String>,
    pub quantity: i32,
    pub total: Money,
    pub category_ids: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertOrder {
    pub order_id: i64,
    pub number: String,
    pub status: String,
    pub previous_status: Option<String>,
    pub currency: String,
    pub total: Money,
    pub refunded_total: Money,
    pub payment_method: Option<String>,
    pub payment_method_title: Option<String>,
    pub created_via: Option<String>,
    #[serde(with = "ts_millis::option")]
    pub created_at: Option<DateTime<Utc>>,
    pub items: Vec<AlertItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertCustomer {
    pub customer: String,
    pub customer_id: Option<i64>,
    pub first_name_initial: Option<String>,
    pub segment: String,
    pub previous_segment: Option<String>,
    pub orders_count: i32,
    pub revenue: Money,
    pub clv_12_months: Money,
    pub p_alive: f64,
    pub churn_risk: String,
    pub vip: bool,
    pub profile_version: i64,
    #[serde(default)]
    pub previous_churn_risk: Option<String>,
    #[serde(default)]
    pub top_category: Option<String>,
    #[serde(default)]
    pub typical_interval_days: Option<f64>,
    #[serde(default, with = "ts_millis::option")]
    pub expected_next_purchase_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertProduct {
    pub product_id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub sku: Option<String>,
    pub stock_quantity: Option<i64>,
    pub previous_stock_quantity: Option<i64>,
    pub stock_status: String,
    pub low_stock_threshold: i64,
    pub category_ids: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertReview {
    pub review_id: i64,
    pub product_id: i64,
    pub product_name: Option<String>,
    pub rating: i32,
    pub verified: bool,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub kind: AlertKind,
    pub shop_id: String,
    #[serde(with = "ts_millis")]
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: String,
    pub caused_by_event_id: String,
    pub order: Option<AlertOrder>,
    pub customer: Option<AlertCustomer>,
    pub product: Option<AlertProduct>,
    pub review: Option<AlertReview>,
    /// How the cause was obtained (webhook, backfill, reconciliation, polling).
    #[serde(default)]
    pub origin: crate::contract::events::Origin,
    /// Set on `CustomerErased` alerts: what the sinks must forget.
    #[serde(default)]
    pub erasure: Option<AlertErasure>,
    /// Set on `ReplenishmentDue` alerts.
    #[serde(default)]
    pub replenishment: Option<AlertReplenishment>,
    /// Set on `CustomerQuestion` alerts.
    #[serde(default)]
    pub question: Option<AlertQuestion>,
}

/// A customer due to buy a product again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertReplenishment {
    pub product_id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(with = "ts_millis")]
    pub last_bought_at: DateTime<Utc>,
    pub interval_days: f64,
    #[serde(with = "ts_millis")]
    pub due_at: DateTime<Utc>,
}

/// What a buyer wrote at checkout; `note` is sealed under the person's key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertQuestion {
    pub note: String,
}

/// What the sinks must forget about an erased person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertErasure {
    pub erasure_id: String,
    pub order_ids: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    pub shop_id: String,
    pub subject: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShopModel {
    pub shop_id: String,
    pub version: i64,
    #[serde(with = "ts_millis")]
    pub fitted_at: DateTime<Utc>,
    pub customers: i64,
    pub repeat_customers: i64,
    pub bgnbd_fitted: bool,
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub gamma_gamma_fitted: bool,
    pub p: f64,
    pub q: f64,
    pub v: f64,
    pub recency_days_quintiles: Vec<f64>,
    pub frequency_quintiles: Vec<f64>,
    pub monetary_quintiles: Vec<f64>,
    pub vip_clv_threshold: f64,
    pub order_value_p95: f64,
    pub fit_seconds: f64,
    #[serde(default, with = "ts_millis::option")]
    pub as_of: Option<DateTime<Utc>>,
    #[serde(default)]
    pub repurchase_intervals: Vec<RepurchaseInterval>,
}

/// How long the shop's customers take to buy a product again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepurchaseInterval {
    pub product_id: i64,
    #[serde(default)]
    pub name: Option<String>,
    pub median_days: f64,
    pub customers: i32,
}

/// How well a model fitted at a cut-off predicted what customers did next
/// (`schemas/backtest.avsc`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backtest {
    pub shop_id: String,
    #[serde(with = "ts_millis")]
    pub run_at: DateTime<Utc>,
    #[serde(with = "ts_millis")]
    pub as_of: DateTime<Utc>,
    pub horizon_days: i32,
    pub customers: i64,
    pub repeat_customers: i64,
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub p: f64,
    pub q: f64,
    pub v: f64,
    pub predicted_purchases: f64,
    pub actual_purchases: f64,
    pub predicted_spend: f64,
    pub actual_spend: f64,
    pub mean_absolute_error: f64,
    pub deciles: Vec<CalibrationGroup>,
    pub by_frequency: Vec<CalibrationGroup>,
    pub segments: Vec<SegmentReturn>,
    pub p_alive_auc: f64,
    pub expected_purchases_auc: f64,
}

/// Predicted against actual purchases for one group of customers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationGroup {
    pub group: String,
    pub customers: i64,
    pub predicted: f64,
    pub actual: f64,
}

/// How many of a segment came back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentReturn {
    pub segment: String,
    pub customers: i64,
    pub returned: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::codec::tests::round_trip;
    use chrono::TimeZone;

    fn m(s: &str) -> Money {
        Money::new(s.parse().unwrap())
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 9, 30, 0).unwrap()
    }

    pub(crate) fn profile(segment: Segment, churn_risk: ChurnRisk) -> CustomerProfile {
        CustomerProfile {
            shop_id: "main".into(),
            customer: "25".into(),
            customer_id: Some(25),
            version: 3,
            model_version: 0,
            as_of: at(),
            source_partition: 2,
            source_offset: 41,
            caused_by_event_id: "e".into(),
            correlation_id: "c".into(),
            currency: Some("PLN".into()),
            orders_count: 2,
            transactions: 2,
            revenue: m("120.50"),
            refunded: m("0"),
            average_order_value: m("60.25"),
            first_order_at: Some(at()),
            last_order_at: None,
            recency_score: 5,
            frequency_score: 3,
            monetary_score: 2,
            segment,
            p_alive: 0.93,
            expected_purchases_30d: 0.1,
            expected_purchases_90d: 0.25,
            expected_purchases_365d: 0.8,
            expected_order_value: m("58.123456"),
            clv_12_months: m("44.10"),
            churn_risk,
            vip: false,
            orders: vec![OrderLedgerEntry {
                order_id: 727,
                created_at: at(),
                modified_at: at(),
                status: "processing".into(),
                total: m("60.25"),
                refunded: m("0"),
                paid: true,
                payment_method: Some("stripe".into()),
                discounted: true,
                items: vec![LedgerItem {
                    product_id: 93,
                    quantity: 2,
                    total: m("60.25"),
                    category_ids: vec![17],
                }],
            }],
            top_categories: vec![TasteEntry {
                id: 17,
                name: Some("Coffee beans".into()),
                revenue: m("60.25"),
                orders: 1,
                quantity: 2,
            }],
            top_products: vec![TasteEntry {
                id: 93,
                name: None,
                revenue: m("60.25"),
                orders: 1,
                quantity: 2,
            }],
            frequent_products: vec![],
            last_products: vec![ProductPurchase {
                product_id: 93,
                name: Some("Beans".into()),
                bought_at: at(),
            }],
            mean_interval_days: Some(31.5),
            typical_interval_days: Some(30.0),
            preferred_payment_method: Some("stripe".into()),
            discount_share: 0.5,
            expected_next_purchase_at: Some(at()),
            replenishment: vec![Replenishment {
                product_id: 93,
                name: Some("Beans".into()),
                last_bought_at: at(),
                interval_days: 30.0,
                due_at: at(),
                announced: true,
            }],
        }
    }

    #[test]
    fn every_insight_round_trips_through_its_schema_with_every_enum_symbol() {
        for (i, segment) in Segment::ALL.into_iter().enumerate() {
            let risk = [ChurnRisk::Low, ChurnRisk::Medium, ChurnRisk::High][i % 3];
            round_trip(profile(segment, risk));
        }
        for kind in AlertKind::ALL {
            round_trip(Alert {
                alert_id: "a".into(),
                kind,
                shop_id: "main".into(),
                occurred_at: at(),
                correlation_id: "c".into(),
                caused_by_event_id: "e".into(),
                order: Some(AlertOrder {
                    order_id: 727,
                    number: "727".into(),
                    status: "processing".into(),
                    previous_status: Some("pending".into()),
                    currency: "PLN".into(),
                    total: m("10"),
                    refunded_total: m("0"),
                    payment_method: Some("bacs".into()),
                    payment_method_title: None,
                    created_via: Some("checkout".into()),
                    created_at: Some(at()),
                    items: vec![AlertItem {
                        product_id: Some(1),
                        variation_id: None,
                        name: "Hoodie".into(),
                        sku: None,
                        quantity: 2,
                        total: m("10"),
                        category_ids: vec![9, 10],
                    }],
                }),
                customer: Some(AlertCustomer {
                    customer: "25".into(),
                    customer_id: None,
                    first_name_initial: Some("J".into()),
                    segment: "At Risk".into(),
                    previous_segment: Some("Champions".into()),
                    orders_count: 1,
                    revenue: m("10"),
                    clv_12_months: m("3.5"),
                    p_alive: 1.0,
                    churn_risk: "LOW".into(),
                    vip: true,
                    profile_version: 1,
                    previous_churn_risk: Some("LOW".into()),
                    top_category: Some("Coffee beans".into()),
                    typical_interval_days: Some(30.0),
                    expected_next_purchase_at: Some(at()),
                }),
                product: Some(AlertProduct {
                    product_id: 5,
                    parent_id: None,
                    name: "Mug".into(),
                    sku: None,
                    stock_quantity: Some(2),
                    previous_stock_quantity: Some(8),
                    stock_status: "instock".into(),
                    low_stock_threshold: 5,
                    category_ids: vec![],
                }),
                review: Some(AlertReview {
                    review_id: 1,
                    product_id: 5,
                    product_name: None,
                    rating: 1,
                    verified: true,
                    text: "broke".into(),
                }),
                origin: crate::contract::events::Origin::Backfill,
                erasure: None,
                replenishment: Some(AlertReplenishment {
                    product_id: 93,
                    name: None,
                    last_bought_at: at(),
                    interval_days: 30.0,
                    due_at: at(),
                }),
                question: Some(AlertQuestion {
                    note: "ws1.x".into(),
                }),
            });
        }
        round_trip(AlertKey {
            shop_id: "main".into(),
            subject: "customer:25".into(),
        });
        round_trip(ShopModel {
            shop_id: "main".into(),
            version: 1,
            fitted_at: at(),
            customers: 10,
            repeat_customers: 2,
            bgnbd_fitted: true,
            r: 0.24,
            alpha: 30.9,
            a: 0.79,
            b: 2.43,
            gamma_gamma_fitted: false,
            p: 6.25,
            q: 3.74,
            v: 15.44,
            recency_days_quintiles: vec![1.0, 2.0, 3.0, 4.0],
            frequency_quintiles: vec![1.0, 1.0, 1.0, 2.0],
            monetary_quintiles: vec![1.0, 2.0, 3.0, 4.0],
            vip_clv_threshold: 100.0,
            order_value_p95: 250.0,
            fit_seconds: 0.01,
            as_of: Some(at()),
            repurchase_intervals: vec![RepurchaseInterval {
                product_id: 93,
                name: Some("Beans".into()),
                median_days: 30.0,
                customers: 12,
            }],
        });
        round_trip(Backtest {
            shop_id: "main".into(),
            run_at: at(),
            as_of: at(),
            horizon_days: 273,
            customers: 2357,
            repeat_customers: 1000,
            r: 0.24,
            alpha: 4.4,
            a: 0.79,
            b: 2.4,
            p: 6.2,
            q: 3.7,
            v: 15.4,
            predicted_purchases: 1000.0,
            actual_purchases: 1100.0,
            predicted_spend: 1.0,
            actual_spend: 2.0,
            mean_absolute_error: 0.5,
            deciles: vec![CalibrationGroup {
                group: "1".into(),
                customers: 10,
                predicted: 0.1,
                actual: 0.2,
            }],
            by_frequency: vec![],
            segments: vec![SegmentReturn {
                segment: "Champions".into(),
                customers: 3,
                returned: 2,
            }],
            p_alive_auc: 0.8,
            expected_purchases_auc: 0.7,
        });
    }
}
