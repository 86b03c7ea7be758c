//! What the sink knows from the audit topic at start, and the names it records by.

use super::*;

/// Header of dead-letter records: the channel that refused it.
pub const DLQ_CHANNEL: &str = "woostream-dlq-channel";

/// Shop id → link to an order in its admin, with `{order_id}` to replace: `slack.admin_url`,
/// else the shop's `wp-admin/post.php?post={order_id}&action=edit`.
pub fn admin_urls(config: &Config) -> HashMap<String, String> {
    config
        .shops
        .iter()
        .map(|s| {
            let url = config.slack.admin_url.clone().unwrap_or_else(|| {
                format!(
                    "{}/wp-admin/post.php?post={{order_id}}&action=edit",
                    s.source.trim_end_matches('/')
                )
            });
            (s.id.clone(), url)
        })
        .collect()
}

pub fn delivery_id(channel: &str, alert_id: &str) -> String {
    format!("slack:{channel}:{alert_id}")
}

/// What a restart needs from the audit topic.
#[derive(Debug, Default)]
pub struct Restored {
    pub delivered: HashSet<String>,
    /// channel → (shop, order) → ts of the order's first message.
    pub threads: HashMap<String, HashMap<(String, i64), String>>,
}

impl Restored {
    pub fn apply(&mut self, d: &Delivery) {
        if d.sink != "slack" {
            return;
        }
        self.delivered.insert(d.delivery_id.clone());
        if let (Some(order), Some(ts), None) = (d.order_id, &d.message_ts, &d.thread_ts) {
            if d.outcome == DeliveryOutcome::Posted {
                self.threads
                    .entry(d.destination.clone())
                    .or_default()
                    .entry((d.shop_id.clone(), order))
                    .or_insert_with(|| ts.clone());
            }
        }
    }
}
