//! What the sink knows from the audit topic at start, and the names it records by.

use std::collections::{HashMap, HashSet};
use woostream_core::config::Config;
use woostream_core::contract::sink_records::{Delivery, DeliveryOutcome};

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

/// The audit key of one alert's delivery to one channel by the sink named `sink`.
pub fn delivery_id(sink: &str, channel: &str, alert_id: &str) -> String {
    format!("{sink}:{channel}:{alert_id}")
}

/// What a restart needs from the audit topic.
#[derive(Debug, Default)]
pub struct Restored {
    pub delivered: HashSet<String>,
    /// channel → (shop, order) → ts of the order's first message.
    pub threads: HashMap<String, HashMap<(String, i64), String>>,
    /// This sink's name.
    sink: String,
    /// This workspace's channels: the only ones an earlier, unnamed sink's records count for.
    channels: HashSet<String>,
}

impl Restored {
    pub fn for_sink(sink: &str, channels: impl IntoIterator<Item = String>) -> Restored {
        Restored {
            sink: sink.into(),
            channels: channels.into_iter().collect(),
            ..Restored::default()
        }
    }

    /// Takes one audit record of this sink, or of the unnamed sink this one was before it was
    /// named (for its own channels, keyed as its own).
    pub fn apply(&mut self, d: &Delivery) {
        let earlier_unnamed = d.sink == "slack" && self.channels.contains(&d.destination);
        if d.sink != self.sink && !earlier_unnamed {
            return;
        }
        self.delivered
            .insert(delivery_id(&self.sink, &d.destination, &d.alert_id));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(sink: &str, channel: &str, alert: &str) -> Delivery {
        Delivery {
            delivery_id: delivery_id(sink, channel, alert),
            sink: sink.into(),
            destination: channel.into(),
            alert_id: alert.into(),
            kind: "order_paid".into(),
            shop_id: "eu".into(),
            correlation_id: "c".into(),
            outcome: DeliveryOutcome::Posted,
            message_ts: Some("1.2".into()),
            thread_ts: None,
            order_id: None,
            priority: "normal".into(),
            reason: None,
            attempts: 1,
            latency_ms: 0,
            delivered_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_named_sink_takes_its_own_records_and_the_unnamed_ones_for_its_channels_only() {
        let mut r = Restored::for_sink("slack@sales", ["#orders".to_string()]);
        r.apply(&posted("slack@sales", "#orders", "a1"));
        // Another workspace's delivery to its own #orders is not this one's.
        r.apply(&posted("slack@support", "#orders", "a2"));
        // The unnamed sink this one was before it was named: for its channels, as its own.
        r.apply(&posted("slack", "#orders", "a3"));
        r.apply(&posted("slack", "#vip", "a4"));
        let mut delivered: Vec<&str> = r.delivered.iter().map(String::as_str).collect();
        delivered.sort();
        assert_eq!(
            delivered,
            ["slack@sales:#orders:a1", "slack@sales:#orders:a3"]
        );
    }
}
