//! One erasure carried out at the source: the person's keys deleted (from then on nothing
//! sealed for them opens, in any topic), then a tombstone on the customers topic for each of
//! their customer keys — the erasure event the enricher and the CRM sink act on — and a
//! receipt in the audit topic. `woostream erase` and the producer's `customer.deleted` both
//! come here.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use super::receipt::Receipt;
use super::{SubjectKeys, ERASURE_HEADER};
use crate::config::Config;
use crate::contract::codec::{Codecs, Contract, Encoder};
use crate::contract::events::CustomerKey;
use crate::contract::sink_records::{Delivery, DeliveryOutcome};
use crate::kafka::RenewingProducer;
use crate::privacy::CustomerHasher;

/// Header beside [`ERASURE_HEADER`]: when the erasure was asked for (RFC 3339, UTC).
pub const REQUESTED_AT_HEADER: &str = "woostream-erasure-requested-at";

/// One person to erase, by every customer key they may have: their account id and, when
/// their email is known, `guest:<email hash>` for the orders they placed as a guest.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    pub erasure_id: String,
    pub shop_id: String,
    pub subjects: Vec<String>,
    /// Why, as the operator gave it (kept in the receipt: it must not name the person).
    pub reason: Option<String>,
    /// cli or customer.deleted.
    pub source: String,
    pub requested_at: DateTime<Utc>,
}

impl Request {
    pub fn new(
        shop_id: &str,
        subjects: Vec<String>,
        reason: Option<String>,
        source: &str,
    ) -> Request {
        Request {
            erasure_id: format!("er-{}", uuid::Uuid::now_v7().simple()),
            shop_id: shop_id.to_string(),
            subjects,
            reason,
            source: source.to_string(),
            requested_at: Utc::now(),
        }
    }

    /// The headers every record of this erasure carries.
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            (ERASURE_HEADER.into(), self.erasure_id.clone()),
            (REQUESTED_AT_HEADER.into(), self.requested_at.to_rfc3339()),
        ]
    }
}

/// The erasure id and request time a record carries, if it is an erasure's.
pub fn erasure_of<M: rdkafka::Message>(m: &M) -> Option<(String, DateTime<Utc>)> {
    use rdkafka::message::Headers as _;
    let headers: Vec<(String, Vec<u8>)> = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    erasure_in(&headers)
}

/// [`erasure_of`] over headers already read.
pub fn erasure_in(headers: &[(String, Vec<u8>)]) -> Option<(String, DateTime<Utc>)> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let id = get(ERASURE_HEADER)?;
    let at = get(REQUESTED_AT_HEADER)
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    Some((id, at))
}

/// The customer keys of one person: the account, and the guest orders of their email.
pub fn subjects(customer_id: Option<i64>, email_hashes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = customer_id.map(|id| id.to_string()).into_iter().collect();
    for h in email_hashes {
        let guest = format!("guest:{h}");
        if !out.contains(&guest) {
            out.push(guest);
        }
    }
    out
}

/// One record an erasure writes; `value` `None` is a tombstone.
#[derive(Clone, Debug, PartialEq)]
pub struct Out {
    pub topic: String,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

/// What an erasure wrote, in counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Done {
    pub keys_deleted: usize,
    pub customer_records: usize,
}

/// The encoders an erasure writes with.
pub struct ErasureCodecs {
    customer_key: Encoder<CustomerKey>,
    receipt: Encoder<Delivery>,
    receipt_key: Encoder<String>,
}

impl ErasureCodecs {
    pub async fn register(config: &Config) -> anyhow::Result<ErasureCodecs> {
        let t = &config.topics;
        let codecs = Codecs::register(
            config,
            &[
                (&t.customers.name, "key", CustomerKey::schema()),
                (&t.deliveries.name, "key", String::schema()),
                (&t.deliveries.name, "value", Delivery::schema()),
            ],
        )
        .await
        .context("registering the erasure's schemas")?;
        Ok(ErasureCodecs {
            customer_key: codecs.encoder(),
            receipt: codecs.encoder(),
            receipt_key: codecs.encoder(),
        })
    }

    /// The audit record of a receipt.
    pub fn receipt(&self, topic: &str, receipt: &Receipt<'_>) -> anyhow::Result<Out> {
        let record = receipt.record();
        Ok(Out {
            topic: topic.to_string(),
            key: self.receipt_key.encode(&record.delivery_id)?,
            value: Some(self.receipt.encode(&record)?),
            headers: vec![(ERASURE_HEADER.into(), receipt.erasure_id.to_string())],
        })
    }
}

/// The records of an erasure, in the order they must be written: key tombstones, then the
/// customers topic's tombstones, then the receipt.
pub fn records(
    config: &Config,
    codecs: &ErasureCodecs,
    request: &Request,
    subject_refs: &[String],
    key_ids: &[String],
) -> anyhow::Result<(Vec<Out>, Done)> {
    let t = &config.topics;
    let headers = request.headers();
    // The erased-subject list first: once a key is gone, no new one may be made for them.
    let mark = serde_json::to_vec(&super::erased::ErasedMark {
        erasure_id: request.erasure_id.clone(),
        erased_at: request.requested_at,
    })?;
    let mut out: Vec<Out> = subject_refs
        .iter()
        .map(|subject| Out {
            topic: t.erased_subjects.name.clone(),
            key: subject.as_bytes().to_vec(),
            value: Some(mark.clone()),
            headers: headers.clone(),
        })
        .collect();
    out.extend(key_ids.iter().map(|id| Out {
        topic: t.subject_keys.name.clone(),
        key: id.as_bytes().to_vec(),
        value: None,
        headers: headers.clone(),
    }));
    for subject in &request.subjects {
        let key = CustomerKey {
            shop_id: request.shop_id.clone(),
            customer: subject.clone(),
        };
        out.push(Out {
            topic: t.customers.name.clone(),
            key: codecs.customer_key.encode(&key)?,
            value: None,
            headers: headers.clone(),
        });
    }
    let done = Done {
        keys_deleted: key_ids.len(),
        customer_records: request.subjects.len(),
    };
    let mut what = format!(
        "{} subject keys deleted, {} customer keys tombstoned ({}",
        done.keys_deleted, done.customer_records, request.source
    );
    if let Some(r) = &request.reason {
        what.push_str(&format!(": {r}"));
    }
    what.push(')');
    out.push(codecs.receipt(
        &t.deliveries.name,
        &Receipt {
            erasure_id: &request.erasure_id,
            shop_id: &request.shop_id,
            role: "keys",
            destination: format!("{} + {}", t.subject_keys.name, t.customers.name),
            done: what,
            object_id: None,
            requested_at: request.requested_at,
            outcome: DeliveryOutcome::Erased,
            attempts: 1,
        },
    )?);
    Ok((out, done))
}

/// Writes `records` in order, each acknowledged before the next.
pub async fn write(producer: &RenewingProducer, records: &[Out]) -> anyhow::Result<()> {
    for r in records {
        let mut hs = OwnedHeaders::new_with_capacity(r.headers.len());
        for (k, v) in &r.headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut fr: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&r.topic).key(r.key.as_slice()).headers(hs);
        if let Some(v) = &r.value {
            fr = fr.payload(v.as_slice());
        }
        producer
            .send(fr, Duration::from_secs(30))
            .await
            .with_context(|| format!("writing the erasure to {}", r.topic))?;
    }
    Ok(())
}

/// Carries out `request`: finds every key of its people (as of the key topic's end), writes
/// the erasure, and forgets the keys here at once.
pub async fn carry_out(
    config: &Config,
    keys: &SubjectKeys,
    producer: &RenewingProducer,
    codecs: &ErasureCodecs,
    request: &Request,
) -> anyhow::Result<Done> {
    let hasher = CustomerHasher::for_shop(config, &request.shop_id);
    let refs: Vec<String> = request
        .subjects
        .iter()
        .map(|s| hasher.subject_ref(&request.shop_id, s))
        .collect();
    let (k, lookup) = (keys.clone(), refs.clone());
    let key_ids = tokio::task::spawn_blocking(move || k.ids_of(&lookup))
        .await
        .context("finding the subject keys")??;
    let (out, done) = records(config, codecs, request, &refs, &key_ids)?;
    write(producer, &out).await?;
    keys.forget(&key_ids);
    tracing::info!(
        erasure = %request.erasure_id,
        shop = %request.shop_id,
        keys = done.keys_deleted,
        customer_keys = done.customer_records,
        source = %request.source,
        "Erased a person at the source."
    );
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_is_their_account_and_their_guest_orders() {
        assert_eq!(
            subjects(Some(42), &["ab".into(), "ab".into()]),
            vec!["42".to_string(), "guest:ab".to_string()]
        );
        assert_eq!(subjects(None, &["ab".into()]), vec!["guest:ab".to_string()]);
    }

    #[tokio::test]
    async fn the_records_mark_the_list_then_delete_keys_then_tombstone_then_receipt() {
        let config = Config::default();
        let codecs = ErasureCodecs::register(&config).await.unwrap();
        let request = Request::new(
            "eu",
            vec!["42".into(), "guest:ab".into()],
            Some("ticket 7".into()),
            "cli",
        );
        let (out, done) = records(
            &config,
            &codecs,
            &request,
            &["s1".into(), "s2".into()],
            &["k1".into(), "k2".into()],
        )
        .unwrap();
        assert_eq!(
            done,
            Done {
                keys_deleted: 2,
                customer_records: 2
            }
        );
        let topics: Vec<&str> = out.iter().map(|o| o.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "woostream.erased-subjects",
                "woostream.erased-subjects",
                "woostream.subject-keys",
                "woostream.subject-keys",
                "woo.customers",
                "woo.customers",
                "woostream.deliveries"
            ]
        );
        assert_eq!(out[0].key, b"s1");
        assert!(out[..2].iter().all(|o| o.value.is_some()), "marks");
        assert!(out[2..6].iter().all(|o| o.value.is_none()), "tombstones");
        let headers: Vec<(String, Vec<u8>)> = out[4]
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        assert_eq!(erasure_in(&headers).unwrap().0, request.erasure_id);
        let receipt: Delivery = crate::contract::codec::Decoder::new()
            .decode(out[6].value.as_ref().unwrap())
            .unwrap();
        assert_eq!(receipt.outcome, DeliveryOutcome::Erased);
        assert_eq!(receipt.alert_id, request.erasure_id);
        assert!(receipt.reason.unwrap().contains("ticket 7"));
    }
}
