//! The shop's WooCommerce REST API (v3): authentication, pagination, and manners — a request
//! rate and a concurrency limit per shop, backoff on 429 and 5xx — because whatever woostream
//! reads must never slow the shop down. Errors name the shop, the endpoint and what to fix.

use std::sync::Arc;
use std::time::Duration;

use governor::Quota;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::Semaphore;
use woostream_core::config::{RestAuth, ShopConfig};
use woostream_core::pace::{self, Limiter};
use woostream_core::retry::{self, Failed, Policy, Refusal, RetryLogic};

/// Transient failures: 8 attempts in all, backing off from one second to a minute.
const REST_RETRY: Policy = Policy::new(Duration::from_secs(1), Duration::from_secs(60)).attempts(8);

/// One page of a collection.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    /// `X-WP-Total`: objects matching the query.
    pub total: Option<u64>,
    /// `X-WP-TotalPages`.
    pub total_pages: Option<u32>,
}

/// A request the shop refused or never answered, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("shop {shop}: {method} {endpoint}: {what}")]
pub struct RestError {
    pub shop: String,
    pub method: String,
    pub endpoint: String,
    pub what: String,
    /// The HTTP status, when the shop answered.
    pub status: Option<u16>,
}

/// What a refusal means for the operator, from its status and WooCommerce's error code.
pub fn explain(status: u16, code: &str, message: &str) -> String {
    let fix = match status {
        401 => "check the consumer key and secret (WooCommerce → Settings → Advanced → REST API); over plain http:// WooCommerce takes only OAuth 1.0a (auth = \"oauth1\", the default there); if they are right, the server may drop the Authorization header: set auth = \"query\"",
        403 => "the key's user lacks the permission: give the key Read (Read/Write to manage webhooks) and a user who can manage WooCommerce",
        404 => "the REST API is not at this URL: check shops.rest.url (…/wp-json/wc/v3/) and that pretty permalinks are on",
        400 => "WooCommerce refused the query",
        _ => "the shop's server failed",
    };
    let detail = [code, message]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(": ");
    if detail.is_empty() {
        format!("HTTP {status}: {fix}")
    } else {
        format!("HTTP {status} ({detail}): {fix}")
    }
}

/// The client for one shop: clone it freely, the limits are shared.
#[derive(Clone)]
pub struct WooRest {
    shop: String,
    base: String,
    key: String,
    secret: String,
    auth: RestAuth,
    per_page: u32,
    http: reqwest::Client,
    limiter: Arc<Limiter>,
    slots: Arc<Semaphore>,
}

impl WooRest {
    /// The client for `shop`, whose `[shops.rest]` must be set and its secrets readable.
    pub fn for_shop(shop: &ShopConfig) -> anyhow::Result<WooRest> {
        let rest = shop.rest.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "shop {}: no [shops.rest] section: the REST API is not configured",
                shop.id
            )
        })?;
        let read = |what: &str, s: &Option<woostream_core::secret::Secret>| {
            s.as_ref()
                .ok_or_else(|| anyhow::anyhow!("shop {}: rest.{what} is not set", shop.id))?
                .resolve()
                .map_err(|e| anyhow::anyhow!("shop {}: rest.{what}: {e}", shop.id))
        };
        let per_second = rest.requests_per_second.max(0.001);
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / per_second))
            .ok_or_else(|| anyhow::anyhow!("shop {}: rest.requests_per_second", shop.id))?;
        let base = rest.base_url(&shop.source);
        Ok(WooRest {
            shop: shop.id.clone(),
            auth: rest.auth.for_url(&base),
            base,
            key: read("consumer_key", &rest.consumer_key)?,
            secret: read("consumer_secret", &rest.consumer_secret)?,
            per_page: rest.per_page,
            http: woostream_core::http::client()
                .timeout(Duration::from_secs(rest.timeout_secs))
                .user_agent(concat!("woostream/", env!("CARGO_PKG_VERSION")))
                .build()?,
            // One request at a time in bursts too: the quota's burst is one.
            limiter: Arc::new(pace::limiter(quota)),
            slots: Arc::new(Semaphore::new(rest.concurrency.max(1))),
        })
    }

    pub fn shop(&self) -> &str {
        &self.shop
    }

    pub fn per_page(&self) -> u32 {
        self.per_page
    }

    /// One page (1-based) of `endpoint` (e.g. `orders`, `products/reviews`) with `query`.
    pub async fn list(
        &self,
        endpoint: &str,
        query: &[(&str, String)],
        page: u32,
    ) -> Result<Page, RestError> {
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("page", page.to_string()));
        q.push(("per_page", self.per_page.to_string()));
        let (headers, body) = self.call(Method::GET, endpoint, &q, None).await?;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let items = match body {
            Value::Array(items) => items,
            other => {
                return Err(self.error(
                    "GET",
                    endpoint,
                    None,
                    format!(
                        "expected a JSON list, got {}",
                        other.to_string().chars().take(80).collect::<String>()
                    ),
                ))
            }
        };
        Ok(Page {
            items,
            total: header("x-wp-total"),
            total_pages: header("x-wp-totalpages").map(|n| n as u32),
        })
    }

    /// Every page of `endpoint` with `query`, in order.
    pub async fn list_all(
        &self,
        endpoint: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, RestError> {
        let mut all = Vec::new();
        for number in 1.. {
            let page = self.list(endpoint, query, number).await?;
            let last = page.items.len() < self.per_page as usize
                || page.total_pages.is_some_and(|n| number >= n);
            all.extend(page.items);
            if last {
                break;
            }
        }
        Ok(all)
    }

    /// `GET`, `POST` or `PUT` of one object.
    pub async fn object(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<&Value>,
    ) -> Result<Value, RestError> {
        Ok(self.call(method, endpoint, &[], body).await?.1)
    }

    /// One request with a query (e.g. `DELETE customers/4` with `force=true`).
    pub async fn request(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, RestError> {
        Ok(self.call(method, endpoint, query, body).await?.1)
    }

    async fn call(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(reqwest::header::HeaderMap, Value), RestError> {
        let url = format!("{}{}", self.base, endpoint.trim_start_matches('/'));
        let logic = RestRetry {
            shop: &self.shop,
            endpoint,
        };
        // A request under way is not cut short by a shutdown (its caller decides).
        let never = tokio_util::sync::CancellationToken::new();
        let answered = retry::drive(REST_RETRY, &never, &logic, |_| async {
            let _slot = self
                .slots
                .acquire()
                .await
                .expect("the semaphore is never closed");
            self.limiter.until_ready().await;
            let mut request = self.http.request(method.clone(), &url).query(query);
            request = match self.auth {
                RestAuth::Basic => request.basic_auth(&self.key, Some(&self.secret)),
                RestAuth::Query => request.query(&[
                    ("consumer_key", self.key.as_str()),
                    ("consumer_secret", self.secret.as_str()),
                ]),
                RestAuth::Oauth1 | RestAuth::Auto => request.query(&super::oauth::parameters(
                    method.as_str(),
                    &url,
                    query,
                    &self.key,
                    &self.secret,
                    chrono::Utc::now().timestamp(),
                    &uuid::Uuid::new_v4().simple().to_string(),
                )),
            };
            if let Some(b) = body {
                request = request.json(b);
            }
            let refusal = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let bytes = response.bytes().await.unwrap_or_default();
                    if status.is_success() {
                        let value = serde_json::from_slice(&bytes).map_err(|e| {
                            RestAttempt::Fatal(self.error(
                                method.as_str(),
                                endpoint,
                                Some(status.as_u16()),
                                format!("the answer is not JSON ({e})"),
                            ))
                        })?;
                        return Ok((headers, value));
                    }
                    let error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    let code = error["code"].as_str().unwrap_or_default().to_string();
                    let message = error["message"].as_str().unwrap_or_default().to_string();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        retry::Refusal::RateLimited(retry::retry_after(
                            headers
                                .get(reqwest::header::RETRY_AFTER)
                                .and_then(|v| v.to_str().ok()),
                        ))
                    } else if status.is_server_error() {
                        retry::Refusal::Retry(explain(status.as_u16(), &code, &message))
                    } else {
                        return Err(RestAttempt::Fatal(self.error(
                            method.as_str(),
                            endpoint,
                            Some(status.as_u16()),
                            explain(status.as_u16(), &code, &message),
                        )));
                    }
                }
                // An untrusted certificate stays untrusted: said at once, never retried. The
                // error's text leaves the URL out (with auth = "query" it holds the secret).
                Err(e) => match woostream_core::http::certificate_problem(&e) {
                    Some(problem) => {
                        return Err(RestAttempt::Fatal(self.error(
                            method.as_str(),
                            endpoint,
                            None,
                            problem,
                        )));
                    }
                    None => retry::Refusal::Retry(format!("no answer: {}", e.without_url())),
                },
            };
            Err(RestAttempt::Refused(refusal))
        })
        .await;
        match answered {
            Ok((answer, _)) => Ok(answer),
            Err(Failed::Rejected {
                error: RestAttempt::Fatal(e),
                ..
            }) => Err(e),
            Err(Failed::GaveUp { last, attempts }) => Err(self.error(
                method.as_str(),
                endpoint,
                None,
                format!("gave up after {attempts} attempts: {last}"),
            )),
            Err(Failed::Rejected { error, .. }) => {
                Err(self.error(method.as_str(), endpoint, None, error.to_string()))
            }
            Err(Failed::Stopped) => {
                Err(self.error(method.as_str(), endpoint, None, "stopping".into()))
            }
        }
    }

    fn error(&self, method: &str, endpoint: &str, status: Option<u16>, what: String) -> RestError {
        RestError {
            shop: self.shop.clone(),
            method: method.to_string(),
            endpoint: endpoint.to_string(),
            what,
            status,
        }
    }
}

/// One attempt's failure: one that no retry can cure (an untrusted certificate, a 4xx), or
/// an answer to classify.
enum RestAttempt {
    Fatal(RestError),
    Refused(Refusal),
}

impl std::fmt::Display for RestAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestAttempt::Fatal(e) => write!(f, "{e}"),
            RestAttempt::Refused(r) => write!(f, "{r}"),
        }
    }
}

/// What the shop's answers mean for another attempt.
struct RestRetry<'a> {
    shop: &'a str,
    endpoint: &'a str,
}

impl RetryLogic<RestAttempt> for RestRetry<'_> {
    fn classify(&self, attempt: &RestAttempt) -> Refusal {
        match attempt {
            RestAttempt::Fatal(e) => Refusal::Rejected(e.to_string()),
            RestAttempt::Refused(r) => r.clone(),
        }
    }

    fn before_wait(&self, _: &RestAttempt, refusal: &Refusal, wait: Duration) -> Duration {
        tracing::warn!(
            shop = %self.shop,
            endpoint = self.endpoint,
            retry_in_ms = wait.as_millis() as u64,
            refusal = ?refusal,
            "The shop's REST API asked to wait or failed; trying again."
        );
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::explain;

    #[test]
    fn each_refusal_says_what_to_fix() {
        assert!(explain(
            401,
            "woocommerce_rest_cannot_view",
            "Sorry, you cannot list resources."
        )
        .contains("consumer key and secret"));
        assert!(explain(404, "rest_no_route", "No route was found").contains("shops.rest.url"));
        assert!(explain(403, "", "").contains("permission"));
        assert!(
            explain(400, "rest_invalid_param", "Invalid parameter(s): per_page")
                .contains("rest_invalid_param: Invalid parameter(s): per_page")
        );
    }
}
