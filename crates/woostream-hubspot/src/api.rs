//! The contract a CRM implements for the sink: batch upserts by a unique property and
//! deal → contact associations. HubSpot first ([`crate::client`]); Pipedrive or Salesforce
//! follow with the same contract. The in-memory one ([`crate::memory`]) serves `make run`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use crate::budget::RateLimits;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Object {
    Contacts,
    Deals,
}

impl Object {
    pub fn as_str(self) -> &'static str {
        match self {
            Object::Contacts => "contacts",
            Object::Deals => "deals",
        }
    }
}

/// One record to create or update: found by `id_property = id`.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub id_property: String,
    pub id: String,
    pub properties: BTreeMap<String, String>,
}

/// What the CRM did with one input.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// The CRM's own id of the object.
    pub id: String,
    /// Created (rather than updated).
    pub new: bool,
}

/// Why the CRM refused one input of a batch it otherwise took.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordError {
    pub status: Option<u16>,
    pub category: Option<String>,
    pub message: String,
}

/// A batch the CRM answered with success (maybe partial: HTTP 207).
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub status: u16,
    /// One per input, in input order.
    pub written: Vec<Result<Written, RecordError>>,
    pub limits: RateLimits,
    /// A read object's properties (as asked for; empty ones left out).
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum CallError {
    /// 429: over the rolling window (or the day's budget).
    #[error("rate limited ({})", if *daily { "daily" } else { "10 s window" })]
    RateLimited {
        daily: bool,
        retry_after: Option<Duration>,
        limits: RateLimits,
    },
    /// 5xx, timeouts, network errors, bad credentials: nothing was refused, try again later.
    #[error("{message}")]
    Transient {
        status: Option<u16>,
        message: String,
        limits: RateLimits,
    },
    /// The whole batch was refused (e.g. one invalid record): split it to find the bad one.
    #[error("{status} {}: {message}", category.as_deref().unwrap_or("error"))]
    Rejected {
        status: u16,
        category: Option<String>,
        message: String,
        limits: RateLimits,
    },
}

impl CallError {
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::RateLimited { .. } => Some(429),
            CallError::Transient { status, .. } => *status,
            CallError::Rejected { status, .. } => Some(*status),
        }
    }

    pub fn limits(&self) -> RateLimits {
        match self {
            CallError::RateLimited { limits, .. }
            | CallError::Transient { limits, .. }
            | CallError::Rejected { limits, .. } => *limits,
        }
    }
}

/// A property as the CRM describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    /// Whether the CRM keeps its values unique (what an upsert can find records by).
    pub unique: bool,
}

/// What a property holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyKind {
    Text,
    Number,
    DateTime,
}

/// A property to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProperty {
    pub name: String,
    pub label: String,
    pub kind: PropertyKind,
    pub unique: bool,
}

pub trait Crm: Send + Sync + 'static {
    /// Creates or updates up to 100 records of one object type.
    fn upsert(
        &self,
        object: Object,
        inputs: &[Input],
    ) -> impl Future<Output = Result<Reply, CallError>> + Send;

    /// Associates deals with contacts (CRM ids: `(deal, contact)`), with the default label.
    fn associate(
        &self,
        pairs: &[(String, String)],
    ) -> impl Future<Output = Result<Reply, CallError>> + Send;

    /// The properties an object has.
    fn properties(
        &self,
        object: Object,
    ) -> impl Future<Output = Result<Vec<Property>, CallError>> + Send;

    /// The stage ids of a deal pipeline; `None` when there is no such pipeline.
    fn stages(
        &self,
        pipeline: &str,
    ) -> impl Future<Output = Result<Option<Vec<String>>, CallError>> + Send;

    /// Reads one contact, found by the unique property `by.0 = by.1` (`hs_object_id`: its CRM
    /// id), with `properties`: its id in `written`, its values in `properties`. A contact that
    /// does not exist is `Rejected` 404.
    fn read_contact(
        &self,
        by: (&str, &str),
        properties: &[String],
    ) -> impl Future<Output = Result<Reply, CallError>> + Send;

    /// Deletes a contact for good: HubSpot's GDPR delete, not the archive it can restore for
    /// 90 days. Its associations go with it. A contact already gone is `Rejected` 404.
    fn gdpr_delete(&self, contact: &str) -> impl Future<Output = Result<Reply, CallError>> + Send;

    /// Empties `properties` of a contact (anonymising instead of deleting).
    fn blank(
        &self,
        contact: &str,
        properties: &[String],
    ) -> impl Future<Output = Result<Reply, CallError>> + Send;

    /// The deals associated with a contact (their ids, as `written`).
    fn contact_deals(&self, contact: &str)
        -> impl Future<Output = Result<Reply, CallError>> + Send;

    /// Removes a contact's associations with `deals`.
    fn detach(
        &self,
        contact: &str,
        deals: &[String],
    ) -> impl Future<Output = Result<Reply, CallError>> + Send;

    /// Creates a property (`woostream crm setup`).
    fn create_property(
        &self,
        object: Object,
        property: &NewProperty,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
}
