//! WooCommerce REST v3 objects as webhooks deliver them, read leniently: unknown fields are
//! ignored, money may come as a string or a number, ids as numbers or numeric strings, empty
//! strings mean "not set", and `meta_data` (whose values plugins make objects) is never read.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use woostream_core::Money;

#[derive(Debug, Deserialize)]
pub struct WooAddress {
    #[serde(default, deserialize_with = "text")]
    pub first_name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub company: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub address_1: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub address_2: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub city: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub postcode: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub country: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WooLineItem {
    #[serde(deserialize_with = "int")]
    pub id: i64,
    #[serde(default, deserialize_with = "text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    pub product_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    pub variation_id: Option<i64>,
    #[serde(deserialize_with = "int")]
    pub quantity: i64,
    #[serde(default, deserialize_with = "money")]
    pub subtotal: Option<Money>,
    #[serde(default, deserialize_with = "money")]
    pub subtotal_tax: Option<Money>,
    #[serde(default, deserialize_with = "money")]
    pub total: Option<Money>,
    #[serde(default, deserialize_with = "money")]
    pub total_tax: Option<Money>,
    /// null when the product was deleted.
    #[serde(default, deserialize_with = "text")]
    pub sku: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WooCouponLine {
    #[serde(default, deserialize_with = "text")]
    pub code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WooFeeLine {
    #[serde(default, deserialize_with = "money")]
    pub total: Option<Money>,
}

#[derive(Debug, Deserialize)]
pub struct WooRefund {
    #[serde(deserialize_with = "int")]
    pub id: i64,
    /// The docs' own example spells it `refund`; either may be absent.
    #[serde(default, alias = "refund", deserialize_with = "text")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "money")]
    pub total: Option<Money>,
}

#[derive(Debug, Deserialize)]
pub struct WooOrder {
    #[serde(deserialize_with = "int")]
    pub id: i64,
    #[serde(default, deserialize_with = "opt_int")]
    pub parent_id: Option<i64>,
    #[serde(default, deserialize_with = "text")]
    pub number: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub created_via: Option<String>,
    pub status: String,
    pub currency: String,
    #[serde(default)]
    pub prices_include_tax: bool,
    #[serde(default, deserialize_with = "text")]
    pub date_created_gmt: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub date_modified_gmt: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub date_paid_gmt: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub date_completed_gmt: Option<String>,
    #[serde(default, deserialize_with = "money")]
    pub discount_total: Option<Money>,
    #[serde(default, deserialize_with = "money")]
    pub discount_tax: Option<Money>,
    #[serde(default, deserialize_with = "money")]
    pub shipping_total: Option<Money>,
    #[serde(default, deserialize_with = "money")]
    pub shipping_tax: Option<Money>,
    #[serde(default, deserialize_with = "money")]
    pub cart_tax: Option<Money>,
    #[serde(deserialize_with = "money")]
    pub total: Option<Money>,
    #[serde(default, deserialize_with = "money")]
    pub total_tax: Option<Money>,
    #[serde(default, deserialize_with = "opt_int")]
    pub customer_id: Option<i64>,
    #[serde(default)]
    pub billing: Option<WooAddress>,
    #[serde(default)]
    pub shipping: Option<WooAddress>,
    #[serde(default, deserialize_with = "text")]
    pub payment_method: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub payment_method_title: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub transaction_id: Option<String>,
    /// Required: it is what tells an order from another resource's payload.
    pub line_items: Vec<WooLineItem>,
    #[serde(default)]
    pub fee_lines: Vec<WooFeeLine>,
    #[serde(default)]
    pub coupon_lines: Vec<WooCouponLine>,
    #[serde(default)]
    pub refunds: Vec<WooRefund>,
    #[serde(default, deserialize_with = "text")]
    pub customer_note: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WooCategory {
    #[serde(deserialize_with = "int")]
    pub id: i64,
    #[serde(default, deserialize_with = "text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub slug: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WooProduct {
    #[serde(deserialize_with = "int")]
    pub id: i64,
    #[serde(default, deserialize_with = "opt_int")]
    pub parent_id: Option<i64>,
    /// `type`: required, it tells a product from another resource's payload.
    #[serde(rename = "type")]
    pub product_type: String,
    #[serde(default, deserialize_with = "text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub slug: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub sku: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "money")]
    pub price: Option<Money>,
    #[serde(default, deserialize_with = "money")]
    pub regular_price: Option<Money>,
    #[serde(default, deserialize_with = "money")]
    pub sale_price: Option<Money>,
    #[serde(default)]
    pub on_sale: bool,
    /// `true`, `false` or, on variations, `"parent"` (stock managed by the parent).
    #[serde(default)]
    pub manage_stock: serde_json::Value,
    #[serde(default, deserialize_with = "opt_int")]
    pub stock_quantity: Option<i64>,
    #[serde(default, deserialize_with = "text")]
    pub stock_status: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    pub low_stock_amount: Option<i64>,
    #[serde(default)]
    pub categories: Vec<WooCategory>,
    #[serde(default)]
    pub variations: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "opt_int")]
    pub total_sales: Option<i64>,
    #[serde(default, deserialize_with = "text")]
    pub date_created_gmt: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub date_modified_gmt: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WooCustomer {
    #[serde(deserialize_with = "int")]
    pub id: i64,
    /// Required: a customer always has one, and it tells a customer from other payloads.
    pub email: String,
    #[serde(default, deserialize_with = "text")]
    pub first_name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub username: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub role: Option<String>,
    #[serde(default)]
    pub billing: Option<WooAddress>,
    #[serde(default)]
    pub shipping: Option<WooAddress>,
    #[serde(default)]
    pub is_paying_customer: bool,
    #[serde(default, deserialize_with = "text")]
    pub date_created_gmt: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub date_modified_gmt: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WooCoupon {
    #[serde(deserialize_with = "int")]
    pub id: i64,
    pub code: String,
    #[serde(default, deserialize_with = "money")]
    pub amount: Option<Money>,
    /// Required: it tells a coupon from other payloads.
    pub discount_type: String,
    #[serde(default, deserialize_with = "opt_int")]
    pub usage_count: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    pub usage_limit: Option<i64>,
    #[serde(default, deserialize_with = "text")]
    pub date_expires_gmt: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub date_created_gmt: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub date_modified_gmt: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WooReview {
    #[serde(deserialize_with = "int")]
    pub id: i64,
    #[serde(deserialize_with = "int")]
    pub product_id: i64,
    #[serde(default, deserialize_with = "text")]
    pub product_name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub reviewer_email: Option<String>,
    /// HTML, e.g. `"<p>Nice album!</p>\n"`.
    pub review: String,
    #[serde(default, deserialize_with = "opt_int")]
    pub rating: Option<i64>,
    #[serde(default)]
    pub verified: bool,
    #[serde(default, deserialize_with = "text")]
    pub date_created_gmt: Option<String>,
}

/// `{"id": N}`, the whole payload of a `*.deleted` webhook — nothing else: WooCommerce signs
/// only the body, so a captured signed order resent with a `*.deleted` topic header must not
/// erase anything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WooDeleted {
    #[serde(deserialize_with = "int")]
    pub id: i64,
}

/// `{"action": "...", "arg": ...}`, the payload of an `action.*` webhook.
#[derive(Debug, Deserialize)]
pub struct WooAction {
    pub action: String,
    #[serde(default)]
    pub arg: serde_json::Value,
}

/// Strings; empty or whitespace-only strings are "not set". Numbers are kept as their text.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) if s.trim().is_empty() => None,
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Null => None,
        other => {
            return Err(de::Error::custom(format!(
                "expected a string, found {}",
                kind(&other)
            )))
        }
    })
}

/// Money as WooCommerce writes it (a string) or as some plugins do (a number). Numbers are
/// taken from their shortest decimal text, so 29.35 stays 29.35.
fn money<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Money>, D::Error> {
    let raw = match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::String(s) if s.trim().is_empty() => return Ok(None),
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        other => {
            return Err(de::Error::custom(format!(
                "expected an amount, found {}",
                kind(&other)
            )))
        }
    };
    raw.parse::<Money>()
        .map(Some)
        .map_err(|e| de::Error::custom(e.to_string()))
}

fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) if s.trim().is_empty() => Ok(None),
        v => int_of(&v).map(Some).map_err(de::Error::custom),
    }
}

fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    int_of(&serde_json::Value::deserialize(d)?).map_err(de::Error::custom)
}

fn int_of(v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| "expected a whole number".to_string()),
        serde_json::Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| "expected a whole number".to_string()),
        other => Err(format!("expected a whole number, found {}", kind(other))),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
