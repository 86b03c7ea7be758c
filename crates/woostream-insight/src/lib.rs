//! The insight role: a small read-only web page of what woostream knows — segments and their
//! movement, the CLV distribution, P(alive) by recency and frequency, the model and its
//! latest backtest, top categories, the live flow per topic and the Slack and CRM
//! deliveries — folded from the topics and served on a port of its own (`/insight`).
//!
//! - [`view`]: the records in, the figures out (pure);
//! - [`page`]: the figures drawn as HTML with SVG charts (pure);
//! - [`follow`]: the topics followed at the Kafka edge.

pub mod figures;
pub mod follow;
pub mod page;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub use figures::{Summary, View};
pub use follow::{start, Running};

/// Seconds between the page's refreshes.
pub const REFRESH_SECS: u32 = 10;

/// How long one summary serves every request: the view is folded under a lock the followers
/// need, so a burst of requests computes it once.
const SUMMARY_FOR: Duration = Duration::from_secs(2);

/// A summary and when it was made.
type Cached = Option<(Instant, Arc<Summary>)>;

/// The view and its latest summary.
#[derive(Clone)]
pub struct Pages {
    view: Arc<Mutex<View>>,
    cached: Arc<Mutex<Cached>>,
}

impl Pages {
    pub fn new(view: Arc<Mutex<View>>) -> Pages {
        Pages {
            view,
            cached: Arc::default(),
        }
    }

    /// The summary, at most [`SUMMARY_FOR`] old.
    fn summary(&self) -> Arc<Summary> {
        let mut cached = self.cached.lock().expect("insight summary lock");
        if let Some((at, s)) = cached.as_ref() {
            if at.elapsed() < SUMMARY_FOR {
                return s.clone();
            }
        }
        let s = Arc::new(self.view.lock().expect("insight view lock").summary());
        *cached = Some((Instant::now(), s.clone()));
        s
    }
}

/// `/insight` (the page) and `/insight/data.json` (its figures) over `view`, behind `guard`,
/// never cached on the way.
pub fn router(view: Arc<Mutex<View>>, guard: woostream_core::ops::Guard) -> Router {
    Router::new()
        .route("/insight", get(page_of))
        .route("/insight/data.json", get(data_of))
        .route_layer(axum::middleware::from_fn_with_state(
            guard,
            woostream_core::ops::guarded,
        ))
        .with_state(Pages::new(view))
}

/// Serves the page on its own port (`[insight] listen`, with `[insight] token`) until
/// `shutdown`; returns the bound address.
pub async fn serve(
    config: &woostream_core::config::InsightConfig,
    view: Arc<Mutex<View>>,
    registry: &prometheus::Registry,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let guard = woostream_core::ops::Guard::from_secret(&config.token, "insight.token")?;
    woostream_core::ops::serve_router(
        config.listen,
        router(view, guard),
        registry,
        "insight",
        "the insight page",
        shutdown,
    )
    .await
}

async fn page_of(State(pages): State<Pages>) -> axum::response::Response {
    let summary = pages.summary();
    let generated = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    match page::render(&summary, &generated, REFRESH_SECS) {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // Nothing but the page itself: no script, no style or image from elsewhere.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:",
                ),
            ],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "The insight page could not be rendered.");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the insight page could not be rendered; see the log",
            )
                .into_response()
        }
    }
}

async fn data_of(State(pages): State<Pages>) -> impl IntoResponse {
    axum::Json((*pages.summary()).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_page_asks_for_its_token_and_is_never_cached() {
        let config = woostream_core::config::InsightConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: Some("page-token".into()),
        };
        let (addr, _task) = serve(
            &config,
            Arc::default(),
            &prometheus::Registry::new(),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
        let get = |token: Option<&'static str>| async move {
            let mut r = reqwest::Client::new().get(format!("http://{addr}/insight/data.json"));
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
        assert_eq!(get(None).await.0, 401);
        assert_eq!(get(Some("guess")).await.0, 401);
        assert_eq!(
            get(Some("page-token")).await,
            (200, Some("no-store".to_string()))
        );
    }
}
