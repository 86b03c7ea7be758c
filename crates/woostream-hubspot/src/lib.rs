//! The CRM as woostream knows it, with no Kafka in it. The CRM sink writes through it and the
//! CRM inbound role verifies HubSpot's webhooks with it; nothing here depends on a role.
//!
//! - [`api`]: the contract a CRM implements for the sink (batch upserts by a unique property,
//!   deal → contact associations, properties), so another CRM can follow HubSpot.
//! - [`client`]: HubSpot CRM v3 over HTTP: its rate-limit headers and error shapes.
//! - [`memory`]: HubSpot's object semantics in memory (`make run`, the tests' HubSpot server).
//! - [`budget`]: the account's request budget, per 10 seconds and per day (pure).
//! - [`setup`]: the properties the mapping writes must exist, and the unique ones be unique.
//! - [`signature`]: HubSpot's v3 webhook signature (pure).

pub mod api;
pub mod budget;
pub mod client;
pub mod memory;
pub mod setup;
pub mod signature;
