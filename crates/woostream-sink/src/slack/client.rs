//! Posting to Slack: `chat.postMessage` with the bot token, or an incoming webhook, and how
//! each answer is classified (protocols.md §3): 429 waits `Retry-After`; `ok:false` codes are
//! permanent (dead-letter) or transient (retry); incoming webhooks answer with a status and a
//! plain-text body.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use woostream_core::retry::retry_after;

use super::blocks::Message;

/// Where a channel's messages go.
#[derive(Clone, Debug, PartialEq)]
pub enum Destination {
    /// `chat.postMessage` to a channel id (or name).
    Bot { channel: String },
    /// An incoming webhook (its channel is fixed; no thread timestamps come back).
    Webhook { url: String },
}

/// Why a post did not succeed: retry (5xx, network, `internal_error`, …), rate-limited (429),
/// or rejected (`channel_not_found`, `invalid_auth`, `invalid_blocks`, …).
pub use woostream_core::retry::Refusal as Failure;

/// `ok:false` codes that retrying cannot fix.
const PERMANENT: &[&str] = &[
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "channel_is_archived",
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "missing_scope",
    "no_permission",
    "invalid_blocks",
    "invalid_blocks_format",
    "msg_blocks_too_long",
    "msg_too_long",
    "no_text",
    "too_many_attachments",
    "invalid_arguments",
    "invalid_charset",
    "markdown_text_conflict",
    "metadata_too_large",
    "ekm_access_denied",
    "restricted_action",
    "restricted_action_read_only_channel",
    "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel",
    "cannot_reply_to_message",
    "posting_to_general_channel_denied",
    "team_access_not_granted",
];

/// Classifies an `ok:false` error code.
pub fn classify(code: &str) -> Failure {
    if PERMANENT.contains(&code) {
        Failure::Rejected(code.to_string())
    } else {
        // internal_error, fatal_error, request_timeout, service_unavailable,
        // message_limit_exceeded, ratelimited and codes Slack adds later: retried, then
        // dead-lettered once the attempts are spent.
        Failure::Retry(code.to_string())
    }
}

/// Classifies an incoming webhook's error answer (status + plain-text body).
pub fn classify_webhook(status: u16, body: &str) -> Failure {
    let body = body.trim();
    match status {
        400 | 403 | 404 | 410 => Failure::Rejected(if body.is_empty() {
            format!("http_{status}")
        } else {
            body.to_string()
        }),
        _ => Failure::Retry(format!("http_{status} {body}")),
    }
}

/// Sends a request; network errors are transient, 429 waits `Retry-After` (both APIs).
async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
    let resp = req
        .send()
        .await
        // Without the URL: an incoming webhook's URL is itself a credential, and this text
        // reaches logs and the dead-letter reason.
        .map_err(|e| Failure::Retry(format!("network: {}", e.without_url())))?;
    if resp.status().as_u16() == 429 {
        let wait = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok());
        return Err(Failure::RateLimited(retry_after(wait)));
    }
    Ok(resp)
}

/// Posts messages; the dry-run variant records them instead (`make run`, previews).
#[derive(Clone)]
pub enum Poster {
    Http {
        client: reqwest::Client,
        api_url: String,
        token: Option<String>,
    },
    DryRun(Arc<Mutex<Vec<Recorded>>>),
}

/// A message the dry-run poster would have sent.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub channel: String,
    pub thread_ts: Option<String>,
    pub message: Message,
    pub ts: String,
}

impl Poster {
    pub fn http(api_url: &str, token: Option<String>) -> anyhow::Result<Poster> {
        Ok(Poster::Http {
            client: woostream_core::http::client()
                .timeout(Duration::from_secs(15))
                .build()?,
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Asks Slack whose bot token this is (`auth.test`); the workspace's name when it is
    /// valid. Nothing to check without a token or in a dry run.
    pub async fn check_token(&self) -> Result<Option<String>, Failure> {
        let Poster::Http {
            client,
            api_url,
            token: Some(token),
        } = self
        else {
            return Ok(None);
        };
        let resp = send(
            client
                .post(format!("{api_url}/auth.test"))
                .bearer_auth(token),
        )
        .await?;
        let status = resp.status().as_u16();
        if status >= 500 {
            return Err(Failure::Retry(format!("http_{status}")));
        }
        let answer: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| Failure::Retry(format!("unreadable answer: {}", e.without_url())))?;
        if answer["ok"].as_bool() == Some(true) {
            Ok(answer["team"].as_str().map(String::from))
        } else {
            Err(classify(
                answer["error"].as_str().unwrap_or("unknown_error"),
            ))
        }
    }

    /// Posts `message`; the message's `ts` when Slack returns one.
    pub async fn post(
        &self,
        channel_name: &str,
        to: &Destination,
        message: &Message,
        thread_ts: Option<&str>,
    ) -> Result<Option<String>, Failure> {
        match self {
            Poster::DryRun(log) => {
                let mut log = log.lock().expect("dry-run log");
                let ts = format!(
                    "{}.{:06}",
                    1_700_000_000 + log.len() / 1_000_000,
                    log.len() % 1_000_000
                );
                log.push(Recorded {
                    channel: channel_name.to_string(),
                    thread_ts: thread_ts.map(String::from),
                    message: message.clone(),
                    ts: ts.clone(),
                });
                Ok(Some(ts))
            }
            Poster::Http {
                client,
                api_url,
                token,
            } => match to {
                Destination::Bot { channel } => {
                    let mut body = json!({
                        "channel": channel,
                        "text": message.text,
                        "blocks": message.blocks,
                        "unfurl_links": false,
                        "unfurl_media": false,
                    });
                    if let Some(ts) = thread_ts {
                        body["thread_ts"] = json!(ts);
                    }
                    let mut req = client
                        .post(format!("{api_url}/chat.postMessage"))
                        .header("content-type", "application/json; charset=utf-8")
                        .json(&body);
                    if let Some(t) = token {
                        req = req.bearer_auth(t);
                    }
                    let resp = send(req).await?;
                    let status = resp.status().as_u16();
                    if status >= 500 {
                        return Err(Failure::Retry(format!("http_{status}")));
                    }
                    let answer: serde_json::Value = resp.json().await.map_err(|e| {
                        Failure::Retry(format!("unreadable answer: {}", e.without_url()))
                    })?;
                    if answer["ok"].as_bool() == Some(true) {
                        Ok(answer["ts"].as_str().map(String::from))
                    } else {
                        Err(classify(
                            answer["error"].as_str().unwrap_or("unknown_error"),
                        ))
                    }
                }
                Destination::Webhook { url } => {
                    // As for chat.postMessage: no previews of the links a message carries.
                    let mut body = json!({
                        "text": message.text,
                        "blocks": message.blocks,
                        "unfurl_links": false,
                        "unfurl_media": false,
                    });
                    if let Some(ts) = thread_ts {
                        body["thread_ts"] = json!(ts);
                    }
                    let resp = send(client.post(url).json(&body)).await?;
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    if status == 200 {
                        Ok(None)
                    } else {
                        Err(classify_webhook(status, &text))
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_post_never_repeats_the_webhook_url_which_is_a_credential() {
        let poster = Poster::http("http://127.0.0.1:1/api", None).unwrap();
        let to = Destination::Webhook {
            url: "http://127.0.0.1:1/services/T000/B000/S3CR3T".into(),
        };
        let message = Message {
            text: "hello".into(),
            blocks: Vec::new(),
        };
        let Err(Failure::Retry(reason)) = poster.post("#ops", &to, &message, None).await else {
            panic!("a refused connection is retried")
        };
        assert!(!reason.contains("S3CR3T"), "{reason}");
        assert!(reason.starts_with("network:"), "{reason}");
    }

    #[test]
    fn answers_are_classified_as_slack_documents_them() {
        for code in [
            "channel_not_found",
            "not_in_channel",
            "invalid_auth",
            "is_archived",
            "invalid_blocks",
        ] {
            assert_eq!(classify(code), Failure::Rejected(code.into()));
        }
        for code in [
            "internal_error",
            "fatal_error",
            "request_timeout",
            "something_new",
        ] {
            assert!(matches!(classify(code), Failure::Retry(_)), "{code}");
        }
        assert_eq!(
            classify_webhook(404, "channel_not_found"),
            Failure::Rejected("channel_not_found".into())
        );
        assert_eq!(
            classify_webhook(410, "channel_is_archived"),
            Failure::Rejected("channel_is_archived".into())
        );
        assert!(matches!(
            classify_webhook(500, "rollup_error"),
            Failure::Retry(_)
        ));
    }
}
