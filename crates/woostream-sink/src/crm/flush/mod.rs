//! Sending a flush of changes to the CRM within its budget: contacts first (deals need their
//! ids), then deals, then the associations of new deals. 429s wait and retry; 5xx and network
//! errors back off with jitter and retry until they pass; a batch refused as a whole is split
//! until the bad record stands alone, and only that one is refused.

use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use woostream_core::contract::sink_records::CrmAttempt;

use super::changes::Mapping;
use super::metrics::Metrics;
use super::pending::Taken;
use super::plan;
use woostream_hubspot::api::{Crm, Input, Object, Written};
use woostream_hubspot::budget::Budget;

mod call;
use call::push_attempts;
pub(crate) use call::Stop;

pub use super::plan::{Interrupted, Known, Outcome, Refusal, Report, SharedKnown};

pub struct Sender<C> {
    pub crm: C,
    pub mapping: Mapping,
    budget: Mutex<Budget>,
    metrics: Metrics,
    batch_size: usize,
    concurrency: usize,
    max_backoff: Duration,
    stop: CancellationToken,
}

impl<C: Crm> Sender<C> {
    pub fn new(
        crm: C,
        config: &woostream_core::config::crm::CrmConfig,
        metrics: Metrics,
        stop: CancellationToken,
    ) -> Sender<C> {
        Sender {
            crm,
            mapping: Mapping::new(config),
            budget: Mutex::new(Budget::new(
                config.requests_per_10_seconds,
                Duration::from_secs(10),
                config.requests_per_day,
            )),
            metrics,
            batch_size: config.batch_size,
            concurrency: config.concurrency,
            max_backoff: Duration::from_secs(config.max_backoff_secs.max(1)),
            stop,
        }
    }

    /// Upserts `inputs` of one object.
    async fn upsert_all(
        &self,
        object: Object,
        inputs: &[Input],
        attempts: &mut [Vec<CrmAttempt>],
    ) -> Result<Vec<Result<Written, Refusal>>, Interrupted> {
        let endpoint = match object {
            Object::Contacts => "contacts/batch/upsert",
            Object::Deals => "deals/batch/upsert",
        };
        self.in_batches(endpoint, inputs, attempts, |batch| async move {
            self.crm.upsert(object, &batch).await
        })
        .await
    }

    /// Sends one flush. Contacts the CRM returns become known, so later deals and profile
    /// updates of guests can find them.
    pub async fn flush(&self, taken: Taken, known: &SharedKnown) -> Result<Report, Interrupted> {
        let Taken {
            contacts,
            deals,
            unknown_contacts,
            orphan_deals,
        } = taken;
        let mut report = Report::default();
        plan::refuse_unsendable(unknown_contacts, orphan_deals, &mut report);

        // 1. Contacts, then those refused for an email another contact has, by that email.
        let contacts = {
            let k = known.lock().expect("known");
            plan::plan_contacts(contacts, &k, &self.mapping, &mut report)
        };
        self.count_changes("contact", contacts.items.len());
        let mut attempts: Vec<Vec<CrmAttempt>> =
            contacts.items.iter().map(|i| i.attempts.clone()).collect();
        let mut written = self
            .upsert_all(Object::Contacts, &contacts.inputs, &mut attempts)
            .await?;
        self.take_over_by_email(&contacts, &mut written, &mut attempts)
            .await?;
        let contacts = {
            let mut k = known.lock().expect("known");
            plan::settle_contacts(contacts, written, attempts, &mut k, &mut report)
        };

        // 2. Deals.
        let deals = plan::plan_deals(deals, &contacts, &self.mapping, &mut report);
        self.count_changes("deal", deals.items.len());
        let mut attempts: Vec<Vec<CrmAttempt>> = deals
            .items
            .iter()
            .map(|(i, _)| i.attempts.clone())
            .collect();
        let written = self
            .upsert_all(Object::Deals, &deals.inputs, &mut attempts)
            .await?;

        // 3. Associations of deals not yet associated with their contact.
        let plan::DealsWritten {
            mut outcomes,
            to_associate,
        } = {
            let mut k = known.lock().expect("known");
            plan::plan_associations(&deals.items, &written, &mut k)
        };
        let pairs: Vec<(String, String)> = to_associate.iter().map(|(_, p)| p.clone()).collect();
        let mut assoc_attempts: Vec<Vec<CrmAttempt>> = vec![Vec::new(); pairs.len()];
        let results = self
            .in_batches(
                "associations/batch/associate",
                &pairs,
                &mut assoc_attempts,
                |batch| async move { self.crm.associate(&batch).await },
            )
            .await?;
        let mut deal_assoc_attempts: Vec<Vec<CrmAttempt>> = vec![Vec::new(); deals.items.len()];
        for (((n, _), r), tried) in to_associate.into_iter().zip(results).zip(assoc_attempts) {
            let d = &deals.items[n].0.change;
            match r {
                Ok(_) => {
                    report.associated.insert((d.shop_id.clone(), d.order_id));
                }
                Err(r) => {
                    outcomes[n] = Outcome::Refused(Refusal {
                        reason: format!("association: {}", r.reason),
                        ..r
                    });
                }
            }
            deal_assoc_attempts[n] = tried;
        }
        known
            .lock()
            .expect("known")
            .associated
            .extend(report.associated.iter().cloned());
        for ((((mut item, contact), tried), outcome), assoc) in deals
            .items
            .into_iter()
            .zip(attempts)
            .zip(outcomes)
            .zip(deal_assoc_attempts)
        {
            item.attempts = tried;
            push_attempts(&mut item.attempts, &assoc);
            report.deals.push((item, outcome, contact));
        }
        Ok(report)
    }

    /// The contacts refused for an email another contact has, written onto that contact when
    /// it is nobody's or already theirs (read first), otherwise refused for good.
    async fn take_over_by_email(
        &self,
        contacts: &plan::Planned<super::pending::Item<super::changes::ContactChange>>,
        written: &mut [Result<Written, Refusal>],
        attempts: &mut [Vec<CrmAttempt>],
    ) -> Result<(), Interrupted> {
        let mut again: Vec<(usize, Input)> = Vec::new();
        for (i, key, email) in plan::conflicts(contacts, written, &self.mapping) {
            let read = self
                .call("contacts/read", 1, &mut attempts[i], || {
                    self.crm.read_contact(
                        (&email.property, &email.value),
                        std::slice::from_ref(&key.property),
                    )
                })
                .await;
            match read {
                Ok(found) if plan::may_take_over(&found.properties, &key) => {
                    again.push((i, plan::by_email(contacts, i, &email)));
                }
                Ok(_) => written[i] = Err(plan::email_of_another_customer()),
                // The email's contact went away meanwhile: the write by key can go again.
                Err(Stop::Rejected(r)) if r.status == Some(404) => {
                    again.push((i, contacts.inputs[i].clone()));
                }
                Err(Stop::Rejected(r)) => written[i] = Err(r),
                Err(Stop::Shutdown) => return Err(Interrupted),
            }
        }
        if again.is_empty() {
            return Ok(());
        }
        let inputs: Vec<Input> = again.iter().map(|(_, input)| input.clone()).collect();
        let mut tried: Vec<Vec<CrmAttempt>> =
            again.iter().map(|(i, _)| attempts[*i].clone()).collect();
        let results = self
            .upsert_all(Object::Contacts, &inputs, &mut tried)
            .await?;
        for (((i, _), w), a) in again.iter().zip(results).zip(tried) {
            written[*i] = w;
            attempts[*i] = a;
        }
        Ok(())
    }

    fn count_changes(&self, object: &str, n: usize) {
        self.metrics
            .changes
            .with_label_values(&[object])
            .inc_by(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::changes::ContactChange;
    use crate::crm::pending::Item;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;
    use woostream_core::config::crm::CrmConfig;
    use woostream_hubspot::api::{CallError, Reply};
    use woostream_hubspot::memory::{MemoryCrm, Store};

    use crate::crm::changes::examples::{contact, deal};
    use woostream_hubspot::api::{NewProperty, Property};

    /// The in-memory CRM, failing the first `fail` requests with 503 and counting requests.
    struct Flaky {
        crm: MemoryCrm,
        fail: AtomicUsize,
        calls: AtomicUsize,
    }

    impl Flaky {
        /// Counts a call; fails it with 503 while failures are left.
        fn called(&self) -> Result<(), CallError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) > 0 {
                self.fail.fetch_sub(1, Ordering::SeqCst);
                return Err(CallError::Transient {
                    status: Some(503),
                    message: "down".into(),
                    limits: Default::default(),
                });
            }
            Ok(())
        }
    }

    impl Crm for Flaky {
        async fn upsert(&self, object: Object, inputs: &[Input]) -> Result<Reply, CallError> {
            self.called()?;
            self.crm.upsert(object, inputs).await
        }
        async fn associate(&self, pairs: &[(String, String)]) -> Result<Reply, CallError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.crm.associate(pairs).await
        }
        async fn properties(&self, object: Object) -> Result<Vec<Property>, CallError> {
            self.crm.properties(object).await
        }
        async fn create_property(&self, object: Object, p: &NewProperty) -> Result<(), CallError> {
            self.crm.create_property(object, p).await
        }
        async fn stages(&self, pipeline: &str) -> Result<Option<Vec<String>>, CallError> {
            self.crm.stages(pipeline).await
        }
        async fn read_contact(
            &self,
            by: (&str, &str),
            properties: &[String],
        ) -> Result<Reply, CallError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.crm.read_contact(by, properties).await
        }
        async fn gdpr_delete(&self, contact: &str) -> Result<Reply, CallError> {
            self.called()?;
            self.crm.gdpr_delete(contact).await
        }
        async fn blank(&self, contact: &str, properties: &[String]) -> Result<Reply, CallError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.crm.blank(contact, properties).await
        }
        async fn contact_deals(&self, contact: &str) -> Result<Reply, CallError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.crm.contact_deals(contact).await
        }
        async fn detach(&self, contact: &str, deals: &[String]) -> Result<Reply, CallError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.crm.detach(contact, deals).await
        }
    }

    #[tokio::test]
    async fn an_erased_contact_is_deleted_after_transient_failures_or_anonymised_and_detached() {
        use crate::crm::contact_erasure::Erased;
        use woostream_core::config::crm::ContactErasure;
        let s = sender(2, 10);
        let known = SharedKnown::default();
        let (c, d) = (contact("7", "ola@x.example"), deal(70, "7", "processing"));
        let taken = Taken {
            contacts: vec![item(c.clone())],
            deals: vec![item(d)],
            ..Taken::default()
        };
        // The first two calls fail (503) and are retried: the upsert takes them.
        s.flush(taken, &known).await.unwrap();
        let id = known.lock().unwrap().contacts[&("main".to_string(), "7".to_string())].clone();
        let store = s.crm.crm.0.clone();
        assert_eq!(store.lock().unwrap().contact_deals(&id).unwrap().len(), 1);

        let old_id = id.clone();
        // Anonymised: the contact stays, with nothing that names or links it, and no deals.
        let mut attempts = Vec::new();
        let done = s
            .erase_contact(
                &id,
                &s.mapping.key_of("main", "7"),
                ContactErasure::Anonymise,
                &mut attempts,
            )
            .await;
        assert!(
            matches!(&done, Erased::Done(w) if w.contains("1 deals detached")),
            "{done:?}"
        );
        {
            let st = store.lock().unwrap();
            let record = &st.contacts.records[&id.parse::<u64>().unwrap()];
            assert_eq!(record.get("email").map(String::as_str), Some(""));
            assert_eq!(record.get("firstname").map(String::as_str), Some(""));
            assert!(st.contact_deals(&id).unwrap().is_empty());
            assert!(st.get(Object::Contacts, "email", "ola@x.example").is_none());
        }
        // Anonymised, it names no one: erasing it again leaves it alone.
        let untouched = s
            .erase_contact(
                &id,
                &s.mapping.key_of("main", "7"),
                ContactErasure::Delete,
                &mut attempts,
            )
            .await;
        assert!(
            matches!(&untouched, Erased::Done(w) if w.contains("left untouched")),
            "{untouched:?}"
        );
        assert_eq!(store.lock().unwrap().contacts.records.len(), 1);

        // Written again, then deleted, through one 503: retried; the contact is gone; a
        // second erasure finds it already gone and says so.
        s.flush(
            Taken {
                contacts: vec![item(c.clone())],
                ..Taken::default()
            },
            &known,
        )
        .await
        .unwrap();
        let id = known.lock().unwrap().contacts[&("main".to_string(), "7".to_string())].clone();
        store.lock().unwrap().gdpr_delete(&old_id).unwrap();
        s.crm.fail.store(1, Ordering::SeqCst);
        let done = s
            .erase_contact(
                &id,
                &s.mapping.key_of("main", "7"),
                ContactErasure::Delete,
                &mut attempts,
            )
            .await;
        assert!(
            matches!(&done, Erased::Done(w) if w.contains("deleted")),
            "{done:?}"
        );
        assert_eq!(attempts.len(), 1, "the 503 is one attempt");
        assert!(store.lock().unwrap().contacts.records.is_empty());
        let again = s
            .erase_contact(
                &id,
                &s.mapping.key_of("main", "7"),
                ContactErasure::Delete,
                &mut attempts,
            )
            .await;
        assert!(
            matches!(&again, Erased::Done(w) if w.contains("already gone")),
            "{again:?}"
        );
    }

    fn sender(fail: usize, batch_size: usize) -> Sender<Flaky> {
        let config = CrmConfig {
            batch_size,
            max_backoff_secs: 1,
            ..CrmConfig::default()
        };
        let metrics = Metrics::register(&prometheus::Registry::new()).unwrap();
        Sender::new(
            Flaky {
                crm: MemoryCrm::new(Store::portal()),
                fail: AtomicUsize::new(fail),
                calls: AtomicUsize::new(0),
            },
            &config,
            metrics,
            CancellationToken::new(),
        )
    }

    fn item<T>(change: T) -> Item<T> {
        Item::new(change, None, 0, Instant::now())
    }

    #[tokio::test]
    async fn a_guest_and_a_registered_customer_with_one_email_are_one_contact() {
        let s = sender(0, 100);
        let known = SharedKnown::default();
        let flush = |contacts: Vec<ContactChange>| {
            let taken = Taken {
                contacts: contacts.into_iter().map(item).collect(),
                ..Taken::default()
            };
            s.flush(taken, &known)
        };
        let delivered = |report: &Report| {
            report
                .contacts
                .iter()
                .all(|(_, o)| matches!(o, Outcome::Delivered { .. }))
        };
        // A guest checks out, then registers with the same email (another case): HubSpot
        // refuses a second contact for the email, so the registered customer takes it over.
        let r = flush(vec![contact("guest:ab", "ola@x.example")])
            .await
            .unwrap();
        assert!(delivered(&r), "{:?}", r.contacts);
        let r = flush(vec![contact("42", "Ola@X.example")]).await.unwrap();
        assert!(delivered(&r), "{:?}", r.contacts);
        // A registered customer checks out as a guest: the guest's key joins the contact.
        let r = flush(vec![contact("7", "jan@x.example")]).await.unwrap();
        assert!(delivered(&r));
        let r = flush(vec![contact("guest:cd", "jan@x.example")])
            .await
            .unwrap();
        assert!(delivered(&r));
        // And the guest found by its key later still lands on that contact.
        let r = flush(vec![contact("guest:ab", "ola@x.example")])
            .await
            .unwrap();
        assert!(delivered(&r));
        // Another shop of the account has a customer 42 too: another person.
        let mut outlet = contact("42", "piotr@x.example");
        outlet.shop_id = "outlet".into();
        let r = flush(vec![outlet]).await.unwrap();
        assert!(delivered(&r));

        let store = s.crm.crm.0.lock().unwrap();
        let mut contacts: Vec<(Option<&str>, Option<&str>, &str)> = store
            .contacts
            .records
            .values()
            .map(|r| {
                (
                    r.get("woo_customer_id").map(String::as_str),
                    r.get("woo_guest_id").map(String::as_str),
                    r["email"].as_str(),
                )
            })
            .collect();
        contacts.sort();
        assert_eq!(
            contacts,
            [
                (Some("main:42"), Some("guest:ab"), "ola@x.example"),
                (Some("main:7"), Some("guest:cd"), "jan@x.example"),
                (Some("outlet:42"), None, "piotr@x.example"),
            ]
        );
        let k = known.lock().unwrap();
        let id = |c: &str| k.contacts[&("main".to_string(), c.to_string())].clone();
        assert_eq!(id("42"), id("guest:ab"));
        assert_eq!(id("7"), id("guest:cd"));
    }

    #[tokio::test]
    async fn one_bad_record_is_isolated_and_the_rest_delivered() {
        let s = sender(0, 100);
        let mut taken = Taken::default();
        for c in 1..=40 {
            let email = if c == 17 {
                "jan@kowalski".to_string()
            } else {
                format!("c{c}@x.example")
            };
            taken.contacts.push(item(contact(&c.to_string(), &email)));
            taken
                .deals
                .push(item(deal(c, &c.to_string(), "processing")));
        }
        let known = SharedKnown::default();
        let report = s.flush(taken, &known).await.unwrap();
        let refused: Vec<_> = report
            .contacts
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Refused(_)))
            .collect();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0.change.customer, "17");
        let Outcome::Refused(r) = &refused[0].1 else {
            unreachable!()
        };
        assert!(
            r.reason.contains("INVALID_EMAIL") && !r.reason.contains("kowalski"),
            "{r:?}"
        );
        assert_eq!(r.status, Some(400));
        assert!(
            refused[0].0.attempts.len() >= 2,
            "the batch, then the halves"
        );
        let store = s.crm.crm.0.lock().unwrap();
        assert_eq!(store.contacts.records.len(), 39);
        assert_eq!(
            store.deals.records.len(),
            39,
            "deal 17 waits for its contact"
        );
        assert_eq!(store.associations.len(), 39);
        let deal17 = report
            .deals
            .iter()
            .find(|(i, _, _)| i.change.order_id == 17)
            .unwrap();
        assert!(matches!(deal17.1, Outcome::Refused(_)));
        assert!(deal17.2.is_some(), "the contact travels with the dead deal");
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_they_pass() {
        let s = sender(3, 100);
        let mut taken = Taken::default();
        taken.contacts.push(item(contact("1", "a@x.example")));
        taken.deals.push(item(deal(1, "1", "completed")));
        let report = s.flush(taken, &SharedKnown::default()).await.unwrap();
        assert!(matches!(
            report.contacts[0].1,
            Outcome::Delivered { new: true, .. }
        ));
        assert!(matches!(
            report.deals[0].1,
            Outcome::Delivered { new: true, .. }
        ));
        assert_eq!(
            report.contacts[0].0.attempts.len(),
            3,
            "three 503s recorded"
        );
        assert_eq!(
            s.crm.calls.load(Ordering::SeqCst),
            3 + 3,
            "retries + contact, deal, association"
        );
    }

    #[tokio::test]
    async fn updates_of_an_associated_deal_skip_the_association_and_unmapped_statuses_skip() {
        let s = sender(0, 100);
        let known = SharedKnown::default();
        let mut taken = Taken::default();
        taken.contacts.push(item(contact("1", "a@x.example")));
        taken.deals.push(item(deal(1, "1", "processing")));
        s.flush(taken, &known).await.unwrap();
        let before = s.crm.calls.load(Ordering::SeqCst);
        let mut taken = Taken::default();
        taken.deals.push(item(deal(1, "1", "completed")));
        taken.deals.push(item(deal(2, "1", "checkout-draft")));
        let report = s.flush(taken, &known).await.unwrap();
        assert_eq!(
            s.crm.calls.load(Ordering::SeqCst) - before,
            1,
            "one deal upsert only"
        );
        assert!(matches!(report.deals[0].1, Outcome::Skipped(_)));
        let store = s.crm.crm.0.lock().unwrap();
        let d = store.get(Object::Deals, "woo_order_id", "main:1").unwrap();
        assert_eq!(d["dealstage"], "closedwon");
    }
}
