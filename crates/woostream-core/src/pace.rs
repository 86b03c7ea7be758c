//! Rate limits on the operating system's monotonic clock.
//!
//! governor's default clock reads the CPU's time-stamp counter, calibrated once at process
//! start; on a busy or virtualised machine that calibration can be off, and time then runs
//! fast: a backfill resumed on a loaded 2-core machine made up to 78 requests in a second
//! against a limit of 40. `std::time::Instant` costs a little more per check and is never
//! wrong, and a limit that protects a shop or keeps within Slack's must hold exactly.

use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// A direct (unkeyed) limiter on the monotonic clock.
pub type Limiter =
    RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<std::time::Instant>>;

pub fn limiter(quota: Quota) -> Limiter {
    RateLimiter::direct_with_clock(quota, MonotonicClock)
}
