//! Accepting connections with the limits a reachable endpoint needs (the producer's webhook
//! port, the CRM inbound, the ops port):
//! - HTTP/1 only (WooCommerce speaks nothing else): an HTTP/2 preface is a parse error and the
//!   connection is closed at once, instead of waiting for frames;
//! - a deadline on the whole connection until its first request head is complete (a socket
//!   that sends nothing is closed after `header_timeout`, whatever hyper's timers do);
//! - at most `max_connections` open, and at most `max_connections_per_address` from one
//!   address; when every slot is taken, the oldest connection that has not sent a request head
//!   yet is closed to make room, so silent sockets cannot lock deliveries out;
//! - shutdown stops accepting and lets open requests finish.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::Layer;

/// A listener's connection counters.
#[derive(Clone)]
pub struct ListenerMetrics {
    /// Open connections.
    pub connections: prometheus::IntGauge,
    /// Connections closed at once (or evicted), by reason.
    pub refused: prometheus::IntCounterVec,
}

impl ListenerMetrics {
    /// `woostream_<name>_connections` and `woostream_<name>_connections_refused_total`,
    /// registered in `registry`.
    pub fn register(
        registry: &prometheus::Registry,
        name: &str,
        what: &str,
    ) -> prometheus::Result<ListenerMetrics> {
        let m = ListenerMetrics {
            connections: prometheus::IntGauge::new(
                format!("woostream_{name}_connections"),
                format!("Open connections to {what}."),
            )?,
            refused: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    format!("woostream_{name}_connections_refused_total"),
                    format!("Connections to {what} closed at once or evicted, by reason."),
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        Ok(m)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
}

impl ConnectionLimits {
    /// For a port only the cluster reaches (ops, the CRM's webhooks): generous, but a
    /// silent or trickling client still cannot hold it.
    pub fn internal() -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_connections_per_address: 128,
        }
    }
}

/// Connections that have not completed a request head yet, oldest first: what is closed to
/// make room when every slot is taken.
#[derive(Default)]
struct Waiting {
    next: AtomicU64,
    queue: Mutex<VecDeque<(u64, Arc<AtomicBool>, CancellationToken)>>,
}

impl Waiting {
    fn add(&self, started: Arc<AtomicBool>, close: CancellationToken) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut q = self.queue.lock().expect("waiting lock poisoned");
        // Connections that have started since they were added leave the queue lazily.
        q.retain(|(_, started, _)| !started.load(Ordering::Relaxed));
        q.push_back((id, started, close));
        id
    }

    fn remove(&self, id: u64) {
        self.queue
            .lock()
            .expect("waiting lock poisoned")
            .retain(|(i, _, _)| *i != id);
    }

    /// Closes the oldest connection still waiting for its first request head.
    fn evict_oldest(&self) -> bool {
        let mut q = self.queue.lock().expect("waiting lock poisoned");
        while let Some((_, started, close)) = q.pop_front() {
            if !started.load(Ordering::Relaxed) {
                close.cancel();
                return true;
            }
        }
        false
    }
}

/// Connections per address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

impl PerAddress {
    fn take(&self, ip: IpAddr, limit: usize) -> bool {
        let mut m = self.0.lock().expect("per-address lock poisoned");
        let n = m.entry(ip).or_default();
        if *n >= limit {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, ip: IpAddr) {
        let mut m = self.0.lock().expect("per-address lock poisoned");
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// A slot for a new connection: free, or made free by closing the oldest connection that has
/// not sent a request head (it gives its slot back as its task ends).
async fn slot(slots: &Arc<Semaphore>, waiting: &Waiting) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    if !waiting.evict_oldest() {
        return None;
    }
    tokio::time::timeout(Duration::from_secs(1), slots.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Serves `app` on `listener` until `shutdown`, then waits for open connections to finish
/// their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: ListenerMetrics,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let waiting = Arc::new(Waiting::default());
    let per_address = Arc::new(PerAddress::default());
    // Every connection task holds a receiver; the sender learns when the last one is gone.
    let (all_closed, open) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = peer.ip();
        if !per_address.take(ip, limits.max_connections_per_address) {
            metrics
                .refused
                .with_label_values(&["max_connections_per_address"])
                .inc();
            drop(stream);
            continue;
        }
        let Some(slot) = slot(&slots, &waiting).await else {
            per_address.give_back(ip);
            metrics
                .refused
                .with_label_values(&["max_connections"])
                .inc();
            drop(stream);
            continue;
        };
        // The first request head reaching the router is what ends the connection's deadline.
        let started = Arc::new(AtomicBool::new(false));
        let close = CancellationToken::new();
        let waiting_id = waiting.add(started.clone(), close.clone());
        let service = {
            let (app, started) = (app.clone(), started.clone());
            TowerToHyperService::new(
                tower::util::MapRequestLayer::new(
                    move |r: axum::http::Request<hyper::body::Incoming>| {
                        started.store(true, Ordering::Relaxed);
                        r
                    },
                )
                .layer(app),
            )
        };
        let (shutdown, open, connections) =
            (shutdown.clone(), open.clone(), metrics.connections.clone());
        let (waiting, per_address, refused) = (
            waiting.clone(),
            per_address.clone(),
            metrics.refused.clone(),
        );
        connections.inc();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new()).http1_only();
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let mut conn =
                pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
            let mut stopping = pin!(shutdown.cancelled());
            let mut first_head = pin!(tokio::time::sleep(limits.header_timeout));
            let mut head_deadline = true;
            let mut closing = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    _ = close.cancelled() => {
                        refused.with_label_values(&["evicted_before_request"]).inc();
                        break;
                    }
                    // Checked when the deadline passes, not before: a request that began in
                    // time may take longer than the deadline (a broker that stalls).
                    _ = &mut first_head, if head_deadline => {
                        head_deadline = false;
                        if !started.load(Ordering::Relaxed) {
                            refused.with_label_values(&["no_request_in_time"]).inc();
                            break;
                        }
                    }
                    _ = &mut stopping, if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            waiting.remove(waiting_id);
            per_address.give_back(ip);
            connections.dec();
            drop(slot);
            drop(open);
        });
    }
    drop(listener);
    drop(open);
    all_closed.closed().await;
}
