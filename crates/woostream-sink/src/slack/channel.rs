//! One task per Slack channel: its queue, its rate limit, its threads. A channel that is slow,
//! rate-limited or refusing never holds up the others.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::Quota;
use rand::Rng;
use tokio::sync::mpsc;
use woostream_core::config::slack::{Priority, SlackConfig};
use woostream_core::contract::enriched::Alert;
use woostream_core::contract::sink_records::DeliveryOutcome;
use woostream_core::pace::{self, Limiter};

use super::blocks::Message;
use super::client::{Destination, Failure, Poster};
use super::digest::{self, ChannelQueue, Next, Pace, Queued};
use super::metrics::Metrics;
use super::rules::Rules;
use super::template;
use tokio_util::sync::CancellationToken;
use woostream_core::retry::{self, Failed, Policy, Refusal, RetryLogic};

/// Where an alert came from, to commit its offset once every channel is done with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub partition: i32,
    pub offset: i64,
    pub rule: usize,
    /// Kafka timestamp of the alert record (ms), for the latency histogram.
    pub written_ms: i64,
    /// The personal fields as Kafka has them (sealed), when the alert carries them opened: a
    /// dead letter keeps the sealed forms.
    pub sealed: SealedForms,
}

/// An alert's personal fields as Kafka has them (sealed): the customer's initial, the
/// customer note, a review's text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SealedForms {
    pub initial: Option<String>,
    pub note: Option<String>,
    pub review_text: Option<String>,
}

impl SealedForms {
    /// Puts the sealed forms back into an opened alert (for a dead letter).
    pub fn restore(&self, alert: &mut woostream_core::contract::enriched::Alert) {
        if let (Some(c), Some(sealed)) = (alert.customer.as_mut(), &self.initial) {
            c.first_name_initial = Some(sealed.clone());
        }
        if let (Some(q), Some(sealed)) = (alert.question.as_mut(), &self.note) {
            q.note = sealed.clone();
        }
        if let (Some(r), Some(sealed)) = (alert.review.as_mut(), &self.review_text) {
            r.text = sealed.clone();
        }
    }
}

/// What happened to some alerts in one channel.
#[derive(Debug)]
pub struct Done {
    pub channel: String,
    pub alerts: Vec<(Arc<Alert>, Ticket, Priority)>,
    pub outcome: DeliveryOutcome,
    pub message_ts: Option<String>,
    pub thread_ts: Option<String>,
    pub reason: Option<String>,
    pub attempts: u32,
}

/// Shared by every channel.
pub struct Shared {
    pub rules: Arc<Rules>,
    pub poster: Poster,
    pub workspace: Limiter,
    pub metrics: Metrics,
    /// Shop id → admin link pattern with `{order_id}`.
    pub admin_urls: HashMap<String, String>,
    pub per_second: f64,
    pub burst: u32,
    pub digest_after_secs: u64,
    pub digest_max_events: usize,
    pub urgent_within_secs: u64,
    /// How transient failures are retried before the alert is dead-lettered.
    pub retry: Policy,
}

impl Shared {
    pub fn workspace_limiter(config: &SlackConfig) -> Limiter {
        let per_minute = NonZeroU32::new(config.workspace_per_minute.max(1)).expect("max(1)");
        pace::limiter(Quota::per_minute(per_minute))
    }

    /// How many messages a channel can post one by one before it folds: within the digest
    /// delay for routine events, within `urgent_within_secs` for urgent ones.
    fn pace(&self) -> Pace {
        Pace {
            keeps_up: (self.per_second * self.digest_after_secs as f64).floor() as usize,
            urgent_keeps_up: (self.per_second * self.urgent_within_secs as f64).floor() as usize,
            max_digest: self.digest_max_events,
        }
    }
}

pub struct Channel {
    pub name: String,
    pub destination: Destination,
    /// (shop, order id) → ts of the order's first message here.
    pub threads: HashMap<(String, i64), String>,
}

impl Channel {
    /// Runs until `incoming` closes, reporting every alert's outcome on `done`.
    pub async fn run(
        mut self,
        shared: Arc<Shared>,
        mut incoming: mpsc::UnboundedReceiver<Queued<Ticket>>,
        done: mpsc::UnboundedSender<Done>,
        stopping: Arc<AtomicBool>,
    ) {
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / shared.per_second))
            .expect("a positive rate (checked at start-up)")
            .allow_burst(NonZeroU32::new(shared.burst.max(1)).expect("max(1)"));
        let limiter = pace::limiter(quota);
        let depth = shared.metrics.queue_depth.with_label_values(&[&self.name]);
        let behind = shared
            .metrics
            .behind_seconds
            .with_label_values(&[&self.name]);
        let mut falling_behind = false;
        let mut queue: ChannelQueue<Ticket> = ChannelQueue::default();
        loop {
            // How long the oldest waiting alert has been waiting since it was written; a log
            // line when that passes the digest delay, and one when the channel caught up.
            let now_ms = chrono::Utc::now().timestamp_millis();
            let waited = queue
                .oldest(|t| t.written_ms)
                .map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0);
            behind.set(waited);
            let late = waited > shared.digest_after_secs.max(1) as f64;
            if late != falling_behind {
                falling_behind = late;
                if late {
                    tracing::warn!(channel = %self.name, queued = queue.len(), oldest_waiting_secs = waited as u64, "Slack channel is falling behind: alerts wait longer than the digest delay.");
                } else {
                    tracing::info!(channel = %self.name, "Slack channel caught up.");
                }
            }
            // On shutdown, what is queued stays unposted (and uncommitted) for the next start.
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            while let Ok(q) = incoming.try_recv() {
                self.take_in(q, &mut queue, &done);
            }
            if queue.is_empty() {
                depth.set(0);
                match incoming.recv().await {
                    Some(q) => self.take_in(q, &mut queue, &done),
                    None => return,
                }
                continue;
            }
            depth.set(queue.len() as i64);
            limiter.until_ready().await;
            shared.workspace.until_ready().await;
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            // What arrived while waiting counts towards the decision to fold.
            while let Ok(q) = incoming.try_recv() {
                self.take_in(q, &mut queue, &done);
            }
            let Some(next) = queue.next(shared.pace()) else {
                continue;
            };
            depth.set(queue.len() as i64);
            let report = match next {
                Next::One(q) => self.post_one(&shared, &limiter, q).await,
                Next::Digest(items) => self.post_digest(&shared, &limiter, items, false).await,
                Next::UrgentDigest(items) => self.post_digest(&shared, &limiter, items, true).await,
            };
            if done.send(report).is_err() {
                return;
            }
        }
    }

    /// Queues an alert; an erasure is acted on at once: the person's order threads are
    /// forgotten and their waiting alerts dropped (reported as skipped), then the erasure is
    /// reported done.
    fn take_in(
        &mut self,
        q: Queued<Ticket>,
        queue: &mut ChannelQueue<Ticket>,
        done: &mpsc::UnboundedSender<Done>,
    ) {
        let Some(erasure) = q.alert.erasure.clone() else {
            queue.push(q);
            return;
        };
        let shop = q.alert.shop_id.clone();
        let customer = q.alert.customer.as_ref().map(|c| c.customer.clone());
        let orders: std::collections::HashSet<i64> = erasure.order_ids.iter().copied().collect();
        let before = self.threads.len();
        self.threads
            .retain(|(s, order), _| *s != shop || !orders.contains(order));
        let forgotten = before - self.threads.len();
        let dropped = queue.remove_where(|a| {
            a.shop_id == shop
                && (a
                    .order
                    .as_ref()
                    .is_some_and(|o| orders.contains(&o.order_id))
                    || a.customer.as_ref().map(|c| &c.customer) == customer.as_ref())
        });
        let dropped_count = dropped.len();
        if !dropped.is_empty() {
            let _ = done.send(Done {
                channel: self.name.clone(),
                alerts: dropped
                    .into_iter()
                    .map(|d| (d.alert, d.ticket, d.priority))
                    .collect(),
                outcome: DeliveryOutcome::Skipped,
                message_ts: None,
                thread_ts: None,
                reason: Some("its customer was erased".into()),
                attempts: 0,
            });
        }
        let _ = done.send(Done {
            channel: self.name.clone(),
            alerts: vec![(q.alert, q.ticket, q.priority)],
            outcome: DeliveryOutcome::Erased,
            message_ts: None,
            thread_ts: None,
            reason: Some(format!(
                "{forgotten} order threads forgotten, {dropped_count} waiting alerts dropped"
            )),
            attempts: 0,
        });
    }

    async fn post_one(&mut self, shared: &Shared, limiter: &Limiter, q: Queued<Ticket>) -> Done {
        let rule = &shared.rules.rules[q.ticket.rule];
        let alert = q.alert.clone();
        let thread_key = alert
            .order
            .as_ref()
            .filter(|_| rule.thread)
            .map(|o| (alert.shop_id.clone(), o.order_id));
        let thread_ts = thread_key
            .as_ref()
            .and_then(|k| self.threads.get(k))
            .cloned();
        let admin_url = shared.admin_urls.get(&alert.shop_id).cloned();
        let rendered = template::message_for(&shared.rules, q.ticket.rule, &alert, admin_url);
        let items = vec![(alert, q.ticket, q.priority)];
        let message = match rendered {
            Ok(m) => m,
            Err(e) => return self.finish(shared, items, Err((e, 0)), None),
        };
        let result = self
            .post(shared, limiter, &message, thread_ts.as_deref())
            .await;
        if let (Ok((Some(ts), _)), Some(key), None) = (&result, thread_key, &thread_ts) {
            self.threads.insert(key, ts.clone());
        }
        self.finish(shared, items, result, thread_ts)
    }

    async fn post_digest(
        &mut self,
        shared: &Shared,
        limiter: &Limiter,
        queued: Vec<Queued<Ticket>>,
        urgent: bool,
    ) -> Done {
        let alerts: Vec<&Alert> = queued.iter().map(|q| q.alert.as_ref()).collect();
        let message = if urgent {
            digest::urgent_digest(&alerts, shared.urgent_within_secs)
        } else {
            digest::digest(&alerts, shared.digest_after_secs)
        };
        shared
            .metrics
            .digests
            .with_label_values(&[&self.name])
            .inc();
        let result = self.post(shared, limiter, &message, None).await;
        let items = queued
            .into_iter()
            .map(|q| (q.alert, q.ticket, q.priority))
            .collect();
        let mut report = self.finish(shared, items, result, None);
        if report.outcome == DeliveryOutcome::Posted {
            report.outcome = DeliveryOutcome::Digested;
        }
        report
    }

    /// Posts with Slack's rules: waits out 429s, retries transient failures with backoff and
    /// jitter, gives up at once on permanent ones. The error carries the attempts made.
    async fn post(
        &self,
        shared: &Shared,
        limiter: &Limiter,
        message: &Message,
        thread_ts: Option<&str>,
    ) -> Result<(Option<String>, u32), (String, u32)> {
        let logic = SlackRetry {
            shared,
            channel: &self.name,
        };
        // A post under way is finished, not cut short by a shutdown: its outcome is recorded.
        let never = CancellationToken::new();
        let posted = retry::drive(shared.retry, &never, &logic, |call| async move {
            if call > 1 {
                limiter.until_ready().await;
            }
            shared
                .poster
                .post(&self.name, &self.destination, message, thread_ts)
                .await
        })
        .await;
        match posted {
            Ok(done) => Ok(done),
            Err(Failed::Rejected { error, attempts }) => Err((error.to_string(), attempts)),
            Err(Failed::GaveUp { last, attempts }) => Err((
                format!("gave up after {attempts} attempts: {last}"),
                attempts,
            )),
            Err(Failed::Stopped) => Err(("stopping".into(), 0)),
        }
    }

    fn finish(
        &self,
        shared: &Shared,
        alerts: Vec<(Arc<Alert>, Ticket, Priority)>,
        result: Result<(Option<String>, u32), (String, u32)>,
        thread_ts: Option<String>,
    ) -> Done {
        let (outcome, message_ts, reason, attempts) = match result {
            Ok((ts, attempts)) => (DeliveryOutcome::Posted, ts, None, attempts),
            Err((reason, attempts)) => {
                tracing::warn!(channel = %self.name, %reason, alerts = alerts.len(), "Slack refused a message; dead-lettering its alerts.");
                (DeliveryOutcome::DeadLettered, None, Some(reason), attempts)
            }
        };
        let label = if alerts.len() > 1 && outcome == DeliveryOutcome::Posted {
            "digest"
        } else {
            outcome.as_str()
        };
        shared
            .metrics
            .messages
            .with_label_values(&[&self.name, label])
            .inc();
        Done {
            channel: self.name.clone(),
            alerts,
            outcome,
            message_ts,
            thread_ts,
            reason,
            attempts,
        }
    }
}

/// What Slack's answers mean for another attempt.
struct SlackRetry<'a> {
    shared: &'a Shared,
    channel: &'a str,
}

impl RetryLogic<Failure> for SlackRetry<'_> {
    fn classify(&self, failure: &Failure) -> Refusal {
        match failure {
            // A 429 without Retry-After: Slack's own client waits a second.
            Failure::RateLimited(wait) => {
                Refusal::RateLimited(Some(wait.unwrap_or(Duration::from_secs(1))))
            }
            other => other.clone(),
        }
    }

    fn before_wait(&self, failure: &Failure, _: &Refusal, wait: Duration) -> Duration {
        let metrics = &self.shared.metrics;
        match failure {
            Failure::RateLimited(_) => {
                metrics
                    .rate_limited
                    .with_label_values(&[self.channel])
                    .inc();
                // Slack's own client waits Retry-After plus a little jitter.
                wait + Duration::from_secs_f64(rand::rng().random_range(0.0..0.25))
            }
            Failure::Retry(e) => {
                metrics
                    .retries
                    .with_label_values(&[self.channel, e.split(':').next().unwrap_or("other")])
                    .inc();
                tracing::warn!(channel = %self.channel, error = %e, "Slack post failed; retrying.");
                wait
            }
            Failure::Rejected(_) => wait,
        }
    }
}
