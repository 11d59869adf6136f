//! The invocation envelope: `{"Data": {...}, "Metadata": {...}}` in, `{"Outputs", "Logs",
//! "ReturnValue"}` out, plus decoding of the host's JSON-encoded metadata strings
//! (`MessageId` arrives as `"\"abc\""`, `DeliveryCount` as `"1"`).

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{type_name, ProtocolError};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct InvocationRequest {
    pub data: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

impl InvocationRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ProtocolError::new(format!("body is not valid JSON: {e}")))?;
        let Value::Object(mut obj) = v else {
            return Err(ProtocolError::new(format!(
                "body must be a JSON object with Data and Metadata, found {}",
                type_name(&v)
            )));
        };
        let data = match obj.remove("Data") {
            Some(Value::Object(d)) => d,
            Some(other) => {
                return Err(ProtocolError::new(format!(
                    "Data: expected an object, found {}",
                    type_name(&other)
                )))
            }
            None => {
                return Err(ProtocolError::new(
                    "Data: missing (not a Functions host invocation)",
                ))
            }
        };
        let metadata = match obj.remove("Metadata") {
            Some(Value::Object(m)) => m,
            None | Some(Value::Null) => Map::new(),
            Some(other) => {
                return Err(ProtocolError::new(format!(
                    "Metadata: expected an object, found {}",
                    type_name(&other)
                )))
            }
        };
        Ok(Self { data, metadata })
    }

    /// The trigger's value: `Data.<binding>`, or the only entry when the binding name differs.
    pub fn trigger(&self, binding: &str) -> Result<&Value, ProtocolError> {
        if let Some(v) = self.data.get(binding) {
            return Ok(v);
        }
        if self.data.len() == 1 {
            if let Some(v) = self.data.values().next() {
                return Ok(v);
            }
        }
        Err(ProtocolError::new(format!("Data.{binding}: missing")))
    }

    /// A metadata value with the host's JSON encoding of scalars undone.
    pub fn meta(&self, key: &str) -> Option<Value> {
        self.metadata.get(key).map(decode_meta)
    }

    pub fn meta_string(&self, key: &str) -> Option<String> {
        match self.meta(key)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn meta_u64(&self, key: &str) -> Option<u64> {
        match self.meta(key)? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn meta_datetime(&self, key: &str) -> Option<OffsetDateTime> {
        match self.metadata.get(key)? {
            Value::String(s) => super::datetime::parse(s),
            _ => None,
        }
    }
}

/// `"\"abc\""` -> `"abc"`, `"1"` -> `1`, `"true"` -> `true`; other strings stay strings
/// (a naive datetime is not JSON); objects and numbers pass through.
pub(crate) fn decode_meta(v: &Value) -> Value {
    match v {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(
                inner @ (Value::String(_)
                | Value::Number(_)
                | Value::Bool(_)
                | Value::Object(_)
                | Value::Array(_)),
            ) => inner,
            _ => v.clone(),
        },
        other => other.clone(),
    }
}

/// The handler's answer. Always serialised with all three keys.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct InvocationResponse {
    #[serde(rename = "Outputs", default, deserialize_with = "null_as_default")]
    pub outputs: Map<String, Value>,
    #[serde(rename = "Logs", default, deserialize_with = "null_as_default")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue", default)]
    pub return_value: Value,
}

/// Responses in the docs carry `"Logs": null`; read that as empty.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl InvocationResponse {
    pub fn with_logs(logs: Vec<String>) -> Self {
        Self {
            logs,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_host_metadata_encoding() {
        assert_eq!(decode_meta(&json!("\"abc\"")), json!("abc"));
        assert_eq!(decode_meta(&json!("1")), json!(1));
        assert_eq!(
            decode_meta(&json!("2025-01-02T03:04:05")),
            json!("2025-01-02T03:04:05")
        );
        assert_eq!(decode_meta(&json!({"a": 1})), json!({"a": 1}));
        assert_eq!(decode_meta(&json!(3)), json!(3));
    }

    #[test]
    fn envelope_errors_name_the_problem() {
        assert!(InvocationRequest::parse(b"nope")
            .unwrap_err()
            .0
            .contains("JSON"));
        assert!(InvocationRequest::parse(b"[1]")
            .unwrap_err()
            .0
            .contains("array"));
        assert!(InvocationRequest::parse(b"{}")
            .unwrap_err()
            .0
            .contains("Data"));
        assert!(InvocationRequest::parse(br#"{"Data": 1}"#)
            .unwrap_err()
            .0
            .contains("number"));
        assert!(
            InvocationRequest::parse(br#"{"Data": {}, "Metadata": "x"}"#)
                .unwrap_err()
                .0
                .contains("Metadata")
        );
        let ok = InvocationRequest::parse(br#"{"Data": {"m": "x"}}"#).unwrap();
        assert!(ok.metadata.is_empty());
    }

    #[test]
    fn response_always_has_three_keys() {
        let v = serde_json::to_value(InvocationResponse::default()).unwrap();
        assert_eq!(v, json!({"Outputs": {}, "Logs": [], "ReturnValue": null}));
    }
}
