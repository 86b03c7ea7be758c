//! One input record, consume → decide → emit: decode it, apply it to the partition's state
//! (pure: [`crate::partition`] and [`crate::products`]), and hand the outputs on.

use super::*;

impl Work {
    pub(super) fn input(&self, topic: &str) -> Option<Input> {
        let t = &self.config.topics;
        [
            (&t.orders, Input::Orders),
            (&t.customers, Input::Customers),
            (&t.products, Input::Products),
            (&t.reviews, Input::Reviews),
        ]
        .into_iter()
        .find(|(c, _)| c.name == topic)
        .map(|(_, i)| i)
    }

    pub(super) fn decode<T: Contract>(
        &self,
        bytes: &[u8],
    ) -> Result<T, woostream_core::codec::CodecError> {
        if self.with_registry {
            self.runtime.block_on(self.decoder.decode_async(bytes))
        } else {
            self.decoder.decode(bytes)
        }
    }

    pub(super) fn process(&mut self, m: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        match self.positions.get_mut(topic) {
            Some(partitions) => {
                partitions.insert(partition, offset + 1);
            }
            None => {
                self.positions
                    .insert(topic.to_string(), HashMap::from([(partition, offset + 1)]));
            }
        }
        self.metrics.records.with_label_values(&[topic]).inc();
        let (Some(input), Some(payload)) = (self.input(topic), m.payload()) else {
            return Ok(());
        };
        let output = match self.apply(input, partition, offset, m.key(), payload) {
            Ok(output) => output,
            Err(e) => {
                // The record stays in its topic; nothing downstream depends on it.
                self.metrics.unreadable.with_label_values(&[topic]).inc();
                tracing::warn!(%topic, partition, offset, error = %e, "Skipping an input record that cannot be read.");
                return Ok(());
            }
        };
        self.emit(output, partition)
    }

    /// The pure part: one decoded input record to its output.
    pub(super) fn apply(
        &mut self,
        input: Input,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> anyhow::Result<Output> {
        Ok(match input {
            Input::Orders => {
                let key: CustomerKey =
                    self.decode(key.ok_or_else(|| anyhow!("order record without a key"))?)?;
                let event: OrderEvent = self.decode(payload)?;
                let model = self.models.get(&key.shop_id);
                let state = self
                    .customers
                    .entry(partition)
                    .or_insert_with(|| CustomerPartition::new(partition));
                state.on_order(&key, &event, offset, &model, &self.settings)
            }
            Input::Customers => {
                let event: CustomerEvent = self.decode(payload)?;
                if event.action != Action::Deleted {
                    return Ok(Output::default());
                }
                let key: CustomerKey =
                    self.decode(key.ok_or_else(|| anyhow!("customer record without a key"))?)?;
                let state = self
                    .customers
                    .entry(partition)
                    .or_insert_with(|| CustomerPartition::new(partition));
                state.erase(&key)
            }
            Input::Products => {
                let event: ProductEvent = self.decode(payload)?;
                let e = &event.envelope;
                let origin = origin_of(e, event.product.as_ref().and_then(|p| p.modified_at));
                let alerts = self
                    .product_watches
                    .entry((input, partition))
                    .or_default()
                    .on_product(&event, &self.watch_settings, &origin);
                let key = product_key(&e.shop_id, event.product_id);
                Output {
                    profiles: Vec::new(),
                    alerts: alerts.into_iter().map(|a| (key.clone(), a)).collect(),
                }
            }
            Input::Reviews => {
                let event: ReviewEvent = self.decode(payload)?;
                let e = &event.envelope;
                let origin = origin_of(e, event.review.as_ref().and_then(|r| r.created_at));
                let alerts = self
                    .product_watches
                    .entry((input, partition))
                    .or_default()
                    .on_review(&event, &self.watch_settings, &origin);
                let key = product_key(
                    &e.shop_id,
                    event.review.as_ref().map_or(0, |r| r.product_id),
                );
                Output {
                    profiles: Vec::new(),
                    alerts: alerts.into_iter().map(|a| (key.clone(), a)).collect(),
                }
            }
        })
    }

    /// Sends the output's alerts, and keeps its profiles until the next commit: within a
    /// commit interval only each customer's newest profile is written (versions stay
    /// increasing, so consumers that keep the newest version see the same result), which in a
    /// flash sale saves most profile records.
    pub(super) fn emit(&mut self, output: Output, partition: i32) -> anyhow::Result<()> {
        for (key, alert) in output.alerts {
            self.metrics
                .alerts
                .with_label_values(&[alert.kind.as_str()])
                .inc();
            self.writer.write(Write::Alert(key, Box::new(alert)))?;
        }
        for (key, profile) in output.profiles {
            self.unwritten_profiles.insert((partition, key), profile);
        }
        Ok(())
    }

    pub(super) fn update_gauges(&self) {
        self.metrics
            .customers
            .set(self.customers.values().map(|c| c.len() as i64).sum());
        self.metrics.products.set(
            self.product_watches
                .values()
                .map(|c| c.products() as i64)
                .sum(),
        );
        self.metrics
            .partitions
            .set((self.customers.len() + self.product_watches.len()) as i64);
    }
}

pub(super) fn origin_of<'a>(
    e: &'a woostream_core::events::Envelope,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Origin<'a> {
    Origin {
        shop_id: &e.shop_id,
        occurred_at: at.unwrap_or(e.received_at),
        correlation_id: &e.correlation_id,
        event_id: &e.event_id,
        source: e.origin,
    }
}
