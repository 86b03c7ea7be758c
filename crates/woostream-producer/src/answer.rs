//! Pure: every answer the webhook endpoint gives, as one type.
//!
//! WooCommerce counts 200–302 as success, anything else as a failure, disables a webhook after
//! about seven consecutive failures and never retries a failed delivery. Each answer below is
//! chosen with that in mind; its status, its body, the outcome label of the metrics and the
//! table in the documentation (`woostream config answers`) all come from here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use woostream_woo::normalise::RejectCode;

/// How the endpoint answered a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// WooCommerce's ping (`webhook_id=N`, unsigned) when a webhook is saved.
    Pong,
    /// The event is acknowledged by Kafka (acks=all).
    Accepted {
        event_id: String,
        erasure: Option<String>,
    },
    /// Kafka did not acknowledge in time (or an erasure waits): the record is fsynced on the
    /// producer's disk and drained the moment Kafka answers.
    Spooled {
        event_id: String,
        erasure: Option<String>,
    },
    /// An exact resend of a delivery already kept.
    Duplicate,
    /// Signed and readable, but deliberately not written.
    Ignored(Ignored),
    /// Signed but not an event: kept in the ingest dead-letter topic with its raw bytes.
    DeadLettered { code: RejectCode, reason: String },
    /// Missing or wrong signature, or a source no shop's secret verifies: one answer for every
    /// cause, so that nobody can list the configured shops (the cause is counted and logged).
    Unauthorized,
    /// More requests at once than `producer.max_in_flight`.
    Overloaded,
    /// The body did not arrive within its time.
    BodyTimeout,
    /// The body exceeds `producer.max_body_bytes`.
    TooLarge { limit: usize },
    /// Neither Kafka nor the spool took the event.
    Unavailable,
    /// A deleted customer's erasure could be neither carried out nor kept for later.
    ErasureUnavailable,
    /// The dead letter itself could not be encoded (a bug: nothing was kept).
    DeadLetterFailed,
}

/// Why a signed, readable delivery is not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// About a person who was erased (their past): no new key, no new contact.
    ErasedSubject,
    /// A `customer.deleted` naming an account the shop still has.
    AccountExists,
    /// A `product.deleted` / `coupon.deleted` whose id is the other resource's (trashing one
    /// product fires both with the same id).
    NotThisResource,
}

impl Answer {
    pub fn status(&self) -> StatusCode {
        match self {
            Answer::Pong | Answer::Accepted { .. } | Answer::Duplicate | Answer::Ignored(_) => {
                StatusCode::OK
            }
            Answer::Spooled { .. } => StatusCode::ACCEPTED,
            // Kept, so answered as a success: WooCommerce would only count a failure towards
            // disabling the webhook, and never deliver it again anyway.
            Answer::DeadLettered { code, .. } => match code {
                RejectCode::NotUtf8 => StatusCode::BAD_REQUEST,
                RejectCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::OK,
            },
            Answer::Unauthorized => StatusCode::UNAUTHORIZED,
            Answer::Overloaded | Answer::Unavailable | Answer::ErasureUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Answer::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Answer::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Answer::DeadLetterFailed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `outcome` label of `woostream_webhook_requests_total` and the latency histogram.
    pub fn outcome(&self) -> &'static str {
        match self {
            Answer::Pong => "ping",
            Answer::Accepted { .. } => "accepted",
            Answer::Spooled { .. } => "spooled",
            Answer::Duplicate => "duplicate",
            Answer::Ignored(Ignored::ErasedSubject) => "erased_subject",
            Answer::Ignored(Ignored::AccountExists) => "account_exists",
            Answer::Ignored(Ignored::NotThisResource) => "not_this_resource",
            Answer::DeadLettered { code, .. } => match code {
                RejectCode::NotUtf8 => "bad_encoding",
                RejectCode::UnsupportedMediaType => "unsupported_media_type",
                _ => "dead_lettered",
            },
            Answer::Unauthorized => "unauthorized",
            Answer::Overloaded => "overloaded",
            Answer::BodyTimeout => "body_timeout",
            Answer::TooLarge { .. } => "too_large",
            Answer::Unavailable | Answer::ErasureUnavailable => "unavailable",
            Answer::DeadLetterFailed => "error",
        }
    }

    /// `Retry-After`, in seconds, where retrying shortly can succeed.
    pub fn retry_after(&self) -> Option<&'static str> {
        match self {
            Answer::Overloaded => Some("1"),
            Answer::Unavailable => Some("30"),
            _ => None,
        }
    }

    /// The JSON body (the ping's is the text `pong`).
    pub fn body(&self) -> Option<serde_json::Value> {
        let with_event = |status: &str, event_id: &str, erasure: &Option<String>| {
            let mut body = json!({"status": status, "event_id": event_id});
            if let Some(e) = erasure {
                body["erasure"] = json!(e);
            }
            body
        };
        let refused = |reason: String| json!({"status": "refused", "reason": reason});
        let ignored = |reason: &str| json!({"status": "ignored", "reason": reason});
        let unavailable = |reason: &str| json!({"status": "unavailable", "reason": reason});
        Some(match self {
            Answer::Pong | Answer::DeadLetterFailed => return None,
            Answer::Accepted { event_id, erasure } => with_event("accepted", event_id, erasure),
            Answer::Spooled { event_id, erasure } => with_event("spooled", event_id, erasure),
            Answer::Duplicate => json!({"status": "duplicate"}),
            Answer::Ignored(Ignored::ErasedSubject) => ignored("about a person who was erased"),
            Answer::Ignored(Ignored::AccountExists) => ignored("the shop still has this account"),
            Answer::Ignored(Ignored::NotThisResource) => {
                ignored("the id is not of the resource the topic names")
            }
            Answer::DeadLettered { code, reason } => {
                json!({"status": "dead-lettered", "reason_code": code.as_str(), "reason": reason})
            }
            Answer::Unauthorized => refused("authentication failed".into()),
            Answer::BodyTimeout => refused("the body did not arrive in time".into()),
            Answer::TooLarge { limit } => refused(format!("the body exceeds {limit} bytes")),
            Answer::Overloaded => unavailable("too many requests at once; retry shortly"),
            Answer::Unavailable => unavailable("the event could not be stored; retry later"),
            Answer::ErasureUnavailable => unavailable("the erasure could not be written"),
        })
    }

    /// The response, naming the request's correlation id (`X-Correlation-Id`) so that a shop's
    /// log can be matched with woostream's.
    pub fn respond(self, correlation_id: &str) -> Response {
        let pong = self == Answer::Pong;
        let mut r = self.into_response();
        if !pong {
            if let Ok(v) = HeaderValue::from_str(correlation_id) {
                r.headers_mut().insert("x-correlation-id", v);
            }
        }
        r
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut r = match (self.body(), &self) {
            (_, Answer::Pong) => (status, "pong").into_response(),
            (Some(body), _) => (status, axum::Json(body)).into_response(),
            (None, _) => (status, "dead letter encoding failed").into_response(),
        };
        if let Some(after) = self.retry_after() {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(after));
        }
        r
    }
}

/// One row of the answers table: when, the answer, what Kafka holds afterwards.
pub struct Row {
    pub when: &'static str,
    pub answer: Answer,
    pub in_kafka: &'static str,
}

/// Every answer, in the order a reader meets them, with when it is given.
pub fn table() -> Vec<Row> {
    let event = || "a1b2…".to_string();
    let dead = |code: RejectCode, reason: &str| Answer::DeadLettered {
        code,
        reason: reason.into(),
    };
    vec![
        Row {
            when: "ping (`webhook_id=N`, unsigned), when a webhook is saved",
            answer: Answer::Pong,
            in_kafka: "nothing",
        },
        Row {
            when: "valid, signed (by the shop's secret, its topic's, or during a rotation the previous one); also when `X-WC-Webhook-Source` names none of the shop's URLs (WP-CLI, cron, another host name: counted in `woostream_webhook_source_mismatch_total`)",
            answer: Answer::Accepted { event_id: event(), erasure: None },
            in_kafka: "the event, acknowledged (acks=all) before the answer",
        },
        Row {
            when: "valid, signed, Kafka not acknowledging within `kafka.delivery_timeout_ms` or known to be away",
            answer: Answer::Spooled { event_id: event(), erasure: None },
            in_kafka: "later: fsynced on the producer's disk, drained the moment Kafka answers",
        },
        Row {
            when: "an exact resend (same shop, delivery id and signed body) within `producer.dedup_window_secs`",
            answer: Answer::Duplicate,
            in_kafka: "the first delivery's event",
        },
        Row {
            when: "signed but unreadable: empty, invalid JSON, another resource's payload, an unknown topic, WooCommerce's REST error object",
            answer: dead(RejectCode::InvalidJson, "…"),
            in_kafka: "`woostream.dlq.ingest`, with the raw bytes (sealed) and the reason",
        },
        Row {
            when: "signed, but its event is refused by Kafka for good (larger than the topic takes)",
            answer: dead(RejectCode::RefusedByKafka, "…"),
            in_kafka: "`woostream.dlq.ingest` (cut to its first 64 KiB, with its size and SHA-256, if it is too large even there)",
        },
        Row {
            when: "signed, not UTF-8",
            answer: dead(RejectCode::NotUtf8, "…"),
            in_kafka: "`woostream.dlq.ingest`",
        },
        Row {
            when: "signed, a Content-Type other than JSON",
            answer: dead(RejectCode::UnsupportedMediaType, "…"),
            in_kafka: "`woostream.dlq.ingest`",
        },
        Row {
            when: "about a person who was erased (their past)",
            answer: Answer::Ignored(Ignored::ErasedSubject),
            in_kafka: "nothing",
        },
        Row {
            when: "a `customer.deleted` naming an account the shop's REST API still lists",
            answer: Answer::Ignored(Ignored::AccountExists),
            in_kafka: "nothing (counted in `woostream_webhook_erasures_total{outcome=\"account_exists\"}`)",
        },
        Row {
            when: "a `product.deleted` / `coupon.deleted` whose id is the other resource's (trashing one product fires both with the same id)",
            answer: Answer::Ignored(Ignored::NotThisResource),
            in_kafka: "nothing (counted in `woostream_webhook_deletions_not_of_resource_total`)",
        },
        Row {
            when: "missing or wrong signature; a source no shop names whose body no shop's secret verifies",
            answer: Answer::Unauthorized,
            in_kafka: "nothing; the cause is counted in `woostream_webhook_signature_failures_total` and logged",
        },
        Row {
            when: "more requests at once than `producer.max_in_flight`",
            answer: Answer::Overloaded,
            in_kafka: "nothing",
        },
        Row {
            when: "a body slower than `producer.body_timeout_ms` (or than 16 KiB/s after its first second)",
            answer: Answer::BodyTimeout,
            in_kafka: "nothing",
        },
        Row {
            when: "a body over `producer.max_body_bytes`",
            answer: Answer::TooLarge { limit: 4_194_304 },
            in_kafka: "nothing",
        },
        Row {
            when: "neither Kafka nor the spool can take it",
            answer: Answer::Unavailable,
            in_kafka: "nothing",
        },
        Row {
            when: "a confirmed `customer.deleted` whose erasure can be neither carried out nor spooled",
            answer: Answer::ErasureUnavailable,
            in_kafka: "the deletion; the erasure follows from reconciliation's check for deleted accounts (`shops.rest.deleted_accounts_check_secs`) or `woostream erase`",
        },
    ]
}

/// The answers table as Markdown (docs/reference/webhook-answers.md).
pub fn table_markdown() -> String {
    let mut out = String::from(
        "<!-- Generated by `woostream config answers` (make docs); do not edit by hand. -->\n\
         # What WooCommerce is answered\n\n\
         WooCommerce counts 200–302 as success, anything else as a failure; it disables a webhook \
         after about seven consecutive failures and never retries a failed delivery. So a \
         delivery woostream keeps is answered as a success even when it is not an event, and a \
         failure is answered only where WooCommerce (or the operator) can act on it. Every answer \
         but the ping names the request's `X-Correlation-Id`.\n\n\
         | delivery | answer | body | in Kafka | `outcome` label |\n|---|---|---|---|---|\n",
    );
    for row in table() {
        let status = row.answer.status();
        let answer = match row.answer.retry_after() {
            Some(after) => format!("{} + `Retry-After: {after}`", status.as_u16()),
            None => status.as_u16().to_string(),
        };
        let body = match row.answer.body() {
            Some(b) => format!("`{b}`"),
            None if row.answer == Answer::Pong => "`pong`".into(),
            None => "text".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | `{}` |\n",
            row.when,
            answer,
            body.replace('|', "\\|"),
            row.in_kafka,
            row.answer.outcome()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The promise to WooCommerce: whatever is kept is a success, so a webhook is never
    /// disabled over deliveries woostream holds.
    #[test]
    fn whatever_is_kept_is_answered_as_a_success() {
        for row in table() {
            let kept = !row.in_kafka.starts_with("nothing")
                && !matches!(row.answer, Answer::ErasureUnavailable);
            let status = row.answer.status();
            let refused_for_its_form = matches!(
                row.answer,
                Answer::DeadLettered {
                    code: RejectCode::NotUtf8 | RejectCode::UnsupportedMediaType,
                    ..
                }
            );
            if kept && !refused_for_its_form {
                assert!(status.is_success(), "{} answered {status}", row.when);
            }
        }
    }

    #[test]
    fn retry_after_is_given_with_the_503s_a_retry_can_cure() {
        let r = Answer::Overloaded.respond("c1");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()["x-correlation-id"], "c1");
        let r = Answer::Unavailable.respond("c1");
        assert_eq!(r.headers()[header::RETRY_AFTER], "30");
        assert!(Answer::Pong
            .respond("c1")
            .headers()
            .get("x-correlation-id")
            .is_none());
    }

    #[test]
    fn every_outcome_label_is_in_the_table() {
        let labels: std::collections::BTreeSet<&str> =
            table().iter().map(|r| r.answer.outcome()).collect();
        for want in [
            "ping",
            "accepted",
            "spooled",
            "duplicate",
            "dead_lettered",
            "bad_encoding",
            "unsupported_media_type",
            "erased_subject",
            "account_exists",
            "not_this_resource",
            "unauthorized",
            "overloaded",
            "body_timeout",
            "too_large",
            "unavailable",
        ] {
            assert!(labels.contains(want), "{want}");
        }
    }
}
