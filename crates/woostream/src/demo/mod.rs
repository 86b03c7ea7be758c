//! The simulated shop of `make run` and of the tests: `simulate` draws a shop's history and a
//! flash sale as WooCommerce's signed webhooks; `shop` serves the same shop's REST API (v3),
//! with WooCommerce's pagination, errors and webhook endpoints.

pub mod shop;
pub mod simulate;
