//! One input record, consume → decide → emit: decode it, apply it to the partition's state
//! (pure: [`crate::partition`] and [`crate::products`]), and hand the outputs on.

use super::writer::Write;
use super::{Input, Work};
use crate::alerts::Origin;
use crate::model::topic::Models;
use crate::partition::{CustomerPartition, Output, Settings};
use crate::products::product_key;
use crate::products::{ProductWatch, ProductWatchSettings};
use anyhow::anyhow;
use rdkafka::message::{BorrowedMessage, Message};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use woostream_core::contract::codec::Contract;
use woostream_core::contract::events::{
    Action, CustomerEvent, CustomerKey, OrderEvent, ProductEvent, ReviewEvent,
};
use woostream_core::contract::sink_records::DeliveryOutcome;
use woostream_core::kafka::admit::{unreadable, Unreadable};
use woostream_core::privacy::erase::erasure_of;
use woostream_core::privacy::personal::{fields, order_fields, seal_derived, Sealing};
use woostream_core::privacy::receipt::Receipt;

/// The customers and product watches of the assigned partitions, and what they are scored
/// with.
pub(super) struct State {
    pub(super) settings: Settings,
    pub(super) watch_settings: ProductWatchSettings,
    pub(super) models: Arc<Models>,
    pub(super) customers: HashMap<i32, CustomerPartition>,
    pub(super) product_watches: HashMap<(Input, i32), ProductWatch>,
    /// The producer erases on `customer.deleted`: the deletion itself is left to the erasure.
    pub(super) erasure_follows_deletion: bool,
    /// The models' generation the partitions were last queued for rescoring with.
    pub(super) models_seen: u64,
    /// Rescoring allowance for a new model: (customers that may still be rescored, as of).
    pub(super) rescore_allowance: (f64, Instant),
}

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
    ) -> Result<T, woostream_core::contract::codec::CodecError> {
        if self.io.with_registry {
            self.io
                .runtime
                .block_on(self.io.decoder.decode_async(bytes))
        } else {
            self.io.decoder.decode(bytes)
        }
    }

    pub(super) fn process(&mut self, m: &BorrowedMessage<'_>) -> anyhow::Result<()> {
        // A span per record cost the enricher 15 % of its throughput (make bench-enrich: 62,543
        // against 76,512 records/s): made for traces only; the lines about a record name its
        // correlation id themselves.
        let _record = woostream_core::traces::enabled()
            .then(|| woostream_core::kafka::span::record_span("enricher", m).entered());
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        match self.progress.positions.get_mut(topic) {
            Some(partitions) => {
                partitions.insert(partition, offset + 1);
            }
            None => {
                self.progress
                    .positions
                    .insert(topic.to_string(), HashMap::from([(partition, offset + 1)]));
            }
        }
        self.metrics.records.with_label_values(&[topic]).inc();
        let Some(input) = self.input(topic) else {
            return Ok(());
        };
        let Some(payload) = m.payload() else {
            // A tombstone on the customers topic is an erasure (see woostream_core::privacy).
            if input == Input::Customers {
                let output = self.erasure(m)?;
                return self.emit(output, partition);
            }
            return Ok(());
        };
        self.written_at = written_at(m);
        let error = match self.apply(input, partition, offset, m.key(), payload) {
            Ok(output) => return self.emit(output, partition),
            Err(e) => e,
        };
        match unreadable(error) {
            Unreadable::KeysUnavailable(e) => Err(e),
            // Stop before it (see `woostream_core::kafka::hold`).
            Unreadable::NewerWriter(e) => {
                if let Some(p) = self.progress.positions.get_mut(topic) {
                    p.insert(partition, offset);
                }
                self.newly_held = Some(e);
                Ok(())
            }
            Unreadable::Damaged(e) => {
                // The record stays in its topic; nothing downstream depends on it.
                self.metrics.unreadable.with_label_values(&[topic]).inc();
                tracing::warn!(
                    correlation_id = %woostream_core::kafka::span::correlation_id(m),
                    %topic,
                    partition,
                    offset,
                    error = %e,
                    "Skipping an input record that cannot be read."
                );
                Ok(())
            }
        }
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
                let mut event: OrderEvent = self.decode(payload)?;
                let sealing = match &mut event.order {
                    Some(o) => self.io.keys.open_record(order_fields(o), self.written_at)?,
                    None => Sealing::Clear,
                };
                if sealing == Sealing::Erased {
                    // Written before its person was erased: nothing of it counts any more.
                    self.metrics.erased_skipped.inc();
                    return Ok(Output::default());
                }
                let model = self.state.models.get(&key.shop_id);
                let state = self
                    .state
                    .customers
                    .entry(partition)
                    .or_insert_with(|| CustomerPartition::new(partition));
                if self.config.enricher.clock == woostream_core::config::Clock::Wall {
                    state.set_wall_clock(Some(chrono::Utc::now().timestamp_millis()));
                }
                let mut output = state.on_order(&key, &event, offset, &model, &self.state.settings);
                // The initial is as personal as the name it comes from, and the note is the
                // buyer's own words: both sealed the same way.
                for (_, alert) in &mut output.alerts {
                    if let Some(c) = &mut alert.customer {
                        c.first_name_initial = seal_derived(
                            c.first_name_initial.take(),
                            fields::FIRST_NAME_INITIAL,
                            &sealing,
                        );
                    }
                    if let Some(q) = &mut alert.question {
                        q.note = seal_derived(
                            Some(std::mem::take(&mut q.note)),
                            fields::CUSTOMER_NOTE,
                            &sealing,
                        )
                        .unwrap_or_default();
                    }
                }
                output
            }
            Input::Customers => {
                let event: CustomerEvent = self.decode(payload)?;
                // With erasure on deletion, the erasure's tombstone follows and does the work.
                if event.action != Action::Deleted || self.state.erasure_follows_deletion {
                    return Ok(Output::default());
                }
                let key: CustomerKey =
                    self.decode(key.ok_or_else(|| anyhow!("customer record without a key"))?)?;
                let state = self
                    .state
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
                    .state
                    .product_watches
                    .entry((input, partition))
                    .or_default()
                    .on_product(&event, &self.state.watch_settings, &origin);
                let key = product_key(&e.shop_id, event.product_id);
                Output {
                    profiles: Vec::new(),
                    alerts: alerts.into_iter().map(|a| (key.clone(), a)).collect(),
                }
            }
            Input::Reviews => {
                let mut event: ReviewEvent = self.decode(payload)?;
                // The text is sealed under its reviewer's key: opened to read (an erased
                // reviewer's text is gone), sealed again in the alerts that quote it.
                let sealing = match &mut event.review {
                    Some(r) => {
                        let mut text = Some(std::mem::take(&mut r.text));
                        let sealing = self
                            .io
                            .keys
                            .open_record(vec![(fields::REVIEW_TEXT, &mut text)], self.written_at)?;
                        r.text = text.unwrap_or_default();
                        sealing
                    }
                    None => Sealing::Clear,
                };
                let e = &event.envelope;
                let origin = origin_of(e, event.review.as_ref().and_then(|r| r.created_at));
                let mut alerts = self
                    .state
                    .product_watches
                    .entry((input, partition))
                    .or_default()
                    .on_review(&event, &self.state.watch_settings, &origin);
                for a in &mut alerts {
                    if let Some(r) = &mut a.review {
                        r.text = seal_derived(
                            Some(std::mem::take(&mut r.text)),
                            fields::REVIEW_TEXT,
                            &sealing,
                        )
                        .unwrap_or_default();
                    }
                }
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

    /// A tombstone on the customers topic: with an erasure's header, the person is erased
    /// (state, profile, and an alert for the sinks) and a receipt written; without one (a
    /// tombstone another tool wrote), the state and profile go all the same.
    fn erasure(&mut self, m: &BorrowedMessage<'_>) -> anyhow::Result<Output> {
        let key: CustomerKey = match m.key().map(|k| self.decode(k)) {
            Some(Ok(k)) => k,
            _ => return Ok(Output::default()),
        };
        let state = self
            .state
            .customers
            .entry(m.partition())
            .or_insert_with(|| CustomerPartition::new(m.partition()));
        let Some((erasure_id, requested_at)) = erasure_of(m) else {
            return Ok(state.erase(&key));
        };
        let origin = Origin {
            shop_id: &key.shop_id,
            occurred_at: requested_at,
            correlation_id: &erasure_id,
            event_id: &erasure_id,
            source: woostream_core::contract::events::Origin::Webhook,
        };
        let output = state.erase_person(&key, &erasure_id, &origin);
        let orders = output
            .alerts
            .first()
            .and_then(|(_, a)| a.erasure.as_ref())
            .map_or(0, |e| e.order_ids.len());
        let receipt = Receipt {
            erasure_id: &erasure_id,
            shop_id: &key.shop_id,
            role: "enricher",
            destination: self.config.topics.profiles.name.clone(),
            done: format!(
                "state of a customer key with {orders} orders dropped, profile tombstoned"
            ),
            object_id: None,
            requested_at,
            outcome: DeliveryOutcome::Erased,
            attempts: 1,
        }
        .record();
        self.io.writer.write(Write::Receipt(Box::new(receipt)))?;
        tracing::info!(erasure = %erasure_id, partition = m.partition(), orders, "Erased a customer's state and profile.");
        Ok(output)
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
            self.io.writer.write(Write::Alert(key, Box::new(alert)))?;
        }
        for (key, profile) in output.profiles {
            // Versions stay in the partition until the commit; what comes out is a tombstone.
            debug_assert!(profile.is_none(), "profiles are deferred in the runner");
            self.progress.erased.insert((partition, key));
        }
        Ok(())
    }

    /// Applies newly arrived models to the customers already scored: queued when the models
    /// change, then rescored at `enricher.rescore_per_second`, so a refit reaches every profile
    /// within minutes without stalling the orders behind it.
    pub(super) fn apply_new_models(&mut self) -> anyhow::Result<()> {
        let generation = self.state.models.generation();
        if generation != self.state.models_seen {
            self.state.models_seen = generation;
            self.state
                .customers
                .values_mut()
                .for_each(CustomerPartition::queue_model_rescore);
        }
        let pending: usize = self
            .state
            .customers
            .values()
            .map(CustomerPartition::model_rescore_pending)
            .sum();
        let rate = f64::from(self.config.enricher.rescore_per_second);
        let (allowance, since) = self.state.rescore_allowance;
        let now = Instant::now();
        // At most one second's worth saved up.
        let mut allowance = (allowance + since.elapsed().as_secs_f64() * rate).min(rate);
        self.state.rescore_allowance = (allowance, now);
        if pending == 0 || allowance < 1.0 {
            return Ok(());
        }
        let models = self.state.models.clone();
        let model_of = move |shop: &str| models.get(shop);
        let mut partitions: Vec<i32> = self.state.customers.keys().copied().collect();
        partitions.sort_unstable();
        for partition in partitions {
            let budget = allowance as usize;
            let Some(state) = self.state.customers.get_mut(&partition) else {
                continue;
            };
            let (output, used) = state.rescore_with_models(&model_of, &self.state.settings, budget);
            allowance -= used as f64;
            self.metrics.model_rescored.inc_by(used as u64);
            self.emit(output, partition)?;
            if allowance < 1.0 {
                break;
            }
        }
        self.state.rescore_allowance.0 = allowance;
        Ok(())
    }

    pub(super) fn update_gauges(&self) {
        self.metrics
            .customers
            .set(self.state.customers.values().map(|c| c.len() as i64).sum());
        self.metrics.products.set(
            self.state
                .product_watches
                .values()
                .map(|c| c.products() as i64)
                .sum(),
        );
        self.metrics
            .partitions
            .set((self.state.customers.len() + self.state.product_watches.len()) as i64);
    }
}

pub(super) fn origin_of<'a>(
    e: &'a woostream_core::contract::events::Envelope,
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

/// When a record was written to Kafka (its timestamp), if it says.
pub(crate) fn written_at(m: &BorrowedMessage<'_>) -> Option<chrono::DateTime<chrono::Utc>> {
    m.timestamp()
        .to_millis()
        .and_then(chrono::DateTime::from_timestamp_millis)
}
