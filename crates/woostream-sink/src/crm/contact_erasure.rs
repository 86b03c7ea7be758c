//! Erasing a person's contact through the CRM's API, within the same budget and with the same
//! retries as upserts: HubSpot's GDPR delete, or (`crm.erasure = "anonymise"`) every mapped
//! property emptied and the contact's deals detached. The contact is read back first: only
//! one that still names the erased customer is erased (the id remembered may since have been
//! merged or taken by someone else).

use woostream_core::config::crm::ContactErasure;
use woostream_core::contract::sink_records::CrmAttempt;

use super::changes::ContactId;
use super::flush::{Refusal, Sender, Stop};
use super::plan::{self, ContactErasure as Decision};
use woostream_hubspot::api::Crm;

/// What became of one contact's erasure.
#[derive(Debug)]
pub enum Erased {
    /// Done; what was done, in words that name no one.
    Done(String),
    /// The CRM refused it for good.
    Refused(Refusal),
    /// Shutting down: it is done again at the next start.
    Interrupted,
}

impl<C: Crm> Sender<C> {
    /// Erases contact `id` of the customer found by `key` as `how` says; `attempts` collects
    /// the failed requests.
    pub async fn erase_contact(
        &self,
        id: &str,
        key: &ContactId,
        how: ContactErasure,
        attempts: &mut Vec<CrmAttempt>,
    ) -> Erased {
        let keys = [
            self.mapping.contact_id_property.clone(),
            self.mapping.guest_id_property.clone(),
        ];
        let read = self
            .call("contacts/read", 1, attempts, || {
                self.crm.read_contact(("hs_object_id", id), &keys)
            })
            .await;
        let found = match read {
            Ok(reply) => Some(reply.properties),
            Err(Stop::Rejected(r)) if not_found(&r) => None,
            Err(Stop::Rejected(r)) => return Erased::Refused(r),
            Err(Stop::Shutdown) => return Erased::Interrupted,
        };
        let result = match plan::contact_erasure(found.as_ref(), key, &self.mapping) {
            Decision::Gone => return Erased::Done(format!("contact {id} was already gone")),
            Decision::NotTheirs(why) => {
                return Erased::Done(format!("contact {id} left untouched: {why}"))
            }
            Decision::DropKey(property) => self
                .call("contacts/update", 1, attempts, || {
                    self.crm.blank(id, std::slice::from_ref(&property))
                })
                .await
                .map(|_| {
                    format!("contact {id} kept (a registered customer's): only {property} emptied")
                }),
            Decision::Erase => self.erase_own(id, how, attempts).await,
        };
        match result {
            Ok(done) => Erased::Done(done),
            Err(Stop::Rejected(r)) if not_found(&r) => {
                Erased::Done(format!("contact {id} was already gone"))
            }
            Err(Stop::Rejected(r)) => Erased::Refused(r),
            Err(Stop::Shutdown) => Erased::Interrupted,
        }
    }

    async fn erase_own(
        &self,
        id: &str,
        how: ContactErasure,
        attempts: &mut Vec<CrmAttempt>,
    ) -> Result<String, Stop> {
        match how {
            ContactErasure::Delete => self
                .call("contacts/gdpr-delete", 1, attempts, || {
                    self.crm.gdpr_delete(id)
                })
                .await
                .map(|_| format!("contact {id} deleted (GDPR delete)")),
            ContactErasure::Anonymise => self.anonymise(id, attempts).await,
        }
    }

    async fn anonymise(&self, id: &str, attempts: &mut Vec<CrmAttempt>) -> Result<String, Stop> {
        let blank = self.mapping.erasable_properties();
        self.call("contacts/update", 1, attempts, || {
            self.crm.blank(id, &blank)
        })
        .await?;
        let deals: Vec<String> = self
            .call("contacts/associations/read", 1, attempts, || {
                self.crm.contact_deals(id)
            })
            .await?
            .written
            .into_iter()
            .filter_map(Result::ok)
            .map(|w| w.id)
            .collect();
        if !deals.is_empty() {
            self.call("associations/batch/archive", deals.len(), attempts, || {
                self.crm.detach(id, &deals)
            })
            .await?;
        }
        Ok(format!(
            "contact {id} anonymised ({} properties emptied), {} deals detached",
            blank.len(),
            deals.len()
        ))
    }
}

/// HubSpot's own "no such object" (a guest and an account of one person share a contact, so
/// it may be gone already); a 404 of a wrong URL is a refusal.
fn not_found(r: &Refusal) -> bool {
    r.status == Some(404) && r.category.as_deref() == Some("OBJECT_NOT_FOUND")
}
