//! A shop's history through its REST API: every product, customer, order, coupon and review,
//! turned into the same events the webhooks produce (same normaliser, keys, partitions; origin
//! BACKFILL) and produced idempotently. After each page is in Kafka its checkpoint is written,
//! so a killed backfill resumes at the next page; the page it was in the middle of is produced
//! again, which changes nothing downstream (the enricher keeps an order's newest version and
//! ignores the same one twice).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;
use woostream_core::config::{Config, ShopConfig};
use woostream_core::contract::events::Origin;
use woostream_core::kafka::{self, RenewingProducer};

use super::checkpoint::{self, BackfillCheckpoint};
use super::ingest::RestIngest;
use crate::personal::NewKeys;
use woostream_woo::rest::{Resource, WooRest};

/// What to backfill.
#[derive(Clone, Debug)]
pub struct Request {
    /// Only objects created at or after this (UTC).
    pub since: Option<DateTime<Utc>>,
    pub resources: Vec<Resource>,
    /// Ignore earlier checkpoints and start from the first page.
    pub restart: bool,
}

/// What a backfill of one resource did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub resource: &'static str,
    /// Objects produced as events (in this run and earlier runs of the same backfill).
    pub produced: u64,
    pub dead_lettered: u64,
    /// Objects older than `since` that the API could not leave out.
    pub skipped: u64,
    pub pages: u32,
    /// The page this run began at (1 unless resumed).
    pub resumed_at_page: u32,
    pub seconds: f64,
    /// Already finished by an earlier run: nothing was fetched.
    pub already_done: bool,
}

/// How progress is shown: bars on a terminal, a log line every few seconds otherwise.
enum Progress {
    Bars(MultiProgress),
    Log,
}

impl Progress {
    fn detect() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Bars(MultiProgress::new())
        } else {
            Progress::Log
        }
    }

    fn bar(&self, shop: &str, resource: Resource) -> Option<ProgressBar> {
        let Progress::Bars(multi) = self else {
            return None;
        };
        let bar = multi.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>22} [{bar:30}] {pos:>8}/{len:8} {per_sec:>10} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{shop} {}", resource.name()));
        Some(bar)
    }
}

/// Backfills `shop` into Kafka at `bootstrap` (creating missing topics first when
/// `create_topics`); returns what each resource did. Stops between pages when `shutdown` is
/// cancelled (what is done stays done).
pub async fn run(
    config: &Config,
    bootstrap: &str,
    shop: &ShopConfig,
    request: &Request,
    create_topics: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<Outcome>> {
    let client = WooRest::for_shop(shop)?;
    kafka::first_contact(config, bootstrap, create_topics).await?;
    let producer = kafka::renewing_producer(&config.kafka, bootstrap, "backfill")?;
    let (encoders, decoder) = crate::publish::Encoders::register(config).await?;
    let latest = checkpoint::read_latest(config, bootstrap).await?;
    // Products already in Kafka give orders their categories, as they do on the webhook path.
    let (catalogue, follower) =
        crate::catalogue::follow_products(config, bootstrap, decoder, shutdown.clone()).await?;
    let sealer = crate::personal::Sealer::start_async(config, bootstrap).await?;
    let mut job = Job {
        config,
        shop,
        client,
        producer,
        ingest: RestIngest::new(config, shop, encoders, catalogue, sealer),
        progress: Progress::detect(),
    };
    let mut outcomes = Vec::new();
    for &resource in &request.resources {
        if shutdown.is_cancelled() {
            break;
        }
        let key = BackfillCheckpoint::key(&shop.id, resource.name());
        let earlier: Option<BackfillCheckpoint> = checkpoint::find(&latest, &key)
            .filter(|c: &BackfillCheckpoint| !request.restart && c.since == request.since);
        outcomes.push(
            job.resource(resource, request.since, earlier, &shutdown)
                .await?,
        );
    }
    job.producer
        .flush(Duration::from_secs(30))
        .context("flushing the backfill's producer")?;
    drop(follower);
    Ok(outcomes)
}

struct Job<'a> {
    config: &'a Config,
    shop: &'a ShopConfig,
    client: WooRest,
    producer: Arc<RenewingProducer>,
    ingest: RestIngest,
    progress: Progress,
}

impl Job<'_> {
    async fn resource(
        &mut self,
        resource: Resource,
        since: Option<DateTime<Utc>>,
        earlier: Option<BackfillCheckpoint>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let mut state = earlier.unwrap_or_else(|| BackfillCheckpoint {
            shop: self.shop.id.clone(),
            resource: resource.name().into(),
            since,
            pages_done: 0,
            produced: 0,
            dead_lettered: 0,
            erased_skipped: 0,
            finished: false,
            updated_at: Utc::now(),
        });
        let mut outcome = Outcome {
            resource: resource.name(),
            resumed_at_page: state.pages_done + 1,
            already_done: state.finished,
            ..Outcome::default()
        };
        if state.finished {
            tracing::info!(shop = %self.shop.id, resource = resource.name(), produced = state.produced, "Backfill already finished by an earlier run.");
            outcome.produced = state.produced;
            outcome.dead_lettered = state.dead_lettered;
            outcome.pages = state.pages_done;
            return Ok(outcome);
        }
        let key = BackfillCheckpoint::key(&self.shop.id, resource.name());
        let query = resource.backfill_query(since);
        let mut prefetched: Option<
            tokio::task::JoinHandle<
                Result<woostream_woo::rest::Page, woostream_woo::rest::RestError>,
            >,
        > = None;
        let bar = self.progress.bar(&self.shop.id, resource);
        let mut last_log = Instant::now();
        let done_before = state.produced + state.dead_lettered;
        loop {
            if shutdown.is_cancelled() {
                tracing::warn!(shop = %self.shop.id, resource = resource.name(), pages_done = state.pages_done, "Backfill stopped; it resumes from here.");
                break;
            }
            let number = state.pages_done + 1;
            let page = match prefetched.take() {
                Some(next) => next.await.context("the page prefetch panicked")?,
                None => self.client.list(resource.endpoint(), &query, number).await,
            }
            .with_context(|| format!("backfilling {}", resource.name()))?;
            if let (Some(bar), Some(total)) = (&bar, page.total) {
                bar.set_length(total);
            }
            let last = page.items.len() < self.client.per_page() as usize
                || page.total_pages.is_some_and(|n| number >= n);
            // The next page is fetched while this one is produced (within the shop's rate).
            if !last {
                let (client, query) = (self.client.clone(), query.clone());
                prefetched = Some(tokio::spawn(async move {
                    client.list(resource.endpoint(), &query, number + 1).await
                }));
            }
            let mut records = Vec::with_capacity(page.items.len());
            let mut new_keys = NewKeys::default();
            let (mut kept, mut variations) = (Vec::new(), Vec::new());
            for item in &page.items {
                if since.is_some_and(|s| Resource::created_before(item, s)) {
                    outcome.skipped += 1;
                    continue;
                }
                if resource == Resource::Products && item["type"] == "variable" {
                    variations.extend(self.variations_of(item).await?);
                }
                kept.push(item);
            }
            for item in kept.into_iter().chain(&variations) {
                let Some((record, kept)) =
                    self.ingest
                        .record(resource, item, Origin::Backfill, &mut new_keys)?
                else {
                    state.erased_skipped += 1;
                    continue;
                };
                records.push(record);
                if kept {
                    state.dead_lettered += 1;
                } else {
                    state.produced += 1;
                }
            }
            self.ingest
                .produce(&self.producer, self.config, &records, new_keys)
                .await?;
            state.pages_done = number;
            state.finished = last;
            state.updated_at = Utc::now();
            checkpoint::write(
                &self.producer,
                &self.config.topics.checkpoints.name,
                &key,
                &state,
            )
            .await?;
            let done = state.produced + state.dead_lettered;
            match &bar {
                Some(bar) => bar.set_position(done),
                None if last_log.elapsed() >= Duration::from_secs(5) || last => {
                    last_log = Instant::now();
                    let rate = (done - done_before) as f64 / started.elapsed().as_secs_f64();
                    tracing::info!(
                        shop = %self.shop.id,
                        resource = resource.name(),
                        done,
                        total = page.total,
                        per_second = rate.round(),
                        "Backfilling."
                    );
                }
                None => {}
            }
            if last {
                break;
            }
        }
        if let Some(bar) = bar {
            bar.finish();
        }
        outcome.produced = state.produced;
        outcome.dead_lettered = state.dead_lettered;
        outcome.pages = state.pages_done;
        outcome.seconds = started.elapsed().as_secs_f64();
        Ok(outcome)
    }
}

impl Job<'_> {
    /// A variable product's variations (`products/<id>/variations`, every page), as the
    /// product webhooks deliver them: line items of variable products name a variation, whose
    /// stock and parent (with its categories) come from here.
    async fn variations_of(
        &self,
        parent: &serde_json::Value,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let Some(id) = parent["id"].as_i64() else {
            return Ok(Vec::new());
        };
        let variations = self
            .client
            .list_all(
                &format!("products/{id}/variations"),
                &[("orderby", "id".into()), ("order", "asc".into())],
            )
            .await
            .with_context(|| format!("backfilling the variations of product {id}"))?;
        Ok(variations
            .into_iter()
            .map(|mut v| {
                // The variations endpoint leaves out what the webhook payload says.
                if v["parent_id"].as_i64().unwrap_or(0) == 0 {
                    v["parent_id"] = serde_json::json!(id);
                }
                if v["type"].is_null() {
                    v["type"] = serde_json::json!("variation");
                }
                v
            })
            .collect())
    }
}

/// One line per resource, for the end of a backfill.
pub fn summary(shop: &str, outcomes: &[Outcome]) -> String {
    let mut lines = vec![format!("Backfill of shop {shop}:")];
    for o in outcomes {
        let how = if o.already_done {
            "already done by an earlier run".to_string()
        } else if o.resumed_at_page > 1 {
            format!("resumed at page {}, {:.1} s", o.resumed_at_page, o.seconds)
        } else {
            format!("{:.1} s", o.seconds)
        };
        lines.push(format!(
            "  {:<10} {:>8} events  {:>5} dead letters  {:>5} pages  ({how}{})",
            o.resource,
            o.produced,
            o.dead_lettered,
            o.pages,
            if o.skipped > 0 {
                format!(", {} older than --since left out", o.skipped)
            } else {
                String::new()
            }
        ));
    }
    lines.join("\n")
}
