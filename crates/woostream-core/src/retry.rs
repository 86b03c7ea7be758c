//! One retry policy for everything woostream asks of the outside world (Slack, the CRM, Kafka
//! while the spool drains): exponential backoff with jitter, an attempt limit, waits that a
//! shutdown interrupts, and `Retry-After` honoured but clamped so that a hostile or broken
//! answer cannot park a sink for a day.

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

#[cfg(test)]
mod tests {
    use super::*;

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
