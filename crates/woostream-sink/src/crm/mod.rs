//! The CRM sink: what the shop's events change (pure), waiting changes coalesced per contact
//! and deal (pure), what a flush decides (pure), and at the edges the flush that sends within
//! the budget, the Kafka loop and the dead-letter replay. The CRM itself (the contract, the
//! HubSpot client, its budget and set-up) is `woostream_hubspot`.

pub mod changes;
pub mod contact_erasure;
pub mod flush;
pub mod metrics;
pub mod pending;
pub mod plan;
pub mod records;
pub mod replay;
pub mod runner;
