//! Service Bus stand-in: the REST "Send Message" API as `ServiceBusSender` uses it
//! (`POST /{queue}/messages`, Microsoft Learn `rest/api/servicebus/send-message-to-queue`), with
//! every accepted message put into a [`LocalQueue`] — the SQLite queue the local Functions-host
//! stand-in (`runtime::dispatcher::Dispatcher`) delivers from — so the handler's own messages
//! come back to it over HTTP.
//!
//! The request is decoded back into the [`OutMessage`] it came from: `BrokerProperties` (JSON:
//! `MessageId`, `SessionId`, `CorrelationId`, `ScheduledEnqueueTimeUtc` in RFC 1123; other
//! documented broker properties are accepted and ignored), the body, `Content-Type`, and every
//! other non-protocol header as an application property whose value is JSON (a quoted string,
//! a number, a boolean), as the REST API's message-properties mapping describes.
//!
//! Answers: 201 Created with an empty body (also for a duplicate MessageId, as the service does);
//! 400 for a malformed `BrokerProperties`; 401 for a token whose audience is not
//! `https://servicebus.azure.net`; 404 for a queue that does not exist; injected throttling as
//! 503 with the documented "entity is being throttled. Error code : 50009" text. Error bodies use
//! Service Bus's XML shape `<Error><Code>..</Code><Detail>..</Detail></Error>`.
//!
//! Limitation: hyper lower-cases header names, so application property names arrive
//! lower-cased (`DsrKind` is recorded as `dsrkind`). Nothing in the product sets application
//! properties today.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use azureml_dsr::adapters::local::sqlite_queue::LocalQueue;
use azureml_dsr::ports::bus::{OutMessage, SendOutcome};
use serde_json::Value;
use time::OffsetDateTime;

use super::identity::{check_bearer, TokenProblem};
use super::server::{
    header_pairs, now_naive, query_pairs, request_id, text_reply, BackgroundServer, Faults, Log,
    Seen,
};

pub const SERVICEBUS_AUDIENCE: &str = "https://servicebus.azure.net";

/// Headers that are part of the protocol, never application properties.
const PROTOCOL_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "content-length",
    "host",
    "brokerproperties",
    "accept",
    "accept-encoding",
    "user-agent",
    "connection",
    "transfer-encoding",
    "te",
    "expect",
    "x-ms-retrypolicy",
    "x-ms-client-request-id",
    "traceparent",
];

/// One message the stand-in accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub message: OutMessage,
    /// Whether the queue dropped it as a duplicate MessageId (the REST answer is 201 either way).
    pub duplicate: bool,
    /// The raw `BrokerProperties` header.
    pub broker_properties: String,
}

struct SbState {
    namespace: String,
    queue: LocalQueue,
    queues: Mutex<BTreeSet<String>>,
    throttle: Faults,
    accepted: Mutex<Vec<Accepted>>,
    log: Log,
}

/// A running Service Bus namespace stand-in.
pub struct ServiceBusStandIn {
    server: BackgroundServer,
    state: Arc<SbState>,
}

impl ServiceBusStandIn {
    /// A namespace holding `queues`, delivering into `queue`.
    pub fn start(queue: LocalQueue, queues: &[&str]) -> ServiceBusStandIn {
        let state = Arc::new(SbState {
            namespace: "dsr-twin.servicebus.windows.net".into(),
            queue,
            queues: Mutex::new(queues.iter().map(|q| q.to_string()).collect()),
            throttle: Faults::default(),
            accepted: Mutex::new(Vec::new()),
            log: Log::default(),
        });
        let app = axum::Router::new()
            .route("/{queue}/messages", axum::routing::post(send))
            .fallback(not_supported)
            .with_state(state.clone());
        ServiceBusStandIn {
            server: BackgroundServer::start("service bus", app),
            state,
        }
    }

    /// The namespace URL to configure (`http://127.0.0.1:<port>`).
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    /// Answer the next `n` sends with the documented throttling fault (503, error 50009).
    pub fn throttle_next(&self, n: u32) {
        self.state.throttle.set(n);
    }

    pub fn add_queue(&self, name: &str) {
        self.state
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
    }

    /// Messages accepted (201), in order.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.state
            .accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every request seen, with the status answered.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.log.all()
    }

    pub fn queue(&self) -> &LocalQueue {
        &self.state.queue
    }
}

fn sb_error(status: u16, detail: &str) -> Response {
    let tracking = request_id();
    let detail = format!(
        "{detail} TrackingId:{tracking}_G1, SystemTracker:gateway1, Timestamp:{}",
        now_naive()
    );
    let body = format!(
        "<Error><Code>{status}</Code><Detail>{}</Detail></Error>",
        xml_escape(&detail)
    );
    text_reply(status, "application/xml; charset=utf-8", body)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn not_supported(method: Method, uri: Uri) -> Response {
    let _ = (method, uri);
    sb_error(
        400,
        "The request is not supported by this stand-in (only Send Message: POST /{queue}/messages).",
    )
}

/// RFC 1123 (`Sun, 06 Nov 1994 08:49:37 GMT`), as the REST reference writes times.
fn parse_rfc1123(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let s = s
        .strip_suffix(" GMT")
        .or_else(|| s.strip_suffix(" UTC"))
        .map(|x| format!("{x} +0000"))
        .unwrap_or_else(|| s.to_string());
    OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc2822).ok()
}

/// The parts of a request that make the message, or the 400 detail.
fn decode(queue: &str, headers: &HeaderMap, body: &[u8]) -> Result<(OutMessage, String), String> {
    let raw = headers
        .get("brokerproperties")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| "{}".into());
    let props: serde_json::Map<String, Value> = serde_json::from_str(&raw)
        .map_err(|e| format!("The BrokerProperties header is not a JSON object: {e}."))?;
    let string_prop = |k: &str| -> Result<Option<String>, String> {
        match props.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "BrokerProperties.{k} must be a string, found {other}."
            )),
        }
    };
    let message_id = string_prop("MessageId")?
        // The service assigns a MessageId when none is given.
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    if message_id.len() > 128 {
        return Err("BrokerProperties.MessageId is longer than 128 characters.".into());
    }
    let scheduled = match string_prop("ScheduledEnqueueTimeUtc")? {
        None => None,
        Some(s) => Some(parse_rfc1123(&s).ok_or_else(|| {
            format!("BrokerProperties.ScheduledEnqueueTimeUtc '{s}' is not an RFC 1123 date.")
        })?),
    };
    let mut application_properties = BTreeMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if PROTOCOL_HEADERS.contains(&n) {
            continue;
        }
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        // Values are JSON (strings quoted); a bare token is kept as the string it is.
        let v = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
        application_properties.insert(n.to_string(), v);
    }
    let message = OutMessage {
        queue: queue.to_string(),
        message_id,
        session_id: string_prop("SessionId")?,
        correlation_id: string_prop("CorrelationId")?,
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string(),
        body: body.to_vec(),
        scheduled_enqueue_time: scheduled,
        application_properties,
    };
    Ok((message, raw))
}

async fn send(
    State(st): State<Arc<SbState>>,
    Path(queue): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let resp = accept(&st, &queue, &headers, &body).await;
    st.log.push(Seen {
        method: "POST".into(),
        path: uri.path().to_string(),
        query: query_pairs(uri.query()),
        headers: header_pairs(&headers),
        body: body.to_vec(),
        status: resp.status().as_u16(),
    });
    resp
}

async fn accept(st: &Arc<SbState>, queue: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    match check_bearer(headers, &[SERVICEBUS_AUDIENCE]) {
        Ok(_) => {}
        Err(TokenProblem::Missing) => {
            return sb_error(401, "MissingToken: The authorization header was not found.")
        }
        Err(TokenProblem::Invalid(why)) => return sb_error(401, &format!("InvalidToken: {why}.")),
        Err(TokenProblem::WrongAudience(aud)) => {
            return sb_error(
                401,
                &format!(
                    "InvalidAudience: The token audience '{aud}' is not valid for this namespace."
                ),
            )
        }
    }
    let known = st
        .queues
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(queue);
    if !known {
        return sb_error(
            404,
            &format!(
                "The messaging entity 'sb://{}/{queue}' could not be found. To know more visit https://aka.ms/sbResourceMgrExceptions.",
                st.namespace
            ),
        );
    }
    if st.throttle.take() {
        return sb_error(
            503,
            "The request was terminated because the entity is being throttled. Error code : 50009. Please wait 2 seconds and try again.",
        );
    }
    let (message, raw) = match decode(queue, headers, body) {
        Ok(m) => m,
        Err(detail) => return sb_error(400, &detail),
    };
    let q = st.queue.clone();
    let m = message.clone();
    let outcome = tokio::task::spawn_blocking(move || q.send_blocking(&m)).await;
    match outcome {
        Ok(Ok(outcome)) => {
            st.accepted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Accepted {
                    message,
                    duplicate: outcome == SendOutcome::Duplicate,
                    broker_properties: raw,
                });
            text_reply(201, "application/xml; charset=utf-8", String::new())
        }
        // A busy queue file is the server's problem: 500, which senders retry.
        Ok(Err(e)) => sb_error(500, &format!("Internal error: {e}.")),
        Err(e) => sb_error(500, &format!("Internal error: {e}.")),
    }
}
