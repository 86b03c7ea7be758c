//! The simulated shop's webhooks resource (`/wp-json/wc/v3/webhooks`): listed, read, created
//! and updated with WooCommerce's fields, statuses and errors; the secret is never shown back.

// The helpers' error is the HTTP answer itself; boxing it would buy nothing here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{error, list, Shop};

pub(super) async fn list_webhooks(
    State(shop): State<Arc<Shop>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    list(&shop, "webhooks", &query, &headers)
}

pub(super) fn uuid_like() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub(super) async fn get_webhook(
    State(shop): State<Arc<Shop>>,
    Path(id): Path<i64>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/wp-json/wc/v3/webhooks/{id}");
    if let Err(r) = shop.admit("GET", &path, &headers, &query) {
        return r;
    }
    let found = shop
        .data
        .lock()
        .expect("data")
        .objects
        .get("webhooks")
        .and_then(|c| c.get(&id))
        .cloned();
    match found {
        Some(w) => axum::Json(w).into_response(),
        None => invalid_webhook_id(),
    }
}

/// The fields a webhook has, from what was posted; `secret` is write-only.
pub(super) fn webhook_fields(target: &mut Value, posted: &Value) -> Result<(), Response> {
    for field in ["name", "status", "topic", "delivery_url", "secret"] {
        if let Some(v) = posted.get(field) {
            target[field] = v.clone();
        }
    }
    let status = target["status"].as_str().unwrap_or("active");
    if !["active", "paused", "disabled"].contains(&status) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "rest_invalid_param",
            "Invalid parameter(s): status",
        ));
    }
    let topic = target["topic"].as_str().unwrap_or_default().to_string();
    if let Some((resource, event)) = topic.split_once('.') {
        target["resource"] = json!(resource);
        target["event"] = json!(event);
    }
    target["date_modified_gmt"] = json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string());
    Ok(())
}

pub(super) fn invalid_webhook_id() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "woocommerce_rest_webhook_invalid_id",
        "Invalid ID.",
    )
}

pub(super) fn without_secret(mut w: Value) -> Value {
    if let Some(o) = w.as_object_mut() {
        o.remove("secret");
    }
    w
}

pub(super) async fn create_webhook(
    State(shop): State<Arc<Shop>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = "/wp-json/wc/v3/webhooks";
    let posted = match shop.admit_json("POST", path, &headers, &query, &body) {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    let mut data = shop.data.lock().expect("data");
    let webhooks = data.objects.entry("webhooks".into()).or_default();
    let id = webhooks.keys().next_back().map_or(1, |k| k + 1);
    let mut w = json!({"id": id, "status": "active", "api_version": "wp_api_v3",
        "date_created_gmt": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string()});
    if let Err(r) = webhook_fields(&mut w, &posted) {
        return r;
    }
    webhooks.insert(id, w.clone());
    (StatusCode::CREATED, axum::Json(without_secret(w))).into_response()
}

pub(super) async fn update_webhook(
    State(shop): State<Arc<Shop>>,
    Path(id): Path<i64>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/wp-json/wc/v3/webhooks/{id}");
    let posted = match shop.admit_json("PUT", &path, &headers, &query, &body) {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    let mut data = shop.data.lock().expect("data");
    let Some(w) = data
        .objects
        .get_mut("webhooks")
        .and_then(|c| c.get_mut(&id))
    else {
        return invalid_webhook_id();
    };
    if let Err(r) = webhook_fields(w, &posted) {
        return r;
    }
    axum::Json(without_secret(w.clone())).into_response()
}
