//! Reconciliation: WooCommerce's webhooks are at-most-once (a failed delivery is not retried,
//! and repeated failures disable the webhook silently), so every few minutes this asks the
//! REST API for what changed since its watermark minus an overlap and produces it with origin
//! RECONCILE; it polls reviews (which have no webhook) with origin POLL; and it keeps the
//! shop's webhooks active, re-enabling a disabled one and saying so.
//!
//! Repeats are harmless — the enricher keeps an object's newest `date_modified` and ignores the
//! same version twice — and they are counted (`woostream_rest_objects_total{outcome="repeat"}`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use woostream_core::config::{Config, ShopConfig};
use woostream_core::contract::codec::{Codecs, Contract, Encoder};
use woostream_core::contract::enriched::{Alert, AlertKey, AlertKind};
use woostream_core::contract::events::Origin;
use woostream_core::kafka::{self, RenewingProducer};

use super::checkpoint;
use super::ingest::RestIngest;
use crate::catalogue::Catalogue;
use crate::personal::{Eraser, NewKeys, Sealer};
use crate::publish::Encoders;
use woostream_woo::rest::resource::parse_gmt;
use woostream_woo::rest::{Resource, WooRest};

/// The webhook topics woostream needs from a shop.
pub const WEBHOOK_TOPICS: [&str; 15] = [
    "order.created",
    "order.updated",
    "order.deleted",
    // A trashed order brought back: it counts again in its customer's history.
    "order.restored",
    "product.created",
    "product.updated",
    "product.deleted",
    "product.restored",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "coupon.created",
    "coupon.updated",
    "coupon.deleted",
    "coupon.restored",
];

/// Where reconciliation of one (shop, resource) stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    /// The newest `date_modified_gmt` (reviews: `date_created_gmt`) produced so far.
    pub newest: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Watermark {
    pub fn key(shop: &str, resource: &str) -> String {
        format!("reconcile/{shop}/{resource}")
    }
}

/// What one cycle did for one resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CycleOutcome {
    pub resource: &'static str,
    /// Objects produced that no earlier cycle of this process had produced in this version.
    pub new: u64,
    /// Objects produced again in a version already produced (the overlap).
    pub repeats: u64,
    pub dead_lettered: u64,
}

/// What reconciliation exports.
#[derive(Clone)]
pub struct Metrics {
    pub objects: IntCounterVec,
    pub webhooks_reenabled: IntCounterVec,
    pub webhooks: IntGaugeVec,
    pub lag_seconds: IntGaugeVec,
    pub deleted_accounts: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            objects: IntCounterVec::new(
                Opts::new(
                    "woostream_rest_objects_total",
                    "Objects read through the shop's REST API and produced, by resource and outcome (new, repeat, dead_lettered).",
                ),
                &["shop", "resource", "outcome"],
            )?,
            webhooks_reenabled: IntCounterVec::new(
                Opts::new(
                    "woostream_rest_webhooks_reenabled_total",
                    "Webhooks found disabled by WooCommerce (after repeated failed deliveries) and re-enabled.",
                ),
                &["shop"],
            )?,
            webhooks: IntGaugeVec::new(
                Opts::new(
                    "woostream_rest_webhooks",
                    "woostream's own webhooks in the shop (those delivering to it) by status, as last seen.",
                ),
                &["shop", "status"],
            )?,
            lag_seconds: IntGaugeVec::new(
                Opts::new(
                    "woostream_rest_watermark_age_seconds",
                    "How old the newest change reconciliation has produced is, per resource.",
                ),
                &["shop", "resource"],
            )?,
            deleted_accounts: IntCounterVec::new(
                Opts::new(
                    "woostream_rest_deleted_accounts_total",
                    "Accounts the shop no longer lists, by what the shop answered for each (erased, already_erased, still_there, unconfirmed).",
                ),
                &["shop", "outcome"],
            )?,
        };
        registry.register(Box::new(m.deleted_accounts.clone()))?;
        registry.register(Box::new(m.objects.clone()))?;
        registry.register(Box::new(m.webhooks_reenabled.clone()))?;
        registry.register(Box::new(m.webhooks.clone()))?;
        registry.register(Box::new(m.lag_seconds.clone()))?;
        Ok(m)
    }
}

/// How reconciliation writes its own alerts (a webhook WooCommerce had disabled).
#[derive(Clone)]
pub struct AlertWriter {
    key: Encoder<AlertKey>,
    value: Encoder<Alert>,
}

impl AlertWriter {
    /// In the framing the configuration chooses, like every other writer.
    pub async fn for_config(config: &Config) -> anyhow::Result<AlertWriter> {
        let topic = config.topics.alerts.name.as_str();
        let subjects = [
            (topic, "key", AlertKey::schema()),
            (topic, "value", Alert::schema()),
        ];
        let codecs = Codecs::register(config, &subjects)
            .await
            .context("registering the alert schemas with the schema registry")?;
        Ok(AlertWriter {
            key: codecs.encoder(),
            value: codecs.encoder(),
        })
    }
}

/// The alert for a webhook found disabled. Its id is derived from the shop, the webhook and
/// when WooCommerce last changed it, so that one disabling is one alert however often a pass
/// that crashed is repeated.
pub fn webhook_disabled_alert(
    shop: &str,
    webhook: &Value,
    now: DateTime<Utc>,
) -> (AlertKey, Alert) {
    let id = webhook["id"].as_i64().unwrap_or_default();
    let changed = webhook["date_modified_gmt"].as_str().unwrap_or_default();
    let digest = Sha256::digest(format!("webhook_disabled\0{shop}\0{id}\0{changed}").as_bytes());
    let alert_id = hex::encode(&digest[..16]);
    (
        AlertKey {
            shop_id: shop.to_string(),
            subject: format!("webhook:{id}"),
        },
        Alert {
            alert_id: alert_id.clone(),
            kind: AlertKind::WebhookDisabled,
            shop_id: shop.to_string(),
            occurred_at: now,
            correlation_id: alert_id,
            caused_by_event_id: String::new(),
            order: None,
            customer: None,
            product: None,
            review: None,
            origin: Origin::Reconcile,
            erasure: None,
            replenishment: None,
            question: None,
        },
    )
}

/// The reconciling loop of one shop.
pub struct Reconciler {
    config: Config,
    shop: ShopConfig,
    client: WooRest,
    producer: Arc<RenewingProducer>,
    ingest: RestIngest,
    metrics: Metrics,
    watermarks: HashMap<Resource, DateTime<Utc>>,
    /// (resource, id) → the version last produced, to tell repeats from news.
    produced: HashMap<(Resource, i64), String>,
    alerts: AlertWriter,
    /// Erases accounts the shop deleted without the deletion reaching woostream.
    eraser: Option<Arc<Eraser>>,
    /// Every account id at the last check, and when it was made.
    accounts: Option<(HashSet<i64>, std::time::Instant)>,
}

/// What every shop's reconciler shares, made once: the producer, the encoders, the alert
/// writer, the catalogue, the metrics, and the checkpoints as they were at start.
pub struct Shared {
    pub producer: Arc<RenewingProducer>,
    pub encoders: Encoders,
    pub alerts: AlertWriter,
    pub catalogue: Arc<Catalogue>,
    pub metrics: Metrics,
    pub checkpoints: HashMap<String, Vec<u8>>,
    pub sealer: Option<Sealer>,
    /// With sealing on and `privacy.erase_on_customer_deleted`.
    pub eraser: Option<Arc<Eraser>>,
}

/// The version of a REST object: its modification time (reviews: creation), as WooCommerce
/// writes it.
fn version_of(resource: Resource, item: &Value) -> Option<String> {
    let field = if resource == Resource::Reviews {
        "date_created_gmt"
    } else {
        "date_modified_gmt"
    };
    item[field].as_str().map(str::to_string)
}

impl Reconciler {
    /// The reconciler of `shop`, its watermarks from the checkpoints; a resource without one
    /// starts `overlap` before now.
    pub fn new(config: &Config, shop: &ShopConfig, shared: &Shared) -> anyhow::Result<Reconciler> {
        let client = WooRest::for_shop(shop)?;
        let rest = shop.rest.clone().unwrap_or_default();
        let start = Utc::now() - chrono::Duration::seconds(rest.reconcile_overlap_secs as i64);
        let watermarks = Resource::ALL
            .into_iter()
            .map(|r| {
                let w: Option<Watermark> =
                    checkpoint::find(&shared.checkpoints, &Watermark::key(&shop.id, r.name()));
                (r, w.map_or(start, |w| w.newest))
            })
            .collect();
        Ok(Reconciler {
            config: config.clone(),
            shop: shop.clone(),
            client,
            producer: shared.producer.clone(),
            ingest: RestIngest::new(
                config,
                shop,
                shared.encoders.clone(),
                shared.catalogue.clone(),
                shared.sealer.clone(),
            ),
            metrics: shared.metrics.clone(),
            watermarks,
            produced: HashMap::new(),
            alerts: shared.alerts.clone(),
            eraser: shared.eraser.clone(),
            accounts: None,
        })
    }

    /// One pass: every resource, then the webhooks. Returns what each resource did.
    pub async fn cycle(&mut self) -> anyhow::Result<Vec<CycleOutcome>> {
        let mut outcomes = Vec::new();
        for resource in Resource::ALL {
            outcomes.push(self.resource(resource).await?);
        }
        self.webhooks().await?;
        self.deleted_accounts().await?;
        // Bounded memory: versions older than two overlaps cannot come back.
        if self.produced.len() > 200_000 {
            self.produced.clear();
        }
        Ok(outcomes)
    }

    /// The queries for what changed since the watermark minus the overlap. Customers have no
    /// date filter in the API: they are listed newest registration first, and the pass stops
    /// at the first page that reaches back before `since`. Orders and products are asked for
    /// twice: `status=any` leaves out the trash, and a trashed order must reach its customer's
    /// history (its `order.deleted` delivery names no customer).
    fn queries(
        &self,
        resource: Resource,
        since: DateTime<Utc>,
    ) -> Vec<Vec<(&'static str, String)>> {
        let at = since.format("%Y-%m-%dT%H:%M:%S").to_string();
        match resource {
            Resource::Reviews => vec![vec![
                ("after", at),
                ("orderby", "date_gmt".into()),
                ("order", "asc".into()),
            ]],
            Resource::Customers => vec![vec![
                ("role", "all".into()),
                ("orderby", "registered_date".into()),
                ("order", "desc".into()),
            ]],
            Resource::Orders | Resource::Products => ["any", "trash"]
                .into_iter()
                .map(|status| {
                    vec![
                        ("modified_after", at.clone()),
                        ("dates_are_gmt", "true".into()),
                        ("status", status.into()),
                        ("orderby", "id".into()),
                        ("order", "asc".into()),
                    ]
                })
                .collect(),
            Resource::Coupons => vec![vec![
                ("modified_after", at),
                ("dates_are_gmt", "true".into()),
                ("orderby", "id".into()),
                ("order", "asc".into()),
            ]],
        }
    }

    async fn resource(&mut self, resource: Resource) -> anyhow::Result<CycleOutcome> {
        let overlap = chrono::Duration::seconds(
            self.shop
                .rest
                .as_ref()
                .map_or(600, |r| r.reconcile_overlap_secs) as i64,
        );
        let watermark = self.watermarks[&resource];
        let since = watermark - overlap;
        let mut outcome = CycleOutcome {
            resource: resource.name(),
            ..CycleOutcome::default()
        };
        let mut newest = watermark;
        for query in self.queries(resource, since) {
            self.pages(resource, &query, since, &mut newest, &mut outcome)
                .await?;
        }
        if newest > watermark {
            self.watermarks.insert(resource, newest);
            checkpoint::write(
                &self.producer,
                &self.config.topics.checkpoints.name,
                &Watermark::key(&self.shop.id, resource.name()),
                &Watermark {
                    newest,
                    updated_at: Utc::now(),
                },
            )
            .await?;
        }
        self.metrics
            .lag_seconds
            .with_label_values(&[&self.shop.id, resource.name()])
            .set((Utc::now() - newest).num_seconds().max(0));
        Ok(outcome)
    }

    /// Every page of one query, produced; `newest` and `outcome` follow what was read.
    async fn pages(
        &mut self,
        resource: Resource,
        query: &[(&'static str, String)],
        since: DateTime<Utc>,
        newest: &mut DateTime<Utc>,
        outcome: &mut CycleOutcome,
    ) -> anyhow::Result<()> {
        let mut number = 1;
        loop {
            let page = self
                .client
                .list(resource.endpoint(), query, number)
                .await
                .with_context(|| format!("reconciling {}", resource.name()))?;
            let reached_back = resource == Resource::Customers
                && page.items.last().is_some_and(|c| {
                    c["date_created_gmt"]
                        .as_str()
                        .and_then(parse_gmt)
                        .is_some_and(|created| created < since)
                });
            let last = page.items.len() < self.client.per_page() as usize
                || page.total_pages.is_some_and(|n| number >= n)
                || reached_back;
            let mut records = Vec::new();
            let mut new_keys = NewKeys::default();
            for item in &page.items {
                let Some(version) = version_of(resource, item) else {
                    continue;
                };
                let modified = parse_gmt(&version);
                // Customers cannot be filtered by the API: leave out what did not change.
                if resource == Resource::Customers && modified.is_some_and(|m| m < since) {
                    continue;
                }
                if let Some(m) = modified {
                    *newest = (*newest).max(m);
                }
                let id = item["id"].as_i64().unwrap_or_default();
                let repeat = self.produced.get(&(resource, id)) == Some(&version);
                let origin = if resource == Resource::Reviews {
                    Origin::Poll
                } else {
                    Origin::Reconcile
                };
                let Some((record, dead)) =
                    self.ingest.record(resource, item, origin, &mut new_keys)?
                else {
                    self.metrics
                        .objects
                        .with_label_values(&[&self.shop.id, resource.name(), "erased_subject"])
                        .inc();
                    continue;
                };
                records.push(record);
                let label = if dead {
                    outcome.dead_lettered += 1;
                    "dead_lettered"
                } else if repeat {
                    outcome.repeats += 1;
                    "repeat"
                } else {
                    outcome.new += 1;
                    "new"
                };
                self.metrics
                    .objects
                    .with_label_values(&[&self.shop.id, resource.name(), label])
                    .inc();
                self.produced.insert((resource, id), version);
            }
            self.ingest
                .produce(&self.producer, &self.config, &records, new_keys)
                .await?;
            if last {
                break;
            }
            number += 1;
        }
        Ok(())
    }

    /// Keeps the shop's webhooks active: WooCommerce disables one after repeated failed
    /// deliveries and tells no one; every delivery in between was lost, and reconciliation is
    /// what covered them.
    async fn webhooks(&mut self) -> anyhow::Result<()> {
        let all = super::webhooks::list_all(&self.client)
            .await
            .context("reading the shop's webhooks")?;
        let delivery_url = self.shop.rest.as_ref().and_then(|r| r.delivery_url.clone());
        let mut by_status: HashMap<String, i64> = HashMap::new();
        // Only woostream's own webhooks: another receiver's disabled webhook is its owner's
        // business (re-enabling it would flood a receiver that may be gone for good).
        for w in all.iter().filter(|w| {
            super::webhooks::is_ours(
                w,
                delivery_url.as_deref(),
                &self.config.producer.webhook_path,
            )
        }) {
            let status = w["status"].as_str().unwrap_or("unknown").to_string();
            *by_status.entry(status.clone()).or_default() += 1;
            if status != "disabled" {
                continue;
            }
            let id = w["id"].as_i64().unwrap_or_default();
            self.client
                .object(
                    Method::PUT,
                    &format!("webhooks/{id}"),
                    Some(&json!({"status": "active"})),
                )
                .await
                .with_context(|| format!("re-enabling webhook {id}"))?;
            self.metrics
                .webhooks_reenabled
                .with_label_values(&[&self.shop.id])
                .inc();
            let (key, alert) = webhook_disabled_alert(&self.shop.id, w, Utc::now());
            let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "woostream-correlation-id",
                value: Some(alert.correlation_id.as_str()),
            });
            self.producer
                .send_until_acknowledged(
                    &self.config.topics.alerts.name,
                    Some(&self.alerts.key.encode(&key)?),
                    &self.alerts.value.encode(&alert)?,
                    &headers,
                    Duration::from_secs(30),
                )
                .await
                .context("writing the webhook_disabled alert")?;
            tracing::error!(
                shop = %self.shop.id,
                webhook_id = id,
                topic = w["topic"].as_str().unwrap_or_default(),
                "WooCommerce had disabled a webhook after failed deliveries; re-enabled it. Deliveries in between were lost and are covered by reconciliation."
            );
        }
        for status in ["active", "paused", "disabled"] {
            self.metrics
                .webhooks
                .with_label_values(&[&self.shop.id, status])
                .set(by_status.get(status).copied().unwrap_or(0));
        }
        Ok(())
    }
}

impl Reconciler {
    /// Every so often, every account id: one the shop had at the last check and no longer
    /// lists is asked for, and erased once the shop answers 404 for it — its `customer.deleted`
    /// was lost, refused or never sent (WordPress deletes users without one in some paths).
    async fn deleted_accounts(&mut self) -> anyhow::Result<()> {
        let Some(eraser) = self.eraser.clone() else {
            return Ok(());
        };
        let every = self
            .shop
            .rest
            .as_ref()
            .map_or(3600, |r| r.deleted_accounts_check_secs);
        if self
            .accounts
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < Duration::from_secs(every))
        {
            return Ok(());
        }
        let listed = self
            .client
            .list_all(
                "customers",
                &[("role", "all".into()), ("_fields", "id".into())],
            )
            .await?;
        let now: HashSet<i64> = listed.iter().filter_map(|c| c["id"].as_i64()).collect();
        let before = self
            .accounts
            .replace((now.clone(), std::time::Instant::now()));
        let Some((before, _)) = before else {
            return Ok(());
        };
        for id in gone(&before, &now) {
            let asked = self
                .client
                .object(reqwest::Method::GET, &format!("customers/{id}"), None)
                .await;
            let lookup = match asked {
                Ok(_) => Some(Ok(())),
                Err(e) => Some(Err(woostream_woo::deletion::belongs_from_lookup(
                    e.status, &e.what,
                ))),
            };
            let key = woostream_core::contract::events::CustomerKey {
                shop_id: self.shop.id.clone(),
                customer: id.to_string(),
            };
            let outcome = match woostream_woo::deletion::account_from(lookup) {
                woostream_woo::deletion::Account::Gone if eraser.already_erased(&key) => {
                    "already_erased"
                }
                woostream_woo::deletion::Account::Gone => {
                    let request = Eraser::request(&key);
                    eraser.carry_out(&request).await?;
                    tracing::info!(shop = %self.shop.id, erasure = %request.erasure_id, "An account the shop deleted without its deletion reaching woostream: erased.");
                    "erased"
                }
                woostream_woo::deletion::Account::StillThere => "still_there",
                woostream_woo::deletion::Account::Unconfirmed => "unconfirmed",
            };
            self.metrics
                .deleted_accounts
                .with_label_values(&[&self.shop.id, outcome])
                .inc();
        }
        Ok(())
    }
}

/// The accounts listed before and not now.
fn gone(before: &HashSet<i64>, now: &HashSet<i64>) -> Vec<i64> {
    let mut out: Vec<i64> = before.difference(now).copied().collect();
    out.sort_unstable();
    out
}

/// Runs reconciliation for every shop with `[shops.rest]` until `shutdown` (or once),
/// creating missing topics first when `create_topics`.
pub async fn run(
    ctx: &woostream_core::role::RoleContext,
    ready: Arc<std::sync::atomic::AtomicBool>,
    once: bool,
) -> anyhow::Result<()> {
    let (config, bootstrap, registry) = (&ctx.config, ctx.bootstrap.as_str(), &ctx.registry);
    let (shutdown, create_topics) = (ctx.shutdown.clone(), ctx.create_topics);
    kafka::first_contact(config, bootstrap, create_topics).await?;
    let (encoders, decoder) = crate::publish::Encoders::register(config).await?;
    let (catalogue, _follower) =
        crate::catalogue::follow_products(config, bootstrap, decoder, shutdown.clone()).await?;
    let producer = kafka::renewing_producer(&config.kafka, bootstrap, "reconcile")?;
    let sealer = crate::personal::Sealer::start_async(config, bootstrap).await?;
    let eraser = match &sealer {
        Some(s) if config.privacy.erase_on_customer_deleted => {
            Some(Arc::new(Eraser::new(config, s, producer.clone()).await?))
        }
        _ => None,
    };
    let shared = Shared {
        producer,
        encoders,
        alerts: AlertWriter::for_config(config).await?,
        catalogue,
        metrics: Metrics::register(registry).context("registering REST metrics")?,
        checkpoints: checkpoint::read_latest(config, bootstrap).await?,
        sealer,
        eraser,
    };
    let mut shops = config
        .shops
        .iter()
        .filter(|s| s.rest.is_some())
        .map(|shop| Reconciler::new(config, shop, &shared))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        !shops.is_empty(),
        "no shop has a [shops.rest] section: nothing to reconcile"
    );
    loop {
        for r in &mut shops {
            match r.cycle().await {
                Ok(outcomes) => {
                    for o in outcomes
                        .iter()
                        .filter(|o| o.new + o.repeats + o.dead_lettered > 0)
                    {
                        tracing::info!(shop = %r.shop.id, resource = o.resource, new = o.new, repeats = o.repeats, dead_lettered = o.dead_lettered, "Reconciled.");
                    }
                }
                // A shop that fails this cycle is tried again next cycle; the others go on.
                Err(e) if !once => {
                    tracing::error!(shop = %r.shop.id, error = format!("{e:#}"), "Reconciliation failed; trying again next cycle.")
                }
                Err(e) => return Err(e),
            }
        }
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        if once {
            return Ok(());
        }
        let interval = shops
            .iter()
            .filter_map(|r| r.shop.rest.as_ref())
            .map(|r| r.reconcile_interval_secs)
            .min()
            .unwrap_or(300);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(interval.max(1))) => {}
        }
    }
}

#[cfg(test)]
mod deleted_tests {
    use super::*;

    #[test]
    fn accounts_gone_since_the_last_listing_are_the_ones_asked_for() {
        let set = |v: &[i64]| v.iter().copied().collect::<HashSet<i64>>();
        assert_eq!(gone(&set(&[1, 2, 3]), &set(&[1, 3, 4])), vec![2]);
        assert!(gone(&set(&[]), &set(&[1])).is_empty());
    }
}
