//! Burst collapse. A channel's queue decides what its next message is: urgent events first and
//! always alone; routine events alone while the channel keeps up, folded into digests when its
//! backlog could not be posted one by one within the configured delay. Every queued event
//! leaves the queue in exactly one message.

use std::collections::{BTreeMap, VecDeque};

use rust_decimal::Decimal;
use serde_json::json;
use woostream_core::insights::{Alert, AlertKind};
use woostream_core::slack_config::Priority;

use super::blocks::{self, Message};
use super::template::{amount, escape_mrkdwn};

/// One alert waiting for one channel.
#[derive(Clone, Debug)]
pub struct Queued<T> {
    pub priority: Priority,
    pub alert: std::sync::Arc<Alert>,
    /// What the delivery loop needs back (offsets, rule, timing).
    pub ticket: T,
}

/// What a channel posts next.
#[derive(Debug)]
pub enum Next<T> {
    One(Queued<T>),
    Digest(Vec<Queued<T>>),
}

/// A channel's backlog.
#[derive(Debug)]
pub struct ChannelQueue<T> {
    urgent: VecDeque<Queued<T>>,
    routine: VecDeque<Queued<T>>,
}

impl<T> Default for ChannelQueue<T> {
    fn default() -> Self {
        ChannelQueue {
            urgent: VecDeque::new(),
            routine: VecDeque::new(),
        }
    }
}

impl<T> ChannelQueue<T> {
    pub fn push(&mut self, q: Queued<T>) {
        if q.priority == Priority::Urgent {
            self.urgent.push_back(q);
        } else {
            self.routine.push_back(q);
        }
    }

    pub fn len(&self) -> usize {
        self.urgent.len() + self.routine.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next message. `keeps_up` is how many messages the channel can post within the
    /// digest delay; a longer routine backlog is folded, at most `max_digest` events a message.
    pub fn next(&mut self, keeps_up: usize, max_digest: usize) -> Option<Next<T>> {
        if let Some(u) = self.urgent.pop_front() {
            return Some(Next::One(u));
        }
        if self.routine.len() > keeps_up.max(1) {
            let n = self.routine.len().min(max_digest.max(1));
            return Some(Next::Digest(self.routine.drain(..n).collect()));
        }
        self.routine.pop_front().map(Next::One)
    }
}

fn kind_group(kind: AlertKind) -> (u8, &'static str, &'static str) {
    match kind {
        AlertKind::OrderPlaced
        | AlertKind::OrderPaid
        | AlertKind::OrderStatusChanged
        | AlertKind::PaymentFailed
        | AlertKind::OrderRefunded
        | AlertKind::HighValueOrder
        | AlertKind::FirstOrder => (0, "🛒", "order events"),
        AlertKind::StockLow | AlertKind::OutOfStock | AlertKind::BackInStock => {
            (1, "📦", "stock changes")
        }
        AlertKind::ReviewPosted | AlertKind::NegativeReview => (2, "⭐", "reviews"),
        AlertKind::SegmentChanged | AlertKind::BecameVip => (3, "👤", "customer changes"),
    }
}

/// The line that accounts for one alert in a digest.
fn line_of(a: &Alert) -> String {
    if let Some(o) = &a.order {
        let what = match a.kind {
            AlertKind::OrderStatusChanged => format!(
                "{} → {}",
                o.previous_status.as_deref().unwrap_or("?"),
                o.status
            ),
            k => k.as_str().replace('_', " "),
        };
        return format!(
            "#{} {} {} · {}",
            escape_mrkdwn(&o.number),
            amount(o.total.amount()),
            escape_mrkdwn(&o.currency),
            what
        );
    }
    if let Some(p) = &a.product {
        return format!(
            "{} · {}{}",
            escape_mrkdwn(&p.name),
            a.kind.as_str().replace('_', " "),
            p.stock_quantity
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        );
    }
    if let Some(r) = &a.review {
        return format!(
            "{} · {}/5",
            escape_mrkdwn(r.product_name.as_deref().unwrap_or("a product")),
            r.rating
        );
    }
    if let Some(c) = &a.customer {
        return format!(
            "customer {} · {} → {}",
            c.customer_id
                .map_or_else(|| escape_mrkdwn(&c.customer), |i| i.to_string()),
            escape_mrkdwn(c.previous_segment.as_deref().unwrap_or("—")),
            escape_mrkdwn(&c.segment)
        );
    }
    a.kind.as_str().replace('_', " ")
}

/// One message for many routine alerts: a headline per kind of event (count, totals by
/// currency, top products) and a line for every alert, so each is accounted for.
pub fn digest(alerts: &[&Alert], window_secs: u64) -> Message {
    let mut groups: BTreeMap<u8, Vec<&Alert>> = BTreeMap::new();
    for a in alerts {
        groups.entry(kind_group(a.kind).0).or_default().push(a);
    }
    let mut headlines = Vec::new();
    let mut lines = Vec::new();
    for members in groups.values() {
        let (_, icon, noun) = kind_group(members[0].kind);
        let mut headline = format!(
            "{icon} {} {noun} in the last {window_secs} s",
            members.len()
        );
        // Totals count each order once, whatever number of its events the digest holds.
        let mut totals: BTreeMap<&str, BTreeMap<i64, Decimal>> = BTreeMap::new();
        let mut products: BTreeMap<&str, i64> = BTreeMap::new();
        for a in members {
            if let Some(o) = &a.order {
                let first = totals
                    .entry(o.currency.as_str())
                    .or_default()
                    .insert(o.order_id, o.total.amount())
                    .is_none();
                if first {
                    for i in &o.items {
                        *products.entry(i.name.as_str()).or_default() += i.quantity as i64;
                    }
                }
            }
        }
        for (currency, orders) in &totals {
            let sum: Decimal = orders.values().sum();
            headline.push_str(&format!(
                " · {} orders, {} {}",
                orders.len(),
                amount(sum),
                escape_mrkdwn(currency)
            ));
        }
        if !products.is_empty() {
            let mut top: Vec<(&str, i64)> = products.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let top: Vec<String> = top
                .iter()
                .take(3)
                .map(|(n, q)| format!("{} ×{q}", escape_mrkdwn(n)))
                .collect();
            headline.push_str(&format!(" · top products: {}", top.join(", ")));
        }
        headlines.push(headline);
        lines.extend(members.iter().map(|a| line_of(a)));
    }
    let mut blocks_out = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": blocks::cut(&headlines.join("\n"), blocks::MAX_SECTION_TEXT)}}),
    ];
    blocks::push_line_sections(&mut blocks_out, &lines);
    Message {
        text: blocks::cut(&headlines.join(" · "), blocks::MAX_FALLBACK),
        blocks: blocks_out,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::slack::examples::order_alert;

    fn queued(n: i64, priority: Priority) -> Queued<i64> {
        Queued {
            priority,
            alert: Arc::new(order_alert(n, AlertKind::OrderPlaced, "100.00")),
            ticket: n,
        }
    }

    #[test]
    fn urgent_events_go_first_and_alone_and_routine_ones_fold_only_when_behind() {
        let mut q = ChannelQueue::default();
        for n in 0..3 {
            q.push(queued(n, Priority::Normal));
        }
        q.push(queued(99, Priority::Urgent));
        // Keeping up (3 ≤ 20): one message each, the urgent one first.
        assert!(matches!(q.next(20, 200), Some(Next::One(u)) if u.ticket == 99));
        assert!(matches!(q.next(20, 200), Some(Next::One(u)) if u.ticket == 0));
        for n in 3..50 {
            q.push(queued(n, Priority::Normal));
        }
        q.push(queued(100, Priority::Urgent));
        assert!(matches!(q.next(20, 200), Some(Next::One(u)) if u.ticket == 100));
        // Behind: the routine backlog is folded, at most max_digest a message.
        let Some(Next::Digest(d)) = q.next(20, 30) else {
            panic!("expected a digest")
        };
        assert_eq!(
            d.iter().map(|x| x.ticket).collect::<Vec<_>>(),
            (1..31).collect::<Vec<_>>()
        );
        let mut rest = Vec::new();
        while let Some(n) = q.next(20, 30) {
            let Next::One(one) = n else {
                panic!("19 left is within what the channel keeps up with")
            };
            rest.push(one.ticket);
        }
        assert_eq!(
            rest,
            (31..50).collect::<Vec<_>>(),
            "every event left the queue exactly once"
        );
    }

    #[test]
    fn a_digest_accounts_for_every_order_and_totals_each_order_once() {
        let mut alerts: Vec<Alert> = (0..42)
            .map(|n| order_alert(1000 + n, AlertKind::OrderPlaced, "293.81"))
            .collect();
        // A second event of order 1000 does not count its total twice.
        alerts.push(order_alert(1000, AlertKind::OrderPaid, "293.81"));
        let refs: Vec<&Alert> = alerts.iter().collect();
        let m = digest(&refs, 20);
        let text: String = m
            .blocks
            .iter()
            .map(|b| b["text"]["text"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            text.starts_with("🛒 43 order events in the last 20 s · 42 orders, 12,340.02 PLN · top products: Mug ×84"),
            "{text}"
        );
        for n in 0..42 {
            assert!(
                text.contains(&format!("#{} ", 1000 + n)),
                "order {} missing",
                1000 + n
            );
        }
        assert!(blocks::violations(&m).is_empty());
    }
}
