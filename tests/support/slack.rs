//! A local Slack for tests, built from Slack's documented behaviour (protocols.md §3), not from
//! woostream's code: `chat.postMessage` with a bearer token and `ok:false` error shapes,
//! incoming webhooks answering with a status and a plain-text body, one message per second
//! per channel (with a short burst) enforced with HTTP 429 + `Retry-After`, and Block Kit's
//! limits enforced with `invalid_blocks`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// A message Slack accepted.
#[derive(Clone, Debug)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Vec<Value>,
    pub at: Instant,
}

impl Posted {
    /// Every text of the message: fallback, sections, fields, context.
    pub fn all_text(&self) -> String {
        let mut out = vec![self.text.clone()];
        for b in &self.blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                out.push(t.to_string());
            }
            for f in b["fields"].as_array().into_iter().flatten() {
                out.push(f["text"].as_str().unwrap_or_default().to_string());
            }
            for e in b["elements"].as_array().into_iter().flatten() {
                out.push(e["text"].as_str().unwrap_or_default().to_string());
            }
        }
        out.join("\n")
    }
}

/// How a channel behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ChannelState {
    Open,
    Archived,
    NotInChannel,
}

#[derive(Default)]
struct Inner {
    channels: HashMap<String, ChannelState>,
    /// Per channel: tokens left and when they were last topped up.
    buckets: HashMap<String, (f64, Instant)>,
    posted: Vec<Posted>,
    rate_limited: u64,
    rejected: Vec<(String, String)>,
    next_ts: u64,
    /// While set, every request fails with HTTP 503.
    down: bool,
}

#[derive(Clone)]
pub struct FakeSlack {
    inner: Arc<Mutex<Inner>>,
    token: String,
    per_second: f64,
    burst: f64,
    pub url: String,
    _server: Arc<tokio::task::JoinHandle<()>>,
}

impl FakeSlack {
    /// Starts on a free port. `channels` are the ids that exist (webhook ids too).
    pub async fn start(token: &str, channels: &[(&str, ChannelState)]) -> FakeSlack {
        let inner = Arc::new(Mutex::new(Inner {
            channels: channels.iter().map(|(c, s)| (c.to_string(), *s)).collect(),
            next_ts: 1_763_629_200_000_000,
            ..Inner::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let mut slack = FakeSlack {
            inner,
            token: token.to_string(),
            // Slack: "one message per second per channel ... short bursts >1 allowed".
            per_second: 1.0,
            burst: 3.0,
            url: format!("http://{addr}"),
            _server: Arc::new(tokio::spawn(async {})),
        };
        let app = Router::new()
            .route("/api/chat.postMessage", post(post_message))
            .route("/api/auth.test", post(auth_test))
            .route("/services/{id}", post(webhook))
            .with_state(slack.clone());
        slack._server = Arc::new(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
        slack
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.url)
    }

    pub fn webhook_url(&self, id: &str) -> String {
        format!("{}/services/{id}", self.url)
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.inner.lock().unwrap().posted.clone()
    }

    pub fn rate_limited(&self) -> u64 {
        self.inner.lock().unwrap().rate_limited
    }

    /// (channel, error) of every refused message.
    pub fn rejected(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().rejected.clone()
    }

    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().down = down;
    }

    /// Takes a token from the channel's bucket; the wait until the next one otherwise.
    fn admit(&self, inner: &mut Inner, channel: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let (tokens, last) = inner
            .buckets
            .entry(channel.to_string())
            .or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }
}

/// Block Kit's limits, as Slack documents them.
fn block_errors(blocks: &[Value]) -> Option<&'static str> {
    if blocks.len() > 50 {
        return Some("invalid_blocks");
    }
    let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    for b in blocks {
        match b["type"].as_str() {
            Some("header")
                if chars(&b["text"]["text"]) > 150 || b["text"]["type"] != "plain_text" =>
            {
                return Some("invalid_blocks")
            }
            Some("section") => {
                if chars(&b["text"]["text"]) > 3000 {
                    return Some("invalid_blocks");
                }
                let fields = b["fields"].as_array().map_or(&[][..], Vec::as_slice);
                if fields.len() > 10 || fields.iter().any(|f| chars(&f["text"]) > 2000) {
                    return Some("invalid_blocks");
                }
                if b.get("text").is_none() && fields.is_empty() {
                    return Some("invalid_blocks");
                }
            }
            Some("context") => {
                if b["elements"]
                    .as_array()
                    .is_none_or(|e| e.is_empty() || e.len() > 10)
                {
                    return Some("invalid_blocks");
                }
            }
            Some(_) => {}
            None => return Some("invalid_blocks_format"),
        }
    }
    None
}

fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    (
        StatusCode::TOO_MANY_REQUESTS,
        [("retry-after", secs.to_string())],
        Json(json!({"ok": false, "error": "ratelimited"})),
    )
        .into_response()
}

/// `auth.test`: who the token belongs to, or why it is refused.
async fn auth_test(State(slack): State<FakeSlack>, headers: HeaderMap) -> Response {
    if slack.inner.lock().unwrap().down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let answer = if auth.is_empty() {
        json!({"ok": false, "error": "not_authed"})
    } else if auth != format!("Bearer {}", slack.token) {
        json!({"ok": false, "error": "invalid_auth"})
    } else {
        json!({"ok": true, "url": "https://woostream-test.slack.com/", "team": "woostream test", "user": "woostream", "team_id": "T0TEST", "user_id": "U0BOT", "bot_id": "B0BOT"})
    };
    Json(answer).into_response()
}

async fn post_message(
    State(slack): State<FakeSlack>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let ok_false = |e: &str| Json(json!({"ok": false, "error": e})).into_response();
    let mut inner = slack.inner.lock().unwrap();
    if inner.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth.is_empty() {
        return ok_false("not_authed");
    }
    if auth != format!("Bearer {}", slack.token) {
        return ok_false("invalid_auth");
    }
    let channel = body["channel"].as_str().unwrap_or_default().to_string();
    let refuse = |inner: &mut Inner, e: &str| {
        inner.rejected.push((channel.clone(), e.to_string()));
        Json(json!({"ok": false, "error": e})).into_response()
    };
    match inner.channels.get(&channel) {
        None => return refuse(&mut inner, "channel_not_found"),
        Some(ChannelState::Archived) => return refuse(&mut inner, "is_archived"),
        Some(ChannelState::NotInChannel) => return refuse(&mut inner, "not_in_channel"),
        Some(ChannelState::Open) => {}
    }
    if let Err(wait) = slack.admit(&mut inner, &channel) {
        inner.rate_limited += 1;
        return too_many(wait);
    }
    let blocks = body["blocks"].as_array().cloned().unwrap_or_default();
    let text = body["text"].as_str().unwrap_or_default().to_string();
    if text.is_empty() && blocks.is_empty() {
        return refuse(&mut inner, "no_text");
    }
    if let Some(e) = block_errors(&blocks) {
        return refuse(&mut inner, e);
    }
    inner.next_ts += 1;
    let ts = format!(
        "{}.{:06}",
        inner.next_ts / 1_000_000,
        inner.next_ts % 1_000_000
    );
    inner.posted.push(Posted {
        channel: channel.clone(),
        ts: ts.clone(),
        thread_ts: body["thread_ts"].as_str().map(String::from),
        text,
        blocks,
        at: Instant::now(),
    });
    Json(json!({"ok": true, "channel": channel, "ts": ts, "message": {"text": body["text"]}}))
        .into_response()
}

async fn webhook(
    State(slack): State<FakeSlack>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let mut inner = slack.inner.lock().unwrap();
    if inner.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let plain = |status: StatusCode, text: &str| (status, text.to_string()).into_response();
    match inner.channels.get(&id) {
        None => {
            inner.rejected.push((id.clone(), "no_service".into()));
            return plain(StatusCode::NOT_FOUND, "no_service");
        }
        Some(ChannelState::Archived) => {
            inner
                .rejected
                .push((id.clone(), "channel_is_archived".into()));
            return plain(StatusCode::GONE, "channel_is_archived");
        }
        Some(_) => {}
    }
    if let Err(wait) = slack.admit(&mut inner, &id) {
        inner.rate_limited += 1;
        return too_many(wait);
    }
    let blocks = body["blocks"].as_array().cloned().unwrap_or_default();
    if block_errors(&blocks).is_some() {
        inner.rejected.push((id.clone(), "invalid_payload".into()));
        return plain(StatusCode::BAD_REQUEST, "invalid_payload");
    }
    inner.next_ts += 1;
    let ts = format!(
        "{}.{:06}",
        inner.next_ts / 1_000_000,
        inner.next_ts % 1_000_000
    );
    inner.posted.push(Posted {
        channel: id,
        ts,
        thread_ts: None,
        text: body["text"].as_str().unwrap_or_default().to_string(),
        blocks,
        at: Instant::now(),
    });
    plain(StatusCode::OK, "ok")
}
