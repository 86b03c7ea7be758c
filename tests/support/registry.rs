//! A local schema registry speaking the subset of Confluent's REST API woostream uses
//! (register, look up, schema by id), with one global id per distinct schema as a real one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// Subjects → schema ids; identical schema text gets one global id, as a real registry does.
#[derive(Default)]
pub struct Registry {
    pub schemas: Vec<String>,
    pub subjects: HashMap<String, i32>,
    /// Registrations asked for (`POST /subjects/{s}/versions`).
    pub registrations: usize,
}

pub type Shared = Arc<Mutex<Registry>>;

async fn register(
    State(r): State<Shared>,
    Path(subject): Path<String>,
    body: String,
) -> Json<Value> {
    let request: Value = serde_json::from_str(&body).expect("JSON body");
    let schema = request["schema"]
        .as_str()
        .expect("schema string")
        .to_string();
    let mut r = r.lock().unwrap();
    r.registrations += 1;
    let id = match r.schemas.iter().position(|s| *s == schema) {
        Some(i) => i as i32 + 1,
        None => {
            r.schemas.push(schema);
            r.schemas.len() as i32
        }
    };
    r.subjects.insert(subject, id);
    Json(json!({ "id": id }))
}

/// `POST /subjects/{subject}`: whether the schema is registered under the subject (404 if not).
async fn look_up(
    State(r): State<Shared>,
    Path(subject): Path<String>,
    body: String,
) -> Result<Json<Value>, (axum::http::StatusCode, Json<Value>)> {
    let request: Value = serde_json::from_str(&body).expect("JSON body");
    let r = r.lock().unwrap();
    match r.subjects.get(&subject) {
        Some(id) if r.schemas[*id as usize - 1] == request["schema"].as_str().unwrap() => {
            Ok(Json(json!({ "subject": subject, "id": id, "version": 1 })))
        }
        _ => Err((
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({ "error_code": 40403, "message": "Schema not found" })),
        )),
    }
}

async fn by_id(State(r): State<Shared>, Path(id): Path<usize>) -> Json<Value> {
    Json(json!({ "schema": r.lock().unwrap().schemas[id - 1] }))
}

pub async fn start_registry() -> (String, Shared) {
    let state = Shared::default();
    let app = Router::new()
        .route("/subjects/{subject}/versions", post(register))
        .route("/subjects/{subject}", post(look_up))
        .route("/schemas/ids/{id}", get(by_id))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

impl Registry {
    /// Teaches `decoder` every schema registered so far (what a reader asks the registry for).
    pub fn teach(&self, decoder: &woostream_core::contract::codec::Decoder) {
        for (i, text) in self.schemas.iter().enumerate() {
            decoder.learn(i as i32 + 1, apache_avro::Schema::parse_str(text).unwrap());
        }
    }
}
