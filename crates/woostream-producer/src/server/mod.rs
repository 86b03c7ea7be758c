//! The HTTP edge: `POST {webhook_path}`: limits, authentication, and the answer (what it
//! answers, and why, is [`crate::answer`]). A signed delivery becomes an event in `accept.rs`;
//! one that is not an event is kept in `dead_letter.rs`.

mod accept;
mod dead_letter;

use accept::accept;
use dead_letter::dead_letter;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chacha20poly1305::ChaCha20Poly1305;
use woostream_core::config::{normalise_source, Config};
use woostream_core::privacy::CustomerHasher;

use crate::answer::Answer;
use crate::personal::{Eraser, Sealer};

use crate::catalogue::Catalogue;
use crate::dedup::RecentDeliveries;
use crate::metrics::Metrics;
use crate::publish::{Encoders, PublishError, Publisher};
use woostream_woo::deletion::{Erased, Seen};
use woostream_woo::normalise::{parse_topic, Topic};
use woostream_woo::rest::WooRest;
use woostream_woo::signature::{self, SignedWith};

/// A shop allowed to post, with its secret resolved.
#[derive(Clone)]
pub struct Shop {
    pub id: String,
    source: String,
    /// The source and its aliases, normalised.
    sources: Vec<String>,
    secrets: ShopSecrets,
    /// `previous_secret`, during a rotation.
    previous: Option<ShopSecrets>,
    /// `require_topic_secrets`: the shop-wide secret signs nothing.
    topic_only: bool,
    customers: CustomerHasher,
}

/// A shop's webhook secret and each webhook topic's, derived from it (see
/// [`signature::topic_secret`]).
#[derive(Clone)]
struct ShopSecrets {
    secret: String,
    topic_secrets: HashMap<&'static str, String>,
}

impl ShopSecrets {
    fn new(secret: String) -> ShopSecrets {
        ShopSecrets {
            topic_secrets: topic_secrets(&secret),
            secret,
        }
    }

    fn signed(
        &self,
        body: &[u8],
        topic: Option<&str>,
        topic_only: bool,
        signature: &str,
    ) -> Option<SignedWith> {
        let topic_secret = topic
            .and_then(|t| self.topic_secrets.get(t))
            .map(String::as_str);
        signature::verify_for_topic(body, &self.secret, topic_secret, topic_only, signature)
    }
}

/// Which secret of a shop signed a delivery.
#[derive(Clone, Copy)]
struct Signed {
    with: SignedWith,
    /// The secret being rotated out.
    previous: bool,
}

impl Shop {
    /// Which of the shop's secrets signed `body` for the topic its header names, if any: the
    /// current ones first, then those being rotated out.
    fn signed(&self, body: &[u8], topic: Option<&str>, signature: &str) -> Option<Signed> {
        let current = self
            .secrets
            .signed(body, topic, self.topic_only, signature)
            .map(|with| Signed {
                with,
                previous: false,
            });
        current.or_else(|| {
            let previous = self.previous.as_ref()?;
            let with = previous.signed(body, topic, self.topic_only, signature)?;
            Some(Signed {
                with,
                previous: true,
            })
        })
    }
}

pub struct Ingest {
    shops: Vec<Shop>,
    max_body_bytes: usize,
    body_timeout: std::time::Duration,
    /// One permit per request being handled: beyond `max_in_flight`, 503.
    in_flight: Arc<tokio::sync::Semaphore>,
    encoders: Encoders,
    publisher: Publisher,
    metrics: Metrics,
    dead_letter_cipher: Option<ChaCha20Poly1305>,
    catalogue: Arc<Catalogue>,
    recent: RecentDeliveries,
    /// Seals personal fields per person (absent: `privacy.seal_personal_data` is off).
    sealer: Option<Sealer>,
    /// Carries out the erasure a `customer.deleted` asks for (`privacy.erase_on_customer_deleted`).
    eraser: Option<Arc<Eraser>>,
    /// Orders and coupons this replica has seen, for `*.deleted` deliveries.
    seen: Seen,
    /// Accounts this replica erased from a `customer.deleted`: erased once.
    erased: Erased,
    /// Each shop's REST API, where configured: asked about deleted ids the replica does not know.
    rest: HashMap<String, WooRest>,
}

impl Ingest {
    pub fn new(
        config: &Config,
        encoders: Encoders,
        publisher: Publisher,
        metrics: Metrics,
        catalogue: Arc<Catalogue>,
        sealer: Option<Sealer>,
        eraser: Option<Arc<Eraser>>,
    ) -> Ingest {
        let shops = config
            .shops
            .iter()
            .map(|s| (s, s.resolved_secret().unwrap_or_default()))
            .map(|(s, secret)| Shop {
                id: s.id.clone(),
                source: normalise_source(&s.source),
                sources: std::iter::once(&s.source)
                    .chain(&s.source_aliases)
                    .map(|u| normalise_source(u))
                    .collect(),
                secrets: ShopSecrets::new(secret),
                previous: s
                    .previous_secret
                    .as_ref()
                    .and_then(|p| p.resolve().ok())
                    .map(ShopSecrets::new),
                topic_only: s.require_topic_secrets,
                customers: CustomerHasher::for_shop(config, &s.id),
            })
            .collect();
        let dead_letter_cipher = config
            .producer
            .dead_letter_key
            .as_ref()
            .and_then(|k| k.resolve().ok())
            .as_deref()
            .map(woostream_core::privacy::cipher::cipher);
        Ingest {
            shops,
            max_body_bytes: config.producer.max_body_bytes,
            body_timeout: std::time::Duration::from_millis(config.producer.body_timeout_ms),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.producer.max_in_flight)),
            encoders,
            publisher,
            metrics,
            dead_letter_cipher,
            catalogue,
            recent: RecentDeliveries::new(
                std::time::Duration::from_secs(config.producer.dedup_window_secs),
                config.producer.dedup_capacity,
            ),
            sealer,
            eraser,
            seen: Seen::new(SEEN_IDS),
            erased: Erased::new(SEEN_IDS),
            rest: config
                .shops
                .iter()
                .filter(|s| s.rest.is_some())
                .filter_map(|s| match WooRest::for_shop(s) {
                    Ok(client) => Some((s.id.clone(), client)),
                    Err(e) => {
                        tracing::warn!(shop = %s.id, error = %format!("{e:#}"), "The shop's REST API cannot be used to check deleted ids.");
                        None
                    }
                })
                .collect(),
        }
    }
}

/// Orders (and coupons) remembered per replica for `*.deleted` deliveries (~100 bytes each).
const SEEN_IDS: usize = 200_000;

/// How long a delivery waits for the shop's REST API to say what a deleted id was.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub fn router(path: &str, ingest: Arc<Ingest>) -> Router {
    Router::new().route(path, post(webhook)).with_state(ingest)
}

/// What a delivery's headers say.
struct Headers {
    signature: Option<String>,
    source: Option<String>,
    topic: Option<String>,
    webhook_id: Option<i64>,
    delivery_id: Option<String>,
    content_type: Option<String>,
    correlation_id: String,
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Headers {
    fn read(h: &HeaderMap) -> Headers {
        // Keep a caller's correlation id if it is a sane token, else make one.
        let correlation_id = ["x-correlation-id", "x-request-id"]
            .iter()
            .filter_map(|n| header_str(h, n))
            .find(|v| {
                v.len() <= 128
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
            })
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        Headers {
            signature: header_str(h, "x-wc-webhook-signature"),
            source: header_str(h, "x-wc-webhook-source"),
            topic: header_str(h, "x-wc-webhook-topic"),
            webhook_id: header_str(h, "x-wc-webhook-id").and_then(|v| v.parse().ok()),
            delivery_id: header_str(h, "x-wc-webhook-delivery-id")
                .map(|v| v.chars().take(128).collect()),
            content_type: header_str(h, header::CONTENT_TYPE.as_str()),
            correlation_id,
        }
    }

    /// A bounded label: the topic if WooCommerce defines it, else "action" or "unknown".
    fn topic_label(&self) -> &str {
        match self.topic.as_deref().map(|t| (t, parse_topic(t))) {
            Some((_, Some(Topic::Custom(_)))) => "action",
            Some((t, Some(_))) => t,
            _ => "unknown",
        }
    }
}

/// Lowers the in-flight gauge however the request ends (a panic included).
struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn webhook(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let m = &ingest.metrics;
    let h = Headers::read(&headers);
    // The producer's log lines name the correlation id themselves; the span (the event's first
    // hop) costs a little on every request, so it is made only for traces.
    let (shop, answer) = if woostream_core::traces::enabled() {
        let span = tracing::info_span!(
            "webhook",
            otel.name = "producer",
            correlation_id = %h.correlation_id,
            topic = h.topic_label(),
        );
        woostream_core::traces::link(&span, &h.correlation_id);
        handle(&ingest, &h, &headers, body).instrument(span).await
    } else {
        handle(&ingest, &h, &headers, body).await
    };
    let outcome = answer.outcome();
    m.requests
        .with_label_values(&[
            shop.as_deref().unwrap_or("unknown"),
            h.topic_label(),
            outcome,
        ])
        .inc();
    m.request_seconds
        .with_label_values(&[outcome])
        .observe(started.elapsed().as_secs_f64());
    answer.respond(&h.correlation_id)
}

/// The slowest body a delivery may send: 16 KiB/s after a first second. A WooCommerce body
/// (a few KiB, sent at once) is far inside it; a body trickled byte by byte to hold a
/// connection is cut long before `body_timeout_ms`.
const MIN_BODY_BYTES_PER_SECOND: f64 = 16.0 * 1024.0;

/// How long a body of `declared` bytes may take to arrive, at most `ceiling`.
pub fn body_budget(declared: Option<u64>, ceiling: std::time::Duration) -> std::time::Duration {
    let at_least_rate = |n: u64| {
        std::time::Duration::from_secs(1)
            + std::time::Duration::from_secs_f64(n as f64 / MIN_BODY_BYTES_PER_SECOND)
    };
    declared.map_or(ceiling, at_least_rate).min(ceiling)
}

/// Reads the whole body, giving up after `timeout`. A body that has already arrived with its
/// head (nearly every webhook) is taken without arming a timer: a timer per request cost a
/// fifth of the producer's throughput in `make bench-ingest`.
async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Result<bytes::Bytes, axum::Error>, tokio::time::error::Elapsed> {
    let mut read = std::pin::pin!(axum::body::to_bytes(body, limit));
    match futures::poll!(read.as_mut()) {
        std::task::Poll::Ready(done) => Ok(done),
        std::task::Poll::Pending => tokio::time::timeout(timeout, read).await,
    }
}

/// Every webhook topic's secret for a shop secret.
fn topic_secrets(secret: &str) -> HashMap<&'static str, String> {
    crate::rest::reconcile::WEBHOOK_TOPICS
        .iter()
        .map(|t| (*t, signature::topic_secret(secret, t)))
        .collect()
}

/// WooCommerce's ping is `webhook_id=N`: anything unsigned and longer is not one.
const MAX_PING_BYTES: u64 = 64;

/// Returns the shop the delivery is of (when known) and the answer.
async fn handle(
    ingest: &Ingest,
    h: &Headers,
    headers: &HeaderMap,
    body: Body,
) -> (Option<String>, Answer) {
    let cid = h.correlation_id.as_str();
    // What the headers alone decide is decided before a byte of the body is read: no
    // signature on more than a ping's few bytes is refused at once.
    let declared = header_str(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    // The shop the source header names. A source no shop names is not refused: WooCommerce
    // takes it from the request that fired the hook (WP-CLI, cron, another host name), so the
    // shop whose secret verifies the body is the one that sent it.
    let named = h.source.as_deref().and_then(|src| {
        let src = normalise_source(src);
        ingest.shops.iter().find(|s| s.sources.contains(&src))
    });
    let source_unknown = h.source.is_some() && named.is_none();
    if h.signature.is_none() && declared.is_some_and(|n| n > MAX_PING_BYTES) {
        return unauthorized(
            ingest,
            cid,
            None,
            crate::metrics::MISSING_SIGNATURE,
            "no X-WC-Webhook-Signature header",
        );
    }
    let budget = body_budget(declared, ingest.body_timeout);
    let read = match declared {
        Some(n) if n > ingest.max_body_bytes as u64 => None,
        _ => match read_body(body, ingest.max_body_bytes, budget).await {
            Ok(read) => read.ok(),
            Err(_) => {
                tracing::warn!(
                    correlation_id = cid,
                    timeout_ms = budget.as_millis() as u64,
                    "A webhook body did not arrive in time."
                );
                return (None, Answer::BodyTimeout);
            }
        },
    };
    let body = match read {
        Some(b) => b,
        None => {
            tracing::warn!(
                correlation_id = cid,
                limit = ingest.max_body_bytes,
                "Refused an oversized webhook body."
            );
            return (
                None,
                Answer::TooLarge {
                    limit: ingest.max_body_bytes,
                },
            );
        }
    };

    // Shed load beyond what the producer handles at once, counted only from here: a body that
    // is still arriving holds a connection, never a permit. A 503 with Retry-After is what
    // WooCommerce's next delivery of the same event (or a client's retry) can act on.
    let Ok(_permit) = ingest.in_flight.clone().try_acquire_owned() else {
        return (None, Answer::Overloaded);
    };
    ingest.metrics.in_flight.inc();
    let _in_flight = InFlight(ingest.metrics.in_flight.clone());
    let Some(signature) = &h.signature else {
        if signature::is_ping(&body) {
            tracing::info!(correlation_id = cid, "Answered WooCommerce's webhook ping.");
            return (None, Answer::Pong);
        }
        return unauthorized(
            ingest,
            cid,
            None,
            crate::metrics::MISSING_SIGNATURE,
            "no X-WC-Webhook-Signature header",
        );
    };

    // A body the named shop's secret does not verify is tried against every other shop's, as a
    // body of an unknown source is: the work before a refusal is the same whatever source a
    // request names, so its timing does not tell which sources are configured.
    let topic = h.topic.as_deref();
    let (shop, signed_with) = match named
        .and_then(|s| s.signed(&body, topic, signature).map(|with| (s, with)))
    {
        Some(found) => found,
        None => match ingest
            .shops
            .iter()
            .filter(|s| named.is_none_or(|n| n.id != s.id))
            .find_map(|s| s.signed(&body, topic, signature).map(|with| (s, with)))
        {
            Some((s, with)) => {
                if named.is_some() || source_unknown {
                    ingest
                        .metrics
                        .source_mismatches
                        .with_label_values(&[&s.id])
                        .inc();
                    tracing::warn!(
                        correlation_id = cid,
                        shop = %s.id,
                        source = h.source.as_deref().unwrap_or_default(),
                        "A delivery named a source that is not this shop's, and the shop's secret verified it: accepted. Add the source to the shop's source_aliases if it is the shop's."
                    );
                }
                (s, with)
            }
            // The source a refused request names is a claim, not a fact: counted under the
            // shop it names, and the alert tells a shop whose deliveries all fail (a rotated
            // secret) from junk posted in its name while its own deliveries pass.
            None if named.is_some() => {
                return unauthorized(
                    ingest,
                    cid,
                    named.map(|s| s.id.as_str()),
                    crate::metrics::BAD_SIGNATURE,
                    "the signature does not match the named shop's secret",
                )
            }
            None if source_unknown => {
                return unauthorized(
                    ingest,
                    cid,
                    None,
                    crate::metrics::UNKNOWN_SOURCE,
                    "X-WC-Webhook-Source names no configured shop and no shop's secret verifies the body",
                )
            }
            None => {
                return unauthorized(
                    ingest,
                    cid,
                    None,
                    crate::metrics::BAD_SIGNATURE,
                    "the signature matches no configured shop",
                )
            }
        },
    };
    if signed_with.with == SignedWith::Shop {
        ingest
            .metrics
            .shop_wide_signatures
            .with_label_values(&[&shop.id])
            .inc();
    }
    if signed_with.previous {
        ingest
            .metrics
            .previous_secret_signatures
            .with_label_values(&[&shop.id])
            .inc();
    }
    let delivery = ingest
        .recent
        .key(&shop.id, h.delivery_id.as_deref(), signature);
    if delivery.is_some_and(|k| ingest.recent.is_resend(&k)) {
        tracing::info!(
            correlation_id = cid,
            shop = %shop.id,
            "An exact resend of a delivery already kept; answered without producing it again."
        );
        return (Some(shop.id.clone()), Answer::Duplicate);
    }
    let source = h.source.clone().unwrap_or_else(|| shop.source.clone());
    let answer = match accept(ingest, h, shop, &source, &body).await {
        Ok(answer) => answer,
        Err(not_an_event) => dead_letter(ingest, h, shop, &source, &body, not_an_event).await,
    };
    if let Some(k) = delivery.filter(|_| answer.status().is_success()) {
        ingest.recent.remember(k);
    }
    (Some(shop.id.clone()), answer)
}

fn unauthorized(
    ingest: &Ingest,
    cid: &str,
    shop: Option<&str>,
    reason: &'static str,
    message: &str,
) -> (Option<String>, Answer) {
    ingest
        .metrics
        .signature_failures
        .with_label_values(&[shop.unwrap_or("unknown"), reason])
        .inc();
    // WooCommerce disables a webhook after repeated failures: this must be noticed.
    tracing::warn!(
        correlation_id = cid,
        shop = shop.unwrap_or("unknown"),
        reason,
        "Refused a webhook: {message}."
    );
    // One answer for every authentication failure: telling an unknown source from a bad
    // signature would let anyone list the configured shops. The reason is in the metrics and
    // the log line above.
    (shop.map(str::to_string), Answer::Unauthorized)
}

/// 503 with `Retry-After`: what WooCommerce's next delivery of the same event, or a client's
/// retry, can act on.
fn unavailable(cid: &str, e: &PublishError) -> Answer {
    tracing::error!(correlation_id = cid, error = %e, "Could not make a webhook durable.");
    Answer::Unavailable
}
