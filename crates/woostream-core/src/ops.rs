//! The operations endpoints every role serves: `/metrics` (Prometheus), `/healthz` (the process
//! runs) and `/readyz` (every readiness condition holds, e.g. the broker is reachable).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

/// Named readiness conditions; ready when there is at least one and all hold. The ops server
/// starts before a role has registered anything, and a role that registered nothing yet is not
/// ready: a load balancer must not route to a pod whose webhook port is not bound yet.
#[derive(Clone, Default)]
pub struct Readiness {
    conditions: Arc<RwLock<BTreeMap<&'static str, Arc<AtomicBool>>>>,
}

impl Readiness {
    /// Registers a condition (initially not holding) and returns its switch.
    pub fn condition(&self, name: &'static str) -> Arc<AtomicBool> {
        self.conditions
            .write()
            .expect("poisoned")
            .entry(name)
            .or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .clone()
    }

    pub fn is_ready(&self) -> bool {
        let conditions = self.conditions.read().expect("poisoned");
        !conditions.is_empty() && conditions.values().all(|c| c.load(Ordering::Relaxed))
    }

    fn report(&self) -> String {
        let c = self.conditions.read().expect("poisoned");
        let items: Vec<String> = c
            .iter()
            .map(|(k, v)| format!("\"{k}\":{}", v.load(Ordering::Relaxed)))
            .collect();
        format!("{{{}}}", items.join(","))
    }
}

#[derive(Clone)]
struct OpsState {
    registry: Registry,
    readiness: Readiness,
}

pub fn router(registry: Registry, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(OpsState {
            registry,
            readiness,
        })
}

async fn metrics(State(s): State<OpsState>) -> impl IntoResponse {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&s.registry.gather(), &mut buf) {
        Ok(()) => {
            // What /readyz answers, for alerts on a role that stays unready.
            buf.extend_from_slice(
                format!(
                    "# HELP woostream_ready 1 while every readiness condition of this process holds (what /readyz answers).\n# TYPE woostream_ready gauge\nwoostream_ready {}\n",
                    u8::from(s.readiness.is_ready())
                )
                .as_bytes(),
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, encoder.format_type().to_string())],
                buf,
            )
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_string())],
            e.to_string().into_bytes(),
        ),
    }
}

async fn readyz(State(s): State<OpsState>) -> impl IntoResponse {
    let status = if s.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        s.readiness.report(),
    )
}

/// Binds the ops server and serves it until `shutdown`; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    registry: Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_with_pages(listen, registry, readiness, Router::new(), shutdown).await
}

/// [`serve`], with a role's own read-only `pages` beside the health and metrics endpoints
/// (the insight page): nothing of the ops port is reachable from the shop's side.
pub async fn serve_with_pages(
    listen: SocketAddr,
    registry: Registry,
    readiness: Readiness,
    pages: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the ops server to {listen}"))?;
    let addr = listener.local_addr()?;
    let app = router(registry, readiness).merge(pages);
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok((addr, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_conditions_are_registered_and_all_hold() {
        let r = Readiness::default();
        assert!(!r.is_ready(), "nothing registered yet is not ready");
        let kafka = r.condition("kafka");
        let webhooks = r.condition("webhooks");
        assert!(!r.is_ready());
        kafka.store(true, Ordering::Relaxed);
        assert!(!r.is_ready(), "one of two holds");
        webhooks.store(true, Ordering::Relaxed);
        assert!(r.is_ready());
        assert_eq!(r.report(), r#"{"kafka":true,"webhooks":true}"#);
        assert!(
            r.condition("kafka").load(Ordering::Relaxed),
            "registering again returns the same switch"
        );
    }

    #[tokio::test]
    async fn readyz_answers_503_from_the_first_moment_until_ready() {
        let readiness = Readiness::default();
        let (addr, _task) = serve(
            "127.0.0.1:0".parse().unwrap(),
            Registry::new(),
            readiness.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let status = || async move {
            reqwest::get(format!("http://{addr}/readyz"))
                .await
                .unwrap()
                .status()
                .as_u16()
        };
        assert_eq!(status().await, 503, "nothing registered");
        let webhooks = readiness.condition("webhooks");
        assert_eq!(status().await, 503, "registered, not holding");
        let ready_metric = || async move {
            let text = reqwest::get(format!("http://{addr}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("woostream_ready "))
                .map(str::to_string)
        };
        assert_eq!(ready_metric().await.as_deref(), Some("0"));
        webhooks.store(true, Ordering::Relaxed);
        assert_eq!(status().await, 200);
        assert_eq!(ready_metric().await.as_deref(), Some("1"));
    }
}
