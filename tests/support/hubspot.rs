//! A local HubSpot for tests, speaking CRM v3/v4 as protocols.md §4.1 describes it: bearer
//! auth, `POST /crm/v3/objects/{contacts|deals}/batch/upsert` (at most 100 inputs, unique id
//! properties, properties that must exist, whole-batch `VALIDATION_ERROR`s, 409 conflicts),
//! `POST /crm/v4/associations/deals/contacts/batch/associate/default` (207 for partial
//! failures), `GET`/`POST /crm/v3/properties/{object}` (`hasUniqueValue`, 409 for a name taken),
//! `GET /crm/v3/pipelines/deals/{id}` (its stages; 404), a rolling 10-second request limit answered with 429 and `policyName`, the
//! `X-HubSpot-RateLimit-*` headers, and an outage mode answering 503. The records live in the
//! same object store the dry run uses (`woostream_hubspot::memory::Store`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use woostream_hubspot::api::{Input, NewProperty, Object, PropertyKind};
use woostream_hubspot::memory::Store;

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Request {
    pub at: Instant,
    pub endpoint: String,
    pub status: u16,
    pub inputs: usize,
}

struct Inner {
    store: Store,
    requests: Vec<Request>,
    /// Arrival times of the requests counted in the rolling window.
    window: VecDeque<Instant>,
    down: bool,
    subscription: Option<Subscription>,
    next_event: i64,
    /// Every webhook request delivered: (the events, the status the receiver answered).
    delivered: Vec<(Value, u16)>,
}

/// An app's `contact.propertyChange` subscription: where HubSpot delivers, signed with what,
/// for which properties, and the app the API token belongs to (its writes are reported with
/// `changeSource: INTEGRATION` and that `sourceId`).
#[derive(Clone)]
pub struct Subscription {
    pub url: String,
    pub client_secret: String,
    pub app_id: String,
    pub properties: Vec<String>,
}

#[derive(Clone)]
pub struct FakeHubSpot {
    inner: Arc<Mutex<Inner>>,
    token: String,
    per_10_seconds: usize,
    pub url: String,
    _server: Arc<tokio::task::JoinHandle<()>>,
}

fn error(status: StatusCode, category: &str, message: &str, headers: HeaderMap) -> Response {
    (
        status,
        headers,
        Json(json!({
            "status": "error",
            "message": message,
            "correlationId": "8c5d4a1e-0000-4000-8000-000000000000",
            "category": category,
        })),
    )
        .into_response()
}

impl FakeHubSpot {
    /// A portal with woostream's properties already created.
    pub async fn start(token: &str, per_10_seconds: usize) -> FakeHubSpot {
        FakeHubSpot::with_store_of(Store::portal(), token, per_10_seconds).await
    }

    /// A new portal: only HubSpot's own properties (`woostream crm setup` creates the rest).
    pub async fn start_fresh(token: &str, per_10_seconds: usize) -> FakeHubSpot {
        FakeHubSpot::with_store_of(Store::fresh_portal(), token, per_10_seconds).await
    }

    async fn with_store_of(store: Store, token: &str, per_10_seconds: usize) -> FakeHubSpot {
        let inner = Arc::new(Mutex::new(Inner {
            store,
            requests: Vec::new(),
            window: VecDeque::new(),
            down: false,
            subscription: None,
            next_event: 1,
            delivered: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let mut fake = FakeHubSpot {
            inner,
            token: token.to_string(),
            per_10_seconds,
            url: format!("http://{addr}"),
            _server: Arc::new(tokio::spawn(async {})),
        };
        let app = Router::new()
            .route("/crm/v3/objects/{object}/batch/upsert", post(upsert))
            .route(
                "/crm/v3/properties/{object}",
                get(list_properties).post(create_property),
            )
            .route("/crm/v3/pipelines/deals/{pipeline}", get(pipeline))
            .route(
                "/crm/v4/associations/deals/contacts/batch/associate/default",
                post(associate),
            )
            .route("/crm/v3/objects/contacts/gdpr-delete", post(gdpr_delete))
            .route(
                "/crm/v3/objects/contacts/{id}",
                get(read_contact).patch(update_contact),
            )
            .route(
                "/crm/v4/objects/contacts/{id}/associations/deals",
                get(contact_deals),
            )
            .route(
                "/crm/v4/associations/contacts/deals/batch/archive",
                post(detach),
            )
            .with_state(fake.clone());
        fake._server = Arc::new(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
        fake
    }

    /// Subscribes an app to `contact.propertyChange` of `properties`.
    pub fn subscribe(&self, subscription: Subscription) {
        self.inner.lock().unwrap().subscription = Some(subscription);
    }

    /// Every webhook request delivered so far, with the receiver's answer.
    pub fn delivered(&self) -> Vec<(Value, u16)> {
        self.inner.lock().unwrap().delivered.clone()
    }

    /// A person edits a contact in HubSpot's UI: the property changes and, when subscribed,
    /// the event is delivered (signed) before this returns; the receiver's status.
    pub async fn edit_contact(&self, contact: &str, property: &str, value: &str) -> Option<u16> {
        let changed = self.with_store(|s| {
            let id: u64 = contact.parse().ok()?;
            let record = s.contacts.records.get_mut(&id)?;
            let before = record.insert(property.to_string(), value.to_string());
            (before.as_deref() != Some(value)).then_some(id)
        })?;
        let events = self.events(
            &[(changed, property.to_string(), value.to_string())],
            ("CRM_UI", "userId:31"),
        );
        self.deliver(events).await
    }

    /// Delivers the last request about a person's edit again, as HubSpot retries one.
    pub async fn redeliver_last(&self) -> Option<u16> {
        let last = self
            .inner
            .lock()
            .unwrap()
            .delivered
            .iter()
            .rev()
            .find(|(events, _)| events[0]["changeSource"] == "CRM_UI")?
            .0
            .clone();
        self.deliver(Some(last)).await
    }

    /// `contact.propertyChange` events for `changes` of subscribed properties, numbered.
    fn events(&self, changes: &[(u64, String, String)], source: (&str, &str)) -> Option<Value> {
        let mut inner = self.inner.lock().unwrap();
        let sub = inner.subscription.clone()?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut events = Vec::new();
        for (contact, property, value) in changes {
            if !sub.properties.contains(property) {
                continue;
            }
            let id = inner.next_event;
            inner.next_event += 1;
            events.push(json!({
                "eventId": id, "subscriptionId": 7001, "portalId": 62515,
                "appId": sub.app_id.parse::<i64>().unwrap_or(0), "occurredAt": now,
                "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
                "objectId": contact, "propertyName": property, "propertyValue": value,
                "changeSource": source.0, "sourceId": source.1,
            }));
        }
        (!events.is_empty()).then_some(Value::Array(events))
    }

    /// Signs and posts one webhook request (X-HubSpot-Signature-v3) to the subscription.
    async fn deliver(&self, events: Option<Value>) -> Option<u16> {
        let events = events?;
        let sub = self.inner.lock().unwrap().subscription.clone()?;
        let body = serde_json::to_vec(&events).unwrap();
        let ts = chrono::Utc::now().timestamp_millis().to_string();
        let signature =
            woostream_hubspot::signature::sign(&sub.client_secret, "POST", &sub.url, &body, &ts);
        let status = reqwest::Client::new()
            .post(&sub.url)
            .header("content-type", "application/json")
            .header("x-hubspot-request-timestamp", ts)
            .header("x-hubspot-signature-v3", signature)
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        self.inner.lock().unwrap().delivered.push((events, status));
        Some(status)
    }

    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().down = down;
    }

    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.inner.lock().unwrap().store)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The most requests that arrived within any 10 seconds.
    pub fn busiest_window(&self) -> usize {
        let times: Vec<Instant> = self.requests().iter().map(|r| r.at).collect();
        let mut best = 0;
        let mut start = 0;
        for (end, t) in times.iter().enumerate() {
            while *t - times[start] >= Duration::from_secs(10) {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    /// Checks auth, the outage and the rate limit; counts the request in the window.
    fn admit(
        &self,
        headers: &HeaderMap,
        endpoint: &str,
        inputs: usize,
    ) -> Result<HeaderMap, Box<Response>> {
        let mut inner = self.inner.lock().unwrap();
        let now = Instant::now();
        let log = |status: u16, inner: &mut Inner| {
            inner.requests.push(Request {
                at: now,
                endpoint: endpoint.to_string(),
                status,
                inputs,
            })
        };
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if auth != format!("Bearer {}", self.token) {
            log(401, &mut inner);
            return Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found.",
                HeaderMap::new(),
            )));
        }
        if inner.down {
            log(503, &mut inner);
            return Err(Box::new(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "The service is temporarily unavailable.",
                HeaderMap::new(),
            )));
        }
        while inner
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(10))
        {
            inner.window.pop_front();
        }
        let mut h = HeaderMap::new();
        h.insert(
            "X-HubSpot-RateLimit-Max",
            HeaderValue::from(self.per_10_seconds),
        );
        h.insert(
            "X-HubSpot-RateLimit-Interval-Milliseconds",
            HeaderValue::from(10_000),
        );
        h.insert("X-HubSpot-RateLimit-Daily", HeaderValue::from(650_000));
        if inner.window.len() >= self.per_10_seconds {
            log(429, &mut inner);
            h.insert("X-HubSpot-RateLimit-Remaining", HeaderValue::from(0));
            return Err(Box::new(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    h,
                    Json(json!({
                        "status": "error",
                        "message": "You have reached your ten_secondly_rolling limit.",
                        "errorType": "RATE_LIMIT",
                        "correlationId": "8c5d4a1e-0000-4000-8000-000000000001",
                        "policyName": "TEN_SECONDLY_ROLLING",
                    })),
                )
                    .into_response(),
            ));
        }
        inner.window.push_back(now);
        let remaining = self.per_10_seconds - inner.window.len();
        h.insert(
            "X-HubSpot-RateLimit-Remaining",
            HeaderValue::from(remaining),
        );
        let used = inner.requests.len() + 1;
        h.insert(
            "X-HubSpot-RateLimit-Daily-Remaining",
            HeaderValue::from(650_000 - used.min(650_000)),
        );
        Ok(h)
    }

    fn log(&self, endpoint: &str, status: u16, inputs: usize) {
        self.inner.lock().unwrap().requests.push(Request {
            at: Instant::now(),
            endpoint: endpoint.to_string(),
            status,
            inputs,
        });
    }
}

async fn upsert(
    State(fake): State<FakeHubSpot>,
    Path(object): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let object = match object.as_str() {
        "contacts" => Object::Contacts,
        "deals" => Object::Deals,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let endpoint = format!("{}/batch/upsert", object.as_str());
    let raw = body["inputs"].as_array().cloned().unwrap_or_default();
    let h = match fake.admit(&headers, &endpoint, raw.len()) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let mut inputs = Vec::new();
    for i in &raw {
        let (Some(prop), Some(id)) = (i["idProperty"].as_str(), i["id"].as_str()) else {
            fake.log(&endpoint, 400, raw.len());
            return error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                "Invalid input JSON: idProperty and id are required",
                h,
            );
        };
        let properties = i["properties"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_string)))
                    .collect()
            })
            .unwrap_or_default();
        inputs.push(Input {
            id_property: prop.to_string(),
            id: id.to_string(),
            properties,
        });
    }
    let before: std::collections::BTreeMap<u64, std::collections::BTreeMap<String, String>> =
        fake.with_store(|s| s.contacts.records.clone());
    let result = fake.with_store(|s| {
        s.upsert(object, &inputs).map(|written| {
            written
                .iter()
                .zip(&raw)
                .map(|(w, input)| {
                    let id: u64 = w.id.parse().expect("numeric ids");
                    let record = s.objects(object).records.get(&id).cloned();
                    // HubSpot echoes each input's objectWriteTraceId on its result.
                    (
                        w.clone(),
                        record.unwrap_or_default(),
                        input["objectWriteTraceId"].clone(),
                    )
                })
                .collect::<Vec<_>>()
        })
    });
    // What the app's token changed is reported to its subscription too (changeSource
    // INTEGRATION, sourceId the app), as HubSpot does, after the answer.
    if let (Ok(_), Object::Contacts) = (&result, object) {
        let changes: Vec<(u64, String, String)> = fake.with_store(|s| {
            s.contacts
                .records
                .iter()
                .flat_map(|(id, record)| {
                    let old = before.get(id);
                    record
                        .iter()
                        .filter(move |(k, v)| old.and_then(|o| o.get(*k)) != Some(*v))
                        .map(move |(k, v)| (*id, k.clone(), v.clone()))
                })
                .collect()
        });
        let app = fake
            .inner
            .lock()
            .unwrap()
            .subscription
            .as_ref()
            .map(|s| s.app_id.clone());
        if let Some(app) = app {
            let events = fake.events(&changes, ("INTEGRATION", &app));
            let f = fake.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                f.deliver(events).await;
            });
        }
    }
    match result {
        Ok(written) => {
            fake.log(&endpoint, 200, raw.len());
            let now = chrono::Utc::now().to_rfc3339();
            let results: Vec<Value> = written
                .into_iter()
                .map(|(w, properties, trace)| {
                    json!({
                        "id": w.id,
                        "objectWriteTraceId": trace,
                        "properties": properties,
                        "createdAt": now,
                        "updatedAt": now,
                        "archived": false,
                        "new": w.new,
                    })
                })
                .collect();
            (
                StatusCode::OK,
                h,
                Json(json!({
                    "status": "COMPLETE",
                    "results": results,
                    "startedAt": now,
                    "completedAt": now,
                })),
            )
                .into_response()
        }
        Err(e) => {
            fake.log(&endpoint, e.status, raw.len());
            error(
                StatusCode::from_u16(e.status).unwrap(),
                &e.category,
                &e.message,
                h,
            )
        }
    }
}

async fn associate(
    State(fake): State<FakeHubSpot>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let endpoint = "associations/batch/associate/default";
    let raw = body["inputs"].as_array().cloned().unwrap_or_default();
    let h = match fake.admit(&headers, endpoint, raw.len()) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    if raw.len() > 100 {
        fake.log(endpoint, 400, raw.len());
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Batch input size exceeds the limit of 100",
            h,
        );
    }
    let pairs: Vec<(String, String)> = raw
        .iter()
        .map(|i| {
            (
                i["from"]["id"].as_str().unwrap_or_default().to_string(),
                i["to"]["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let results = fake.with_store(|s| s.associate(&pairs));
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (r, (deal, contact)) in results.into_iter().zip(&pairs) {
        match r {
            Ok(()) => ok.push(json!({
                "fromObjectTypeId": "0-3", "fromObjectId": deal,
                "toObjectTypeId": "0-1", "toObjectId": contact,
                "labels": [],
            })),
            Err(e) => errors.push(json!({
                "status": "error",
                "category": e.category,
                "message": e.message,
                "context": {"fromObjectId": [deal], "toObjectId": [contact]},
            })),
        }
    }
    let status = if errors.is_empty() { 200 } else { 207 };
    fake.log(endpoint, status, raw.len());
    (
        StatusCode::from_u16(status).unwrap(),
        h,
        Json(json!({
            "status": "COMPLETE",
            "results": ok,
            "numErrors": errors.len(),
            "errors": errors,
        })),
    )
        .into_response()
}

/// A store call's answer: `ok` on success, HubSpot's error shape otherwise.
fn answered(
    fake: &FakeHubSpot,
    endpoint: &str,
    h: HeaderMap,
    result: Result<Response, woostream_hubspot::memory::StoreError>,
) -> Response {
    match result {
        Ok(r) => {
            fake.log(endpoint, r.status().as_u16(), 1);
            r
        }
        Err(e) => {
            fake.log(endpoint, e.status, 1);
            error(
                StatusCode::from_u16(e.status).unwrap(),
                &e.category,
                &e.message,
                h,
            )
        }
    }
}

/// `POST /crm/v3/objects/contacts/gdpr-delete`: the contact deleted for good.
async fn gdpr_delete(
    State(fake): State<FakeHubSpot>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let endpoint = "contacts/gdpr-delete";
    let h = match fake.admit(&headers, endpoint, 1) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let id = body["objectId"].as_str().unwrap_or_default().to_string();
    let result = fake.with_store(|s| s.gdpr_delete(&id));
    answered(
        &fake,
        endpoint,
        h.clone(),
        result.map(|()| (StatusCode::NO_CONTENT, h).into_response()),
    )
}

/// `GET /crm/v3/objects/contacts/{id}` (every property, whichever were asked for), by the
/// object id or, with `idProperty`, by that unique property (an email).
async fn read_contact(
    State(fake): State<FakeHubSpot>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let endpoint = "contacts/read";
    let h = match fake.admit(&headers, endpoint, 1) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let by = query
        .get("idProperty")
        .map_or("hs_object_id", String::as_str);
    let found = fake.with_store(|s| {
        s.read_contact(by, &id)
            .ok()
            .map(|(n, record)| (n, record.clone()))
    });
    match found {
        Some((id, properties)) => {
            fake.log(endpoint, 200, 1);
            (
                StatusCode::OK,
                h,
                Json(json!({"id": id, "properties": properties, "archived": false})),
            )
                .into_response()
        }
        None => {
            fake.log(endpoint, 404, 1);
            error(
                StatusCode::NOT_FOUND,
                "OBJECT_NOT_FOUND",
                "Object not found",
                h,
            )
        }
    }
}

/// `PATCH /crm/v3/objects/contacts/{id}`: here only emptying properties (anonymising).
async fn update_contact(
    State(fake): State<FakeHubSpot>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let endpoint = "contacts/update";
    let h = match fake.admit(&headers, endpoint, 1) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let emptied: Vec<String> = body["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.as_str() == Some(""))
        .map(|(k, _)| k.clone())
        .collect();
    let result = fake.with_store(|s| s.blank(&id, &emptied));
    answered(
        &fake,
        endpoint,
        h.clone(),
        result.map(|()| (StatusCode::OK, h, Json(json!({"id": id}))).into_response()),
    )
}

/// `GET /crm/v4/objects/contacts/{id}/associations/deals`.
async fn contact_deals(
    State(fake): State<FakeHubSpot>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let endpoint = "contacts/associations/read";
    let h = match fake.admit(&headers, endpoint, 1) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let result = fake.with_store(|s| s.contact_deals(&id));
    answered(
        &fake,
        endpoint,
        h.clone(),
        result.map(|deals| {
            let results: Vec<Value> = deals
                .iter()
                .map(|d| json!({"toObjectId": d.parse::<u64>().unwrap(), "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 4, "label": null}]}))
                .collect();
            (StatusCode::OK, h, Json(json!({"results": results}))).into_response()
        }),
    )
}

/// `POST /crm/v4/associations/contacts/deals/batch/archive`.
async fn detach(
    State(fake): State<FakeHubSpot>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let endpoint = "associations/batch/archive";
    let h = match fake.admit(&headers, endpoint, 1) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let mut result = Ok(());
    for input in body["inputs"].as_array().into_iter().flatten() {
        let contact = input["from"]["id"].as_str().unwrap_or_default().to_string();
        let deals: Vec<String> = input["to"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .collect();
        result = result.and_then(|()| fake.with_store(|s| s.detach(&contact, &deals)));
    }
    answered(
        &fake,
        endpoint,
        h.clone(),
        result.map(|()| (StatusCode::NO_CONTENT, h).into_response()),
    )
}

fn object_of(path: &str) -> Option<Object> {
    match path {
        "contacts" => Some(Object::Contacts),
        "deals" => Some(Object::Deals),
        _ => None,
    }
}

async fn list_properties(
    State(fake): State<FakeHubSpot>,
    Path(object): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(object) = object_of(&object) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let endpoint = format!("properties/{}", object.as_str());
    let h = match fake.admit(&headers, &endpoint, 0) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let results: Vec<Value> = fake.with_store(|s| {
        s.property_list(object)
            .into_iter()
            .map(|p| json!({"name": p.name, "label": p.name, "type": "string", "hasUniqueValue": p.unique}))
            .collect()
    });
    fake.log(&endpoint, 200, 0);
    (StatusCode::OK, h, Json(json!({ "results": results }))).into_response()
}

async fn create_property(
    State(fake): State<FakeHubSpot>,
    Path(object): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let Some(object) = object_of(&object) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let endpoint = format!("properties/{}", object.as_str());
    let h = match fake.admit(&headers, &endpoint, 1) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let text = |k: &str| body[k].as_str().map(str::to_string);
    let kind = match (body["type"].as_str(), body["fieldType"].as_str()) {
        (Some("string"), Some("text")) => Some(PropertyKind::Text),
        (Some("number"), Some("number")) => Some(PropertyKind::Number),
        (Some("datetime"), Some("date")) => Some(PropertyKind::DateTime),
        _ => None,
    };
    let (Some(name), Some(label), Some(kind), Some(_group)) =
        (text("name"), text("label"), kind, text("groupName"))
    else {
        fake.log(&endpoint, 400, 1);
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON: name, label, groupName and a valid type and fieldType are required",
            h,
        );
    };
    let property = NewProperty {
        name,
        label,
        kind,
        unique: body["hasUniqueValue"].as_bool().unwrap_or(false),
    };
    match fake.with_store(|s| s.create_property(object, &property)) {
        Ok(()) => {
            fake.log(&endpoint, 201, 1);
            (StatusCode::CREATED, h, Json(body)).into_response()
        }
        Err(e) => {
            fake.log(&endpoint, e.status, 1);
            error(
                StatusCode::from_u16(e.status).unwrap(),
                &e.category,
                &e.message,
                h,
            )
        }
    }
}

async fn pipeline(
    State(fake): State<FakeHubSpot>,
    Path(pipeline): Path<String>,
    headers: HeaderMap,
) -> Response {
    let endpoint = "pipelines/deals";
    let h = match fake.admit(&headers, endpoint, 0) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    match fake.with_store(|s| s.stage_list(&pipeline)) {
        Some(stages) => {
            fake.log(endpoint, 200, 0);
            let stages: Vec<Value> = stages
                .iter()
                .enumerate()
                .map(|(i, id)| json!({"id": id, "label": id, "displayOrder": i}))
                .collect();
            let body = json!({"id": pipeline, "label": pipeline, "stages": stages});
            (StatusCode::OK, h, Json(body)).into_response()
        }
        None => {
            fake.log(endpoint, 404, 0);
            error(
                StatusCode::NOT_FOUND,
                "OBJECT_NOT_FOUND",
                &format!("Unable to find pipeline {pipeline}"),
                h,
            )
        }
    }
}
