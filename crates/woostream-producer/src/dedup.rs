//! Exact resends of a delivery within a short window: a proxy that retries, or someone
//! replaying a captured request. A delivery is the same when its shop, its delivery id and its
//! signature (an HMAC of the body, already computed to check it) are; a resend with another
//! topic header is the same delivery too, so a replay cannot change what a body means.
//!
//! WooCommerce's own redelivery of an event gets a new delivery id and passes; the event id
//! (a hash of shop, topic and body) lets the enricher drop those.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

type Key = [u8; 16];

/// Deliveries made durable in the last `window`, at most `capacity` of them (the oldest are
/// forgotten first, so memory stays bounded whatever arrives).
pub struct RecentDeliveries {
    window: Duration,
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    by_key: HashMap<Key, Instant>,
    order: VecDeque<(Key, Instant)>,
}

fn key(shop_id: &str, delivery_id: &str, signature: &str) -> Key {
    let mut h = Sha256::new();
    for part in [shop_id, delivery_id, signature] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&digest[..16]);
    k
}

impl RecentDeliveries {
    /// `window` zero turns the check off.
    pub fn new(window: Duration, capacity: usize) -> RecentDeliveries {
        RecentDeliveries {
            window,
            capacity,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn enabled(&self) -> bool {
        !self.window.is_zero() && self.capacity > 0
    }

    /// Whether this exact delivery was made durable within the window. Deliveries without an
    /// id are never taken for resends (two real events may have the same body).
    pub fn is_resend(&self, shop_id: &str, delivery_id: Option<&str>, signature: &str) -> bool {
        let Some(delivery_id) = delivery_id.filter(|_| self.enabled()) else {
            return false;
        };
        let k = key(shop_id, delivery_id, signature);
        let seen = self.seen.lock().expect("dedup lock");
        seen.by_key
            .get(&k)
            .is_some_and(|at| at.elapsed() < self.window)
    }

    /// Remembers a delivery once it is durable (so that one that failed can be retried).
    pub fn remember(&self, shop_id: &str, delivery_id: Option<&str>, signature: &str) {
        let Some(delivery_id) = delivery_id.filter(|_| self.enabled()) else {
            return;
        };
        let k = key(shop_id, delivery_id, signature);
        let now = Instant::now();
        let mut seen = self.seen.lock().expect("dedup lock");
        while let Some(&(old, at)) = seen.order.front() {
            if seen.order.len() < self.capacity && now.duration_since(at) < self.window {
                break;
            }
            seen.order.pop_front();
            // Only if not remembered again since.
            if seen.by_key.get(&old) == Some(&at) {
                seen.by_key.remove(&old);
            }
        }
        seen.by_key.insert(k, now);
        seen.order.push_back((k, now));
    }

    pub fn len(&self) -> usize {
        self.seen.lock().expect("dedup lock").by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_resend_is_recognised_and_anything_else_is_not() {
        let r = RecentDeliveries::new(Duration::from_secs(600), 100);
        assert!(!r.is_resend("eu", Some("d1"), "sig"));
        r.remember("eu", Some("d1"), "sig");
        assert!(r.is_resend("eu", Some("d1"), "sig"));
        assert!(!r.is_resend("eu", Some("d2"), "sig"), "another delivery id");
        assert!(!r.is_resend("eu", Some("d1"), "other"), "another body");
        assert!(!r.is_resend("us", Some("d1"), "sig"), "another shop");
        r.remember("eu", None, "sig");
        assert!(!r.is_resend("eu", None, "sig"), "no id, never a resend");
    }

    #[test]
    fn memory_is_bounded_by_the_capacity() {
        let r = RecentDeliveries::new(Duration::from_secs(600), 3);
        for i in 0..10 {
            r.remember("eu", Some(&i.to_string()), "sig");
        }
        assert_eq!(r.len(), 3);
        assert!(r.is_resend("eu", Some("9"), "sig"));
        assert!(
            !r.is_resend("eu", Some("0"), "sig"),
            "the oldest is forgotten"
        );
    }

    #[test]
    fn a_zero_window_turns_it_off() {
        let r = RecentDeliveries::new(Duration::ZERO, 3);
        r.remember("eu", Some("d1"), "sig");
        assert!(!r.is_resend("eu", Some("d1"), "sig"));
        assert!(r.is_empty());
    }

    #[test]
    fn entries_older_than_the_window_do_not_count() {
        let r = RecentDeliveries::new(Duration::from_millis(1), 100);
        r.remember("eu", Some("d1"), "sig");
        let deadline = Instant::now() + Duration::from_millis(2);
        while Instant::now() < deadline {
            std::hint::spin_loop();
        }
        assert!(!r.is_resend("eu", Some("d1"), "sig"));
    }
}
