//! Stock crossings per product and variation, and reviews: the catalogue side of the alerts.
//!
//! A product's band is Out when WooCommerce says `outofstock` or a managed stock is at or
//! below zero, Low when a managed stock is at or below `low_stock_amount` (or the configured
//! default), In otherwise. Alerts fire on crossings only: In→Low (stock low), any→Out (out of
//! stock), Out→In or Low (back in stock). The first version of a product seen sets its band
//! without an alert, so a backfill of the catalogue does not page anyone.

use std::collections::{HashMap, HashSet};

use woostream_core::contract::enriched::{Alert, AlertKey, AlertKind, AlertProduct, AlertReview};
use woostream_core::contract::events::{Action, ProductEvent, ReviewEvent};

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

/// What the enricher watches of one partition's products: each product's stock band and the
/// reviews already announced.
#[derive(Debug, Default)]
pub struct ProductWatch {
    stock: HashMap<i64, Stock>,
    reviews_seen: HashSet<i64>,
}

pub fn product_key(shop_id: &str, product_id: i64) -> AlertKey {
    AlertKey {
        shop_id: shop_id.into(),
        subject: format!("product:{product_id}"),
    }
}

/// The settings the stock and review alerts need.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductWatchSettings {
    pub default_low_stock: i64,
    pub negative_review_max_rating: i32,
}

impl ProductWatch {
    pub fn products(&self) -> usize {
        self.stock.len()
    }

    /// Applies a product delivery; the alerts of the crossing it makes, if any.
    pub fn on_product(
        &mut self,
        event: &ProductEvent,
        settings: &ProductWatchSettings,
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
        settings: &ProductWatchSettings,
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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use woostream_core::contract::events::{Envelope, Origin as EventOrigin, Product, Review};

    use super::*;

    const SETTINGS: ProductWatchSettings = ProductWatchSettings {
        default_low_stock: 2,
        negative_review_max_rating: 2,
    };

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 9, minute, 0).unwrap()
    }

    fn envelope(minute: u32) -> Envelope {
        Envelope {
            event_id: format!("e{minute}"),
            shop_id: "eu".into(),
            source: "https://shop.example.com/".into(),
            wc_topic: "product.updated".into(),
            webhook_id: None,
            delivery_id: None,
            correlation_id: format!("c{minute}"),
            received_at: at(minute),
            origin: EventOrigin::Webhook,
        }
    }

    /// Product 7 at `minute` with a managed stock (`None`: unmanaged) and a status.
    fn product(minute: u32, stock: Option<i64>, status: &str, low: Option<i64>) -> ProductEvent {
        ProductEvent {
            envelope: envelope(minute),
            action: Action::Updated,
            product_id: 7,
            product: Some(Product {
                id: 7,
                parent_id: None,
                product_type: "simple".into(),
                name: "Coffee beans".into(),
                slug: "coffee-beans".into(),
                sku: None,
                status: "publish".into(),
                price: None,
                regular_price: None,
                sale_price: None,
                on_sale: false,
                manage_stock: stock.is_some(),
                stock_quantity: stock,
                stock_status: status.into(),
                low_stock_amount: low,
                categories: Vec::new(),
                variation_ids: Vec::new(),
                total_sales: None,
                created_at: None,
                modified_at: Some(at(minute)),
            }),
        }
    }

    fn origin(e: &Envelope) -> crate::alerts::Origin<'_> {
        crate::alerts::Origin {
            shop_id: &e.shop_id,
            occurred_at: e.received_at,
            correlation_id: &e.correlation_id,
            event_id: &e.event_id,
            source: e.origin,
        }
    }

    fn apply(c: &mut ProductWatch, e: &ProductEvent) -> Vec<AlertKind> {
        c.on_product(e, &SETTINGS, &origin(&e.envelope))
            .into_iter()
            .map(|a| a.kind)
            .collect()
    }

    /// Each row: stock before, stock after (managed quantities, low threshold 2) → the alert.
    #[test]
    fn alerts_fire_on_band_crossings_only() {
        use AlertKind::*;
        let table: &[(i64, i64, Option<AlertKind>)] = &[
            (10, 9, None),
            (10, 2, Some(StockLow)),
            (3, 1, Some(StockLow)),
            (2, 1, None),
            (10, 0, Some(OutOfStock)),
            (1, 0, Some(OutOfStock)),
            (1, -3, Some(OutOfStock)),
            (0, -1, None),
            (0, 1, Some(BackInStock)),
            (0, 10, Some(BackInStock)),
            (-2, 5, Some(BackInStock)),
            (1, 10, None),
        ];
        for &(before, after, want) in table {
            let mut c = ProductWatch::default();
            assert!(
                apply(&mut c, &product(0, Some(before), "instock", None)).is_empty(),
                "the first version seen only sets the band"
            );
            let got = apply(&mut c, &product(1, Some(after), "instock", None));
            assert_eq!(
                got,
                want.into_iter().collect::<Vec<_>>(),
                "{before} → {after}"
            );
        }
    }

    #[test]
    fn a_product_that_sells_out_twice_is_announced_each_time() {
        let mut c = ProductWatch::default();
        let mut kinds = Vec::new();
        for (minute, stock) in [(0, 5), (1, 0), (2, 5), (3, 0)] {
            kinds.extend(apply(
                &mut c,
                &product(minute, Some(stock), "instock", None),
            ));
        }
        assert_eq!(
            kinds,
            [
                AlertKind::OutOfStock,
                AlertKind::BackInStock,
                AlertKind::OutOfStock
            ]
        );
        // Each crossing has its own alert id (it carries the modification time).
        let mut c = ProductWatch::default();
        let mut ids = Vec::new();
        for (minute, stock) in [(0, 5), (1, 0), (2, 5), (3, 0)] {
            let e = product(minute, Some(stock), "instock", None);
            ids.extend(
                c.on_product(&e, &SETTINGS, &origin(&e.envelope))
                    .into_iter()
                    .map(|a| a.alert_id),
            );
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn repeated_and_late_deliveries_change_nothing() {
        let mut c = ProductWatch::default();
        apply(&mut c, &product(0, Some(5), "instock", None));
        assert_eq!(
            apply(&mut c, &product(2, Some(0), "instock", None)),
            [AlertKind::OutOfStock]
        );
        assert!(
            apply(&mut c, &product(2, Some(0), "instock", None)).is_empty(),
            "a repeat"
        );
        assert!(
            apply(&mut c, &product(1, Some(5), "instock", None)).is_empty(),
            "an older version delivered late"
        );
    }

    #[test]
    fn thresholds_come_from_the_product_then_the_default_and_status_wins() {
        let mut c = ProductWatch::default();
        apply(&mut c, &product(0, Some(20), "instock", Some(10)));
        assert_eq!(
            apply(&mut c, &product(1, Some(10), "instock", Some(10))),
            [AlertKind::StockLow],
            "the product's own low_stock_amount"
        );
        let mut c = ProductWatch::default();
        apply(&mut c, &product(0, None, "instock", None));
        assert_eq!(
            apply(&mut c, &product(1, None, "outofstock", None)),
            [AlertKind::OutOfStock],
            "an unmanaged stock follows WooCommerce's status"
        );
        assert_eq!(
            apply(&mut c, &product(2, None, "instock", None)),
            [AlertKind::BackInStock]
        );
        let mut c = ProductWatch::default();
        apply(&mut c, &product(0, Some(50), "instock", None));
        assert_eq!(
            apply(&mut c, &product(1, Some(50), "outofstock", None)),
            [AlertKind::OutOfStock],
            "outofstock wins over a positive quantity"
        );
    }

    #[test]
    fn a_deleted_product_is_forgotten() {
        let mut c = ProductWatch::default();
        apply(&mut c, &product(0, Some(5), "instock", None));
        assert_eq!(c.products(), 1);
        let deleted = ProductEvent {
            envelope: envelope(1),
            action: Action::Deleted,
            product_id: 7,
            product: None,
        };
        assert!(apply(&mut c, &deleted).is_empty());
        assert_eq!(c.products(), 0);
        assert!(
            apply(&mut c, &product(2, Some(0), "instock", None)).is_empty(),
            "seen again: a first version, no alert"
        );
    }

    fn review(minute: u32, status: &str, rating: i32, text: &str) -> ReviewEvent {
        ReviewEvent {
            envelope: envelope(minute),
            action: Action::Updated,
            review_id: 22,
            review: Some(Review {
                id: 22,
                product_id: 7,
                product_name: Some("Coffee beans".into()),
                status: status.into(),
                rating,
                verified: true,
                reviewer_email_hash: None,
                text: text.into(),
                created_at: Some(at(0)),
            }),
        }
    }

    fn on_review(c: &mut ProductWatch, e: &ReviewEvent) -> Vec<AlertKind> {
        c.on_review(e, &SETTINGS, &origin(&e.envelope))
            .into_iter()
            .map(|a| a.kind)
            .collect()
    }

    #[test]
    fn a_review_is_announced_once_when_approved_and_as_negative_with_few_stars() {
        let mut c = ProductWatch::default();
        assert!(
            on_review(&mut c, &review(0, "hold", 1, "Stale")).is_empty(),
            "held for moderation"
        );
        assert_eq!(
            on_review(&mut c, &review(1, "approved", 1, "Stale")),
            [AlertKind::ReviewPosted, AlertKind::NegativeReview]
        );
        assert!(
            on_review(&mut c, &review(2, "approved", 2, "Stale, edited")).is_empty(),
            "an edit after posting is not a new review"
        );
        let mut c = ProductWatch::default();
        assert_eq!(
            on_review(&mut c, &review(0, "approved", 5, "Great")),
            [AlertKind::ReviewPosted]
        );
        let mut c = ProductWatch::default();
        assert_eq!(
            on_review(&mut c, &review(0, "approved", 0, "No stars given")),
            [AlertKind::ReviewPosted],
            "a review without a rating is not negative"
        );
        let mut deleted = review(1, "approved", 1, "x");
        deleted.action = Action::Deleted;
        assert!(on_review(&mut ProductWatch::default(), &deleted).is_empty());
    }

    #[test]
    fn a_long_review_text_is_cut_to_500_characters() {
        let mut c = ProductWatch::default();
        let e = review(0, "approved", 5, &"é".repeat(800));
        let alerts = c.on_review(&e, &SETTINGS, &origin(&e.envelope));
        assert_eq!(alerts[0].review.as_ref().unwrap().text.chars().count(), 500);
    }
}
