//! The enricher: turns WooCommerce's duplicated, out-of-order deliveries into customer
//! profiles and the semantic events a team acts on.

pub mod alerts;
pub mod clv;
pub mod customer;
pub mod explain;
pub mod metrics;
pub mod model;
pub mod partition;
#[cfg(test)]
mod partition_tests;
pub mod products;
pub mod published;
pub mod rfm;
pub mod runner;
pub mod taste;
