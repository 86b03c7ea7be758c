//! The shop's REST side: what webhooks never delivered. A backfill of its history, and (later
//! in this module) reconciliation and webhook upkeep. Objects from the REST API go through the
//! same normaliser, keys and topics as webhooks, with the envelope's origin saying where they
//! came from.

pub mod backfill;
pub mod checkpoint;
pub mod client;
pub mod ingest;
pub mod oauth;
pub mod reconcile;
pub mod resource;
pub mod webhooks;

pub use client::{Page, RestError, WooRest};
pub use resource::Resource;
