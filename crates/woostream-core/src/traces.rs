//! OpenTelemetry traces over OTLP/HTTP (JSON), off unless `[traces] endpoint` is set.
//!
//! Each hop an event takes (the webhook, the enricher, each sink) is a span. Every hop derives
//! the event's trace id from its correlation id, which the producer puts in the webhook's
//! answer and in every record's `woostream-correlation-id` header, so the hops of one event
//! form one trace without a trace header of their own, and sampling (decided on the trace id)
//! keeps or drops all of them together. The trace's root is the event itself: its span id is
//! derived the same way and each hop is its child.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use sha2::{Digest, Sha256};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TracesConfig;

static ENABLED: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are exported (the producer only makes its per-request span then).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The trace id and root span id of the event with `correlation_id`.
pub fn event_ids(correlation_id: &str) -> (TraceId, SpanId) {
    let digest = Sha256::digest(correlation_id.as_bytes());
    let mut trace = [0u8; 16];
    trace.copy_from_slice(&digest[..16]);
    let mut span = [0u8; 8];
    span.copy_from_slice(&digest[16..24]);
    (TraceId::from_bytes(trace), SpanId::from_bytes(span))
}

/// Makes `span` a hop of its event's trace (a no-op without traces or a correlation id).
pub fn link(span: &tracing::Span, correlation_id: &str) {
    if !enabled() || correlation_id.is_empty() {
        return;
    }
    let (trace_id, span_id) = event_ids(correlation_id);
    let event = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(event));
}

/// The layer that exports spans, when `[traces] endpoint` is set; `service` names the role.
pub fn layer<S>(
    config: &TracesConfig,
    service: &str,
) -> anyhow::Result<Option<impl tracing_subscriber::Layer<S>>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let Some(endpoint) = &config.endpoint else {
        return Ok(None);
    };
    let url = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        endpoint.clone()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(10))
        .with_http_client(Collector::default())
        .build()
        .context("traces.endpoint: building the OTLP exporter")?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::TraceIdRatioBased(config.sample_ratio))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_string())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build();
    let tracer = provider.tracer("woostream");
    let _ = PROVIDER.set(provider);
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some(tracing_opentelemetry::layer().with_tracer(tracer)))
}

/// Sends the spans still buffered (at the end of a command or a role's shutdown).
pub fn flush() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.force_flush() {
            tracing::warn!(error = %e, "Could not send the last spans to the trace collector.");
        }
    }
}

/// The collector's HTTP client: a blocking one, as the exporter runs on a thread of its own
/// without an async runtime. Made on first use, on that thread.
#[derive(Debug, Default)]
struct Collector {
    client: OnceLock<reqwest::blocking::Client>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Collector {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let client = match self.client.get() {
            Some(c) => c,
            None => {
                let c = crate::http::blocking_client()
                    .timeout(Duration::from_secs(10))
                    .build()?;
                self.client.get_or_init(|| c)
            }
        };
        let (parts, body) = request.into_parts();
        let answer = client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let mut response = opentelemetry_http::Response::builder().status(answer.status());
        if let Some(headers) = response.headers_mut() {
            *headers = answer.headers().clone();
        }
        Ok(response.body(answer.bytes()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hop_of_an_event_derives_one_trace_and_other_events_another() {
        let (t1, s1) = event_ids("5d0c0a52-2b55-4c39-a2c3-1f0b2c6f7a10");
        let (t2, s2) = event_ids("5d0c0a52-2b55-4c39-a2c3-1f0b2c6f7a10");
        let (t3, _) = event_ids("5d0c0a52-2b55-4c39-a2c3-1f0b2c6f7a11");
        assert_eq!((t1, s1), (t2, s2));
        assert_ne!(t1, t3);
        assert_ne!(t1, TraceId::INVALID);
        assert_ne!(s1, SpanId::INVALID);
    }
}
