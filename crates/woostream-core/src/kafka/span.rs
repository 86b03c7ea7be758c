//! The span one record is handled in: every log line written while a role handles a record
//! carries its correlation id (the `woostream-correlation-id` header the producer set from the
//! webhook), and, with tracing on, the span is that hop of the event's trace.

use rdkafka::message::{Headers, Message};

/// Reads a record's correlation id header; empty when it has none (a record another writer
/// made).
pub fn correlation_id<M: Message>(m: &M) -> String {
    m.headers()
        .and_then(|hs| {
            hs.iter()
                .find(|h| h.key == crate::headers::CORRELATION_ID)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
        .unwrap_or_default()
}

/// The span of handling `m` in `hop` (the role: "enricher", "slack", "crm", "crm-inbound").
pub fn record_span<M: Message>(hop: &'static str, m: &M) -> tracing::Span {
    let correlation_id = correlation_id(m);
    let span = tracing::info_span!(
        "record",
        otel.name = hop,
        correlation_id = %correlation_id,
        topic = m.topic(),
        partition = m.partition(),
        offset = m.offset(),
    );
    crate::traces::link(&span, &correlation_id);
    span
}
