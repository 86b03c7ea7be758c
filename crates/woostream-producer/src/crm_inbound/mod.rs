//! The CRM talking back (`woostream crm inbound`): HubSpot's contact webhooks in, verified
//! (`woostream_hubspot::signature`), turned into changes for the shop ([`change`]) and kept, sealed under the
//! customer's key, in the `crm_changes` topic; then a writer applies each change to the shop
//! through its REST API, rate-limited and retried, with the outcome in the audit topic and
//! refusals in a dead-letter topic.
//!
//! No echo: HubSpot's report of woostream's own writes (changeSource INTEGRATION with the app's
//! id) is dropped at the door; what the writer sends carries a fingerprint of the identity it
//! leaves, by which the producer recognises the shop's resulting webhook (origin CRM) and the
//! CRM sink leaves it out; and a value the shop already has is never written again.

pub mod change;
pub mod owners;
pub mod receiver;
pub mod writer;

use std::net::SocketAddr;

use anyhow::Context;
use prometheus::{IntCounterVec, Opts, Registry};

/// The inbound role's counters.
#[derive(Clone)]
pub struct Metrics {
    /// HubSpot events by outcome: accepted, own_write, unmapped, no_account, …
    pub events: IntCounterVec,
    /// Requests refused, by reason (bad_signature, stale, …).
    pub refused: IntCounterVec,
    /// Changes the writer handled, by outcome (written, skipped, dead_lettered, erased).
    pub written: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            events: IntCounterVec::new(
                Opts::new(
                    "woostream_crm_inbound_events_total",
                    "HubSpot webhook events received, by outcome.",
                ),
                &["outcome"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "woostream_crm_inbound_refused_total",
                    "HubSpot webhook requests refused, by reason.",
                ),
                &["reason"],
            )?,
            written: IntCounterVec::new(
                Opts::new(
                    "woostream_shop_writer_changes_total",
                    "CRM changes the shop writer handled, by outcome.",
                ),
                &["outcome"],
            )?,
        };
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.written.clone()))?;
        Ok(m)
    }
}

/// A running inbound role.
pub struct Running {
    pub addr: SocketAddr,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the receiver and the writer; both run until `shutdown`.
pub async fn start(ctx: &woostream_core::role::RoleContext) -> anyhow::Result<Running> {
    let (config, bootstrap, registry) = (&ctx.config, ctx.bootstrap.as_str(), &ctx.registry);
    let shutdown = ctx.shutdown.clone();
    // Before anything else: no Kafka, no keys, for a configuration that cannot run.
    receiver::required(&config.crm.inbound)?;
    ctx.begin(&["crm.", "shops[", "privacy.", "schema_registry."], None)
        .await?;
    let metrics = Metrics::register(registry).context("registering the inbound metrics")?;
    // One view of the key topic for both: the receiver seals with it, the writer opens.
    let sealer = crate::personal::Sealer::start_async(config, bootstrap)
        .await?
        .context("privacy.seal_personal_data is off: the CRM's changes are personal data and are only kept sealed")?;
    let writer =
        writer::Writer::new(config, bootstrap, sealer.keys().clone(), metrics.clone()).await?;
    let owners = owners::Owners::follow(config, bootstrap)
        .await
        .context("reading the CRM sink's audit (whose each contact is)")?;
    let receiver =
        receiver::Receiver::new(config, bootstrap, sealer, owners.clone(), metrics).await?;
    let listener = tokio::net::TcpListener::bind(config.crm.inbound.listen)
        .await
        .with_context(|| format!("binding crm.inbound.listen {}", config.crm.inbound.listen))?;
    let addr = listener.local_addr()?;
    let app = receiver::router(&config.crm.inbound.path, receiver);
    let counters = woostream_core::listener::ListenerMetrics::register(
        registry,
        "crm_inbound",
        "the CRM's webhook endpoint",
    )
    .context("registering the CRM inbound's connection metrics")?;
    tracing::info!(%addr, path = %config.crm.inbound.path, "Receiving HubSpot webhooks; writing CRM changes to the shop.");
    let writing = tokio::spawn(writer.run(shutdown.clone()));
    let task = tokio::spawn(async move {
        woostream_core::listener::serve(
            listener,
            app,
            woostream_core::listener::ConnectionLimits::internal(),
            counters,
            shutdown,
        )
        .await;
        owners.stop();
        writing.await.context("the shop writer")?
    });
    Ok(Running { addr, task })
}
