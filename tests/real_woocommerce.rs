//! woostream against a genuine WooCommerce 10.0.2 on WordPress 6.8.8 (`make test-woocommerce`):
//! PHP and MariaDB from Debian, HPOS order storage, WooCommerce's own webhook delivery and REST
//! API, no plugin code changed (`tests/woocommerce/realshop.py` says what it takes). The shop is
//! driven like a real one — products with stock and variations, registered and guest customers,
//! orders through every status, a refund, notes, a review, coupons, a trashed and restored
//! order, a trashed product, a deleted customer, changes made under another host name and from
//! PHP's command line — into woostream's producer, enricher and REST roles on Tansu, and what
//! woostream wrote is checked against the shop's own REST answers, partly through an
//! independent reader (Python confluent-kafka + fastavro).
//!
//! Ignored by `cargo test`: it needs the release archives (`WOOSTREAM_REALWOO_DIR`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use woostream_core::config::{Config, ShopConfig, ShopRest};
use woostream_core::contract::codec::Decoder;
use woostream_core::contract::events::{
    CustomerKey, OrderEvent, Origin, ProductEvent, ReviewEvent,
};
use woostream_tests::enricher::{
    await_caught_up, free_port, log_ends, read_view, spawn, woostream_cli, EnricherProcess,
};
use woostream_tests::*;
use woostream_woo::rest::WooRest;

const SHOP_SECRET: &str = "real-shop-webhook-secret";

/// The running shop; stopped (and everything it made removed) when dropped.
struct RealShop {
    child: Child,
    info: Value,
}

impl RealShop {
    fn start() -> RealShop {
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/woocommerce/realshop.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the shop harness");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            !line.trim().is_empty(),
            "the real shop did not start (WOOSTREAM_REALWOO_DIR must name the WordPress and WooCommerce archives)"
        );
        RealShop {
            child,
            info: serde_json::from_str(&line).unwrap(),
        }
    }

    fn get(&self, key: &str) -> String {
        match &self.info[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Runs a PHP script of the harness in the site's root under `host` (as WP-CLI would).
    fn php(&self, script: &str, arg: &str, host: &str) -> String {
        let out = Command::new("php")
            .arg(script)
            .arg(arg)
            .current_dir(self.get("root"))
            .env("SHOP_HOST", host)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script} {arg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for RealShop {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn client(url: &str, ck: &str, cs: &str) -> WooRest {
    WooRest::for_shop(&ShopConfig {
        id: "real".into(),
        source: url.into(),
        source_aliases: Vec::new(),
        secret: Some(SHOP_SECRET.into()),
        secret_env: None,
        rest: Some(ShopRest {
            url: Some(format!("{url}wp-json/wc/v3/")),
            consumer_key: Some(ck.into()),
            consumer_secret: Some(cs.into()),
            requests_per_second: 100.0,
            concurrency: 1,
            ..ShopRest::default()
        }),
        require_topic_secrets: false,
        previous_secret: None,
    })
    .unwrap()
}

async fn call(shop: &WooRest, method: Method, endpoint: &str, body: Value) -> Value {
    let body = (!body.is_null()).then_some(body);
    shop.object(method.clone(), endpoint, body.as_ref())
        .await
        .unwrap_or_else(|e| panic!("{method} {endpoint}: {e}"))
}

async fn all(shop: &WooRest, endpoint: &str, query: &[(&str, String)]) -> Vec<Value> {
    shop.list_all(endpoint, query).await.unwrap()
}

fn money(v: &Value) -> Decimal {
    v.as_str().unwrap_or("0").parse().unwrap()
}

/// A role's process, ready.
async fn role(name: &str, section: &str, base: &str, dir: &std::path::Path) -> EnricherProcess {
    let port = free_port();
    let toml = format!("{section}\n{base}[ops]\nlisten = \"127.0.0.1:{port}\"\n");
    let mut p = spawn(name, &toml, "real", port, dir);
    p.ready(Duration::from_secs(120)).await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the WordPress and WooCommerce release archives: make test-woocommerce"]
async fn a_real_woocommerce_shop_through_every_role() {
    let started = Instant::now();
    let tansu = tokio::task::spawn_blocking(Tansu::start).await.unwrap();
    let shop_process = tokio::task::spawn_blocking(RealShop::start).await.unwrap();
    let url = shop_process.get("url");
    let port = shop_process.get("port");
    let (ck, cs) = (
        shop_process.get("consumer_key"),
        shop_process.get("consumer_secret"),
    );
    println!(
        "real shop at {url} (started in {} s)",
        shop_process.get("seconds_to_start")
    );
    let shop = client(&url, &ck, &cs);
    // The same shop reached under another name: its deliveries name that one as their source.
    let other_name = format!("localhost:{port}");
    let shop_by_other_name = client(&format!("http://{other_name}/"), &ck, &cs);

    let dir = tempfile::tempdir().unwrap();
    let webhook_port = free_port();
    let delivery_url = format!("http://127.0.0.1:{webhook_port}/webhooks/woocommerce");
    // The shop's REST API over plain http: OAuth 1.0a, chosen by woostream itself.
    let base = format!(
        "[kafka]\nbootstrap_servers = \"{}\"\n\n[[shops]]\nid = \"real\"\nsource = \"{url}\"\nsecret = \"{SHOP_SECRET}\"\nrequire_topic_secrets = true\n[shops.rest]\nconsumer_key = \"{ck}\"\nconsumer_secret = \"{cs}\"\nrequests_per_second = 20\ndelivery_url = \"{delivery_url}\"\n\n",
        tansu.bootstrap
    );
    let config_path = dir.path().join("cli.toml");
    std::fs::write(
        &config_path,
        format!("{base}[ops]\nlisten = \"127.0.0.1:{}\"\n", free_port()),
    )
    .unwrap();
    let config = Config::from_text(
        "real.toml",
        &std::fs::read_to_string(&config_path).unwrap(),
        Vec::<(String, String)>::new(),
    )
    .unwrap();

    let producer = role(
        "producer",
        &format!("[producer]\nlisten = \"127.0.0.1:{webhook_port}\"\n"),
        &base,
        dir.path(),
    )
    .await;
    let mut enricher = role("enricher", "", &base, dir.path()).await;

    // Webhooks: created by woostream through the REST API; each creation pings, and only an
    // exact 200 makes WooCommerce activate it. Each is given its topic's secret, and the
    // producer takes no other (require_topic_secrets): every delivery below is signed so by
    // WooCommerce itself.
    let (ok, out) = tokio::task::spawn_blocking({
        let path = config_path.clone();
        move || woostream_cli(&["webhooks", "sync"], &path, Duration::from_secs(120))
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    let hooks = all(&shop, "webhooks", &[("status", "all".into())]).await;
    let topics = woostream_producer::rest::reconcile::WEBHOOK_TOPICS;
    assert_eq!(hooks.len(), topics.len(), "{hooks:#?}");
    assert!(
        hooks.iter().all(|h| h["status"] == "active"),
        "every webhook active after its ping: {hooks:#?}"
    );

    // The shop's life.
    let category = call(
        &shop,
        Method::POST,
        "products/categories",
        json!({"name": "Coffee"}),
    )
    .await;
    let cat = json!([{"id": category["id"]}]);
    let mut products = Vec::new();
    for (name, price, stock) in [
        ("Espresso beans", "22.99", Some(6)),
        ("Filter papers", "4.00", None),
        ("Grinder", "89.50", Some(3)),
        ("Mug", "12.00", None),
    ] {
        let mut p =
            json!({"name": name, "type": "simple", "regular_price": price, "categories": cat});
        if let Some(n) = stock {
            p["manage_stock"] = json!(true);
            p["stock_quantity"] = json!(n);
            p["low_stock_amount"] = json!(2);
        }
        products.push(call(&shop, Method::POST, "products", p).await);
    }
    let variable = call(
        &shop,
        Method::POST,
        "products",
        json!({"name": "T-shirt", "type": "variable", "categories": cat,
               "attributes": [{"name": "Size", "visible": true, "variation": true, "options": ["S", "M"]}]}),
    )
    .await;
    let mut variations = Vec::new();
    for size in ["S", "M"] {
        variations.push(
            call(
                &shop,
                Method::POST,
                &format!("products/{}/variations", variable["id"]),
                json!({"regular_price": "25.00", "manage_stock": true, "stock_quantity": 10,
                       "attributes": [{"name": "Size", "option": size}]}),
            )
            .await,
        );
    }
    let mut customers = Vec::new();
    for (first, last) in [("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing")] {
        let email = format!(
            "{}.{}@example.test",
            first.to_lowercase(),
            last.to_lowercase()
        );
        customers.push(
            call(
                &shop,
                Method::POST,
                "customers",
                json!({"email": email, "first_name": first, "last_name": last,
                       "billing": {"first_name": first, "last_name": last, "email": email,
                                   "address_1": "1 Main St", "city": "Warsaw", "country": "PL", "phone": "+48 600 000 000"}}),
            )
            .await,
        );
    }
    // A customer's edit fires customer.updated (several times, in WooCommerce 10).
    call(
        &shop,
        Method::PUT,
        &format!("customers/{}", customers[0]["id"]),
        json!({"last_name": "King"}),
    )
    .await;
    let mut coupons = Vec::new();
    for code in ["welcome10", "flash20"] {
        coupons.push(
            call(
                &shop,
                Method::POST,
                "coupons",
                json!({"code": code, "discount_type": "percent", "amount": "10"}),
            )
            .await,
        );
    }
    call(
        &shop,
        Method::PUT,
        &format!("coupons/{}", coupons[0]["id"]),
        json!({"amount": "15"}),
    )
    .await;

    let line = |p: &Value, n: i64| json!({"product_id": p["id"], "quantity": n});
    let order_of = |customer: &Value, lines: Vec<Value>| {
        json!({"customer_id": customer["id"], "status": "pending", "payment_method": "cod",
               "billing": customer["billing"].clone(), "line_items": lines})
    };
    let mut orders = Vec::new();
    // (customer, lines, the statuses it goes through)
    let plan: Vec<(usize, Vec<Value>, Vec<&str>)> = vec![
        (
            0,
            vec![line(&products[0], 2), line(&products[1], 1)],
            vec!["processing", "completed"],
        ),
        (
            1,
            vec![line(&products[2], 1)],
            vec!["processing", "completed"],
        ),
        (2, vec![line(&products[3], 3)], vec!["processing"]),
        (0, vec![line(&products[1], 2)], vec!["on-hold"]),
        (1, vec![line(&products[3], 1)], vec!["failed"]),
        (2, vec![line(&products[0], 1)], vec!["on-hold", "cancelled"]),
        (
            0,
            vec![line(&products[2], 1), line(&products[3], 1)],
            vec!["processing", "completed"],
        ),
        (
            1,
            vec![
                json!({"product_id": variable["id"], "variation_id": variations[0]["id"], "quantity": 2}),
            ],
            vec!["processing"],
        ),
        // Takes the grinder's stock to 0: WooCommerce's low and no stock actions.
        (0, vec![line(&products[2], 1)], vec!["processing"]),
    ];
    for (who, lines, statuses) in plan {
        let mut o = call(
            &shop,
            Method::POST,
            "orders",
            order_of(&customers[who], lines),
        )
        .await;
        for status in statuses {
            o = call(
                &shop,
                Method::PUT,
                &format!("orders/{}", o["id"]),
                json!({"status": status}),
            )
            .await;
        }
        orders.push(o);
    }
    // A coupon on an order, a note for the customer, a partial refund.
    call(
        &shop,
        Method::PUT,
        &format!("orders/{}", orders[2]["id"]),
        json!({"coupon_lines": [{"code": "welcome10"}]}),
    )
    .await;
    call(
        &shop,
        Method::POST,
        &format!("orders/{}/notes", orders[0]["id"]),
        json!({"note": "Your parcel has shipped.", "customer_note": true}),
    )
    .await;
    call(
        &shop,
        Method::POST,
        &format!("orders/{}/refunds", orders[6]["id"]),
        json!({"amount": "12.00", "reason": "Mug arrived chipped", "api_refund": false}),
    )
    .await;
    // Guests.
    for (i, p) in [&products[0], &products[3]].iter().enumerate() {
        let email = format!("guest{i}@example.test");
        let o = call(
            &shop,
            Method::POST,
            "orders",
            json!({"status": "processing", "payment_method": "bacs", "set_paid": true,
                   "billing": {"first_name": "Guest", "email": email, "country": "PL"},
                   "line_items": [line(p, 1)]}),
        )
        .await;
        orders.push(o);
    }
    // Changed under another host name: its deliveries carry http://localhost:PORT/.
    call(
        &shop_by_other_name,
        Method::PUT,
        &format!("orders/{}", orders[2]["id"]),
        json!({"status": "completed"}),
    )
    .await;
    call(
        &shop,
        Method::POST,
        "products/reviews",
        json!({"product_id": products[0]["id"], "review": "Lovely crema.", "reviewer": "Ada",
               "reviewer_email": "ada.lovelace@example.test", "rating": 5}),
    )
    .await;
    // Trash an order, then restore it from PHP's command line under another host name.
    let restored = orders[6]["id"].as_i64().unwrap();
    call(
        &shop,
        Method::DELETE,
        &format!("orders/{restored}"),
        Value::Null,
    )
    .await;
    let trashed_for_good = orders[1]["id"].as_i64().unwrap();
    call(
        &shop,
        Method::DELETE,
        &format!("orders/{trashed_for_good}"),
        Value::Null,
    )
    .await;
    assert_eq!(
        shop_process.php("woostream-untrash.php", &restored.to_string(), &other_name),
        "completed"
    );
    // Trashing a product fires product.deleted and coupon.deleted with its id; trashing a
    // coupon the reverse.
    let trashed_product = products[1]["id"].as_i64().unwrap();
    call(
        &shop,
        Method::DELETE,
        &format!("products/{trashed_product}"),
        Value::Null,
    )
    .await;
    let trashed_coupon = coupons[1]["id"].as_i64().unwrap();
    call(
        &shop,
        Method::DELETE,
        &format!("coupons/{trashed_coupon}"),
        Value::Null,
    )
    .await;
    // A deleted account: WooCommerce fires customer.deleted and keeps its orders.
    let deleted_customer = customers[2]["id"].as_i64().unwrap();
    shop.request(
        Method::DELETE,
        &format!("customers/{deleted_customer}"),
        &[("force", "true".into())],
        None,
    )
    .await
    .unwrap();

    // Another receiver's webhook that WooCommerce disabled, and one of woostream's.
    let foreign = call(
        &shop,
        Method::POST,
        "webhooks",
        json!({"name": "ERP", "topic": "order.updated", "status": "paused",
               "delivery_url": "http://127.0.0.1:9/erp"}),
    )
    .await;
    call(
        &shop,
        Method::PUT,
        &format!("webhooks/{}", foreign["id"]),
        json!({"status": "disabled"}),
    )
    .await;
    let ours = hooks[0]["id"].as_i64().unwrap();
    call(
        &shop,
        Method::PUT,
        &format!("webhooks/{ours}"),
        json!({"status": "disabled"}),
    )
    .await;
    let driven = started.elapsed();

    // Reconciliation and the review poll, one pass; then the REST history.
    for args in [vec!["rest", "--once"], vec!["backfill"]] {
        let path = config_path.clone();
        let (ok, out) = tokio::task::spawn_blocking(move || {
            woostream_cli(&args, &path, Duration::from_secs(300))
        })
        .await
        .unwrap();
        assert!(ok, "{out}");
        println!("{out}");
    }
    let hooks_after = all(&shop, "webhooks", &[("status", "all".into())]).await;
    let status_of = |id: i64| {
        hooks_after
            .iter()
            .find(|h| h["id"].as_i64() == Some(id))
            .map(|h| h["status"].as_str().unwrap().to_string())
    };
    assert_eq!(
        status_of(ours).as_deref(),
        Some("active"),
        "ours re-enabled"
    );
    assert_eq!(
        status_of(foreign["id"].as_i64().unwrap()).as_deref(),
        Some("disabled"),
        "another receiver's webhook left alone"
    );

    // Every delivery accounted for, by topic and outcome.
    let metrics = producer.metrics_text();
    let mut accounting: BTreeMap<(String, String), f64> = BTreeMap::new();
    for l in metrics
        .lines()
        .filter(|l| l.starts_with("woostream_webhook_requests_total{"))
    {
        let label = |k: &str| {
            l.split(&format!("{k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let n: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        if n > 0.0 {
            *accounting
                .entry((label("topic"), label("outcome")))
                .or_default() += n;
        }
    }
    println!("deliveries by topic and outcome:");
    for ((topic, outcome), n) in &accounting {
        println!("  {topic:<44} {outcome:<18} {n}");
    }
    let outcomes: BTreeSet<&str> = accounting.keys().map(|(_, o)| o.as_str()).collect();
    assert!(
        // "duplicate": the same body signed for the same webhook in the same second (WooCommerce
        // fires product.updated twice for one stock change), kept once.
        outcomes
            .iter()
            .all(|o| ["accepted", "ping", "not_this_resource", "duplicate"].contains(o)),
        "{accounting:?}"
    );
    assert_eq!(
        accounting.get(&("unknown".into(), "ping".into())).copied(),
        Some(topics.len() as f64),
        "one ping per webhook created"
    );
    assert!(producer.metric("woostream_webhook_source_mismatch_total") >= 2.0);
    assert!(
        producer.metric("woostream_webhook_deletions_not_of_resource_total") >= 2.0,
        "the twins of the trashed product and coupon"
    );
    assert_eq!(
        producer.metric("woostream_webhook_unresolved_order_deletions_total"),
        0.0
    );

    // The enricher has read everything.
    let inputs = log_ends(
        &tansu.bootstrap,
        &["woo.orders", "woo.customers", "woo.products", "woo.reviews"],
    );
    let bootstrap = tansu.bootstrap.clone();
    let group = config.enricher.group_id.clone();
    let enricher = tokio::task::spawn_blocking(move || {
        await_caught_up(
            &bootstrap,
            &group,
            &inputs,
            Duration::from_secs(180),
            || enricher.exited().is_none(),
        );
        enricher
    })
    .await
    .unwrap();
    let (view, _, _) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || read_view(&config)
    })
    .await
    .unwrap();

    // Profiles equal the shop's own figures: orders that count (processing, completed) and
    // their totals net of refunds, per registered customer still in the shop.
    for c in &customers[..2] {
        let id = c["id"].as_i64().unwrap();
        let theirs = all(
            &shop,
            "orders",
            &[("customer", id.to_string()), ("status", "any".into())],
        )
        .await;
        let counted: Vec<&Value> = theirs
            .iter()
            .filter(|o| ["processing", "completed"].contains(&o["status"].as_str().unwrap()))
            .collect();
        let revenue: Decimal = counted
            .iter()
            .map(|o| {
                money(&o["total"])
                    - o["refunds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| -money(&r["total"]))
                        .sum::<Decimal>()
            })
            .sum();
        let profile = view
            .profiles
            .iter()
            .find(|((_, customer), _)| customer == &id.to_string())
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("a profile for customer {id}"));
        assert_eq!(
            profile.orders_count as usize,
            counted.len(),
            "customer {id}: {:?}",
            profile.orders
        );
        assert_eq!(profile.revenue.amount(), revenue, "customer {id}");
    }
    // The trashed order is in its customer's history as trash, the restored one counts.
    let grace = view
        .profiles
        .iter()
        .find(|((_, c), _)| c == &customers[1]["id"].to_string())
        .unwrap()
        .1;
    assert!(grace
        .orders
        .iter()
        .any(|o| o.order_id == trashed_for_good && o.status == "trash"));
    // The deleted account: the shop confirms it is gone, and woostream erased the person.
    let gone = shop
        .object(Method::GET, &format!("customers/{deleted_customer}"), None)
        .await
        .unwrap_err();
    assert_eq!(gone.status, Some(404), "{gone}");
    assert!(
        !view
            .profiles
            .keys()
            .any(|(_, c)| c == &deleted_customer.to_string()),
        "no profile for the erased customer"
    );

    // The backfill equals the shop: every product and variation, every order it lists.
    let decoder = Decoder::new();
    let backfilled_products: BTreeSet<i64> =
        read_topic_now(&config, "real-products", "woo.products")
            .await
            .iter()
            .map(|m| {
                decoder
                    .decode::<ProductEvent>(rdkafka::Message::payload(m).unwrap())
                    .unwrap()
            })
            .filter(|e| e.envelope.origin == Origin::Backfill)
            .map(|e| e.product_id)
            .collect();
    let mut shop_products: BTreeSet<i64> = all(&shop, "products", &[("status", "any".into())])
        .await
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    for v in &variations {
        shop_products.insert(v["id"].as_i64().unwrap());
    }
    assert_eq!(
        backfilled_products, shop_products,
        "products and variations"
    );
    let order_records = read_topic_now(&config, "real-orders", "woo.orders").await;
    let backfilled_orders: BTreeSet<i64> = order_records
        .iter()
        .map(|m| {
            decoder
                .decode::<OrderEvent>(rdkafka::Message::payload(m).unwrap())
                .unwrap()
        })
        .filter(|e| e.envelope.origin == Origin::Backfill)
        .map(|e| e.order_id)
        .collect();
    let shop_orders: BTreeSet<i64> = all(&shop, "orders", &[("status", "any".into())])
        .await
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(backfilled_orders, shop_orders);
    // Every order.deleted went to its customer's key.
    for m in &order_records {
        let e: OrderEvent = decoder
            .decode(rdkafka::Message::payload(m).unwrap())
            .unwrap();
        if e.envelope.wc_topic == "order.deleted" {
            let key: CustomerKey = decoder.decode(rdkafka::Message::key(m).unwrap()).unwrap();
            assert!(!key.customer.starts_with("order:"), "{key:?}");
        }
    }
    // The review, polled.
    let reviews: Vec<ReviewEvent> = read_topic_now(&config, "real-reviews", "woo.reviews")
        .await
        .iter()
        .map(|m| {
            decoder
                .decode(rdkafka::Message::payload(m).unwrap())
                .unwrap()
        })
        .collect();
    assert!(reviews
        .iter()
        .any(|r| r.envelope.origin == Origin::Poll
            && r.review.as_ref().is_some_and(|r| r.rating == 5)));

    // An independent reader agrees on every order record.
    let python = python();
    let out = Command::new(&python)
        .arg(repo_root().join("tests/independent/decode.py"))
        .args(["--bootstrap", &tansu.bootstrap, "--topic", "woo.orders"])
        .args(["--count", &order_records.len().to_string()])
        .arg("--schemas")
        .arg(repo_root().join("schemas"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let independent: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(independent.len(), order_records.len());
    for r in &independent {
        if r["value"]["envelope"]["wc_topic"] == "order.deleted" {
            assert_ne!(
                r["key"]["customer"],
                json!(format!("order:{}", r["value"]["order_id"]))
            );
        }
    }

    drop(enricher);
    drop(producer);
    println!(
        "real shop run: driven in {:.0} s, {:.0} s in all; {} order records, {} profiles",
        driven.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        order_records.len(),
        view.profiles.len()
    );
}
