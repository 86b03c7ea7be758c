//! Erasure receipts: each role that erases something writes one record to the audit topic —
//! what it did, where, when — with no personal data, under the erasure's id. `woostream erase
//! --status` reads them back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::contract::sink_records::{Delivery, DeliveryOutcome};

/// The audit record's `kind` for erasure receipts.
pub const KIND: &str = "erasure";

/// What one role reports about one erasure.
pub struct Receipt<'a> {
    pub erasure_id: &'a str,
    pub shop_id: &'a str,
    /// keys, enricher, crm or slack.
    pub role: &'a str,
    /// Where it erased (topics, a CRM account, Slack channels).
    pub destination: String,
    /// What it did, in counts and ids that name no one.
    pub done: String,
    /// The CRM's id of the object deleted or anonymised.
    pub object_id: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub outcome: DeliveryOutcome,
    pub attempts: i32,
}

impl Receipt<'_> {
    pub fn record(&self) -> Delivery {
        let now = Utc::now();
        Delivery {
            delivery_id: format!("{KIND}:{}:{}", self.erasure_id, self.role),
            sink: self.role.to_string(),
            destination: self.destination.clone(),
            alert_id: self.erasure_id.to_string(),
            kind: KIND.into(),
            shop_id: self.shop_id.to_string(),
            correlation_id: self.erasure_id.to_string(),
            outcome: self.outcome,
            message_ts: self.object_id.clone(),
            thread_ts: None,
            order_id: None,
            priority: "normal".into(),
            reason: Some(self.done.clone()),
            attempts: self.attempts,
            latency_ms: (now - self.requested_at).num_milliseconds().max(0),
            delivered_at: now,
        }
    }
}

/// The roles an erasure reaches, in the order they act.
pub const ROLES: [&str; 4] = ["keys", "enricher", "crm", "slack"];

/// A table of receipts by erasure (newest first), each role's line or "not confirmed".
pub fn status_table(receipts: &[Delivery], only: Option<&str>) -> String {
    let mut by_erasure: BTreeMap<(DateTime<Utc>, String), Vec<&Delivery>> = BTreeMap::new();
    let mut started: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for r in receipts.iter().filter(|r| r.kind == KIND) {
        if only.is_some_and(|id| id != r.alert_id) {
            continue;
        }
        let at = r.delivered_at - chrono::Duration::milliseconds(r.latency_ms);
        let first = started.entry(&r.alert_id).or_insert(at);
        *first = (*first).min(at);
    }
    for r in receipts.iter().filter(|r| r.kind == KIND) {
        if let Some(at) = started.get(r.alert_id.as_str()) {
            by_erasure
                .entry((*at, r.alert_id.clone()))
                .or_default()
                .push(r);
        }
    }
    if by_erasure.is_empty() {
        return match only {
            Some(id) => format!("No receipt for erasure {id} yet.\n"),
            None => "No erasure receipts.\n".into(),
        };
    }
    let mut out = String::new();
    for ((at, id), rs) in by_erasure.iter().rev() {
        let shop = rs.first().map_or("", |r| r.shop_id.as_str());
        out.push_str(&format!(
            "erasure {id} (shop {shop}, requested {})\n",
            at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
        // A kind every sink of which is named is confirmed by its named sinks.
        let mut roles: Vec<&str> = ROLES
            .iter()
            .copied()
            .filter(|role| {
                !rs.iter().any(|r| {
                    r.sink
                        .split_once('@')
                        .is_some_and(|(kind, _)| kind == *role)
                })
            })
            .collect();
        for r in rs {
            if !roles.contains(&r.sink.as_str()) {
                roles.push(&r.sink);
            }
        }
        for role in roles {
            let mine: Vec<&&Delivery> = rs.iter().filter(|r| r.sink == role).collect();
            if mine.is_empty() {
                out.push_str(&format!("  {role:<9} not confirmed\n"));
            }
            for r in mine {
                out.push_str(&format!(
                    "  {role:<9} {:<13} {} at {} — {}{}\n",
                    r.outcome.as_str(),
                    r.destination,
                    r.delivered_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    r.reason.as_deref().unwrap_or(""),
                    r.message_ts
                        .as_deref()
                        .map(|id| format!(" (object {id})"))
                        .unwrap_or_default(),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_shows_every_role_and_what_is_missing() {
        let requested = Utc::now() - chrono::Duration::seconds(5);
        let keys = Receipt {
            erasure_id: "er-1",
            shop_id: "eu",
            role: "keys",
            destination: "woostream.subject-keys".into(),
            done: "2 keys deleted".into(),
            object_id: None,
            requested_at: requested,
            outcome: DeliveryOutcome::Erased,
            attempts: 1,
        }
        .record();
        let crm = Receipt {
            role: "crm",
            destination: "hubspot contacts".into(),
            done: "contact deleted".into(),
            object_id: Some("901".into()),
            ..Receipt {
                ..keys_receipt(requested)
            }
        }
        .record();
        assert_eq!(keys.delivery_id, "erasure:er-1:keys");
        let table = status_table(&[keys.clone(), crm], None);
        assert!(table.contains("erasure er-1 (shop eu"), "{table}");
        assert!(table.contains("keys      erased"), "{table}");
        assert!(table.contains("(object 901)"), "{table}");
        assert!(table.contains("enricher  not confirmed"), "{table}");
        assert!(table.contains("slack     not confirmed"), "{table}");
        assert!(status_table(&[keys], Some("er-2")).contains("No receipt for erasure er-2"));
    }

    fn keys_receipt(requested: DateTime<Utc>) -> Receipt<'static> {
        Receipt {
            erasure_id: "er-1",
            shop_id: "eu",
            role: "keys",
            destination: String::new(),
            done: String::new(),
            object_id: None,
            requested_at: requested,
            outcome: DeliveryOutcome::Erased,
            attempts: 1,
        }
    }
}
