//! A small Confluent Schema Registry client: register a subject's schema, read a schema by id.
//! Works with Confluent, Karapace, Redpanda and Apicurio's Confluent-compatible API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

#[derive(Clone, Debug)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    auth: Option<(String, String)>,
    registered: Arc<Mutex<HashMap<(String, &'static str), i32>>>,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: i32,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
}

impl RegistryClient {
    pub fn new(base: &str, username: Option<String>, password: Option<String>) -> RegistryClient {
        RegistryClient {
            base: base.trim_end_matches('/').to_string(),
            http: crate::http::client()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client with default TLS"),
            auth: username.map(|u| (u, password.unwrap_or_default())),
            registered: Arc::default(),
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        match &self.auth {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, RegistryError> {
        let http = |source| RegistryError::Http {
            url: url.to_string(),
            source,
        };
        let resp = req.send().await.map_err(http)?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(RegistryError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: body.chars().take(500).collect(),
            });
        }
        resp.json().await.map_err(http)
    }

    /// Registers `schema` under `subject` (idempotent in the registry) and returns its global id.
    /// Ids are cached per subject and schema, so start-up asks once.
    pub async fn register(
        &self,
        subject: &str,
        schema: &'static str,
    ) -> Result<i32, RegistryError> {
        let cache_key = (subject.to_string(), schema);
        if let Some(id) = self.registered.lock().expect("poisoned").get(&cache_key) {
            return Ok(*id);
        }
        let url = format!("{}/subjects/{}/versions", self.base, subject);
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" });
        let req = self
            .request(reqwest::Method::POST, &url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body.to_string());
        let answer: IdAnswer = self.call(req, &url).await?;
        self.registered
            .lock()
            .expect("poisoned")
            .insert(cache_key, answer.id);
        Ok(answer.id)
    }

    pub async fn schema_by_id(&self, id: i32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{}", self.base, id);
        let req = self.request(reqwest::Method::GET, &url);
        let answer: SchemaAnswer = self.call(req, &url).await?;
        Ok(answer.schema)
    }
}
