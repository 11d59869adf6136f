//! `serviceBusTrigger` payloads. The body arrives in `Data.<binding>` usually DOUBLE-encoded
//! (`"\"{\\\"a\\\":1}\""`), sometimes single-encoded or as an object, or base64 for
//! `dataType: binary`. The host also merges a JSON body's top-level properties into Metadata,
//! where they can overwrite system keys: such keys are treated as untrusted, never as the real
//! MessageId or DeliveryCount.

use base64::Engine;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::envelope::InvocationRequest;
use super::{type_name, ProtocolError};

/// Metadata keys the Service Bus extension sets; a body property with one of these names
/// shadows the real value.
pub(crate) const SYSTEM_KEYS: [&str; 20] = [
    "MessageId",
    "DeliveryCount",
    "SequenceNumber",
    "EnqueuedTimeUtc",
    "EnqueuedTime",
    "ExpiresAtUtc",
    "ExpiresAt",
    "LockToken",
    "ContentType",
    "CorrelationId",
    "SessionId",
    "ReplyTo",
    "ReplyToSessionId",
    "Subject",
    "Label",
    "To",
    "DeadLetterSource",
    "PartitionKey",
    "ApplicationProperties",
    "UserProperties",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Text,
    Binary,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceBusMessage {
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    /// 1 on first delivery (the host's default when absent or untrusted).
    pub delivery_count: u32,
    pub sequence_number: Option<i64>,
    pub enqueued_time: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    pub session_id: Option<String>,
    pub reply_to: Option<String>,
    pub subject: Option<String>,
    pub lock_token: Option<String>,
    pub application_properties: Map<String, Value>,
    /// System keys whose metadata value a body property may have overwritten (ignored).
    pub shadowed_keys: Vec<String>,
}

impl ServiceBusMessage {
    pub fn from_envelope(
        req: &InvocationRequest,
        binding: &str,
        encoding: BodyEncoding,
    ) -> Result<Self, ProtocolError> {
        let raw = req.trigger(binding)?;
        let body = decode_body(raw, binding, encoding)?;
        let body_keys: Vec<String> = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) => o.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let shadowed: Vec<String> = SYSTEM_KEYS
            .iter()
            .filter(|k| body_keys.iter().any(|b| b == *k))
            .map(|k| k.to_string())
            .collect();
        let trusted = |k: &str| !shadowed.iter().any(|s| s == k);
        let s = |k: &str| if trusted(k) { req.meta_string(k) } else { None };
        let dt = |k: &str, k2: &str| {
            if trusted(k) && trusted(k2) {
                req.meta_datetime(k).or_else(|| req.meta_datetime(k2))
            } else {
                None
            }
        };
        let props = ["ApplicationProperties", "UserProperties"]
            .iter()
            .filter(|k| trusted(k))
            .find_map(|k| match req.meta(k) {
                Some(Value::Object(o)) => Some(o),
                _ => None,
            })
            .unwrap_or_default();
        Ok(Self {
            body,
            message_id: s("MessageId"),
            delivery_count: if trusted("DeliveryCount") {
                req.meta_u64("DeliveryCount")
                    .map(|n| n.min(u32::MAX as u64) as u32)
                    .unwrap_or(1)
            } else {
                1
            },
            sequence_number: if trusted("SequenceNumber") {
                req.meta_u64("SequenceNumber").map(|n| n as i64)
            } else {
                None
            },
            enqueued_time: dt("EnqueuedTimeUtc", "EnqueuedTime"),
            expires_at: dt("ExpiresAtUtc", "ExpiresAt"),
            correlation_id: s("CorrelationId"),
            content_type: s("ContentType"),
            session_id: s("SessionId"),
            reply_to: s("ReplyTo"),
            subject: s("Subject").or_else(|| s("Label")),
            lock_token: s("LockToken"),
            application_properties: props,
            shadowed_keys: shadowed,
        })
    }
}

fn decode_body(
    raw: &Value,
    binding: &str,
    encoding: BodyEncoding,
) -> Result<Vec<u8>, ProtocolError> {
    let text = match raw {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            // Double-encoded: the string holds a JSON string holding the body.
            Ok(Value::String(inner)) => inner,
            _ => s.clone(),
        },
        Value::Object(_) | Value::Array(_) => {
            if encoding == BodyEncoding::Binary {
                return Err(ProtocolError::new(format!(
                    "Data.{binding}: expected base64 text for a binary message, found {}",
                    type_name(raw)
                )));
            }
            return Ok(serde_json::to_vec(raw).unwrap_or_default());
        }
        other => {
            return Err(ProtocolError::new(format!(
                "Data.{binding}: expected a string or object, found {}",
                type_name(other)
            )))
        }
    };
    match encoding {
        BodyEncoding::Text => Ok(text.into_bytes()),
        BodyEncoding::Binary => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| ProtocolError::new(format!("Data.{binding}: not valid base64: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> InvocationRequest {
        InvocationRequest::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn double_single_and_object_bodies() {
        let body = r#"{"a":1}"#;
        // As in the host fixture: the Data value is a string holding the JSON-encoded body.
        let double = serde_json::to_string(body).unwrap();
        for data in [json!(double), json!(body), json!({"a": 1})] {
            let m = ServiceBusMessage::from_envelope(
                &req(json!({"Data": {"message": data}, "Metadata": {}})),
                "message",
                BodyEncoding::Text,
            )
            .unwrap();
            assert_eq!(
                serde_json::from_slice::<Value>(&m.body).unwrap(),
                json!({"a": 1})
            );
            assert_eq!(m.delivery_count, 1);
        }
    }

    #[test]
    fn body_cannot_masquerade_as_message_id() {
        let body = json!({"MessageId": "evil", "DeliveryCount": 99}).to_string();
        let r = req(
            json!({"Data": {"message": body}, "Metadata": {"MessageId": "\"evil\"", "DeliveryCount": "99"}}),
        );
        let m = ServiceBusMessage::from_envelope(&r, "message", BodyEncoding::Text).unwrap();
        assert_eq!(m.message_id, None);
        assert_eq!(m.delivery_count, 1);
        assert_eq!(
            m.shadowed_keys,
            vec!["MessageId".to_string(), "DeliveryCount".to_string()]
        );
    }

    #[test]
    fn binary_and_wrong_types() {
        let r = req(json!({"Data": {"message": "aGVsbG8="}}));
        assert_eq!(
            ServiceBusMessage::from_envelope(&r, "message", BodyEncoding::Binary)
                .unwrap()
                .body,
            b"hello"
        );
        let r = req(json!({"Data": {"message": 5}}));
        assert!(
            ServiceBusMessage::from_envelope(&r, "message", BodyEncoding::Text)
                .unwrap_err()
                .0
                .contains("number")
        );
        let r = req(json!({"Data": {"message": "%%%"}}));
        assert!(ServiceBusMessage::from_envelope(&r, "message", BodyEncoding::Binary).is_err());
    }
}
