//! The insight role: a small read-only web page of what woostream knows — segments and their
//! movement, the CLV distribution, P(alive) by recency and frequency, the model and its
//! latest backtest, top categories, the live flow per topic and the Slack and CRM
//! deliveries — folded from the topics and served behind the ops port (`/insight`).
//!
//! - [`view`]: the records in, the figures out (pure);
//! - [`page`]: the figures drawn as HTML with SVG charts (pure);
//! - [`follow`]: the topics followed at the Kafka edge.

pub mod follow;
pub mod page;
pub mod view;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub use follow::{start, Running};
pub use view::View;

/// Seconds between the page's refreshes.
pub const REFRESH_SECS: u32 = 10;

/// `/insight` (the page) and `/insight/data.json` (its figures) over `view`.
pub fn router(view: Arc<Mutex<View>>) -> Router {
    Router::new()
        .route("/insight", get(page_of))
        .route("/insight/data.json", get(data_of))
        .with_state(view)
}

async fn page_of(State(view): State<Arc<Mutex<View>>>) -> axum::response::Response {
    let summary = view.lock().expect("insight view lock").summary();
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

async fn data_of(State(view): State<Arc<Mutex<View>>>) -> impl IntoResponse {
    let summary = view.lock().expect("insight view lock").summary();
    axum::Json(summary)
}
