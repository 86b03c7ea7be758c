//! The CRM's request budget: so many requests per rolling 10 seconds and per UTC day, shared
//! with every other app of the account, which the CRM's rate-limit headers reveal.
//!
//! A request counts against the window from when it is sent until 10 seconds after its answer:
//! however its arrival at the CRM is delayed, the CRM never sees more than the budget within
//! any 10 seconds. No clock reads here; callers pass `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

/// What the CRM said about its limits in a response's headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests left in the current rolling window.
    pub window_remaining: Option<u32>,
    pub daily_remaining: Option<u64>,
}

#[derive(Debug)]
pub struct Budget {
    per_window: u32,
    window: Duration,
    per_day: u64,
    /// Requests counted in the window: `None` while in flight, else when answered.
    slots: VecDeque<(u64, Option<Instant>)>,
    next: u64,
    day: Option<NaiveDate>,
    used_today: u64,
    daily_remaining: Option<u64>,
}

impl Budget {
    pub fn new(per_window: u32, window: Duration, per_day: u64) -> Budget {
        Budget {
            per_window,
            window,
            per_day,
            slots: VecDeque::new(),
            next: 0,
            day: None,
            used_today: 0,
            daily_remaining: None,
        }
    }

    fn expire(&mut self, now: Instant) {
        let window = self.window;
        self.slots
            .retain(|(_, answered)| answered.is_none_or(|t| t + window > now));
    }

    fn roll_day(&mut self, today: NaiveDate) {
        if self.day != Some(today) {
            self.day = Some(today);
            self.used_today = 0;
            self.daily_remaining = None;
        }
    }

    /// A ticket to send one request now, or how long to wait for one.
    pub fn try_acquire(&mut self, now: Instant, today: NaiveDate) -> Result<u64, Duration> {
        self.expire(now);
        self.roll_day(today);
        if self.day_remaining() == 0 {
            return Err(Duration::from_secs(60));
        }
        if self.slots.len() as u32 >= self.per_window {
            // The first answered slot to leave the window; in-flight ones cannot be predicted.
            let wait = self
                .slots
                .iter()
                .filter_map(|(_, t)| t.map(|t| (t + self.window).saturating_duration_since(now)))
                .min()
                .unwrap_or(Duration::from_millis(50));
            return Err(wait.max(Duration::from_millis(1)));
        }
        let id = self.next;
        self.next += 1;
        self.slots.push_back((id, None));
        self.used_today += 1;
        self.daily_remaining = self.daily_remaining.map(|r| r.saturating_sub(1));
        Ok(id)
    }

    /// The request of `ticket` was answered (or failed) at `now`.
    pub fn release(&mut self, ticket: u64, now: Instant, limits: RateLimits) {
        if let Some(slot) = self.slots.iter_mut().find(|(id, _)| *id == ticket) {
            slot.1 = Some(now);
        }
        self.observe(now, limits);
    }

    /// Believes the CRM when it has less left than we think: other apps share the budget.
    pub fn observe(&mut self, now: Instant, limits: RateLimits) {
        self.expire(now);
        if let Some(left) = limits.window_remaining {
            let ours = self.per_window.saturating_sub(self.slots.len() as u32);
            for _ in left..ours {
                let id = self.next;
                self.next += 1;
                self.slots.push_back((id, Some(now)));
            }
        }
        if let Some(d) = limits.daily_remaining {
            self.daily_remaining = Some(self.daily_remaining.map_or(d, |r| r.min(d)));
        }
    }

    /// A 429 for the rolling window: nothing more goes until the window has passed.
    pub fn exhausted(&mut self, now: Instant) {
        self.observe(
            now,
            RateLimits {
                window_remaining: Some(0),
                daily_remaining: None,
            },
        );
    }

    /// A 429 for the day.
    pub fn exhausted_today(&mut self) {
        self.daily_remaining = Some(0);
    }

    pub fn window_remaining(&mut self, now: Instant) -> u32 {
        self.expire(now);
        self.per_window.saturating_sub(self.slots.len() as u32)
    }

    pub fn day_remaining(&self) -> u64 {
        let ours = self.per_day.saturating_sub(self.used_today);
        self.daily_remaining.map_or(ours, |d| d.min(ours))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    #[test]
    fn a_request_counts_until_ten_seconds_after_its_answer() {
        let t0 = Instant::now();
        let mut b = Budget::new(2, Duration::from_secs(10), 1000);
        let a = b.try_acquire(t0, day()).unwrap();
        let c = b.try_acquire(t0, day()).unwrap();
        assert!(b.try_acquire(t0, day()).is_err(), "two in flight: full");
        b.release(a, t0 + Duration::from_secs(1), RateLimits::default());
        let wait = b
            .try_acquire(t0 + Duration::from_secs(2), day())
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(9), "until 10 s after the answer");
        assert!(b.try_acquire(t0 + Duration::from_secs(11), day()).is_ok());
        assert!(b.try_acquire(t0 + Duration::from_secs(11), day()).is_err());
        b.release(c, t0 + Duration::from_secs(11), RateLimits::default());
        assert_eq!(b.window_remaining(t0 + Duration::from_secs(21)), 1);
    }

    #[test]
    fn the_crm_saying_less_is_left_is_believed() {
        let t0 = Instant::now();
        let mut b = Budget::new(190, Duration::from_secs(10), 1000);
        let a = b.try_acquire(t0, day()).unwrap();
        b.release(
            a,
            t0,
            RateLimits {
                window_remaining: Some(10),
                daily_remaining: Some(500),
            },
        );
        assert_eq!(b.window_remaining(t0), 10);
        assert_eq!(b.day_remaining(), 500);
        assert_eq!(b.window_remaining(t0 + Duration::from_secs(10)), 190);
        b.exhausted(t0 + Duration::from_secs(10));
        assert!(b.try_acquire(t0 + Duration::from_secs(15), day()).is_err());
    }

    #[test]
    fn the_day_budget_stops_requests_and_a_new_day_restores_it() {
        let t0 = Instant::now();
        let mut b = Budget::new(100, Duration::from_secs(10), 2);
        b.try_acquire(t0, day()).unwrap();
        b.try_acquire(t0, day()).unwrap();
        assert!(b.try_acquire(t0, day()).is_err());
        let tomorrow = day().succ_opt().unwrap();
        assert!(b.try_acquire(t0, tomorrow).is_ok());
        b.exhausted_today();
        assert!(b.try_acquire(t0, tomorrow).is_err());
    }
}
