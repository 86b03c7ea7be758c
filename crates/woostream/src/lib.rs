//! The `woostream` command's library half: the flash-sale simulator and the all-in-one runner,
//! shared with the end-to-end tests and benchmarks.

pub mod all_in_one;
pub mod reference;
pub mod repartition;
pub mod shop;
pub mod simulate;
pub mod subject;
