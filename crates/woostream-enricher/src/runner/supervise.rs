//! The enricher as a role runs it: started again in this process whenever it stops on a
//! failure, so that a broker stall or a fenced producer costs a restore, not the pod.

use super::{launch, prologue};
use anyhow::Context;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use woostream_core::role::RoleContext;

/// The enricher as a role runs it: started like [`start`], and started again in this process
/// whenever it stops on a failure (a broker stall that outlasts the delivery timeout, a
/// producer the broker fenced), after a backoff of 1 s doubling to 60 s. Nothing is lost by
/// a restart: offsets were committed only for what was acknowledged, and the state is
/// restored from Kafka as after any rebalance.
pub async fn start_supervised(ctx: &RoleContext) -> anyhow::Result<Supervised> {
    let (config, bootstrap, registry) = (&ctx.config, ctx.bootstrap.as_str(), &ctx.registry);
    let (readiness, shutdown, create_topics) =
        (&ctx.readiness, ctx.shutdown.clone(), ctx.create_topics);
    // Once per process: `launch` runs again at each in-process restart.
    let metrics = prologue(config, bootstrap, registry, &shutdown)?;
    let first = launch(
        config,
        bootstrap,
        metrics.clone(),
        readiness,
        shutdown.clone(),
        create_topics,
    )
    .await?;
    let transactional = first.transactional;
    let (config, bootstrap, readiness) = (config.clone(), bootstrap.to_string(), readiness.clone());
    let task = tokio::spawn(async move {
        let ready = readiness.condition("enricher");
        let mut backoff =
            woostream_core::retry::Policy::new(Duration::from_secs(1), Duration::from_secs(60))
                .backoff();
        let mut running = first;
        loop {
            let started = Instant::now();
            let running_transactional = running.transactional;
            // A run that got its partitions and their state ends a run of failures.
            let outcome = {
                let wait = running.wait();
                tokio::pin!(wait);
                let mut check = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        r = &mut wait => break r,
                        _ = check.tick() => if ready.load(Ordering::Relaxed) {
                            readiness.recovered(super::ROLE);
                        },
                    }
                }
            };
            let failure = match outcome {
                Ok(()) => return Ok(()),
                Err(e) if shutdown.is_cancelled() => return Err(e),
                // Another instance took over this transactional id: starting again would
                // fence it in turn.
                Err(e) if running_transactional && fenced(&e) => return Err(e),
                Err(e) => e,
            };
            ready.store(false, Ordering::Relaxed);
            // Unready until a run restores its state; past `ops::STUCK_AFTER`, not live either:
            // a restore that fails every time is the orchestrator's to act on.
            readiness.failing(super::ROLE);
            // A run that lasted starts the backoff over.
            if started.elapsed() > Duration::from_secs(300) {
                backoff.reset();
            }
            let mut failure = failure;
            running = loop {
                let wait = backoff.next_wait().expect("no attempt limit");
                tracing::error!(
                    error = format!("{failure:#}"),
                    retry_in_ms = wait.as_millis() as u64,
                    "The enricher stopped on a failure; starting it again in this process."
                );
                if woostream_core::retry::pause(wait, &shutdown).await.is_err() {
                    return Err(failure);
                }
                metrics.restarts.inc();
                match launch(
                    &config,
                    &bootstrap,
                    metrics.clone(),
                    &readiness,
                    shutdown.clone(),
                    false,
                )
                .await
                {
                    Ok(r) => break r,
                    Err(e) => failure = e,
                }
            };
        }
    });
    Ok(Supervised {
        transactional,
        task,
    })
}

/// Whether a transactional producer was fenced (by a newer producer with its id).
fn fenced(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<KafkaError>()
            .is_some_and(|k| k.rdkafka_error_code() == Some(RDKafkaErrorCode::ProducerFenced))
    })
}

/// An enricher that [`start_supervised`] keeps running.
pub struct Supervised {
    /// Whether the first run publishes in Kafka transactions.
    pub transactional: bool,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Supervised {
    /// Waits until the enricher stops after `shutdown` (or a restart was cut short by it).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task
            .await
            .context("the enricher supervisor panicked")?
    }
}
