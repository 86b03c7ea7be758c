//! Which fields are personal, sealed and opened together: names, company, street, city,
//! postcode, email and phone of an order's and an account's addresses, an account's login
//! name, an order's payment reference and refund reasons. Country and state stay readable
//! (a shop's regional figures need them and they name no one); ids, amounts and products are
//! not personal text and stay as they are (see the README's "Personal data").

use std::sync::Arc;

use crate::contract::events::{Address, CustomerRecord, Order, ShippingAddress};

use super::keyring::SubjectKey;
use super::seal::{self, Opened};

/// A personal field: the name it is sealed for (the same wherever it is read, so a value moved
/// to another field does not open) and its value.
pub type Field<'a> = (&'static str, &'a mut Option<String>);

fn address(a: &mut Address) -> [Field<'_>; 9] {
    [
        ("billing:first_name", &mut a.first_name),
        ("billing:last_name", &mut a.last_name),
        ("billing:company", &mut a.company),
        ("billing:address_1", &mut a.address_1),
        ("billing:address_2", &mut a.address_2),
        ("billing:city", &mut a.city),
        ("billing:postcode", &mut a.postcode),
        ("billing:email", &mut a.email),
        ("billing:phone", &mut a.phone),
    ]
}

fn shipping(a: &mut ShippingAddress) -> [Field<'_>; 8] {
    [
        ("shipping:first_name", &mut a.first_name),
        ("shipping:last_name", &mut a.last_name),
        ("shipping:company", &mut a.company),
        ("shipping:address_1", &mut a.address_1),
        ("shipping:address_2", &mut a.address_2),
        ("shipping:city", &mut a.city),
        ("shipping:postcode", &mut a.postcode),
        ("shipping:phone", &mut a.phone),
    ]
}

/// The field names of values sealed outside an order or an account.
pub mod fields {
    /// An order's customer note, and the alert that quotes it.
    pub const CUSTOMER_NOTE: &str = "customer_note";
    /// The initial of a customer's first name, in alerts.
    pub const FIRST_NAME_INITIAL: &str = "first_name_initial";
    /// A product review's text, and the alert that quotes it.
    pub const REVIEW_TEXT: &str = "review:text";
    /// The arguments of a shop action (`action.*`).
    pub const ACTION_ARGUMENTS: &str = "action:arguments";
    /// A contact property's value changed in the CRM.
    pub const CRM_VALUE: &str = "crm:value";
}

/// The personal fields of an order.
pub fn order_fields(o: &mut Order) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = vec![("transaction_id", &mut o.transaction_id)];
    if let Some(b) = &mut o.billing {
        out.extend(address(b));
    }
    if let Some(s) = &mut o.shipping {
        out.extend(shipping(s));
    }
    out.extend(
        o.refunds
            .iter_mut()
            .map(|r| ("refund:reason", &mut r.reason)),
    );
    out.push((fields::CUSTOMER_NOTE, &mut o.customer_note));
    out
}

/// The personal fields of a customer account.
pub fn customer_fields(c: &mut CustomerRecord) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = vec![
        ("email", &mut c.email),
        ("first_name", &mut c.first_name),
        ("last_name", &mut c.last_name),
        ("username", &mut c.username),
    ];
    if let Some(b) = &mut c.billing {
        out.extend(address(b));
    }
    if let Some(s) = &mut c.shipping {
        out.extend(shipping(s));
    }
    out
}

/// Seals every non-empty field under `key`, whatever its text looks like: a buyer can type
/// `ws1.…` into any field, and a value left clear because it looked sealed would read as erased.
/// Called once per event, on what WooCommerce sent.
pub fn seal_fields(fields: Vec<Field<'_>>, key: &SubjectKey) {
    for (name, f) in fields {
        if let Some(v) = f.as_mut().filter(|v| !v.is_empty()) {
            *v = seal::seal(key, name, v);
        }
    }
}

/// What opening a record's personal fields found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sealing {
    /// Nothing was sealed (written before sealing, or with it off).
    Clear,
    /// Opened with this key: what is derived from these fields is sealed with it again.
    Opened(Arc<SubjectKey>),
    /// Their key is deleted: the person was erased, and the fields are now empty.
    Erased,
}

impl PartialEq for SubjectKey {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}
impl Eq for SubjectKey {}

/// Opens every sealed field in place with the key `key_of` finds for its id (`None`: deleted).
/// A field whose key is deleted becomes `None`.
pub fn open_fields(
    fields: Vec<Field<'_>>,
    mut key_of: impl FnMut(&str) -> Option<Arc<SubjectKey>>,
) -> Result<Sealing, String> {
    let mut found = Sealing::Clear;
    for (name, f) in fields {
        let Some(v) = f.as_ref() else { continue };
        let Some(id) = seal::key_id_of(v) else {
            continue;
        };
        let key = match &found {
            Sealing::Opened(k) if k.id() == id => Some(k.clone()),
            _ => key_of(id),
        };
        match seal::open(v, name, key.as_deref())? {
            Opened::Opened(text) => {
                *f = Some(text);
                if let Some(k) = key {
                    found = Sealing::Opened(k);
                }
            }
            Opened::Erased => {
                *f = None;
                found = Sealing::Erased;
            }
            Opened::Clear(_) => {}
        }
    }
    Ok(found)
}

/// The ids of the keys the sealed fields name.
pub fn key_ids(fields: &[Field<'_>]) -> Vec<String> {
    let mut ids: Vec<String> = fields
        .iter()
        .filter_map(|(_, f)| f.as_deref().and_then(seal::key_id_of).map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Seals a value derived from opened fields (e.g. an initial) with the same key, for `field`.
pub fn seal_derived(value: Option<String>, field: &str, sealing: &Sealing) -> Option<String> {
    match (value, sealing) {
        (Some(v), Sealing::Opened(key)) => Some(seal::seal(key, field, &v)),
        (v, _) => v,
    }
}

/// The person a raw WooCommerce body belongs to, when it shows (an account id, else the
/// billing email's hash): a malformed delivery kept as a dead letter is sealed under that
/// person's key, so their erasure reaches it too.
pub fn subject_of_body(body: &[u8], email_hash: impl Fn(&str) -> Option<String>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = v
        .get("customer_id")
        .and_then(serde_json::Value::as_i64)
        .filter(|id| *id > 0);
    if let Some(id) = id {
        return Some(id.to_string());
    }
    // A customer webhook is the account itself.
    if v.get("role").is_some() || v.get("username").is_some() {
        if let Some(id) = v.get("id").and_then(serde_json::Value::as_i64) {
            return Some(id.to_string());
        }
    }
    let email = v
        .pointer("/billing/email")
        .or_else(|| v.get("email"))
        .and_then(serde_json::Value::as_str)?;
    email_hash(email).map(|h| format!("guest:{h}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn order() -> Order {
        crate::contract::codec::tests::order()
    }

    #[test]
    fn an_order_sealed_shows_no_personal_text_and_opens_to_itself() {
        let original = order();
        let mut o = original.clone();
        let key = Arc::new(SubjectKey::generate(true));
        seal_fields(order_fields(&mut o), &key);
        let json = serde_json::to_string(&o).unwrap();
        for field in ["first_name", "last_name", "email", "phone", "address_1"] {
            let v = serde_json::to_value(original.billing.as_ref().unwrap()).unwrap()[field]
                .as_str()
                .map(str::to_string);
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                assert!(!json.contains(&v), "{field} {v} in {json}");
            }
        }
        // Country stays readable; amounts and products are untouched.
        assert_eq!(
            o.billing.as_ref().unwrap().country,
            original.billing.as_ref().unwrap().country
        );
        assert_eq!(o.line_items, original.line_items);
        let ring = HashMap::from([(key.id().to_string(), key.clone())]);
        let found = open_fields(order_fields(&mut o), |id| ring.get(id).cloned()).unwrap();
        assert_eq!(found, Sealing::Opened(key.clone()));
        assert_eq!(o, original);
    }

    #[test]
    fn text_that_looks_sealed_is_sealed_like_any_other() {
        // What a buyer can type into the billing name: it must not pass as sealed (it would
        // stay in clear in Kafka, and read as erased, since no key has that id).
        let mut original = order();
        original.billing.as_mut().unwrap().first_name = Some("ws1.0123456789abcdef.AAAA".into());
        original.customer_note = Some("ws1.x.y".into());
        let mut o = original.clone();
        let key = Arc::new(SubjectKey::generate(true));
        seal_fields(order_fields(&mut o), &key);
        let first = o.billing.as_ref().unwrap().first_name.clone().unwrap();
        assert_eq!(seal::key_id_of(&first), Some(key.id()), "{first}");
        let ring = HashMap::from([(key.id().to_string(), key.clone())]);
        assert_eq!(
            open_fields(order_fields(&mut o), |id| ring.get(id).cloned()).unwrap(),
            Sealing::Opened(key.clone())
        );
        assert_eq!(o, original, "reads back as typed");
    }

    #[test]
    fn an_erased_key_empties_the_fields() {
        let mut o = order();
        let key = SubjectKey::generate(true);
        seal_fields(order_fields(&mut o), &key);
        assert_eq!(
            open_fields(order_fields(&mut o), |_| None).unwrap(),
            Sealing::Erased
        );
        let billing = o.billing.unwrap();
        assert_eq!((billing.email, billing.first_name), (None, None));
        assert!(billing.country.is_some());
    }

    #[test]
    fn the_person_of_a_raw_body_is_found_when_it_shows() {
        let hash = |e: &str| Some(format!("h({e})"));
        assert_eq!(
            subject_of_body(br#"{"id": 9, "customer_id": 42}"#, hash),
            Some("42".into())
        );
        assert_eq!(
            subject_of_body(
                br#"{"id": 9, "customer_id": 0, "billing": {"email": "a@b.pl"}, "total": "x"}"#,
                hash
            ),
            Some("guest:h(a@b.pl)".into())
        );
        assert_eq!(
            subject_of_body(br#"{"id": 7, "role": "customer", "email": "a@b.pl"}"#, hash),
            Some("7".into())
        );
        assert_eq!(subject_of_body(b"not json", hash), None);
        assert_eq!(subject_of_body(br#"{"id": 3}"#, hash), None);
    }
}
