//! One request, one trace: W3C Trace Context (`traceparent`,
//! <https://www.w3.org/TR/trace-context/#traceparent-header>) carried from message to message.
//! An invocation runs inside [`scope`] with the context its trigger message carried (the Service
//! Bus `Diagnostic-Id` application property, the name the Azure SDKs and Application Insights
//! use); every [`OutMessage`](crate::ports::bus::OutMessage) built inside it carries a child
//! context of the same trace. A request that arrives without one gets a trace id derived from
//! its payload hash, so a redelivery continues the same trace.

use std::future::Future;

/// The application property that carries `traceparent` on Service Bus messages.
pub const DIAGNOSTIC_ID: &str = "Diagnostic-Id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero: the span that sent the message.
    pub parent_id: String,
    pub sampled: bool,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && s.bytes().any(|b| b != b'0')
}

impl TraceContext {
    /// Parse a `traceparent` value. Version `00` must have exactly four fields; a later version
    /// may append fields (the spec's forward-compatibility rule); `ff` is invalid.
    pub fn parse(s: &str) -> Option<TraceContext> {
        let s = s.trim();
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() < 4 {
            return None;
        }
        let (version, trace_id, parent_id, flags) = (parts[0], parts[1], parts[2], parts[3]);
        let version_ok = version.len() == 2
            && version
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && version != "ff";
        if !version_ok || (version == "00" && parts.len() != 4) {
            return None;
        }
        if !is_hex(trace_id, 32) || !is_hex(parent_id, 16) {
            return None;
        }
        if flags.len() != 2 || !flags.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext {
            trace_id: trace_id.to_string(),
            parent_id: parent_id.to_string(),
            sampled: flags & 1 == 1,
        })
    }

    /// A new root context with `trace_id`.
    pub fn root(trace_id: String) -> TraceContext {
        TraceContext {
            trace_id,
            parent_id: new_span_id(),
            sampled: true,
        }
    }

    /// The same trace, a new span (what an outgoing message carries).
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id.clone(),
            parent_id: new_span_id(),
            sampled: self.sampled,
        }
    }

    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.parent_id,
            u8::from(self.sampled)
        )
    }
}

fn new_span_id() -> String {
    let b = uuid::Uuid::new_v4();
    let id = hex::encode(&b.as_bytes()[..8]);
    if id.bytes().all(|c| c == b'0') {
        "0000000000000001".into()
    } else {
        id
    }
}

/// A trace id derived from `seed` (a payload hash): the same request keeps the same trace.
pub fn trace_id_for(seed: &str) -> String {
    let h = crate::domain::ids::sha256_hex(seed.as_bytes());
    let id = h[..32].to_string();
    if is_hex(&id, 32) {
        id
    } else {
        "00000000000000000000000000000001".into()
    }
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Run `f` with `ctx` as the current trace context.
pub async fn scope<F: Future>(ctx: TraceContext, f: F) -> F::Output {
    CURRENT.scope(ctx, f).await
}

/// Run `f` in the current trace, or, where there is none (a timer's invocation), in a new root
/// context of `trace_id` (the request's).
pub async fn within<F: Future>(trace_id: &str, f: F) -> F::Output {
    if current().is_some() || !is_hex(trace_id, 32) {
        return f.await;
    }
    scope(TraceContext::root(trace_id.to_string()), f).await
}

/// Run `f` in the trace `trace_id` whatever the current one is: what a control message does to
/// a request is announced in the request's trace, not the control message's.
pub async fn in_trace<F: Future>(trace_id: &str, f: F) -> F::Output {
    if !is_hex(trace_id, 32) {
        return f.await;
    }
    scope(TraceContext::root(trace_id.to_string()), f).await
}

/// The current context, if the invocation runs in one.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| c.clone()).ok()
}

/// The `traceparent` an outgoing message carries: a child of the current context.
pub fn outgoing() -> Option<String> {
    current().map(|c| c.child().traceparent())
}

/// The context a trigger message carried in its application properties.
pub fn from_properties(props: &serde_json::Map<String, serde_json::Value>) -> Option<TraceContext> {
    props
        .iter()
        .find(|(k, _)| {
            k.eq_ignore_ascii_case(DIAGNOSTIC_ID) || k.eq_ignore_ascii_case("traceparent")
        })
        .and_then(|(_, v)| v.as_str())
        .and_then(TraceContext::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example_and_round_trips() {
        let s = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let c = TraceContext::parse(s).unwrap();
        assert_eq!(c.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(c.parent_id, "b7ad6b7169203331");
        assert!(c.sampled);
        assert_eq!(c.traceparent(), s);
    }

    #[test]
    fn refuses_invalid_values() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
        // A later version may append fields.
        assert!(
            TraceContext::parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x")
                .is_some()
        );
    }

    #[tokio::test]
    async fn messages_built_in_a_scope_carry_a_child_of_its_trace() {
        let root = TraceContext::root(trace_id_for("payload"));
        let m = scope(root.clone(), async {
            crate::ports::bus::OutMessage::json("q", "id", &serde_json::json!({}))
        })
        .await;
        let tp = m.application_properties[DIAGNOSTIC_ID].as_str().unwrap();
        let c = TraceContext::parse(tp).unwrap();
        assert_eq!(c.trace_id, root.trace_id);
        assert_ne!(c.parent_id, root.parent_id);
        // Outside any scope nothing is added.
        let m = crate::ports::bus::OutMessage::json("q", "id", &serde_json::json!({}));
        assert!(m.application_properties.is_empty());
    }
}
