//! A simulated shop's WooCommerce REST API (v3), serving the objects a simulated sale's
//! webhooks describe: what `make run` backfills from, and what the REST tests run against. It
//! follows WooCommerce's real protocol and limits — served over plain HTTP, it takes only
//! OAuth 1.0a (one-legged, HMAC-SHA256, checked as WooCommerce checks it) and refuses Basic
//! auth and query-string keys with 401 `woocommerce_rest_cannot_view`, as WooCommerce does
//! over HTTP, `page`/`per_page` with `X-WP-Total`,
//! `X-WP-TotalPages` and `Link`, 400 `rest_invalid_param` above 100 per page, the `after`,
//! `modified_after`, `status`, `role`, `orderby` and `order` filters, and the webhooks resource
//! with its statuses — and can misbehave on purpose: a request rate above which it answers 429
//! with `Retry-After`, and bursts of 503.

// The helpers' error is the HTTP answer itself; boxing it would buy nothing here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::simulate::Webhook;

mod webhooks;

use webhooks::{create_webhook, get_webhook, list_webhooks, update_webhook, uuid_like};

/// The collections the simulated shop serves, by REST path.
const COLLECTIONS: [&str; 5] = [
    "products",
    "customers",
    "orders",
    "coupons",
    "products/reviews",
];

/// How the shop misbehaves.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Requests per second above which it answers 429 with `Retry-After: 1` (a sliding
    /// one-second window).
    pub rate_limit: Option<u32>,
    /// Every `n`-th request is answered 503 (a struggling PHP pool).
    pub fail_every: Option<u64>,
    /// The `https://host:port` a TLS proxy serves the shop under: WooCommerce then takes Basic
    /// auth and query-string keys too (over plain HTTP it takes only OAuth 1.0a), and OAuth
    /// signatures are made over this origin.
    pub https_origin: Option<String>,
    /// Every `n`-th request is answered 429 with `Retry-After: 1` whatever the rate (a shared
    /// host's or a CDN's throttling): the retries must still keep within the client's rate.
    pub throttle_every: Option<u64>,
    /// Where the shop delivers `customer.updated` after a customer is changed through the
    /// API, as a WooCommerce webhook would: (delivery URL, secret, source).
    pub customer_webhook: Option<(String, String, String)>,
}

/// One request the shop answered.
#[derive(Clone, Debug)]
pub struct Served {
    pub at: Instant,
    pub path: String,
    pub query: String,
    pub status: u16,
    /// Refused because the request rate went over `rate_limit`.
    pub over_rate_limit: bool,
}

#[derive(Default)]
struct Data {
    /// Collection → id → the object as the REST API returns it.
    objects: BTreeMap<String, BTreeMap<i64, Value>>,
}

struct Shop {
    key: String,
    secret: String,
    /// `http://127.0.0.1:PORT`: what OAuth signatures are made over.
    origin: std::sync::OnceLock<String>,
    /// OAuth nonces seen (WooCommerce refuses a nonce used twice).
    nonces: Mutex<std::collections::HashSet<String>>,
    behaviour: Behaviour,
    data: Mutex<Data>,
    log: Mutex<Vec<Served>>,
    /// Every customer update made through the API: (id, the update as sent).
    customer_updates: Mutex<Vec<(i64, Value)>>,
}

/// A running simulated shop; stops when dropped.
pub struct ShopServer {
    /// The REST API's base, ending in `/wp-json/wc/v3/`.
    pub url: String,
    shop: Arc<Shop>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ShopServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The latest state of every object a sequence of webhooks describes, by REST collection —
/// what the shop's database holds once they have all happened.
pub fn objects_of(webhooks: &[Webhook]) -> BTreeMap<String, BTreeMap<i64, Value>> {
    let mut out: BTreeMap<String, BTreeMap<i64, Value>> = BTreeMap::new();
    for w in webhooks {
        let Some((resource, event)) = w.topic.split_once('.') else {
            continue;
        };
        let collection = match resource {
            "product" => "products",
            "customer" => "customers",
            "order" => "orders",
            "coupon" => "coupons",
            _ => continue,
        };
        let Ok(body) = serde_json::from_slice::<Value>(&w.body) else {
            continue;
        };
        let Some(id) = body["id"].as_i64() else {
            continue;
        };
        let objects = out.entry(collection.to_string()).or_default();
        if event == "deleted" {
            objects.remove(&id);
        } else {
            objects.insert(id, body);
        }
    }
    out
}

impl ShopServer {
    /// Serves `objects` on a free loopback port to clients with this key and secret.
    pub async fn start(
        objects: BTreeMap<String, BTreeMap<i64, Value>>,
        key: &str,
        secret: &str,
        behaviour: Behaviour,
    ) -> anyhow::Result<ShopServer> {
        let shop = Arc::new(Shop {
            key: key.into(),
            secret: secret.into(),
            origin: std::sync::OnceLock::new(),
            nonces: Mutex::new(std::collections::HashSet::new()),
            behaviour,
            data: Mutex::new(Data { objects }),
            log: Mutex::new(Vec::new()),
            customer_updates: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route(
                "/wp-json/wc/v3/webhooks",
                get(list_webhooks).post(create_webhook),
            )
            .route(
                "/wp-json/wc/v3/webhooks/{id}",
                get(get_webhook).put(update_webhook),
            )
            .route(
                "/wp-json/wc/v3/customers/{id}",
                get(get_customer).put(update_customer),
            )
            .route("/wp-json/wc/v3/products/reviews", get(list_reviews))
            .route("/wp-json/wc/v3/{collection}", get(list_collection))
            .with_state(shop.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let _ = shop.origin.set(format!("http://{addr}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ShopServer {
            url: format!("http://{addr}/wp-json/wc/v3/"),
            shop,
            task,
        })
    }

    /// Every request answered so far.
    pub fn served(&self) -> Vec<Served> {
        self.shop.log.lock().expect("log").clone()
    }

    /// The most requests answered (any status) within any one second.
    pub fn peak_requests_per_second(&self) -> usize {
        let times: Vec<Instant> = self.served().iter().map(|s| s.at).collect();
        let mut peak = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
                start += 1;
            }
            peak = peak.max(end - start + 1);
        }
        peak
    }

    /// Adds or replaces an object, as the shop's admin or a customer would.
    pub fn put(&self, collection: &str, object: Value) {
        let id = object["id"].as_i64().expect("an object with an id");
        self.shop
            .data
            .lock()
            .expect("data")
            .objects
            .entry(collection.to_string())
            .or_default()
            .insert(id, object);
    }

    /// Removes an object, as deleting it in the shop's admin does (its REST look-up then
    /// answers 404).
    pub fn remove(&self, collection: &str, id: i64) {
        if let Some(c) = self
            .shop
            .data
            .lock()
            .expect("data")
            .objects
            .get_mut(collection)
        {
            c.remove(&id);
        }
    }

    /// An object as the shop holds it now.
    pub fn get(&self, collection: &str, id: i64) -> Option<Value> {
        self.shop
            .data
            .lock()
            .expect("data")
            .objects
            .get(collection)
            .and_then(|c| c.get(&id))
            .cloned()
    }

    /// Every customer update made through the REST API so far: (id, the update as sent).
    pub fn customer_updates(&self) -> Vec<(i64, Value)> {
        self.shop.customer_updates.lock().expect("updates").clone()
    }

    /// How many objects a collection holds.
    pub fn count(&self, collection: &str) -> usize {
        self.shop
            .data
            .lock()
            .expect("data")
            .objects
            .get(collection)
            .map_or(0, BTreeMap::len)
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message, "data": {"status": status.as_u16()}})),
    )
        .into_response()
}

impl Shop {
    /// Authentication, misbehaviour and the request log, before any route does its work.
    fn admit(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        query: &BTreeMap<String, String>,
    ) -> Result<(), Response> {
        let now = Instant::now();
        let mut log = self.log.lock().expect("log");
        let n = log.len() as u64 + 1;
        let within_second = log
            .iter()
            .rev()
            .take_while(|s| now.duration_since(s.at) < Duration::from_secs(1))
            .count();
        let over_rate_limit = self
            .behaviour
            .rate_limit
            .is_some_and(|limit| within_second as u32 >= limit);
        let too_many = || {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "woocommerce_rest_too_many_requests",
                "Too many requests.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        };
        let refusal = if over_rate_limit
            || self
                .behaviour
                .throttle_every
                .is_some_and(|every| n.is_multiple_of(every))
        {
            Some(too_many())
        } else if self
            .behaviour
            .fail_every
            .is_some_and(|every| n.is_multiple_of(every))
        {
            Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "internal_server_error",
                "The server is overloaded.",
            ))
        } else if !self.authenticated(method, path, headers, query) {
            Some(error(
                StatusCode::UNAUTHORIZED,
                "woocommerce_rest_cannot_view",
                "Sorry, you cannot list resources.",
            ))
        } else {
            None
        };
        let status = refusal.as_ref().map_or(200, |r| r.status().as_u16());
        log.push(Served {
            at: now,
            path: path.to_string(),
            query: query
                .iter()
                .filter(|(k, _)| !k.starts_with("consumer_") && !k.starts_with("oauth_"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&"),
            status,
            over_rate_limit,
        });
        match refusal {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    /// [`Shop::admit`], then the request's JSON body.
    fn admit_json(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        query: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<Value, Response> {
        self.admit(method, path, headers, query)?;
        serde_json::from_slice(body).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "rest_invalid_json",
                "Invalid JSON body passed.",
            )
        })
    }

    /// WooCommerce over plain HTTP: OAuth 1.0a only (Basic and query-string keys are refused
    /// there), the signature over the method, the URL and every query parameter, a timestamp
    /// within 15 minutes and a nonce never used before.
    fn authenticated(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        query: &BTreeMap<String, String>,
    ) -> bool {
        if self.behaviour.https_origin.is_some() {
            use base64::Engine as _;
            if let Some(auth) = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
            {
                let expected = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", self.key, self.secret));
                return auth.trim() == expected;
            }
            if query.get("consumer_key") == Some(&self.key) {
                return query.get("consumer_secret") == Some(&self.secret);
            }
        }
        let (Some(key), Some(signature), Some(timestamp), Some(nonce)) = (
            query.get("oauth_consumer_key"),
            query.get("oauth_signature"),
            query
                .get("oauth_timestamp")
                .and_then(|t| t.parse::<i64>().ok()),
            query.get("oauth_nonce"),
        ) else {
            return false;
        };
        if key != &self.key
            || query.get("oauth_signature_method").map(String::as_str) != Some("HMAC-SHA256")
            || (chrono::Utc::now().timestamp() - timestamp).abs() > 15 * 60
        {
            return false;
        }
        let signed: Vec<(&str, String)> = query
            .iter()
            .filter(|(k, _)| !k.starts_with("oauth_"))
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let origin = match &self.behaviour.https_origin {
            Some(o) => o.as_str(),
            None => self.origin.get().map_or("", String::as_str),
        };
        let url = format!("{origin}{path}");
        let expected = woostream_woo::rest::oauth::parameters(
            method,
            &url,
            &signed,
            key,
            &self.secret,
            timestamp,
            nonce,
        );
        let good = expected.last().is_some_and(|(_, s)| s == signature);
        good && self.nonces.lock().expect("nonces").insert(nonce.clone())
    }
}

/// WooCommerce's dates: `…_gmt` fields without a zone, compared as text (same format).
fn date_field(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_string()
}

/// Lists `items` as WooCommerce does: filters, order, then one page with its headers.
fn page_of(
    base: &str,
    mut items: Vec<&Value>,
    query: &BTreeMap<String, String>,
) -> Result<Response, Response> {
    let number = |k: &str, default: u64| -> Result<u64, Response> {
        match query.get(k) {
            None => Ok(default),
            Some(v) => v.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    "rest_invalid_param",
                    &format!("Invalid parameter(s): {k}"),
                )
            }),
        }
    };
    let page = number("page", 1)?;
    let per_page = number("per_page", 10)?;
    if per_page > 100 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "rest_invalid_param",
            "Invalid parameter(s): per_page (per_page must be between 1 (inclusive) and 100 (inclusive))",
        ));
    }
    if let Some(after) = query.get("after") {
        items.retain(|o| date_field(o, "date_created_gmt") > *after);
    }
    if let Some(after) = query.get("modified_after") {
        items.retain(|o| date_field(o, "date_modified_gmt") > *after);
    }
    match query.get("orderby").map(String::as_str) {
        None | Some("date") | Some("date_gmt") | Some("registered_date") => {
            items.sort_by_cached_key(|o| (date_field(o, "date_created_gmt"), o["id"].as_i64()))
        }
        Some("id") => items.sort_by_key(|o| o["id"].as_i64()),
        Some("modified") => {
            items.sort_by_cached_key(|o| (date_field(o, "date_modified_gmt"), o["id"].as_i64()))
        }
        Some(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "rest_invalid_param",
                "Invalid parameter(s): orderby",
            ))
        }
    }
    // WooCommerce's default order is descending.
    if query.get("order").map(String::as_str) != Some("asc") {
        items.reverse();
    }
    let total = items.len() as u64;
    let pages = total.div_ceil(per_page);
    let start = ((page - 1) * per_page) as usize;
    // Only the page is copied: a shop of 20,000 orders is listed 100 at a time.
    let slice: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(per_page as usize)
        .cloned()
        .collect();
    let mut links = Vec::new();
    let link = |p: u64, rel: &str| {
        let mut q: Vec<String> = query
            .iter()
            .filter(|(k, _)| {
                k.as_str() != "page" && !k.starts_with("consumer_") && !k.starts_with("oauth_")
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        q.push(format!("page={p}"));
        format!("<{base}?{}>; rel=\"{rel}\"", q.join("&"))
    };
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < pages {
        links.push(link(page + 1, "next"));
    }
    let mut response = axum::Json(Value::Array(slice)).into_response();
    let h = response.headers_mut();
    h.insert("x-wp-total", total.into());
    h.insert("x-wp-totalpages", pages.into());
    if !links.is_empty() {
        if let Ok(v) = header::HeaderValue::from_str(&links.join(", ")) {
            h.insert(header::LINK, v);
        }
    }
    Ok(response)
}

/// A listing of one stored collection, with the filters WooCommerce offers on it.
fn list(
    shop: &Shop,
    collection: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let path = format!("/wp-json/wc/v3/{collection}");
    if let Err(r) = shop.admit("GET", &path, headers, query) {
        return r;
    }
    if !COLLECTIONS.contains(&collection) && collection != "webhooks" {
        return error(
            StatusCode::NOT_FOUND,
            "rest_no_route",
            "No route was found matching the URL and request method.",
        );
    }
    let data = shop.data.lock().expect("data");
    let mut items: Vec<&Value> = data
        .objects
        .get(collection)
        .map(|c| c.values().collect())
        .unwrap_or_default();
    match collection {
        "customers" => {
            let role = query.get("role").map_or("customer", String::as_str);
            if role != "all" {
                items.retain(|c| c["role"].as_str().unwrap_or("customer") == role);
            }
        }
        "orders" | "products" => {
            if let Some(status) = query.get("status").filter(|s| s.as_str() != "any") {
                let wanted: Vec<&str> = status.split(',').collect();
                items.retain(|o| wanted.contains(&o["status"].as_str().unwrap_or_default()));
            }
        }
        _ => {}
    }
    page_of(&path, items, query).unwrap_or_else(|r| r)
}

async fn list_collection(
    State(shop): State<Arc<Shop>>,
    Path(collection): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    list(&shop, &collection, &query, &headers)
}

async fn list_reviews(
    State(shop): State<Arc<Shop>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    list(&shop, "products/reviews", &query, &headers)
}

fn no_customer() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "woocommerce_rest_invalid_id",
        "Invalid resource ID.",
    )
}

async fn get_customer(
    State(shop): State<Arc<Shop>>,
    Path(id): Path<i64>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = shop.admit(
        "GET",
        &format!("/wp-json/wc/v3/customers/{id}"),
        &headers,
        &query,
    ) {
        return r;
    }
    let found = shop
        .data
        .lock()
        .expect("data")
        .objects
        .get("customers")
        .and_then(|c| c.get(&id))
        .cloned();
    found.map_or_else(no_customer, |c| axum::Json(c).into_response())
}

/// WooCommerce's customer update: the fields named change (addresses field by field, meta data
/// by key), the modification time moves, and a `customer.updated` webhook follows.
async fn update_customer(
    State(shop): State<Arc<Shop>>,
    Path(id): Path<i64>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/wp-json/wc/v3/customers/{id}");
    let update = match shop.admit_json("PUT", &path, &headers, &query, &body) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let updated = {
        let mut data = shop.data.lock().expect("data");
        let Some(c) = data
            .objects
            .get_mut("customers")
            .and_then(|c| c.get_mut(&id))
        else {
            return no_customer();
        };
        for (k, v) in update.as_object().into_iter().flatten() {
            match (k.as_str(), v) {
                ("meta_data", Value::Array(entries)) => {
                    let mut meta = c["meta_data"].as_array().cloned().unwrap_or_default();
                    for e in entries {
                        meta.retain(|m| m["key"] != e["key"]);
                        meta.push(e.clone());
                    }
                    c["meta_data"] = Value::Array(meta);
                }
                ("billing" | "shipping", Value::Object(fields)) => {
                    for (f, x) in fields {
                        c[k][f] = x.clone();
                    }
                }
                _ => c[k] = v.clone(),
            }
        }
        let now = chrono::Utc::now();
        c["date_modified"] = now.format("%Y-%m-%dT%H:%M:%S").to_string().into();
        c["date_modified_gmt"] = now.format("%Y-%m-%dT%H:%M:%S").to_string().into();
        c.clone()
    };
    shop.customer_updates
        .lock()
        .expect("updates")
        .push((id, update));
    if let Some((url, secret, source)) = shop.behaviour.customer_webhook.clone() {
        let body = serde_json::to_vec(&updated).expect("JSON");
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("x-wc-webhook-source", source)
                .header("x-wc-webhook-topic", "customer.updated")
                .header("x-wc-webhook-resource", "customer")
                .header("x-wc-webhook-event", "updated")
                .header("x-wc-webhook-id", "11")
                .header("x-wc-webhook-delivery-id", uuid_like())
                .header(
                    "x-wc-webhook-signature",
                    woostream_woo::signature::sign(&body, &secret),
                )
                .body(body)
                .send()
                .await;
        });
    }
    axum::Json(updated).into_response()
}
