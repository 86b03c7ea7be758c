//! Contact property changes from HubSpot's webhooks to what the shop should become (pure):
//! which events count (mapped properties, not woostream's own writes), the record kept in the
//! changes topic, and for one change and the customer as the shop has it now, the update to
//! send — or why none.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One event of a HubSpot webhook request (an array of them), as HubSpot sends it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubSpotEvent {
    pub event_id: i64,
    #[serde(default)]
    pub portal_id: i64,
    pub subscription_type: String,
    pub object_id: i64,
    #[serde(default)]
    pub property_name: Option<String>,
    #[serde(default)]
    pub property_value: Option<String>,
    #[serde(default)]
    pub change_source: Option<String>,
    #[serde(default)]
    pub source_id: Option<String>,
    pub occurred_at: i64,
}

/// A contact property change on its way to the shop (topic `crm_changes`, JSON, keyed by
/// `<shop>:<customer id>` so that one customer's changes stay in order). `value` is sealed
/// under the customer's key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrmChange {
    /// `<portal>:<event id>`: HubSpot's id of the change; its retries carry the same.
    pub change_id: String,
    pub shop_id: String,
    pub customer_id: i64,
    pub contact_id: String,
    pub property: String,
    /// The shop field it sets (see `crm.inbound.fields`).
    pub field: String,
    pub value: String,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub change_source: Option<String>,
}

impl CrmChange {
    pub fn key(&self) -> String {
        format!("{}:{}", self.shop_id, self.customer_id)
    }
}

/// Why an event of a request is not a change for the shop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    NotAPropertyChange,
    Unmapped,
    /// woostream's own write to HubSpot coming back.
    OwnWrite,
    /// A change source not in `crm.inbound.allowed_sources` (a form, an import, another app).
    SourceNotAllowed,
    /// An event already received (HubSpot's retry of a request answered, or a replay).
    Duplicate,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::NotAPropertyChange => "not_a_property_change",
            Ignored::Unmapped => "unmapped",
            Ignored::OwnWrite => "own_write",
            Ignored::SourceNotAllowed => "source_not_allowed",
            Ignored::Duplicate => "duplicate",
        }
    }
}

/// The shop field an event changes, unless it is ignored.
pub fn relevant<'m>(
    e: &HubSpotEvent,
    fields: &'m std::collections::BTreeMap<String, String>,
    own_app: Option<&str>,
    allowed_sources: &[String],
) -> Result<&'m str, Ignored> {
    if e.subscription_type != "contact.propertyChange" {
        return Err(Ignored::NotAPropertyChange);
    }
    let own = e.change_source.as_deref() == Some("INTEGRATION")
        && own_app.is_some_and(|app| e.source_id.as_deref() == Some(app));
    if own {
        return Err(Ignored::OwnWrite);
    }
    let source = e.change_source.as_deref().unwrap_or("");
    if !allowed_sources
        .iter()
        .any(|a| a.eq_ignore_ascii_case(source))
    {
        return Err(Ignored::SourceNotAllowed);
    }
    let property = e
        .property_name
        .as_deref()
        .ok_or(Ignored::NotAPropertyChange)?;
    fields
        .get(property)
        .map(String::as_str)
        .ok_or(Ignored::Unmapped)
}

/// The customer's id in a contact's id property (`<shop>:<id>`), for the shop it names.
pub fn customer_of(id_property: &str, default_shop: &str) -> Option<(String, i64)> {
    match id_property.split_once(':') {
        Some((shop, id)) => Some((shop.to_string(), id.parse().ok()?)),
        None => Some((default_shop.to_string(), id_property.parse().ok()?)),
    }
}

pub fn millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

/// The meta field a `meta.<name>` field is kept in.
pub fn meta_key(name: &str) -> String {
    format!("woostream_{name}")
}

/// A field's value in a customer as the REST API returns it.
pub fn current_value(customer: &Value, field: &str) -> Option<String> {
    let v = match field.split_once('.') {
        None => &customer[field],
        Some(("meta", name)) => {
            let key = meta_key(name);
            return customer["meta_data"]
                .as_array()?
                .iter()
                .find(|m| m["key"] == key.as_str())
                .and_then(|m| m["value"].as_str().map(str::to_string));
        }
        Some((address, part)) => &customer[address][part],
    };
    v.as_str().map(str::to_string)
}

/// The partial update setting `field` to `value` (WooCommerce keeps what it does not name).
pub fn patch(field: &str, value: &str) -> Value {
    match field.split_once('.') {
        None => json!({ field: value }),
        Some(("meta", name)) => json!({"meta_data": [{"key": meta_key(name), "value": value}]}),
        Some((address, part)) => json!({ address: { part: value } }),
    }
}

/// `customer` with `patch` applied, as the shop will have it.
pub fn patched(customer: &Value, patch: &Value) -> Value {
    let mut out = customer.clone();
    for (k, v) in patch.as_object().into_iter().flatten() {
        match (k.as_str(), v) {
            ("meta_data", Value::Array(entries)) => {
                let mut meta = out["meta_data"].as_array().cloned().unwrap_or_default();
                for e in entries {
                    meta.retain(|m| m["key"] != e["key"]);
                    meta.push(e.clone());
                }
                out["meta_data"] = Value::Array(meta);
            }
            (_, Value::Object(fields)) => {
                for (f, x) in fields {
                    out[k][f] = x.clone();
                }
            }
            _ => out[k] = v.clone(),
        }
    }
    out
}

/// What to do with one change.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Send this partial update (it carries the identity fingerprint of the result).
    Update(Value),
    /// Nothing to send, and why.
    Skip(String),
}

/// When the CRM change last written to each field happened (ms), as the customer keeps it.
fn applied_times(current: &Value) -> serde_json::Map<String, Value> {
    current["meta_data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["key"] == woostream_core::config::crm::CRM_APPLIED_META)
        .and_then(|e| match &e["value"] {
            Value::Object(m) => Some(m.clone()),
            Value::String(s) => serde_json::from_str(s).ok(),
            _ => None,
        })
        .unwrap_or_default()
}

/// One change against the customer as the shop has it now. Conflicts go by modification time:
/// when someone other than woostream changed the customer after the CRM's change happened,
/// the shop's newer state wins and the change is skipped; a change older than the last CRM
/// change written to the same field loses to it (kept per field with the customer). A value
/// the shop already has is not written again (a retried webhook, or an echo), so each change
/// reaches the shop once.
pub fn decide(
    change: &CrmChange,
    value: &str,
    current: &Value,
    fingerprint: impl Fn(&Value) -> String,
) -> Decision {
    if current_value(current, &change.field)
        .as_deref()
        .unwrap_or("")
        == value
    {
        return Decision::Skip("the shop already has this value".into());
    }
    let mut applied = applied_times(current);
    let at = change.occurred_at.timestamp_millis();
    if let Some(last) = applied.get(&change.field).and_then(Value::as_i64) {
        if last > at {
            return Decision::Skip(format!(
                "a newer CRM change to {} was written already (at {} UTC)",
                change.field,
                millis(last).format("%Y-%m-%d %H:%M:%S%.3f")
            ));
        }
    }
    let modified = current["date_modified_gmt"]
        .as_str()
        .and_then(woostream_core::contract::money::parse_wc_gmt);
    let ours = current["meta_data"].as_array().is_some_and(|m| {
        m.iter().any(|e| {
            e["key"] == woostream_core::config::crm::CRM_IDENTITY_META
                && e["value"].as_str() == Some(fingerprint(current).as_str())
        })
    });
    if let Some(m) = modified.filter(|m| *m > change.occurred_at && !ours) {
        return Decision::Skip(format!(
            "the shop changed this customer at {} UTC, after the CRM's change at {} UTC: the newer wins",
            m.format("%Y-%m-%d %H:%M:%S"),
            change.occurred_at.format("%Y-%m-%d %H:%M:%S")
        ));
    }
    let mut update = patch(&change.field, value);
    applied.insert(change.field.clone(), at.into());
    let mut meta = update["meta_data"].as_array().cloned().unwrap_or_default();
    meta.push(json!({
        "key": woostream_core::config::crm::CRM_APPLIED_META,
        "value": Value::Object(applied).to_string(),
    }));
    update["meta_data"] = Value::Array(meta);
    let after = patched(current, &update);
    let mut meta = update["meta_data"].as_array().cloned().unwrap_or_default();
    meta.push(
        json!({"key": woostream_core::config::crm::CRM_IDENTITY_META, "value": fingerprint(&after)}),
    );
    update["meta_data"] = Value::Array(meta);
    Decision::Update(update)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any body HubSpot (or anyone with the secret) could send: read, checked and
            /// turned into an update without a panic.
            #[test]
            fn any_body_is_read_without_panicking(
                body in prop::collection::vec(any::<u8>(), 0..400),
                id in any::<i64>(), at in any::<i64>(), object in any::<i64>(),
                property in "[a-z_]{0,12}", value in ".{0,40}", source in "[A-Z_]{0,12}",
            ) {
                let _ = serde_json::from_slice::<Vec<HubSpotEvent>>(&body);
                let fields = woostream_core::config::crm::CrmInbound::default().field_map();
                let allowed = vec!["CRM_UI".to_string()];
                let e: HubSpotEvent = serde_json::from_value(serde_json::json!({
                    "eventId": id, "portalId": 1, "subscriptionType": "contact.propertyChange",
                    "objectId": object, "propertyName": property, "propertyValue": value,
                    "changeSource": source, "occurredAt": at,
                })).unwrap();
                let _ = customer_of(&value, "eu");
                if let Ok(field) = relevant(&e, &fields, Some("1"), &allowed) {
                    let change = CrmChange {
                        change_id: "1:1".into(), shop_id: "eu".into(), customer_id: 7,
                        contact_id: object.to_string(), property: property.clone(),
                        field: field.to_string(), value: String::new(),
                        occurred_at: millis(at), received_at: millis(at), change_source: None,
                    };
                    let shop = serde_json::json!({"meta_data": [{"key": "_woostream_crm_applied", "value": value}]});
                    let _ = decide(&change, &value, &shop, |_| "fp".to_string());
                }
            }
        }
    }

    fn event(source: &str, source_id: &str, property: &str) -> HubSpotEvent {
        serde_json::from_value(json!({
            "eventId": 100, "subscriptionId": 1, "portalId": 62515, "appId": 7,
            "occurredAt": 1_700_000_000_000i64, "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0, "objectId": 901, "propertyName": property,
            "propertyValue": "+48 1", "changeSource": source, "sourceId": source_id,
        }))
        .unwrap()
    }

    fn fields() -> BTreeMap<String, String> {
        BTreeMap::from([("phone".to_string(), "billing.phone".to_string())])
    }

    fn allowed() -> Vec<String> {
        woostream_core::config::crm::DEFAULT_ALLOWED_SOURCES
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn own_writes_other_sources_other_kinds_and_unmapped_properties_are_ignored() {
        let (f, a) = (fields(), allowed());
        let app = Some("77");
        assert_eq!(
            relevant(&event("CRM_UI", "userId:5", "phone"), &f, app, &a),
            Ok("billing.phone")
        );
        assert_eq!(
            relevant(&event("INTEGRATION", "77", "phone"), &f, app, &a),
            Err(Ignored::OwnWrite)
        );
        // Another app, a form or an import: anyone can fill in a form.
        for source in ["INTEGRATION", "FORM", "IMPORT", "API", ""] {
            assert_eq!(
                relevant(&event(source, "12", "phone"), &f, app, &a),
                Err(Ignored::SourceNotAllowed),
                "{source}"
            );
        }
        // Unless the operator allows it.
        let with_imports = [a.clone(), vec!["IMPORT".to_string()]].concat();
        assert_eq!(
            relevant(&event("IMPORT", "12", "phone"), &f, app, &with_imports),
            Ok("billing.phone")
        );
        assert_eq!(
            relevant(&event("CRM_UI", "u", "jobtitle"), &f, app, &a),
            Err(Ignored::Unmapped)
        );
        let mut created = event("CRM_UI", "u", "phone");
        created.subscription_type = "contact.creation".into();
        assert_eq!(
            relevant(&created, &f, None, &a),
            Err(Ignored::NotAPropertyChange)
        );
    }

    #[test]
    fn an_older_crm_change_arriving_late_never_overwrites_a_newer_one_written_before() {
        let fp = |_: &Value| "fp".to_string();
        let mut shop = json!({"billing": {"phone": "+48 1"}, "meta_data": [],
            "date_modified_gmt": "2020-01-01T00:00:00"});
        let newer = CrmChange {
            change_id: "62515:2".into(),
            ..change("billing.phone", "2026-01-01T10:00:05Z")
        };
        let Decision::Update(update) = decide(&newer, "+48 2", &shop, fp) else {
            panic!("the newer change is written");
        };
        shop = patched(&shop, &update);
        shop["date_modified_gmt"] = "2026-01-01T10:00:06".into();
        shop["meta_data"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["key"] != woostream_core::config::crm::CRM_IDENTITY_META);
        shop["meta_data"]
            .as_array_mut()
            .unwrap()
            .push(json!({"key": woostream_core::config::crm::CRM_IDENTITY_META, "value": "fp"}));
        // Its older sibling arrives now: the shop's modification is woostream's own, so only
        // the per-field time tells it is older.
        let older = change("billing.phone", "2026-01-01T10:00:01Z");
        assert!(matches!(
            decide(&older, "+48 3", &shop, fp),
            Decision::Skip(why) if why.contains("newer CRM change")
        ));
        // Another field is not held back by it.
        let name = change("first_name", "2026-01-01T10:00:01Z");
        assert!(matches!(
            decide(&name, "Ola", &shop, fp),
            Decision::Update(_)
        ));
    }

    fn change(field: &str, at: &str) -> CrmChange {
        CrmChange {
            change_id: "62515:100".into(),
            shop_id: "eu".into(),
            customer_id: 25,
            contact_id: "901".into(),
            property: "phone".into(),
            field: field.into(),
            value: String::new(),
            occurred_at: DateTime::parse_from_rfc3339(at)
                .unwrap()
                .with_timezone(&Utc),
            received_at: Utc::now(),
            change_source: Some("CRM_UI".into()),
        }
    }

    fn customer() -> Value {
        serde_json::from_str(include_str!(
            "../../../../tests/fixtures/woocommerce/woo_customer_example.json"
        ))
        .unwrap()
    }

    fn fp(c: &Value) -> String {
        woostream_core::privacy::CustomerHasher::new(b"k").identity_fingerprint(c)
    }

    #[test]
    fn a_newer_crm_change_is_sent_with_the_fingerprint_of_the_result() {
        let c = customer();
        let d = decide(
            &change("billing.phone", "2026-01-01T00:00:00Z"),
            "+48 999",
            &c,
            fp,
        );
        let Decision::Update(update) = d else {
            panic!("{d:?}")
        };
        assert_eq!(update["billing"]["phone"], "+48 999");
        let after = patched(&c, &update);
        assert_eq!(
            current_value(&after, "billing.phone").as_deref(),
            Some("+48 999")
        );
        assert_eq!(
            current_value(&after, "billing.city"),
            current_value(&c, "billing.city")
        );
        let identity = after["meta_data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == woostream_core::config::crm::CRM_IDENTITY_META)
            .unwrap();
        assert_eq!(identity["value"].as_str().unwrap(), fp(&after));
        // Applied again (a retry, or the same change twice): nothing to send.
        assert!(matches!(
            decide(
                &change("billing.phone", "2026-01-01T00:00:00Z"),
                "+48 999",
                &after,
                fp
            ),
            Decision::Skip(_)
        ));
        // A second change right after the first, though the shop was modified (by us) since.
        let mut after_ours = after.clone();
        after_ours["date_modified_gmt"] = "2026-01-01T00:00:05".into();
        assert!(matches!(
            decide(
                &change("last_name", "2026-01-01T00:00:01Z"),
                "Smith",
                &after_ours,
                fp
            ),
            Decision::Update(_)
        ));
    }

    #[test]
    fn the_shop_changed_later_wins_and_meta_fields_are_set_by_key() {
        let c = customer(); // modified 2017-03-21T19:09:30 in the shop
        let old = decide(
            &change("billing.phone", "2017-03-01T00:00:00Z"),
            "+48 1",
            &c,
            fp,
        );
        assert!(
            matches!(&old, Decision::Skip(why) if why.contains("the newer wins")),
            "{old:?}"
        );
        let consent = decide(
            &change("meta.marketing_consent", "2026-01-01T00:00:00Z"),
            "yes",
            &c,
            fp,
        );
        let Decision::Update(update) = consent else {
            panic!()
        };
        let after = patched(&c, &update);
        assert_eq!(
            current_value(&after, "meta.marketing_consent").as_deref(),
            Some("yes")
        );
    }

    #[test]
    fn a_contact_id_property_names_the_shop_and_the_customer() {
        assert_eq!(customer_of("eu:25", "main"), Some(("eu".into(), 25)));
        assert_eq!(customer_of("25", "main"), Some(("main".into(), 25)));
        assert_eq!(customer_of("eu:x", "main"), None);
    }
}
