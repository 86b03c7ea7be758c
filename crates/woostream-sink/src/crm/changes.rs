//! What the shop's events change in the CRM, as plain data: a contact (who the customer is and
//! what woostream knows of them) and a deal (an order). Newer states replace older ones, so a
//! flash sale costs calls per customer, not per event. No Kafka, no HTTP.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use woostream_core::config::crm::CrmConfig;
use woostream_core::contract::enriched::CustomerProfile;
use woostream_core::contract::events::{Action, CustomerEvent, OrderEvent, OrderStatus};

/// Who a customer is: the personal data the CRM is allowed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    /// When the shop last changed it; a newer identity wins field by field.
    pub at: DateTime<Utc>,
    /// The person's key it was sealed under in Kafka: a dead letter of it is sealed under the
    /// same key, so that the person's erasure reaches it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_with: Option<String>,
}

/// What woostream computed about a customer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The profile's per-customer version: a higher one wins.
    pub version: i64,
    pub orders_count: i32,
    pub revenue: String,
    pub average_order_value: String,
    pub first_order_at: Option<DateTime<Utc>>,
    pub last_order_at: Option<DateTime<Utc>>,
    pub segment: String,
    pub p_alive: f64,
    pub predicted_clv: String,
    pub churn_risk: String,
    /// Category names by revenue, "; "-separated (names the catalogue did not know left out).
    #[serde(default)]
    pub top_categories: Option<String>,
    #[serde(default)]
    pub top_products: Option<String>,
    #[serde(default)]
    pub last_products: Option<String>,
    #[serde(default)]
    pub purchase_interval_days: Option<f64>,
    #[serde(default)]
    pub preferred_payment_method: Option<String>,
    #[serde(default)]
    pub discount_share: Option<f64>,
    #[serde(default)]
    pub next_purchase_at: Option<DateTime<Utc>>,
    /// The product due soonest for replenishment, and when.
    #[serde(default)]
    pub replenishment: Option<(String, DateTime<Utc>)>,
}

/// Names of a list, "; "-separated; none when no entry has a name.
fn names<'a>(names: impl Iterator<Item = Option<&'a String>>) -> Option<String> {
    let v: Vec<&str> = names.flatten().map(String::as_str).collect();
    (!v.is_empty()).then(|| v.join("; "))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContactChange {
    pub shop_id: String,
    /// The customer key: the account id, or `guest:<email hash>`.
    pub customer: String,
    pub customer_id: Option<i64>,
    pub identity: Option<Identity>,
    pub metrics: Option<Metrics>,
    pub correlation_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DealChange {
    pub shop_id: String,
    pub order_id: i64,
    pub number: String,
    pub customer: String,
    pub status: String,
    pub total: String,
    pub currency: String,
    pub payment_method: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The order's modification time: a later one wins.
    pub modified_at: DateTime<Utc>,
    pub correlation_id: String,
}

impl ContactChange {
    /// Folds a newer event about the same customer in.
    pub fn merge(&mut self, newer: ContactChange) {
        self.customer_id = self.customer_id.or(newer.customer_id);
        self.correlation_id = newer.correlation_id;
        match (&mut self.identity, newer.identity) {
            (Some(old), Some(new)) => {
                let keep_new = new.at >= old.at;
                let pick = |o: &mut Option<String>, n: Option<String>| {
                    if n.is_some() && (keep_new || o.is_none()) {
                        *o = n;
                    }
                };
                pick(&mut old.email, new.email);
                pick(&mut old.first_name, new.first_name);
                pick(&mut old.last_name, new.last_name);
                pick(&mut old.phone, new.phone);
                pick(&mut old.sealed_with, new.sealed_with);
                old.at = old.at.max(new.at);
            }
            (old @ None, new) => *old = new,
            (Some(_), None) => {}
        }
        match (&self.metrics, newer.metrics) {
            (Some(old), Some(new)) if new.version < old.version => {}
            (_, Some(new)) => self.metrics = Some(new),
            (_, None) => {}
        }
    }

    pub fn version(&self) -> i64 {
        self.metrics.as_ref().map_or(0, |m| m.version)
    }
}

impl DealChange {
    /// Orders the states of one order: modification time, then status progress.
    pub fn version(&self) -> i64 {
        deal_version(self.modified_at, &self.status)
    }

    pub fn merge(&mut self, newer: DealChange) {
        if newer.version() >= self.version() {
            *self = newer;
        }
    }
}

/// A deal state's version: the modification time, then how far along the order is (two states
/// often share one whole second).
pub fn deal_version(modified_at: DateTime<Utc>, status_slug: &str) -> i64 {
    modified_at.timestamp_millis() * 10 + i64::from(OrderStatus::from_slug(status_slug).progress())
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// An order names its customer (billing details) and is a deal.
pub fn from_order(e: &OrderEvent) -> (Option<ContactChange>, Option<DealChange>) {
    let Some(o) = &e.order else {
        return (None, None);
    };
    if e.action == Action::Deleted {
        return (None, None);
    }
    let at = o
        .modified_at
        .or(o.created_at)
        .unwrap_or(e.envelope.received_at);
    let registered = o.customer_id.is_some_and(|id| id > 0);
    let identity = o.billing.as_ref().map(|b| Identity {
        // A registered customer's contact email is their account's (customer events): the
        // billing email of an order is whatever the buyer typed, maybe someone else's.
        email: non_empty(&b.email)
            .filter(|_| !registered)
            .map(|e| e.to_lowercase()),
        first_name: non_empty(&b.first_name),
        last_name: non_empty(&b.last_name),
        phone: non_empty(&b.phone),
        at,
        sealed_with: None,
    });
    let contact = ContactChange {
        shop_id: e.envelope.shop_id.clone(),
        customer: o.customer_key.clone(),
        customer_id: o.customer_id.filter(|id| *id > 0),
        identity,
        metrics: None,
        correlation_id: e.envelope.correlation_id.clone(),
    };
    let deal = DealChange {
        shop_id: e.envelope.shop_id.clone(),
        order_id: o.id,
        number: o.number.clone(),
        customer: o.customer_key.clone(),
        status: o.status_slug.trim_start_matches("wc-").to_string(),
        total: o.total.to_string(),
        currency: o.currency.clone(),
        payment_method: o.payment_method.clone(),
        created_at: o.created_at,
        completed_at: o.completed_at,
        modified_at: at,
        correlation_id: e.envelope.correlation_id.clone(),
    };
    (Some(contact), Some(deal))
}

/// A registered customer's account: the email and name they keep in the shop.
pub fn from_customer(e: &CustomerEvent) -> Option<ContactChange> {
    let c = e.customer.as_ref()?;
    // Deleted, or written from the CRM (which has it already: sending it back would echo).
    if e.action == Action::Deleted
        || e.envelope.origin == woostream_core::contract::events::Origin::Crm
    {
        return None;
    }
    let phone = c.billing.as_ref().and_then(|b| non_empty(&b.phone));
    Some(ContactChange {
        shop_id: e.envelope.shop_id.clone(),
        customer: c.id.to_string(),
        customer_id: Some(c.id),
        identity: Some(Identity {
            email: non_empty(&c.email).map(|e| e.to_lowercase()),
            first_name: non_empty(&c.first_name),
            last_name: non_empty(&c.last_name),
            phone,
            at: c
                .modified_at
                .or(c.created_at)
                .unwrap_or(e.envelope.received_at),
            sealed_with: None,
        }),
        metrics: None,
        correlation_id: e.envelope.correlation_id.clone(),
    })
}

pub fn from_profile(p: &CustomerProfile) -> ContactChange {
    ContactChange {
        shop_id: p.shop_id.clone(),
        customer: p.customer.clone(),
        customer_id: p.customer_id.filter(|id| *id > 0),
        identity: None,
        metrics: Some(Metrics {
            version: p.version,
            orders_count: p.orders_count,
            revenue: p.revenue.to_string(),
            average_order_value: p.average_order_value.to_string(),
            first_order_at: p.first_order_at,
            last_order_at: p.last_order_at,
            segment: p.segment.name().to_string(),
            p_alive: p.p_alive,
            predicted_clv: p.clv_12_months.to_string(),
            churn_risk: p.churn_risk.as_str().to_lowercase(),
            top_categories: names(p.top_categories.iter().map(|e| e.name.as_ref())),
            top_products: names(p.top_products.iter().map(|e| e.name.as_ref())),
            last_products: names(p.last_products.iter().map(|e| e.name.as_ref())),
            purchase_interval_days: p.typical_interval_days,
            preferred_payment_method: p.preferred_payment_method.clone(),
            discount_share: (p.orders_count > 0).then_some(p.discount_share),
            next_purchase_at: p.expected_next_purchase_at,
            replenishment: p.replenishment.first().map(|r| {
                (
                    r.name
                        .clone()
                        .unwrap_or_else(|| format!("product {}", r.product_id)),
                    r.due_at,
                )
            }),
        }),
        correlation_id: p.correlation_id.clone(),
    }
}

/// When what a contact change says happened: its latest order, else its identity's change.
pub fn contact_time(c: &ContactChange) -> Option<DateTime<Utc>> {
    c.metrics
        .as_ref()
        .and_then(|m| m.last_order_at)
        .or(c.identity.as_ref().map(|i| i.at))
}

/// The customer's key in the CRM: `<shop>:<id>` for a registered customer (two shops of one
/// account each have a customer 42, who are not one person), `guest:<hash>` for a guest (the
/// hash is the email's: one person whichever shop they bought in).
pub fn contact_key(c: &ContactChange) -> String {
    if c.customer_id.is_some() {
        format!("{}:{}", c.shop_id, c.customer)
    } else {
        c.customer.clone()
    }
}

/// How the CRM finds a contact: a unique property and its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContactId {
    pub property: String,
    pub value: String,
}

/// The mapped properties and how to find the objects, from the configuration once.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub contact_id_property: String,
    pub guest_id_property: String,
    pub deal_id_property: String,
    pub contact: BTreeMap<String, String>,
    pub deal: BTreeMap<String, String>,
    pub stages: BTreeMap<String, String>,
    pub pipeline: String,
    pub deal_name: String,
}

impl Mapping {
    pub fn new(c: &CrmConfig) -> Mapping {
        Mapping {
            contact_id_property: c.contact_id_property.clone(),
            guest_id_property: c.guest_id_property.clone(),
            deal_id_property: c.deal_id_property.clone(),
            contact: c.contact_mapping(),
            deal: c.deal_mapping(),
            stages: c.stages(),
            pipeline: c.pipeline.clone(),
            deal_name: c.deal_name.clone(),
        }
    }

    /// Registered customers by their id (a changed email then never makes a second contact);
    /// a guest by the email, unless the contact is known to exist (written before with the
    /// guest's key); `None` while a guest's email is not known yet.
    pub fn contact_id(&self, c: &ContactChange, exists: bool) -> Option<ContactId> {
        if c.customer_id.is_some() || exists {
            return Some(ContactId {
                property: self.key_property(c).to_string(),
                value: contact_key(c),
            });
        }
        self.by_email(c)
    }

    /// The contact of (shop, customer key) by its key property, as it was written.
    pub fn key_of(&self, shop: &str, customer: &str) -> ContactId {
        if customer.starts_with("guest:") {
            ContactId {
                property: self.guest_id_property.clone(),
                value: customer.to_string(),
            }
        } else {
            ContactId {
                property: self.contact_id_property.clone(),
                value: format!("{shop}:{customer}"),
            }
        }
    }

    /// Whether [`Mapping::contact_id`] can address the contact (without building the id).
    pub fn addressable(&self, c: &ContactChange, exists: bool) -> bool {
        c.customer_id.is_some() || exists || c.identity.as_ref().is_some_and(|i| i.email.is_some())
    }

    /// The contact found by its email: HubSpot's own unique key, where a registered customer
    /// and a guest with one email meet.
    pub fn by_email(&self, c: &ContactChange) -> Option<ContactId> {
        let email = c.identity.as_ref().and_then(|i| i.email.clone())?;
        Some(ContactId {
            property: self.email_property().to_string(),
            value: email,
        })
    }

    fn email_property(&self) -> &str {
        self.contact.get("email").map_or("email", String::as_str)
    }

    /// Every property an anonymised contact has emptied: the ids that link it to the shop and
    /// every mapped field.
    pub fn erasable_properties(&self) -> Vec<String> {
        let mut out = vec![
            self.contact_id_property.clone(),
            self.guest_id_property.clone(),
        ];
        out.extend(self.contact.values().cloned());
        out.sort();
        out.dedup();
        out
    }

    /// Where the customer's key is kept: registered ids and guest keys apart.
    fn key_property(&self, c: &ContactChange) -> &str {
        if c.customer_id.is_some() {
            &self.contact_id_property
        } else {
            &self.guest_id_property
        }
    }

    /// The contact's properties: its key, then every mapped field it carries.
    pub fn contact_properties(&self, c: &ContactChange) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        p.insert(self.key_property(c).to_string(), contact_key(c));
        let mut put = |field: &str, value: Option<String>| {
            if let (Some(property), Some(v)) = (self.contact.get(field), value) {
                p.insert(property.clone(), v);
            }
        };
        if let Some(i) = &c.identity {
            put("email", i.email.clone());
            put("first_name", i.first_name.clone());
            put("last_name", i.last_name.clone());
            put("phone", i.phone.clone());
        }
        if let Some(m) = &c.metrics {
            put("orders_count", Some(m.orders_count.to_string()));
            put("revenue", Some(m.revenue.clone()));
            put("average_order_value", Some(m.average_order_value.clone()));
            put("first_order_date", m.first_order_at.map(epoch_ms));
            put("last_order_date", m.last_order_at.map(epoch_ms));
            put("segment", Some(m.segment.clone()));
            put("p_alive", Some(format!("{:.4}", m.p_alive)));
            put("predicted_clv", Some(m.predicted_clv.clone()));
            put("churn_risk", Some(m.churn_risk.clone()));
            put("top_categories", m.top_categories.clone());
            put("top_products", m.top_products.clone());
            put("last_products", m.last_products.clone());
            put(
                "purchase_interval_days",
                m.purchase_interval_days.map(|d| format!("{d:.0}")),
            );
            put(
                "preferred_payment_method",
                m.preferred_payment_method.clone(),
            );
            put(
                "discount_share",
                m.discount_share.map(|d| format!("{d:.2}")),
            );
            put("next_purchase_date", m.next_purchase_at.map(epoch_ms));
            put(
                "replenishment_product",
                m.replenishment.as_ref().map(|(name, _)| name.clone()),
            );
            put(
                "replenishment_due_date",
                m.replenishment.as_ref().map(|(_, due)| epoch_ms(*due)),
            );
        }
        p
    }

    /// The deal stage of an order status; `None`: the status makes no deal.
    pub fn stage(&self, status: &str) -> Option<&str> {
        self.stages.get(status).map(String::as_str)
    }

    pub fn deal_properties(&self, d: &DealChange) -> Option<BTreeMap<String, String>> {
        let stage = self.stage(&d.status)?;
        let mut p = BTreeMap::new();
        p.insert(self.deal_id_property.clone(), deal_key(d));
        p.insert(
            "dealname".into(),
            self.deal_name
                .replace("{number}", &d.number)
                .replace("{order_id}", &d.order_id.to_string())
                .replace("{shop}", &d.shop_id),
        );
        p.insert("pipeline".into(), self.pipeline.clone());
        p.insert("dealstage".into(), stage.to_string());
        let mut put = |field: &str, value: Option<String>| {
            if let (Some(property), Some(v)) = (self.deal.get(field), value) {
                p.insert(property.clone(), v);
            }
        };
        put("amount", Some(d.total.clone()));
        put("currency", Some(d.currency.clone()));
        put("close_date", d.completed_at.or(d.created_at).map(epoch_ms));
        put("order_number", Some(d.number.clone()));
        put("order_status", Some(d.status.clone()));
        put("payment_method", d.payment_method.clone());
        Some(p)
    }
}

/// A deal's unique value: the order id, prefixed by the shop when several shops share a CRM
/// would collide, so always `<shop>:<order id>`.
pub fn deal_key(d: &DealChange) -> String {
    format!("{}:{}", d.shop_id, d.order_id)
}

/// HubSpot takes datetimes as milliseconds since the epoch (UTC).
fn epoch_ms(t: DateTime<Utc>) -> String {
    t.timestamp_millis().to_string()
}

/// Changes for tests elsewhere in the crate.
#[cfg(test)]
pub mod examples {
    use super::*;
    use chrono::TimeZone;

    pub fn contact(customer: &str, email: &str) -> ContactChange {
        ContactChange {
            shop_id: "main".into(),
            customer: customer.into(),
            customer_id: customer.parse().ok(),
            identity: Some(Identity {
                email: Some(email.into()),
                first_name: Some("Ola".into()),
                last_name: None,
                phone: None,
                at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
                sealed_with: None,
            }),
            metrics: None,
            correlation_id: "c".into(),
        }
    }

    pub fn metrics(version: i64, orders: i32) -> Metrics {
        Metrics {
            version,
            orders_count: orders,
            revenue: "10.00".into(),
            average_order_value: "10.00".into(),
            first_order_at: Some(Utc.timestamp_opt(1_700_000_000, 0).unwrap()),
            last_order_at: Some(Utc.timestamp_opt(1_700_000_005, 0).unwrap()),
            segment: "Champions".into(),
            p_alive: 0.87654,
            predicted_clv: "120.50".into(),
            churn_risk: "low".into(),
            top_categories: Some("Coffee beans; Tea".into()),
            top_products: None,
            last_products: None,
            purchase_interval_days: Some(29.6),
            preferred_payment_method: Some("stripe".into()),
            discount_share: Some(0.25),
            next_purchase_at: Some(Utc.timestamp_opt(1_702_000_000, 0).unwrap()),
            replenishment: Some(("Beans".into(), Utc.timestamp_opt(1_701_000_000, 0).unwrap())),
        }
    }

    pub fn deal(order: i64, customer: &str, status: &str) -> DealChange {
        DealChange {
            shop_id: "main".into(),
            order_id: order,
            number: order.to_string(),
            customer: customer.into(),
            status: status.into(),
            total: "10.00".into(),
            currency: "PLN".into(),
            payment_method: Some("cod".into()),
            created_at: None,
            completed_at: None,
            modified_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            correlation_id: "c".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use examples::metrics;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    pub(crate) fn contact(customer: &str, email: Option<&str>, t: i64) -> ContactChange {
        ContactChange {
            shop_id: "main".into(),
            customer: customer.into(),
            customer_id: customer.parse().ok(),
            identity: Some(Identity {
                email: email.map(Into::into),
                first_name: Some("Jan".into()),
                last_name: None,
                phone: None,
                at: at(t),
                sealed_with: None,
            }),
            metrics: None,
            correlation_id: format!("c{t}"),
        }
    }

    #[test]
    fn newer_identity_wins_field_by_field_and_older_fills_gaps() {
        let mut a = contact("7", Some("old@x.example"), 10);
        a.identity.as_mut().unwrap().phone = Some("+48 1".into());
        let mut b = contact("7", Some("new@x.example"), 20);
        b.identity.as_mut().unwrap().first_name = None;
        a.merge(b);
        let i = a.identity.unwrap();
        assert_eq!(i.email.as_deref(), Some("new@x.example"));
        assert_eq!(
            i.first_name.as_deref(),
            Some("Jan"),
            "kept: the newer has none"
        );
        assert_eq!(i.phone.as_deref(), Some("+48 1"));
        // An older event arriving late does not undo a newer one.
        let mut a = contact("7", Some("new@x.example"), 20);
        a.merge(contact("7", Some("old@x.example"), 10));
        assert_eq!(a.identity.unwrap().email.as_deref(), Some("new@x.example"));
    }

    #[test]
    fn the_higher_profile_version_wins_and_identity_and_metrics_combine() {
        let mut a = contact("7", Some("a@x.example"), 1);
        a.metrics = Some(metrics(5, 2));
        let mut b = contact("7", None, 2);
        b.identity = None;
        b.metrics = Some(metrics(4, 1));
        a.merge(b.clone());
        assert_eq!(a.version(), 5);
        b.metrics = Some(metrics(6, 3));
        a.merge(b);
        assert_eq!(a.metrics.as_ref().unwrap().orders_count, 3);
        assert_eq!(
            a.identity.unwrap().email.as_deref(),
            Some("a@x.example"),
            "a profile carries no identity and keeps the order's"
        );
    }

    #[test]
    fn deals_keep_the_latest_modification() {
        let d = |status: &str, t: i64| DealChange {
            shop_id: "main".into(),
            order_id: 1,
            number: "1".into(),
            customer: "7".into(),
            status: status.into(),
            total: "5.00".into(),
            currency: "PLN".into(),
            payment_method: None,
            created_at: Some(at(0)),
            completed_at: None,
            modified_at: at(t),
            correlation_id: "c".into(),
        };
        let mut a = d("processing", 10);
        a.merge(d("pending", 5));
        assert_eq!(a.status, "processing");
        a.merge(d("completed", 11));
        assert_eq!(a.status, "completed");
        // Within one second, the further status wins whichever arrives last.
        let mut b = d("processing", 20);
        b.merge(d("pending", 20));
        assert_eq!(b.status, "processing");
        let m = Mapping::new(&CrmConfig::default());
        let p = m.deal_properties(&a).unwrap();
        assert_eq!(p["dealstage"], "closedwon");
        assert_eq!(p["woo_order_id"], "main:1");
        assert_eq!(p["dealname"], "Order #1");
        assert_eq!(p["amount"], "5.00");
        assert_eq!(p["closedate"], (at(0).timestamp_millis()).to_string());
        a.status = "checkout-draft".into();
        assert!(m.deal_properties(&a).is_none(), "unmapped: no deal");
    }

    #[test]
    fn registered_by_id_guests_by_email_until_known() {
        let m = Mapping::new(&CrmConfig::default());
        let registered = contact("42", Some("a@x.example"), 1);
        assert_eq!(
            m.contact_id(&registered, false).unwrap(),
            ContactId {
                property: "woo_customer_id".into(),
                value: "main:42".into()
            }
        );
        let guest = contact("guest:ab", Some("g@x.example"), 1);
        assert_eq!(m.contact_id(&guest, false).unwrap().property, "email");
        assert_eq!(
            m.contact_id(&guest, true).unwrap(),
            ContactId {
                property: "woo_guest_id".into(),
                value: "guest:ab".into()
            },
            "known contacts are found by their key even without the email"
        );
        assert_eq!(m.contact_properties(&guest)["woo_guest_id"], "guest:ab");
        assert!(!m.contact_properties(&guest).contains_key("woo_customer_id"));
        assert_eq!(
            m.contact_properties(&registered)["woo_customer_id"],
            "main:42"
        );
        let mut anonymous = guest.clone();
        anonymous.identity = None;
        assert!(m.contact_id(&anonymous, false).is_none());
    }

    #[test]
    fn contact_properties_follow_the_mapping() {
        let mut c = CrmConfig::default();
        c.contact_properties.insert("phone".into(), "".into());
        let m = Mapping::new(&c);
        let mut change = contact("42", Some("a@x.example"), 1);
        change.identity.as_mut().unwrap().phone = Some("+48 600".into());
        change.metrics = Some(metrics(3, 2));
        let p = m.contact_properties(&change);
        assert_eq!(p["woo_customer_id"], "main:42");
        assert_eq!(p["email"], "a@x.example");
        assert_eq!(p["firstname"], "Jan");
        assert!(!p.values().any(|v| v == "+48 600"), "phone left out");
        assert_eq!(p["woo_orders_count"], "2");
        assert_eq!(p["woo_p_alive"], "0.8765");
        assert_eq!(p["woo_rfm_segment"], "Champions");
        assert_eq!(p["woo_churn_risk"], "low");
        assert_eq!(p["woo_top_categories"], "Coffee beans; Tea");
        assert_eq!(p["woo_purchase_interval_days"], "30");
        assert_eq!(p["woo_discount_share"], "0.25");
        assert_eq!(p["woo_next_purchase_date"], "1702000000000");
        assert_eq!(p["woo_replenishment_product"], "Beans");
        assert!(
            !p.contains_key("woo_top_products"),
            "nothing known, nothing written"
        );
    }
}
