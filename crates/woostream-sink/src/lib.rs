//! The sink role: what the shop's team sees. Slack notifications routed by rules, posted
//! within Slack's limits, folded into digests during bursts, each alert delivered once.

pub mod audit;
pub mod crm;
pub mod intake;
pub mod slack;
