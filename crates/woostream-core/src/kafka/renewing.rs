//! A producer that replaces itself when librdkafka declares it unusable, and knows whether the
//! broker is answering.
//!
//! An idempotent librdkafka producer can end up in a fatal state (ProducerFenced, an
//! out-of-order sequence, an unknown producer id — typically after a broker stall longer than
//! the delivery timeout). From then on every send fails, for good: the application has to
//! create a new producer. Records in flight on the old one fail with it, and their callers
//! retry or spool them, so nothing acknowledged is lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::stats::ClientStats;

/// The producer a role writes with: librdkafka's statistics become metrics.
pub type FutureProducer = rdkafka::producer::FutureProducer<ClientStats>;

/// Replacements by role, process-wide: several roles may share one registry (`woostream run`).
static RENEWALS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "woostream_kafka_producer_renewals_total",
            "Kafka producers replaced after librdkafka declared them failed for good.",
        ),
        &["role"],
    )
    .expect("valid metric")
});

/// Adds the renewal counter to `registry` (once; later calls are no-ops).
pub fn register_metrics(registry: &prometheus::Registry) -> prometheus::Result<()> {
    crate::ops::register_shared(registry, Box::new(RENEWALS.clone()))
}

pub struct RenewingProducer {
    config: ClientConfig,
    /// The role that writes with it, for the logs and the renewal counter.
    role: &'static str,
    current: RwLock<Arc<FutureProducer>>,
    renewals: AtomicU64,
    reachable: watch::Sender<bool>,
    /// Records above librdkafka's default limit go through a producer of their own that takes
    /// up to this many bytes: raising `message.max.bytes` on the producer every record uses
    /// cost about a fifth of the webhook producer's throughput in `make bench-ingest`.
    large_limit: usize,
    large: Mutex<Option<Arc<FutureProducer>>>,
}

/// librdkafka's own `message.max.bytes`.
const DEFAULT_MAX_MESSAGE: usize = 1_000_000;
/// What a record's key and value may take in the default lane (headers and framing need the
/// rest of the default limit).
const SMALL_RECORD: usize = DEFAULT_MAX_MESSAGE - 64 * 1024;

impl RenewingProducer {
    pub fn new(config: ClientConfig, role: &'static str) -> anyhow::Result<Arc<RenewingProducer>> {
        RenewingProducer::with_max_message(config, role, DEFAULT_MAX_MESSAGE)
    }

    /// A producer whose records may take up to `max_message` bytes (`kafka.max_message_bytes`).
    pub fn with_max_message(
        mut config: ClientConfig,
        role: &'static str,
        max_message: usize,
    ) -> anyhow::Result<Arc<RenewingProducer>> {
        if max_message < DEFAULT_MAX_MESSAGE {
            config.set("message.max.bytes", max_message.to_string());
        }
        let first: FutureProducer = config
            .create_with_context(ClientStats { role })
            .with_context(|| format!("creating the {role}'s Kafka producer"))?;
        Ok(Arc::new(RenewingProducer {
            config,
            role,
            current: RwLock::new(Arc::new(first)),
            renewals: AtomicU64::new(0),
            // Optimistic until a send or a probe says otherwise.
            reachable: watch::Sender::new(true),
            large_limit: max_message,
            large: Mutex::new(None),
        }))
    }

    /// The producer for a record of `size` bytes: the large-record one, made on first use,
    /// when the record is over the default lane's limit and the configuration allows it.
    fn producer_for(&self, size: usize) -> Result<Arc<FutureProducer>, KafkaError> {
        if size <= SMALL_RECORD || self.large_limit <= DEFAULT_MAX_MESSAGE {
            return Ok(self.current());
        }
        let mut large = self.large.lock().expect("large producer lock");
        if let Some(p) = large.as_ref() {
            return Ok(p.clone());
        }
        let p: Arc<FutureProducer> = Arc::new(
            self.config
                .clone()
                .set("message.max.bytes", self.large_limit.to_string())
                .create_with_context(ClientStats { role: self.role })?,
        );
        *large = Some(p.clone());
        Ok(p)
    }

    /// The producer to send with now.
    pub fn current(&self) -> Arc<FutureProducer> {
        self.current.read().expect("producer lock").clone()
    }

    /// How many times the producer was replaced.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    /// Whether the broker answered the last probe or send.
    pub fn is_reachable(&self) -> bool {
        *self.reachable.borrow()
    }

    /// Records what a probe or a send found out; returns whether that changed anything.
    pub fn set_reachable(&self, up: bool) -> bool {
        self.reachable
            .send_if_modified(|r| std::mem::replace(r, up) != up)
    }

    /// Waits until the broker is reachable (at once when it is).
    pub async fn reachable(&self) {
        let mut rx = self.reachable.subscribe();
        let _ = rx.wait_for(|up| *up).await;
    }

    /// Sends one record and waits for the broker's acknowledgement. A failure that leaves the
    /// producer unusable replaces it; a timeout marks the broker unreachable until a probe
    /// finds it again.
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        timeout: Duration,
    ) -> Result<(i32, i64), KafkaError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        let size = record.key.map_or(0, |k| k.to_bytes().len())
            + record.payload.map_or(0, |p| p.to_bytes().len());
        let producer = self.producer_for(size)?;
        match producer.send(record, Timeout::After(timeout)).await {
            Ok(d) => Ok((d.partition, d.offset)),
            Err((e, _)) => {
                if is_timeout(&e) {
                    self.set_reachable(false);
                }
                if size > SMALL_RECORD && self.large_limit > DEFAULT_MAX_MESSAGE {
                    // Made again on its next use, if this failure left it unusable.
                    if producer_identity_lost(&e).is_some()
                        || producer.client().fatal_error().is_some()
                    {
                        *self.large.lock().expect("large producer lock") = None;
                    }
                } else {
                    self.renew_after_failure(&producer, &e);
                }
                Err(e)
            }
        }
    }

    /// Sends until the broker acknowledges: a timeout or a failed producer is retried (with a
    /// new producer where needed) after a backoff of 0.5 s doubling to 10 s, for as long as it
    /// takes. For the records a role cannot go on without (audit, dead letters): its input
    /// offsets wait for them anyway, and giving up would stop the role. Only a refusal that no
    /// retry can fix is returned.
    pub async fn send_until_acknowledged(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &OwnedHeaders,
        timeout: Duration,
    ) -> Result<(i32, i64), KafkaError> {
        let mut backoff =
            crate::retry::Policy::new(Duration::from_millis(500), Duration::from_secs(10))
                .backoff();
        loop {
            let mut record = FutureRecord::to(topic)
                .payload(payload)
                .headers(headers.clone());
            if let Some(k) = key {
                record = record.key(k);
            }
            match self.send(record, timeout).await {
                Ok(at) => return Ok(at),
                Err(e) if is_permanent(&e) => return Err(e),
                Err(e) => {
                    let wait = backoff.next_wait().expect("no attempt limit");
                    tracing::warn!(role = self.role, %topic, error = %e, retry_in_ms = wait.as_millis() as u64, "Kafka did not acknowledge; sending again.");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// After `used` failed with `error`: replaces it if the error (or librdkafka's fatal
    /// state) means it cannot send any more; returns whether it was replaced.
    pub fn renew_after_failure(&self, used: &Arc<FutureProducer>, error: &KafkaError) -> bool {
        match producer_identity_lost(error) {
            Some(code) => self.renew(used, code, "the broker refused this producer's identity"),
            None => self.renew_if_fatal(used),
        }
    }

    /// Replaces `used` if librdkafka declared it fatally failed and nobody replaced it yet;
    /// returns whether it was replaced.
    pub fn renew_if_fatal(&self, used: &Arc<FutureProducer>) -> bool {
        match used.client().fatal_error() {
            Some((code, reason)) => self.renew(used, code, &reason),
            None => false,
        }
    }

    /// Replaces `used` unless somebody already did; returns whether this call replaced it.
    fn renew(&self, used: &Arc<FutureProducer>, code: RDKafkaErrorCode, reason: &str) -> bool {
        let mut current = self.current.write().expect("producer lock");
        if !Arc::ptr_eq(&current, used) {
            return false; // Someone else already replaced it.
        }
        let fresh: FutureProducer = match self
            .config
            .create_with_context(ClientStats { role: self.role })
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(role = self.role, error = %e, "Could not create a Kafka producer to replace one that failed; retrying at the next failure.");
                return false;
            }
        };
        let old = std::mem::replace(&mut *current, Arc::new(fresh));
        drop(current);
        self.renewals.fetch_add(1, Ordering::Relaxed);
        RENEWALS.with_label_values(&[self.role]).inc();
        tracing::error!(role = self.role, code = ?code, reason = %reason, "The Kafka producer failed for good; replaced it with a new one. Records in flight on the old one are retried or spooled.");
        // Dropping purges what the old producer still holds (its callers see the failure) and
        // blocks up to half a second: not on an async thread.
        std::thread::spawn(move || drop(old));
        true
    }

    /// Probes the broker every few seconds (every second while it is away), keeps the
    /// reachability current, replaces the producer if it failed while idle, and tells
    /// `on_change` about every change, until `shutdown`.
    pub async fn watch(
        self: Arc<Self>,
        shutdown: CancellationToken,
        on_change: impl Fn(bool) + Send + 'static,
    ) {
        loop {
            let producer = self.current();
            self.renew_if_fatal(&producer);
            let up = super::broker_reachable(&producer, Duration::from_secs(2)).await;
            if self.set_reachable(up) {
                tracing::info!(
                    role = self.role,
                    reachable = up,
                    "Kafka reachability changed."
                );
            }
            on_change(up);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(if up { 5 } else { 1 })) => {}
            }
        }
    }

    /// Waits up to `timeout` for everything sent so far to be acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let large = self.large.lock().expect("large producer lock").clone();
        if let Some(large) = large {
            large.flush(timeout)?;
        }
        self.current().flush(timeout)
    }
}

/// Refusals that retrying (or spooling) cannot fix.
pub fn is_permanent(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

/// Errors after which the broker no longer accepts this producer instance's records. librdkafka
/// declares some of them fatal, but not all: Tansu answers ProducerFenced to an idempotent
/// producer that bumped its epoch after a stall, and librdkafka then fails every record with
/// it without ever raising a fatal error.
fn producer_identity_lost(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    e.rdkafka_error_code().filter(|code| {
        matches!(
            code,
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::InvalidProducerIdMapping
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::Fatal
        )
    })
}

/// The broker did not answer in time (as opposed to refusing the record).
fn is_timeout(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;

    /// librdkafka's own test hook puts a client into the fatal state an idempotent producer
    /// reaches after ProducerFenced.
    fn make_fatal(producer: &FutureProducer) {
        let reason = std::ffi::CString::new("fenced by the test").unwrap();
        unsafe {
            rdkafka_sys::rd_kafka_test_fatal_error(
                producer.client().native_ptr(),
                rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
                reason.as_ptr(),
            );
        }
    }

    #[tokio::test]
    async fn a_fatally_failed_producer_is_replaced_and_the_next_send_lands() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 1, 1).unwrap();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("enable.idempotence", "true");
        let producer = RenewingProducer::new(config, "renewal-test").unwrap();
        let counter = RENEWALS.with_label_values(&["renewal-test"]);
        let send = |p: Arc<RenewingProducer>| async move {
            p.send(
                FutureRecord::<str, str>::to("t").key("k").payload("v"),
                Duration::from_secs(5),
            )
            .await
        };
        assert!(send(producer.clone()).await.is_ok());

        let first = producer.current();
        make_fatal(&first);
        let failed = send(producer.clone()).await;
        assert!(failed.is_err(), "a fatally failed producer refuses sends");
        assert!(
            !Arc::ptr_eq(&first, &producer.current()),
            "the failed producer was replaced"
        );
        assert_eq!((producer.renewals(), counter.get()), (1, 1));
        assert!(
            send(producer.clone()).await.is_ok(),
            "the replacement sends"
        );
        // Seeing the same failure again replaces nothing more.
        assert!(!producer.renew_if_fatal(&first));
        assert_eq!(producer.renewals(), 1);
    }

    #[tokio::test]
    async fn reachability_changes_are_reported_once_and_awaitable() {
        let cluster = MockCluster::new(1).unwrap();
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", cluster.bootstrap_servers());
        let producer = RenewingProducer::new(config, "reachability-test").unwrap();
        assert!(producer.is_reachable());
        assert!(producer.set_reachable(false));
        assert!(!producer.set_reachable(false));
        let waiter = tokio::spawn({
            let p = producer.clone();
            async move { p.reachable().await }
        });
        assert!(!waiter.is_finished());
        assert!(producer.set_reachable(true));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes when the broker is back")
            .unwrap();
    }
}
