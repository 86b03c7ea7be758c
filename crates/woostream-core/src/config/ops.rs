//! `[ops]` and `[log]`: the operations endpoints and the logs.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Serialize, Deserialize)]
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

#[derive(Clone, Debug, Serialize, Deserialize)]
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
