//! WooCommerce payloads into canonical events: pure functions, no Kafka, no HTTP.
//!
//! A payload that cannot be normalised gives a [`Rejection`] whose reason never contains
//! personal data (values quoted by the parser are redacted), so it can be logged and kept.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use woostream_core::contract::events::*;
use woostream_core::contract::money::parse_wc_gmt;
use woostream_core::privacy::redact::hide_quoted_values;
use woostream_core::privacy::CustomerHasher;
use woostream_core::Money;

use crate::payload::*;

/// What the HTTP layer knows about a delivery besides its body.
#[derive(Clone, Debug)]
pub struct WebhookDelivery<'a> {
    pub shop_id: &'a str,
    pub source: &'a str,
    pub wc_topic: Option<&'a str>,
    pub webhook_id: Option<i64>,
    pub delivery_id: Option<&'a str>,
    pub correlation_id: &'a str,
    pub received_at: DateTime<Utc>,
    pub origin: Origin,
    /// The shop's keyed customer hash (for guests' keys and `email_hash`).
    pub customers: &'a CustomerHasher,
}

impl WebhookDelivery<'_> {
    /// The envelope of the event this delivery carries.
    fn envelope(&self, wc_topic: &str, body: &[u8]) -> Envelope {
        Envelope {
            event_id: event_id(self.shop_id, wc_topic, body),
            shop_id: self.shop_id.to_string(),
            source: self.source.to_string(),
            wc_topic: wc_topic.to_string(),
            webhook_id: self.webhook_id,
            delivery_id: self.delivery_id.map(str::to_string),
            correlation_id: self.correlation_id.to_string(),
            received_at: self.received_at,
            origin: self.origin,
        }
    }
}

/// A canonical event with the key it is written under.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Order(CustomerKey, Box<OrderEvent>),
    Product(ProductKey, Box<ProductEvent>),
    Customer(CustomerKey, Box<CustomerEvent>),
    Coupon(CouponKey, Box<CouponEvent>),
    Review(ProductKey, Box<ReviewEvent>),
    Action(ActionKey, Box<ActionEvent>),
}

impl Event {
    pub fn envelope(&self) -> &Envelope {
        match self {
            Event::Order(_, e) => &e.envelope,
            Event::Product(_, e) => &e.envelope,
            Event::Customer(_, e) => &e.envelope,
            Event::Coupon(_, e) => &e.envelope,
            Event::Review(_, e) => &e.envelope,
            Event::Action(_, e) => &e.envelope,
        }
    }
}

/// Why a delivery could not become an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectCode {
    NotUtf8,
    InvalidJson,
    UnknownTopic,
    WrongResource,
    ResourceError,
    InvalidField,
    UnsupportedMediaType,
    /// A readable event Kafka refuses for good (too large for the topic, not authorised).
    RefusedByKafka,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::NotUtf8 => "not_utf8",
            RejectCode::InvalidJson => "invalid_json",
            RejectCode::UnknownTopic => "unknown_topic",
            RejectCode::WrongResource => "wrong_resource",
            RejectCode::ResourceError => "resource_error",
            RejectCode::InvalidField => "invalid_field",
            RejectCode::UnsupportedMediaType => "unsupported_media_type",
            RejectCode::RefusedByKafka => "refused_by_kafka",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub reason: String,
}

impl Rejection {
    fn new(code: RejectCode, reason: impl Into<String>) -> Rejection {
        Rejection {
            code,
            reason: reason.into(),
        }
    }
}

/// The resources WooCommerce has webhook topics for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Order,
    Product,
    Customer,
    Coupon,
}

/// A parsed `X-WC-Webhook-Topic`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topic {
    Resource(Resource, Action),
    /// `action.woocommerce_*` / `action.wc_*`, with the hook name.
    Custom(String),
}

/// Parses a WooCommerce topic as `wc_is_webhook_valid_topic` accepts it.
pub fn parse_topic(topic: &str) -> Option<Topic> {
    let (resource, event) = topic.split_once('.')?;
    if resource == "action" {
        let valid = (event.starts_with("woocommerce_") || event.starts_with("wc_"))
            && event.len() < 200
            && event
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        return valid.then(|| Topic::Custom(event.to_string()));
    }
    let resource = match resource {
        "order" => Resource::Order,
        "product" => Resource::Product,
        "customer" => Resource::Customer,
        "coupon" => Resource::Coupon,
        _ => return None,
    };
    // product.published (newer WooCommerce) re-sends the whole product, like an update.
    let action = match event {
        "published" if resource == Resource::Product => Action::Updated,
        e => Action::parse(e)?,
    };
    Some(Topic::Resource(resource, action))
}

/// Deterministic event id: the same payload delivered twice gets the same id.
pub fn event_id(shop_id: &str, wc_topic: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(shop_id.as_bytes());
    h.update([0]);
    h.update(wc_topic.as_bytes());
    h.update([0]);
    h.update(body);
    hex::encode(&h.finalize()[..16])
}

/// Turns one signed webhook body into its canonical event.
pub fn normalise(d: &WebhookDelivery<'_>, body: &[u8]) -> Result<Event, Rejection> {
    if std::str::from_utf8(body).is_err() {
        return Err(Rejection::new(
            RejectCode::NotUtf8,
            "the body is not valid UTF-8",
        ));
    }
    let wc_topic = d
        .wc_topic
        .ok_or_else(|| Rejection::new(RejectCode::UnknownTopic, "no X-WC-Webhook-Topic header"))?;
    let topic = parse_topic(wc_topic).ok_or_else(|| {
        Rejection::new(
            RejectCode::UnknownTopic,
            format!(
                "{:?} is not a WooCommerce webhook topic (resource.event or action.woocommerce_*)",
                truncate(wc_topic, 100)
            ),
        )
    })?;
    let envelope = d.envelope(wc_topic, body);
    let shop_id = d.shop_id.to_string();
    match topic {
        Topic::Custom(hook) => {
            let a: WooAction = parse(body)?;
            if a.action != hook {
                return Err(Rejection::new(
                    RejectCode::WrongResource,
                    format!(
                        "the payload is for action {:?}, the topic for {hook:?}",
                        truncate(&a.action, 100)
                    ),
                ));
            }
            Ok(Event::Action(
                ActionKey {
                    shop_id,
                    action_name: hook.clone(),
                },
                Box::new(ActionEvent {
                    envelope,
                    action_name: hook,
                    arg_json: a.arg.to_string(),
                }),
            ))
        }
        Topic::Resource(resource, Action::Deleted) => {
            let WooDeleted { id } = parse(body).map_err(|r| {
                Rejection::new(
                    RejectCode::WrongResource,
                    format!(
                        "a deleted delivery carries exactly {{\"id\": N}}: {}",
                        r.reason
                    ),
                )
            })?;
            Ok(match resource {
                Resource::Order => Event::Order(
                    CustomerKey {
                        shop_id,
                        // The payload names no customer; the enricher resolves it by order id.
                        customer: format!("order:{id}"),
                    },
                    Box::new(OrderEvent {
                        envelope,
                        action: Action::Deleted,
                        order_id: id,
                        order: None,
                    }),
                ),
                Resource::Product => Event::Product(
                    ProductKey {
                        shop_id,
                        product_id: id,
                    },
                    Box::new(ProductEvent {
                        envelope,
                        action: Action::Deleted,
                        product_id: id,
                        product: None,
                    }),
                ),
                Resource::Customer => Event::Customer(
                    CustomerKey {
                        shop_id,
                        customer: id.to_string(),
                    },
                    Box::new(CustomerEvent {
                        envelope,
                        action: Action::Deleted,
                        customer_id: id,
                        customer: None,
                    }),
                ),
                Resource::Coupon => Event::Coupon(
                    CouponKey {
                        shop_id,
                        coupon_id: id,
                    },
                    Box::new(CouponEvent {
                        envelope,
                        action: Action::Deleted,
                        coupon_id: id,
                        coupon: None,
                    }),
                ),
            })
        }
        Topic::Resource(Resource::Order, action) => {
            let order = order(parse(body)?, d.customers)?;
            Ok(Event::Order(
                CustomerKey {
                    shop_id,
                    customer: order.customer_key.clone(),
                },
                Box::new(OrderEvent {
                    envelope,
                    action,
                    order_id: order.id,
                    order: Some(order),
                }),
            ))
        }
        Topic::Resource(Resource::Product, action) => {
            let product = product(parse(body)?);
            Ok(Event::Product(
                ProductKey {
                    shop_id,
                    product_id: product.id,
                },
                Box::new(ProductEvent {
                    envelope,
                    action,
                    product_id: product.id,
                    product: Some(product),
                }),
            ))
        }
        Topic::Resource(Resource::Customer, action) => {
            let customer = customer(parse(body)?, d.customers);
            let mut envelope = envelope;
            if written_from_crm(body, d.customers) {
                envelope.origin = Origin::Crm;
            }
            Ok(Event::Customer(
                CustomerKey {
                    shop_id,
                    customer: customer.id.to_string(),
                },
                Box::new(CustomerEvent {
                    envelope,
                    action,
                    customer_id: customer.id,
                    customer: Some(customer),
                }),
            ))
        }
        Topic::Resource(Resource::Coupon, action) => {
            let coupon = coupon(parse(body)?);
            Ok(Event::Coupon(
                CouponKey {
                    shop_id,
                    coupon_id: coupon.id,
                },
                Box::new(CouponEvent {
                    envelope,
                    action,
                    coupon_id: coupon.id,
                    coupon: Some(coupon),
                }),
            ))
        }
    }
}

/// A product review as the REST API lists it (reviews have no webhook topic; they are polled).
pub fn normalise_review(d: &WebhookDelivery<'_>, json: &[u8]) -> Result<Event, Rejection> {
    let w: WooReview = parse(json)?;
    let wc_topic = d.wc_topic.unwrap_or("product_review.polled");
    let review = Review {
        id: w.id,
        product_id: w.product_id,
        product_name: w.product_name,
        status: w.status.unwrap_or_else(|| "approved".into()),
        rating: w.rating.unwrap_or(0).clamp(0, 5) as i32,
        verified: w.verified,
        reviewer_email_hash: w
            .reviewer_email
            .as_deref()
            .and_then(|e| d.customers.email_hash(e)),
        text: html_to_text(&w.review),
        created_at: date(&w.date_created_gmt),
    };
    Ok(Event::Review(
        ProductKey {
            shop_id: d.shop_id.to_string(),
            product_id: review.product_id,
        },
        Box::new(ReviewEvent {
            envelope: d.envelope(wc_topic, json),
            action: Action::Created,
            review_id: review.id,
            review: Some(review),
        }),
    ))
}

/// The customer an order belongs to: the account id, else the guest's email hash, else the
/// order itself (a guest order without an email cannot be linked to anyone).
pub fn customer_key(customer_id: Option<i64>, email_hash: Option<&str>, order_id: i64) -> String {
    match (customer_id.filter(|id| *id > 0), email_hash) {
        (Some(id), _) => id.to_string(),
        (None, Some(h)) => format!("guest:{h}"),
        (None, None) => format!("order:{order_id}"),
    }
}

fn order(w: WooOrder, customers: &CustomerHasher) -> Result<Order, Rejection> {
    let zero = |m: Option<Money>| m.unwrap_or(Money::ZERO);
    let email_hash = w
        .billing
        .as_ref()
        .and_then(|b| b.email.as_deref())
        .and_then(|e| customers.email_hash(e));
    let customer_id = w.customer_id.filter(|id| *id > 0);
    let line_items = w
        .line_items
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let quantity = i32::try_from(l.quantity).map_err(|_| {
                Rejection::new(
                    RejectCode::InvalidField,
                    format!("line_items[{i}].quantity is out of range"),
                )
            })?;
            Ok(LineItem {
                id: l.id,
                product_id: l.product_id.filter(|id| *id > 0),
                variation_id: l.variation_id.filter(|id| *id > 0),
                name: l.name.unwrap_or_default(),
                sku: l.sku,
                quantity,
                subtotal: zero(l.subtotal),
                subtotal_tax: zero(l.subtotal_tax),
                total: zero(l.total),
                total_tax: zero(l.total_tax),
                category_ids: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, Rejection>>()?;
    // Sums of amounts the shop sent: checked, so that no total can panic or wrap.
    let beyond = |what: &str| {
        Rejection::new(
            RejectCode::InvalidField,
            format!("{what} add up to more than decimal(24,6) holds"),
        )
    };
    let subtotal = Money::checked_sum(line_items.iter().map(|l| l.subtotal))
        .ok_or_else(|| beyond("line_items[].subtotal"))?;
    let fee_total = Money::checked_sum(w.fee_lines.iter().map(|f| zero(f.total)))
        .ok_or_else(|| beyond("fee_lines[].total"))?;
    let refunded_total = Money::checked_sum(
        w.refunds
            .iter()
            .map(|r| Money::new(zero(r.total).amount().abs())),
    )
    .ok_or_else(|| beyond("refunds[].total"))?;
    Ok(Order {
        id: w.id,
        parent_id: w.parent_id.filter(|id| *id > 0),
        number: w.number.unwrap_or_else(|| w.id.to_string()),
        created_via: w.created_via,
        status: OrderStatus::from_slug(&w.status),
        status_slug: w.status,
        currency: w.currency,
        prices_include_tax: w.prices_include_tax,
        created_at: date(&w.date_created_gmt),
        modified_at: date(&w.date_modified_gmt),
        paid_at: date(&w.date_paid_gmt),
        completed_at: date(&w.date_completed_gmt),
        total: zero(w.total),
        total_tax: zero(w.total_tax),
        subtotal,
        discount_total: zero(w.discount_total),
        discount_tax: zero(w.discount_tax),
        shipping_total: zero(w.shipping_total),
        shipping_tax: zero(w.shipping_tax),
        cart_tax: zero(w.cart_tax),
        fee_total,
        refunded_total,
        customer_key: customer_key(customer_id, email_hash.as_deref(), w.id),
        customer_id,
        email_hash,
        billing: w.billing.map(address),
        shipping: w.shipping.map(shipping_address),
        payment_method: w.payment_method,
        payment_method_title: w.payment_method_title,
        transaction_id: w.transaction_id,
        line_items,
        coupon_codes: w.coupon_lines.into_iter().filter_map(|c| c.code).collect(),
        refunds: w
            .refunds
            .into_iter()
            .map(|r| Refund {
                id: r.id,
                reason: r.reason,
                amount: Money::new(zero(r.total).amount().abs()),
            })
            .collect(),
        customer_note: w.customer_note,
    })
}

fn product(w: WooProduct) -> Product {
    Product {
        id: w.id,
        parent_id: w.parent_id.filter(|id| *id > 0),
        product_type: w.product_type,
        name: w.name.unwrap_or_default(),
        slug: w.slug.unwrap_or_default(),
        sku: w.sku,
        status: w.status.unwrap_or_else(|| "publish".into()),
        price: w.price,
        regular_price: w.regular_price,
        sale_price: w.sale_price,
        on_sale: w.on_sale,
        // Variations may say "parent": the stock figure then is the parent's.
        manage_stock: matches!(w.manage_stock, serde_json::Value::Bool(true))
            || w.manage_stock.as_str() == Some("parent"),
        stock_quantity: w.stock_quantity,
        stock_status: w.stock_status.unwrap_or_else(|| "instock".into()),
        low_stock_amount: w.low_stock_amount,
        categories: w
            .categories
            .into_iter()
            .map(|c| Category {
                id: c.id,
                name: c.name.unwrap_or_default(),
                slug: c.slug.unwrap_or_default(),
            })
            .collect(),
        // Ids, or objects with an id in newer API versions.
        variation_ids: w
            .variations
            .iter()
            .filter_map(|v| v.as_i64().or_else(|| v.get("id").and_then(|i| i.as_i64())))
            .collect(),
        total_sales: w.total_sales,
        created_at: date(&w.date_created_gmt),
        modified_at: date(&w.date_modified_gmt),
    }
}

/// Whether a customer's identity is still exactly what the shop writer wrote from the CRM:
/// its meta field holds the fingerprint of the identity the body shows.
fn written_from_crm(body: &[u8], customers: &CustomerHasher) -> bool {
    // Most customer webhooks never carry the field: no second parse for them.
    let meta = woostream_core::config::crm::CRM_IDENTITY_META.as_bytes();
    if !body.windows(meta.len()).any(|w| w == meta) {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let written = v["meta_data"].as_array().and_then(|m| {
        m.iter()
            .find(|e| e["key"] == woostream_core::config::crm::CRM_IDENTITY_META)
            .and_then(|e| e["value"].as_str().map(str::to_string))
    });
    written.is_some_and(|w| w == customers.identity_fingerprint(&v))
}

fn customer(w: WooCustomer, customers: &CustomerHasher) -> CustomerRecord {
    CustomerRecord {
        id: w.id,
        email_hash: customers.email_hash(&w.email),
        email: Some(w.email).filter(|e| !e.trim().is_empty()),
        first_name: w.first_name,
        last_name: w.last_name,
        username: w.username,
        role: w.role.unwrap_or_else(|| "customer".into()),
        billing: w.billing.map(address),
        shipping: w.shipping.map(shipping_address),
        is_paying_customer: w.is_paying_customer,
        created_at: date(&w.date_created_gmt),
        modified_at: date(&w.date_modified_gmt),
    }
}

fn coupon(w: WooCoupon) -> Coupon {
    Coupon {
        id: w.id,
        code: w.code,
        amount: w.amount.unwrap_or(Money::ZERO),
        discount_type: w.discount_type,
        usage_count: w.usage_count.unwrap_or(0),
        usage_limit: w.usage_limit,
        expires_at: date(&w.date_expires_gmt),
        created_at: date(&w.date_created_gmt),
        modified_at: date(&w.date_modified_gmt),
    }
}

fn address(a: WooAddress) -> Address {
    Address {
        first_name: a.first_name,
        last_name: a.last_name,
        company: a.company,
        address_1: a.address_1,
        address_2: a.address_2,
        city: a.city,
        state: a.state,
        postcode: a.postcode,
        country: a.country,
        email: a.email,
        phone: a.phone,
    }
}

fn shipping_address(a: WooAddress) -> ShippingAddress {
    ShippingAddress {
        first_name: a.first_name,
        last_name: a.last_name,
        company: a.company,
        address_1: a.address_1,
        address_2: a.address_2,
        city: a.city,
        state: a.state,
        postcode: a.postcode,
        country: a.country,
        phone: a.phone,
    }
}

fn date(s: &Option<String>) -> Option<DateTime<Utc>> {
    s.as_deref().and_then(parse_wc_gmt)
}

/// Review text for people: tags removed, entities decoded, whitespace collapsed.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = html_escape::decode_html_entities(&out);
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses JSON into `T`, classifying failures without echoing values.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Rejection> {
    // Path tracking costs on every field; only a failed parse pays for it.
    serde_json::from_slice(body).or_else(|_| parse_explained(body))
}

/// Parses again, tracking the path, to say where and why the payload does not fit.
fn parse_explained<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Rejection> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => {
            de.end().map_err(|e| {
                Rejection::new(
                    RejectCode::InvalidJson,
                    format!(
                        "not JSON: trailing characters at line {} column {}",
                        e.line(),
                        e.column()
                    ),
                )
            })?;
            Ok(v)
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let at = format!("line {} column {}", inner.line(), inner.column());
            if inner.is_syntax() || inner.is_eof() {
                return Err(Rejection::new(
                    RejectCode::InvalidJson,
                    format!(
                        "not JSON: {} at {at}",
                        hide_quoted_values(&inner.to_string())
                    ),
                ));
            }
            // WooCommerce sends the REST error when the resource vanished before delivery.
            match serde_json::from_slice::<serde_json::Value>(body) {
                Err(e) => {
                    return Err(Rejection::new(
                        RejectCode::InvalidJson,
                        format!("not JSON: {}", hide_quoted_values(&e.to_string())),
                    ))
                }
                Ok(serde_json::Value::Object(o)) => {
                    if o.contains_key("code") && o.contains_key("message") && !o.contains_key("id")
                    {
                        let code = o["code"].as_str().unwrap_or("?");
                        return Err(Rejection::new(
                            RejectCode::ResourceError,
                            format!(
                                "WooCommerce sent an error instead of the resource: {}",
                                truncate(code, 100)
                            ),
                        ));
                    }
                }
                Ok(_) => {
                    return Err(Rejection::new(
                        RejectCode::WrongResource,
                        "the payload is not a JSON object",
                    ))
                }
            }
            let message = hide_quoted_values(&inner.to_string());
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_string();
            let code = if message.starts_with("missing field") {
                RejectCode::WrongResource
            } else {
                RejectCode::InvalidField
            };
            let location = if path == "." {
                at
            } else {
                format!("{path} ({at})")
            };
            Err(Rejection::new(code, format!("{message} at {location}")))
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
#[path = "normalise_tests.rs"]
mod tests;
