//! HubSpot's object semantics in memory: unique properties, upsert by them, properties that
//! must exist, pipeline stages, deal → contact associations, and whole-batch validation errors.
//! `make run` writes to it (dry run); the tests' HubSpot server keeps its records in it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use woostream_core::config::crm::{CONTACT_FIELDS, DEAL_FIELDS, DEFAULT_STAGES};

use crate::api::{
    CallError, Crm, Input, NewProperty, Object, Property, PropertyKind, RecordError, Reply, Written,
};
use crate::budget::RateLimits;
use crate::setup::{HUBSPOT_CONTACT_PROPERTIES, HUBSPOT_DEAL_PROPERTIES};

/// A refusal in HubSpot's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreError {
    pub status: u16,
    pub category: String,
    pub message: String,
}

impl StoreError {
    fn validation(message: String) -> StoreError {
        StoreError {
            status: 400,
            category: "VALIDATION_ERROR".into(),
            message,
        }
    }
}

#[derive(Debug, Default)]
pub struct Objects {
    pub records: BTreeMap<u64, BTreeMap<String, String>>,
    unique: Vec<String>,
    index: HashMap<(String, String), u64>,
}

impl Objects {
    fn with_unique(unique: &[&str]) -> Objects {
        Objects {
            unique: unique.iter().map(|s| s.to_string()).collect(),
            ..Objects::default()
        }
    }

    fn find(&self, property: &str, value: &str) -> Option<u64> {
        self.index
            .get(&(property.to_string(), normal(property, value)))
            .copied()
    }
}

/// Emails are unique whatever their case.
fn normal(property: &str, value: &str) -> String {
    if property == "email" {
        value.to_lowercase()
    } else {
        value.to_string()
    }
}

fn valid_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.starts_with('.')
        && domain.contains('.')
        && !domain.ends_with('.')
        && !v.contains(char::is_whitespace)
}

#[derive(Debug)]
pub struct Store {
    pub contacts: Objects,
    pub deals: Objects,
    /// (deal id, contact id).
    pub associations: BTreeSet<(u64, u64)>,
    /// Properties that exist, per object; `None`: any.
    properties: Option<HashMap<Object, HashSet<String>>>,
    /// Pipeline → its stages.
    stages: HashMap<String, HashSet<String>>,
    next_id: u64,
}

impl Store {
    /// A new portal: HubSpot's default pipeline and its own properties, email the only unique
    /// one; woostream's properties are for `woostream crm setup` to create.
    pub fn fresh_portal() -> Store {
        let names =
            |list: &[&str]| -> HashSet<String> { list.iter().map(|s| s.to_string()).collect() };
        Store {
            contacts: Objects::with_unique(&["email"]),
            deals: Objects::with_unique(&[]),
            properties: Some(HashMap::from([
                (Object::Contacts, names(HUBSPOT_CONTACT_PROPERTIES)),
                (Object::Deals, names(HUBSPOT_DEAL_PROPERTIES)),
            ])),
            ..Store::permissive()
        }
    }

    /// A portal as `woostream crm setup` leaves it with the default configuration.
    pub fn portal() -> Store {
        let mut store = Store::fresh_portal();
        let mut add = |object, name: &str, unique| {
            let _ = store.create_property(
                object,
                &NewProperty {
                    name: name.into(),
                    label: name.into(),
                    kind: PropertyKind::Text,
                    unique,
                },
            );
        };
        for (_, p) in CONTACT_FIELDS {
            add(Object::Contacts, p, false);
        }
        for (_, p) in DEAL_FIELDS {
            add(Object::Deals, p, false);
        }
        add(Object::Contacts, "woo_customer_id", true);
        add(Object::Contacts, "woo_guest_id", true);
        add(Object::Deals, "woo_order_id", true);
        store
    }

    /// A pipeline's stage ids, sorted.
    pub fn stage_list(&self, pipeline: &str) -> Option<Vec<String>> {
        let mut stages: Vec<String> = self.stages.get(pipeline)?.iter().cloned().collect();
        stages.sort();
        Some(stages)
    }

    /// An object's properties, as HubSpot lists them.
    pub fn property_list(&self, object: Object) -> Vec<Property> {
        let objects = self.objects(object);
        let mut names: Vec<String> = match &self.properties {
            Some(p) => p.get(&object).into_iter().flatten().cloned().collect(),
            None => objects.unique.clone(),
        };
        names.sort();
        names
            .into_iter()
            .map(|name| Property {
                unique: objects.unique.contains(&name),
                name,
            })
            .collect()
    }

    /// HubSpot's create-property: 409 when it exists.
    pub fn create_property(&mut self, object: Object, p: &NewProperty) -> Result<(), StoreError> {
        if self.property_list(object).iter().any(|e| e.name == p.name) {
            return Err(StoreError {
                status: 409,
                category: "OBJECT_ALREADY_EXISTS".into(),
                message: format!("A property named '{}' already exists.", p.name),
            });
        }
        if let Some(props) = &mut self.properties {
            props.entry(object).or_default().insert(p.name.clone());
        }
        if p.unique {
            self.objects_mut(object).unique.push(p.name.clone());
        }
        Ok(())
    }

    /// Any property goes (the dry run does not know the shop's portal).
    pub fn permissive() -> Store {
        Store {
            contacts: Objects::with_unique(&["email", "woo_customer_id", "woo_guest_id"]),
            deals: Objects::with_unique(&["woo_order_id"]),
            associations: BTreeSet::new(),
            properties: None,
            stages: HashMap::from([(
                "default".to_string(),
                DEFAULT_STAGES.iter().map(|(_, s)| s.to_string()).collect(),
            )]),
            next_id: 1000,
        }
    }

    pub fn add_stage(&mut self, pipeline: &str, stage: &str) {
        self.stages
            .entry(pipeline.into())
            .or_default()
            .insert(stage.into());
    }

    pub fn objects(&self, object: Object) -> &Objects {
        match object {
            Object::Contacts => &self.contacts,
            Object::Deals => &self.deals,
        }
    }

    fn objects_mut(&mut self, object: Object) -> &mut Objects {
        match object {
            Object::Contacts => &mut self.contacts,
            Object::Deals => &mut self.deals,
        }
    }

    fn check(&self, object: Object, inputs: &[Input]) -> Result<(), StoreError> {
        if inputs.len() > 100 {
            return Err(StoreError::validation(format!(
                "Batch input size {} exceeds the limit of 100",
                inputs.len()
            )));
        }
        let objects = self.objects(object);
        let mut seen = HashSet::new();
        for input in inputs {
            if !objects.unique.contains(&input.id_property) {
                return Err(StoreError::validation(format!(
                    "{} is not a unique property of {}",
                    input.id_property,
                    object.as_str()
                )));
            }
            if !seen.insert((
                input.id_property.clone(),
                normal(&input.id_property, &input.id),
            )) {
                return Err(StoreError::validation(
                    "Duplicate IDs found in batch input".into(),
                ));
            }
        }
        let mut invalid = Vec::new();
        for input in inputs {
            for (name, value) in &input.properties {
                let exists = self
                    .properties
                    .as_ref()
                    .is_none_or(|p| p.get(&object).is_some_and(|s| s.contains(name)));
                if !exists {
                    invalid.push(format!(
                        r#"{{"isValid":false,"message":"Property \"{name}\" does not exist","error":"PROPERTY_DOESNT_EXIST","name":"{name}"}}"#
                    ));
                } else if name == "email" && !valid_email(value) {
                    invalid.push(format!(
                        r#"{{"isValid":false,"message":"Email address {value} is invalid","error":"INVALID_EMAIL","name":"email"}}"#
                    ));
                } else if name == "dealstage" {
                    let pipeline = input
                        .properties
                        .get("pipeline")
                        .map_or("default", String::as_str);
                    if !self.stages.get(pipeline).is_some_and(|s| s.contains(value)) {
                        invalid.push(format!(
                            r#"{{"isValid":false,"message":"{value} was not one of the allowed options","error":"INVALID_OPTION","name":"dealstage"}}"#
                        ));
                    }
                }
            }
        }
        if !invalid.is_empty() {
            return Err(StoreError::validation(format!(
                "Property values were not valid: [{}]",
                invalid.join(",")
            )));
        }
        // A unique value may not move to a second record.
        for input in inputs {
            let target = objects.find(&input.id_property, &input.id);
            for u in &objects.unique {
                if let Some(v) = input.properties.get(u) {
                    if let Some(owner) = objects.find(u, v) {
                        if Some(owner) != target {
                            return Err(StoreError {
                                status: 409,
                                category: "CONFLICT".into(),
                                message: format!(
                                    "{} already exists. Existing ID: {owner}",
                                    object.as_str()
                                ),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// HubSpot's batch upsert: all or nothing on validation errors.
    pub fn upsert(&mut self, object: Object, inputs: &[Input]) -> Result<Vec<Written>, StoreError> {
        self.check(object, inputs)?;
        let mut out = Vec::with_capacity(inputs.len());
        for input in inputs {
            let found = self.objects(object).find(&input.id_property, &input.id);
            let (id, new) = match found {
                Some(id) => (id, false),
                None => {
                    self.next_id += 1;
                    (self.next_id, true)
                }
            };
            let objects = self.objects_mut(object);
            let record = objects.records.entry(id).or_default();
            let unique_values = |record: &BTreeMap<String, String>| -> Vec<(String, String)> {
                objects
                    .unique
                    .iter()
                    .filter_map(|u| record.get(u).map(|v| (u.clone(), normal(u, v))))
                    .collect()
            };
            let before = unique_values(record);
            for (k, v) in &input.properties {
                record.insert(k.clone(), v.clone());
            }
            record.insert(input.id_property.clone(), input.id.clone());
            let after = unique_values(record);
            // A changed unique value (a new email) frees the old one, as in HubSpot.
            for key in before.iter().filter(|k| !after.contains(k)) {
                objects.index.remove(key);
            }
            for key in after {
                objects.index.insert(key, id);
            }
            out.push(Written {
                id: id.to_string(),
                new,
            });
        }
        Ok(out)
    }

    /// Each pair on its own: a missing object fails that pair only (HTTP 207).
    pub fn associate(&mut self, pairs: &[(String, String)]) -> Vec<Result<(), StoreError>> {
        pairs
            .iter()
            .map(|(deal, contact)| {
                let ids = (deal.parse::<u64>(), contact.parse::<u64>());
                match ids {
                    (Ok(d), Ok(c))
                        if self.deals.records.contains_key(&d)
                            && self.contacts.records.contains_key(&c) =>
                    {
                        self.associations.insert((d, c));
                        Ok(())
                    }
                    _ => Err(StoreError {
                        status: 404,
                        category: "OBJECT_NOT_FOUND".into(),
                        message: format!("No deal {deal} or contact {contact}"),
                    }),
                }
            })
            .collect()
    }

    fn contact(&self, id: &str) -> Result<u64, StoreError> {
        id.parse::<u64>()
            .ok()
            .filter(|c| self.contacts.records.contains_key(c))
            .ok_or_else(|| StoreError {
                status: 404,
                category: "OBJECT_NOT_FOUND".into(),
                message: format!("No contact {id}"),
            })
    }

    /// GDPR delete: the contact, its unique values and its associations are gone.
    pub fn gdpr_delete(&mut self, id: &str) -> Result<(), StoreError> {
        let c = self.contact(id)?;
        self.contacts.records.remove(&c);
        self.contacts.index.retain(|_, v| *v != c);
        self.associations.retain(|(_, contact)| *contact != c);
        Ok(())
    }

    /// Empties properties of a contact (freeing the unique values they held).
    pub fn blank(&mut self, id: &str, properties: &[String]) -> Result<(), StoreError> {
        let c = self.contact(id)?;
        let record = self.contacts.records.get_mut(&c).expect("checked");
        for p in properties {
            if let Some(v) = record.get_mut(p) {
                let freed = (p.clone(), normal(p, v));
                v.clear();
                self.contacts.index.remove(&freed);
            }
        }
        Ok(())
    }

    pub fn contact_deals(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let c = self.contact(id)?;
        Ok(self
            .associations
            .iter()
            .filter(|(_, contact)| *contact == c)
            .map(|(deal, _)| deal.to_string())
            .collect())
    }

    pub fn detach(&mut self, id: &str, deals: &[String]) -> Result<(), StoreError> {
        let c = self.contact(id)?;
        self.associations
            .retain(|(d, contact)| *contact != c || !deals.contains(&d.to_string()));
        Ok(())
    }

    /// The contact whose unique `property` is `value` (`hs_object_id`: its id), as HubSpot's
    /// read answers it: 404 when there is none.
    pub fn read_contact(
        &self,
        property: &str,
        value: &str,
    ) -> Result<(u64, &BTreeMap<String, String>), StoreError> {
        let id = if property == "hs_object_id" {
            value.parse::<u64>().ok()
        } else {
            self.contacts.find(property, value)
        };
        id.and_then(|id| Some((id, self.contacts.records.get(&id)?)))
            .ok_or_else(|| StoreError {
                status: 404,
                category: "OBJECT_NOT_FOUND".into(),
                message: "Object not found".into(),
            })
    }

    /// The record whose `property` is `value`.
    pub fn get(
        &self,
        object: Object,
        property: &str,
        value: &str,
    ) -> Option<&BTreeMap<String, String>> {
        let o = self.objects(object);
        o.records.get(&o.find(property, value)?)
    }
}

/// The dry-run CRM: HubSpot's semantics, no network.
#[derive(Clone)]
pub struct MemoryCrm(pub Arc<Mutex<Store>>);

impl MemoryCrm {
    pub fn new(store: Store) -> MemoryCrm {
        MemoryCrm(Arc::new(Mutex::new(store)))
    }
}

fn rejected(e: StoreError) -> CallError {
    CallError::Rejected {
        status: e.status,
        category: Some(e.category),
        message: e.message,
        limits: RateLimits::default(),
    }
}

/// A reply naming `ids` (or the contact itself when there are none).
fn done(contact: &str, ids: Vec<String>) -> Reply {
    let ids = if ids.is_empty() {
        vec![contact.to_string()]
    } else {
        ids
    };
    Reply {
        status: 200,
        written: ids
            .into_iter()
            .map(|id| Ok(Written { id, new: false }))
            .collect(),
        limits: RateLimits::default(),
        ..Reply::default()
    }
}

impl Crm for MemoryCrm {
    async fn upsert(&self, object: Object, inputs: &[Input]) -> Result<Reply, CallError> {
        let written = self
            .0
            .lock()
            .expect("CRM store")
            .upsert(object, inputs)
            .map_err(rejected)?;
        Ok(Reply {
            status: 200,
            written: written.into_iter().map(Ok).collect(),
            limits: RateLimits::default(),
            ..Reply::default()
        })
    }

    async fn associate(&self, pairs: &[(String, String)]) -> Result<Reply, CallError> {
        let results = self.0.lock().expect("CRM store").associate(pairs);
        let partial = results.iter().any(Result::is_err);
        Ok(Reply {
            status: if partial { 207 } else { 200 },
            written: results
                .into_iter()
                .zip(pairs)
                .map(|(r, (deal, _))| match r {
                    Ok(()) => Ok(Written {
                        id: deal.clone(),
                        new: true,
                    }),
                    Err(e) => Err(RecordError {
                        status: Some(e.status),
                        category: Some(e.category),
                        message: e.message,
                    }),
                })
                .collect(),
            limits: RateLimits::default(),
            ..Reply::default()
        })
    }

    async fn properties(&self, object: Object) -> Result<Vec<Property>, CallError> {
        Ok(self.0.lock().expect("CRM store").property_list(object))
    }

    async fn read_contact(
        &self,
        (property, value): (&str, &str),
        properties: &[String],
    ) -> Result<Reply, CallError> {
        let store = self.0.lock().expect("CRM store");
        let (id, record) = store.read_contact(property, value).map_err(rejected)?;
        let mut reply = done(&id.to_string(), Vec::new());
        reply.properties = properties
            .iter()
            .filter_map(|p| Some((p.clone(), record.get(p).filter(|v| !v.is_empty())?.clone())))
            .collect();
        Ok(reply)
    }

    async fn gdpr_delete(&self, contact: &str) -> Result<Reply, CallError> {
        self.0
            .lock()
            .expect("CRM store")
            .gdpr_delete(contact)
            .map_err(rejected)?;
        Ok(done(contact, Vec::new()))
    }

    async fn blank(&self, contact: &str, properties: &[String]) -> Result<Reply, CallError> {
        self.0
            .lock()
            .expect("CRM store")
            .blank(contact, properties)
            .map_err(rejected)?;
        Ok(done(contact, Vec::new()))
    }

    async fn contact_deals(&self, contact: &str) -> Result<Reply, CallError> {
        let deals = self
            .0
            .lock()
            .expect("CRM store")
            .contact_deals(contact)
            .map_err(rejected)?;
        Ok(done(contact, deals))
    }

    async fn detach(&self, contact: &str, deals: &[String]) -> Result<Reply, CallError> {
        self.0
            .lock()
            .expect("CRM store")
            .detach(contact, deals)
            .map_err(rejected)?;
        Ok(done(contact, Vec::new()))
    }

    async fn stages(&self, pipeline: &str) -> Result<Option<Vec<String>>, CallError> {
        Ok(self.0.lock().expect("CRM store").stage_list(pipeline))
    }

    async fn create_property(&self, object: Object, p: &NewProperty) -> Result<(), CallError> {
        self.0
            .lock()
            .expect("CRM store")
            .create_property(object, p)
            .map_err(rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(prop: &str, id: &str, props: &[(&str, &str)]) -> Input {
        Input {
            id_property: prop.into(),
            id: id.into(),
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn upsert_creates_then_updates_by_a_unique_property() {
        let mut s = Store::portal();
        let w = s
            .upsert(
                Object::Contacts,
                &[input(
                    "email",
                    "A@x.example",
                    &[("woo_customer_id", "guest:a")],
                )],
            )
            .unwrap();
        assert!(w[0].new);
        let again = s
            .upsert(
                Object::Contacts,
                &[input("woo_customer_id", "guest:a", &[("firstname", "Ala")])],
            )
            .unwrap();
        assert_eq!(
            (again[0].id.clone(), again[0].new),
            (w[0].id.clone(), false)
        );
        let r = s.get(Object::Contacts, "email", "a@x.example").unwrap();
        assert_eq!(r["firstname"], "Ala");
    }

    #[test]
    fn a_changed_unique_value_frees_the_old_one() {
        let mut s = Store::portal();
        let id = |email: &str| input("woo_customer_id", "main:7", &[("email", email)]);
        s.upsert(Object::Contacts, &[id("old@x.example")]).unwrap();
        s.upsert(Object::Contacts, &[id("new@x.example")]).unwrap();
        assert!(s.get(Object::Contacts, "email", "old@x.example").is_none());
        let other = input("woo_customer_id", "main:8", &[("email", "old@x.example")]);
        let w = s.upsert(Object::Contacts, &[other]).unwrap();
        assert!(w[0].new, "the old email belongs to nobody now");
        assert_eq!(s.contacts.records.len(), 2);
    }

    #[test]
    fn one_invalid_record_refuses_the_whole_batch() {
        let mut s = Store::portal();
        let err = s
            .upsert(
                Object::Contacts,
                &[
                    input("woo_customer_id", "1", &[("email", "ok@x.example")]),
                    input("woo_customer_id", "2", &[("email", "jan@kowalski")]),
                ],
            )
            .unwrap_err();
        assert_eq!(
            (err.status, err.category.as_str()),
            (400, "VALIDATION_ERROR")
        );
        assert!(err.message.contains("INVALID_EMAIL"));
        assert!(s.contacts.records.is_empty(), "nothing written");
        let err = s
            .upsert(
                Object::Contacts,
                &[input("woo_customer_id", "1", &[("shoe", "42")])],
            )
            .unwrap_err();
        assert!(err.message.contains("PROPERTY_DOESNT_EXIST"));
        let many: Vec<Input> = (0..101)
            .map(|i| input("woo_customer_id", &i.to_string(), &[]))
            .collect();
        assert!(s.upsert(Object::Contacts, &many).is_err());
    }

    #[test]
    fn unknown_stages_and_moved_unique_values_are_refused() {
        let mut s = Store::portal();
        let deal = |stage: &str| {
            input(
                "woo_order_id",
                "main:1",
                &[("dealstage", stage), ("pipeline", "default")],
            )
        };
        assert!(s.upsert(Object::Deals, &[deal("shipping")]).is_err());
        s.add_stage("default", "shipping");
        assert!(s.upsert(Object::Deals, &[deal("shipping")]).is_ok());
        s.upsert(
            Object::Contacts,
            &[input("woo_customer_id", "1", &[("email", "a@x.example")])],
        )
        .unwrap();
        let err = s
            .upsert(
                Object::Contacts,
                &[input("woo_customer_id", "2", &[("email", "a@x.example")])],
            )
            .unwrap_err();
        assert_eq!(err.status, 409);
    }
}
