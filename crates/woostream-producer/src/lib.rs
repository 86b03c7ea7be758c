//! woostream's producer role: the only thing WooCommerce talks to.
//!
//! `signature` and `normalise` are pure; `publish` and `spool` are the Kafka and disk edges;
//! `server` is the HTTP edge that ties them together.

pub mod normalise;
pub mod signature;
pub mod woo;
