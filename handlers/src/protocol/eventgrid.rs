//! `eventGridTrigger` payloads, in the Event Grid schema or the CloudEvents 1.0 schema, as an
//! object, a JSON-encoded string, or (as in Microsoft's doc samples) a one-element array.

use serde_json::Value;
use time::OffsetDateTime;

use super::envelope::InvocationRequest;
use super::{type_name, ProtocolError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSchema {
    EventGrid,
    CloudEvents,
}

/// One event, normalised across both schemas.
#[derive(Debug, Clone, PartialEq)]
pub struct GridEvent {
    pub schema: EventSchema,
    pub id: String,
    pub event_type: String,
    pub subject: Option<String>,
    /// Event Grid `topic` or CloudEvents `source`.
    pub source: Option<String>,
    pub time: Option<OffsetDateTime>,
    pub data: Value,
}

/// `data` of `Microsoft.Resources.ResourceDeleteSuccess` (and the other resource events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceActionData {
    pub operation_name: String,
    pub resource_uri: String,
    pub resource_provider: Option<String>,
    pub status: Option<String>,
    pub subscription_id: Option<String>,
    pub tenant_id: Option<String>,
    pub http_request_url: Option<String>,
}

pub(crate) const RESOURCE_DELETE_SUCCESS: &str = "Microsoft.Resources.ResourceDeleteSuccess";

impl GridEvent {
    pub fn from_envelope(req: &InvocationRequest, binding: &str) -> Result<Self, ProtocolError> {
        Self::from_value(req.trigger(binding)?)
            .map_err(|e| ProtocolError::new(format!("Data.{binding}: {}", e.0)))
    }

    pub fn from_value(v: &Value) -> Result<Self, ProtocolError> {
        match v {
            Value::Object(_) => Self::from_object(v),
            Value::String(s) => {
                let inner: Value = serde_json::from_str(s)
                    .map_err(|_| ProtocolError::new("a string that is not a JSON event"))?;
                match inner {
                    Value::String(_) => Err(ProtocolError::new("event is encoded more than twice")),
                    other => Self::from_value(&other),
                }
            }
            Value::Array(items) if items.len() == 1 => Self::from_value(&items[0]),
            Value::Array(items) => Err(ProtocolError::new(format!(
                "expected one event, found an array of {}",
                items.len()
            ))),
            other => Err(ProtocolError::new(format!(
                "expected an event object, found {}",
                type_name(other)
            ))),
        }
    }

    fn from_object(v: &Value) -> Result<Self, ProtocolError> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let need = |k: &str| {
            s(k).filter(|x| !x.is_empty()).ok_or_else(|| {
                ProtocolError::new(format!("event field '{k}' is missing or not a string"))
            })
        };
        let id = need("id")?;
        if v.get("specversion").is_some() {
            return Ok(GridEvent {
                schema: EventSchema::CloudEvents,
                id,
                event_type: need("type")?,
                subject: s("subject"),
                source: s("source"),
                time: s("time").as_deref().and_then(super::datetime::parse),
                data: v.get("data").cloned().unwrap_or(Value::Null),
            });
        }
        Ok(GridEvent {
            schema: EventSchema::EventGrid,
            id,
            event_type: need("eventType")?,
            subject: s("subject"),
            source: s("topic"),
            time: s("eventTime").as_deref().and_then(super::datetime::parse),
            data: v.get("data").cloned().unwrap_or(Value::Null),
        })
    }

    /// The resource-action payload, for `Microsoft.Resources.*` events.
    pub fn resource_action(&self) -> Option<ResourceActionData> {
        let s = |k: &str| self.data.get(k).and_then(Value::as_str).map(str::to_string);
        Some(ResourceActionData {
            operation_name: s("operationName")?,
            resource_uri: s("resourceUri")?,
            resource_provider: s("resourceProvider"),
            status: s("status"),
            subscription_id: s("subscriptionId"),
            tenant_id: s("tenantId"),
            http_request_url: self
                .data
                .pointer("/httpRequest/url")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}
