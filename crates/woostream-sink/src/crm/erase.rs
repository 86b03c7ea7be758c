//! Erasing a person's contact through the CRM's API, within the same budget and with the same
//! retries as upserts: HubSpot's GDPR delete, or (`crm.erasure = "anonymise"`) every mapped
//! property emptied and the contact's deals detached.

use woostream_core::crm_config::ContactErasure;
use woostream_core::records::CrmAttempt;

use super::api::Crm;
use super::flush::{Refusal, Sender, Stop};

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
    /// Erases contact `id` as `how` says; `attempts` collects the failed requests.
    pub async fn erase_contact(
        &self,
        id: &str,
        how: ContactErasure,
        attempts: &mut Vec<CrmAttempt>,
    ) -> Erased {
        let result = match how {
            ContactErasure::Delete => self
                .call("contacts/gdpr-delete", 1, attempts, || {
                    self.crm.gdpr_delete(id)
                })
                .await
                .map(|_| format!("contact {id} deleted (GDPR delete)")),
            ContactErasure::Anonymise => self.anonymise(id, attempts).await,
        };
        match result {
            Ok(done) => Erased::Done(done),
            // Already gone (a guest and an account of one person share a contact). Only
            // HubSpot's own "no such object": a 404 of a wrong URL is a refusal.
            Err(Stop::Rejected(r))
                if r.status == Some(404) && r.category.as_deref() == Some("OBJECT_NOT_FOUND") =>
            {
                Erased::Done(format!("contact {id} was already gone"))
            }
            Err(Stop::Rejected(r)) => Erased::Refused(r),
            Err(Stop::Shutdown) => Erased::Interrupted,
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
