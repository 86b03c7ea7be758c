//! What each command does. A long-running role runs in a [`Process`]: logs, the brokers, the
//! shutdown signal and the ops endpoints around the role's own start.

pub(crate) mod contract;
pub(crate) mod demo;
pub(crate) mod history;
pub(crate) mod models;
pub(crate) mod people;
pub(crate) mod roles;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;
use woostream_core::config::Config;
use woostream_core::role::RoleContext;
use woostream_core::{ops, shutdown, telemetry};

pub(crate) fn bootstrap(config: &Config) -> anyhow::Result<String> {
    config.kafka.bootstrap_servers.clone().ok_or_else(|| {
        anyhow::anyhow!("kafka.bootstrap_servers is not set (or WOOSTREAM__KAFKA__BOOTSTRAP_SERVERS); `woostream run` uses an embedded Kafka instead")
    })
}

/// A long-running role's process: logs, the brokers, shutdown on a signal, and the ops
/// endpoints serving its metrics and readiness.
pub(crate) struct Process {
    pub(crate) ctx: RoleContext,
    ops_task: JoinHandle<()>,
}

impl Process {
    pub(crate) async fn start(config: Config) -> anyhow::Result<Process> {
        telemetry::init(&config);
        let bootstrap = bootstrap(&config)?;
        let ctx = RoleContext::new(config, bootstrap).with_shutdown(shutdown::on_signal());
        let (_, ops_task) = ops::serve(
            &ctx.config.ops,
            ctx.registry.clone(),
            ctx.readiness.clone(),
            ctx.shutdown.clone(),
        )
        .await?;
        Ok(Process { ctx, ops_task })
    }

    /// The role has ended (after the shutdown, or on a fatal error): stop serving too.
    pub(crate) async fn finish(self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        self.ctx.shutdown.cancel();
        let _ = self.ops_task.await;
        result
    }

    /// A started sink: ready from now on, until its task ends; its end (a fatal error too)
    /// stops the ops server.
    pub(crate) async fn run_sink(
        self,
        ready: Arc<AtomicBool>,
        task: JoinHandle<anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        ready.store(true, Ordering::Relaxed);
        let result = task.await?;
        self.finish(result).await
    }
}
