//! The shop's REST side: what webhooks never delivered. A backfill of its history, and (later
//! in this module) reconciliation and webhook upkeep. Objects from the REST API go through the
//! same normaliser, keys and topics as webhooks, with the envelope's origin saying where they
//! came from. The REST client itself is `woostream_woo::rest`.

pub mod backfill;
pub mod checkpoint;
pub mod ingest;
pub mod reconcile;
pub mod webhooks;
