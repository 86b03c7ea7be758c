//! What a flush decides, without the CRM: which contacts and deals are sent and under which
//! id, which are refused before any call and why, how a 409 on a contact is retargeted at the
//! contact that already has the email, which deals need their association, and what each
//! answer means for the report and for what the CRM is known to have. `flush` calls the CRM
//! between these steps; everything here is a plain function, tested directly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use woostream_core::contract::sink_records::CrmAttempt;

use super::changes::{deal_key, ContactChange, ContactId, DealChange, Mapping};
use super::pending::Item;
use woostream_hubspot::api::{Input, Written};

/// Why the CRM will not take a change.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub reason: String,
    pub category: Option<String>,
    pub status: Option<u16>,
}

impl Refusal {
    pub fn local(reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            category: None,
            status: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Delivered {
        object_id: String,
        new: bool,
    },
    /// Nothing to write (an order status that makes no deal).
    Skipped(String),
    Refused(Refusal),
}

/// The flush stopped for shutdown; what it did not finish stays uncommitted.
#[derive(Debug)]
pub struct Interrupted;

#[derive(Debug, Default)]
pub struct Report {
    pub contacts: Vec<(Item<ContactChange>, Outcome)>,
    /// With the deal's contact as sent in this flush, for a dead letter a replay can use.
    pub deals: Vec<(Item<DealChange>, Outcome, Option<ContactChange>)>,
    /// Deals associated with their contact in this flush: (shop, order).
    pub associated: HashSet<(String, i64)>,
}

/// What the CRM is known to have: contact ids by (shop, customer), associated deals.
#[derive(Debug, Default)]
pub struct Known {
    pub contacts: HashMap<(String, String), String>,
    pub associated: HashSet<(String, i64)>,
    /// Newest profile version the CRM has per contact: an older one arriving late is stale.
    pub contact_versions: HashMap<(String, String), i64>,
    /// Newest deal version the CRM has per order: WooCommerce redelivers old states late,
    /// and they must not move a deal back.
    pub deals_at: HashMap<(String, i64), i64>,
}

impl Known {
    /// Leaves out of `c` what the CRM already has newer; `None` when nothing is left.
    pub fn fresh_contact(&self, mut c: ContactChange) -> Option<ContactChange> {
        let key = (c.shop_id.clone(), c.customer.clone());
        if let (Some(m), Some(&v)) = (&c.metrics, self.contact_versions.get(&key)) {
            if m.version <= v {
                c.metrics = None;
            }
        }
        (c.metrics.is_some() || c.identity.is_some()).then_some(c)
    }

    pub fn fresh_deal(&self, d: DealChange) -> Option<DealChange> {
        let at = self.deals_at.get(&(d.shop_id.clone(), d.order_id));
        at.is_none_or(|&v| d.version() > v).then_some(d)
    }

    /// The CRM has the contact `key` (with its CRM id, when known) and profile `version`.
    pub fn saw_contact(&mut self, key: (String, String), id: Option<String>, version: Option<i64>) {
        if let Some(v) = version {
            let known = self.contact_versions.entry(key.clone()).or_default();
            *known = (*known).max(v);
        }
        if let Some(id) = id {
            self.contacts.insert(key, id);
        }
    }

    /// The CRM has the deal of `key` (shop, order) at `version`.
    pub fn saw_deal(&mut self, key: (String, i64), version: i64) {
        let at = self.deals_at.entry(key).or_default();
        *at = (*at).max(version);
    }
}

pub type SharedKnown = Arc<Mutex<Known>>;

/// (shop, customer): how contacts are keyed.
type ContactKey = (String, String);

/// Changes to send, each with the input that writes it (same order).
#[derive(Debug)]
pub struct Planned<T> {
    pub items: Vec<T>,
    pub inputs: Vec<Input>,
}

impl<T> Default for Planned<T> {
    fn default() -> Self {
        Planned {
            items: Vec::new(),
            inputs: Vec::new(),
        }
    }
}

/// What the contacts of a flush came to, for their deals.
#[derive(Debug, Default)]
pub struct ContactsSent {
    /// The contact as sent, for a deal's dead letter that a replay can use.
    pub sent: HashMap<ContactKey, ContactChange>,
    /// Why a contact was refused: its deals are refused with it.
    pub refused: HashMap<ContactKey, String>,
}

/// Changes that cannot be sent at all go straight into the report, refused with why.
pub fn refuse_unsendable(
    unknown_contacts: Vec<Item<ContactChange>>,
    orphan_deals: Vec<Item<DealChange>>,
    report: &mut Report,
) {
    for item in unknown_contacts {
        report.contacts.push((
            item,
            Outcome::Refused(Refusal::local(
                "a guest whose email never became known: the CRM cannot find the contact",
            )),
        ));
    }
    for item in orphan_deals {
        report.deals.push((
            item,
            Outcome::Refused(Refusal::local(
                "the order's customer never reached the CRM, so the deal has no contact",
            )),
            None,
        ));
    }
}

/// The contacts to upsert, each under the property that finds it (the customer id, the guest
/// key, or the email of a guest the CRM does not know yet); a guest without an email is
/// refused.
pub fn plan_contacts(
    contacts: Vec<Item<ContactChange>>,
    known: &Known,
    mapping: &Mapping,
    report: &mut Report,
) -> Planned<Item<ContactChange>> {
    let mut planned = Planned::default();
    for item in contacts {
        let c = &item.change;
        let exists = known
            .contacts
            .contains_key(&(c.shop_id.clone(), c.customer.clone()));
        match mapping.contact_id(c, exists) {
            Some(id) => {
                planned.inputs.push(Input {
                    id_property: id.property,
                    id: id.value,
                    properties: mapping.contact_properties(c),
                });
                planned.items.push(item);
            }
            None => report.contacts.push((
                item,
                Outcome::Refused(Refusal::local("a guest without an email")),
            )),
        }
    }
    planned
}

/// The contacts refused for an email another contact already has (HubSpot's 409 CONFLICT),
/// with the email that finds that contact: (index in `planned`, the contact's key, the email).
/// A guest checkout before registering, a form or another integration made it — or someone
/// typed another person's email, which is why [`may_take_over`] decides before anything is
/// written onto it.
pub fn conflicts(
    planned: &Planned<Item<ContactChange>>,
    written: &[Result<Written, Refusal>],
    mapping: &Mapping,
) -> Vec<(usize, ContactId, ContactId)> {
    written
        .iter()
        .enumerate()
        .filter(|(_, w)| matches!(w, Err(r) if r.status == Some(409)))
        .filter_map(|(i, _)| {
            let c = &planned.items[i].change;
            let email = mapping.by_email(c)?;
            let key = mapping.contact_id(c, true)?;
            (email.property != planned.inputs[i].id_property).then_some((i, key, email))
        })
        .collect()
}

/// Whether a customer may take over the contact that has their email: only when the contact's
/// key property is empty (nobody's yet) or already names this customer. Another customer's
/// contact is never written onto: whoever types an email at checkout is not its owner.
pub fn may_take_over(found: &BTreeMap<String, String>, key: &ContactId) -> bool {
    found
        .get(&key.property)
        .is_none_or(|v| v.is_empty() || *v == key.value)
}

/// The refusal of a contact whose email belongs to another customer's contact.
pub fn email_of_another_customer() -> Refusal {
    Refusal {
        reason: format!(
            "{EMAIL_OF_ANOTHER}: the CRM's contact with this email belongs to another customer; nothing was written onto it"
        ),
        category: Some(EMAIL_OF_ANOTHER.into()),
        status: Some(409),
    }
}

pub const EMAIL_OF_ANOTHER: &str = "email_belongs_to_another_customer";

/// The input that writes `planned`'s contact `i` onto the contact found by `email`.
pub fn by_email(planned: &Planned<Item<ContactChange>>, i: usize, email: &ContactId) -> Input {
    Input {
        id_property: email.property.clone(),
        id: email.value.clone(),
        properties: planned.inputs[i].properties.clone(),
    }
}

/// Another customer the CRM's contact `id` is known to be, besides `who`: a guest of another
/// shop with the same email shares it (one email is one contact), and erasing a person in one
/// shop must not erase what another shop keeps of them.
pub fn shared_with(known: &Known, who: &(String, String), id: &str) -> Option<(String, String)> {
    known
        .contacts
        .iter()
        // The same shop's account and guest key of one person share their contact: that is
        // one person, erased together. Only another shop's customer keeps it.
        .find(|(k, v)| k.0 != who.0 && v.as_str() == id)
        .map(|(k, _)| k.clone())
}

/// What to do with a contact about to be erased, read back first: the contact id the sink
/// remembers may since have been merged, re-keyed or taken by someone else.
#[derive(Clone, Debug, PartialEq)]
pub enum ContactErasure {
    /// It no longer exists.
    Gone,
    /// It names someone else now: left untouched.
    NotTheirs(String),
    /// A registered customer's contact that also carries the erased guest's key: only that
    /// key is emptied, the account's contact stays.
    DropKey(String),
    /// The erased customer's own contact: deleted (or anonymised).
    Erase,
}

/// Decides a contact's erasure from its key properties as the CRM has them now.
pub fn contact_erasure(
    found: Option<&BTreeMap<String, String>>,
    key: &ContactId,
    mapping: &Mapping,
) -> ContactErasure {
    let Some(found) = found else {
        return ContactErasure::Gone;
    };
    let has = |p: &str| found.get(p).filter(|v| !v.is_empty());
    if has(&key.property) != Some(&key.value) {
        return ContactErasure::NotTheirs(format!(
            "its {} no longer names this customer",
            key.property
        ));
    }
    if key.property == mapping.guest_id_property && has(&mapping.contact_id_property).is_some() {
        return ContactErasure::DropKey(key.property.clone());
    }
    ContactErasure::Erase
}

/// Reports the contacts' answers; the written ones become known with their id and version.
pub fn settle_contacts(
    planned: Planned<Item<ContactChange>>,
    written: Vec<Result<Written, Refusal>>,
    attempts: Vec<Vec<CrmAttempt>>,
    known: &mut Known,
    report: &mut Report,
) -> ContactsSent {
    let mut out = ContactsSent::default();
    for ((mut item, w), tried) in planned.items.into_iter().zip(written).zip(attempts) {
        item.attempts = tried;
        let key = (item.change.shop_id.clone(), item.change.customer.clone());
        out.sent.insert(key.clone(), item.change.clone());
        let outcome = match w {
            Ok(w) => {
                let version = item.change.metrics.as_ref().map(|m| m.version);
                known.saw_contact(key, Some(w.id.clone()), version);
                Outcome::Delivered {
                    object_id: w.id,
                    new: w.new,
                }
            }
            Err(r) => {
                out.refused.insert(key, r.reason.clone());
                Outcome::Refused(r)
            }
        };
        report.contacts.push((item, outcome));
    }
    out
}

/// The deals to upsert, each with its contact as sent in this flush. A deal whose contact was
/// refused is refused with it; an order status that makes no deal is skipped.
pub fn plan_deals(
    deals: Vec<Item<DealChange>>,
    contacts: &ContactsSent,
    mapping: &Mapping,
    report: &mut Report,
) -> Planned<(Item<DealChange>, Option<ContactChange>)> {
    let mut planned = Planned::default();
    for item in deals {
        let d = &item.change;
        let key = (d.shop_id.clone(), d.customer.clone());
        let contact = contacts.sent.get(&key).cloned();
        if let Some(reason) = contacts.refused.get(&key) {
            let r = Refusal::local(format!("its contact was refused: {reason}"));
            report.deals.push((item, Outcome::Refused(r), contact));
            continue;
        }
        match mapping.deal_properties(d) {
            Some(properties) => {
                planned.inputs.push(Input {
                    id_property: mapping.deal_id_property.clone(),
                    id: deal_key(d),
                    properties,
                });
                planned.items.push((item, contact));
            }
            None => {
                let why = format!("order status {} makes no deal", d.status);
                report.deals.push((item, Outcome::Skipped(why), contact));
            }
        }
    }
    planned
}

/// What the deals' upserts came to.
#[derive(Debug)]
pub struct DealsWritten {
    /// Per planned deal, in order.
    pub outcomes: Vec<Outcome>,
    /// (index of the deal, (deal id, contact id)) still to associate.
    pub to_associate: Vec<(usize, (String, String))>,
}

/// Each deal's outcome from its upsert, and the (deal id, contact id) pairs still to associate
/// with their index: a new deal, or one not yet associated. A deal whose contact the CRM does
/// not have cannot be associated and is refused. Written deals become known at their version.
pub fn plan_associations(
    deals: &[(Item<DealChange>, Option<ContactChange>)],
    written: &[Result<Written, Refusal>],
    known: &mut Known,
) -> DealsWritten {
    let mut outcomes = Vec::with_capacity(deals.len());
    let mut to_associate = Vec::new();
    for (n, ((item, _), w)) in deals.iter().zip(written).enumerate() {
        let d = &item.change;
        let w = match w {
            Ok(w) => w,
            Err(r) => {
                outcomes.push(Outcome::Refused(r.clone()));
                continue;
            }
        };
        known.saw_deal((d.shop_id.clone(), d.order_id), d.version());
        let needed = w.new || !known.associated.contains(&(d.shop_id.clone(), d.order_id));
        let contact = known.contacts.get(&(d.shop_id.clone(), d.customer.clone()));
        outcomes.push(match (needed, contact) {
            (true, None) => {
                Outcome::Refused(Refusal::local("the deal's contact is not in the CRM"))
            }
            (needed, contact) => {
                if let (true, Some(contact)) = (needed, contact) {
                    to_associate.push((n, (w.id.clone(), contact.clone())));
                }
                Outcome::Delivered {
                    object_id: w.id.clone(),
                    new: w.new,
                }
            }
        });
    }
    DealsWritten {
        outcomes,
        to_associate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::changes::examples::{contact, deal};
    use woostream_core::config::crm::CrmConfig;

    fn item<T>(change: T) -> Item<T> {
        Item::new(change, None, 0, std::time::Instant::now())
    }

    fn mapping() -> Mapping {
        Mapping::new(&CrmConfig::default())
    }

    fn refused(status: u16) -> Result<Written, Refusal> {
        Err(Refusal {
            reason: format!("http {status}"),
            category: None,
            status: Some(status),
        })
    }

    fn written(id: &str, new: bool) -> Result<Written, Refusal> {
        Ok(Written { id: id.into(), new })
    }

    #[test]
    fn a_conflict_on_a_registered_customer_is_retargeted_by_email_and_nothing_else_is() {
        let mut report = Report::default();
        let planned = plan_contacts(
            vec![
                item(contact("7", "a@x.example")),
                item(contact("8", "b@x.example")),
            ],
            &Known::default(),
            &mapping(),
            &mut report,
        );
        assert_eq!(planned.items.len(), 2);
        let found = conflicts(&planned, &[refused(409), refused(400)], &mapping());
        assert_eq!(found.len(), 1, "only the 409 is looked at again");
        let (i, key, email) = &found[0];
        assert_eq!((*i, key.value.as_str()), (0, "main:7"));
        let again = by_email(&planned, *i, email);
        assert_eq!(again.id_property, "email");
        assert_eq!(again.properties, planned.inputs[0].properties);
    }

    #[test]
    fn a_contact_shared_with_another_shops_customer_is_found() {
        let mut known = Known::default();
        known
            .contacts
            .insert(("eu".into(), "guest:ab".into()), "900".into());
        known
            .contacts
            .insert(("uk".into(), "guest:ab".into()), "900".into());
        known
            .contacts
            .insert(("eu".into(), "7".into()), "901".into());
        known
            .contacts
            .insert(("eu".into(), "guest:cd".into()), "901".into());
        let eu = ("eu".to_string(), "guest:ab".to_string());
        assert_eq!(
            shared_with(&known, &eu, "900"),
            Some(("uk".to_string(), "guest:ab".to_string()))
        );
        assert_eq!(
            shared_with(&known, &("eu".into(), "7".into()), "901"),
            None,
            "the same shop's account and guest key are one person"
        );
    }

    #[test]
    fn a_contact_is_taken_over_only_when_nobody_or_this_customer_holds_it() {
        let key = ContactId {
            property: "woo_customer_id".into(),
            value: "main:7".into(),
        };
        let with = |v: &str| BTreeMap::from([("woo_customer_id".to_string(), v.to_string())]);
        assert!(may_take_over(&BTreeMap::new(), &key), "a form's contact");
        assert!(may_take_over(&with(""), &key), "an emptied key");
        assert!(may_take_over(&with("main:7"), &key), "their own");
        assert!(!may_take_over(&with("main:8"), &key), "another customer's");
        assert!(
            !may_take_over(&with("other:7"), &key),
            "another shop's customer 7"
        );
    }

    #[test]
    fn a_contact_is_erased_only_while_it_still_names_the_erased_customer() {
        let m = mapping();
        let registered = ContactId {
            property: m.contact_id_property.clone(),
            value: "main:7".into(),
        };
        let guest = ContactId {
            property: m.guest_id_property.clone(),
            value: "guest:ab".into(),
        };
        let record = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(contact_erasure(None, &registered, &m), ContactErasure::Gone);
        let own = record(&[(&m.contact_id_property, "main:7")]);
        assert_eq!(
            contact_erasure(Some(&own), &registered, &m),
            ContactErasure::Erase
        );
        let taken = record(&[(&m.contact_id_property, "main:8")]);
        assert!(matches!(
            contact_erasure(Some(&taken), &registered, &m),
            ContactErasure::NotTheirs(_)
        ));
        let shared = record(&[
            (&m.contact_id_property, "main:8"),
            (&m.guest_id_property, "guest:ab"),
        ]);
        assert_eq!(
            contact_erasure(Some(&shared), &guest, &m),
            ContactErasure::DropKey(m.guest_id_property.clone())
        );
        let guest_only = record(&[(&m.guest_id_property, "guest:ab")]);
        assert_eq!(
            contact_erasure(Some(&guest_only), &guest, &m),
            ContactErasure::Erase
        );
    }

    #[test]
    fn a_refused_contact_takes_its_deals_with_it_and_unmapped_statuses_skip() {
        let mut report = Report::default();
        let mut known = Known::default();
        let planned = plan_contacts(
            vec![
                item(contact("7", "a@x.example")),
                item(contact("8", "b@x.example")),
            ],
            &known,
            &mapping(),
            &mut report,
        );
        let sent = settle_contacts(
            planned,
            vec![written("101", true), refused(400)],
            vec![Vec::new(), Vec::new()],
            &mut known,
            &mut report,
        );
        assert_eq!(
            known.contacts.get(&("main".into(), "7".into())),
            Some(&"101".into())
        );
        let draft = deal(3, "7", "checkout-draft");
        let planned = plan_deals(
            vec![
                item(deal(1, "7", "processing")),
                item(deal(2, "8", "processing")),
                item(draft),
            ],
            &sent,
            &mapping(),
            &mut report,
        );
        assert_eq!(
            planned.items.len(),
            1,
            "only customer 7's processing order is sent"
        );
        let kinds: Vec<&str> = report
            .deals
            .iter()
            .map(|(_, o, _)| match o {
                Outcome::Refused(r) if r.reason.starts_with("its contact was refused") => "refused",
                Outcome::Skipped(_) => "skipped",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["refused", "skipped"]);

        // A new deal is associated with the contact the CRM returned; an update of an
        // associated deal is not associated again.
        let first = plan_associations(&planned.items, &[written("900", true)], &mut known);
        assert!(matches!(
            &first.outcomes[0],
            Outcome::Delivered { new: true, .. }
        ));
        assert_eq!(
            first.to_associate,
            vec![(0, ("900".to_string(), "101".to_string()))]
        );
        known.associated.insert(("main".into(), 1));
        let update = plan_associations(&planned.items, &[written("900", false)], &mut known);
        assert!(update.to_associate.is_empty());
    }
}
