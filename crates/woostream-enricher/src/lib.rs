//! The enricher: turns WooCommerce's duplicated, out-of-order deliveries into customer
//! profiles and the semantic events a team acts on.

pub mod clv;
