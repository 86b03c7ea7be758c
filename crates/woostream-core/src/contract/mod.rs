//! The topic contracts: the records woostream writes (the Rust side of `schemas/*.avsc`), how
//! they are encoded (Avro, with or without a schema registry), and which topic carries which.
//!
//! - [`events`]: the canonical shop events the producer writes.
//! - [`enriched`]: what the enricher writes: customer profiles, alerts, the shop's model.
//! - [`sink_records`]: what the sinks write: the delivery audit and the CRM's dead letters.
//! - [`money`]: decimal money and UTC timestamps as the contracts carry them.
//! - [`codec`]: Avro encoding in both framings; [`registry`]: the schema registry client.
//! - [`topics`]: every topic with its key and value contracts.

pub mod codec;
pub mod enriched;
pub mod events;
pub mod money;
pub mod registry;
pub mod sink_records;
pub mod topics;
