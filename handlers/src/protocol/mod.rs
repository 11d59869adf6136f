//! The Functions host's wire protocol for custom handlers: the invocation envelope, the
//! host's encoding quirks, and one typed struct per trigger payload.

pub mod datetime;
pub mod envelope;
pub mod eventgrid;
pub mod servicebus;
pub mod timer;

/// What was wrong with a payload; always names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    pub fn new(s: impl Into<String>) -> Self {
        ProtocolError(s.into())
    }
}

pub(crate) fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}
