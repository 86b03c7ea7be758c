//! Every role in one process: for a single machine, for development and for `make run`. With
//! no `kafka.bootstrap_servers` it starts the embedded mock cluster.

mod demo;
mod sale;
mod summary;

pub use demo::{demo_shop, demo_slack};
pub use summary::{describe_backtest, describe_model};

use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use woostream_core::config::Config;
use woostream_core::kafka::EmbeddedKafka;
use woostream_core::ops;
use woostream_core::role::RoleContext;

use crate::simulate;

pub struct RunOptions {
    /// Post a simulated flash sale and exit when it is answered.
    pub simulate: Option<simulate::Options>,
    /// After the sale's summary, keep everything (the insight page too) up until a signal.
    pub keep_serving: bool,
}

pub async fn run(
    mut config: Config,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The demo shop: its history comes through its REST API (a backfill), then the sale.
    let demo = demo::prepare(&mut config, opts.simulate.as_ref()).await?;
    let (bootstrap, create_topics, embedded) = brokers(&config)?;
    let ctx = RoleContext::new(config, bootstrap)
        .with_shutdown(shutdown.clone())
        .creating_topics(create_topics);
    let roles = Roles::start(&ctx, demo.is_some()).await?;
    roles.describe(&ctx.config);
    let mut view = None;
    match opts.simulate {
        None => shutdown.cancelled().await,
        Some(sim) => {
            let sale = sale::Sale {
                ctx: &ctx,
                roles: &roles,
                demo: demo.as_ref(),
            };
            view = Some(sale.run(sim).await?);
            println!(
                "\nInsight page: http://{}/insight",
                summary::browsable(roles.insight_addr)
            );
            if opts.keep_serving {
                println!("Everything keeps running; Ctrl-C to stop.");
                shutdown.cancelled().await;
            }
            shutdown.cancel();
        }
    }
    let stopped = roles.stop().await;
    if let Some(view) = view {
        view.close().await;
    }
    drop(ctx);
    // The embedded brokers go last: nothing may still be polling them.
    if let Some(embedded) = embedded {
        tokio::task::spawn_blocking(move || {
            woostream_core::privacy::subject_keys::wait_for_followers(
                std::time::Duration::from_secs(5),
            );
            drop(embedded);
        })
        .await?;
    }
    stopped
}

/// The brokers: the configured ones, or an embedded mock cluster (kept alive by the returned
/// handle) whose topics exist already.
fn brokers(config: &Config) -> anyhow::Result<(String, bool, Option<EmbeddedKafka>)> {
    Ok(match &config.kafka.bootstrap_servers {
        Some(b) => (b.clone(), config.topics.create, None),
        None => {
            let embedded = EmbeddedKafka::start(3, &config.topics)?;
            println!(
                "Kafka: embedded mock cluster (3 brokers) at {}; topics created: {}",
                embedded.bootstrap_servers(),
                config
                    .topics
                    .all()
                    .iter()
                    .map(|(_, t)| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            (
                embedded.bootstrap_servers().to_string(),
                false,
                Some(embedded),
            )
        }
    })
}

/// Every role of the process, started.
pub(crate) struct Roles {
    pub(crate) producer: woostream_producer::Running,
    pub(crate) enricher: woostream_enricher::runner::Supervised,
    reconcile: Option<JoinHandle<anyhow::Result<()>>>,
    pub(crate) slack: Option<woostream_sink::slack::runner::SlackSink>,
    pub(crate) crm: Option<woostream_sink::crm::runner::CrmSink>,
    insight: woostream_insight::Running,
    insight_addr: std::net::SocketAddr,
    insight_task: JoinHandle<()>,
    ops_addr: std::net::SocketAddr,
    ops_task: JoinHandle<()>,
}

impl Roles {
    async fn start(ctx: &RoleContext, demo: bool) -> anyhow::Result<Roles> {
        let config = &ctx.config;
        let insight_view = Arc::new(Mutex::new(woostream_insight::View::default()));
        let (ops_addr, ops_task) = ops::serve(
            &config.ops,
            ctx.registry.clone(),
            ctx.readiness.clone(),
            ctx.shutdown.clone(),
        )
        .await?;
        let (insight_addr, insight_task) = woostream_insight::serve(
            &config.insight,
            insight_view.clone(),
            &ctx.registry,
            ctx.shutdown.clone(),
        )
        .await?;
        let producer = woostream_producer::start(ctx).await?;
        let enricher = woostream_enricher::runner::start_supervised(ctx).await?;
        // Shops with a REST API are reconciled too, as `woostream rest` does (the demo shop's
        // serves its history and confirms its deletions; the sale needs no reconciling).
        let reconcile = (!demo && config.shops.iter().any(|s| s.rest.is_some())).then(|| {
            let ready = ctx.readiness.condition("rest");
            let ctx = ctx.clone();
            tokio::spawn(async move {
                woostream_producer::rest::reconcile::run(&ctx, ready, false).await
            })
        });
        let slack = match config.slack.rules.is_empty() {
            true => None,
            false => Some(woostream_sink::slack::runner::start(ctx).await?),
        };
        let crm = match config.crm.enabled {
            true => Some(woostream_sink::crm::runner::start(ctx).await?),
            false => None,
        };
        let ready = ctx.readiness.condition("insight");
        let insight = woostream_insight::start(ctx, insight_view, ready).await?;
        Ok(Roles {
            producer,
            enricher,
            reconcile,
            slack,
            crm,
            insight,
            insight_addr,
            insight_task,
            ops_addr,
            ops_task,
        })
    }

    pub(crate) fn webhook_url(&self, config: &Config) -> String {
        format!(
            "http://{}{}",
            self.producer.addr, config.producer.webhook_path
        )
    }

    /// Where everything listens, and what each role does with what it receives.
    fn describe(&self, config: &Config) {
        println!("Producer: POST {}", self.webhook_url(config));
        println!(
            "Ops:      http://{}/metrics  /healthz  /readyz",
            self.ops_addr
        );
        println!(
            "Insight:  http://{}/insight",
            summary::browsable(self.insight_addr)
        );
        println!(
            "Enricher: {} (profiles → {}, alerts → {})",
            if self.enricher.transactional {
                "transactional"
            } else {
                "idempotent, ids and versions"
            },
            config.topics.profiles.name,
            config.topics.alerts.name
        );
        if let Some(s) = &self.slack {
            println!(
                "Slack:    {} rules to {} ({})",
                config.slack.rules.len(),
                config
                    .slack
                    .channels
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if s.recorded.is_some() {
                    "dry run: printed here, posted nowhere"
                } else {
                    "posting"
                }
            );
        }
        if let Some(c) = &self.crm {
            println!(
                "CRM:      {} ({} requests per 10 s, batches of {})",
                if c.store.is_some() {
                    "dry run: an in-memory CRM with HubSpot's semantics".to_string()
                } else {
                    format!("HubSpot at {}", config.crm.api_url)
                },
                config.crm.requests_per_10_seconds,
                config.crm.batch_size
            );
        }
    }

    /// Waits for every role to end (after the shutdown) and the servers to close.
    async fn stop(self) -> anyhow::Result<()> {
        self.producer.task.await?.context("producer shutdown")?;
        if let Some(r) = self.reconcile {
            r.await?.context("reconciliation shutdown")?;
        }
        self.enricher.wait().await.context("enricher shutdown")?;
        if let Some(s) = self.slack {
            s.task.await?.context("Slack sink shutdown")?;
        }
        if let Some(c) = self.crm {
            c.task.await?.context("CRM sink shutdown")?;
        }
        let threads = self.insight.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        let _ = self.insight_task.await;
        let _ = self.ops_task.await;
        Ok(())
    }
}
