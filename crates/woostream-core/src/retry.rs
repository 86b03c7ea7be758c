//! One retry policy for everything woostream asks of the outside world (Slack, the CRM, the
//! shop's REST API, Kafka while the spool drains): exponential backoff with jitter, an attempt
//! limit, waits that a shutdown interrupts, and `Retry-After` honoured but clamped so that a
//! hostile or broken answer cannot park a sink for a day.
//!
//! [`drive`] is the one retry loop: a client supplies only an attempt and a [`RetryLogic`] —
//! how a failed attempt is classified, and what it does before each wait (count, log, note a
//! spent budget) — as Vector's HTTP sinks supply a `RetryLogic` to one retry service.

use std::future::Future;

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

/// How the outside world answered an attempt, as far as retrying is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Worth another attempt after a backoff (network errors, 5xx, transient error codes).
    Retry(String),
    /// Asked to slow down (HTTP 429): wait what the answer says, then try again.
    RateLimited(Option<Duration>),
    /// Refused for good (a 4xx that retrying cannot change): dead-letter it with the reason.
    Rejected(String),
}

impl std::fmt::Display for Refusal {
    /// The reason alone, as a dead letter or an error names it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Retry(why) | Refusal::Rejected(why) => f.write_str(why),
            Refusal::RateLimited(_) => f.write_str("still rate limited (429)"),
        }
    }
}

/// The retry policy: first backoff, ceiling, and how many attempts in all (`None`: until the
/// call succeeds, is rejected, or the process stops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub first: Duration,
    pub max: Duration,
    pub max_attempts: Option<u32>,
}

impl Policy {
    pub const fn new(first: Duration, max: Duration) -> Policy {
        Policy {
            first,
            max,
            max_attempts: None,
        }
    }

    pub const fn attempts(self, max_attempts: u32) -> Policy {
        Policy {
            max_attempts: Some(max_attempts),
            ..self
        }
    }

    pub fn backoff(self) -> Backoff {
        Backoff {
            policy: self,
            failures: 0,
        }
    }
}

/// The state of one call's retries.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: Policy,
    failures: u32,
}

impl Backoff {
    /// Counts a failed attempt and returns how long to wait before the next one, or `None`
    /// when the attempts are spent. The wait doubles from `first` up to `max`, and is drawn
    /// between half and all of that ("equal jitter"), so that many callers failing at once do
    /// not come back at once, and none retries sooner than half its backoff.
    pub fn next_wait(&mut self) -> Option<Duration> {
        self.failures += 1;
        if self
            .policy
            .max_attempts
            .is_some_and(|max| self.failures >= max)
        {
            return None;
        }
        let exponent = (self.failures - 1).min(20);
        let full = self
            .policy
            .first
            .saturating_mul(1 << exponent)
            .min(self.policy.max);
        Some(full.mul_f64(rand::rng().random_range(0.5..=1.0)))
    }

    /// Attempts that failed so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success: the next failure starts from the first backoff again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The longest `Retry-After` woostream obeys; a longer one is read as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Reads a `Retry-After` value: delay-seconds (whole or, as Slack and HubSpot sometimes send,
/// fractional). `None` when absent or unreadable (an HTTP-date is not sent by these APIs);
/// clamped to [`MAX_RETRY_AFTER`].
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64())))
}

/// The process is stopping: the wait was cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stopping")]
pub struct Stopped;

/// Waits `wait`, or less if `stop` is cancelled meanwhile.
pub async fn pause(wait: Duration, stop: &CancellationToken) -> Result<(), Stopped> {
    tokio::select! {
        _ = tokio::time::sleep(wait) => Ok(()),
        _ = stop.cancelled() => Err(Stopped),
    }
}

/// What a client knows about its own failures.
pub trait RetryLogic<E> {
    /// How a failed attempt is to be treated.
    fn classify(&self, error: &E) -> Refusal;

    /// Before each wait, once the failure is classified: metrics, a log line, a budget noted
    /// as spent. Returns the wait to use (the given one by default).
    fn before_wait(&self, _error: &E, _refusal: &Refusal, wait: Duration) -> Duration {
        wait
    }
}

/// Why [`drive`] gave up. `attempts` counts the attempts that failed or were refused, not the
/// rate limits waited out.
#[derive(Debug)]
pub enum Failed<E> {
    /// Refused for good ([`Refusal::Rejected`]).
    Rejected { error: E, attempts: u32 },
    /// The policy's attempts are spent; the last failure.
    GaveUp { last: E, attempts: u32 },
    /// The process is stopping.
    Stopped,
}

/// Runs `attempt` (given its call number, from 1) until it succeeds, is refused for good, the
/// policy's attempts are spent, or `stop` is cancelled during a wait. A rate limit that says
/// how long to wait is waited out without counting as a failed attempt; every other retryable
/// failure waits the policy's backoff. Returns the value and the attempts it took (rate limits
/// waited out not counted).
pub async fn drive<T, E, F, Fut>(
    policy: Policy,
    stop: &CancellationToken,
    logic: &impl RetryLogic<E>,
    mut attempt: F,
) -> Result<(T, u32), Failed<E>>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = policy.backoff();
    let mut call = 0;
    loop {
        call += 1;
        let error = match attempt(call).await {
            Ok(value) => return Ok((value, backoff.failures() + 1)),
            Err(e) => e,
        };
        let refusal = logic.classify(&error);
        let wait = match &refusal {
            Refusal::Rejected(_) => {
                return Err(Failed::Rejected {
                    error,
                    attempts: backoff.failures() + 1,
                })
            }
            Refusal::RateLimited(Some(after)) => *after,
            Refusal::RateLimited(None) | Refusal::Retry(_) => match backoff.next_wait() {
                Some(wait) => wait,
                None => {
                    return Err(Failed::GaveUp {
                        last: error,
                        attempts: backoff.failures(),
                    })
                }
            },
        };
        let wait = logic.before_wait(&error, &refusal, wait);
        if pause(wait, stop).await.is_err() {
            return Err(Failed::Stopped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Answers scripted per attempt: "ok", "retry", "429", "429 0" (with a wait), "reject".
    struct Script(Vec<&'static str>);

    impl RetryLogic<&'static str> for Script {
        fn classify(&self, e: &&'static str) -> Refusal {
            match *e {
                "429" => Refusal::RateLimited(None),
                "429 0" => Refusal::RateLimited(Some(Duration::ZERO)),
                "reject" => Refusal::Rejected("no".into()),
                _ => Refusal::Retry("again".into()),
            }
        }
    }

    async fn run_script(
        script: Script,
        policy: Policy,
    ) -> (Result<u32, Failed<&'static str>>, u32) {
        let calls = AtomicU32::new(0);
        let stop = CancellationToken::new();
        let r = drive(policy, &stop, &script, |n| {
            calls.fetch_add(1, Ordering::Relaxed);
            let answer = script.0[(n - 1) as usize];
            async move {
                match answer {
                    "ok" => Ok(n),
                    other => Err(other),
                }
            }
        })
        .await
        .map(|(_, attempts)| attempts);
        (r, calls.load(Ordering::Relaxed))
    }

    fn quick() -> Policy {
        Policy::new(Duration::ZERO, Duration::ZERO)
    }

    #[tokio::test]
    async fn the_driver_retries_until_success_and_counts_the_attempts() {
        let (r, calls) = run_script(Script(vec!["retry", "429", "ok"]), quick()).await;
        assert_eq!(r.unwrap(), 3);
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn a_refusal_for_good_ends_at_once() {
        let (r, calls) = run_script(Script(vec!["retry", "reject", "ok"]), quick()).await;
        assert!(matches!(
            r,
            Err(Failed::Rejected {
                error: "reject",
                attempts: 2
            })
        ));
        assert_eq!(calls, 2);
    }

    #[tokio::test]
    async fn a_rate_limit_with_its_wait_is_not_a_failed_attempt() {
        // Two attempts allowed: two told waits do not spend them, the failures do.
        let script = Script(vec!["429 0", "429 0", "retry", "retry", "ok"]);
        let (r, calls) = run_script(script, quick().attempts(2)).await;
        match r {
            Err(Failed::GaveUp { last, attempts }) => {
                assert_eq!(last, "retry");
                assert_eq!(attempts, 2, "the rate limits waited out are not attempts");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(calls, 4);
    }

    #[tokio::test]
    async fn a_stop_during_a_wait_ends_the_driver() {
        let stop = CancellationToken::new();
        stop.cancel();
        let logic = Script(vec![]);
        let r: Result<((), u32), Failed<&str>> = drive(
            Policy::new(Duration::from_secs(3600), Duration::from_secs(3600)),
            &stop,
            &logic,
            |_| async { Err("retry") },
        )
        .await;
        assert!(matches!(r, Err(Failed::Stopped)));
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling_with_jitter_in_the_upper_half() {
        let mut b = Policy::new(Duration::from_millis(100), Duration::from_secs(1)).backoff();
        for full_ms in [100u64, 200, 400, 800, 1000, 1000] {
            let w = b.next_wait().expect("no attempt limit");
            assert!(
                w >= Duration::from_millis(full_ms / 2) && w <= Duration::from_millis(full_ms),
                "{w:?} outside [{}, {full_ms}] ms",
                full_ms / 2
            );
        }
        assert_eq!(b.failures(), 6);
        b.reset();
        assert!(b.next_wait().unwrap() <= Duration::from_millis(100));
    }

    #[test]
    fn attempts_are_limited_counting_the_first() {
        let mut b = Policy::new(Duration::from_millis(1), Duration::from_millis(1))
            .attempts(3)
            .backoff();
        assert!(b.next_wait().is_some(), "after attempt 1");
        assert!(b.next_wait().is_some(), "after attempt 2");
        assert_eq!(b.next_wait(), None, "attempt 3 was the last");
    }

    #[test]
    fn a_long_backoff_never_overflows() {
        let mut b = Policy::new(Duration::from_secs(1), Duration::from_secs(60)).backoff();
        for _ in 0..200 {
            assert!(b.next_wait().unwrap() <= Duration::from_secs(60));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_clamps() {
        assert_eq!(retry_after(Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(Some(" 1.5 ")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_after(Some("0")), Some(Duration::ZERO));
        assert_eq!(retry_after(Some("86400")), Some(MAX_RETRY_AFTER));
        for bad in [
            "-1",
            "soon",
            "NaN",
            "inf",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "",
        ] {
            assert_eq!(retry_after(Some(bad)), None, "{bad}");
        }
        assert_eq!(retry_after(None), None);
    }

    #[tokio::test]
    async fn a_pause_ends_early_when_the_process_stops() {
        let stop = CancellationToken::new();
        assert_eq!(pause(Duration::from_millis(10), &stop).await, Ok(()));
        let s = stop.clone();
        tokio::spawn(async move { s.cancel() });
        // An hour's wait that returns at all was cut short by the stop.
        assert_eq!(pause(Duration::from_secs(3600), &stop).await, Err(Stopped));
    }
}
