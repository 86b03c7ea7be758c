//! Burst collapse. A channel's queue decides what its next message is: urgent events first —
//! problems (a failed payment) before good news (a high-value order), alone while the channel
//! keeps up, folded into one urgent digest when their backlog could not be posted one by one
//! within a few seconds; then routine events, alone while the channel keeps up, folded into
//! digests when its backlog could not be posted one by one within the configured delay. Every
//! queued event leaves the queue in exactly one message.

use std::collections::{BTreeMap, VecDeque};

use rust_decimal::Decimal;
use serde_json::json;
use woostream_core::config::slack::Priority;
use woostream_core::contract::enriched::{Alert, AlertKind};

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
    /// Urgent alerts that could not each wait their turn, problems first.
    UrgentDigest(Vec<Queued<T>>),
}

/// How much a channel posts one by one before it folds.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Routine messages the channel can post within the digest delay.
    pub keeps_up: usize,
    /// Urgent messages it can post within `urgent_within_secs`.
    pub urgent_keeps_up: usize,
    pub max_digest: usize,
}

/// 0 for alerts about something going wrong that someone must act on, 1 for the rest.
pub fn urgency_rank(kind: AlertKind) -> u8 {
    match kind {
        AlertKind::PaymentFailed
        | AlertKind::NegativeReview
        | AlertKind::OutOfStock
        | AlertKind::OrderRefunded => 0,
        _ => 1,
    }
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

    /// Takes out every waiting alert `about` says concerns an erased person.
    pub fn remove_where(&mut self, about: impl Fn(&Alert) -> bool) -> Vec<Queued<T>> {
        let mut out = Vec::new();
        for q in [&mut self.urgent, &mut self.routine] {
            let (gone, kept): (VecDeque<_>, VecDeque<_>) =
                q.drain(..).partition(|x| about(&x.alert));
            *q = kept;
            out.extend(gone);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next message: backlogs longer than the channel keeps up with (see [`Pace`]) are
    /// folded, at most `max_digest` events a message.
    pub fn next(&mut self, pace: Pace) -> Option<Next<T>> {
        let max_digest = pace.max_digest.max(1);
        if self.urgent.len() > pace.urgent_keeps_up.max(1) {
            // Problems first, then arrival order; what does not fit waits for the next one.
            let mut all: Vec<Queued<T>> = self.urgent.drain(..).collect();
            all.sort_by_key(|q| urgency_rank(q.alert.kind));
            let rest = all.split_off(all.len().min(max_digest));
            self.urgent.extend(rest);
            return Some(Next::UrgentDigest(all));
        }
        let first_problem = self
            .urgent
            .iter()
            .position(|q| urgency_rank(q.alert.kind) == 0)
            .unwrap_or(0);
        if let Some(u) = self.urgent.remove(first_problem) {
            return Some(Next::One(u));
        }
        if self.routine.len() > pace.keeps_up.max(1) {
            let n = self.routine.len().min(max_digest);
            return Some(Next::Digest(self.routine.drain(..n).collect()));
        }
        self.routine.pop_front().map(Next::One)
    }

    /// The oldest `at` (e.g. when an alert was written) among the queued events.
    pub fn oldest(&self, at: impl Fn(&T) -> i64) -> Option<i64> {
        // Urgent events leave out of order, so look at all of them (there are few: they are
        // folded beyond what a few seconds can post); routine ones leave oldest first.
        self.urgent
            .iter()
            .chain(self.routine.front())
            .map(|q| at(&q.ticket))
            .min()
    }
}

fn kind_group(kind: AlertKind) -> (u8, &'static str, &'static str) {
    match kind {
        // Its own headline, at the top: someone has to act on it.
        AlertKind::PaymentFailed => (0, "🚨", "failed payments"),
        AlertKind::OrderPlaced
        | AlertKind::OrderPaid
        | AlertKind::OrderStatusChanged
        | AlertKind::OrderRefunded
        | AlertKind::HighValueOrder
        | AlertKind::FirstOrder => (1, "🛒", "order events"),
        AlertKind::StockLow | AlertKind::OutOfStock | AlertKind::BackInStock => {
            (2, "📦", "stock changes")
        }
        AlertKind::ReviewPosted | AlertKind::NegativeReview => (3, "⭐", "reviews"),
        AlertKind::SegmentChanged
        | AlertKind::BecameVip
        | AlertKind::ChurnRiskChanged
        | AlertKind::ReplenishmentDue => (4, "👤", "customer changes"),
        AlertKind::CustomerQuestion => (1, "🛒", "order events"),
        AlertKind::WebhookDisabled => (5, "🔌", "webhooks"),
        // Never routed (the runner acts on it instead); listed for completeness.
        AlertKind::CustomerErased => (6, "🧹", "erasures"),
    }
}

/// The line that accounts for one alert in a digest.
fn line_of(a: &Alert) -> String {
    if let Some(o) = &a.order {
        let what = match a.kind {
            // Status slugs are the shop's own (plugins add them): escaped like every value.
            AlertKind::OrderStatusChanged => format!(
                "{} → {}",
                escape_mrkdwn(o.previous_status.as_deref().unwrap_or("?")),
                escape_mrkdwn(&o.status)
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

/// One message for urgent alerts that arrived faster than the channel can post them: a digest
/// under an urgent banner.
pub fn urgent_digest(alerts: &[&Alert], window_secs: u64) -> Message {
    let mut m = digest(alerts, window_secs);
    let banner = format!(
        ":rotating_light: *Urgent* — {} alerts arrived faster than this channel can post them one by one",
        alerts.len()
    );
    // In the headline section rather than a block of its own: the digest may already use
    // every block Slack allows.
    let headline = m.blocks[0]["text"]["text"].as_str().unwrap_or_default();
    m.blocks[0]["text"]["text"] = json!(blocks::cut(
        &format!("{banner}\n{headline}"),
        blocks::MAX_SECTION_TEXT
    ));
    m.text = blocks::cut(&format!("Urgent: {}", m.text), blocks::MAX_FALLBACK);
    m
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::slack::examples::order_alert;

    fn queued(n: i64, priority: Priority) -> Queued<i64> {
        queued_kind(n, priority, AlertKind::OrderPlaced)
    }

    fn queued_kind(n: i64, priority: Priority, kind: AlertKind) -> Queued<i64> {
        Queued {
            priority,
            alert: Arc::new(order_alert(n, kind, "100.00")),
            ticket: n,
        }
    }

    /// Routine folding after `keeps_up`, urgent folding after 5.
    fn pace(keeps_up: usize, max_digest: usize) -> Pace {
        Pace {
            keeps_up,
            urgent_keeps_up: 5,
            max_digest,
        }
    }

    #[test]
    fn a_failed_payment_never_waits_behind_high_value_orders_and_an_urgent_flood_is_folded() {
        let mut q = ChannelQueue::default();
        for n in 0..3 {
            q.push(queued_kind(n, Priority::Urgent, AlertKind::HighValueOrder));
        }
        q.push(queued_kind(7, Priority::Urgent, AlertKind::PaymentFailed));
        // Within what the channel posts in a few seconds: one by one, the problem first.
        assert!(matches!(q.next(pace(20, 200)), Some(Next::One(u)) if u.ticket == 7));
        assert!(matches!(q.next(pace(20, 200)), Some(Next::One(u)) if u.ticket == 0));

        // A flash sale's worth of high-value orders with two failed payments among them.
        for n in 10..310 {
            let kind = if n == 150 || n == 290 {
                AlertKind::PaymentFailed
            } else {
                AlertKind::HighValueOrder
            };
            q.push(queued_kind(n, Priority::Urgent, kind));
        }
        let Some(Next::UrgentDigest(first)) = q.next(pace(20, 200)) else {
            panic!("an urgent backlog beyond a few seconds is folded")
        };
        assert_eq!(first.len(), 200);
        assert_eq!(
            first.iter().take(2).map(|x| x.ticket).collect::<Vec<_>>(),
            vec![150, 290],
            "failed payments lead the first urgent digest"
        );
        let Some(Next::UrgentDigest(second)) = q.next(pace(20, 200)) else {
            panic!("the rest is folded too")
        };
        let mut seen: Vec<i64> = first.iter().chain(&second).map(|x| x.ticket).collect();
        seen.extend(std::iter::from_fn(|| match q.next(pace(20, 200)) {
            Some(Next::One(u)) => Some(u.ticket),
            _ => None,
        }));
        seen.sort();
        let mut want: Vec<i64> = (1..3).chain(10..310).collect();
        want.sort();
        assert_eq!(seen, want, "every urgent alert left the queue exactly once");

        let alerts: Vec<&Alert> = first.iter().map(|x| x.alert.as_ref()).collect();
        let m = urgent_digest(&alerts, 5);
        let headline = m.blocks[0]["text"]["text"].as_str().unwrap();
        assert!(headline.contains("*Urgent*"), "{headline}");
        assert!(
            headline.find("2 failed payments").unwrap() < headline.find("order events").unwrap(),
            "{headline}"
        );
        assert!(blocks::violations(&m).is_empty());
    }

    #[test]
    fn a_shops_own_status_slug_is_escaped_in_a_digest_line() {
        let mut a = order_alert(1, AlertKind::OrderStatusChanged, "10.00");
        let o = a.order.as_mut().unwrap();
        o.previous_status = Some("<!channel>".into());
        o.status = "*paid*&<http://x|y>".into();
        let line = line_of(&a);
        assert!(
            !line.contains("<!channel>") && !line.contains("<http"),
            "{line}"
        );
        assert!(line.contains("&lt;!channel&gt;"), "{line}");
    }

    #[test]
    fn the_oldest_waiting_alert_is_found_among_urgent_and_routine_ones() {
        let mut q = ChannelQueue::default();
        assert_eq!(q.oldest(|t| *t), None);
        q.push(queued(50, Priority::Normal));
        q.push(queued(60, Priority::Normal));
        q.push(queued_kind(40, Priority::Urgent, AlertKind::HighValueOrder));
        q.push(queued_kind(30, Priority::Urgent, AlertKind::HighValueOrder));
        assert_eq!(q.oldest(|t| *t), Some(30));
    }

    #[test]
    fn urgent_events_go_first_and_alone_and_routine_ones_fold_only_when_behind() {
        let mut q = ChannelQueue::default();
        for n in 0..3 {
            q.push(queued(n, Priority::Normal));
        }
        q.push(queued(99, Priority::Urgent));
        // Keeping up (3 ≤ 20): one message each, the urgent one first.
        assert!(matches!(q.next(pace(20, 200)), Some(Next::One(u)) if u.ticket == 99));
        assert!(matches!(q.next(pace(20, 200)), Some(Next::One(u)) if u.ticket == 0));
        for n in 3..50 {
            q.push(queued(n, Priority::Normal));
        }
        q.push(queued(100, Priority::Urgent));
        assert!(matches!(q.next(pace(20, 200)), Some(Next::One(u)) if u.ticket == 100));
        // Behind: the routine backlog is folded, at most max_digest a message.
        let Some(Next::Digest(d)) = q.next(pace(20, 30)) else {
            panic!("expected a digest")
        };
        assert_eq!(
            d.iter().map(|x| x.ticket).collect::<Vec<_>>(),
            (1..31).collect::<Vec<_>>()
        );
        let mut rest = Vec::new();
        while let Some(n) = q.next(pace(20, 30)) {
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
