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
    #[error("schemas/{contract}.avsc of this release is not registered under subject {subject}, and schema_registry.auto_register is false: register it there first (compatibility FULL_TRANSITIVE)")]
    NotRegistered { subject: String, contract: String },
}

#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    auth: Option<(String, String)>,
    /// Register a schema the subject lacks (`schema_registry.auto_register`); otherwise only
    /// look it up, and refuse to start without it.
    auto_register: bool,
    registered: Arc<Mutex<HashMap<(String, &'static str), i32>>>,
}

/// `url` without its user and password, and those (percent-decoded) if it had them.
fn without_credentials(url: &str) -> (String, Option<(String, String)>) {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return (url.to_string(), None);
    };
    if parsed.username().is_empty() && parsed.password().is_none() {
        return (url.to_string(), None);
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let credentials = (
        decode(parsed.username()),
        decode(parsed.password().unwrap_or_default()),
    );
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    (parsed.to_string(), Some(credentials))
}

impl std::fmt::Debug for RegistryClient {
    // The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.base)
            .field("username", &self.auth.as_ref().map(|(u, _)| u))
            .field("auto_register", &self.auto_register)
            .finish_non_exhaustive()
    }
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
    /// The client `[schema_registry]` describes.
    pub fn from_config(config: &crate::config::SchemaRegistryConfig) -> RegistryClient {
        RegistryClient {
            auto_register: config.auto_register,
            ..RegistryClient::new(
                &config.url,
                config.username.clone(),
                config.resolved_password(),
            )
        }
    }

    /// A client of the registry at `base`. A user and password written into the URL are taken
    /// out of it (and used when `username` is not set), so no error or log shows them.
    pub fn new(base: &str, username: Option<String>, password: Option<String>) -> RegistryClient {
        let (base, in_url) = without_credentials(base);
        RegistryClient {
            base: base.trim_end_matches('/').to_string(),
            http: crate::http::client()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client with default TLS"),
            auth: username
                .map(|u| (u, password.unwrap_or_default()))
                .or(in_url),
            auto_register: true,
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

    /// Registers `schema` under `subject` (idempotent in the registry) and returns its global id;
    /// without auto-registration, only looks it up (a registry where a pipeline or an operator
    /// registers schemas, and writers may not). Ids are cached per subject and schema, so
    /// start-up asks once.
    pub async fn register(
        &self,
        subject: &str,
        schema: &'static str,
    ) -> Result<i32, RegistryError> {
        let cache_key = (subject.to_string(), schema);
        if let Some(id) = self.registered.lock().expect("poisoned").get(&cache_key) {
            return Ok(*id);
        }
        // POST /subjects/{s}/versions registers; POST /subjects/{s} only answers whether (and as
        // which id) the schema is registered under the subject.
        let url = if self.auto_register {
            format!("{}/subjects/{}/versions", self.base, subject)
        } else {
            format!("{}/subjects/{}", self.base, subject)
        };
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" });
        let req = self
            .request(reqwest::Method::POST, &url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body.to_string());
        let answer: IdAnswer = match self.call(req, &url).await {
            Err(RegistryError::Status { status: 404, .. }) if !self.auto_register => {
                let contract = crate::contract::codec::SCHEMA_FILES
                    .iter()
                    .find(|(_, text)| *text == schema)
                    .map_or("?", |(name, _)| name);
                return Err(RegistryError::NotRegistered {
                    subject: subject.to_string(),
                    contract: contract.to_string(),
                });
            }
            other => other?,
        };
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
