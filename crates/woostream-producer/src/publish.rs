//! The Kafka edge: canonical events into framed Avro records, sent with acks=all, spooled to
//! disk when the broker does not acknowledge in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use woostream_core::config::{Config, TopicsConfig};
use woostream_core::contract::codec::{
    CodecError, Codecs, Contract, ContractSchema, Decoder, Encoder, Framing,
};
use woostream_core::contract::events::*;
use woostream_core::headers;
use woostream_core::kafka::renewing::is_permanent;
use woostream_core::kafka::RenewingProducer;

use crate::metrics::Metrics;
use crate::spool::Spool;
use woostream_woo::normalise::Event;

/// One record ready for Kafka: what the spool keeps and the drain re-sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub topic: String,
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    #[serde(with = "b64")]
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Where an erasure request waits in the spool: never a Kafka topic. The drain carries the
/// request out (after the records spooled before it) instead of sending it.
pub const ERASURE_REQUESTS: &str = "woostream-spool:erasure-requests";

impl Record {
    /// An erasure to carry out once Kafka is back.
    pub fn erasure_request(request: &woostream_core::privacy::erase::Request) -> Record {
        Record {
            topic: ERASURE_REQUESTS.into(),
            key: request.erasure_id.clone().into_bytes(),
            value: serde_json::to_vec(request).expect("requests serialise"),
            headers: Vec::new(),
        }
    }

    /// The erasure request this record keeps, if it keeps one.
    pub fn as_erasure_request(&self) -> Option<woostream_core::privacy::erase::Request> {
        (self.topic == ERASURE_REQUESTS)
            .then(|| serde_json::from_slice(&self.value).ok())
            .flatten()
    }
}

/// Encoders for every contract the producer writes, with the framing chosen at start-up.
#[derive(Clone)]
pub struct Encoders {
    order: Encoder<OrderEvent>,
    product: Encoder<ProductEvent>,
    customer: Encoder<CustomerEvent>,
    coupon: Encoder<CouponEvent>,
    review: Encoder<ReviewEvent>,
    action: Encoder<ActionEvent>,
    customer_key: Encoder<CustomerKey>,
    product_key: Encoder<ProductKey>,
    coupon_key: Encoder<CouponKey>,
    action_key: Encoder<ActionKey>,
    dead_letter: Encoder<IngestDeadLetter>,
    dead_letter_key: Encoder<String>,
    pub topics: Topics,
}

/// Topic names by purpose.
#[derive(Clone, Debug)]
pub struct Topics {
    pub orders: String,
    pub products: String,
    pub customers: String,
    pub coupons: String,
    pub reviews: String,
    pub actions: String,
    pub ingest_dead_letter: String,
}

impl Topics {
    pub fn from_config(t: &TopicsConfig) -> Topics {
        Topics {
            orders: t.orders.name.clone(),
            products: t.products.name.clone(),
            customers: t.customers.name.clone(),
            coupons: t.coupons.name.clone(),
            reviews: t.reviews.name.clone(),
            actions: t.actions.name.clone(),
            ingest_dead_letter: t.ingest_dead_letter.name.clone(),
        }
    }
}

impl Encoders {
    /// Builds every encoder with the framing `framing_of` gives its schema.
    fn build(topics: Topics, framing_of: impl Fn(&'static str) -> Framing) -> Encoders {
        fn enc<T: Contract>(framing_of: &impl Fn(&'static str) -> Framing) -> Encoder<T> {
            Encoder::new(&framing_of(T::SCHEMA_NAME))
        }
        let f = &framing_of;
        Encoders {
            order: enc(f),
            product: enc(f),
            customer: enc(f),
            coupon: enc(f),
            review: enc(f),
            action: enc(f),
            customer_key: enc(f),
            product_key: enc(f),
            coupon_key: enc(f),
            action_key: enc(f),
            dead_letter: enc(f),
            dead_letter_key: enc(f),
            topics,
        }
    }

    /// Avro single-object encoding everywhere (no registry).
    pub fn single_object(topics: Topics) -> Encoders {
        Encoders::build(topics, |_| Framing::SingleObject)
    }

    /// The encoders `config` asks for, with a decoder: with a schema registry, every key and
    /// value schema registered under `{topic}-key` and `{topic}-value` (TopicNameStrategy) and
    /// the ids it returns used (a schema several topics share, the customer key, gets one
    /// global id); without one, single-object encoding.
    pub async fn register(config: &Config) -> anyhow::Result<(Encoders, Decoder)> {
        let topics = Topics::from_config(&config.topics);
        let codecs = {
            let t = &topics;
            let subjects: [(&str, &str, &'static ContractSchema); 14] = [
                (&t.orders, "value", OrderEvent::schema()),
                (&t.orders, "key", CustomerKey::schema()),
                (&t.products, "value", ProductEvent::schema()),
                (&t.products, "key", ProductKey::schema()),
                (&t.customers, "value", CustomerEvent::schema()),
                (&t.customers, "key", CustomerKey::schema()),
                (&t.coupons, "value", CouponEvent::schema()),
                (&t.coupons, "key", CouponKey::schema()),
                (&t.reviews, "value", ReviewEvent::schema()),
                (&t.reviews, "key", ProductKey::schema()),
                (&t.actions, "value", ActionEvent::schema()),
                (&t.actions, "key", ActionKey::schema()),
                (&t.ingest_dead_letter, "value", IngestDeadLetter::schema()),
                (&t.ingest_dead_letter, "key", String::schema()),
            ];
            Codecs::register(config, &subjects)
                .await
                .context("registering schemas with the schema registry")?
        };
        let encoders = Encoders::build(topics, |name| codecs.framing(name));
        Ok((encoders, codecs.decoder))
    }

    /// The record for an event, with woostream's headers.
    pub fn event_record(&self, event: &Event) -> Result<Record, CodecError> {
        let t = &self.topics;
        let (topic, key, value, schema) = match event {
            Event::Order(k, e) => (
                &t.orders,
                self.customer_key.encode(k)?,
                self.order.encode(e)?,
                OrderEvent::SCHEMA_NAME,
            ),
            Event::Product(k, e) => (
                &t.products,
                self.product_key.encode(k)?,
                self.product.encode(e)?,
                ProductEvent::SCHEMA_NAME,
            ),
            Event::Customer(k, e) => (
                &t.customers,
                self.customer_key.encode(k)?,
                self.customer.encode(e)?,
                CustomerEvent::SCHEMA_NAME,
            ),
            Event::Coupon(k, e) => (
                &t.coupons,
                self.coupon_key.encode(k)?,
                self.coupon.encode(e)?,
                CouponEvent::SCHEMA_NAME,
            ),
            Event::Review(k, e) => (
                &t.reviews,
                self.product_key.encode(k)?,
                self.review.encode(e)?,
                ReviewEvent::SCHEMA_NAME,
            ),
            Event::Action(k, e) => (
                &t.actions,
                self.action_key.encode(k)?,
                self.action.encode(e)?,
                ActionEvent::SCHEMA_NAME,
            ),
        };
        let env = event.envelope();
        let mut hs = vec![
            (
                headers::CORRELATION_ID.to_string(),
                env.correlation_id.clone(),
            ),
            (headers::EVENT_ID.to_string(), env.event_id.clone()),
            (headers::WC_TOPIC.to_string(), env.wc_topic.clone()),
            (headers::SOURCE.to_string(), env.source.clone()),
            (headers::SHOP.to_string(), env.shop_id.clone()),
            (headers::SCHEMA.to_string(), schema.to_string()),
        ];
        if let Some(d) = &env.delivery_id {
            hs.push((headers::DELIVERY_ID.to_string(), d.clone()));
        }
        Ok(Record {
            topic: topic.clone(),
            key,
            value,
            headers: hs,
        })
    }

    pub fn dead_letter_record(&self, dl: &IngestDeadLetter) -> Result<Record, CodecError> {
        let mut hs = vec![
            (
                headers::CORRELATION_ID.to_string(),
                dl.correlation_id.clone(),
            ),
            (
                headers::SCHEMA.to_string(),
                IngestDeadLetter::SCHEMA_NAME.to_string(),
            ),
        ];
        for (name, v) in [
            (headers::WC_TOPIC, &dl.wc_topic),
            (headers::SOURCE, &dl.source),
            (headers::SHOP, &dl.shop_id),
            (headers::DELIVERY_ID, &dl.delivery_id),
        ] {
            if let Some(v) = v {
                hs.push((name.to_string(), v.clone()));
            }
        }
        Ok(Record {
            topic: self.topics.ingest_dead_letter.clone(),
            key: self.dead_letter_key.encode(&dl.correlation_id)?,
            value: self.dead_letter.encode(dl)?,
            headers: hs,
        })
    }
}

/// Where a record ended up when `publish` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The broker acknowledged it (acks=all).
    Acknowledged { partition: i32, offset: i64 },
    /// Kafka did not acknowledge in time; it is fsynced in the local spool and will be drained.
    Spooled,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Kafka refused the record permanently: {0}")]
    Refused(KafkaError),
    #[error(
        "Kafka did not acknowledge ({kafka}) and the spool could not take the record: {spool}"
    )]
    Unavailable { kafka: KafkaError, spool: String },
}

#[derive(Clone)]
pub struct Publisher {
    producer: Arc<RenewingProducer>,
    spool: Option<Arc<Spool>>,
    metrics: Metrics,
    timeout: Duration,
}

impl Publisher {
    pub fn new(
        producer: Arc<RenewingProducer>,
        spool: Option<Arc<Spool>>,
        metrics: Metrics,
        timeout: Duration,
    ) -> Publisher {
        Publisher {
            producer,
            spool,
            metrics,
            timeout,
        }
    }

    /// Returns once the record is durable: acknowledged by the broker, or spooled to disk.
    /// While the broker is known to be away, a spool takes the record at once instead of
    /// letting the request wait out the delivery timeout.
    pub async fn publish(&self, record: Record) -> Result<Durability, PublishError> {
        if self.spool.is_some() && !self.producer.is_reachable() {
            let away = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
            return self.spool(&record, away).await;
        }
        let started = Instant::now();
        match send(&self.producer, &record, self.timeout).await {
            Ok((partition, offset)) => {
                self.metrics
                    .produce_seconds
                    .with_label_values(&[&record.topic])
                    .observe(started.elapsed().as_secs_f64());
                Ok(Durability::Acknowledged { partition, offset })
            }
            Err(e) if is_permanent(&e) => Err(PublishError::Refused(e)),
            Err(kafka) => {
                tracing::warn!(topic = %record.topic, error = %kafka, "Kafka did not acknowledge; spooling the record.");
                self.spool(&record, kafka).await
            }
        }
    }

    /// [`Publisher::publish`], except that a record sealed under a key that went to the spool
    /// follows it there: the drain writes keys first, so it never reaches Kafka before them.
    pub async fn publish_behind_keys(
        &self,
        record: Record,
        keys_spooled: bool,
    ) -> Result<Durability, PublishError> {
        if keys_spooled {
            let away = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
            return self.spool(&record, away).await;
        }
        self.publish(record).await
    }

    /// Whether the spool holds records not yet drained into Kafka.
    pub fn spool_holds_records(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| s.pending_bytes() > 0)
    }

    /// Keeps `record` in the spool without trying Kafka first (an erasure request whose
    /// carrying out failed, or whose deletion is itself in the spool).
    pub async fn keep(&self, record: &Record) -> Result<Durability, PublishError> {
        let away = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        self.spool(record, away).await
    }

    async fn spool(&self, record: &Record, kafka: KafkaError) -> Result<Durability, PublishError> {
        let Some(spool) = &self.spool else {
            return Err(PublishError::Unavailable {
                kafka,
                spool: "no spool is configured (producer.spool_dir)".into(),
            });
        };
        match spool.append(record).await {
            Ok(()) => {
                self.metrics.spooled.with_label_values(&["written"]).inc();
                Ok(Durability::Spooled)
            }
            Err(e) => Err(PublishError::Unavailable {
                kafka,
                spool: e.to_string(),
            }),
        }
    }
}

/// Sends one record and waits for the broker's acknowledgement.
pub async fn send(
    producer: &RenewingProducer,
    record: &Record,
    timeout: Duration,
) -> Result<(i32, i64), KafkaError> {
    let mut hs = OwnedHeaders::new_with_capacity(record.headers.len());
    for (k, v) in &record.headers {
        hs = hs.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let fr = FutureRecord::to(&record.topic)
        .key(&record.key)
        .payload(&record.value)
        .headers(hs);
    producer.send(fr, timeout).await
}
