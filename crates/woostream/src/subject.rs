//! A data subject's requests, at the edge: `woostream erase` (find every customer key of the
//! person, erase them at the source, show the receipts) and `woostream export-subject` (one
//! JSON document with everything woostream holds about the person). The document itself is
//! assembled by a plain function, [`document`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{bail, Context};
use chrono::Utc;
use rdkafka::message::Message;
use serde_json::{json, Value};
use woostream_core::config::Config;
use woostream_core::contract::codec::{Codecs, Contract};
use woostream_core::contract::enriched::{Alert, AlertKey, CustomerProfile};
use woostream_core::contract::events::{
    CustomerEvent, CustomerKey, CustomerRecord, Order, OrderEvent,
};
use woostream_core::contract::sink_records::Delivery;
use woostream_core::kafka::{self, reading};
use woostream_core::privacy::erase::{self, ErasureCodecs, Request};
use woostream_core::privacy::personal::{customer_fields, order_fields, Sealing};
use woostream_core::privacy::receipt::status_table;
use woostream_core::privacy::CustomerHasher;
use woostream_core::privacy::SubjectKeys;

/// Who a request is about: an account id or an email (or both).
#[derive(Clone, Debug)]
pub struct Person {
    pub shop: String,
    pub customer: Option<i64>,
    pub email: Option<String>,
}

/// Reads every record of `topic` written before now, decoding with `codecs` on a blocking
/// thread; `f` gets the key and the value (`None`: a tombstone).
async fn scan<K: Contract + Send + 'static, V: Contract + Send + 'static>(
    config: &Config,
    bootstrap: &str,
    topic: &str,
    codecs: std::sync::Arc<Codecs>,
    mut f: impl FnMut(K, Option<V>) + Send + 'static,
) -> anyhow::Result<()> {
    let (config, bootstrap, topic) = (config.clone(), bootstrap.to_string(), topic.to_string());
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let consumer = reading::reader(&config.kafka, &bootstrap, "subject")?;
        reading::read_all_now(&config.kafka, &bootstrap, &consumer, &topic, |m| {
            let Some(key) = m
                .key()
                .and_then(|k| handle.block_on(codecs.decode::<K>(k)).ok())
            else {
                return;
            };
            let value = m
                .payload()
                .and_then(|v| handle.block_on(codecs.decode::<V>(v)).ok());
            if m.payload().is_none() || value.is_some() {
                f(key, value);
            }
        })
        .with_context(|| format!("reading {topic}"))?;
        Ok(())
    })
    .await?
}

fn shop_of<'a>(
    config: &'a Config,
    shop: &str,
) -> anyhow::Result<&'a woostream_core::config::ShopConfig> {
    config
        .shops
        .iter()
        .find(|s| s.id == shop)
        .with_context(|| format!("--shop {shop}: no such shop in the configuration"))
}

/// The latest account of every customer key of `shop` (deleted ones left out).
async fn accounts(
    config: &Config,
    bootstrap: &str,
    shop: &str,
) -> anyhow::Result<HashMap<String, CustomerRecord>> {
    let codecs = std::sync::Arc::new(Codecs::register(config, &[]).await?);
    let accounts = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
    let (sink, shop) = (accounts.clone(), shop.to_string());
    scan::<CustomerKey, CustomerEvent>(
        config,
        bootstrap,
        &config.topics.customers.name,
        codecs,
        move |k, v| {
            if k.shop_id == shop {
                let mut a = sink.lock().expect("accounts");
                match v.and_then(|e| e.customer) {
                    Some(c) => a.insert(k.customer, c),
                    None => a.remove(&k.customer),
                };
            }
        },
    )
    .await?;
    let out = std::mem::take(&mut *accounts.lock().expect("accounts"));
    Ok(out)
}

/// Every customer key of the person: their account, and with an explicit email the guest
/// orders of that email and any account with it (found through the accounts' email hashes).
/// An account's own email is never followed into guest orders: a customer can set their
/// account's email to a stranger's, and would then export (or erase) the stranger's orders.
fn keys_of(
    person: &Person,
    hasher: &CustomerHasher,
    accounts: &HashMap<String, CustomerRecord>,
) -> anyhow::Result<Vec<String>> {
    let wanted_hash = person.email.as_deref().and_then(|e| hasher.email_hash(e));
    if person.email.is_some() && wanted_hash.is_none() {
        bail!("--email is empty");
    }
    let mut ids: BTreeSet<i64> = person.customer.into_iter().collect();
    let hashes: BTreeSet<String> = wanted_hash.into_iter().collect();
    for c in accounts.values() {
        if c.email_hash.as_ref().is_some_and(|h| hashes.contains(h)) {
            ids.insert(c.id);
        }
    }
    let mut keys: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    keys.extend(erase::subjects(
        None,
        &hashes.into_iter().collect::<Vec<_>>(),
    ));
    Ok(keys)
}

/// Every customer key of the person (see [`keys_of`]).
pub async fn customer_keys(
    config: &Config,
    bootstrap: &str,
    person: &Person,
) -> anyhow::Result<Vec<String>> {
    let hasher = CustomerHasher::for_shop(config, &person.shop);
    keys_of(
        person,
        &hasher,
        &accounts(config, bootstrap, &person.shop).await?,
    )
}

/// `woostream erase`: the person erased at the source; prints what was done.
pub async fn erase(
    config: &Config,
    bootstrap: &str,
    person: &Person,
    reason: Option<String>,
) -> anyhow::Result<String> {
    shop_of(config, &person.shop)?;
    if !config.privacy.seal_personal_data {
        bail!("privacy.seal_personal_data is off: nothing was sealed, so nothing can be erased by deleting keys");
    }
    kafka::first_contact(config, bootstrap, config.topics.create).await?;
    let subjects = customer_keys(config, bootstrap, person).await?;
    let keys = {
        let (c, b) = (config.clone(), bootstrap.to_string());
        tokio::task::spawn_blocking(move || SubjectKeys::start(&c, &b, true)).await??
    };
    let codecs = ErasureCodecs::register(config).await?;
    let producer = kafka::renewing_producer(&config.kafka, bootstrap, "erase")?;
    let request = Request::new(&person.shop, subjects.clone(), reason, "cli");
    let done = erase::carry_out(config, &keys, &producer, &codecs, &request).await?;
    Ok(format!(
        "Erasure {} (shop {}): {} customer keys ({}), {} subject keys deleted.\nThe enricher, the CRM sink and the Slack sink act on it as they read it; `woostream erase --status --erasure {}` shows their receipts.\n",
        request.erasure_id,
        request.shop_id,
        subjects.len(),
        subjects
            .iter()
            .map(|s| if s.starts_with("guest:") { "guest orders" } else { "account" })
            .collect::<Vec<_>>()
            .join(", "),
        done.keys_deleted,
        request.erasure_id
    ))
}

/// Every erasure receipt in the audit topic.
pub async fn receipts(config: &Config, bootstrap: &str) -> anyhow::Result<Vec<Delivery>> {
    let codecs = std::sync::Arc::new(Codecs::register(config, &[]).await?);
    let found = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = found.clone();
    scan::<String, Delivery>(
        config,
        bootstrap,
        &config.topics.deliveries.name,
        codecs,
        move |_, d| {
            if let Some(d) = d.filter(|d| d.kind == woostream_core::privacy::receipt::KIND) {
                sink.lock().expect("receipts").push(d);
            }
        },
    )
    .await?;
    let out = found.lock().expect("receipts").clone();
    Ok(out)
}

/// `woostream erase --status`.
pub async fn status(
    config: &Config,
    bootstrap: &str,
    erasure: Option<&str>,
) -> anyhow::Result<String> {
    Ok(status_table(&receipts(config, bootstrap).await?, erasure))
}

/// What the topics hold about one person, opened where their keys still exist.
#[derive(Default)]
pub struct Held {
    pub keys: Vec<String>,
    pub accounts: Vec<CustomerRecord>,
    /// Each order's newest version.
    pub orders: BTreeMap<i64, Order>,
    pub profiles: Vec<CustomerProfile>,
    pub alerts: Vec<Alert>,
    pub deliveries: Vec<Delivery>,
    /// Records whose personal fields stay sealed: their person's keys are deleted.
    pub erased_records: usize,
}

/// The subject access document: everything in `held`, each number of a profile explained.
pub fn document(person: &Person, held: &Held) -> Value {
    let counted: BTreeSet<i64> = held
        .profiles
        .iter()
        .flat_map(|p| p.orders.iter().map(|o| o.order_id))
        .collect();
    let orders: Vec<Value> = held
        .orders
        .values()
        .map(|o| {
            json!({
                "order_id": o.id,
                "number": o.number,
                "status": o.status_slug,
                "currency": o.currency,
                "total": o.total.to_string(),
                "refunded": o.refunded_total.to_string(),
                "created_at": o.created_at,
                "paid_at": o.paid_at,
                "completed_at": o.completed_at,
                "payment_method": o.payment_method_title.clone().or(o.payment_method.clone()),
                "billing": o.billing,
                "shipping": o.shipping,
                "items": o.line_items.iter().map(|i| json!({
                    "product_id": i.product_id, "name": i.name, "sku": i.sku,
                    "quantity": i.quantity, "total": i.total.to_string(),
                })).collect::<Vec<_>>(),
                "coupons": o.coupon_codes,
                "counted_in_profile": counted.contains(&o.id),
            })
        })
        .collect();
    let profiles: Vec<Value> = held
        .profiles
        .iter()
        .map(|p| {
            json!({
                "customer_key": p.customer,
                "version": p.version,
                "as_of": p.as_of,
                "orders_count": p.orders_count,
                "revenue": p.revenue.to_string(),
                "refunded": p.refunded.to_string(),
                "currency": p.currency,
                "first_order_at": p.first_order_at,
                "last_order_at": p.last_order_at,
                "segment": p.segment.name(),
                "recency_score": p.recency_score,
                "frequency_score": p.frequency_score,
                "monetary_score": p.monetary_score,
                "p_alive": p.p_alive,
                "expected_purchases_30d": p.expected_purchases_30d,
                "expected_purchases_365d": p.expected_purchases_365d,
                "clv_12_months": p.clv_12_months.to_string(),
                "churn_risk": p.churn_risk.as_str(),
                "vip": p.vip,
                "explanation": woostream_enricher::explain::explain(p),
            })
        })
        .collect();
    let alerts: Vec<Value> = held
        .alerts
        .iter()
        .map(|a| {
            json!({
                "alert_id": a.alert_id,
                "kind": a.kind.as_str(),
                "occurred_at": a.occurred_at,
                "order_id": a.order.as_ref().map(|o| o.order_id),
            })
        })
        .collect();
    let mut crm_contacts = BTreeSet::new();
    let mut crm_deals = BTreeMap::new();
    let mut slack = Vec::new();
    for d in &held.deliveries {
        match (d.sink_kind(), d.destination.as_str(), &d.message_ts) {
            ("crm", "contacts", Some(id)) => {
                crm_contacts.insert(id.clone());
            }
            ("crm", "deals", Some(id)) => {
                if let Some(o) = d.order_id {
                    crm_deals.insert(o, id.clone());
                }
            }
            ("slack", channel, ts) => slack.push(json!({
                "channel": channel, "alert_id": d.alert_id, "outcome": d.outcome.as_str(), "ts": ts,
            })),
            _ => {}
        }
    }
    json!({
        "shop": person.shop,
        "generated_at": Utc::now(),
        "request": {"customer_id": person.customer, "email": person.email},
        "customer_keys": held.keys,
        "accounts": held.accounts,
        "orders": orders,
        "profiles": profiles,
        "alerts_naming_them": alerts,
        "crm": {
            "contact_ids": crm_contacts,
            "deal_ids_by_order": crm_deals,
        },
        "slack_messages": slack,
        "records_erased": held.erased_records,
        "notes": [
            "Money is decimal in the order's currency; times are UTC.",
            "Personal fields are stored sealed under the person's own key; this document shows them opened. Records whose key was deleted (an erasure) are counted in records_erased and shown without their personal fields.",
            "Slack messages carry no personal data beyond a first initial where a rule allows it; the CRM ids are the objects woostream wrote.",
        ],
    })
}

/// Reads what the topics hold about the person.
pub async fn held(config: &Config, bootstrap: &str, person: &Person) -> anyhow::Result<Held> {
    shop_of(config, &person.shop)?;
    let all_accounts = accounts(config, bootstrap, &person.shop).await?;
    let hasher = CustomerHasher::for_shop(config, &person.shop);
    let keys_of_person = keys_of(person, &hasher, &all_accounts)?;
    let wanted: std::sync::Arc<BTreeSet<String>> =
        std::sync::Arc::new(keys_of_person.iter().cloned().collect());
    let subject_keys = if config.privacy.seal_personal_data {
        let (c, b) = (config.clone(), bootstrap.to_string());
        Some(tokio::task::spawn_blocking(move || SubjectKeys::start(&c, &b, false)).await??)
    } else {
        None
    };
    let codecs = std::sync::Arc::new(Codecs::register(config, &[]).await?);
    let t = &config.topics;
    let shop = person.shop.clone();
    type Shared<T> = std::sync::Arc<std::sync::Mutex<T>>;
    let orders: Shared<BTreeMap<i64, (i64, Order)>> = Default::default();
    let profiles: Shared<HashMap<String, CustomerProfile>> = Default::default();
    let alerts: Shared<Vec<Alert>> = Default::default();
    let deliveries: Shared<Vec<Delivery>> = Default::default();
    {
        let (sink, wanted, shop) = (orders.clone(), wanted.clone(), shop.clone());
        scan::<CustomerKey, OrderEvent>(
            config,
            bootstrap,
            &t.orders.name,
            codecs.clone(),
            move |k, v| {
                if let (true, Some(o)) = (
                    k.shop_id == shop && wanted.contains(&k.customer),
                    v.and_then(|e| e.order),
                ) {
                    let version = o.modified_at.map_or(0, |m| m.timestamp_millis()) * 16
                        + i64::from(o.status.progress());
                    let mut all = sink.lock().expect("orders");
                    if all.get(&o.id).is_none_or(|(v, _)| *v <= version) {
                        all.insert(o.id, (version, o));
                    }
                }
            },
        )
        .await?;
    }
    {
        let (sink, wanted, shop) = (profiles.clone(), wanted.clone(), shop.clone());
        scan::<CustomerKey, CustomerProfile>(
            config,
            bootstrap,
            &t.profiles.name,
            codecs.clone(),
            move |k, v| {
                if k.shop_id == shop && wanted.contains(&k.customer) {
                    let mut all = sink.lock().expect("profiles");
                    match v {
                        Some(p) if all.get(&k.customer).is_none_or(|q| q.version <= p.version) => {
                            all.insert(k.customer, p);
                        }
                        Some(_) => {}
                        None => {
                            all.remove(&k.customer);
                        }
                    }
                }
            },
        )
        .await?;
    }
    let order_ids: BTreeSet<i64> = orders.lock().expect("orders").keys().copied().collect();
    let order_ids = std::sync::Arc::new(order_ids);
    {
        let (sink, wanted, shop, ids) = (
            alerts.clone(),
            wanted.clone(),
            shop.clone(),
            order_ids.clone(),
        );
        scan::<AlertKey, Alert>(
            config,
            bootstrap,
            &t.alerts.name,
            codecs.clone(),
            move |_, v| {
                let Some(a) = v.filter(|a| a.shop_id == shop) else {
                    return;
                };
                let theirs = a
                    .customer
                    .as_ref()
                    .is_some_and(|c| wanted.contains(&c.customer))
                    || a.order.as_ref().is_some_and(|o| ids.contains(&o.order_id));
                if theirs {
                    sink.lock().expect("alerts").push(a);
                }
            },
        )
        .await?;
    }
    let alert_ids: BTreeSet<String> = alerts
        .lock()
        .expect("alerts")
        .iter()
        .map(|a| a.alert_id.clone())
        .collect();
    {
        let (sink, wanted, shop, ids) = (
            deliveries.clone(),
            wanted.clone(),
            shop.clone(),
            order_ids.clone(),
        );
        scan::<String, Delivery>(
            config,
            bootstrap,
            &t.deliveries.name,
            codecs.clone(),
            move |_, v| {
                let Some(d) = v.filter(|d| d.shop_id == shop) else {
                    return;
                };
                let theirs = (d.sink_kind() == "crm"
                    && d.destination == "contacts"
                    && wanted.contains(&d.alert_id))
                    || (d.sink_kind() == "crm"
                        && d.destination == "deals"
                        && d.order_id.is_some_and(|o| ids.contains(&o)))
                    || (d.sink_kind() == "slack" && alert_ids.contains(&d.alert_id));
                if theirs {
                    sink.lock().expect("deliveries").push(d);
                }
            },
        )
        .await?;
    }
    let mut held = Held {
        keys: keys_of_person,
        ..Held::default()
    };
    let mut accounts: Vec<CustomerRecord> = held
        .keys
        .iter()
        .filter_map(|k| all_accounts.get(k).cloned())
        .collect();
    let mut orders: Vec<Order> = std::mem::take(&mut *orders.lock().expect("orders"))
        .into_values()
        .map(|(_, o)| o)
        .collect();
    if let Some(keys) = &subject_keys {
        let keys = keys.clone();
        let (a, o, erased) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut erased = 0;
            let mut open = |fields| -> anyhow::Result<()> {
                if keys.open(fields)? == Sealing::Erased {
                    erased += 1;
                }
                Ok(())
            };
            for c in &mut accounts {
                open(customer_fields(c))?;
            }
            for o in &mut orders {
                open(order_fields(o))?;
            }
            Ok((accounts, orders, erased))
        })
        .await??;
        accounts = a;
        orders = o;
        held.erased_records = erased;
    }
    held.accounts = accounts;
    held.orders = orders.into_iter().map(|o| (o.id, o)).collect();
    held.profiles = std::mem::take(&mut *profiles.lock().expect("profiles"))
        .into_values()
        .collect();
    held.alerts = std::mem::take(&mut *alerts.lock().expect("alerts"));
    held.deliveries = std::mem::take(&mut *deliveries.lock().expect("deliveries"));
    Ok(held)
}
