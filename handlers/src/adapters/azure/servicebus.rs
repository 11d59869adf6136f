//! Azure Service Bus sender behind the [`MessageBus`] port, over the documented REST send API
//! (`POST https://{namespace}.servicebus.windows.net/{queue}/messages`, `201 Created` = sent) with
//! an Entra token for `https://servicebus.azure.net/.default` (role: Azure Service Bus Data
//! Sender). Why this and not an SDK: see `docs/servicebus-client.md`.
//!
//! The Functions output binding cannot set broker properties from a custom handler; here they go
//! in the `BrokerProperties` header: `MessageId` (duplicate detection drops redeliveries of the
//! same deterministic id), `SessionId`, `CorrelationId`, `ScheduledEnqueueTimeUtc` (RFC 1123, as
//! the REST reference shows). Application properties are custom headers whose values are JSON
//! (strings quoted), as the REST API expects.
//!
//! The REST API answers 201 for a message dropped by duplicate detection too, so every accepted
//! send is reported as `Enqueued`; nothing in the pipeline depends on telling them apart.

use async_trait::async_trait;
use azure_core::http::{Method, Url};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::rest::{join, RestClient, RestError};
use crate::ports::bus::{BusError, MessageBus, OutMessage, SendOutcome};

pub const SERVICEBUS_SCOPE: &str = "https://servicebus.azure.net/.default";

pub struct ServiceBusSender {
    rest: RestClient,
    /// `https://{namespace}.servicebus.windows.net`.
    endpoint: Url,
}

fn map(e: RestError) -> BusError {
    match e {
        RestError::Transient(m) => BusError::Transient(m),
        RestError::Other(m) => BusError::Other(m),
    }
}

/// Queue names: 1-260 of letters, digits, `.`, `-`, `_` (no path tricks in the URL).
fn valid_queue(q: &str) -> bool {
    !q.is_empty()
        && q.len() <= 260
        && q.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// An HTTP header name (RFC 9110 token) that is not one the API reserves.
fn valid_property_name(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "authorization" | "content-type" | "content-length" | "brokerproperties" | "host"
        )
}

impl ServiceBusSender {
    /// `namespace` is a bare name (`contoso-dsr`), a host, or a full URL (tests: `http://127.0.0.1:port`).
    pub fn new(rest: RestClient, namespace: &str) -> Result<Self, BusError> {
        let endpoint = if namespace.contains("://") {
            Url::parse(namespace)
        } else if namespace.contains('.') {
            Url::parse(&format!("https://{namespace}"))
        } else {
            Url::parse(&format!("https://{namespace}.servicebus.windows.net"))
        }
        .map_err(|e| BusError::Other(format!("bad Service Bus namespace {namespace:?}: {e}")))?;
        Ok(Self { rest, endpoint })
    }

    /// The `BrokerProperties` header value.
    pub fn broker_properties(m: &OutMessage) -> Result<String, BusError> {
        let mut p = Map::new();
        p.insert("MessageId".into(), Value::String(m.message_id.clone()));
        if let Some(s) = &m.session_id {
            p.insert("SessionId".into(), Value::String(s.clone()));
        }
        if let Some(c) = &m.correlation_id {
            p.insert("CorrelationId".into(), Value::String(c.clone()));
        }
        if let Some(at) = m.scheduled_enqueue_time {
            let at = at
                .to_offset(time::UtcOffset::UTC)
                .format(&time::format_description::well_known::Rfc2822)
                .map_err(|e| BusError::Invalid(format!("scheduled time: {e}")))?;
            // RFC 2822 prints "+0000"; the REST API's examples use RFC 1123 "GMT".
            p.insert(
                "ScheduledEnqueueTimeUtc".into(),
                Value::String(at.replace(" +0000", " GMT")),
            );
        }
        Ok(Value::Object(p).to_string())
    }
}

#[async_trait]
impl MessageBus for ServiceBusSender {
    async fn send(&self, message: OutMessage) -> Result<SendOutcome, BusError> {
        if !valid_queue(&message.queue) {
            return Err(BusError::Invalid(format!(
                "invalid queue name {:?}",
                message.queue
            )));
        }
        if message.message_id.is_empty() || message.message_id.len() > 128 {
            return Err(BusError::Invalid(
                "MessageId must be 1-128 characters".into(),
            ));
        }
        let url = join(&self.endpoint, &format!("{}/messages", message.queue)).map_err(map)?;
        let mut headers = vec![
            ("BrokerProperties", Self::broker_properties(&message)?),
            ("Content-Type", message.content_type.clone()),
        ];
        for (k, v) in &message.application_properties {
            if !valid_property_name(k) {
                return Err(BusError::Invalid(format!(
                    "application property {k:?} cannot be a header"
                )));
            }
            headers.push((k.as_str(), v.to_string()));
        }
        let r = self
            .rest
            .send(
                Method::Post,
                &url,
                Some(Bytes::from(message.body)),
                &headers,
            )
            .await
            .map_err(map)?;
        match r.status {
            201 | 200 => Ok(SendOutcome::Enqueued),
            _ => Err(map(r.error())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_properties_carry_ids_and_schedule() {
        let m = OutMessage::json("dsr-slice-jobs", "req-1/jobs", &serde_json::json!({}))
            .correlated("req-1")
            .scheduled_at(time::macros::datetime!(1994-11-06 08:49:37 UTC));
        let mut m = m;
        m.session_id = Some("s1".into());
        let v: Value =
            serde_json::from_str(&ServiceBusSender::broker_properties(&m).unwrap()).unwrap();
        assert_eq!(v["MessageId"], "req-1/jobs");
        assert_eq!(v["SessionId"], "s1");
        assert_eq!(v["CorrelationId"], "req-1");
        assert_eq!(
            v["ScheduledEnqueueTimeUtc"],
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
    }

    #[test]
    fn names_are_validated() {
        assert!(valid_queue("dsr-intake"));
        assert!(!valid_queue("../x"));
        assert!(!valid_queue("a/b"));
        assert!(valid_property_name("DsrKind"));
        assert!(!valid_property_name("BrokerProperties"));
        assert!(!valid_property_name("a b"));
    }

    #[test]
    fn namespace_forms() {
        let rest = || RestClient::new(std::sync::Arc::new(NoCredential), SERVICEBUS_SCOPE);
        let s = ServiceBusSender::new(rest(), "contoso").unwrap();
        assert_eq!(
            s.endpoint.as_str(),
            "https://contoso.servicebus.windows.net/"
        );
        let s = ServiceBusSender::new(rest(), "http://127.0.0.1:1234").unwrap();
        assert_eq!(s.endpoint.as_str(), "http://127.0.0.1:1234/");
    }

    #[derive(Debug)]
    struct NoCredential;
    #[async_trait]
    impl azure_core::credentials::TokenCredential for NoCredential {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "unit tests do not authenticate",
            ))
        }
    }
}
