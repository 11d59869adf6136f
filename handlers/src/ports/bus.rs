//! The message bus port: how functions send messages with the properties Service Bus output
//! bindings cannot set from a custom handler (MessageId for duplicate detection, scheduled
//! enqueue time for continuations and delayed clean-ups).

use std::collections::BTreeMap;

use async_trait::async_trait;
use time::OffsetDateTime;

/// A message to send. `body` is the exact payload bytes (JSON text for everything we send).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutMessage {
    /// Queue (or topic) name.
    pub queue: String,
    /// Deterministic id: a redelivered sender re-sends the same id and the bus drops the copy.
    pub message_id: String,
    pub session_id: Option<String>,
    pub correlation_id: Option<String>,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Not visible to receivers before this instant.
    pub scheduled_enqueue_time: Option<OffsetDateTime>,
    pub application_properties: BTreeMap<String, serde_json::Value>,
}

impl OutMessage {
    /// A JSON message with a deterministic id.
    /// Built inside an invocation's trace scope, it carries that trace (`Diagnostic-Id`).
    pub fn json<T: serde::Serialize>(queue: &str, message_id: impl Into<String>, body: &T) -> Self {
        let mut application_properties = BTreeMap::new();
        if let Some(tp) = crate::trace::outgoing() {
            application_properties.insert(
                crate::trace::DIAGNOSTIC_ID.to_string(),
                serde_json::Value::String(tp),
            );
        }
        Self {
            queue: queue.to_string(),
            message_id: message_id.into(),
            session_id: None,
            correlation_id: None,
            content_type: "application/json".to_string(),
            body: serde_json::to_vec(body).expect("serialising a domain type cannot fail"),
            scheduled_enqueue_time: None,
            application_properties,
        }
    }

    pub fn scheduled_at(mut self, at: OffsetDateTime) -> Self {
        self.scheduled_enqueue_time = Some(at);
        self
    }

    pub fn correlated(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }
}

/// Whether the bus accepted the message or dropped it as a duplicate of an earlier MessageId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Enqueued,
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("transient bus error: {0}")]
    Transient(String),
    /// The message cannot be sent as it is (MessageId, schedule): sending it again fails too.
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error("bus error: {0}")]
    Other(String),
}

#[async_trait]
pub trait MessageBus: Send + Sync + 'static {
    async fn send(&self, message: OutMessage) -> Result<SendOutcome, BusError>;

    async fn send_all(&self, messages: Vec<OutMessage>) -> Result<(), BusError> {
        for m in messages {
            self.send(m).await?;
        }
        Ok(())
    }
}

/// Queue names: part of the public contract with the infrastructure (`infra/`) and `functions/`.
pub mod queues {
    pub const INTAKE: &str = "dsr-intake";
    pub const COMPLETIONS: &str = "dsr-completions";
    pub const RESULTS: &str = "dsr-results";
    pub const SLICE_JOBS: &str = "dsr-slice-jobs";
    pub const SLICE_MODELS: &str = "dsr-slice-models";
    pub const SLICE_DATA: &str = "dsr-slice-data";
    pub const SLICE_COMPUTE: &str = "dsr-slice-compute";
    pub const SLICE_NOTEBOOKS: &str = "dsr-slice-notebooks";
    pub const SLICE_TELEMETRY: &str = "dsr-slice-telemetry";
}
