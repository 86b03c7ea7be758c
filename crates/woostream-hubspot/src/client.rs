//! HubSpot CRM v3 over HTTP: batch upsert of contacts and deals, v4 default associations, its
//! rate-limit headers and its error shapes (protocols.md §4.1).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{
    CallError, Crm, Input, NewProperty, Object, Property, PropertyKind, RecordError, Reply, Written,
};
use crate::budget::RateLimits;

#[derive(Clone)]
pub struct HubSpot {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl HubSpot {
    pub fn new(base: &str, token: String) -> anyhow::Result<HubSpot> {
        Ok(HubSpot {
            http: woostream_core::http::client()
                .timeout(Duration::from_secs(30))
                .user_agent(concat!("woostream/", env!("CARGO_PKG_VERSION")))
                .build()?,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    async fn post(&self, path: &str, body: Value) -> Result<(u16, HeaderMap, Value), CallError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, HeaderMap, Value), CallError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| CallError::Transient {
            status: None,
            message: format!("network: {e}"),
            limits: RateLimits::default(),
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let limits = limits(&headers);
        let text = response.text().await.map_err(|e| CallError::Transient {
            status: Some(status),
            message: format!("reading the answer: {e}"),
            limits,
        })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = hidden(body["message"].as_str().unwrap_or(&text));
        let category = body["category"].as_str().map(str::to_string);
        match status {
            200..=299 => Ok((status, headers, body)),
            429 => Err(CallError::RateLimited {
                daily: body["policyName"].as_str() == Some("DAILY"),
                retry_after: woostream_core::retry::retry_after(
                    headers.get("retry-after").and_then(|v| v.to_str().ok()),
                ),
                limits,
            }),
            // Credentials get fixed by a person; nothing is refused meanwhile.
            401 | 403 => Err(CallError::Transient {
                status: Some(status),
                message: format!("not authorised (check crm.token): {message}"),
                limits,
            }),
            400..=499 => Err(CallError::Rejected {
                status,
                category,
                message,
                limits,
            }),
            _ => Err(CallError::Transient {
                status: Some(status),
                message,
                limits,
            }),
        }
    }
}

/// `X-HubSpot-RateLimit-Remaining` (the rolling window) and `-Daily-Remaining`.
pub fn limits(h: &HeaderMap) -> RateLimits {
    let num = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    RateLimits {
        window_remaining: num("x-hubspot-ratelimit-remaining").map(|v| v as u32),
        daily_remaining: num("x-hubspot-ratelimit-daily-remaining"),
    }
}

#[derive(Deserialize)]
struct Result_ {
    id: String,
    #[serde(default)]
    new: bool,
    #[serde(default)]
    properties: BTreeMap<String, Option<String>>,
    #[serde(default, rename = "objectWriteTraceId")]
    trace: Option<String>,
}

#[derive(Deserialize)]
struct Error_ {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    context: BTreeMap<String, Vec<String>>,
}

fn record_error(e: &Error_, status: u16) -> RecordError {
    RecordError {
        status: Some(status),
        category: e.category.clone(),
        message: hidden(&e.message),
    }
}

/// HubSpot's messages quote the values they refuse (a name, a phone, an email): they reach
/// logs and dead letters without them. A validation list keeps what says why (`error`,
/// `name`, `isValid`) and drops the rest.
fn hidden(message: &str) -> String {
    use woostream_core::privacy::redact::{hide_emails, hide_quoted_values};
    if let Some((head, list)) = message.split_once(": [") {
        if let Ok(items) = serde_json::from_str::<Vec<Value>>(&format!("[{list}")) {
            let kept: Vec<Value> = items
                .iter()
                .map(|item| {
                    let mut o = serde_json::Map::new();
                    for k in ["isValid", "error", "name"] {
                        if let Some(v) = item.get(k) {
                            o.insert(k.to_string(), v.clone());
                        }
                    }
                    Value::Object(o)
                })
                .collect();
            return format!(
                "{}: {}",
                hide_emails(&hide_quoted_values(head)),
                Value::Array(kept)
            );
        }
    }
    hide_emails(&hide_quoted_values(message))
}

/// Puts each result and error back on its input: by `objectWriteTraceId`, else by the id
/// property's value.
fn upsert_reply(status: u16, inputs: &[Input], body: &Value, limits: RateLimits) -> Reply {
    let results: Vec<Result_> = serde_json::from_value(body["results"].clone()).unwrap_or_default();
    let errors: Vec<Error_> = serde_json::from_value(body["errors"].clone()).unwrap_or_default();
    let mut written: Vec<Option<Result<Written, RecordError>>> = vec![None; inputs.len()];
    for r in results {
        let index = r
            .trace
            .as_ref()
            .and_then(|t| t.parse::<usize>().ok())
            .or_else(|| {
                inputs.iter().position(|i| {
                    r.properties
                        .get(&i.id_property)
                        .and_then(|v| v.as_deref())
                        .is_some_and(|v| v.eq_ignore_ascii_case(&i.id))
                })
            });
        if let Some(slot) = index.and_then(|i| written.get_mut(i)) {
            *slot = Some(Ok(Written {
                id: r.id,
                new: r.new,
            }));
        }
    }
    for e in &errors {
        for t in e.context.get("objectWriteTraceId").into_iter().flatten() {
            if let Some(slot) = t.parse::<usize>().ok().and_then(|i| written.get_mut(i)) {
                *slot = Some(Err(record_error(e, status)));
            }
        }
    }
    Reply {
        status,
        written: written
            .into_iter()
            .map(|w| {
                w.unwrap_or_else(|| {
                    Err(RecordError {
                        status: Some(status),
                        category: Some("MISSING".into()),
                        message: "the CRM's answer did not mention this record".into(),
                    })
                })
            })
            .collect(),
        limits,
        ..Reply::default()
    }
}

/// A reply that names the objects a call dealt with.
fn reply_of(status: u16, headers: &HeaderMap, ids: Vec<String>) -> Reply {
    Reply {
        status,
        written: ids
            .into_iter()
            .map(|id| Ok(Written { id, new: false }))
            .collect(),
        limits: limits(headers),
        ..Reply::default()
    }
}

impl Crm for HubSpot {
    async fn upsert(&self, object: Object, inputs: &[Input]) -> Result<Reply, CallError> {
        let body = json!({
            "inputs": inputs.iter().enumerate().map(|(i, input)| json!({
                "idProperty": input.id_property,
                "id": input.id,
                "properties": input.properties,
                "objectWriteTraceId": i.to_string(),
            })).collect::<Vec<_>>()
        });
        let path = format!("/crm/v3/objects/{}/batch/upsert", object.as_str());
        let (status, headers, body) = self.post(&path, body).await?;
        Ok(upsert_reply(status, inputs, &body, limits(&headers)))
    }

    async fn associate(&self, pairs: &[(String, String)]) -> Result<Reply, CallError> {
        let body = json!({
            "inputs": pairs.iter().map(|(deal, contact)| json!({
                "from": {"id": deal},
                "to": {"id": contact},
            })).collect::<Vec<_>>()
        });
        let (status, headers, body) = self
            .post(
                "/crm/v4/associations/deals/contacts/batch/associate/default",
                body,
            )
            .await?;
        let errors: Vec<Error_> =
            serde_json::from_value(body["errors"].clone()).unwrap_or_default();
        let written = pairs
            .iter()
            .map(|(deal, _)| {
                match errors.iter().find(|e| {
                    e.context
                        .get("fromObjectId")
                        .is_some_and(|ids| ids.contains(deal))
                }) {
                    Some(e) => Err(record_error(e, status)),
                    None => Ok(Written {
                        id: deal.clone(),
                        new: true,
                    }),
                }
            })
            .collect();
        Ok(Reply {
            status,
            written,
            limits: limits(&headers),
            ..Reply::default()
        })
    }

    async fn read_contact(
        &self,
        (property, value): (&str, &str),
        properties: &[String],
    ) -> Result<Reply, CallError> {
        // The value is a path segment (an email may hold `+`, `/` or `#`).
        let mut url = reqwest::Url::parse(&format!("{}/crm/v3/objects/contacts/", self.base))
            .map_err(|e| CallError::Transient {
                status: None,
                message: format!("crm.api_url: {e}"),
                limits: RateLimits::default(),
            })?;
        url.path_segments_mut()
            .map_err(|()| CallError::Transient {
                status: None,
                message: "crm.api_url cannot take a path".into(),
                limits: RateLimits::default(),
            })?
            .pop_if_empty()
            .push(value);
        {
            let mut q = url.query_pairs_mut();
            if property != "hs_object_id" {
                q.append_pair("idProperty", property);
            }
            q.append_pair("properties", &properties.join(","));
        }
        let path = url.as_str()[self.base.len()..].to_string();
        let (status, headers, body) = self.call(reqwest::Method::GET, &path, None).await?;
        let id = match &body["id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let mut reply = reply_of(status, &headers, vec![id]);
        reply.properties = body["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                Some((k.clone(), v.as_str().filter(|v| !v.is_empty())?.to_string()))
            })
            .collect();
        Ok(reply)
    }

    async fn gdpr_delete(&self, contact: &str) -> Result<Reply, CallError> {
        let (status, headers, _) = self
            .post(
                "/crm/v3/objects/contacts/gdpr-delete",
                json!({"objectId": contact}),
            )
            .await?;
        Ok(reply_of(status, &headers, vec![contact.to_string()]))
    }

    async fn blank(&self, contact: &str, properties: &[String]) -> Result<Reply, CallError> {
        let blanks: BTreeMap<&str, &str> = properties.iter().map(|p| (p.as_str(), "")).collect();
        let path = format!("/crm/v3/objects/contacts/{contact}");
        let (status, headers, _) = self
            .call(
                reqwest::Method::PATCH,
                &path,
                Some(json!({"properties": blanks})),
            )
            .await?;
        Ok(reply_of(status, &headers, vec![contact.to_string()]))
    }

    async fn contact_deals(&self, contact: &str) -> Result<Reply, CallError> {
        let path = format!("/crm/v4/objects/contacts/{contact}/associations/deals");
        let (status, headers, body) = self.call(reqwest::Method::GET, &path, None).await?;
        let deals = body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| match &r["toObjectId"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect();
        Ok(reply_of(status, &headers, deals))
    }

    async fn detach(&self, contact: &str, deals: &[String]) -> Result<Reply, CallError> {
        let body = json!({"inputs": [{
            "from": {"id": contact},
            "to": deals.iter().map(|d| json!({"id": d})).collect::<Vec<_>>(),
        }]});
        let (status, headers, _) = self
            .post("/crm/v4/associations/contacts/deals/batch/archive", body)
            .await?;
        Ok(reply_of(status, &headers, deals.to_vec()))
    }

    async fn properties(&self, object: Object) -> Result<Vec<Property>, CallError> {
        let path = format!("/crm/v3/properties/{}", object.as_str());
        let (_, _, body) = self.call(reqwest::Method::GET, &path, None).await?;
        Ok(body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(Property {
                    name: p["name"].as_str()?.to_string(),
                    unique: p["hasUniqueValue"].as_bool().unwrap_or(false),
                })
            })
            .collect())
    }

    async fn stages(&self, pipeline: &str) -> Result<Option<Vec<String>>, CallError> {
        let path = format!("/crm/v3/pipelines/deals/{pipeline}");
        match self.call(reqwest::Method::GET, &path, None).await {
            Ok((_, _, body)) => Ok(Some(
                body["stages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["id"].as_str().map(str::to_string))
                    .collect(),
            )),
            Err(CallError::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_property(&self, object: Object, p: &NewProperty) -> Result<(), CallError> {
        let (kind, field) = match p.kind {
            PropertyKind::Text => ("string", "text"),
            PropertyKind::Number => ("number", "number"),
            PropertyKind::DateTime => ("datetime", "date"),
        };
        let group = match object {
            Object::Contacts => "contactinformation",
            Object::Deals => "dealinformation",
        };
        let body = json!({
            "name": p.name,
            "label": p.label,
            "type": kind,
            "fieldType": field,
            "groupName": group,
            "hasUniqueValue": p.unique,
        });
        let path = format!("/crm/v3/properties/{}", object.as_str());
        self.post(&path, body).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(prop: &str, id: &str) -> Input {
        Input {
            id_property: prop.into(),
            id: id.into(),
            properties: BTreeMap::new(),
        }
    }

    #[test]
    fn results_and_errors_find_their_inputs() {
        let inputs = [
            input("email", "a@x.example"),
            input("woo_customer_id", "7"),
            input("woo_customer_id", "8"),
        ];
        let body = json!({
            "status": "COMPLETE",
            "results": [
                {"id": "11", "new": false, "properties": {"woo_customer_id": "7"}},
                {"id": "10", "new": true, "properties": {"email": "A@x.example"}},
            ],
            "errors": [
                {"status": "error", "category": "VALIDATION_ERROR", "message": "bad",
                 "context": {"objectWriteTraceId": ["2"]}}
            ],
            "numErrors": 1
        });
        let r = upsert_reply(207, &inputs, &body, RateLimits::default());
        assert_eq!(
            r.written[0],
            Ok(Written {
                id: "10".into(),
                new: true
            })
        );
        assert_eq!(r.written[1].as_ref().unwrap().id, "11");
        assert_eq!(
            r.written[2].as_ref().unwrap_err().category.as_deref(),
            Some("VALIDATION_ERROR")
        );
    }

    #[test]
    fn refusals_name_no_one() {
        let e = Error_ {
            category: Some("VALIDATION_ERROR".into()),
            message: r#"Property values were not valid: [{"isValid":false,"message":"Email address ola@x.example is invalid","name":"email"},{"name":"phone","value":"+48 600 100 200"}]"#.into(),
            context: BTreeMap::new(),
        };
        let r = record_error(&e, 400);
        assert!(!r.message.contains("ola@x.example"), "{}", r.message);
        assert!(!r.message.contains("600 100 200"), "{}", r.message);
        assert!(
            r.message.contains("\"name\":\"email\""),
            "why stays: {}",
            r.message
        );
        let e = Error_ {
            category: Some("VALIDATION_ERROR".into()),
            message: r#"Property values were not valid: [{"isValid":false,"message":"x was not one of the allowed options","error":"INVALID_OPTION","name":"dealstage"}]"#.into(),
            context: BTreeMap::new(),
        };
        assert!(record_error(&e, 400).message.contains("INVALID_OPTION"));
    }

    #[test]
    fn rate_limit_headers_are_read() {
        let mut h = HeaderMap::new();
        h.insert("X-HubSpot-RateLimit-Remaining", "17".parse().unwrap());
        h.insert(
            "X-HubSpot-RateLimit-Daily-Remaining",
            "649000".parse().unwrap(),
        );
        assert_eq!(
            limits(&h),
            RateLimits {
                window_remaining: Some(17),
                daily_remaining: Some(649_000)
            }
        );
    }
}
