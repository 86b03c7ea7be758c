//! Slack: rules and templates (pure), Block Kit within Slack's limits (pure), digests (pure),
//! and at the edges the Web API / incoming-webhook client and the Kafka loop.

pub mod blocks;
pub mod channel;
pub mod client;
pub mod digest;
pub mod examples;
pub mod metrics;
pub mod preview;
pub mod rules;
pub mod runner;
pub mod template;
