//! The HubSpot webhook endpoint: verifies the v3 signature against the URL HubSpot calls,
//! keeps the contact property changes that concern the shop, finds each contact's customer
//! (its id property, read once from HubSpot), and writes the changes — values sealed under the
//! customer's key — before answering. A refused request is answered 401; a change that cannot
//! be written yet, 503, which HubSpot retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use rdkafka::producer::FutureRecord;
use serde_json::json;
use woostream_core::config::Config;
use woostream_core::kafka::{self, RenewingProducer};
use woostream_core::privacy::seal;
use woostream_core::privacy::CustomerHasher;

use super::change::{customer_of, millis, relevant, CrmChange, HubSpotEvent, Ignored};
use super::owners::Owners;
use super::Metrics;
use crate::personal::{NewKeys, Sealer};
use woostream_hubspot::signature;
use woostream_woo::deletion::Bounded;

pub struct Receiver {
    secret: String,
    /// The URL HubSpot signs (None: `https://<Host><path>`).
    public_url: Option<String>,
    path: String,
    max_age_ms: i64,
    fields: BTreeMap<String, String>,
    own_app: Option<String>,
    allowed_sources: Vec<String>,
    /// Events received and kept: HubSpot's retries of an answered request, and replays of a
    /// captured one within the signature's 5 minutes, are dropped.
    received: Mutex<Bounded<String>>,
    default_shop: String,
    hashers: HashMap<String, CustomerHasher>,
    sealer: Sealer,
    producer: Arc<RenewingProducer>,
    topic: String,
    contacts: Contacts,
    owners: Owners,
    metrics: Metrics,
}

/// Which customer each HubSpot contact is: its id property, read from HubSpot once.
struct Contacts {
    http: reqwest::Client,
    base: String,
    token: String,
    id_property: String,
    known: Mutex<HashMap<i64, String>>,
}

impl Contacts {
    async fn id_property_of(&self, contact: i64) -> anyhow::Result<Option<String>> {
        if let Some(id) = self.known.lock().expect("contacts").get(&contact) {
            return Ok(Some(id.clone()));
        }
        let url = format!("{}/crm/v3/objects/contacts/{contact}", self.base);
        let r = self
            .http
            .get(&url)
            .query(&[("properties", self.id_property.as_str())])
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("reading contact {contact} from HubSpot"))?;
        let found = match r.status().as_u16() {
            200 => {
                let body: serde_json::Value = r.json().await?;
                body["properties"][&self.id_property]
                    .as_str()
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
            }
            404 => None,
            s => anyhow::bail!("HubSpot answered {s} reading contact {contact}"),
        };
        // Only a found id is kept: a guest's contact gets one when its person registers.
        if let Some(id) = &found {
            self.known
                .lock()
                .expect("contacts")
                .insert(contact, id.clone());
        }
        Ok(found)
    }
}

impl Receiver {
    pub async fn new(
        config: &Config,
        bootstrap: &str,
        sealer: Sealer,
        owners: Owners,
        metrics: Metrics,
    ) -> anyhow::Result<Arc<Receiver>> {
        let c = &config.crm;
        let i = &c.inbound;
        let secret = woostream_core::secret::resolve_secret(&i.client_secret, &None)
            .context("crm.inbound.client_secret is not set: HubSpot's webhooks cannot be verified without it")?;
        let token = c
            .resolved_token()
            .context("crm.token is not set: the contacts' customers are read from HubSpot")?;
        let default_shop = i
            .shop
            .clone()
            .or_else(|| config.shops.first().map(|s| s.id.clone()))
            .context("no shops are configured")?;
        let (own_app, public_url) = required(i)?;
        Ok(Arc::new(Receiver {
            secret,
            public_url: Some(public_url),
            path: i.path.clone(),
            max_age_ms: i.max_age_secs as i64 * 1000,
            fields: i.field_map(),
            own_app: Some(own_app),
            allowed_sources: i.allowed_sources.clone(),
            received: Mutex::new(Bounded::new(100_000)),
            default_shop,
            hashers: config
                .shops
                .iter()
                .map(|s| (s.id.clone(), CustomerHasher::for_shop(config, &s.id)))
                .collect(),
            sealer,
            producer: kafka::renewing_producer(&config.kafka, bootstrap, "crm-inbound")?,
            topic: config.topics.crm_changes.name.clone(),
            contacts: Contacts {
                http: woostream_core::http::client()
                    .timeout(Duration::from_secs(30))
                    .build()?,
                base: c.api_url.trim_end_matches('/').to_string(),
                token,
                id_property: c.contact_id_property.clone(),
                known: Mutex::new(HashMap::new()),
            },
            owners,
            metrics,
        }))
    }

    /// The changes a verified request carries, sealed, with the keys made for them.
    async fn changes(
        &self,
        events: Vec<HubSpotEvent>,
    ) -> anyhow::Result<(Vec<CrmChange>, NewKeys)> {
        let mut out = Vec::new();
        let mut new_keys = NewKeys::default();
        for e in events {
            let change_id = format!("{}:{}", e.portal_id, e.event_id);
            if self
                .received
                .lock()
                .expect("received")
                .get(&change_id)
                .is_some()
            {
                self.count(Ignored::Duplicate.as_str());
                continue;
            }
            let field = match relevant(
                &e,
                &self.fields,
                self.own_app.as_deref(),
                &self.allowed_sources,
            ) {
                Ok(f) => f.to_string(),
                Err(why) => {
                    self.count(why.as_str());
                    continue;
                }
            };
            let Some(id_property) = self.contacts.id_property_of(e.object_id).await? else {
                // A guest's contact: there is no shop account to write to.
                self.count("no_account");
                continue;
            };
            let Some((shop, customer_id)) = customer_of(&id_property, &self.default_shop) else {
                self.count("no_account");
                continue;
            };
            // The contact must be the one woostream wrote for this customer: a property anyone
            // with a form can set is not enough to write into a shop account.
            let owner = self.owners.of_now(&e.object_id.to_string()).await?;
            if owner.as_ref() != Some(&(shop.clone(), customer_id.to_string())) {
                self.count("not_woostreams_contact");
                tracing::warn!(
                    contact = e.object_id,
                    "A HubSpot contact names a shop customer woostream never wrote it for; its change is not written to the shop."
                );
                continue;
            }
            let Some(hasher) = self.hashers.get(&shop) else {
                self.count("unknown_shop");
                continue;
            };
            let key = self
                .sealer
                .key_for(hasher, &shop, &customer_id.to_string(), &mut new_keys);
            let value = e.property_value.clone().unwrap_or_default();
            out.push(CrmChange {
                change_id,
                shop_id: shop,
                customer_id,
                contact_id: e.object_id.to_string(),
                property: e.property_name.clone().unwrap_or_default(),
                field,
                value: seal::seal(
                    &key,
                    woostream_core::privacy::personal::fields::CRM_VALUE,
                    &value,
                ),
                occurred_at: millis(e.occurred_at),
                received_at: Utc::now(),
                change_source: e.change_source.clone(),
            });
            self.count("accepted");
        }
        Ok((out, new_keys))
    }

    /// Writes the new keys, then the changes, each acknowledged.
    async fn write(&self, changes: &[CrmChange], new_keys: NewKeys) -> anyhow::Result<()> {
        let timeout = Duration::from_secs(30);
        for r in new_keys.records() {
            self.producer
                .send(
                    FutureRecord::to(&r.topic).key(&r.key).payload(&r.value),
                    timeout,
                )
                .await
                .context("writing a subject key")?;
        }
        self.sealer.made_durable(new_keys);
        for c in changes {
            let value = serde_json::to_vec(c)?;
            self.producer
                .send(
                    FutureRecord::to(&self.topic).key(&c.key()).payload(&value),
                    timeout,
                )
                .await
                .with_context(|| format!("writing to {}", self.topic))?;
        }
        Ok(())
    }

    fn count(&self, outcome: &str) {
        self.metrics.events.with_label_values(&[outcome]).inc();
    }
}

pub fn router(path: &str, receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route(path, post(receive))
        .with_state(receiver)
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The settings the inbound refuses to start without: its app id (without it woostream's own
/// writes would come back as the team's) and the public URL (without it the signature would be
/// checked against whatever Host a request claims).
pub fn required(i: &woostream_core::config::crm::CrmInbound) -> anyhow::Result<(String, String)> {
    let own_app = i
        .app_id
        .clone()
        .filter(|a| !a.trim().is_empty())
        .context("crm.inbound.app_id is not set: woostream's own writes to HubSpot could not be told from the team's")?;
    let public_url = i
        .public_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .context("crm.inbound.public_url is not set: the URL HubSpot calls, exactly as the app's webhook settings have it (its signature covers it)")?;
    Ok((own_app, public_url))
}

/// HubSpot sends at most 100 events (a few tens of KiB) at once.
const MAX_BODY: usize = 1024 * 1024;
/// A body that has not arrived in this time is refused (a trickling client holds nothing).
const BODY_TIME: Duration = Duration::from_secs(10);

async fn receive(
    State(r): State<Arc<Receiver>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let body: Bytes =
        match tokio::time::timeout(BODY_TIME, axum::body::to_bytes(body, MAX_BODY)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                r.metrics
                    .refused
                    .with_label_values(&["body_too_large_or_broken"])
                    .inc();
                return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
            }
            Err(_) => {
                r.metrics
                    .refused
                    .with_label_values(&["body_too_slow"])
                    .inc();
                return (StatusCode::REQUEST_TIMEOUT, "body too slow").into_response();
            }
        };
    let base = r.public_url.clone().unwrap_or_else(|| {
        format!(
            "https://{}{}",
            header(&headers, "host").unwrap_or_default(),
            r.path
        )
    });
    let uri = match &query {
        Some(q) => format!("{base}?{q}"),
        None => base,
    };
    let request = signature::Request {
        method: "POST",
        uri: &uri,
        body: &body,
        signature: header(&headers, "x-hubspot-signature-v3"),
        timestamp: header(&headers, "x-hubspot-request-timestamp"),
    };
    if let Err(refused) = signature::verify(
        &r.secret,
        &request,
        Utc::now().timestamp_millis(),
        r.max_age_ms,
    ) {
        r.metrics
            .refused
            .with_label_values(&[refused.reason()])
            .inc();
        tracing::warn!(reason = %refused, "Refused a HubSpot webhook request.");
        return (StatusCode::UNAUTHORIZED, "refused").into_response();
    }
    let events: Vec<HubSpotEvent> = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            r.metrics.refused.with_label_values(&["malformed"]).inc();
            tracing::warn!(error = %woostream_core::privacy::redact::hide_quoted_values(&e.to_string()), "A signed HubSpot request is not a list of events.");
            return (StatusCode::BAD_REQUEST, "expected a JSON list of events").into_response();
        }
    };
    let total = events.len();
    let written = async {
        let (changes, keys) = r.changes(events).await?;
        r.write(&changes, keys).await?;
        // Only once kept: a request answered 503 is retried by HubSpot and must go through.
        let mut received = r.received.lock().expect("received");
        for c in &changes {
            received.insert(c.change_id.clone(), ());
        }
        anyhow::Ok(changes.len())
    }
    .await;
    match written {
        Ok(n) => {
            tracing::info!(events = total, changes = n, "HubSpot webhook received.");
            (
                StatusCode::OK,
                axum::Json(json!({"events": total, "changes": n})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "Could not keep HubSpot's changes; HubSpot retries.");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbound_needs_its_app_id_and_public_url() {
        let mut i = woostream_core::config::crm::CrmInbound::default();
        let e = required(&i).unwrap_err().to_string();
        assert!(e.contains("crm.inbound.app_id"), "{e}");
        i.app_id = Some("4711".into());
        let e = required(&i).unwrap_err().to_string();
        assert!(e.contains("crm.inbound.public_url"), "{e}");
        i.public_url = Some("https://hooks.shop.example/webhooks/hubspot".into());
        assert_eq!(
            required(&i).unwrap(),
            (
                "4711".to_string(),
                "https://hooks.shop.example/webhooks/hubspot".to_string()
            )
        );
    }
}
