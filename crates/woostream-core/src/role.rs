//! Edge: what every role's `start` is handed. One process runs one role (`woostream enricher`)
//! or all of them (`woostream run`, the tests); either way the roles share the process's
//! metrics registry, its readiness and its shutdown, and each role reads its own section of
//! the one configuration.

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ops::Readiness;

/// What a consuming role reads, for its lag to be watched.
pub struct Consumes<'a> {
    /// The role's name in the metrics' `role` label.
    pub role: &'static str,
    /// Its consumer group, whose committed offsets the lag is measured from.
    pub group: &'a str,
    /// The topics it reads.
    pub topics: Vec<String>,
}

/// The configuration, the brokers, the process's metrics and readiness, and its shutdown.
#[derive(Clone)]
pub struct RoleContext {
    pub config: Config,
    /// `host:port,…` of the brokers (the embedded cluster's in `woostream run`).
    pub bootstrap: String,
    pub registry: prometheus::Registry,
    /// Each role registers the conditions `/readyz` waits for.
    pub readiness: Readiness,
    pub shutdown: CancellationToken,
    /// Create missing topics at start-up (`topics.create`; off where someone else already
    /// created them, as on the embedded cluster).
    pub create_topics: bool,
}

impl RoleContext {
    /// A context of its own: a new registry, readiness and shutdown; topics created as the
    /// configuration says.
    pub fn new(config: Config, bootstrap: impl Into<String>) -> RoleContext {
        RoleContext {
            create_topics: config.topics.create,
            config,
            bootstrap: bootstrap.into(),
            registry: prometheus::Registry::new(),
            readiness: Readiness::default(),
            shutdown: CancellationToken::new(),
        }
    }

    pub fn with_shutdown(self, shutdown: CancellationToken) -> RoleContext {
        RoleContext { shutdown, ..self }
    }

    pub fn creating_topics(self, create_topics: bool) -> RoleContext {
        RoleContext {
            create_topics,
            ..self
        }
    }

    /// The prologue every role shares, in this order: the credentials it uses resolve (named
    /// by key prefix, so a dry run leaves out what it never calls with), the brokers answer
    /// (missing topics created when asked; a refusal stops the start here, naming the setting
    /// to fix), and what it consumes is watched for lag (`woostream_consumer_lag`,
    /// `woostream_kafka_reachable{role}`).
    pub async fn begin(
        &self,
        secrets: &[&str],
        consumes: Option<Consumes<'_>>,
    ) -> anyhow::Result<()> {
        self.config.check_secrets(secrets)?;
        crate::kafka::first_contact(&self.config, &self.bootstrap, self.create_topics).await?;
        if let Some(c) = consumes {
            crate::kafka::lag::watch(
                c.role,
                &self.config.kafka,
                &self.bootstrap,
                c.group,
                c.topics,
                &self.registry,
                self.shutdown.clone(),
            )?;
        }
        Ok(())
    }

    /// Reports whether the brokers answer (`woostream_kafka_reachable{role}`), for a role that
    /// has no consumer group of its own to watch the lag of.
    pub fn watch_kafka(&self, role: &'static str) -> anyhow::Result<()> {
        crate::kafka::lag::watch(
            role,
            &self.config.kafka,
            &self.bootstrap,
            &format!("woostream-{role}"),
            Vec::new(),
            &self.registry,
            self.shutdown.clone(),
        )
    }
}
