//! `woostream slack preview`: what each rule would post for an event file, without sending.
//! The event file is an alert as JSON, with amounts as decimal strings and times as RFC 3339
//! (`woostream slack preview --example order_paid` prints one to start from).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use woostream_core::contract::enriched::{Alert, AlertKind};
use woostream_core::Money;

use super::blocks::Message;
use super::rules::Rules;
use super::template;

/// One message a rule would post.
#[derive(Debug)]
pub struct Preview {
    pub rule: String,
    pub channel: String,
    pub priority: &'static str,
    /// Why nothing would be posted (muted, quiet hours).
    pub skipped: Option<&'static str>,
    pub message: Result<Message, String>,
}

/// What every matching rule would post for `alert` at `now`.
pub fn preview(
    rules: &Rules,
    alert: &Alert,
    admin_url: Option<String>,
    now: DateTime<Utc>,
) -> Vec<Preview> {
    rules
        .route(alert, now)
        .into_iter()
        .map(|r| Preview {
            rule: rules.rules[r.rule].name.clone(),
            channel: r.channel,
            priority: r.priority.as_str(),
            skipped: r.skip,
            message: template::message_for(rules, r.rule, alert, admin_url.clone()),
        })
        .collect()
}

const MONEY: [&[&str]; 5] = [
    &["order", "total"],
    &["order", "refunded_total"],
    &["customer", "revenue"],
    &["customer", "clv_12_months"],
    &["order", "items", "*", "total"],
];

fn money_to_wire(v: &mut Value, path: &[&str]) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Ok(()),
        };
        let d = Decimal::from_str(text.trim())
            .map_err(|_| format!("expected a decimal amount, got {text:?}"))?;
        *v = Value::from(Money::new(d).to_avro_bytes());
        return Ok(());
    };
    match (*head, v) {
        ("*", Value::Array(items)) => {
            for item in items {
                money_to_wire(item, rest)?;
            }
            Ok(())
        }
        (key, Value::Object(map)) => match map.get_mut(key) {
            Some(child) => money_to_wire(child, rest),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

fn time_to_wire(v: &mut Value) -> Result<(), String> {
    if let Value::String(s) = v {
        let t = DateTime::parse_from_rfc3339(s).map_err(|e| {
            format!("expected an RFC 3339 time such as 2026-11-20T09:00:00Z, got {s:?}: {e}")
        })?;
        *v = Value::from(t.timestamp_millis());
    }
    Ok(())
}

/// Reads an alert from JSON written for people.
pub fn alert_from_json(text: &str) -> Result<Alert, String> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    for path in MONEY {
        money_to_wire(&mut v, path)?;
    }
    if let Some(t) = v.get_mut("occurred_at") {
        time_to_wire(t)?;
    }
    if let Some(t) = v.pointer_mut("/order/created_at") {
        time_to_wire(t)?;
    }
    if let Some(Value::String(k)) = v.get_mut("kind") {
        *k = k.to_uppercase();
    }
    serde_json::from_value(v).map_err(|e| format!("not an alert: {e}"))
}

/// An alert as people write it: the inverse of [`alert_from_json`].
pub fn alert_to_json(alert: &Alert) -> String {
    let mut v = serde_json::to_value(alert).expect("alerts serialise");
    fn wire_to_money(v: &mut Value, path: &[&str]) {
        let Some((head, rest)) = path.split_first() else {
            if let Value::Array(bytes) = v {
                let bytes: Vec<u8> = bytes
                    .iter()
                    .filter_map(|b| b.as_u64())
                    .map(|b| b as u8)
                    .collect();
                if let Ok(m) = Money::from_avro_bytes(&bytes) {
                    *v = Value::from(m.amount().normalize().to_string());
                }
            }
            return;
        };
        match (*head, v) {
            ("*", Value::Array(items)) => items.iter_mut().for_each(|i| wire_to_money(i, rest)),
            (key, Value::Object(map)) => {
                if let Some(child) = map.get_mut(key) {
                    wire_to_money(child, rest)
                }
            }
            _ => {}
        }
    }
    for path in MONEY {
        wire_to_money(&mut v, path);
    }
    v["occurred_at"] = Value::from(alert.occurred_at.to_rfc3339());
    v["kind"] = Value::from(alert.kind.as_str());
    serde_json::to_string_pretty(&v).expect("JSON")
}

/// An example alert of `kind` to start an event file from.
pub fn example(kind: &str) -> Result<Alert, String> {
    let kind = AlertKind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind)
        .ok_or_else(|| {
            format!(
                "unknown alert kind {kind:?}; expected one of {}",
                AlertKind::ALL.map(|k| k.as_str()).join(", ")
            )
        })?;
    Ok(super::examples::order_alert(10452, kind, "2340.00"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_never_posts_a_broken_link_without_an_admin_url() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/woostream.example.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        // The example names its secrets by variables; any set one will do here.
        let env = [
            ("WOOSTREAM__SHOPS__0__SECRET_ENV".into(), "PATH".into()),
            ("WOOSTREAM__CRM__TOKEN_ENV".into(), "PATH".into()),
        ];
        let config = woostream_core::config::Config::from_text(path, &text, env).unwrap();
        let rules = Rules::compile(&config.slack).unwrap();
        let mut previews = 0;
        for kind in AlertKind::ALL {
            let alert = example(kind.as_str()).unwrap();
            for p in preview(&rules, &alert, None, Utc::now()) {
                let message = p.message.unwrap();
                let json = serde_json::to_string(&message).unwrap();
                assert!(!json.contains("<|"), "{}: {json}", p.rule);
                previews += 1;
            }
        }
        assert!(
            previews > 3,
            "the example's rules matched {previews} alerts"
        );
    }

    #[test]
    fn event_files_round_trip_with_readable_amounts() {
        let alert = example("order_paid").unwrap();
        let text = alert_to_json(&alert);
        assert!(text.contains("\"total\": \"2340\""), "{text}");
        assert!(text.contains("\"kind\": \"order_paid\""));
        assert_eq!(alert_from_json(&text).unwrap(), alert);
        let bad = text.replace("\"2340\"", "\"12,30\"");
        assert!(alert_from_json(&bad)
            .unwrap_err()
            .contains("decimal amount"));
    }
}
