//! The CRM's side of the set-up: the properties the configured mapping writes must exist, and
//! the ones records are found by must be unique. `woostream crm setup` creates woostream's
//! own; the sink checks them at start-up, so a missing property stops it with the key to fix
//! instead of dead-lettering every record with PROPERTY_DOESNT_EXIST.

use std::collections::HashMap;

use woostream_core::config::crm::CrmConfig;

use crate::api::{CallError, Crm, NewProperty, Object, Property, PropertyKind};

/// A property the mapping writes, and the configuration key that names it.
#[derive(Clone, Debug, PartialEq)]
pub struct Needed {
    pub object: Object,
    pub property: NewProperty,
    pub key: String,
}

/// Contact properties HubSpot defines itself: they cannot be created, only mapped to.
pub const HUBSPOT_CONTACT_PROPERTIES: &[&str] =
    &["email", "firstname", "lastname", "phone", "mobilephone"];

/// Deal properties HubSpot defines itself.
pub const HUBSPOT_DEAL_PROPERTIES: &[&str] = &[
    "dealname",
    "pipeline",
    "dealstage",
    "amount",
    "closedate",
    "deal_currency_code",
];

fn hubspot_defined(n: &Needed) -> bool {
    let list = match n.object {
        Object::Contacts => HUBSPOT_CONTACT_PROPERTIES,
        Object::Deals => HUBSPOT_DEAL_PROPERTIES,
    };
    list.contains(&n.property.name.as_str())
}

fn kind(field: &str) -> PropertyKind {
    match field {
        "orders_count"
        | "revenue"
        | "average_order_value"
        | "p_alive"
        | "predicted_clv"
        | "purchase_interval_days"
        | "discount_share"
        | "amount" => PropertyKind::Number,
        "first_order_date"
        | "last_order_date"
        | "close_date"
        | "next_purchase_date"
        | "replenishment_due_date" => PropertyKind::DateTime,
        _ => PropertyKind::Text,
    }
}

/// Every property the configuration writes, with its kind and whether it must be unique.
pub fn needed(c: &CrmConfig) -> Vec<Needed> {
    let id = |object, name: &str, label: &str, key: &str| Needed {
        object,
        property: NewProperty {
            name: name.into(),
            label: label.into(),
            kind: PropertyKind::Text,
            unique: true,
        },
        key: format!("crm.{key}"),
    };
    let mut out = vec![
        id(
            Object::Contacts,
            &c.contact_id_property,
            "WooCommerce customer id",
            "contact_id_property",
        ),
        id(
            Object::Contacts,
            &c.guest_id_property,
            "WooCommerce guest key",
            "guest_id_property",
        ),
        id(
            Object::Deals,
            &c.deal_id_property,
            "WooCommerce order id",
            "deal_id_property",
        ),
    ];
    for (object, section, mapping) in [
        (Object::Contacts, "contact_properties", c.contact_mapping()),
        (Object::Deals, "deal_properties", c.deal_mapping()),
    ] {
        for (field, name) in mapping {
            out.push(Needed {
                object,
                property: NewProperty {
                    label: format!("WooCommerce {}", field.replace('_', " ")),
                    name,
                    kind: kind(&field),
                    unique: false,
                },
                key: format!("crm.{section}.{field}"),
            });
        }
    }
    out
}

/// What stops the sink: a property missing, or one records are found by that is not unique.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    Missing(Needed),
    NotUnique(Needed),
    /// `crm.pipeline` names no deal pipeline: every deal would be refused.
    NoPipeline(String),
}

impl Problem {
    pub fn describe(&self) -> String {
        match self {
            Problem::Missing(n) if hubspot_defined(n) => format!(
                "the CRM has no {} property {:?} ({}): map the field to a property it has",
                n.object.as_str(),
                n.property.name,
                n.key
            ),
            Problem::Missing(n) => format!(
                "the CRM has no {} property {:?} ({}): run `woostream crm setup` to create woostream's properties, or map the field to a property it has",
                n.object.as_str(),
                n.property.name,
                n.key
            ),
            Problem::NoPipeline(p) => format!(
                "the CRM has no deal pipeline {p:?} (crm.pipeline): expected the internal id of one of its pipelines"
            ),
            Problem::NotUnique(n) => format!(
                "the {} property {:?} ({}) does not require unique values: records can only be found by a unique property",
                n.object.as_str(),
                n.property.name,
                n.key
            ),
        }
    }
}

/// Compares what is needed with what the CRM has.
pub fn problems(needed: &[Needed], existing: &HashMap<Object, Vec<Property>>) -> Vec<Problem> {
    needed
        .iter()
        .filter_map(|n| {
            let found = existing
                .get(&n.object)
                .and_then(|ps| ps.iter().find(|p| p.name == n.property.name));
            match found {
                None => Some(Problem::Missing(n.clone())),
                Some(p) if n.property.unique && !p.unique => Some(Problem::NotUnique(n.clone())),
                Some(_) => None,
            }
        })
        .collect()
}

/// Order statuses whose configured stage the pipeline lacks: such deals are dead-lettered (and
/// replayable once the stage exists), so this warns rather than stops.
pub fn unknown_stages(c: &CrmConfig, stages: &[String]) -> Vec<(String, String)> {
    c.stages()
        .into_iter()
        .filter(|(_, stage)| !stages.contains(stage))
        .collect()
}

/// What a check found.
#[derive(Debug, Default, PartialEq)]
pub struct Checked {
    pub problems: Vec<Problem>,
    /// (order status, stage) pairs the pipeline lacks.
    pub unknown_stages: Vec<(String, String)>,
}

async fn pipeline<C: Crm>(crm: &C, c: &CrmConfig, out: &mut Checked) -> Result<(), CallError> {
    match crm.stages(&c.pipeline).await? {
        Some(stages) => out.unknown_stages = unknown_stages(c, &stages),
        None => out.problems.push(Problem::NoPipeline(c.pipeline.clone())),
    }
    Ok(())
}

async fn existing<C: Crm>(crm: &C) -> Result<HashMap<Object, Vec<Property>>, CallError> {
    let mut out = HashMap::new();
    for object in [Object::Contacts, Object::Deals] {
        out.insert(object, crm.properties(object).await?);
    }
    Ok(out)
}

/// The problems the CRM has with the configuration (three requests).
pub async fn check<C: Crm>(crm: &C, c: &CrmConfig) -> Result<Checked, CallError> {
    let mut out = Checked {
        problems: problems(&needed(c), &existing(crm).await?),
        ..Checked::default()
    };
    pipeline(crm, c, &mut out).await?;
    Ok(out)
}

/// What `woostream crm setup` did.
#[derive(Debug, Default)]
pub struct SetUp {
    pub created: Vec<Needed>,
    pub present: usize,
    /// What it cannot fix: HubSpot's own properties missing, non-unique id properties, the
    /// pipeline, stages.
    pub checked: Checked,
}

/// Creates the missing properties woostream can create; reports the rest.
pub async fn set_up<C: Crm>(crm: &C, c: &CrmConfig) -> Result<SetUp, CallError> {
    let needed = needed(c);
    let mut out = SetUp::default();
    let problems = problems(&needed, &existing(crm).await?);
    out.present = needed.len() - problems.len();
    for p in problems {
        match p {
            Problem::Missing(n) if !hubspot_defined(&n) => {
                crm.create_property(n.object, &n.property).await?;
                out.created.push(n);
            }
            other => out.checked.problems.push(other),
        }
    }
    pipeline(crm, c, &mut out.checked).await?;
    Ok(out)
}

/// `woostream crm setup` against the configured HubSpot.
pub async fn set_up_hubspot(c: &CrmConfig) -> anyhow::Result<SetUp> {
    use anyhow::Context;
    if c.dry_run {
        anyhow::bail!("crm.dry_run is set: there is no CRM to set up");
    }
    let token = c
        .resolved_token()
        .context("crm.token (or crm.token_env) is not set")?;
    let crm = crate::client::HubSpot::new(&c.api_url, token)?;
    set_up(&crm, c)
        .await
        .with_context(|| format!("setting up the CRM at {}", c.api_url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryCrm, Store};

    #[tokio::test]
    async fn setup_creates_what_the_mapping_writes_and_the_check_then_passes() {
        let crm = MemoryCrm::new(Store::fresh_portal());
        let mut c = CrmConfig::default();
        c.contact_properties
            .insert("segment".into(), "rfm_segment".into());
        let before = check(&crm, &c).await.unwrap().problems;
        let missing: Vec<String> = before
            .iter()
            .map(|p| match p {
                Problem::Missing(n) => n.key.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(missing.contains(&"crm.contact_id_property".to_string()));
        assert!(missing.contains(&"crm.contact_properties.segment".to_string()));
        assert!(
            !missing.contains(&"crm.contact_properties.email".to_string()),
            "HubSpot has email"
        );
        assert!(before[0].describe().contains("woostream crm setup"));

        let done = set_up(&crm, &c).await.unwrap();
        assert_eq!(done.created.len(), missing.len());
        assert_eq!(done.checked, Checked::default());
        assert_eq!(check(&crm, &c).await.unwrap(), Checked::default());
        let listed = crm.0.lock().unwrap().property_list(Object::Contacts);
        assert!(listed.contains(&Property {
            name: "woo_customer_id".into(),
            unique: true
        }));
        assert!(listed.contains(&Property {
            name: "rfm_segment".into(),
            unique: false
        }));
        let again = set_up(&crm, &c).await.unwrap();
        assert!(again.created.is_empty(), "nothing twice");
    }

    #[tokio::test]
    async fn a_missing_pipeline_stops_and_a_missing_stage_warns() {
        let crm = MemoryCrm::new(Store::portal());
        let mut c = CrmConfig::default();
        c.deal_stages
            .insert("awaiting-shipment".into(), "shipping".into());
        let checked = check(&crm, &c).await.unwrap();
        assert_eq!(checked.problems, []);
        assert_eq!(
            checked.unknown_stages,
            [("awaiting-shipment".to_string(), "shipping".to_string())]
        );
        c.pipeline = "12345".into();
        let checked = check(&crm, &c).await.unwrap();
        assert_eq!(checked.problems, [Problem::NoPipeline("12345".into())]);
        assert!(checked.problems[0].describe().contains("crm.pipeline"));
    }

    #[test]
    fn what_setup_cannot_fix_is_named_with_its_key() {
        let mut c = CrmConfig::default();
        c.contact_properties.insert("phone".into(), "".into());
        c.contact_id_property = "customer_ref".into();
        let existing = HashMap::from([
            (
                Object::Contacts,
                vec![Property {
                    name: "customer_ref".into(),
                    unique: false,
                }],
            ),
            (Object::Deals, vec![]),
        ]);
        let found = problems(&needed(&c), &existing);
        let not_unique: Vec<_> = found
            .iter()
            .filter(|p| matches!(p, Problem::NotUnique(_)))
            .collect();
        assert_eq!(not_unique.len(), 1);
        assert!(not_unique[0].describe().contains("crm.contact_id_property"));
        let email = found
            .iter()
            .find(|p| matches!(p, Problem::Missing(n) if n.property.name == "email"))
            .unwrap();
        assert!(email.describe().contains("map the field"));
        assert!(
            !found
                .iter()
                .any(|p| matches!(p, Problem::Missing(n) if n.key.ends_with(".phone"))),
            "a field mapped to \"\" is not written"
        );
    }
}
