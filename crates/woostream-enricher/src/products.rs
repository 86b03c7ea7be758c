//! Stock crossings per product and variation, and reviews: the catalogue side of the alerts.
//!
//! A product's band is Out when WooCommerce says `outofstock` or a managed stock is at or
//! below zero, Low when a managed stock is at or below `low_stock_amount` (or the configured
//! default), In otherwise. Alerts fire on crossings only: In→Low (stock low), any→Out (out of
//! stock), Out→In or Low (back in stock). The first version of a product seen sets its band
//! without an alert, so a backfill of the catalogue does not page anyone.

use std::collections::{HashMap, HashSet};

use woostream_core::events::{Action, ProductEvent, ReviewEvent};
use woostream_core::insights::{Alert, AlertKey, AlertKind, AlertProduct, AlertReview};

use crate::alerts::Origin;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StockBand {
    In,
    Low,
    Out,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stock {
    modified_ms: i64,
    quantity: Option<i64>,
    band: StockBand,
}

#[derive(Debug, Default)]
pub struct Catalogue {
    stock: HashMap<i64, Stock>,
    reviews_seen: HashSet<i64>,
}

pub fn product_key(shop_id: &str, product_id: i64) -> AlertKey {
    AlertKey {
        shop_id: shop_id.into(),
        subject: format!("product:{product_id}"),
    }
}

/// The settings the catalogue alerts need.
#[derive(Clone, Debug, PartialEq)]
pub struct CatalogueSettings {
    pub default_low_stock: i64,
    pub negative_review_max_rating: i32,
}

impl Catalogue {
    pub fn products(&self) -> usize {
        self.stock.len()
    }

    /// Applies a product delivery; the alerts of the crossing it makes, if any.
    pub fn on_product(
        &mut self,
        event: &ProductEvent,
        settings: &CatalogueSettings,
        origin: &Origin,
    ) -> Vec<Alert> {
        let Some(product) = &event.product else {
            if event.action == Action::Deleted {
                self.stock.remove(&event.product_id);
            }
            return Vec::new();
        };
        let modified_ms = product
            .modified_at
            .map_or(origin.occurred_at.timestamp_millis(), |t| {
                t.timestamp_millis()
            });
        let threshold = product
            .low_stock_amount
            .unwrap_or(settings.default_low_stock);
        let quantity = if product.manage_stock {
            product.stock_quantity
        } else {
            None
        };
        let band = match (product.stock_status.as_str(), quantity) {
            ("outofstock", _) => StockBand::Out,
            (_, Some(q)) if q <= 0 => StockBand::Out,
            (_, Some(q)) if q <= threshold => StockBand::Low,
            _ => StockBand::In,
        };
        let now = Stock {
            modified_ms,
            quantity,
            band,
        };
        let before = self.stock.get(&product.id).copied();
        if let Some(b) = before {
            let newer =
                now.modified_ms > b.modified_ms || (now.modified_ms == b.modified_ms && now != b);
            if !newer {
                return Vec::new();
            }
        }
        self.stock.insert(product.id, now);
        let Some(before) = before else {
            return Vec::new();
        };
        let kind = match (before.band, now.band) {
            (StockBand::In, StockBand::Low) => AlertKind::StockLow,
            (StockBand::In | StockBand::Low, StockBand::Out) => AlertKind::OutOfStock,
            (StockBand::Out, StockBand::In | StockBand::Low) => AlertKind::BackInStock,
            _ => return Vec::new(),
        };
        let mut alert = origin.alert(kind, &[&product.id.to_string(), &modified_ms.to_string()]);
        alert.product = Some(AlertProduct {
            product_id: product.id,
            parent_id: product.parent_id,
            name: product.name.clone(),
            sku: product.sku.clone(),
            stock_quantity: quantity,
            previous_stock_quantity: before.quantity,
            stock_status: product.stock_status.clone(),
            low_stock_threshold: threshold,
            category_ids: product.categories.iter().map(|c| c.id).collect(),
        });
        vec![alert]
    }

    /// A review is announced once, when first seen approved; with few stars also as negative.
    pub fn on_review(
        &mut self,
        event: &ReviewEvent,
        settings: &CatalogueSettings,
        origin: &Origin,
    ) -> Vec<Alert> {
        let Some(review) = &event.review else {
            return Vec::new();
        };
        if event.action == Action::Deleted
            || review.status != "approved"
            || !self.reviews_seen.insert(review.id)
        {
            return Vec::new();
        }
        let block = AlertReview {
            review_id: review.id,
            product_id: review.product_id,
            product_name: review.product_name.clone(),
            rating: review.rating,
            verified: review.verified,
            text: review.text.chars().take(500).collect(),
        };
        let id = review.id.to_string();
        let mut posted = origin.alert(AlertKind::ReviewPosted, &[&id]);
        posted.review = Some(block.clone());
        let mut out = vec![posted];
        if review.rating > 0 && review.rating <= settings.negative_review_max_rating {
            let mut negative = origin.alert(AlertKind::NegativeReview, &[&id]);
            negative.review = Some(block);
            out.push(negative);
        }
        out
    }
}
