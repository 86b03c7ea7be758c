//! The `woostream` command's library half: the all-in-one runner, the demo shop (its webhooks
//! and its REST API), the configuration reference, repartitioning and a person's rights,
//! shared with the end-to-end tests and benchmarks.

pub mod all_in_one;
pub mod demo;
pub mod reference;
pub mod repartition;
pub mod subject;

pub use demo::{shop, simulate};
