//! Shared HTTP plumbing for the Azure REST adapters (ARM, Microsoft Graph, Log Analytics,
//! Service Bus): one request with an Entra bearer token, retried on throttling and server errors.
//!
//! Requests go through an `azure_core` [`Pipeline`] — the same transport-retry layer as the blob
//! SDK clients (see [`super::retry`]), with [`BearerPolicy`] in place of the SDK's bearer-token
//! policy, which insists on `https` (the tests replay the official response bodies from a
//! plain-HTTP server on 127.0.0.1). Transport is `azure_core`'s (reqwest 0.13 with rustls — our
//! own reqwest 0.12 is built without TLS), tokens come from any `azure_identity` 1.x credential,
//! so production traffic is `https` with the SDK's TLS stack and token cache.
//!
//! Retries: the pipeline's — 408, 429, 500, 502, 503, 504 and dropped connections, at most
//! `RetryConfig::max_retries` times (one request is sent at most
//! [`super::retry::TRANSPORT_ATTEMPTS`] times by default) and within `max_total`, waiting at
//! least what the service asked for (`Retry-After`, `retry-after-ms`, `x-ms-retry-after-ms`).
//! When the budget is spent the last response is returned and the caller classifies it as
//! transient, so the message is redelivered later instead of the function blocking for minutes.
//! A 429 is handled first by the client's shared [`super::throttle_gate::ThrottleGate`]: every
//! request of the client pauses for the `Retry-After` the service gave, and the refused request
//! is sent again after it (within `max_total`), without spending the attempts above.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{
    policies::{Policy, PolicyResult},
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, Url,
};
use bytes::Bytes;
use serde_json::Value;

use super::retry::{parse_retry_after, RetryConfig};
use super::throttle_gate::ThrottleGate;

/// A collected response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Reply {
    /// A header by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Result<Value, RestError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            RestError::Other(format!(
                "unexpected response body (HTTP {}): {e}",
                self.status
            ))
        })
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The service's own explanation: ARM/Graph `{"error":{"code","message"}}`, else the body text.
    pub fn message(&self) -> String {
        if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
            let e = v.get("error").unwrap_or(&v);
            let code = e.get("code").and_then(Value::as_str).unwrap_or_default();
            let msg = e.get("message").and_then(Value::as_str).unwrap_or_default();
            if !code.is_empty() || !msg.is_empty() {
                return format!("HTTP {} {code}: {msg}", self.status);
            }
        }
        let text = String::from_utf8_lossy(&self.body);
        let text: String = text.chars().take(300).collect();
        format!("HTTP {} {text}", self.status)
    }

    /// The error a caller reports when it has no better mapping for this status.
    pub fn error(&self) -> RestError {
        if is_retryable(self.status) {
            RestError::Transient(self.message())
        } else {
            RestError::Other(self.message())
        }
    }

    /// What the service asked us to wait before the next request, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        for h in ["retry-after-ms", "x-ms-retry-after-ms"] {
            if let Some(ms) = self.header(h).and_then(|v| v.trim().parse::<u64>().ok()) {
                return Some(Duration::from_millis(ms));
            }
        }
        self.header("retry-after")
            .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc()))
    }
}

pub(crate) fn is_retryable(status: u16) -> bool {
    status == 408 || status == 429 || (status >= 500 && status != 501 && status != 505)
}

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("transient: {0}")]
    Transient(String),
    #[error("{0}")]
    Other(String),
}

impl RestError {
    pub fn is_transient(&self) -> bool {
        matches!(self, RestError::Transient(_))
    }
}

/// A token-carrying HTTP client for one audience (scope).
#[derive(Clone)]
pub struct RestClient {
    pipeline: Pipeline,
    credential: Arc<dyn TokenCredential>,
    scope: String,
    /// How a URL appears in logs and errors (the Files adapter hides paths under `Users/`).
    show_url: fn(&Url) -> String,
    /// 429 pauses shared by every request of this client and its clones (see
    /// [`super::throttle_gate`]).
    gate: Arc<ThrottleGate>,
}

fn url_as_is(url: &Url) -> String {
    url.to_string()
}

impl RestClient {
    pub fn new(credential: Arc<dyn TokenCredential>, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        let retry = RetryConfig::default();
        let gate = ThrottleGate::new(retry.max_total);
        Self {
            pipeline: pipeline(&credential, &scope, &retry, &gate),
            credential,
            scope,
            show_url: url_as_is,
            gate,
        }
    }

    /// Show URLs through `show` in logs and errors (for paths that are personal data).
    pub(crate) fn with_url_display(mut self, show: fn(&Url) -> String) -> Self {
        self.show_url = show;
        self
    }

    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        // A client that must send at most once (Log Analytics purges) never re-sends a 429.
        let max_wait = if retry.max_retries == 0 {
            Duration::ZERO
        } else {
            retry.max_total
        };
        self.gate = ThrottleGate::new(max_wait);
        self.pipeline = pipeline(&self.credential, &self.scope, &retry, &self.gate);
        self
    }

    /// 429 answers this client (and its clones) waited out so far.
    pub fn throttled(&self) -> u64 {
        self.gate.throttled()
    }

    /// Send one request, retrying throttling and server errors (in the pipeline). Non-2xx
    /// statuses are returned as replies (the caller knows what 404 or 409 means for its
    /// operation).
    pub async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<Bytes>,
        headers: &[(&str, String)],
    ) -> Result<Reply, RestError> {
        let mut req = Request::new(url.clone(), method);
        req.insert_header("accept", "application/json");
        for (k, v) in headers {
            req.insert_header(k.to_ascii_lowercase(), v.clone());
        }
        if let Some(b) = &body {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req.insert_header("content-type", "application/json");
            }
            req.set_body(b.clone());
        }
        let options = PipelineSendOptions {
            // Statuses are the caller's to interpret.
            skip_checks: true,
            ..Default::default()
        };
        let raw = self
            .pipeline
            .send(&Context::new(), &mut req, Some(options))
            .await
            .map_err(|e| {
                let text = crate::logging::redact(&format!(
                    "{method} {}: {}",
                    (self.show_url)(url),
                    causes(&e)
                ));
                match e.kind() {
                    // The pipeline already retried these up to its budget.
                    ErrorKind::Io | ErrorKind::Connection => RestError::Transient(text),
                    _ => RestError::Other(text),
                }
            })?;
        let (status, hdrs, body) = raw.deconstruct();
        Ok(Reply {
            status: u16::from(status),
            headers: hdrs
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_str().to_string()))
                .collect(),
            body: Bytes::copy_from_slice(body.as_ref()),
        })
    }

    pub async fn get(&self, url: &Url) -> Result<Reply, RestError> {
        self.send(Method::Get, url, None, &[]).await
    }
}

/// The transport-retry pipeline of one [`RestClient`].
fn pipeline(
    credential: &Arc<dyn TokenCredential>,
    scope: &str,
    retry: &RetryConfig,
    gate: &Arc<ThrottleGate>,
) -> Pipeline {
    let options = ClientOptions {
        retry: retry.to_options(),
        ..Default::default()
    };
    let bearer: Arc<dyn Policy> = Arc::new(BearerPolicy {
        credential: credential.clone(),
        scope: scope.to_string(),
    });
    Pipeline::new(
        Some(env!("CARGO_PKG_NAME")),
        Some(env!("CARGO_PKG_VERSION")),
        options,
        Vec::new(),
        // Per try, inside the retry policy: a 429 pauses every request of this client.
        vec![gate.clone() as Arc<dyn Policy>, bearer],
        None,
    )
}

/// Adds `Authorization: Bearer` on every try (so a retry after a token expired gets a fresh
/// one). Unlike the SDK's bearer-token policy it allows `http`, for the loopback test servers;
/// tokens are only sent to the configured origin (callers check [`same_origin`]).
#[derive(Debug)]
struct BearerPolicy {
    credential: Arc<dyn TokenCredential>,
    scope: String,
}

#[async_trait::async_trait]
impl Policy for BearerPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        // The credential caches tokens and refreshes them before expiry.
        let token = self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| {
                azure_core::Error::with_message(
                    ErrorKind::Credential,
                    format!("no token for {}: {e}", self.scope),
                )
            })?;
        request.insert_header("authorization", format!("Bearer {}", token.token.secret()));
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// An error with its causes (the pipeline wraps the transport's error in context).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `base` + `path` (an ARM id or a path starting with '/'), keeping any path prefix of `base`.
pub fn join(base: &Url, path: &str) -> Result<Url, RestError> {
    let b = base.as_str().trim_end_matches('/');
    let p = path.trim_start_matches('/');
    Url::parse(&format!("{b}/{p}")).map_err(|e| RestError::Other(format!("bad url {b}/{p}: {e}")))
}

/// Whether `candidate` is on the same scheme, host and port as `base`: tokens are only ever
/// sent to the configured service, never to a host named in a response (nextLink, Location).
pub(crate) fn same_origin(base: &Url, candidate: &Url) -> bool {
    base.scheme() == candidate.scheme()
        && base.host_str().map(str::to_ascii_lowercase)
            == candidate.host_str().map(str::to_ascii_lowercase)
        && base.port_or_known_default() == candidate.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&str, &str)]) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Bytes::from_static(
                br#"{"error":{"code":"Conflict","message":"job is running"}}"#,
            ),
        }
    }

    #[test]
    fn retry_after_variants() {
        assert_eq!(
            reply(429, &[("Retry-After", "2")]).retry_after(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            reply(429, &[("x-ms-retry-after-ms", "150"), ("Retry-After", "2")]).retry_after(),
            Some(Duration::from_millis(150))
        );
        assert_eq!(reply(503, &[]).retry_after(), None);
    }

    #[test]
    fn classification_and_message() {
        assert!(reply(429, &[]).error().is_transient());
        assert!(reply(503, &[]).error().is_transient());
        assert!(!reply(409, &[]).error().is_transient());
        assert!(!reply(501, &[]).error().is_transient());
        assert_eq!(
            reply(409, &[]).message(),
            "HTTP 409 Conflict: job is running"
        );
    }

    #[test]
    fn origin_check() {
        let base = Url::parse("https://management.azure.com").unwrap();
        assert!(same_origin(
            &base,
            &Url::parse("https://MANAGEMENT.azure.com:443/x?y").unwrap()
        ));
        assert!(!same_origin(
            &base,
            &Url::parse("https://evil.example/x").unwrap()
        ));
        assert!(!same_origin(
            &base,
            &Url::parse("http://management.azure.com/x").unwrap()
        ));
        assert_eq!(
            join(&base, "/subscriptions/s").unwrap().as_str(),
            "https://management.azure.com/subscriptions/s"
        );
    }
}
