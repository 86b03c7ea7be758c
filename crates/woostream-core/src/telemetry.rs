//! Structured logs through `tracing`: JSON for Kubernetes, pretty for a terminal; and, with
//! `[traces] endpoint`, each event's hops as OpenTelemetry spans.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::Config;

/// Installs the global subscriber; `RUST_LOG` wins over the configured level. Logs go to stderr
/// so that commands can print results on stdout. A JSON line written while a record is handled
/// carries the record's span (its correlation id, topic, partition and offset).
pub fn init(config: &Config) {
    let log = &config.log;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = if log.format == "pretty" {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed()
    };
    let traces = match crate::traces::layer(&config.traces, &service()) {
        Ok(layer) => layer,
        Err(e) => {
            eprintln!("woostream: traces are off: {e:#}");
            None
        }
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(traces)
        .try_init();
}

/// The service name traces carry: `woostream-` and the subcommand (`woostream-producer`,
/// `woostream-slack-run`, `woostream-crm-inbound`).
fn service() -> String {
    let words: Vec<String> = std::env::args()
        .skip(1)
        .take_while(|a| {
            a.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !a.starts_with('-')
        })
        .take(2)
        .collect();
    if words.is_empty() {
        "woostream".into()
    } else {
        format!("woostream-{}", words.join("-"))
    }
}
