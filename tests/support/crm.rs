//! What the CRM tests and the CRM benchmark share: a flash sale with the profiles an enricher
//! would write, what the CRM must hold after it, and waiting until it does.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use woostream_core::config::Config;
use woostream_core::contract::codec::{Decoder, Encoder, Framing};
use woostream_core::contract::enriched::{ChurnRisk, CustomerProfile, Segment};
use woostream_core::contract::events::{CustomerKey, OrderEvent};
use woostream_core::Money;
use woostream_hubspot::api::Object;
use woostream_producer::publish::Record;
use woostream_sink::crm::changes::deal_version;

use crate::enricher::sale_records;
use crate::hubspot::FakeHubSpot;

pub const TOKEN: &str = "pat-eu1-00000000-test";
pub const BUDGET: usize = 190;

/// A CRM sink's configuration: this broker, this HubSpot, `budget` requests per 10 s.
pub fn sink_toml(bootstrap: &str, hubspot: &FakeHubSpot, port: u16, budget: usize) -> String {
    let crm = format!(
        r#"[crm]
enabled = true
api_url = "{url}"
token = "{TOKEN}"
requests_per_10_seconds = {budget}
max_delay_ms = 2000
max_backoff_secs = 5
[crm.deal_stages]
awaiting-shipment = "shipping""#,
        url = hubspot.url,
    );
    crate::sink_toml(bootstrap, port, &crm)
}

/// A profile as the enricher writes one after a customer's `orders`-th order.
pub fn profile(customer: &str, customer_id: Option<i64>, orders: i32) -> CustomerProfile {
    let m = |s: &str| s.parse::<Money>().unwrap();
    let now = chrono::Utc::now();
    CustomerProfile {
        shop_id: "eu".into(),
        customer: customer.into(),
        customer_id,
        version: orders as i64,
        model_version: 0,
        as_of: now,
        source_partition: 0,
        source_offset: 0,
        caused_by_event_id: format!("e-{customer}-{orders}"),
        correlation_id: format!("c-{customer}-{orders}"),
        currency: Some("PLN".into()),
        orders_count: orders,
        transactions: orders,
        revenue: m(&format!("{}.00", 100 * orders)),
        refunded: m("0.00"),
        average_order_value: m("100.00"),
        first_order_at: Some(now),
        last_order_at: Some(now),
        recency_score: 5,
        frequency_score: orders.min(5),
        monetary_score: 3,
        segment: match orders {
            1 => Segment::NewCustomers,
            2 => Segment::Promising,
            3 => Segment::LoyalCustomers,
            _ => Segment::Champions,
        },
        p_alive: 0.9,
        expected_purchases_30d: 0.1,
        expected_purchases_90d: 0.3,
        expected_purchases_365d: 1.0,
        expected_order_value: m("100.00"),
        clv_12_months: m("100.00"),
        churn_risk: ChurnRisk::Low,
        vip: false,
        orders: Vec::new(),
        top_categories: vec![woostream_core::contract::enriched::TasteEntry {
            id: 17,
            name: Some("Coffee beans".into()),
            revenue: m(&format!("{}.00", 100 * orders)),
            orders,
            quantity: orders,
        }],
        top_products: Vec::new(),
        frequent_products: Vec::new(),
        last_products: Vec::new(),
        mean_interval_days: (orders > 1).then_some(30.0),
        typical_interval_days: (orders > 1).then_some(30.0),
        preferred_payment_method: Some("stripe".into()),
        discount_share: 0.0,
        expected_next_purchase_at: None,
        replenishment: Vec::new(),
    }
}

/// The sale's records with the profiles an enricher would write after each new order, and
/// what the CRM must hold at the end.
pub struct Sale {
    pub records: Vec<Record>,
    /// order id → (version, status slug) of its newest state.
    pub orders: HashMap<i64, (i64, String)>,
    /// customer key → orders (the last profile's count).
    pub customers: HashMap<String, i32>,
    /// order id → its customer's key.
    pub customer_of: HashMap<i64, String>,
}

pub fn sale(orders: usize, seed: u64) -> Sale {
    let decoder = Decoder::new();
    let key_encoder: Encoder<CustomerKey> = Encoder::new(&Framing::SingleObject);
    let profile_encoder: Encoder<CustomerProfile> = Encoder::new(&Framing::SingleObject);
    let profiles_topic = Config::default().topics.profiles.name;
    let mut sale = Sale {
        records: Vec::new(),
        orders: HashMap::new(),
        customers: HashMap::new(),
        customer_of: HashMap::new(),
    };
    for r in sale_records(orders, 0, seed) {
        let event = (r.topic == "woo.orders")
            .then(|| decoder.decode::<OrderEvent>(&r.value).unwrap())
            .and_then(|e| e.order);
        sale.records.push(r);
        let Some(o) = event else { continue };
        let at = deal_version(o.modified_at.unwrap(), &o.status_slug);
        let first = !sale.orders.contains_key(&o.id);
        let newest = sale
            .orders
            .entry(o.id)
            .or_insert((at, o.status_slug.clone()));
        if at >= newest.0 {
            *newest = (at, o.status_slug.clone());
        }
        if first {
            sale.customer_of.insert(o.id, o.customer_key.clone());
            let n = sale.customers.entry(o.customer_key.clone()).or_default();
            *n += 1;
            let key = CustomerKey {
                shop_id: "eu".into(),
                customer: o.customer_key.clone(),
            };
            sale.records.push(Record {
                topic: profiles_topic.clone(),
                key: key_encoder.encode(&key).unwrap(),
                value: profile_encoder
                    .encode(&profile(&o.customer_key, o.customer_id, *n))
                    .unwrap(),
                headers: Vec::new(),
            });
        }
    }
    sale
}

/// How the CRM finds a customer's contact: registered ids (`<shop>:<id>`) and guest keys apart.
pub fn crm_key(customer: &str) -> (&'static str, String) {
    if customer.starts_with("guest:") {
        ("woo_guest_id", customer.to_string())
    } else {
        ("woo_customer_id", format!("eu:{customer}"))
    }
}

/// What the CRM lacks: deals missing or at the wrong stage, contacts missing or behind, deals
/// not associated with their contact.
pub fn missing(hubspot: &FakeHubSpot, sale: &Sale) -> (usize, usize, usize) {
    let stages: BTreeMap<String, String> = Config::default().crm.stages();
    let found = hubspot.with_store(|s| {
        let deals = sale
            .orders
            .iter()
            .filter(|(id, (_, status))| {
                let record = s.get(Object::Deals, "woo_order_id", &format!("eu:{id}"));
                record.and_then(|r| r.get("dealstage")) != stages.get(status.as_str())
            })
            .count();
        let contacts = sale
            .customers
            .iter()
            .filter(|(customer, n)| {
                let (property, key) = crm_key(customer);
                let record = s.get(Object::Contacts, property, &key);
                record.and_then(|r| r.get("woo_orders_count")) != Some(&n.to_string())
            })
            .count();
        (deals, contacts)
    });
    let (deals, contacts) = found;
    (deals, contacts, unassociated(hubspot, sale))
}

/// Deals not associated with their customer's contact.
pub fn unassociated(hubspot: &FakeHubSpot, sale: &Sale) -> usize {
    hubspot.with_store(|s| {
        let ids = |o: Object, property: &str| -> HashMap<String, u64> {
            s.objects(o)
                .records
                .iter()
                .filter_map(|(id, r)| Some((r.get(property)?.clone(), *id)))
                .collect()
        };
        let deals = ids(Object::Deals, "woo_order_id");
        let mut contacts = ids(Object::Contacts, "woo_customer_id");
        contacts.extend(ids(Object::Contacts, "woo_guest_id"));
        sale.orders
            .keys()
            .filter(|id| {
                let d = deals.get(&format!("eu:{id}"));
                let c = sale
                    .customer_of
                    .get(id)
                    .and_then(|c| contacts.get(&crm_key(c).1));
                !matches!((d, c), (Some(d), Some(c)) if s.associations.contains(&(*d, *c)))
            })
            .count()
    })
}

pub async fn await_complete(hubspot: &FakeHubSpot, sale: &Sale, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        let (deals, contacts, unassociated) = missing(hubspot, sale);
        if deals == 0 && contacts == 0 && unassociated == 0 {
            return Instant::now();
        }
        if Instant::now() >= deadline {
            let stages: BTreeMap<String, String> = Config::default().crm.stages();
            let sample: Vec<String> = hubspot.with_store(|s| {
                sale.orders
                    .iter()
                    .filter_map(|(id, (_, status))| {
                        let r = s.get(Object::Deals, "woo_order_id", &format!("eu:{id}"));
                        let stage = r.and_then(|r| r.get("dealstage"));
                        (stage != stages.get(status.as_str()))
                            .then(|| format!("order {id}: {status} but {stage:?}"))
                    })
                    .take(8)
                    .collect()
            });
            panic!("the CRM still lacks {deals} deals, {contacts} contacts and {unassociated} associations: {sample:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
