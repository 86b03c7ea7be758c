//! `woostream webhooks sync`: the shop's webhooks made to match what woostream needs — one per
//! topic it reads, delivering to the producer's public URL, signed with its topic's secret
//! (derived from the configured one), on REST API v3, active — through the REST API, reporting
//! what changed.

use reqwest::Method;
use serde_json::{json, Value};

use super::reconcile::WEBHOOK_TOPICS;
use woostream_woo::rest::WooRest;
use woostream_woo::signature::topic_secret;

/// One change to the shop's webhooks.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Create {
        topic: String,
    },
    /// An existing webhook of the topic, with the fields that differ.
    Update {
        id: i64,
        topic: String,
        fields: Vec<&'static str>,
    },
    Unchanged {
        id: i64,
        topic: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Create { topic } => write!(f, "create  {topic}"),
            Change::Update { id, topic, fields } => {
                write!(f, "update  {topic} (webhook {id}: {})", fields.join(", "))
            }
            Change::Unchanged { id, topic } => write!(f, "ok      {topic} (webhook {id})"),
        }
    }
}

/// The name woostream gives its webhook of `topic`. The secret cannot be read back
/// (write-only), so the name says that the webhook was given its topic's secret: one named
/// otherwise (made by hand, or by a release before topic secrets) gets it on the next sync.
pub fn name_of(topic: &str) -> String {
    format!("woostream {topic} (topic secret)")
}

/// What to change so that every topic in `topics` has one webhook delivering to
/// `delivery_url`, active, on API v3, signed with its topic's secret. A webhook of the topic
/// that delivers elsewhere belongs to something else and is left alone. The secret is written
/// on creation and on every update.
pub fn plan(existing: &[Value], delivery_url: &str, topics: &[&str]) -> Vec<Change> {
    topics
        .iter()
        .map(|topic| {
            let ours = existing.iter().find(|w| {
                w["topic"].as_str() == Some(topic)
                    && w["delivery_url"].as_str() == Some(delivery_url)
            });
            match ours {
                None => Change::Create {
                    topic: topic.to_string(),
                },
                Some(w) => {
                    let id = w["id"].as_i64().unwrap_or_default();
                    let mut fields = Vec::new();
                    if w["status"].as_str() != Some("active") {
                        fields.push("status");
                    }
                    if w["api_version"].as_str().is_some_and(|v| v != "wp_api_v3") {
                        fields.push("api_version");
                    }
                    if w["name"].as_str() != Some(name_of(topic).as_str()) {
                        fields.push("secret");
                    }
                    if fields.is_empty() {
                        Change::Unchanged {
                            id,
                            topic: topic.to_string(),
                        }
                    } else {
                        Change::Update {
                            id,
                            topic: topic.to_string(),
                            fields,
                        }
                    }
                }
            }
        })
        .collect()
}

/// Whether a webhook of the shop is woostream's: it delivers to `delivery_url` when that is
/// configured, else to a URL whose path is the producer's `webhook_path`. Other receivers'
/// webhooks are never touched, whatever their status.
pub fn is_ours(webhook: &Value, delivery_url: Option<&str>, webhook_path: &str) -> bool {
    let Some(url) = webhook["delivery_url"].as_str() else {
        return false;
    };
    let trim = |u: &str| u.trim().trim_end_matches('/').to_ascii_lowercase();
    match delivery_url {
        Some(ours) => trim(url) == trim(ours),
        None => reqwest::Url::parse(url)
            .is_ok_and(|u| u.path().trim_end_matches('/') == webhook_path.trim_end_matches('/')),
    }
}

/// Every webhook of the shop, page by page, whatever its status.
pub async fn list_all(client: &WooRest) -> anyhow::Result<Vec<Value>> {
    Ok(client
        .list_all("webhooks", &[("status", "all".into())])
        .await?)
}

/// Applies [`plan`] to the shop (unless `dry_run`) and returns the changes.
pub async fn sync(
    client: &WooRest,
    delivery_url: &str,
    secret: &str,
    dry_run: bool,
) -> anyhow::Result<Vec<Change>> {
    let existing = list_all(client).await?;
    let changes = plan(&existing, delivery_url, &WEBHOOK_TOPICS);
    if dry_run {
        return Ok(changes);
    }
    for change in &changes {
        match change {
            Change::Create { topic } => {
                client
                    .object(
                        Method::POST,
                        "webhooks",
                        Some(&json!({
                            "name": name_of(topic),
                            "topic": topic,
                            "delivery_url": delivery_url,
                            "secret": topic_secret(secret, topic),
                            "status": "active",
                            "api_version": "wp_api_v3",
                        })),
                    )
                    .await?;
            }
            Change::Update { id, topic, .. } => {
                client
                    .object(
                        Method::PUT,
                        &format!("webhooks/{id}"),
                        Some(&json!({
                            "name": name_of(topic),
                            "status": "active",
                            "secret": topic_secret(secret, topic),
                            "api_version": "wp_api_v3",
                        })),
                    )
                    .await?;
            }
            Change::Unchanged { .. } => {}
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_webhooks_delivering_to_woostream_are_ours() {
        let hook = |url: &str| json!({"id": 1, "status": "disabled", "delivery_url": url});
        let ours = Some("https://hooks.shop.example/webhooks/woocommerce");
        assert!(is_ours(
            &hook("https://hooks.shop.example/webhooks/woocommerce/"),
            ours,
            "/webhooks/woocommerce"
        ));
        assert!(!is_ours(
            &hook("https://zapier.example/hooks/catch/1"),
            ours,
            "/webhooks/woocommerce"
        ));
        // Without a configured delivery URL, the producer's path decides.
        assert!(is_ours(
            &hook("http://127.0.0.1:8099/webhooks/woocommerce"),
            None,
            "/webhooks/woocommerce"
        ));
        assert!(!is_ours(
            &hook("https://erp.example/woo"),
            None,
            "/webhooks/woocommerce"
        ));
        assert!(!is_ours(&json!({"id": 2}), None, "/webhooks/woocommerce"));
    }

    #[test]
    fn missing_topics_are_created_disabled_ones_reactivated_and_others_left_alone() {
        let url = "https://hooks.shop.example/webhooks/woocommerce";
        let existing = vec![
            json!({"id": 3, "topic": "order.created", "name": name_of("order.created"), "delivery_url": url, "status": "active", "api_version": "wp_api_v3"}),
            json!({"id": 4, "topic": "order.updated", "name": name_of("order.updated"), "delivery_url": url, "status": "disabled", "api_version": "wp_api_v3"}),
            // Made before topic secrets: its secret is the shop's.
            json!({"id": 6, "topic": "customer.deleted", "name": "woostream customer.deleted", "delivery_url": url, "status": "active", "api_version": "wp_api_v3"}),
            json!({"id": 5, "topic": "order.deleted", "delivery_url": "https://zapier.example/hook", "status": "active"}),
        ];
        let changes = plan(
            &existing,
            url,
            &[
                "order.created",
                "order.updated",
                "order.deleted",
                "customer.deleted",
            ],
        );
        assert_eq!(
            changes,
            vec![
                Change::Unchanged {
                    id: 3,
                    topic: "order.created".into()
                },
                Change::Update {
                    id: 4,
                    topic: "order.updated".into(),
                    fields: vec!["status"]
                },
                Change::Create {
                    topic: "order.deleted".into()
                },
                Change::Update {
                    id: 6,
                    topic: "customer.deleted".into(),
                    fields: vec!["secret"]
                },
            ]
        );
    }
}
