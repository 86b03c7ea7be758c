//! The operations endpoints every role serves: `/metrics` (Prometheus), `/healthz` (the process
//! runs) and `/readyz` (every readiness condition holds, e.g. the broker is reachable).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

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
///
/// Two more things make a process unready, whatever its conditions say: a partition a role
/// stopped reading at a record from a newer writer ([`Readiness::hold`]), and a role that has
/// kept failing to start ([`Readiness::failing`]); the latter also fails `/healthz` once it has
/// lasted [`STUCK_AFTER`], so that the orchestrator restarts a process that cannot recover
/// by itself.
#[derive(Clone, Default)]
pub struct Readiness {
    conditions: Arc<RwLock<BTreeMap<&'static str, Arc<AtomicBool>>>>,
    held: Arc<RwLock<BTreeMap<HeldPartition, Held>>>,
    failing: Arc<RwLock<BTreeMap<&'static str, std::time::Instant>>>,
}

/// Metrics the ops server writes itself (from [`Readiness`]).
/// Registers a collector several roles of one process share (`woostream run` gives them one
/// registry): a second registration of the same collector is not an error.
pub fn register_shared(
    registry: &Registry,
    collector: Box<dyn prometheus::core::Collector>,
) -> prometheus::Result<()> {
    match registry.register(collector) {
        Ok(()) | Err(prometheus::Error::AlreadyReg) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The source revision of the running binary (set once by the binary at start).
static REVISION: OnceLock<&'static str> = OnceLock::new();

/// Records the source revision `woostream_build_info` reports.
pub fn set_revision(revision: &'static str) {
    let _ = REVISION.set(revision);
}

/// `woostream_build_info`: which release and revision a pod runs, for dashboards and for
/// alerts that must know whether a roll has finished.
fn build_info() -> String {
    format!(
        "# HELP woostream_build_info The release and source revision of this process (always 1).\n# TYPE woostream_build_info gauge\nwoostream_build_info{{version=\"{}\",revision=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        REVISION.get().copied().unwrap_or("unknown")
    )
}

const PARTITIONS_HELD: &str = "woostream_partitions_held";
const ROLE_FAILING: &str = "woostream_role_failing_seconds";

/// How long a role may keep failing to start before `/healthz` fails.
pub const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// (role, topic, partition).
type HeldPartition = (&'static str, String, i32);

/// Why and where a partition is held.
#[derive(Clone, Debug)]
struct Held {
    offset: i64,
    reason: &'static str,
}

impl Readiness {
    /// `role` stopped reading `topic`[`partition`] at `offset`, for `reason`: nothing past it is
    /// read or committed, and the process is unready, until the partition is released (given
    /// up in a rebalance) or the process restarts.
    pub fn hold(
        &self,
        role: &'static str,
        topic: &str,
        partition: i32,
        offset: i64,
        reason: &'static str,
    ) {
        self.held.write().expect("poisoned").insert(
            (role, topic.to_string(), partition),
            Held { offset, reason },
        );
    }

    /// `role` no longer owns `topic`[`partition`] (revoked): whoever owns it next holds it anew.
    pub fn release(&self, role: &'static str, topic: &str, partition: i32) {
        self.held
            .write()
            .expect("poisoned")
            .remove(&(role, topic.to_string(), partition));
    }

    /// Whether `role` holds `topic`[`partition`].
    pub fn is_held(&self, role: &'static str, topic: &str, partition: i32) -> bool {
        let held = self.held.read().expect("poisoned");
        !held.is_empty() && held.contains_key(&(role, topic.to_string(), partition))
    }

    /// `role` failed to start (or stopped on a failure it restarts from); the first of a run of
    /// failures counts.
    pub fn failing(&self, role: &'static str) {
        self.failing
            .write()
            .expect("poisoned")
            .entry(role)
            .or_insert_with(std::time::Instant::now);
    }

    /// `role` runs again.
    pub fn recovered(&self, role: &'static str) {
        self.failing.write().expect("poisoned").remove(role);
    }

    /// Whether the process is alive in the sense that matters: no role has been failing to
    /// start for longer than [`STUCK_AFTER`].
    pub fn is_live(&self) -> bool {
        self.failing
            .read()
            .expect("poisoned")
            .values()
            .all(|since| since.elapsed() < STUCK_AFTER)
    }

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
        !conditions.is_empty()
            && conditions.values().all(|c| c.load(Ordering::Relaxed))
            && self.held.read().expect("poisoned").is_empty()
            && self.failing.read().expect("poisoned").is_empty()
    }

    fn report(&self) -> String {
        let mut report = serde_json::Map::new();
        for (k, v) in self.conditions.read().expect("poisoned").iter() {
            report.insert(k.to_string(), v.load(Ordering::Relaxed).into());
        }
        let held = self.held.read().expect("poisoned");
        if !held.is_empty() {
            let held: Vec<serde_json::Value> = held
                .iter()
                .map(|((role, topic, partition), h)| {
                    serde_json::json!({"role": role, "topic": topic, "partition": partition, "offset": h.offset, "reason": h.reason})
                })
                .collect();
            report.insert("held".into(), held.into());
        }
        let failing = self.failing.read().expect("poisoned");
        if !failing.is_empty() {
            let failing: serde_json::Map<String, serde_json::Value> = failing
                .iter()
                .map(|(role, since)| (role.to_string(), since.elapsed().as_secs().into()))
                .collect();
            report.insert("failing_for_secs".into(), failing.into());
        }
        serde_json::Value::Object(report).to_string()
    }

    /// The held partitions and failing roles as Prometheus text, for alerts.
    fn metrics_text(&self) -> String {
        let mut text = format!(
            "# HELP {PARTITIONS_HELD} Partitions a role stopped reading at a record it must not skip, by reason (newer_writer: written by a newer release; upgrade this role).\n# TYPE {PARTITIONS_HELD} gauge\n",
        );
        let mut counts: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
        let held = self.held.read().expect("poisoned");
        for ((role, topic, _), h) in held.iter() {
            *counts.entry((role, topic.as_str(), h.reason)).or_default() += 1;
        }
        for ((role, topic, reason), n) in counts {
            text.push_str(&format!(
                "{PARTITIONS_HELD}{{role=\"{role}\",topic=\"{topic}\",reason=\"{reason}\"}} {n}\n"
            ));
        }
        text.push_str(&format!("# HELP {ROLE_FAILING} How long a role has kept failing to start (restarted in-process); /healthz fails past 600 s.\n# TYPE {ROLE_FAILING} gauge\n"));
        for (role, since) in self.failing.read().expect("poisoned").iter() {
            text.push_str(&format!(
                "{ROLE_FAILING}{{role=\"{role}\"}} {}\n",
                since.elapsed().as_secs()
            ));
        }
        text
    }
}

#[derive(Clone)]
struct OpsState {
    registry: Registry,
    readiness: Readiness,
}

/// `/metrics` (behind `guard`), `/healthz` and `/readyz` (open: the probes).
pub fn router(registry: Registry, readiness: Readiness, guard: Guard) -> Router {
    let metrics_route = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(guard, guarded));
    Router::new()
        .merge(metrics_route)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(OpsState {
            registry,
            readiness,
        })
}

/// A bearer token a page or endpoint asks for (none: open).
#[derive(Clone)]
pub struct Guard {
    /// The token's SHA-256: compared whole, so the time taken says nothing of the token.
    digest: Option<[u8; 32]>,
}

impl Guard {
    pub fn new(token: Option<String>) -> Guard {
        Guard {
            digest: token.filter(|t| !t.is_empty()).map(|t| digest(&t)),
        }
    }

    /// The guard of the secret at configuration key `key` (absent: open); a secret that
    /// cannot be read, or a placeholder, stops the start with the key.
    pub fn from_secret(secret: &Option<crate::secret::Secret>, key: &str) -> anyhow::Result<Guard> {
        crate::secret::check_secret(secret, &None)
            .map_err(|e| anyhow::anyhow!("configuration error: {key}: {e}"))?;
        Ok(Guard::new(crate::secret::resolve_secret(secret, &None)))
    }

    /// Whether `authorization` (the header's value) carries the token.
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        let Some(want) = &self.digest else {
            return true;
        };
        let given = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        digest(given.trim()) == *want
    }
}

fn digest(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}

/// Refuses requests without the guard's token (401) and marks every answer `no-store`: what
/// these endpoints say about the shop's customers is never cached on the way.
pub async fn guarded(
    State(guard): State<Guard>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let mut response = if guard.admits(authorization) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response()
    };
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
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
            buf.extend_from_slice(s.readiness.metrics_text().as_bytes());
            buf.extend_from_slice(build_info().as_bytes());
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

async fn healthz(State(s): State<OpsState>) -> impl IntoResponse {
    if s.readiness.is_live() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "a role has kept failing to start for more than 600 s\n",
        )
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
    config: &crate::config::OpsConfig,
    registry: Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let guard = Guard::from_secret(&config.token, "ops.token")?;
    let app = router(registry.clone(), readiness, guard);
    serve_router(
        config.listen,
        app,
        &registry,
        "ops",
        "the ops port",
        shutdown,
    )
    .await
}

/// Binds `listen` and serves `app` with the connection limits of a port only the cluster
/// reaches, until `shutdown` (the ops port, the insight page); returns the bound address.
pub async fn serve_router(
    listen: SocketAddr,
    app: Router,
    registry: &Registry,
    name: &str,
    what: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {what} to {listen}"))?;
    let addr = listener.local_addr()?;
    // A silent or trickling client must not hold the port.
    let counters = crate::listener::ListenerMetrics::register(registry, name, what)
        .with_context(|| format!("registering the connection metrics of {what}"))?;
    let handle = tokio::spawn(crate::listener::serve(
        listener,
        app,
        crate::listener::ConnectionLimits::internal(),
        counters,
        shutdown,
    ));
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
        let config = crate::config::OpsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
        };
        let (addr, _task) = serve(
            &config,
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

    #[tokio::test]
    async fn metrics_ask_for_the_token_when_one_is_set_and_are_never_cached_probes_stay_open() {
        let config = crate::config::OpsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: Some("s3cret-token".into()),
        };
        let readiness = Readiness::default();
        readiness.condition("x").store(true, Ordering::Relaxed);
        let (addr, _task) = serve(
            &config,
            Registry::new(),
            readiness,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let get = |path: &'static str, token: Option<&'static str>| async move {
            let mut r = reqwest::Client::new().get(format!("http://{addr}{path}"));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let r = r.send().await.unwrap();
            let cache = r
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), cache)
        };
        assert_eq!(get("/metrics", None).await.0, 401);
        assert_eq!(get("/metrics", Some("wrong")).await.0, 401);
        assert_eq!(
            get("/metrics", Some("s3cret-token")).await,
            (200, Some("no-store".to_string()))
        );
        assert_eq!(get("/healthz", None).await.0, 200);
        assert_eq!(get("/readyz", None).await.0, 200);
    }

    /// Opens a connection to `addr` from the loopback address `from`.
    async fn connect_from(from: &str, addr: SocketAddr) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(addr).await.unwrap()
    }

    #[tokio::test]
    async fn silent_sockets_from_one_address_cannot_take_the_ops_port() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let config = crate::config::OpsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
        };
        let readiness = Readiness::default();
        readiness.condition("x").store(true, Ordering::Relaxed);
        let (addr, _task) = serve(
            &config,
            Registry::new(),
            readiness,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let limit = crate::listener::ConnectionLimits::internal().max_connections_per_address;
        let mut held = Vec::new();
        for _ in 0..limit {
            held.push(connect_from("127.0.0.3", addr).await);
        }
        // One more from the same address is closed at once.
        let mut extra = connect_from("127.0.0.3", addr).await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), extra.read(&mut buf))
            .await
            .expect("closed at once, not held");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // The probes, from elsewhere, are answered meanwhile.
        let mut probe = connect_from("127.0.0.2", addr).await;
        probe
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        probe.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(held);
    }
}
