//! WooCommerce as woostream knows it, with no Kafka in it: what a shop sends and how it is read.
//! The producer's roles (webhooks, the REST side, the CRM writing back) depend on it; nothing
//! here depends on a role.
//!
//! - [`payload`]: WooCommerce REST v3 objects as webhooks and the REST API deliver them, read
//!   leniently.
//! - [`signature`]: the webhook's `X-WC-Webhook-Signature` (pure).
//! - [`normalise`]: a delivery made a canonical event (pure).
//! - [`deletion`]: whose a `*.deleted` delivery is and whether it belongs to what it names
//!   (pure).
//! - [`rest`]: the shop's REST API client: pages, authentication (basic or OAuth 1.0a), the
//!   shop's rate limit and retries.

pub mod deletion;
pub mod normalise;
pub mod payload;
pub mod rest;
pub mod signature;
