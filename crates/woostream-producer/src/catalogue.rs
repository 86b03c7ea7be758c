//! The producer's product catalogue: [`woostream_core::catalogue`], followed by every
//! producer replica and fed by the product webhooks it handles itself.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use woostream_core::contract::codec::Decoder;

pub use woostream_core::catalogue::Catalogue;

/// A catalogue of `config`'s products topic, loaded (for up to 30 s) and then followed until
/// `shutdown`: what the webhook path, the backfill and reconciliation fill categories from.
pub async fn follow_products(
    config: &woostream_core::config::Config,
    bootstrap: &str,
    decoder: Decoder,
    shutdown: CancellationToken,
) -> anyhow::Result<(Arc<Catalogue>, std::thread::JoinHandle<()>)> {
    woostream_core::catalogue::follow_products(
        config, bootstrap, decoder, "producer", false, shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use woostream_core::contract::events::*;
    use woostream_woo::normalise::{normalise, Event, WebhookDelivery};

    fn product_event(shop: &str, id: i64, categories: &[i64], action: Action) -> ProductEvent {
        ProductEvent {
            envelope: Envelope {
                event_id: "e".into(),
                shop_id: shop.into(),
                source: "s".into(),
                wc_topic: "product.updated".into(),
                webhook_id: None,
                delivery_id: None,
                correlation_id: "c".into(),
                received_at: Utc::now(),
                origin: Origin::Webhook,
            },
            action,
            product_id: id,
            product: Some(Product {
                id,
                parent_id: None,
                product_type: "simple".into(),
                name: "n".into(),
                slug: "n".into(),
                sku: None,
                status: "publish".into(),
                price: None,
                regular_price: None,
                sale_price: None,
                on_sale: false,
                manage_stock: false,
                stock_quantity: None,
                stock_status: "instock".into(),
                low_stock_amount: None,
                categories: categories
                    .iter()
                    .map(|c| Category {
                        id: *c,
                        name: "c".into(),
                        slug: "c".into(),
                    })
                    .collect(),
                variation_ids: vec![],
                total_sales: None,
                created_at: None,
                modified_at: None,
            }),
        }
    }

    #[test]
    fn line_items_get_their_products_categories_per_shop() {
        let c = Catalogue::default();
        c.apply(&product_event("eu", 22, &[9, 14], Action::Created));
        c.apply(&product_event("us", 22, &[1], Action::Created));
        // A variation without categories does not hide its parent's.
        c.apply(&product_event("eu", 23, &[], Action::Updated));
        c.apply(&product_event("eu", 22, &[9, 15], Action::Updated));
        c.apply(&product_event("eu", 22, &[], Action::Deleted));
        // The fixture's line items: product 93, and product 22 as variation 23.
        let body = include_bytes!(
            "../../../tests/fixtures/woocommerce/woo_order_example.webhook_body.json"
        );
        let d = WebhookDelivery {
            shop_id: "eu",
            source: "s",
            wc_topic: Some("order.created"),
            webhook_id: None,
            delivery_id: None,
            correlation_id: "c",
            received_at: Utc::now(),
            origin: Origin::Webhook,
            customers: &woostream_core::privacy::CustomerHasher::new(b"test"),
        };
        let Ok(Event::Order(_, e)) = normalise(&d, body) else {
            panic!("the fixture is an order")
        };
        let mut order = e.order.unwrap();
        c.fill("eu", &mut order);
        assert!(
            order.line_items[0].category_ids.is_empty(),
            "unknown product"
        );
        assert_eq!(
            order.line_items[1].category_ids,
            vec![9, 15],
            "latest update wins"
        );
        c.fill("us", &mut order);
        assert_eq!(order.line_items[1].category_ids, vec![1]);
    }
}
