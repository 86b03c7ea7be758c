//! Alerts: what a state transition means to the shop's team, with what a notification or a
//! CRM needs to act without another lookup, and no personal data beyond a first initial.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use woostream_core::contract::enriched::{
    Alert, AlertCustomer, AlertItem, AlertKey, AlertKind, AlertOrder, AlertQuestion,
    AlertReplenishment, ChurnRisk, Replenishment, Segment,
};
use woostream_core::contract::events::Order;
use woostream_core::Money;

use crate::customer::{from_millis, status_slug, CustomerState, OrderChange, Scored};
use crate::taste::Taste;

/// Deterministic alert id: the same cause always gives the same id, so a consumer drops a
/// repeat after a crash or a redelivery.
pub fn alert_id(shop_id: &str, kind: AlertKind, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(shop_id.as_bytes());
    h.update([0x1f]);
    h.update(kind.as_str().as_bytes());
    for p in parts {
        h.update([0x1f]);
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Where an alert came from, for its envelope fields.
#[derive(Clone, Debug)]
pub struct Origin<'a> {
    pub shop_id: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: &'a str,
    pub event_id: &'a str,
    /// How the cause was obtained; its alerts say so.
    pub source: woostream_core::contract::events::Origin,
}

impl Origin<'_> {
    pub fn alert(&self, kind: AlertKind, id_parts: &[&str]) -> Alert {
        Alert {
            alert_id: alert_id(self.shop_id, kind, id_parts),
            kind,
            shop_id: self.shop_id.into(),
            occurred_at: self.occurred_at,
            correlation_id: self.correlation_id.into(),
            caused_by_event_id: self.event_id.into(),
            order: None,
            customer: None,
            product: None,
            review: None,
            origin: self.source,
            erasure: None,
            replenishment: None,
            question: None,
        }
    }
}

pub fn customer_key(shop_id: &str, customer: &str) -> AlertKey {
    AlertKey {
        shop_id: shop_id.into(),
        subject: format!("customer:{customer}"),
    }
}

fn alert_order(order: &Order, previous_status: Option<&str>) -> AlertOrder {
    AlertOrder {
        order_id: order.id,
        number: order.number.clone(),
        status: order.status_slug.clone(),
        previous_status: previous_status.map(String::from),
        currency: order.currency.clone(),
        total: order.total,
        refunded_total: order.refunded_total,
        payment_method: order.payment_method.clone(),
        payment_method_title: order.payment_method_title.clone(),
        created_via: order.created_via.clone(),
        created_at: order.created_at,
        items: order
            .line_items
            .iter()
            .map(|i| AlertItem {
                product_id: i.product_id,
                variation_id: i.variation_id,
                name: i.name.clone(),
                sku: i.sku.clone(),
                quantity: i.quantity,
                total: i.total,
                category_ids: i.category_ids.clone(),
            })
            .collect(),
    }
}

fn alert_customer(
    customer: &str,
    state: &CustomerState,
    scored: &Scored,
    taste: Option<&Taste>,
    previous_segment: Option<Segment>,
    initial: Option<String>,
) -> AlertCustomer {
    AlertCustomer {
        customer: customer.into(),
        customer_id: state.customer_id,
        first_name_initial: initial,
        segment: scored.segment.name().into(),
        previous_segment: previous_segment.map(|s| s.name().into()),
        orders_count: scored.summary.orders_count as i32,
        revenue: Money::from_micros(scored.summary.revenue),
        clv_12_months: Money::from_estimate(scored.clv),
        p_alive: scored.p_alive,
        churn_risk: scored.churn_risk.as_str().into(),
        vip: scored.vip,
        profile_version: state.version,
        previous_churn_risk: None,
        top_category: taste
            .and_then(|t| t.top_categories.first())
            .and_then(|c| c.name.clone()),
        typical_interval_days: taste.and_then(|t| t.typical_interval_days),
        expected_next_purchase_at: scored.next_purchase_ms.map(from_millis),
    }
}

/// The first letter of the billing first name: enough to greet, not to identify.
pub fn first_initial(order: Option<&Order>) -> Option<String> {
    order
        .and_then(|o| o.billing.as_ref())
        .and_then(|b| b.first_name.as_deref())
        .and_then(|n| n.trim().chars().next())
        .map(|c| c.to_uppercase().collect())
}

/// What the customer's team should hear about one order change and the profile after it.
pub struct CustomerTransition<'a> {
    pub origin: Origin<'a>,
    pub customer: &'a str,
    pub state: &'a CustomerState,
    pub scored: &'a Scored,
    /// The customer's taste, computed only when an alert shows it.
    pub taste: &'a std::cell::OnceCell<Taste>,
    pub taste_of: &'a dyn Fn() -> Taste,
    /// Segment and VIP flag before this change (`None`: no profile yet).
    pub previous_segment: Option<Segment>,
    pub was_vip: bool,
    /// Churn-risk band before this change (`None`: no profile yet).
    pub previous_churn: Option<ChurnRisk>,
    pub order: Option<(&'a Order, &'a OrderChange)>,
    pub high_value: &'a dyn Fn(&Order) -> bool,
    /// Products that became due with this version (not announced in their cycle yet).
    pub replenishment_due: &'a [Replenishment],
}

impl CustomerTransition<'_> {
    pub fn alerts(&self) -> Vec<Alert> {
        let mut out = Vec::new();
        let initial = first_initial(self.order.map(|(o, _)| o));
        // Order alerts leave the customer's taste out: they are most alerts of a sale, and
        // what a team needs of them is the order; customer alerts carry it.
        let customer_block = |previous: Option<Segment>| {
            alert_customer(
                self.customer,
                self.state,
                self.scored,
                None,
                previous,
                initial.clone(),
            )
        };
        let customer_with_taste = |previous: Option<Segment>| {
            alert_customer(
                self.customer,
                self.state,
                self.scored,
                Some(self.taste.get_or_init(self.taste_of)),
                previous,
                initial.clone(),
            )
        };
        if let Some((order, change)) = self.order {
            let id = order.id.to_string();
            let now = &change.current;
            let before = change.previous.as_ref();
            let with_order = |kind: AlertKind, parts: &[&str], previous_status: Option<&str>| {
                let mut a = self.origin.alert(kind, parts);
                a.order = Some(alert_order(order, previous_status));
                a.customer = Some(customer_block(None));
                a
            };
            let real_order = !matches!(
                now.status,
                woostream_core::contract::events::OrderStatus::CheckoutDraft
                    | woostream_core::contract::events::OrderStatus::Draft
            );
            if before.is_none() && real_order {
                out.push(with_order(AlertKind::OrderPlaced, &[&id], None));
                if change.first_order {
                    let mut a = self.origin.alert(AlertKind::FirstOrder, &[self.customer]);
                    a.order = Some(alert_order(order, None));
                    a.customer = Some(customer_block(None));
                    out.push(a);
                }
            }
            if let Some(b) = before {
                if b.status != now.status {
                    let (from, to) = (status_slug(b.status), status_slug(now.status));
                    let modified = now.modified_ms.to_string();
                    out.push(with_order(
                        AlertKind::OrderStatusChanged,
                        &[&id, from, to, &modified],
                        Some(from),
                    ));
                }
            }
            if now.status == woostream_core::contract::events::OrderStatus::Failed
                && before.is_none_or(|b| b.status != now.status)
            {
                out.push(with_order(
                    AlertKind::PaymentFailed,
                    &[&id, &now.modified_ms.to_string()],
                    before.map(|b| status_slug(b.status)),
                ));
            }
            if now.paid && !before.is_some_and(|b| b.paid) {
                out.push(with_order(
                    AlertKind::OrderPaid,
                    &[&id],
                    before.map(|b| status_slug(b.status)),
                ));
                if (self.high_value)(order) {
                    out.push(with_order(AlertKind::HighValueOrder, &[&id], None));
                }
            }
            let refunded_before = before.map_or(0, |b| b.refunded);
            let newly_refunded = now.status
                == woostream_core::contract::events::OrderStatus::Refunded
                && before.is_some_and(|b| b.status != now.status);
            if now.refunded > refunded_before || newly_refunded {
                out.push(with_order(
                    AlertKind::OrderRefunded,
                    &[&id, &now.refunded.to_string()],
                    before.map(|b| status_slug(b.status)),
                ));
            }
            // The note is written at checkout: announced with the order's first version.
            if let (None, Some(note)) = (before, order.customer_note.as_deref()) {
                if real_order && !note.trim().is_empty() {
                    let mut a = with_order(AlertKind::CustomerQuestion, &[&id], None);
                    a.question = Some(AlertQuestion {
                        note: note.to_string(),
                    });
                    out.push(a);
                }
            }
        }
        if let Some(previous) = self.previous_segment {
            if previous != self.scored.segment {
                let version = self.state.version.to_string();
                let mut a = self.origin.alert(
                    AlertKind::SegmentChanged,
                    &[
                        self.customer,
                        previous.name(),
                        self.scored.segment.name(),
                        &version,
                    ],
                );
                a.customer = Some(customer_with_taste(Some(previous)));
                out.push(a);
            }
        }
        if let Some(previous) = self.previous_churn {
            // Only customers who bought: a band without orders means nothing yet.
            if previous != self.scored.churn_risk && self.scored.summary.orders_count > 0 {
                let version = self.state.version.to_string();
                let mut a = self.origin.alert(
                    AlertKind::ChurnRiskChanged,
                    &[
                        self.customer,
                        previous.as_str(),
                        self.scored.churn_risk.as_str(),
                        &version,
                    ],
                );
                let mut c = customer_with_taste(self.previous_segment);
                c.previous_churn_risk = Some(previous.as_str().into());
                a.customer = Some(c);
                out.push(a);
            }
        }
        for r in self.replenishment_due {
            let cycle = r.last_bought_at.timestamp_millis().to_string();
            let mut a = self.origin.alert(
                AlertKind::ReplenishmentDue,
                &[self.customer, &r.product_id.to_string(), &cycle],
            );
            a.customer = Some(customer_with_taste(self.previous_segment));
            a.replenishment = Some(AlertReplenishment {
                product_id: r.product_id,
                name: r.name.clone(),
                last_bought_at: r.last_bought_at,
                interval_days: r.interval_days,
                due_at: r.due_at,
            });
            out.push(a);
        }
        if self.scored.vip && !self.was_vip {
            let mut a = self.origin.alert(
                AlertKind::BecameVip,
                &[self.customer, &self.state.version.to_string()],
            );
            a.customer = Some(customer_with_taste(self.previous_segment));
            out.push(a);
        }
        out
    }
}
