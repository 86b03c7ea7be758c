//! One request to the CRM within its budget: retried until answered or refused, and a batch
//! refused as a whole split until the bad record stands alone.

use super::Sender;
use crate::crm::plan::{Interrupted, Refusal};
use chrono::Utc;
use futures::StreamExt;
use std::future::Future;
use std::time::{Duration, Instant};
use woostream_core::contract::sink_records::CrmAttempt;
use woostream_core::privacy::redact::hide_emails;
use woostream_core::retry::{self, Failed, Policy, RetryLogic};
use woostream_hubspot::api::{CallError, Crm, Reply, Written};
use woostream_hubspot::budget::Budget;

/// Attempts kept per change: the newest.
pub(super) const ATTEMPTS_KEPT: usize = 20;

pub(super) fn attempt(status: Option<u16>, error: String, size: usize) -> CrmAttempt {
    CrmAttempt {
        at: Utc::now(),
        http_status: status.map(i32::from),
        error: hide_emails(&error),
        batch_size: size as i32,
    }
}

pub(super) fn push_attempts(into: &mut Vec<CrmAttempt>, new: &[CrmAttempt]) {
    into.extend_from_slice(new);
    if into.len() > ATTEMPTS_KEPT {
        into.drain(..into.len() - ATTEMPTS_KEPT);
    }
}

pub(crate) enum Stop {
    /// The CRM refused the whole request.
    Rejected(Refusal),
    Shutdown,
}

impl<C: Crm> Sender<C> {
    pub(super) fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget.lock().expect("CRM budget")
    }

    /// One request within the budget, retried until it is answered or refused.
    pub(crate) async fn call<F, Fut>(
        &self,
        endpoint: &str,
        size: usize,
        attempts: &mut Vec<CrmAttempt>,
        send: F,
    ) -> Result<Reply, Stop>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Reply, CallError>>,
    {
        // A CRM that does not answer is waited for, never given up on: the change stays
        // uncommitted until it is delivered or refused.
        let policy = Policy::new(Duration::from_millis(500), self.max_backoff);
        let logic = CrmRetry {
            sender: self,
            endpoint,
        };
        let tried = std::sync::Mutex::new(Vec::new());
        let answered = retry::drive(policy, &self.stop, &logic, |_| async {
            // The budget is a pre-call hook: a request waits for its ticket.
            let ticket = loop {
                let r = self
                    .budget()
                    .try_acquire(Instant::now(), Utc::now().date_naive());
                match r {
                    Ok(t) => break t,
                    Err(wait) => {
                        if retry::pause(wait, &self.stop).await.is_err() {
                            return Err(CrmFailure::Stopped);
                        }
                    }
                }
            };
            self.metrics
                .batch_size
                .with_label_values(&[endpoint])
                .observe(size as f64);
            let result = send().await;
            let now = Instant::now();
            let limits = match &result {
                Ok(r) => r.limits,
                Err(e) => e.limits(),
            };
            {
                let mut b = self.budget();
                b.release(ticket, now, limits);
                self.metrics
                    .budget_remaining
                    .with_label_values(&["10s"])
                    .set(b.window_remaining(now) as i64);
                self.metrics
                    .budget_remaining
                    .with_label_values(&["day"])
                    .set(b.day_remaining() as i64);
            }
            let status = match &result {
                Ok(r) => r.status.to_string(),
                Err(e) => e.status().map_or("network".into(), |s| s.to_string()),
            };
            self.metrics
                .requests
                .with_label_values(&[endpoint, &status])
                .inc();
            result.map_err(|e| {
                tried
                    .lock()
                    .expect("attempts lock")
                    .push(attempt(e.status(), e.to_string(), size));
                CrmFailure::Call(e)
            })
        })
        .await;
        push_attempts(attempts, &tried.into_inner().expect("attempts lock"));
        match answered {
            Ok((reply, _)) => Ok(reply),
            Err(Failed::Rejected {
                error:
                    CrmFailure::Call(CallError::Rejected {
                        status,
                        category,
                        message,
                        ..
                    }),
                ..
            }) => Err(Stop::Rejected(Refusal {
                reason: hide_emails(&message),
                category,
                status: Some(status),
            })),
            // Nothing else is refused for good, and there is no attempt limit.
            Err(_) => Err(Stop::Shutdown),
        }
    }

    /// Sends `n` records in groups, splitting any group the CRM refuses as a whole until the
    /// bad record stands alone. `send(indices)` sends those records.
    pub(super) async fn isolate<F, Fut>(
        &self,
        endpoint: &str,
        attempts: &mut [Vec<CrmAttempt>],
        send: F,
    ) -> Result<Vec<Result<Written, Refusal>>, Interrupted>
    where
        F: Fn(Vec<usize>) -> Fut,
        Fut: Future<Output = Result<Reply, CallError>>,
    {
        let n = attempts.len();
        let mut out: Vec<Option<Result<Written, Refusal>>> = vec![None; n];
        let mut groups = vec![(0..n).collect::<Vec<usize>>()];
        while let Some(group) = groups.pop() {
            let mut tried = Vec::new();
            let result = self
                .call(endpoint, group.len(), &mut tried, || send(group.clone()))
                .await;
            for &i in &group {
                push_attempts(&mut attempts[i], &tried);
            }
            match result {
                Ok(reply) => {
                    for (&i, w) in group.iter().zip(reply.written) {
                        out[i] = Some(w.map_err(|e| {
                            push_attempts(
                                &mut attempts[i],
                                &[attempt(Some(reply.status), e.message.clone(), group.len())],
                            );
                            Refusal {
                                reason: hide_emails(&e.message),
                                category: e.category,
                                status: e.status,
                            }
                        }));
                    }
                }
                Err(Stop::Rejected(refusal)) if group.len() > 1 => {
                    tracing::info!(
                        endpoint,
                        size = group.len(),
                        status = refusal.status,
                        error = %refusal.reason,
                        "The CRM refused a batch; splitting it to find the record at fault."
                    );
                    let (a, b) = group.split_at(group.len() / 2);
                    groups.push(b.to_vec());
                    groups.push(a.to_vec());
                }
                Err(Stop::Rejected(refusal)) => out[group[0]] = Some(Err(refusal)),
                Err(Stop::Shutdown) => return Err(Interrupted),
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.expect("every record answered"))
            .collect())
    }

    /// Sends `items` in batches, `concurrency` requests at a time, each batch split on refusal
    /// until the bad record stands alone. `send(batch)` sends one batch.
    pub(super) async fn in_batches<T, F, Fut>(
        &self,
        endpoint: &str,
        items: &[T],
        attempts: &mut [Vec<CrmAttempt>],
        send: F,
    ) -> Result<Vec<Result<Written, Refusal>>, Interrupted>
    where
        T: Clone,
        F: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = Result<Reply, CallError>>,
    {
        let size = self.batch_size;
        // Owned chunks: the futures must not hold borrows of a lifetime the stream cannot name.
        let chunks: Vec<(usize, Vec<T>, Vec<Vec<CrmAttempt>>)> = items
            .chunks(size)
            .zip(attempts.chunks(size))
            .enumerate()
            .map(|(k, (chunk, tried))| (k * size, chunk.to_vec(), tried.to_vec()))
            .collect();
        let send = &send;
        let mut results = futures::stream::iter(chunks)
            .map(|(start, chunk, mut tried)| async move {
                let r = self
                    .isolate(endpoint, &mut tried, |idx| {
                        send(idx.iter().map(|&i| chunk[i].clone()).collect())
                    })
                    .await;
                (start, r, tried)
            })
            .buffer_unordered(self.concurrency);
        let mut out: Vec<Option<Result<Written, Refusal>>> = vec![None; items.len()];
        let mut interrupted = false;
        while let Some((start, r, tried)) = results.next().await {
            attempts[start..start + tried.len()].clone_from_slice(&tried);
            match r {
                Ok(ws) => {
                    for (k, w) in ws.into_iter().enumerate() {
                        out[start + k] = Some(w);
                    }
                }
                Err(Interrupted) => interrupted = true,
            }
        }
        if interrupted {
            return Err(Interrupted);
        }
        Ok(out.into_iter().map(|o| o.expect("answered")).collect())
    }
}

/// One attempt's failure: the CRM's answer, or the shutdown while waiting for a ticket.
enum CrmFailure {
    Call(CallError),
    Stopped,
}

/// What the CRM's answers mean for another attempt, and what each costs the budget.
struct CrmRetry<'a, C: Crm> {
    sender: &'a Sender<C>,
    endpoint: &'a str,
}

impl<C: Crm> RetryLogic<CrmFailure> for CrmRetry<'_, C> {
    fn classify(&self, failure: &CrmFailure) -> retry::Refusal {
        match failure {
            CrmFailure::Stopped => retry::Refusal::Rejected("stopping".into()),
            CrmFailure::Call(CallError::RateLimited {
                daily, retry_after, ..
            }) => retry::Refusal::RateLimited(Some(if *daily {
                let midnight = (Utc::now().date_naive() + chrono::Days::new(1))
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight")
                    .and_utc();
                (midnight - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::from_secs(60))
            } else {
                retry_after.unwrap_or(Duration::from_secs(1))
            })),
            CrmFailure::Call(e @ CallError::Transient { .. }) => {
                retry::Refusal::Retry(hide_emails(&e.to_string()))
            }
            CrmFailure::Call(CallError::Rejected { message, .. }) => {
                retry::Refusal::Rejected(hide_emails(message))
            }
        }
    }

    fn before_wait(&self, failure: &CrmFailure, _: &retry::Refusal, wait: Duration) -> Duration {
        let (metrics, endpoint) = (&self.sender.metrics, self.endpoint);
        match failure {
            CrmFailure::Call(CallError::RateLimited { daily, .. }) => {
                metrics.rate_limited.inc();
                metrics.retries.with_label_values(&["rate_limited"]).inc();
                if *daily {
                    self.sender.budget().exhausted_today();
                } else {
                    self.sender.budget().exhausted(Instant::now());
                }
                tracing::warn!(
                    endpoint,
                    wait_ms = wait.as_millis() as u64,
                    daily,
                    "The CRM answered 429; waiting."
                );
            }
            CrmFailure::Call(e) => {
                metrics.retries.with_label_values(&["transient"]).inc();
                tracing::warn!(
                    endpoint,
                    status = e.status(),
                    error = %hide_emails(&e.to_string()),
                    wait_ms = wait.as_millis() as u64,
                    "The CRM did not answer; backing off."
                );
            }
            CrmFailure::Stopped => {}
        }
        wait
    }
}
