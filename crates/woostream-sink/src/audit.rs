//! The audit topic (`woostream.deliveries`) and the dead letters, as every sink writes and
//! reads them: records sent until the broker acknowledges them, with the correlation id and,
//! for a dead letter, the reason in headers; the audit read back at start (a sink's memory of
//! what it already delivered) and the dead letters read back by a replay.

use std::time::Duration;

use anyhow::anyhow;
use rdkafka::message::{Header, Message, OwnedHeaders};
use woostream_core::config::Config;
use woostream_core::contract::codec::{CodecError, Contract, Decoder};
use woostream_core::contract::sink_records::Delivery;
use woostream_core::headers;
use woostream_core::kafka::reading::{read_all_now, reader, END_MARKER};
use woostream_core::kafka::RenewingProducer;

/// One record for the audit topic or a dead-letter topic.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub topic: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub correlation_id: String,
    /// A dead letter's reason (the `woostream-dead-letter-reason` header), with any further
    /// headers it carries.
    pub dead_letter: Option<(String, Vec<(&'static str, String)>)>,
}

/// Writes every record and returns once all are acknowledged (or one is refused for good).
pub async fn write_all(
    producer: &RenewingProducer,
    records: &[Outgoing],
    what: &str,
) -> anyhow::Result<()> {
    let sends = records.iter().map(|o| {
        let mut hs = OwnedHeaders::new().insert(Header {
            key: headers::CORRELATION_ID,
            value: Some(o.correlation_id.as_str()),
        });
        if let Some((reason, more)) = &o.dead_letter {
            hs = hs.insert(Header {
                key: headers::DEAD_LETTER_REASON,
                value: Some(reason.as_str()),
            });
            for (key, value) in more {
                hs = hs.insert(Header {
                    key,
                    value: Some(value.as_str()),
                });
            }
        }
        async move {
            producer
                .send_until_acknowledged(
                    &o.topic,
                    Some(&o.key),
                    &o.value,
                    &hs,
                    Duration::from_secs(30),
                )
                .await
        }
    });
    for r in futures::future::join_all(sends).await {
        r.map_err(|e| anyhow!("{what}: {e}"))?;
    }
    Ok(())
}

/// Folds every record written to `topic` before now (end markers left out), decoded, into
/// `state` on a blocking thread: the audit at start, the dead letters for a replay.
pub async fn fold_each<T: Contract + Send + 'static, S: Send + 'static>(
    config: &Config,
    bootstrap: &str,
    decoder: &Decoder,
    topic: &str,
    purpose: &str,
    mut state: S,
    mut f: impl FnMut(&mut S, Result<T, CodecError>) + Send + 'static,
) -> anyhow::Result<S> {
    let (kafka_config, bootstrap, topic, decoder, purpose) = (
        config.kafka.clone(),
        bootstrap.to_string(),
        topic.to_string(),
        decoder.clone(),
        purpose.to_string(),
    );
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || -> anyhow::Result<S> {
        let consumer = reader(&kafka_config, &bootstrap, &purpose)?;
        read_all_now(&kafka_config, &bootstrap, &consumer, &topic, |m| {
            if m.key() == Some(END_MARKER.as_bytes()) {
                return;
            }
            if let Some(v) = m.payload() {
                f(&mut state, decoder.decode_blocking::<T>(&handle, v));
            }
        })?;
        Ok(state)
    })
    .await?
}

/// Folds the audit records written before now by any of `sinks` (a sink's name: `slack`,
/// `crm@eu-hubspot`) into `state`.
pub async fn fold_audit<S: Send + 'static>(
    config: &Config,
    bootstrap: &str,
    decoder: &Decoder,
    sinks: Vec<String>,
    purpose: &str,
    state: S,
    mut f: impl FnMut(&mut S, &Delivery) + Send + 'static,
) -> anyhow::Result<S> {
    let topic = &config.topics.deliveries.name;
    fold_each::<Delivery, S>(
        config,
        bootstrap,
        decoder,
        topic,
        purpose,
        state,
        move |s, d| {
            if let Ok(d) = d {
                if sinks.contains(&d.sink) {
                    f(s, &d);
                }
            }
        },
    )
    .await
}
