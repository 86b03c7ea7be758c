//! `[ops]`, `[log]` and `[traces]`: the operations endpoints, the logs and the traces.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// `/metrics`, `/healthz`, `/readyz`.
    pub listen: SocketAddr,
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <token>` (the
    /// metrics name shops and counts); `/healthz` and `/readyz` stay open for the probes.
    pub token: Option<crate::secret::Secret>,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            listen: "0.0.0.0:9090".parse().expect("valid address"),
            token: None,
        }
    }
}

/// `[insight]`: where the insight page (`woostream insight`) is served.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InsightConfig {
    /// Its own port, apart from the ops port the probes and Prometheus use.
    pub listen: SocketAddr,
    /// When set, the page answers only requests with `Authorization: Bearer <token>`.
    pub token: Option<crate::secret::Secret>,
}

impl Default for InsightConfig {
    fn default() -> Self {
        InsightConfig {
            listen: "0.0.0.0:9091".parse().expect("valid address"),
            token: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// json (default, for Kubernetes) or pretty.
    pub format: String,
    /// A tracing filter, e.g. `info` or `woostream_producer=debug,info`; RUST_LOG wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "json".into(),
            level: "info".into(),
        }
    }
}

/// `[traces]`: OpenTelemetry traces of each event's hops (webhook, enricher, sinks), sent to
/// a collector over OTLP/HTTP. Off unless `endpoint` is set.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TracesConfig {
    /// The collector's OTLP/HTTP endpoint, e.g. `http://otel-collector.monitoring:4318`
    /// (spans go to `<endpoint>/v1/traces`, as JSON).
    pub endpoint: Option<String>,
    /// The share of events traced, from 0 to 1. Decided by each event's correlation id, so
    /// every hop of a traced event is traced.
    pub sample_ratio: f64,
}

impl Default for TracesConfig {
    fn default() -> Self {
        TracesConfig {
            endpoint: None,
            sample_ratio: 1.0,
        }
    }
}
