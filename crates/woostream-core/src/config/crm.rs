//! The `[crm]` section: where the CRM is, how contacts and deals are identified and mapped, and
//! the API budget. The types and their checks; the sink does the work.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Contact fields woostream knows, and the CRM property each goes to by default.
pub const CONTACT_FIELDS: &[(&str, &str)] = &[
    ("email", "email"),
    ("first_name", "firstname"),
    ("last_name", "lastname"),
    ("phone", "phone"),
    ("orders_count", "woo_orders_count"),
    ("revenue", "woo_revenue"),
    ("average_order_value", "woo_average_order_value"),
    ("first_order_date", "woo_first_order_date"),
    ("last_order_date", "woo_last_order_date"),
    ("segment", "woo_rfm_segment"),
    ("p_alive", "woo_p_alive"),
    ("predicted_clv", "woo_predicted_clv_12m"),
    ("churn_risk", "woo_churn_risk"),
    ("top_categories", "woo_top_categories"),
    ("top_products", "woo_top_products"),
    ("last_products", "woo_last_products"),
    ("purchase_interval_days", "woo_purchase_interval_days"),
    ("preferred_payment_method", "woo_preferred_payment_method"),
    ("discount_share", "woo_discount_share"),
    ("next_purchase_date", "woo_next_purchase_date"),
    ("replenishment_product", "woo_replenishment_product"),
    ("replenishment_due_date", "woo_replenishment_due_date"),
];

/// Deal fields woostream knows (beyond name, pipeline and stage), with their default property.
pub const DEAL_FIELDS: &[(&str, &str)] = &[
    ("amount", "amount"),
    ("currency", "deal_currency_code"),
    ("close_date", "closedate"),
    ("order_number", "woo_order_number"),
    ("order_status", "woo_order_status"),
    ("payment_method", "woo_payment_method"),
];

/// WooCommerce order status → stage of HubSpot's default sales pipeline.
pub const DEFAULT_STAGES: &[(&str, &str)] = &[
    ("pending", "appointmentscheduled"),
    ("on-hold", "qualifiedtobuy"),
    ("processing", "contractsent"),
    ("completed", "closedwon"),
    ("cancelled", "closedlost"),
    ("refunded", "closedlost"),
    ("failed", "closedlost"),
];

#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CrmConfig {
    /// Run the CRM sink (in `woostream run`; `woostream crm run` always does).
    pub enabled: bool,
    /// This sink's name where several CRM accounts share one Kafka: it is in the consumer group
    /// (`woostream-crm-<account>`) and in every audit record and dead letter, so that two sinks
    /// never share offsets or what they know of their CRM. `default` keeps the names of
    /// earlier releases.
    pub account: String,
    /// Consumer group of the CRM sink (offsets only: it reads every partition itself).
    pub group_id: String,
    /// Base URL of the HubSpot API (a test server in tests).
    pub api_url: String,
    /// Private-app or OAuth access token (or `{ env = … }`, `{ file = … }`).
    pub token: Option<crate::secret::Secret>,
    /// Or: the environment variable holding it.
    pub token_env: Option<String>,
    /// Keep the CRM in memory instead of calling HubSpot (`make run`).
    pub dry_run: bool,
    /// What an erasure does to the person's contact: `delete` it for good (HubSpot's GDPR
    /// delete), or `anonymise` it (every mapped property emptied, its deals detached; the
    /// contact stays, naming no one).
    pub erasure: ContactErasure,
    /// Unique contact property holding a registered customer's id (`<shop>:<id>`).
    pub contact_id_property: String,
    /// Unique contact property holding a guest's key (`guest:<hash>`). A separate one, so that
    /// a guest who registers, or a customer who also checks out as a guest, stays one contact
    /// (one email) holding both keys.
    pub guest_id_property: String,
    /// Unique deal property holding the order id.
    pub deal_id_property: String,
    /// Contact field → CRM property, over the defaults in [`CONTACT_FIELDS`]; `""` leaves a
    /// field out.
    pub contact_properties: BTreeMap<String, String>,
    /// Deal field → CRM property, over the defaults in [`DEAL_FIELDS`].
    pub deal_properties: BTreeMap<String, String>,
    /// Pipeline of the deals (internal id).
    pub pipeline: String,
    /// Order status slug → deal stage (internal id), over [`DEFAULT_STAGES`]; statuses mapped
    /// to `""` (and unmapped ones) make no deal.
    pub deal_stages: BTreeMap<String, String>,
    /// Deal name; `{number}`, `{order_id}` and `{shop}` are replaced.
    pub deal_name: String,
    /// Requests per rolling 10 seconds (HubSpot Professional/Enterprise: 190, shared by every
    /// app of the account).
    pub requests_per_10_seconds: u32,
    /// Requests per UTC day (Professional: 650,000).
    pub requests_per_day: u64,
    /// Inputs per batch request (HubSpot takes at most 100).
    pub batch_size: usize,
    /// The longest a change waits to fill a batch; meanwhile newer states replace older ones.
    pub max_delay_ms: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Cap of the exponential backoff after 5xx and network errors (retried until they pass).
    pub max_backoff_secs: u64,
    /// How long a guest's profile waits for the order that names the guest's email before it is
    /// dead-lettered (the contact cannot be found without it).
    pub guest_wait_secs: u64,
    /// Base64 of 32 bytes: when set, the original change in dead-letter records (it holds
    /// personal data) is sealed with ChaCha20-Poly1305.
    pub dead_letter_key: Option<crate::secret::Secret>,
    /// The CRM talking back: HubSpot's webhooks in, contact changes written to the shop.
    pub inbound: CrmInbound,
}

/// `[crm.inbound]`: a HubSpot webhook receiver that writes contact property changes to the
/// `crm_changes` topic, and a shop writer that applies them to WooCommerce through its REST API
/// (`woostream crm inbound`).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CrmInbound {
    /// Run it in `woostream run` too (`woostream crm inbound` always does).
    pub enabled: bool,
    /// Address the HubSpot webhook receiver listens on.
    pub listen: std::net::SocketAddr,
    /// Path HubSpot posts its webhooks to.
    pub path: String,
    /// The URL HubSpot calls, exactly as the app's webhook settings have it: the signature
    /// covers it, and behind a proxy the request alone does not tell it.
    pub public_url: Option<String>,
    /// The HubSpot app's client secret, which signs its webhooks (X-HubSpot-Signature-v3).
    pub client_secret: Option<crate::secret::Secret>,
    /// The id of the app woostream writes to HubSpot with: changes it made itself (HubSpot
    /// reports them with changeSource INTEGRATION and this sourceId) never come back.
    pub app_id: Option<String>,
    /// Webhooks signed longer ago than this are refused (HubSpot's rule: 5 minutes).
    pub max_age_secs: u64,
    /// HubSpot change sources whose changes reach the shop (`changeSource`): by default the
    /// team's own edits in HubSpot (its web and mobile apps). Forms, imports, other apps and
    /// workflows are left out unless listed — anyone can fill in a form.
    pub allowed_sources: Vec<String>,
    /// The shop the contacts belong to when their id property does not say (`<shop>:<id>`).
    pub shop: Option<String>,
    /// Consumer group of the shop writer (it reads the crm_changes topic).
    pub group_id: String,
    /// HubSpot contact property → shop field: `first_name`, `last_name`, `billing.<field>`,
    /// `shipping.<field>`, or `meta.<name>` (a customer meta field `woostream_<name>`); over
    /// the defaults in [`INBOUND_FIELDS`], `""` leaves a property out.
    pub fields: BTreeMap<String, String>,
}

/// The fields of a WooCommerce address (billing; shipping has no email).
pub const ADDRESS_FIELDS: [&str; 11] = [
    "first_name",
    "last_name",
    "company",
    "address_1",
    "address_2",
    "city",
    "state",
    "postcode",
    "country",
    "email",
    "phone",
];

/// The customer meta field the shop writer keeps the identity fingerprint of what it wrote in
/// (see [`crate::privacy::CustomerHasher::identity_fingerprint`]).
pub const CRM_IDENTITY_META: &str = "_woostream_crm_identity";

/// The HubSpot change sources `crm.inbound.allowed_sources` has by default: people of the
/// team editing a contact in HubSpot.
pub const DEFAULT_ALLOWED_SOURCES: &[&str] = &[
    "CRM_UI",
    "CRM_UI_BULK_ACTION",
    "MOBILE_IOS",
    "MOBILE_ANDROID",
];

/// The customer meta field keeping, per shop field, when the CRM change last written to it
/// happened (ms): an older change arriving late never overwrites a newer one.
pub const CRM_APPLIED_META: &str = "_woostream_crm_applied";

/// What a contact change writes to the shop by default.
pub const INBOUND_FIELDS: &[(&str, &str)] = &[
    ("firstname", "first_name"),
    ("lastname", "last_name"),
    ("phone", "billing.phone"),
    ("company", "billing.company"),
    ("address", "billing.address_1"),
    ("city", "billing.city"),
    ("zip", "billing.postcode"),
    ("state", "billing.state"),
    ("country", "billing.country"),
    ("woo_marketing_consent", "meta.marketing_consent"),
    ("woo_note", "meta.crm_note"),
];

impl Default for CrmInbound {
    fn default() -> Self {
        CrmInbound {
            enabled: false,
            listen: "0.0.0.0:8090".parse().expect("a socket address"),
            path: "/webhooks/hubspot".into(),
            public_url: None,
            client_secret: None,
            app_id: None,
            max_age_secs: 300,
            allowed_sources: DEFAULT_ALLOWED_SOURCES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            shop: None,
            group_id: "woostream-shop-writer".into(),
            fields: BTreeMap::new(),
        }
    }
}

impl CrmInbound {
    /// HubSpot property → shop field, defaults and overrides together.
    pub fn field_map(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = INBOUND_FIELDS
            .iter()
            .map(|(p, f)| (p.to_string(), f.to_string()))
            .collect();
        for (p, f) in &self.fields {
            if f.is_empty() {
                out.remove(p);
            } else {
                out.insert(p.clone(), f.clone());
            }
        }
        out
    }

    /// Whether a shop field is one the writer knows how to set.
    pub fn is_shop_field(field: &str) -> bool {
        match field.split_once('.') {
            None => matches!(field, "first_name" | "last_name"),
            Some(("billing", f)) => ADDRESS_FIELDS.contains(&f),
            Some(("shipping", f)) => ADDRESS_FIELDS.contains(&f) && f != "email",
            Some(("meta", name)) => !name.is_empty(),
            _ => false,
        }
    }
}

impl fmt::Debug for CrmConfig {
    // The token never reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrmConfig")
            .field("enabled", &self.enabled)
            .field("api_url", &self.api_url)
            .field("token", &self.token)
            .field("token_env", &self.token_env)
            .field("dry_run", &self.dry_run)
            .field("pipeline", &self.pipeline)
            .field("requests_per_10_seconds", &self.requests_per_10_seconds)
            .finish_non_exhaustive()
    }
}

impl Default for CrmConfig {
    fn default() -> Self {
        CrmConfig {
            enabled: false,
            account: crate::contract::sink_records::default_identity(),
            group_id: default_group(),
            api_url: "https://api.hubapi.com".into(),
            token: None,
            token_env: None,
            dry_run: false,
            erasure: ContactErasure::Delete,
            contact_id_property: "woo_customer_id".into(),
            guest_id_property: "woo_guest_id".into(),
            deal_id_property: "woo_order_id".into(),
            contact_properties: BTreeMap::new(),
            deal_properties: BTreeMap::new(),
            pipeline: "default".into(),
            deal_stages: BTreeMap::new(),
            deal_name: "Order #{number}".into(),
            requests_per_10_seconds: 190,
            requests_per_day: 650_000,
            batch_size: 100,
            max_delay_ms: 2_000,
            concurrency: 4,
            max_backoff_secs: 30,
            guest_wait_secs: 300,
            dead_letter_key: None,
            inbound: CrmInbound::default(),
        }
    }
}

/// See [`CrmConfig::erasure`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ContactErasure {
    #[default]
    Delete,
    Anonymise,
}

fn default_group() -> String {
    "woostream-crm".into()
}

impl CrmConfig {
    /// This sink in the audit topic: `crm`, or `crm@<account>`.
    pub fn sink_name(&self) -> String {
        crate::contract::sink_records::sink_name("crm", &self.account)
    }

    /// The consumer group this sink keeps its offsets in.
    pub fn consumer_group(&self) -> String {
        crate::contract::sink_records::consumer_group(
            &self.group_id,
            &default_group(),
            &self.account,
        )
    }

    /// See [`crate::config::slack::SlackConfig::earlier_group`].
    pub fn earlier_group(&self) -> Option<String> {
        (self.consumer_group() != self.group_id).then(|| self.group_id.clone())
    }

    /// What this account's dead-letter ids start with (nothing for the default account).
    pub fn dead_letter_prefix(&self) -> String {
        if self.account == crate::contract::sink_records::DEFAULT_IDENTITY {
            String::new()
        } else {
            format!("{}@", self.account)
        }
    }
}
fn merged(defaults: &[(&str, &str)], over: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = defaults
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
    m.retain(|_, v| !v.is_empty());
    m
}

impl CrmConfig {
    /// The key sealing dead letters, if one is set (checked at start-up).
    pub fn resolved_dead_letter_key(&self) -> Option<String> {
        crate::secret::resolve_secret(&self.dead_letter_key, &None)
    }

    pub fn resolved_token(&self) -> Option<String> {
        crate::secret::resolve_secret(&self.token, &self.token_env)
    }

    /// Contact field → property, defaults included, left-out fields removed.
    pub fn contact_mapping(&self) -> BTreeMap<String, String> {
        merged(CONTACT_FIELDS, &self.contact_properties)
    }

    pub fn deal_mapping(&self) -> BTreeMap<String, String> {
        merged(DEAL_FIELDS, &self.deal_properties)
    }

    /// Order status slug → deal stage.
    pub fn stages(&self) -> BTreeMap<String, String> {
        merged(DEFAULT_STAGES, &self.deal_stages)
    }

    /// What types alone cannot check; the offending key and what was expected.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (section, mapping, known) in [
            (
                "contact_properties",
                &self.contact_properties,
                CONTACT_FIELDS,
            ),
            ("deal_properties", &self.deal_properties, DEAL_FIELDS),
        ] {
            if let Some(field) = mapping.keys().find(|f| !known.iter().any(|(k, _)| k == f)) {
                return Err((
                    format!("crm.{section}.{field}"),
                    format!(
                        "expected one of {}",
                        known.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        if self
            .contact_properties
            .get("email")
            .is_some_and(|p| p.is_empty())
        {
            return Err((
                "crm.contact_properties.email".into(),
                "expected a property name: guests' contacts are found by their email".into(),
            ));
        }
        if !(1..=100).contains(&self.batch_size) {
            return Err((
                "crm.batch_size".into(),
                "expected 1 to 100 (HubSpot's batch limit)".into(),
            ));
        }
        if self.requests_per_10_seconds == 0 || self.requests_per_day == 0 {
            return Err((
                "crm.requests_per_10_seconds".into(),
                "expected a budget above zero".into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(("crm.concurrency".into(), "expected at least 1".into()));
        }
        for (key, value) in [
            ("contact_id_property", &self.contact_id_property),
            ("guest_id_property", &self.guest_id_property),
            ("deal_id_property", &self.deal_id_property),
            ("pipeline", &self.pipeline),
        ] {
            if value.trim().is_empty() {
                return Err((format!("crm.{key}"), "expected a property name".into()));
            }
        }
        // The token goes with every request: https, or plain http to this machine only (a
        // local stand-in), the host parsed rather than the text's prefix.
        if !crate::config::is_https_or_loopback(&self.api_url) {
            return Err((
                "crm.api_url".into(),
                "expected an https:// URL (plain http:// only to 127.0.0.1, ::1 or localhost)"
                    .into(),
            ));
        }
        crate::privacy::cipher::check_key(&self.dead_letter_key)
            .map_err(|e| ("crm.dead_letter_key".to_string(), e))?;
        for (property, field) in self.inbound.field_map() {
            if !CrmInbound::is_shop_field(&field) {
                return Err((
                    format!("crm.inbound.fields.{property}"),
                    "expected first_name, last_name, billing.<field>, shipping.<field> or meta.<name>".into(),
                ));
            }
        }
        if !self.inbound.path.starts_with('/') {
            return Err((
                "crm.inbound.path".into(),
                "expected a path starting with /".into(),
            ));
        }
        crate::secret::check_written(&self.token, &self.token_env)
            .map_err(|e| ("crm.token".to_string(), e))?;
        if self.enabled && !self.dry_run && self.resolved_token().is_none() {
            return Err((
                "crm.token".into(),
                "expected a token (or token_env naming a set variable), or dry_run = true".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_merge_over_defaults_and_empty_leaves_a_field_out() {
        let mut c = CrmConfig::default();
        c.contact_properties.insert("phone".into(), "".into());
        c.contact_properties.insert("segment".into(), "rfm".into());
        c.deal_stages
            .insert("awaiting-shipment".into(), "shipping".into());
        let m = c.contact_mapping();
        assert!(!m.contains_key("phone"));
        assert_eq!(m["segment"], "rfm");
        assert_eq!(m["email"], "email");
        assert_eq!(c.stages()["awaiting-shipment"], "shipping");
        assert_eq!(c.stages()["completed"], "closedwon");
    }

    #[test]
    fn unknown_fields_and_bad_limits_name_the_key() {
        let mut c = CrmConfig::default();
        c.contact_properties.insert("shoe_size".into(), "x".into());
        assert_eq!(
            c.validate().unwrap_err().0,
            "crm.contact_properties.shoe_size"
        );
        let mut c = CrmConfig::default();
        c.deal_properties.insert("colour".into(), "x".into());
        assert_eq!(c.validate().unwrap_err().0, "crm.deal_properties.colour");
        let c = CrmConfig {
            batch_size: 101,
            ..CrmConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "crm.batch_size");
        let c = CrmConfig {
            enabled: true,
            ..CrmConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "crm.token");
        assert!(CrmConfig::default().validate().is_ok());
    }
}
