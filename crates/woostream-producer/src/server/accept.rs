//! A signed delivery made an event: normalised, settled (a deletion's owner, an erased
//! person's past, an account the shop still has), sealed and written; or refused as not an
//! event, for `dead_letter.rs` to keep.

use chrono::Utc;
use woostream_core::catalogue::NameBook;
use woostream_core::contract::events::{Action, Origin};

use super::{unavailable, Headers, Ingest, Shop, LOOKUP_TIMEOUT};
use crate::answer::{Answer, Ignored};
use crate::personal::{publish_sealed, Eraser, NewKeys};
use crate::publish::{Durability, PublishError};
use woostream_woo::deletion::{
    account_from, belongs_from_lookup, deleted_id_belongs, Account, Belongs,
};
use woostream_woo::normalise::{normalise, Event, RejectCode, Rejection, WebhookDelivery};

/// A signed delivery that is not an event (its answer once dead-lettered follows from the
/// rejection's code: see [`Answer::status`]).
pub(super) struct NotAnEvent {
    pub(super) rejection: Rejection,
}

impl NotAnEvent {
    fn kept(rejection: Rejection) -> NotAnEvent {
        NotAnEvent { rejection }
    }
}

/// Turns a signed delivery into an event and makes it durable.
pub(super) async fn accept(
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

/// Settles a `*.deleted` event before it is written (see [`woostream_woo::deletion`]): an order's
/// deletion goes to its customer's key (from the orders this replica has seen, else from the
/// shop's REST API, which also gives the trashed order itself); a product or coupon id that is
/// the other resource's is answered 200 and not written. Returns that answer.
pub(super) async fn settle_deletion(
    ingest: &Ingest,
    delivery: &WebhookDelivery<'_>,
    event: &mut Event,
) -> Option<Answer> {
    let shop = delivery.shop_id;
    let cid = delivery.correlation_id;
    let (resource, id) = match &*event {
        Event::Order(_, e) if e.action == Action::Deleted && e.order.is_none() => {
            (woostream_woo::normalise::Resource::Order, e.order_id)
        }
        Event::Product(_, e) if e.action == Action::Deleted => {
            (woostream_woo::normalise::Resource::Product, e.product_id)
        }
        Event::Coupon(_, e) if e.action == Action::Deleted => {
            (woostream_woo::normalise::Resource::Coupon, e.coupon_id)
        }
        _ => return None,
    };
    let lookup = |endpoint: String| ask_shop(ingest, shop, endpoint);
    if resource == woostream_woo::normalise::Resource::Order {
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
            woostream_woo::normalise::Resource::Product => format!("products/{id}"),
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
            woostream_woo::normalise::Resource::Product => "product.deleted",
            _ => "coupon.deleted",
        };
        return Some(not_this_resource(ingest, cid, shop, topic));
    }
    None
}

/// One object of the shop's REST API, asked within [`LOOKUP_TIMEOUT`]: `None` without a REST
/// API for the shop; otherwise the object, or what its absence says of the id.
pub(super) async fn ask_shop(
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

/// What the shop's REST API says of account `id` (see [`woostream_woo::deletion::Account`]).
pub(super) async fn account_of(ingest: &Ingest, shop: &str, id: i64) -> Account {
    let asked = ask_shop(ingest, shop, format!("customers/{id}")).await;
    account_from(asked.map(|r| r.map(drop)))
}

pub(super) fn erasure_counted(ingest: &Ingest, shop: &str, outcome: &str) {
    ingest
        .metrics
        .erasures
        .with_label_values(&[shop, outcome])
        .inc();
}

/// A deletion whose id is another resource's: answered 200 (WooCommerce must never count it as
/// a failure), counted, not written.
pub(super) fn not_this_resource(
    ingest: &Ingest,
    cid: &str,
    shop: &str,
    topic: &'static str,
) -> Answer {
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
