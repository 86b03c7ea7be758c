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

/// One delivery: its shop, delivery id and signature, hashed.
pub type Key = [u8; 16];

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

    /// What identifies this delivery, or `None` when the check is off or the delivery has no
    /// id (two real events may have the same body). Computed once per request.
    pub fn key(&self, shop_id: &str, delivery_id: Option<&str>, signature: &str) -> Option<Key> {
        let delivery_id = delivery_id.filter(|_| self.enabled())?;
        Some(key(shop_id, delivery_id, signature))
    }

    /// Whether this exact delivery was made durable within the window.
    pub fn is_resend(&self, k: &Key) -> bool {
        let seen = self.seen.lock().expect("dedup lock");
        seen.by_key
            .get(k)
            .is_some_and(|at| at.elapsed() < self.window)
    }

    /// Remembers a delivery once it is durable (so that one that failed can be retried).
    pub fn remember(&self, k: Key) {
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

    /// The two calls a request makes.
    fn seen(r: &RecentDeliveries, shop: &str, id: Option<&str>, sig: &str) -> bool {
        r.key(shop, id, sig).is_some_and(|k| r.is_resend(&k))
    }

    fn remember(r: &RecentDeliveries, shop: &str, id: Option<&str>, sig: &str) {
        if let Some(k) = r.key(shop, id, sig) {
            r.remember(k);
        }
    }

    #[test]
    fn an_exact_resend_is_recognised_and_anything_else_is_not() {
        let r = RecentDeliveries::new(Duration::from_secs(600), 100);
        assert!(!seen(&r, "eu", Some("d1"), "sig"));
        remember(&r, "eu", Some("d1"), "sig");
        assert!(seen(&r, "eu", Some("d1"), "sig"));
        assert!(!seen(&r, "eu", Some("d2"), "sig"), "another delivery id");
        assert!(!seen(&r, "eu", Some("d1"), "other"), "another body");
        assert!(!seen(&r, "us", Some("d1"), "sig"), "another shop");
        remember(&r, "eu", None, "sig");
        assert!(!seen(&r, "eu", None, "sig"), "no id, never a resend");
    }

    #[test]
    fn memory_is_bounded_by_the_capacity() {
        let r = RecentDeliveries::new(Duration::from_secs(600), 3);
        for i in 0..10 {
            remember(&r, "eu", Some(&i.to_string()), "sig");
        }
        assert_eq!(r.len(), 3);
        assert!(seen(&r, "eu", Some("9"), "sig"));
        assert!(!seen(&r, "eu", Some("0"), "sig"), "the oldest is forgotten");
    }

    #[test]
    fn a_zero_window_turns_it_off() {
        let r = RecentDeliveries::new(Duration::ZERO, 3);
        remember(&r, "eu", Some("d1"), "sig");
        assert!(!seen(&r, "eu", Some("d1"), "sig"));
        assert!(r.is_empty());
    }

    #[test]
    fn entries_older_than_the_window_do_not_count() {
        let r = RecentDeliveries::new(Duration::from_millis(1), 100);
        remember(&r, "eu", Some("d1"), "sig");
        let deadline = Instant::now() + Duration::from_millis(2);
        while Instant::now() < deadline {
            std::hint::spin_loop();
        }
        assert!(!seen(&r, "eu", Some("d1"), "sig"));
    }
}
