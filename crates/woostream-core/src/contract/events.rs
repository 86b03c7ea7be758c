//! The canonical events: the Rust side of `schemas/*.avsc`.
//!
//! Field names and order follow the schemas exactly; `tests::every_type_round_trips` in
//! `codec.rs` proves that each type encodes to, validates against and decodes from its schema.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::money::{ts_millis, Money};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Origin {
    #[default]
    Webhook,
    Backfill,
    Reconcile,
    Poll,
    /// A change the team made in the CRM, written to the shop by woostream's shop writer and
    /// come back as the shop's webhook: the CRM has it already.
    Crm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Created,
    Updated,
    Deleted,
    Restored,
}

impl Action {
    pub fn parse(event: &str) -> Option<Action> {
        match event {
            "created" => Some(Action::Created),
            "updated" => Some(Action::Updated),
            "deleted" => Some(Action::Deleted),
            "restored" => Some(Action::Restored),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub event_id: String,
    pub shop_id: String,
    pub source: String,
    pub wc_topic: String,
    pub webhook_id: Option<i64>,
    pub delivery_id: Option<String>,
    pub correlation_id: String,
    #[serde(with = "ts_millis")]
    pub received_at: DateTime<Utc>,
    pub origin: Origin,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub address_1: Option<String>,
    pub address_2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postcode: Option<String>,
    pub country: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// Where an order ships to; WooCommerce's shipping address carries no email.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub address_1: Option<String>,
    pub address_2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postcode: Option<String>,
    pub country: Option<String>,
    pub phone: Option<String>,
}

/// WooCommerce order status; statuses an extension registers are `Other` and the slug is kept
/// beside it in `Order::status_slug`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Processing,
    OnHold,
    Completed,
    Cancelled,
    Refunded,
    Failed,
    Trash,
    CheckoutDraft,
    ReadyForPickup,
    Draft,
    Other,
}

impl OrderStatus {
    pub fn from_slug(slug: &str) -> OrderStatus {
        match slug.strip_prefix("wc-").unwrap_or(slug) {
            "pending" => OrderStatus::Pending,
            "processing" => OrderStatus::Processing,
            "on-hold" => OrderStatus::OnHold,
            "completed" => OrderStatus::Completed,
            "cancelled" => OrderStatus::Cancelled,
            "refunded" => OrderStatus::Refunded,
            "failed" => OrderStatus::Failed,
            "trash" => OrderStatus::Trash,
            "checkout-draft" => OrderStatus::CheckoutDraft,
            "ready-for-pickup" => OrderStatus::ReadyForPickup,
            "draft" | "auto-draft" => OrderStatus::Draft,
            _ => OrderStatus::Other,
        }
    }

    /// How far along its life an order is, to order two versions saved in the same second
    /// (WooCommerce's modification times have whole seconds).
    pub fn progress(self) -> u8 {
        use OrderStatus::*;
        match self {
            CheckoutDraft | Draft => 0,
            Pending => 1,
            OnHold => 2,
            Failed => 3,
            Processing | Other => 4,
            ReadyForPickup => 5,
            Completed => 6,
            Cancelled => 7,
            Refunded => 8,
            Trash => 9,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    pub id: i64,
    pub product_id: Option<i64>,
    pub variation_id: Option<i64>,
    pub name: String,
    pub sku: Option<String>,
    pub quantity: i32,
    pub subtotal: Money,
    pub subtotal_tax: Money,
    pub total: Money,
    pub total_tax: Money,
    pub category_ids: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Refund {
    pub id: i64,
    pub reason: Option<String>,
    pub amount: Money,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub number: String,
    pub created_via: Option<String>,
    pub status: OrderStatus,
    pub status_slug: String,
    pub currency: String,
    pub prices_include_tax: bool,
    #[serde(with = "ts_millis::option")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(with = "ts_millis::option")]
    pub modified_at: Option<DateTime<Utc>>,
    #[serde(with = "ts_millis::option")]
    pub paid_at: Option<DateTime<Utc>>,
    #[serde(with = "ts_millis::option")]
    pub completed_at: Option<DateTime<Utc>>,
    pub total: Money,
    pub total_tax: Money,
    pub subtotal: Money,
    pub discount_total: Money,
    pub discount_tax: Money,
    pub shipping_total: Money,
    pub shipping_tax: Money,
    pub cart_tax: Money,
    pub fee_total: Money,
    pub refunded_total: Money,
    pub customer_id: Option<i64>,
    pub customer_key: String,
    pub email_hash: Option<String>,
    pub billing: Option<Address>,
    pub shipping: Option<ShippingAddress>,
    pub payment_method: Option<String>,
    pub payment_method_title: Option<String>,
    pub transaction_id: Option<String>,
    pub line_items: Vec<LineItem>,
    pub coupon_codes: Vec<String>,
    pub refunds: Vec<Refund>,
    /// What the buyer wrote at checkout; personal, sealed like the addresses.
    #[serde(default)]
    pub customer_note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub envelope: Envelope,
    pub action: Action,
    pub order_id: i64,
    pub order: Option<Order>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub id: i64,
    pub name: String,
    pub slug: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub product_type: String,
    pub name: String,
    pub slug: String,
    pub sku: Option<String>,
    pub status: String,
    pub price: Option<Money>,
    pub regular_price: Option<Money>,
    pub sale_price: Option<Money>,
    pub on_sale: bool,
    pub manage_stock: bool,
    pub stock_quantity: Option<i64>,
    pub stock_status: String,
    pub low_stock_amount: Option<i64>,
    pub categories: Vec<Category>,
    pub variation_ids: Vec<i64>,
    pub total_sales: Option<i64>,
    #[serde(with = "ts_millis::option")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(with = "ts_millis::option")]
    pub modified_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductEvent {
    pub envelope: Envelope,
    pub action: Action,
    pub product_id: i64,
    pub product: Option<Product>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerRecord {
    pub id: i64,
    pub email: Option<String>,
    pub email_hash: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub role: String,
    pub billing: Option<Address>,
    pub shipping: Option<ShippingAddress>,
    pub is_paying_customer: bool,
    #[serde(with = "ts_millis::option")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(with = "ts_millis::option")]
    pub modified_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerEvent {
    pub envelope: Envelope,
    pub action: Action,
    pub customer_id: i64,
    pub customer: Option<CustomerRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coupon {
    pub id: i64,
    pub code: String,
    pub amount: Money,
    pub discount_type: String,
    pub usage_count: i64,
    pub usage_limit: Option<i64>,
    #[serde(with = "ts_millis::option")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(with = "ts_millis::option")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(with = "ts_millis::option")]
    pub modified_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CouponEvent {
    pub envelope: Envelope,
    pub action: Action,
    pub coupon_id: i64,
    pub coupon: Option<Coupon>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub id: i64,
    pub product_id: i64,
    pub product_name: Option<String>,
    pub status: String,
    pub rating: i32,
    pub verified: bool,
    pub reviewer_email_hash: Option<String>,
    pub text: String,
    #[serde(with = "ts_millis::option")]
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReviewEvent {
    pub envelope: Envelope,
    pub action: Action,
    pub review_id: i64,
    pub review: Option<Review>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionEvent {
    pub envelope: Envelope,
    pub action_name: String,
    pub arg_json: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CustomerKey {
    pub shop_id: String,
    pub customer: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProductKey {
    pub shop_id: String,
    pub product_id: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CouponKey {
    pub shop_id: String,
    pub coupon_id: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ActionKey {
    pub shop_id: String,
    pub action_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IngestDeadLetter {
    #[serde(with = "ts_millis")]
    pub received_at: DateTime<Utc>,
    pub correlation_id: String,
    pub shop_id: Option<String>,
    pub source: Option<String>,
    pub wc_topic: Option<String>,
    pub webhook_id: Option<i64>,
    pub delivery_id: Option<String>,
    pub content_type: Option<String>,
    pub reason_code: String,
    pub reason: String,
    pub body_sha256: String,
    pub body_encryption: String,
    #[serde(with = "bytes_field")]
    pub body: Vec<u8>,
}

/// `Vec<u8>` as Avro `bytes` (serde would otherwise write an array of ints).
pub(crate) mod bytes_field {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}
