//! The product catalogue every role that names products follows: categories by product (so
//! that order line items carry category ids: WooCommerce's order payloads name the product but
//! not its categories) and the names of products and categories (so that a customer's taste
//! reads "Coffee beans", not "category 17").
//!
//! Each replica follows the whole products topic (no consumer group: a small table every
//! replica needs in full); the producer also learns from the product webhooks it handles
//! itself, so a product is known as soon as this replica or any other has seen it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::contract::codec::Decoder;
use crate::contract::events::{Action, Order, ProductEvent};
use crate::kafka;
use crate::kafka::reading::mark_ends;

#[derive(Default)]
pub struct Catalogue {
    /// (shop, product or variation id) → category ids.
    categories: RwLock<HashMap<(String, i64), Vec<i64>>>,
    /// (shop, product, variation or category id) → name; products and categories apart.
    names: RwLock<Names>,
}

/// Names by shop, then by id: looked up by `&str` without building a key.
#[derive(Default)]
struct Names {
    products: HashMap<String, HashMap<i64, Box<str>>>,
    categories: HashMap<String, HashMap<i64, Box<str>>>,
}

/// Names of products and categories, for what woostream shows people.
pub trait NameBook: Send + Sync {
    fn product_name(&self, shop_id: &str, product_id: i64) -> Option<String>;
    fn category_name(&self, shop_id: &str, category_id: i64) -> Option<String>;
}

/// A name book that knows nothing (tests, and roles without a catalogue).
pub struct NoNames;

impl NameBook for NoNames {
    fn product_name(&self, _: &str, _: i64) -> Option<String> {
        None
    }
    fn category_name(&self, _: &str, _: i64) -> Option<String> {
        None
    }
}

impl NameBook for Catalogue {
    fn product_name(&self, shop_id: &str, product_id: i64) -> Option<String> {
        let names = self.names.read().expect("catalogue lock poisoned");
        names
            .products
            .get(shop_id)?
            .get(&product_id)
            .map(|n| n.to_string())
    }
    fn category_name(&self, shop_id: &str, category_id: i64) -> Option<String> {
        let names = self.names.read().expect("catalogue lock poisoned");
        names
            .categories
            .get(shop_id)?
            .get(&category_id)
            .map(|n| n.to_string())
    }
}

impl Catalogue {
    /// Learns a product's categories. Deleted products are kept: orders that name them may
    /// still be updated.
    pub fn apply(&self, event: &ProductEvent) {
        let Some(p) = &event.product else { return };
        {
            let shop = &event.envelope.shop_id;
            let mut names = self.names.write().expect("catalogue lock poisoned");
            if !p.name.is_empty() {
                names
                    .products
                    .entry(shop.clone())
                    .or_default()
                    .insert(p.id, p.name.as_str().into());
            }
            for c in &p.categories {
                if !c.name.is_empty() {
                    names
                        .categories
                        .entry(shop.clone())
                        .or_default()
                        .insert(c.id, c.name.as_str().into());
                }
            }
        }
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

/// Reads the products topic from the beginning up to its current end (bounded by `load_for`),
/// then keeps following it on a thread of its own until `shutdown`; join the returned thread
/// before the brokers may go away.
#[allow(clippy::too_many_arguments)]
async fn follow(
    catalogue: Arc<Catalogue>,
    kafka_config: &KafkaConfig,
    bootstrap: &str,
    topic: &str,
    decoder: Decoder,
    load_for: Duration,
    role: &str,
    to_markers: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (marker_config, marker_bootstrap) = (kafka_config.clone(), bootstrap.to_string());
    let consumer: BaseConsumer = kafka::client_config(kafka_config, bootstrap)
        .set(
            "group.id",
            kafka_config.namespaced(&format!("woostream-{role}-catalogue")),
        )
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
            if to_markers {
                // Up to markers written now, not the reported ends (Tansu reports an end
                // before its last records): everything written before the start is loaded.
                match mark_ends(&marker_config, &marker_bootstrap, &consumer, &topic) {
                    Ok(stops) => ends = stops.into_iter().map(|(p, o)| (p, o + 1)).collect(),
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e));
                        return;
                    }
                }
            }
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

/// A catalogue of `config`'s products topic, loaded (for up to 30 s) and then followed until
/// `shutdown` by `role`. With `to_markers` the load reads up to end markers it writes (what
/// a role that names what it writes needs: a restarted one starts from the same catalogue as
/// the first), otherwise up to the ends the broker reports.
pub async fn follow_products(
    config: &crate::config::Config,
    bootstrap: &str,
    decoder: Decoder,
    role: &str,
    to_markers: bool,
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
        role,
        to_markers,
        shutdown,
    )
    .await?;
    Ok((catalogue, thread))
}
