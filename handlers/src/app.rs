//! The custom handler's [`Invoker`]: decodes each trigger's payload and runs the function.
//! Services are wired before the port is bound but connect nothing until an invocation needs
//! them (cold start: the host's readiness probe must be answered at once).

use std::sync::Arc;

use async_trait::async_trait;
use tracing::warn;

use crate::domain::plan::ResourceType;
use crate::domain::slice::{SliceCompletion, SliceTask};
use crate::functions::{aggregate, intake, slice, Delivery, FnError, Services};
use crate::protocol::envelope::{InvocationRequest, InvocationResponse};
use crate::protocol::eventgrid::GridEvent;
use crate::protocol::servicebus::{BodyEncoding, ServiceBusMessage};
use crate::protocol::timer::TimerInfo;
use crate::startup::{InvocationContext, InvokeError, Invoker};

pub const INTAKE: &str = "dsr-intake";
pub(crate) const AGGREGATE: &str = "dsr-aggregate";
pub(crate) const RETENTION_SWEEP: &str = "retention-sweep";
pub(crate) const WORKSPACE_DELETED: &str = "workspace-deleted";

/// The functions over wired services (built by [`crate::wiring`] before the port is bound).
pub struct App {
    services: Services,
}

impl App {
    pub fn with_services(services: Services) -> Self {
        Self { services }
    }
}

pub fn all_functions() -> Vec<String> {
    let mut f = vec![
        INTAKE.to_string(),
        AGGREGATE.to_string(),
        RETENTION_SWEEP.to_string(),
        WORKSPACE_DELETED.to_string(),
    ];
    f.extend(ResourceType::ALL.iter().map(|t| t.function_name()));
    f
}

/// The error the host gets and the logs show: adapters' messages may quote URLs and blob names,
/// so they are redacted here, where every function's error leaves.
fn map_err(e: FnError) -> InvokeError {
    match e {
        FnError::BadRequest(m) => InvokeError::BadRequest(crate::logging::redact(&m)),
        FnError::Transient(m) => InvokeError::Failed(crate::logging::redact(&m)),
    }
}

fn sb(req: &InvocationRequest) -> Result<(ServiceBusMessage, Delivery), InvokeError> {
    let m = ServiceBusMessage::from_envelope(req, "message", BodyEncoding::Text)
        .map_err(|e| InvokeError::BadRequest(e.0))?;
    if !m.shadowed_keys.is_empty() {
        warn!(keys = ?m.shadowed_keys, "message body shadows system metadata keys; those keys are ignored");
    }
    let d = Delivery {
        message_id: m.message_id.clone(),
        delivery_count: m.delivery_count,
        enqueued_time: m.enqueued_time,
    };
    Ok((m, d))
}

fn parse_body<T: serde::de::DeserializeOwned>(
    m: &ServiceBusMessage,
    what: &str,
) -> Result<T, InvokeError> {
    serde_json::from_slice(&m.body).map_err(|e| {
        InvokeError::BadRequest(format!(
            "message body is not a valid {what}: {}",
            redact_values(&e.to_string())
        ))
    })
}

/// serde's messages quote the offending value (`invalid type: string "…"`, ``unknown variant
/// `…` ``); a slice task carries the subject, so the value could be personal data, and this
/// message is logged. Keep the shape of the error, drop the values.
fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(['"', '`']) {
        let (before, from) = rest.split_at(i);
        out.push_str(before);
        let quote = &from[..1];
        let after = &from[1..];
        let redact = quote == "\"" || before.ends_with("unknown variant ");
        match after.find(quote) {
            Some(end) if redact => {
                out.push_str(quote);
                out.push('…');
                out.push_str(quote);
                rest = &after[end + 1..];
            }
            Some(end) => {
                out.push_str(&from[..end + 2]);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(quote);
                out.push('…');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[async_trait]
impl Invoker for App {
    fn functions(&self) -> Vec<String> {
        all_functions()
    }

    async fn invoke(
        &self,
        function: &str,
        ctx: InvocationContext,
        req: InvocationRequest,
    ) -> Result<InvocationResponse, InvokeError> {
        use tracing::Instrument;
        // One request, one trace: the context the trigger message carried (Diagnostic-Id)
        // becomes the current one, so every message this invocation sends continues it, and
        // every log line of the invocation carries the invocation id and the trace id.
        let trace = match function {
            RETENTION_SWEEP | WORKSPACE_DELETED => None,
            _ => ServiceBusMessage::from_envelope(&req, "message", BodyEncoding::Text)
                .ok()
                .and_then(|m| crate::trace::from_properties(&m.application_properties)),
        };
        let span = tracing::info_span!(
            "invocation",
            function,
            invocation_id = ctx.invocation_id.as_deref().unwrap_or(""),
            trace_id = tracing::field::Empty,
            request = tracing::field::Empty,
            subject = tracing::field::Empty,
        );
        if let Some(t) = &trace {
            span.record("trace_id", t.trace_id.as_str());
        }
        let fut = self.invoke_inner(function, req).instrument(span);
        match trace {
            Some(t) => crate::trace::scope(t, fut).await,
            None => fut.await,
        }
    }
}

impl App {
    async fn invoke_inner(
        &self,
        function: &str,
        req: InvocationRequest,
    ) -> Result<InvocationResponse, InvokeError> {
        let logs = match function {
            INTAKE => {
                let (m, d) = sb(&req)?;
                let svc = &self.services;
                let out = intake::run(svc, &m.body, &d).await.map_err(map_err)?;
                vec![format!("{out:?}")]
            }
            AGGREGATE => {
                let (m, _) = sb(&req)?;
                let c: SliceCompletion = parse_body(&m, "slice completion")?;
                tracing::Span::current().record("request", c.request_id.as_str());
                let svc = &self.services;
                let out = aggregate::run(svc, &c).await.map_err(map_err)?;
                vec![format!("{} {}: {out:?}", c.request_id, c.key)]
            }
            RETENTION_SWEEP => {
                let t = TimerInfo::from_envelope(&req, "timer")
                    .map_err(|e| InvokeError::BadRequest(e.0))?;
                let svc = &self.services;
                let out =
                    crate::functions::retention::run(svc, &t, time::OffsetDateTime::now_utc())
                        .await
                        .map_err(map_err)?;
                vec![format!("retention-sweep: {out:?}")]
            }
            WORKSPACE_DELETED => {
                let e = GridEvent::from_envelope(&req, "event")
                    .map_err(|e| InvokeError::BadRequest(e.0))?;
                let svc = &self.services;
                let out = crate::functions::workspace_deleted::run(
                    svc,
                    &e,
                    time::OffsetDateTime::now_utc(),
                )
                .await
                .map_err(map_err)?;
                vec![format!("workspace-deleted {}: {out:?}", e.id)]
            }
            other => {
                let Some(rt) = ResourceType::from_function(other) else {
                    return Err(InvokeError::BadRequest(format!("unknown function {other}")));
                };
                let (m, d) = sb(&req)?;
                let task: SliceTask = parse_body(&m, "slice task")?;
                // The subject only as its salted hash (never the object id itself).
                let span = tracing::Span::current();
                span.record("request", task.request_id.as_str());
                span.record("subject", task.subject.log_id().as_str());
                if task.resource_type != rt {
                    return Err(InvokeError::BadRequest(format!(
                        "a {} task was sent to {other}",
                        task.resource_type.as_str()
                    )));
                }
                let svc = &self.services;
                let out = slice::run(svc, &task, &d).await.map_err(map_err)?;
                vec![format!("{} {}: {out:?}", task.request_id, task.key)]
            }
        };
        Ok(InvocationResponse::with_logs(logs))
    }
}

/// Arc helper for `startup::serve`.
pub fn invoker(app: App) -> Arc<dyn Invoker> {
    Arc::new(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_values_are_redacted_field_names_kept() {
        let e = serde_json::from_str::<crate::domain::slice::SliceTask>(
            r#"{"requestId":"R-1","type":"alice@contoso.com"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("alice"), "serde echoes the value: {e}");
        let r = redact_values(&e);
        assert!(!r.contains("alice") && r.contains("unknown variant"), "{r}");
        let r = redact_values(r#"invalid type: string "bob@x.com", expected u32"#);
        assert_eq!(r, r#"invalid type: string "…", expected u32"#);
        let r = redact_values("missing field `requestId` at line 1");
        assert_eq!(r, "missing field `requestId` at line 1");
        assert_eq!(redact_values(r#"dangling "carol"#), r#"dangling "…"#);
    }
}
