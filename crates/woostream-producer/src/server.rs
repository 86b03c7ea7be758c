//! The HTTP edge: `POST {webhook_path}`. What it answers, and why, is [`crate::answer`].

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
use chrono::Utc;
use sha2::{Digest, Sha256};
use woostream_core::config::{normalise_source, Config};
use woostream_core::events::{Action, IngestDeadLetter, Origin};
use woostream_core::privacy::CustomerHasher;

use crate::answer::{Answer, Ignored};
use crate::personal::{publish_sealed, seal_kept_body, Eraser, NewKeys, Sealer};

use crate::catalogue::Catalogue;
use crate::dedup::RecentDeliveries;
use crate::deletion::{
    account_from, belongs_from_lookup, deleted_id_belongs, Account, Belongs, Erased, Seen,
};
use crate::metrics::Metrics;
use crate::normalise::{
    normalise, parse_topic, Event, RejectCode, Rejection, Topic, WebhookDelivery,
};
use crate::publish::{Durability, Encoders, PublishError, Publisher};
use crate::rest::WooRest;
use crate::signature::{self, SignedWith};
use woostream_core::catalogue::NameBook;

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
            .map(woostream_core::sealing::cipher);
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

/// A signed delivery that is not an event (its answer once dead-lettered follows from the
/// rejection's code: see [`Answer::status`]).
struct NotAnEvent {
    rejection: Rejection,
}

impl NotAnEvent {
    fn kept(rejection: Rejection) -> NotAnEvent {
        NotAnEvent { rejection }
    }
}

/// Turns a signed delivery into an event and makes it durable.
async fn accept(
    ingest: &Ingest,
    h: &Headers,
    shop: &Shop,
    source: &str,
    body: &[u8],
) -> Result<Answer, NotAnEvent> {
    let cid = h.correlation_id.as_str();
    let is_json = h.content_type.as_deref().is_none_or(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.starts_with("application/json") || ct.contains("+json")
    });
    if !is_json {
        return Err(NotAnEvent::kept(Rejection {
            code: RejectCode::UnsupportedMediaType,
            reason: "expected Content-Type application/json".into(),
        }));
    }
    let delivery = WebhookDelivery {
        shop_id: &shop.id,
        source,
        wc_topic: h.topic.as_deref(),
        webhook_id: h.webhook_id,
        delivery_id: h.delivery_id.as_deref(),
        correlation_id: cid,
        received_at: Utc::now(),
        origin: Origin::Webhook,
        customers: &shop.customers,
    };
    let mut event = normalise(&delivery, body).map_err(NotAnEvent::kept)?;
    if let Some(not_ours) = settle_deletion(ingest, &delivery, &mut event).await {
        return Ok(not_ours);
    }
    // An erased person's past is not written again (no new key, no new contact).
    if let Some(sealer) = &ingest.sealer {
        if sealer.is_erased_past(&shop.customers, &event) {
            tracing::info!(
                correlation_id = cid,
                shop = %shop.id,
                "A delivery about a person who was erased (their past): not written."
            );
            return Ok(Answer::Ignored(Ignored::ErasedSubject));
        }
    }
    // A customer.deleted is an erasure only once the shop confirms the account is gone.
    let account = match &event {
        Event::Customer(_, e) if e.action == Action::Deleted => {
            Some(account_of(ingest, &shop.id, e.customer_id).await)
        }
        _ => None,
    };
    if account == Some(Account::StillThere) {
        erasure_counted(ingest, &shop.id, "account_exists");
        tracing::warn!(
            correlation_id = cid,
            shop = %shop.id,
            "A customer.deleted names an account the shop still has: not written, nothing erased. A replayed or re-labelled deletion (every *.deleted body is the same {{\"id\":N}}), or a shop that restored the account."
        );
        return Ok(Answer::Ignored(Ignored::AccountExists));
    }
    match &mut event {
        Event::Order(key, e) => {
            if let Some(order) = &mut e.order {
                ingest.catalogue.fill(&shop.id, order);
                ingest.seen.order(&shop.id, order.id, &key.customer);
            }
        }
        Event::Product(_, e) => ingest.catalogue.apply(e),
        Event::Coupon(_, e) if e.coupon.is_some() => ingest.seen.coupon(&shop.id, e.coupon_id),
        _ => {}
    }
    let mut new_keys = NewKeys::default();
    if let Some(sealer) = &ingest.sealer {
        sealer.seal_event(&shop.customers, &mut event, &mut new_keys);
    }
    let record = ingest.encoders.event_record(&event).map_err(|e| {
        NotAnEvent::kept(Rejection {
            code: RejectCode::InvalidField,
            reason: format!("the event does not fit its schema: {e}"),
        })
    })?;
    let event_id = event.envelope().event_id.as_str();
    let published =
        publish_sealed(&ingest.publisher, ingest.sealer.as_ref(), new_keys, record).await;
    let deleted = match &event {
        Event::Customer(key, e) if e.action == Action::Deleted => Some(key),
        _ => None,
    };
    let mut erasure = None;
    let mut erasure_pending = false;
    if let (Some(key), Some(eraser), Ok(durability)) = (deleted, &ingest.eraser, &published) {
        erasure = Some(match account {
            Some(Account::Gone) if ingest.erased.first_time(&shop.id, &key.customer) => {
                // Confirmed by the shop: erase the person here too, before answering — or,
                // when Kafka does not take it now, keep the request in the spool beside the
                // deletion: WooCommerce never delivers a deletion again.
                let request = Eraser::request(key);
                let now = match durability {
                    Durability::Acknowledged { .. } => eraser.carry_out(&request).await,
                    Durability::Spooled => Err(anyhow::anyhow!("the deletion itself is spooled")),
                };
                match now {
                    Ok(()) => {
                        erasure_counted(ingest, &shop.id, "erased");
                        request.erasure_id
                    }
                    Err(e) => match ingest
                        .publisher
                        .keep(&crate::publish::Record::erasure_request(&request))
                        .await
                    {
                        Ok(_) => {
                            erasure_counted(ingest, &shop.id, "spooled");
                            erasure_pending = true;
                            tracing::warn!(correlation_id = cid, shop = %shop.id, erasure = %request.erasure_id, error = %format!("{e:#}"), "An erasure waits in the spool; it is carried out once Kafka is back.");
                            request.erasure_id
                        }
                        Err(spool) => {
                            ingest.erased.forget(&shop.id, &key.customer);
                            tracing::error!(correlation_id = cid, shop = %shop.id, error = %format!("{e:#}"), spool = %spool, "Could not erase a deleted customer, nor keep the erasure for later.");
                            return Ok(Answer::ErasureUnavailable);
                        }
                    },
                }
            }
            Some(Account::Gone) => {
                erasure_counted(ingest, &shop.id, "already_erased");
                "already erased".to_string()
            }
            _ => {
                erasure_counted(ingest, &shop.id, "awaiting_operator");
                tracing::error!(
                    correlation_id = cid,
                    shop = %shop.id,
                    customer = %key.customer,
                    "A customer.deleted could not be confirmed with the shop's REST API (none configured, or no clear answer): kept, not erased. Erase the person with `woostream erase --shop {} --customer {}` once the shop confirms the account is gone.",
                    shop.id,
                    key.customer
                );
                format!(
                    "awaiting an operator: woostream erase --shop {} --customer {}",
                    shop.id, key.customer
                )
            }
        });
    }
    let event_id = event_id.to_string();
    Ok(match published {
        Ok(Durability::Acknowledged { .. }) if !erasure_pending => {
            Answer::Accepted { event_id, erasure }
        }
        Ok(Durability::Acknowledged { .. } | Durability::Spooled) => {
            Answer::Spooled { event_id, erasure }
        }
        // Retrying cannot help (a record larger than the topic takes): kept as a dead letter
        // and answered 200, never a 503 that WooCommerce would retry until it disables the hook.
        Err(PublishError::Refused(e)) => {
            return Err(NotAnEvent::kept(Rejection {
                code: RejectCode::RefusedByKafka,
                reason: format!("Kafka refused the event for good: {e}"),
            }))
        }
        Err(e) => unavailable(cid, &e),
    })
}

/// Settles a `*.deleted` event before it is written (see [`crate::deletion`]): an order's
/// deletion goes to its customer's key (from the orders this replica has seen, else from the
/// shop's REST API, which also gives the trashed order itself); a product or coupon id that is
/// the other resource's is answered 200 and not written. Returns that answer.
async fn settle_deletion(
    ingest: &Ingest,
    delivery: &WebhookDelivery<'_>,
    event: &mut Event,
) -> Option<Answer> {
    let shop = delivery.shop_id;
    let cid = delivery.correlation_id;
    let (resource, id) = match &*event {
        Event::Order(_, e) if e.action == Action::Deleted && e.order.is_none() => {
            (crate::normalise::Resource::Order, e.order_id)
        }
        Event::Product(_, e) if e.action == Action::Deleted => {
            (crate::normalise::Resource::Product, e.product_id)
        }
        Event::Coupon(_, e) if e.action == Action::Deleted => {
            (crate::normalise::Resource::Coupon, e.coupon_id)
        }
        _ => return None,
    };
    let lookup = |endpoint: String| ask_shop(ingest, shop, endpoint);
    if resource == crate::normalise::Resource::Order {
        let Event::Order(key, e) = event else {
            return None;
        };
        if let Some(owner) = ingest.seen.owner_of(shop, id) {
            key.customer = owner;
            return None;
        }
        match lookup(format!("orders/{id}")).await {
            Some(Ok(object)) => {
                let body = serde_json::to_vec(&object).unwrap_or_default();
                let as_rest = WebhookDelivery {
                    wc_topic: Some("order.updated"),
                    ..delivery.clone()
                };
                if let Ok(Event::Order(owner, trashed)) = normalise(&as_rest, &body) {
                    *key = owner;
                    e.order = trashed.order;
                    if let Some(order) = &mut e.order {
                        ingest.catalogue.fill(shop, order);
                    }
                    return None;
                }
            }
            Some(Err(Belongs::No)) => {
                return Some(not_this_resource(ingest, cid, shop, "order.deleted"));
            }
            _ => {}
        }
        ingest
            .metrics
            .unresolved_order_deletions
            .with_label_values(&[shop])
            .inc();
        tracing::warn!(
            correlation_id = cid,
            shop,
            order_id = id,
            "An order's deletion names no customer and the order is unknown here: written under the order's own key; reconciliation of trashed orders brings it to the customer."
        );
        return None;
    }
    let is_product = ingest.catalogue.product_name(shop, id).is_some();
    let is_coupon = ingest.seen.is_coupon(shop, id);
    let mut belongs = deleted_id_belongs(resource, is_product, is_coupon);
    if belongs == Belongs::Unknown {
        let endpoint = match resource {
            crate::normalise::Resource::Product => format!("products/{id}"),
            _ => format!("coupons/{id}"),
        };
        belongs = match lookup(endpoint).await {
            Some(Ok(_)) => Belongs::Yes,
            Some(Err(b)) => b,
            None => Belongs::Unknown,
        };
    }
    if belongs == Belongs::No {
        let topic = match resource {
            crate::normalise::Resource::Product => "product.deleted",
            _ => "coupon.deleted",
        };
        return Some(not_this_resource(ingest, cid, shop, topic));
    }
    None
}

/// One object of the shop's REST API, asked within [`LOOKUP_TIMEOUT`]: `None` without a REST
/// API for the shop; otherwise the object, or what its absence says of the id.
async fn ask_shop(
    ingest: &Ingest,
    shop: &str,
    endpoint: String,
) -> Option<Result<serde_json::Value, Belongs>> {
    let client = ingest.rest.get(shop)?;
    let asked = tokio::time::timeout(
        LOOKUP_TIMEOUT,
        client.object(reqwest::Method::GET, &endpoint, None),
    )
    .await;
    Some(match asked {
        Ok(Ok(object)) => Ok(object),
        Ok(Err(e)) => Err(belongs_from_lookup(e.status, &e.what)),
        Err(_) => Err(Belongs::Unknown),
    })
}

/// What the shop's REST API says of account `id` (see [`crate::deletion::Account`]).
async fn account_of(ingest: &Ingest, shop: &str, id: i64) -> Account {
    let asked = ask_shop(ingest, shop, format!("customers/{id}")).await;
    account_from(asked.map(|r| r.map(drop)))
}

fn erasure_counted(ingest: &Ingest, shop: &str, outcome: &str) {
    ingest
        .metrics
        .erasures
        .with_label_values(&[shop, outcome])
        .inc();
}

/// A deletion whose id is another resource's: answered 200 (WooCommerce must never count it as
/// a failure), counted, not written.
fn not_this_resource(ingest: &Ingest, cid: &str, shop: &str, topic: &'static str) -> Answer {
    ingest
        .metrics
        .deletions_not_of_resource
        .with_label_values(&[shop, topic])
        .inc();
    tracing::info!(
        correlation_id = cid,
        shop,
        topic,
        "A deletion's id is not of the resource its topic names (WooCommerce fires product.deleted and coupon.deleted for one trashed post): not written."
    );
    Answer::Ignored(Ignored::NotThisResource)
}

/// What a dead letter keeps of a body Kafka would not take whole.
const KEPT_PREFIX_BYTES: usize = 64 * 1024;

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

/// Keeps a signed delivery that is not an event, with its raw bytes (sealed if a key is set).
async fn dead_letter(
    ingest: &Ingest,
    h: &Headers,
    shop: &Shop,
    source: &str,
    body: &[u8],
    not_an_event: NotAnEvent,
) -> Answer {
    let NotAnEvent { rejection } = not_an_event;
    let cid = h.correlation_id.as_str();
    let mut published = publish_dead_letter(ingest, h, shop, source, body, &rejection, None).await;
    if matches!(published, Ok(Err(PublishError::Refused(_)))) && body.len() > KEPT_PREFIX_BYTES {
        // Too large even as a dead letter (the topic's limit is below ours): keep its start,
        // its size and its SHA-256, which is what an operator needs to find it in the shop.
        published = publish_dead_letter(
            ingest,
            h,
            shop,
            source,
            body,
            &rejection,
            Some(KEPT_PREFIX_BYTES),
        )
        .await;
    }
    match published {
        Err(answer) => answer,
        Ok(Ok(())) => {
            ingest
                .metrics
                .dead_lettered
                .with_label_values(&[&shop.id, rejection.code.as_str()])
                .inc();
            tracing::warn!(
                correlation_id = cid,
                shop = %shop.id,
                reason_code = rejection.code.as_str(),
                reason = %rejection.reason,
                "Dead-lettered a signed webhook that is not a readable event."
            );
            Answer::DeadLettered {
                code: rejection.code,
                reason: rejection.reason,
            }
        }
        Ok(Err(e)) => unavailable(cid, &e),
    }
}

/// Writes one dead letter, with the whole body or (`cut_to`) its first bytes. The outer error
/// is an answer already made (the record could not be encoded).
async fn publish_dead_letter(
    ingest: &Ingest,
    h: &Headers,
    shop: &Shop,
    source: &str,
    body: &[u8],
    rejection: &Rejection,
    cut_to: Option<usize>,
) -> Result<Result<(), PublishError>, Answer> {
    let cid = h.correlation_id.as_str();
    let kept = &body[..cut_to.unwrap_or(body.len()).min(body.len())];
    let reason = match cut_to {
        Some(n) => format!(
            "{} (the body is cut to its first {n} of {} bytes: Kafka would not take it whole)",
            rejection.reason,
            body.len()
        ),
        None => rejection.reason.clone(),
    };
    // Sealed under the person's key when the body shows whose it is (their erasure then
    // reaches it), else under the dead-letter key when one is configured.
    let mut new_keys = NewKeys::default();
    let (body_encryption, stored) = seal_kept_body(
        ingest.sealer.as_ref(),
        ingest.dead_letter_cipher.as_ref(),
        &shop.customers,
        &shop.id,
        kept,
        &mut new_keys,
    );
    let dl = IngestDeadLetter {
        received_at: Utc::now(),
        correlation_id: cid.to_string(),
        shop_id: Some(shop.id.clone()),
        source: Some(source.to_string()),
        wc_topic: h.topic.clone(),
        webhook_id: h.webhook_id,
        delivery_id: h.delivery_id.clone(),
        content_type: h.content_type.clone(),
        reason_code: rejection.code.as_str().to_string(),
        reason,
        body_sha256: hex::encode(Sha256::digest(body)),
        body_encryption: body_encryption.to_string(),
        body: stored,
    };
    let record = match ingest.encoders.dead_letter_record(&dl) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(correlation_id = cid, error = %e, "Could not encode a dead letter.");
            return Err(Answer::DeadLetterFailed);
        }
    };
    Ok(
        publish_sealed(&ingest.publisher, ingest.sealer.as_ref(), new_keys, record)
            .await
            .map(drop),
    )
}
