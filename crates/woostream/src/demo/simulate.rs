//! A flash sale, as WooCommerce would deliver it: correctly signed webhooks built from the real
//! REST payload examples in `tests/fixtures/`, with many customers (some returning, some
//! guests), varied products, totals and statuses, sent in a burst shape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use woostream_enricher::model::synthetic::PurchaseProcess;
use woostream_woo::signature::sign;

const ORDER: &str = include_str!("../../../../tests/fixtures/woocommerce/woo_order_example.json");
const PRODUCT: &str =
    include_str!("../../../../tests/fixtures/woocommerce/woo_product_example.json");
const CUSTOMER: &str =
    include_str!("../../../../tests/fixtures/woocommerce/woo_customer_example.json");

const FIRST_NAMES: &[&str] = &[
    "Anna", "Jan", "Zoë", "Łukasz", "Maria", "Piotr", "Ewa", "John", "Aiko", "Omar", "Lena",
    "Tomás",
];
const LAST_NAMES: &[&str] = &[
    "Nowak", "Kowalska", "Doe", "Müller", "García", "Tanaka", "Smith", "Novák", "Rossi", "Silva",
];
const PAYMENT: &[(&str, &str)] = &[
    ("stripe", "Credit card"),
    ("paypal", "PayPal"),
    ("bacs", "Direct Bank Transfer"),
    ("cod", "Cash on delivery"),
];

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Options {
    /// The producer's webhook URL.
    pub url: String,
    /// The shop's webhook secret.
    pub secret: String,
    /// X-WC-Webhook-Source.
    pub source: String,
    pub orders: usize,
    /// How long the sale lasts; the rate follows a burst shape within it.
    pub duration: Duration,
    /// Distinct customers; fewer customers than orders means returning customers.
    pub customers: usize,
    pub products: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub seed: u64,
    pub currency: String,
    /// Customers with a past before the sale, delivered first (as a backfill would): they
    /// give the shop a history to be segmented and modelled on. Their first purchases fall in
    /// the first 12 weeks of `history_days`; from then on each buys and leaves as `process`
    /// says.
    pub history_customers: usize,
    pub history_days: u32,
    /// The purchase process the history is drawn from: what a fit of it should recover.
    pub process: PurchaseProcess,
    /// One registered customer deletes their account late in the sale (an erasure).
    pub erase_one: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            url: "http://127.0.0.1:8080/webhooks/woocommerce".into(),
            secret: "flash-sale-secret".into(),
            source: "https://flash-sale.example/".into(),
            orders: 3000,
            duration: Duration::from_secs(30),
            customers: 1200,
            products: 24,
            concurrency: 64,
            seed: 7,
            currency: "PLN".into(),
            history_customers: 0,
            // CDNOW's 78 weeks.
            history_days: 546,
            // Baskets of the shop's usual size (the sale's are bigger).
            process: PurchaseProcess::cdnow_like(400.0),
            erase_one: false,
        }
    }
}

/// One signed delivery.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub topic: String,
    pub body: Vec<u8>,
    /// Seconds into the sale when it is due.
    pub at: f64,
}

/// Counters the live summary prints.
#[derive(Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub spooled: AtomicU64,
    pub failed: AtomicU64,
    pub orders: AtomicU64,
    latency_us: Mutex<Option<Histogram<u64>>>,
}

impl Stats {
    fn record(&self, status: u16, body: &str, micros: u64) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let counter = match status {
            200 if body.contains("dead-lettered") => &self.dead_lettered,
            200 => &self.accepted,
            202 => &self.spooled,
            _ => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut h = self.latency_us.lock().expect("poisoned");
        let h = h.get_or_insert_with(|| Histogram::new(3).expect("histogram"));
        let _ = h.record(micros.max(1));
    }

    /// (p50, p99, max) latency in milliseconds.
    pub fn latency_ms(&self) -> (f64, f64, f64) {
        let h = self.latency_us.lock().expect("poisoned");
        match h.as_ref() {
            Some(h) => (
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                h.max() as f64 / 1000.0,
            ),
            None => (0.0, 0.0, 0.0),
        }
    }

    pub fn line(&self, elapsed: Duration) -> String {
        let (p50, p99, _) = self.latency_ms();
        let sent = self.sent.load(Ordering::Relaxed);
        format!(
            "t={:>5.1}s  webhooks={sent:>6}  orders={:>5}  accepted={:>6}  dead-lettered={:>3}  spooled={:>3}  failed={:>3}  rate={:>6.0}/s  p50={p50:.1}ms  p99={p99:.1}ms",
            elapsed.as_secs_f64(),
            self.orders.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
            self.dead_lettered.load(Ordering::Relaxed),
            self.spooled.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            sent as f64 / elapsed.as_secs_f64().max(0.001),
        )
    }
}

/// WooCommerce's `wp_json_encode`: compact JSON with `/` escaped and non-ASCII as `\uXXXX`.
pub fn php_json(v: &Value) -> Vec<u8> {
    let s = serde_json::to_string(v).expect("JSON values serialise");
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if (c as u32) < 0x80 => out.push(c),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.into_bytes()
}

/// (id, name, slug)
type CategoryRef = (i64, &'static str, &'static str);

struct Catalogue {
    /// (id, name, price, categories)
    products: Vec<(i64, String, Decimal, Vec<CategoryRef>)>,
}

const CATEGORIES: &[CategoryRef] = &[
    (9, "Clothing", "clothing"),
    (14, "T-shirts", "t-shirts"),
    (15, "Hoodies", "hoodies"),
    (21, "Accessories", "accessories"),
    (30, "Music", "music"),
];

/// Money from hundredths, always with two decimals as WooCommerce writes it.
fn amount(d: Decimal) -> String {
    format!("{:.2}", d.round_dp(2))
}

fn gmt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// The burst shape: a quiet start, the announcement spike, a long tail. Returns the share of
/// the sale's duration at which the `q`-th quantile of orders arrives.
fn burst_time(q: f64) -> f64 {
    // Piecewise-linear CDF: 10 % of orders in the first 20 % of the time, 65 % in the next
    // 25 %, the rest over the remaining 55 %.
    if q < 0.10 {
        q / 0.10 * 0.20
    } else if q < 0.75 {
        0.20 + (q - 0.10) / 0.65 * 0.25
    } else {
        0.45 + (q - 0.75) / 0.25 * 0.55
    }
}

/// Customer number `c`: seven in ten are registered, the rest buy as guests.
fn identity(c: usize) -> (bool, &'static str, &'static str, String, i64) {
    let registered = c % 10 < 7;
    let first = FIRST_NAMES[c % FIRST_NAMES.len()];
    let last = LAST_NAMES[(c / 3) % LAST_NAMES.len()];
    let email = if registered {
        format!("customer{c}@shop.example")
    } else {
        format!("guest{c}@mail.example")
    };
    (
        registered,
        first,
        last,
        email,
        if registered { 5000 + c as i64 } else { 0 },
    )
}

#[allow(clippy::too_many_arguments)]
fn customer_webhook(
    template: &Value,
    customer_id: i64,
    email: &str,
    first: &str,
    last: &str,
    c: usize,
    created: DateTime<Utc>,
    at: f64,
) -> Webhook {
    let mut cu = template.clone();
    cu["id"] = json!(customer_id);
    cu["email"] = json!(email);
    cu["first_name"] = json!(first);
    cu["last_name"] = json!(last);
    cu["username"] = json!(format!("customer{c}"));
    cu["billing"]["email"] = json!(email);
    cu["billing"]["first_name"] = json!(first);
    cu["billing"]["last_name"] = json!(last);
    cu["date_created_gmt"] = json!(gmt(created));
    cu["date_modified_gmt"] = json!(gmt(created));
    Webhook {
        topic: "customer.created".into(),
        body: php_json(&cu),
        at,
    }
}

/// Who places a simulated order.
struct SimCustomer<'a> {
    customer_id: i64,
    email: &'a str,
    first: &'a str,
    last: &'a str,
}

/// What an order is made of: 1–4 lines chosen by `pick`, or one line of a given value.
enum Basket<'a> {
    Lines(&'a mut dyn FnMut(&mut StdRng) -> usize),
    /// One product worth exactly this, no tax, no shipping: the drawn purchase value.
    Worth(usize, Decimal),
}

/// A pending order; returns it with its total and payment method.
#[allow(clippy::too_many_arguments)]
fn order_json(
    order_template: &Value,
    catalogue: &Catalogue,
    rng: &mut StdRng,
    o: &Options,
    order_id: i64,
    c: &SimCustomer,
    created: DateTime<Utc>,
    basket: Basket,
) -> (Value, Decimal, &'static str) {
    let (customer_id, email, first, last) = (c.customer_id, c.email, c.first, c.last);
    let mut lines = Vec::new();
    let mut subtotal = Decimal::ZERO;
    let mut tax = Decimal::ZERO;
    let chosen: Vec<(usize, i64, Option<Decimal>)> = match basket {
        Basket::Lines(pick) => (0..rng.random_range(1..=4))
            .map(|_| (pick(rng), rng.random_range(1..=3i64), None))
            .collect(),
        Basket::Worth(p, value) => vec![(p, 1, Some(value))],
    };
    for (k, (index, qty, worth)) in chosen.into_iter().enumerate() {
        let (pid, name, price, _) = &catalogue.products[index];
        let line_total = worth.unwrap_or(*price * Decimal::from(qty));
        let line_tax = if worth.is_some() {
            Decimal::ZERO
        } else {
            (line_total * Decimal::new(23, 2)).round_dp(2)
        };
        subtotal += line_total;
        tax += line_tax;
        lines.push(json!({
            "id": order_id * 10 + k as i64, "name": name, "product_id": pid, "variation_id": 0,
            "quantity": qty, "tax_class": "", "subtotal": amount(line_total), "subtotal_tax": amount(line_tax),
            "total": amount(line_total), "total_tax": amount(line_tax),
            "taxes": [{"id": 75, "total": amount(line_tax), "subtotal": amount(line_tax)}],
            "meta_data": [], "sku": format!("FS-{pid}"), "price": price.to_string().parse::<f64>().unwrap_or(0.0)
        }));
    }
    let shipping = if subtotal > Decimal::from(200) || tax.is_zero() {
        Decimal::ZERO
    } else {
        Decimal::new(1499, 2)
    };
    let total = subtotal + tax + shipping;
    let (pm, pm_title) = PAYMENT[rng.random_range(0..PAYMENT.len())];
    let mut order = order_template.clone();
    order["id"] = json!(order_id);
    order["number"] = json!(order_id.to_string());
    order["order_key"] = json!(format!("wc_order_{order_id:x}"));
    order["created_via"] = json!("checkout");
    order["currency"] = json!(o.currency);
    order["customer_id"] = json!(customer_id);
    order["billing"]["email"] = json!(email);
    order["billing"]["first_name"] = json!(first);
    order["billing"]["last_name"] = json!(last);
    order["shipping"]["first_name"] = json!(first);
    order["shipping"]["last_name"] = json!(last);
    order["payment_method"] = json!(pm);
    order["payment_method_title"] = json!(pm_title);
    order["line_items"] = json!(lines);
    order["shipping_total"] = json!(amount(shipping));
    order["cart_tax"] = json!(amount(tax));
    order["total_tax"] = json!(amount(tax));
    order["total"] = json!(amount(total));
    order["date_created_gmt"] = json!(gmt(created));
    order["date_modified_gmt"] = json!(gmt(created));
    order["date_paid_gmt"] = Value::Null;
    order["status"] = json!("pending");
    (order, total, pm)
}

/// What buyers write at checkout, now and then.
const NOTES: &[&str] = &[
    "Could you gift-wrap it, please?",
    "Is delivery before Friday possible?",
    "Please leave the parcel with the neighbour at no. 12.",
    "Do you ship this colour in size M too?",
    "My last order arrived damaged, please pack it well <3",
];

/// What reviewers write, by rating.
const REVIEWS: &[(i32, &str)] = &[
    (5, "Exactly as described, fast shipping."),
    (4, "Good quality, runs a bit small."),
    (5, "Bought it again for my brother."),
    (2, "The colour faded after one wash."),
    (1, "Arrived broken and support never answered."),
    (3, "Fine for the price."),
];

/// The product that sells out in the sale (and is restocked): a limited edition.
const LIMITED: usize = 0;
/// Stock of the limited edition at the start of the sale, and the restock.
const LIMITED_STOCK: i64 = 40;
const RESTOCK: i64 = 400;
/// Low-stock threshold of every product.
const LOW_STOCK: i64 = 10;

fn catalogue_of(o: &Options, rng: &mut StdRng) -> Catalogue {
    Catalogue {
        products: (0..o.products.max(2))
            .map(|i| {
                let id = 1000 + i as i64;
                let price = Decimal::new(rng.random_range(1_999..=49_999), 2);
                let cats = vec![
                    CATEGORIES[i % CATEGORIES.len()],
                    CATEGORIES[(i * 7 + 1) % CATEGORIES.len()],
                ];
                let name = if i == LIMITED {
                    "Limited edition hoodie".to_string()
                } else {
                    format!("Flash item {}", i + 1)
                };
                (id, name, price, cats)
            })
            .collect(),
    }
}

/// A product webhook of `p` with `stock` units.
fn product_webhook(
    template: &Value,
    catalogue: &Catalogue,
    p: usize,
    stock: i64,
    topic: &str,
    modified: DateTime<Utc>,
    at: f64,
) -> Webhook {
    let (id, name, price, cats) = &catalogue.products[p];
    let mut v = template.clone();
    v["id"] = json!(id);
    v["name"] = json!(name);
    v["slug"] = json!(format!("flash-item-{id}"));
    v["sku"] = json!(format!("FS-{id}"));
    v["price"] = json!(amount(*price));
    v["regular_price"] = json!(amount(*price));
    v["manage_stock"] = json!(true);
    v["stock_quantity"] = json!(stock);
    v["stock_status"] = json!(if stock > 0 { "instock" } else { "outofstock" });
    v["low_stock_amount"] = json!(LOW_STOCK);
    v["categories"] = json!(cats
        .iter()
        .map(|(id, n, s)| json!({"id": id, "name": n, "slug": s}))
        .collect::<Vec<_>>());
    v["date_modified_gmt"] = json!(gmt(modified));
    Webhook {
        topic: topic.into(),
        body: php_json(&v),
        at,
    }
}

/// Reviews written before the sale (REST objects: reviews have no webhook), some negative.
pub fn reviews(o: &Options, start: DateTime<Utc>) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(o.seed ^ 0x5eed);
    let catalogue = catalogue_of(o, &mut rng);
    (0..24)
        .map(|i| {
            let (rating, text) = REVIEWS[i % REVIEWS.len()];
            let (pid, name, _, _) = &catalogue.products[i % catalogue.products.len()];
            let created = start - chrono::Duration::days(rng.random_range(1..60));
            json!({
                "id": 700 + i, "date_created_gmt": gmt(created), "product_id": pid,
                "product_name": name, "status": "approved", "reviewer": "A. Customer",
                "reviewer_email": format!("reviewer{i}@mail.example"), "review": format!("<p>{text}</p>"),
                "rating": rating, "verified": i % 3 != 0,
            })
        })
        .collect()
}

/// Builds the whole sale up front (deterministic for a seed), ordered by due time.
pub fn plan(o: &Options, start: DateTime<Utc>) -> Vec<Webhook> {
    let mut rng = StdRng::seed_from_u64(o.seed);
    let order_template: Value = serde_json::from_str(ORDER).expect("order fixture");
    let product_template: Value = serde_json::from_str(PRODUCT).expect("product fixture");
    let customer_template: Value = serde_json::from_str(CUSTOMER).expect("customer fixture");
    let secs = o.duration.as_secs_f64();
    let mut out = Vec::new();

    let catalogue = catalogue_of(o, &mut rng);
    let n_products = catalogue.products.len();
    let mut stock: Vec<i64> = (0..n_products)
        .map(|p| {
            if p == LIMITED {
                LIMITED_STOCK
            } else {
                rng.random_range(800..2_000)
            }
        })
        .collect();
    for (p, units) in stock.iter().enumerate() {
        out.push(product_webhook(
            &product_template,
            &catalogue,
            p,
            *units,
            "product.created",
            start,
            0.0,
        ));
    }

    let customers = o.customers.max(1);
    let mut registered_seen = vec![false; customers.max(o.history_customers)];
    let zipf_pick = |rng: &mut StdRng| -> usize {
        // A few customers buy often, most once: inverse-power draw.
        let u: f64 = rng.random_range(0.0..1.0);
        ((customers as f64) * u.powf(1.6)) as usize % customers
    };
    // The shop's past, drawn from the purchase process: completed orders in date order,
    // delivered in the first tenth of the sale. Each customer has a favourite product they
    // buy most of the time: what their taste and the shop's repurchase intervals come from.
    let history_start = start - chrono::Duration::days(i64::from(o.history_days));
    let drawn = o.process.draw(
        o.history_customers,
        84.0,
        f64::from(o.history_days),
        &mut rng,
    );
    let mut past: Vec<(DateTime<Utc>, usize, f64)> = drawn
        .iter()
        .enumerate()
        .flat_map(|(c, d)| {
            d.purchases.iter().map(move |(day, value)| {
                (
                    history_start + chrono::Duration::seconds((day * 86_400.0) as i64),
                    c,
                    *value,
                )
            })
        })
        .filter(|(t, _, _)| *t < start - chrono::Duration::hours(2))
        .collect();
    past.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let history_orders = past.len();
    for (i, (created, c, value)) in past.into_iter().enumerate() {
        let at = secs * 0.1 * i as f64 / history_orders.max(1) as f64;
        let (registered, first, last, email, customer_id) = identity(c);
        if registered && !registered_seen[c] {
            registered_seen[c] = true;
            out.push(customer_webhook(
                &customer_template,
                customer_id,
                &email,
                first,
                last,
                c,
                created,
                at,
            ));
        }
        let customer = SimCustomer {
            customer_id,
            email: &email,
            first,
            last,
        };
        let order_id = 1_000_000 + i as i64;
        let favourite = 1 + c % (n_products - 1);
        let product = if rng.random_range(0.0..1.0) < 0.7 {
            favourite
        } else {
            rng.random_range(1..n_products)
        };
        let value = Decimal::from_f64_retain(value.max(1.0))
            .unwrap_or(Decimal::ONE)
            .round_dp(2);
        let (mut order, _, _) = order_json(
            &order_template,
            &catalogue,
            &mut rng,
            o,
            order_id,
            &customer,
            created,
            Basket::Worth(product, value),
        );
        let done = created + chrono::Duration::hours(1);
        order["status"] = json!("completed");
        order["date_paid_gmt"] = json!(gmt(done));
        order["date_completed_gmt"] = json!(gmt(done));
        order["date_modified_gmt"] = json!(gmt(done));
        order["transaction_id"] = json!(format!("txn_{order_id}"));
        out.push(Webhook {
            topic: "order.created".into(),
            body: php_json(&order),
            at,
        });
    }
    let mut restocked = false;
    let mut erased = false;
    for n in 0..o.orders {
        let q = (n as f64 + rng.random_range(0.0..1.0)) / o.orders.max(1) as f64;
        let at = burst_time(q) * secs;
        let c = zipf_pick(&mut rng);
        let (registered, first, last, email, customer_id) = identity(c);
        let created = start + chrono::Duration::milliseconds((at * 1000.0) as i64);

        if registered && !registered_seen[c] {
            registered_seen[c] = true;
            out.push(customer_webhook(
                &customer_template,
                customer_id,
                &email,
                first,
                last,
                c,
                created,
                (at - 0.05).max(0.0),
            ));
        }

        let order_id = 10_000 + n as i64;
        let customer = SimCustomer {
            customer_id,
            email: &email,
            first,
            last,
        };
        // A third of the sale's lines are the limited edition while it lasts; nobody buys
        // what is out of stock.
        let in_stock: Vec<usize> = (0..n_products).filter(|p| stock[*p] > 0).collect();
        let mut pick = |rng: &mut StdRng| -> usize {
            if stock[LIMITED] > 0 && rng.random_range(0.0..1.0) < 0.33 {
                LIMITED
            } else if in_stock.is_empty() {
                // Sold out everywhere: backorders.
                rng.random_range(0..n_products)
            } else {
                in_stock[rng.random_range(0..in_stock.len())]
            }
        };
        let (mut order, total, pm) = order_json(
            &order_template,
            &catalogue,
            &mut rng,
            o,
            order_id,
            &customer,
            created,
            Basket::Lines(&mut pick),
        );
        if rng.random_range(0.0..1.0) < 0.04 {
            order["customer_note"] = json!(NOTES[rng.random_range(0..NOTES.len())]);
        }
        // WooCommerce reduces stock as the order is placed, and says so in product webhooks
        // when a product crosses its low-stock level or sells out.
        for line in order["line_items"].as_array().cloned().unwrap_or_default() {
            let pid = line["product_id"].as_i64().unwrap_or_default();
            let p = (pid - 1000) as usize;
            let before = stock[p];
            stock[p] = (before - line["quantity"].as_i64().unwrap_or(1)).max(0);
            let crossed =
                (before > LOW_STOCK && stock[p] <= LOW_STOCK) || (before > 0 && stock[p] == 0);
            if crossed {
                out.push(product_webhook(
                    &product_template,
                    &catalogue,
                    p,
                    stock[p],
                    "product.updated",
                    created,
                    at + 0.01,
                ));
            }
            if p == LIMITED && stock[p] == 0 && !restocked {
                // The shop restocks the limited edition a few seconds later.
                restocked = true;
                stock[p] = RESTOCK;
                let back = (at + 3.0).min(secs);
                out.push(product_webhook(
                    &product_template,
                    &catalogue,
                    p,
                    RESTOCK,
                    "product.updated",
                    start + chrono::Duration::milliseconds((back * 1000.0) as i64),
                    back,
                ));
            }
        }
        out.push(Webhook {
            topic: "order.created".into(),
            body: php_json(&order),
            at,
        });
        // Late in the sale one registered customer deletes their account: an erasure.
        if o.erase_one && !erased && q > 0.9 && registered {
            erased = true;
            out.push(Webhook {
                topic: "customer.deleted".into(),
                body: php_json(&json!({"id": customer_id})),
                at: (at + 1.0).min(secs),
            });
        }

        // What happens next: paid, on hold (bank transfer), failed; later completed, cancelled
        // or refunded.
        let roll: f64 = rng.random_range(0.0..1.0);
        let mut t = created;
        let step = |order: &mut Value,
                    status: &str,
                    delay_s: f64,
                    out: &mut Vec<Webhook>,
                    t: &mut DateTime<Utc>| {
            *t += chrono::Duration::milliseconds((delay_s * 1000.0) as i64);
            order["status"] = json!(status);
            order["date_modified_gmt"] = json!(gmt(*t));
            if status == "processing" {
                order["date_paid_gmt"] = json!(gmt(*t));
                order["transaction_id"] = json!(format!("txn_{order_id}"));
            }
            if status == "completed" {
                order["date_completed_gmt"] = json!(gmt(*t));
            }
            let at = ((*t - start).num_milliseconds() as f64 / 1000.0).min(secs);
            out.push(Webhook {
                topic: "order.updated".into(),
                body: php_json(order),
                at,
            });
        };
        if pm == "bacs" {
            step(&mut order, "on-hold", 0.3, &mut out, &mut t);
        } else if roll < 0.06 {
            step(&mut order, "failed", 0.4, &mut out, &mut t);
            continue;
        } else {
            step(&mut order, "processing", 0.4, &mut out, &mut t);
        }
        let later: f64 = rng.random_range(0.0..1.0);
        if later < 0.35 {
            step(&mut order, "completed", 2.0, &mut out, &mut t);
        } else if later < 0.40 {
            step(&mut order, "cancelled", 1.5, &mut out, &mut t);
        } else if later < 0.44 {
            order["refunds"] = json!([{"id": order_id * 10 + 9, "reason": "Changed mind", "total": format!("-{}", amount(total))}]);
            step(&mut order, "refunded", 3.0, &mut out, &mut t);
        }
    }
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    out
}

/// Sends the planned sale, pacing by due time; returns the stats once every webhook is answered.
pub async fn run(o: &Options, stats: Arc<Stats>) -> anyhow::Result<()> {
    let plan = plan(o, Utc::now());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .timeout(Duration::from_secs(60))
        .build()?;
    let started = tokio::time::Instant::now();
    stream::iter(plan)
        .map(|w| {
            let (client, stats) = (client.clone(), stats.clone());
            async move {
                tokio::time::sleep_until(started + Duration::from_secs_f64(w.at)).await;
                let signature = sign(&w.body, &o.secret);
                let t0 = Instant::now();
                let resp = client
                    .post(&o.url)
                    .header("content-type", "application/json")
                    .header(
                        "user-agent",
                        "WooCommerce/9.0.0 Hookshot (WordPress/6.6) woostream-simulator",
                    )
                    .header("x-wc-webhook-source", &o.source)
                    .header("x-wc-webhook-topic", &w.topic)
                    .header(
                        "x-wc-webhook-resource",
                        w.topic.split('.').next().unwrap_or(""),
                    )
                    .header(
                        "x-wc-webhook-event",
                        w.topic.split('.').nth(1).unwrap_or(""),
                    )
                    .header("x-wc-webhook-signature", signature)
                    .header("x-wc-webhook-id", "1")
                    .header(
                        "x-wc-webhook-delivery-id",
                        format!("{:x}", rand::random::<u64>()),
                    )
                    .body(w.body)
                    .send()
                    .await;
                let micros = t0.elapsed().as_micros() as u64;
                if w.topic == "order.created" {
                    stats.orders.fetch_add(1, Ordering::Relaxed);
                }
                match resp {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body = r.text().await.unwrap_or_default();
                        stats.record(status, &body, micros);
                    }
                    Err(_) => stats.record(0, "", micros),
                }
            }
        })
        .buffer_unordered(o.concurrency.max(1))
        .collect::<()>()
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use woostream_woo::normalise::{normalise, Event, WebhookDelivery};

    #[test]
    fn php_json_escapes_like_wp_json_encode() {
        assert_eq!(
            php_json(&json!({"u": "https://x/y", "n": "Zoë"})),
            br#"{"n":"Zo\u00eb","u":"https:\/\/x\/y"}"#.to_vec()
        );
        assert_eq!(php_json(&json!("🛒")), br#""\ud83d\uded2""#.to_vec());
    }

    #[test]
    fn the_plan_is_a_realistic_sale_that_the_producer_reads() {
        let o = Options {
            orders: 400,
            customers: 150,
            ..Options::default()
        };
        let plan = plan(&o, Utc::now());
        let created: Vec<&Webhook> = plan.iter().filter(|w| w.topic == "order.created").collect();
        assert_eq!(created.len(), 400);
        assert!(plan.windows(2).all(|w| w[0].at <= w[1].at));
        // The spike: most orders in the middle quarter of the sale.
        let secs = o.duration.as_secs_f64();
        let in_spike = created
            .iter()
            .filter(|w| w.at >= 0.2 * secs && w.at < 0.45 * secs)
            .count();
        assert!(in_spike > 200, "{in_spike}");
        let d = WebhookDelivery {
            shop_id: "s",
            source: &o.source,
            wc_topic: None,
            webhook_id: None,
            delivery_id: None,
            correlation_id: "c",
            received_at: Utc::now(),
            origin: woostream_core::contract::events::Origin::Webhook,
            customers: &woostream_core::privacy::CustomerHasher::new(b"test"),
        };
        let mut customers = std::collections::HashMap::new();
        let mut guests = 0;
        let mut statuses = std::collections::HashSet::new();
        for w in &plan {
            let e = normalise(
                &WebhookDelivery {
                    wc_topic: Some(&w.topic),
                    ..d.clone()
                },
                &w.body,
            )
            .unwrap_or_else(|r| panic!("{}: {r:?}", w.topic));
            if let Event::Order(k, e) = e {
                let order = e.order.unwrap();
                statuses.insert(order.status_slug.clone());
                let items: Decimal = order
                    .line_items
                    .iter()
                    .map(|l| l.total.amount() + l.total_tax.amount())
                    .sum();
                assert_eq!(
                    order.total.amount(),
                    items + order.shipping_total.amount(),
                    "totals add up"
                );
                if w.topic == "order.created" {
                    *customers.entry(k.customer.clone()).or_insert(0) += 1;
                    guests += k.customer.starts_with("guest:") as usize;
                }
            }
        }
        assert!(customers.values().any(|n| *n > 2), "returning customers");
        assert!(guests > 0 && guests < 400, "some guests");
        for s in ["pending", "processing", "on-hold", "failed", "completed"] {
            assert!(statuses.contains(s), "{s} in {statuses:?}");
        }
    }
}
