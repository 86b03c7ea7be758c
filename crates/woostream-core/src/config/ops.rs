//! `[ops]` and `[log]`: the operations endpoints and the logs.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// `/metrics`, `/healthz`, `/readyz`.
    pub listen: SocketAddr,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            listen: "0.0.0.0:9090".parse().expect("valid address"),
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
