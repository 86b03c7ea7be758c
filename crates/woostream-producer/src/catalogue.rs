//! Product categories by product, so that order line items carry category ids: WooCommerce's
//! order payloads name the product but not its categories.
//!
//! Every producer replica follows the whole products topic (no consumer group: a small table
//! every replica needs in full) and also learns from the product webhooks it handles itself, so
//! a product is known as soon as this replica or any other has seen it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use woostream_core::codec::Decoder;
use woostream_core::config::KafkaConfig;
use woostream_core::events::{Action, Order, ProductEvent};
use woostream_core::kafka;

#[derive(Default)]
pub struct Catalogue {
    /// (shop, product or variation id) → category ids.
    categories: RwLock<HashMap<(String, i64), Vec<i64>>>,
}

impl Catalogue {
    /// Learns a product's categories. Deleted products are kept: orders that name them may
    /// still be updated.
    pub fn apply(&self, event: &ProductEvent) {
        let Some(p) = &event.product else { return };
        if event.action == Action::Deleted || p.categories.is_empty() {
            // Variations carry no categories of their own; line items name their parent.
            return;
        }
        let ids = p.categories.iter().map(|c| c.id).collect();
        self.categories
            .write()
            .expect("catalogue lock poisoned")
            .insert((event.envelope.shop_id.clone(), p.id), ids);
    }

    /// Fills in the category ids of an order's line items from what is known.
    pub fn fill(&self, shop_id: &str, order: &mut Order) {
        let known = self.categories.read().expect("catalogue lock poisoned");
        for line in &mut order.line_items {
            let found = [line.variation_id, line.product_id]
                .into_iter()
                .flatten()
                .find_map(|id| known.get(&(shop_id.to_string(), id)));
            if let Some(ids) = found {
                line.category_ids = ids.clone();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.categories
            .read()
            .expect("catalogue lock poisoned")
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A catalogue of `config`'s products topic, loaded (for up to 30 s) and then followed until
/// `shutdown`: what the webhook path, the backfill and reconciliation fill categories from.
pub async fn follow_products(
    config: &woostream_core::config::Config,
    bootstrap: &str,
    decoder: Decoder,
    shutdown: CancellationToken,
) -> anyhow::Result<(Arc<Catalogue>, std::thread::JoinHandle<()>)> {
    let catalogue = Arc::new(Catalogue::default());
    let thread = follow(
        catalogue.clone(),
        &config.kafka,
        bootstrap,
        &config.topics.products.name,
        decoder,
        Duration::from_secs(30),
        shutdown,
    )
    .await?;
    Ok((catalogue, thread))
}

/// Reads the products topic from the beginning up to its current end (bounded by `load_for`),
/// then keeps following it on a thread of its own until `shutdown`; join the returned thread
/// before the brokers may go away.
pub async fn follow(
    catalogue: Arc<Catalogue>,
    kafka_config: &KafkaConfig,
    bootstrap: &str,
    topic: &str,
    decoder: Decoder,
    load_for: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let consumer: BaseConsumer = kafka::client_config(kafka_config, bootstrap)
        .set("group.id", "woostream-producer-catalogue")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the product catalogue consumer")?;
    let topic = topic.to_string();
    let runtime = tokio::runtime::Handle::current();
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
    let thread = std::thread::Builder::new()
        .name("product-catalogue".into())
        .spawn(move || {
            let mut ends = match assign_from_beginning(&consumer, &topic) {
                Ok(ends) => ends,
                Err(e) => {
                    let _ = loaded_tx.send(Err(e));
                    return;
                }
            };
            let deadline = Instant::now() + load_for;
            let mut loaded_tx = Some(loaded_tx);
            while !shutdown.is_cancelled() {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                    if let Some(payload) = m.payload() {
                        match runtime.block_on(decoder.decode_async::<ProductEvent>(payload)) {
                            Ok(event) => catalogue.apply(&event),
                            Err(e) => tracing::warn!(partition = m.partition(), offset = m.offset(), error = %e, "Skipping an unreadable product record."),
                        }
                    }
                    ends.retain(|(p, end)| !(*p == m.partition() && m.offset() + 1 >= *end));
                }
                if loaded_tx.is_some() && (ends.is_empty() || Instant::now() > deadline) {
                    if !ends.is_empty() {
                        tracing::warn!(partitions = ends.len(), "Product catalogue not fully loaded in time; it keeps catching up.");
                    }
                    tracing::info!(products = catalogue.len(), "Product catalogue loaded.");
                    let _ = loaded_tx.take().map(|tx| tx.send(Ok(())));
                }
            }
        })
        .context("spawning the product catalogue thread")?;
    loaded_rx
        .await
        .context("the product catalogue thread ended before loading")??;
    Ok(thread)
}

/// Assigns every partition from the beginning; returns the partitions that hold records, with
/// their end offsets.
fn assign_from_beginning(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let timeout = Duration::from_secs(10);
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("reading metadata of {topic}"))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        if high > low {
            ends.push((p.id(), high));
        }
    }
    consumer
        .assign(&tpl)
        .context("assigning the products topic")?;
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise::{normalise, Event, WebhookDelivery};
    use chrono::Utc;
    use woostream_core::events::*;

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
