//! Resuming a partition exactly at an offset, on brokers that do not.
//!
//! Tansu 0.6 answers a fetch at an offset inside a record batch with the *next* batch: a
//! consumer resuming from a committed offset in the middle of a batch silently skips the rest
//! of it (measured: records 277..999 of a 1,000-record batch never arrive). Kafka returns the
//! whole batch and the client drops the records before the offset. This guard notices the
//! skip (the first record after resuming lies beyond the offset without anything at or before
//! it having been seen), has the caller seek further back, and drops what comes before the
//! offset. A gap the log really has (compaction, transaction markers) is recognised once a
//! record before the offset has been seen, or once reading from the beginning.
//!
//! When the offset lies in a partition's last batch, Tansu returns nothing at all: so a
//! partition that stays silent for [`STALL`] after resuming, without any record at or before
//! the offset, is sought back the same way. On Kafka that costs re-reading a few records once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::Offset;

/// Silence after which a resumed partition is read again from further back.
pub const STALL: Duration = Duration::from_secs(2);

/// What to do with a record that arrived after resuming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Process it.
    Process,
    /// Drop it: it comes before the resume offset (already processed).
    Skip,
    /// Drop it and seek the partition to this offset (0: the beginning).
    SeekTo(i64),
}

#[derive(Clone, Copy, Debug)]
struct Expectation {
    offset: i64,
    /// A record before the offset arrived since the last seek: the fetch covers it.
    seen_before: bool,
    /// How far back the last seek went.
    back: i64,
    /// When it was expected or last sought.
    since: Instant,
}

impl Expectation {
    /// The next step back: 64 records, then 4,096, then the beginning.
    fn step_back(&mut self) -> i64 {
        self.back = match self.back {
            0 => 64,
            64 => 4_096,
            _ => self.offset,
        };
        self.since = Instant::now();
        (self.offset - self.back).max(0)
    }
}

/// Per (topic, partition) resume offsets not yet confirmed.
#[derive(Debug, Default)]
pub struct ResumeGuard {
    expected: HashMap<(String, i32), Expectation>,
}

impl ResumeGuard {
    /// Expects the partition to resume at `offset` (nothing to check at 0).
    pub fn expect(&mut self, topic: &str, partition: i32, offset: i64) {
        let key = (topic.to_string(), partition);
        if offset > 0 {
            self.expected.insert(
                key,
                Expectation {
                    offset,
                    seen_before: false,
                    back: 0,
                    since: Instant::now(),
                },
            );
        } else {
            self.expected.remove(&key);
        }
    }

    /// Forgets a partition (revoked).
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.expected.remove(&(topic.to_string(), partition));
    }

    pub fn is_empty(&self) -> bool {
        self.expected.is_empty()
    }

    pub fn check(&mut self, topic: &str, partition: i32, offset: i64) -> Verdict {
        if self.expected.is_empty() {
            return Verdict::Process;
        }
        let key = (topic.to_string(), partition);
        let Some(e) = self.expected.get_mut(&key) else {
            return Verdict::Process;
        };
        if offset < e.offset {
            e.seen_before = true;
            return Verdict::Skip;
        }
        if offset == e.offset || e.seen_before || e.back >= e.offset {
            // Resumed exactly, or across a gap the log really has.
            self.expected.remove(&key);
            return Verdict::Process;
        }
        // Skipped ahead: look further back.
        Verdict::SeekTo(e.step_back())
    }

    /// Partitions silent for [`STALL`] since they were expected or last sought, with nothing
    /// at or before their offset seen: (topic, partition, offset to seek to).
    pub fn stalled(&mut self, now: Instant) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        for ((topic, partition), e) in &mut self.expected {
            if !e.seen_before && e.back < e.offset && now.duration_since(e.since) >= STALL {
                out.push((topic.clone(), *partition, e.step_back()));
            }
        }
        out
    }
}

/// Seeks a partition back to where a resume must start, as a [`Verdict::SeekTo`] or
/// [`ResumeGuard::stalled`] says (offset 0 is the beginning).
pub fn seek_back<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<()> {
    let to = if offset > 0 {
        Offset::Offset(offset)
    } else {
        Offset::Beginning
    };
    consumer
        .seek(topic, partition, to, Duration::from_secs(10))
        .with_context(|| format!("seeking {topic}[{partition}] back to offset {offset}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_resume_passes_untouched() {
        let mut g = ResumeGuard::default();
        g.expect("t", 0, 277);
        assert_eq!(g.check("t", 0, 277), Verdict::Process);
        assert_eq!(g.check("t", 0, 278), Verdict::Process);
        assert!(g.is_empty());
    }

    #[test]
    fn a_skipped_batch_is_fetched_again_from_further_back() {
        let mut g = ResumeGuard::default();
        g.expect("t", 0, 277);
        // Tansu: the next batch instead of the rest of the current one.
        assert_eq!(g.check("t", 0, 1000), Verdict::SeekTo(213));
        // Still inside the same batch: further back, then the beginning.
        assert_eq!(g.check("t", 0, 1000), Verdict::SeekTo(0));
        assert_eq!(g.check("t", 0, 0), Verdict::Skip);
        assert_eq!(g.check("t", 0, 276), Verdict::Skip);
        assert_eq!(g.check("t", 0, 277), Verdict::Process);
        assert_eq!(g.check("t", 0, 1000), Verdict::Process);
    }

    #[test]
    fn a_silent_partition_is_read_again_from_further_back() {
        let mut g = ResumeGuard::default();
        g.expect("t", 0, 2_532);
        g.expect("t", 1, 10);
        let now = Instant::now();
        assert!(g.stalled(now).is_empty(), "not yet");
        let mut later = g.stalled(now + STALL);
        later.sort();
        assert_eq!(
            later,
            vec![("t".to_string(), 0, 2_468), ("t".to_string(), 1, 0)]
        );
        // Still nothing: further back; the partition read from its beginning is done.
        let again = g.stalled(Instant::now() + STALL);
        assert_eq!(again, vec![("t".to_string(), 0, 0)]);
        // Records before the offset arrive: the fetch covers it, no more seeking.
        assert_eq!(g.check("t", 0, 0), Verdict::Skip);
        assert!(g.stalled(Instant::now() + 10 * STALL).is_empty());
        assert_eq!(g.check("t", 0, 2_532), Verdict::Process);
    }

    #[test]
    fn a_real_gap_is_accepted_once_the_fetch_is_known_to_cover_it() {
        let mut g = ResumeGuard::default();
        g.expect("t", 0, 500);
        assert_eq!(g.check("t", 0, 510), Verdict::SeekTo(436));
        // Records before 500 arrive, then 510: 500..509 are gone (compaction, markers).
        assert_eq!(g.check("t", 0, 480), Verdict::Skip);
        assert_eq!(g.check("t", 0, 510), Verdict::Process);
        // Other partitions are never held up.
        g.expect("t", 1, 10);
        assert_eq!(g.check("t", 2, 99), Verdict::Process);
        assert_eq!(g.check("u", 1, 99), Verdict::Process);
        assert_eq!(g.check("t", 1, 99), Verdict::SeekTo(0));
        assert_eq!(
            g.check("t", 1, 99),
            Verdict::Process,
            "read from the beginning"
        );
        g.expect("t", 1, 10);
        g.forget("t", 1);
        assert!(g.is_empty());
    }
}
