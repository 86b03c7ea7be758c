//! The shop's REST API (`/wp-json/wc/v3`): the client, its OAuth 1.0a signing, and the resources
//! woostream reads (orders, customers, products, coupons, reviews).

pub mod client;
pub mod oauth;
pub mod resource;

pub use client::{Page, RestError, WooRest};
pub use resource::Resource;
