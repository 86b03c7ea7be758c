//! `*.deleted` deliveries: whose they are and whether they belong to the resource they name.
//!
//! WooCommerce fires `deleted` when a product, coupon or order is trashed, with only
//! `{"id":N}`. Two facts of a real WooCommerce 10 make that body untrustworthy on its own:
//! - products and coupons share one id space (both are posts), and trashing one product fires
//!   `product.deleted` *and* `coupon.deleted` with the same id (the reverse for a coupon);
//! - an order's deletion names no customer, yet the customer's history is where it counts.
//!
//! So the producer checks a deleted id against what it knows of the resource (the product
//! catalogue every replica follows, the coupons and orders it has seen) and, when that is not
//! enough and the shop's REST API is configured, asks the shop. The decisions are plain
//! functions; the look-ups live at the edge (the producer's HTTP server).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::normalise::Resource;

/// What is known of a deleted id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Belongs {
    /// The id is one of the resource's: write the deletion.
    Yes,
    /// The id is another resource's: WooCommerce's twin delivery for a shared post id.
    No,
    /// Nothing known either way.
    Unknown,
}

/// Whether a `product.deleted` / `coupon.deleted` id is the resource's, from what is known of
/// products and coupons. Orders and customers have their own id spaces.
pub fn deleted_id_belongs(resource: Resource, is_product: bool, is_coupon: bool) -> Belongs {
    let (mine, other) = match resource {
        Resource::Product => (is_product, is_coupon),
        Resource::Coupon => (is_coupon, is_product),
        Resource::Order | Resource::Customer => return Belongs::Yes,
    };
    match (mine, other) {
        (true, _) => Belongs::Yes,
        (false, true) => Belongs::No,
        (false, false) => Belongs::Unknown,
    }
}

/// What a REST look-up of a deleted id answered: an object (trashed, but there), not there
/// (404, or WooCommerce's `*_invalid_id` codes), or nothing conclusive.
pub fn belongs_from_lookup(status: Option<u16>, code: &str) -> Belongs {
    match status {
        Some(200..=299) => Belongs::Yes,
        Some(404) => Belongs::No,
        Some(400) if code.contains("_invalid_id") => Belongs::No,
        _ => Belongs::Unknown,
    }
}

/// What the shop says of the account a `customer.deleted` names. WooCommerce signs only the
/// body, and every `*.deleted` body is the same `{"id":N}`: a signed `product.deleted` or
/// `order.deleted` re-sent under the customer topic names customer N. So an erasure is taken
/// from a webhook only once the shop confirms the account is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Account {
    /// The shop answers 404 (`woocommerce_rest_invalid_id`): deleted, erase.
    Gone,
    /// The shop still has the account: not a deletion, whatever the delivery says.
    StillThere,
    /// No REST API to ask, or no clear answer: kept, and left to an operator.
    Unconfirmed,
}

/// What a look-up of `customers/<id>` found: no REST API (`None`), the account, or what its
/// absence says (see [`belongs_from_lookup`]).
pub fn account_from(lookup: Option<Result<(), Belongs>>) -> Account {
    match lookup {
        Some(Ok(())) | Some(Err(Belongs::Yes)) => Account::StillThere,
        Some(Err(Belongs::No)) => Account::Gone,
        Some(Err(Belongs::Unknown)) | None => Account::Unconfirmed,
    }
}

/// A map that forgets its oldest keys beyond `capacity` (a set with `V = ()`).
pub struct Bounded<K, V = ()> {
    capacity: usize,
    entries: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Clone + Eq + std::hash::Hash, V> Bounded<K, V> {
    pub fn new(capacity: usize) -> Bounded<K, V> {
        Bounded {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Sets `key`'s value; true when `key` was not there.
    pub fn insert(&mut self, key: K, value: V) -> bool {
        if self.entries.insert(key.clone(), value).is_some() {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
        true
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    pub fn remove(&mut self, key: &K) {
        if self.entries.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

/// Accounts erased from a webhook by this replica, so that a deletion delivered again (or
/// replayed) erases once. Bounded: the oldest are forgotten first.
pub struct Erased(Mutex<Bounded<(String, String)>>);

impl Erased {
    pub fn new(capacity: usize) -> Erased {
        Erased(Mutex::new(Bounded::new(capacity)))
    }

    /// True the first time (shop, customer) is erased here.
    pub fn first_time(&self, shop: &str, customer: &str) -> bool {
        let mut erased = self.0.lock().expect("erased lock poisoned");
        erased.insert((shop.to_string(), customer.to_string()), ())
    }

    /// Forgets an erasure that failed, so that the next delivery tries again.
    pub fn forget(&self, shop: &str, customer: &str) {
        let mut erased = self.0.lock().expect("erased lock poisoned");
        erased.remove(&(shop.to_string(), customer.to_string()));
    }
}

/// A bounded memory of ids seen per shop: which orders belong to which customer key, and which
/// ids are coupons. Oldest forgotten first; the REST API answers what it no longer holds.
pub struct Seen {
    /// (shop, order id) → the customer key its events are written under.
    order_owners: Mutex<Bounded<(String, i64), String>>,
    coupons: Mutex<Bounded<(String, i64)>>,
}

impl Seen {
    /// About 100 bytes an entry: 200,000 orders is ~20 MB.
    pub fn new(capacity: usize) -> Seen {
        Seen {
            order_owners: Mutex::new(Bounded::new(capacity)),
            coupons: Mutex::new(Bounded::new(capacity)),
        }
    }

    pub fn order(&self, shop: &str, order_id: i64, customer_key: &str) {
        let mut owners = self.order_owners.lock().expect("seen lock poisoned");
        owners.insert((shop.to_string(), order_id), customer_key.to_string());
    }

    pub fn owner_of(&self, shop: &str, order_id: i64) -> Option<String> {
        let owners = self.order_owners.lock().expect("seen lock poisoned");
        owners.get(&(shop.to_string(), order_id)).cloned()
    }

    pub fn coupon(&self, shop: &str, coupon_id: i64) {
        let mut coupons = self.coupons.lock().expect("seen lock poisoned");
        coupons.insert((shop.to_string(), coupon_id), ());
    }

    pub fn is_coupon(&self, shop: &str, coupon_id: i64) -> bool {
        let coupons = self.coupons.lock().expect("seen lock poisoned");
        coupons.get(&(shop.to_string(), coupon_id)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_post_id_belongs_to_the_resource_it_is_known_as() {
        // Trashing product 13 fires product.deleted and coupon.deleted with {"id":13}.
        assert_eq!(
            deleted_id_belongs(Resource::Product, true, false),
            Belongs::Yes
        );
        assert_eq!(
            deleted_id_belongs(Resource::Coupon, true, false),
            Belongs::No
        );
        assert_eq!(
            deleted_id_belongs(Resource::Product, false, true),
            Belongs::No
        );
        assert_eq!(
            deleted_id_belongs(Resource::Coupon, false, true),
            Belongs::Yes
        );
        assert_eq!(
            deleted_id_belongs(Resource::Coupon, false, false),
            Belongs::Unknown
        );
        assert_eq!(
            deleted_id_belongs(Resource::Order, false, false),
            Belongs::Yes
        );
    }

    #[test]
    fn a_lookup_decides_by_status_and_code() {
        assert_eq!(belongs_from_lookup(Some(200), ""), Belongs::Yes);
        assert_eq!(
            belongs_from_lookup(Some(404), "woocommerce_rest_shop_coupon_invalid_id"),
            Belongs::No
        );
        assert_eq!(
            belongs_from_lookup(Some(400), "woocommerce_rest_product_invalid_id"),
            Belongs::No
        );
        assert_eq!(belongs_from_lookup(Some(500), ""), Belongs::Unknown);
        assert_eq!(belongs_from_lookup(None, ""), Belongs::Unknown);
    }

    #[test]
    fn an_account_is_gone_only_when_the_shop_says_so() {
        let answered = |status, code| Some(Err(belongs_from_lookup(status, code)));
        assert_eq!(
            account_from(answered(Some(404), "woocommerce_rest_invalid_id")),
            Account::Gone
        );
        assert_eq!(account_from(Some(Ok(()))), Account::StillThere);
        assert_eq!(account_from(answered(Some(503), "")), Account::Unconfirmed);
        assert_eq!(account_from(answered(None, "")), Account::Unconfirmed);
        assert_eq!(account_from(None), Account::Unconfirmed, "no REST API");
    }

    #[test]
    fn an_account_is_erased_once() {
        let erased = Erased::new(2);
        assert!(erased.first_time("eu", "42"));
        assert!(!erased.first_time("eu", "42"));
        assert!(erased.first_time("us", "42"));
        erased.forget("us", "42");
        assert!(erased.first_time("us", "42"));
    }

    #[test]
    fn seen_ids_are_bounded_oldest_first() {
        let seen = Seen::new(2);
        seen.order("eu", 1, "7");
        seen.order("eu", 2, "8");
        seen.order("eu", 3, "9");
        assert_eq!(seen.owner_of("eu", 1), None);
        assert_eq!(seen.owner_of("eu", 3).as_deref(), Some("9"));
        assert_eq!(seen.owner_of("us", 3), None);
        seen.coupon("eu", 18);
        assert!(seen.is_coupon("eu", 18));
        assert!(!seen.is_coupon("eu", 13));
    }
}
