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

#[cfg(test)]
mod fuzz {
    //! Hostile input: arbitrary bytes and arbitrary JSON never panic any parser.
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::envelope::InvocationRequest;
    use super::eventgrid::GridEvent;
    use super::servicebus::{BodyEncoding, ServiceBusMessage};
    use super::timer::TimerInfo;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,24}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("id".to_string()),
                        Just("eventType".to_string()),
                        Just("specversion".to_string()),
                        Just("data".to_string()),
                        Just("MessageId".to_string()),
                        Just("IsPastDue".to_string()),
                        "\\PC{0,8}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn envelope_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = InvocationRequest::parse(&bytes);
        }

        #[test]
        fn triggers_never_panic(data in arb_json(), meta in arb_json()) {
            let body = json!({"Data": {"message": data.clone(), "timer": data.clone(), "event": data}, "Metadata": meta});
            if let Ok(req) = InvocationRequest::parse(body.to_string().as_bytes()) {
                let _ = ServiceBusMessage::from_envelope(&req, "message", BodyEncoding::Text);
                let _ = ServiceBusMessage::from_envelope(&req, "message", BodyEncoding::Binary);
                let _ = TimerInfo::from_envelope(&req, "timer");
                if let Ok(ev) = GridEvent::from_envelope(&req, "event") {
                    let _ = ev.resource_action();
                }
            }
        }

        #[test]
        fn string_encoded_events_never_panic(s in "\\PC{0,200}") {
            let _ = GridEvent::from_value(&Value::String(s));
        }
    }
}
