//! The CRM: what the shop's events change (pure), waiting changes coalesced per contact and
//! deal (pure), the request budget (pure), and at the edges the HubSpot client, the flush that
//! sends within the budget, the Kafka loop, the dead-letter replay and the CRM's set-up.

pub mod api;
pub mod budget;
pub mod changes;
pub mod contact_erasure;
pub mod flush;
pub mod hubspot;
pub mod memory;
pub mod metrics;
pub mod pending;
pub mod plan;
pub mod records;
pub mod replay;
pub mod runner;
pub mod setup;
