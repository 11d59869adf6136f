//! Control messages on the intake queue: a ticketing system steering a request it submitted.
//! Each has the versioned envelope `{"type": <kind>, "version": 1, "requestId": ...}` (schemas:
//! `schemas/dsr-control-*.schema.json`); a message whose `type` is not a control kind is a DSR
//! request and goes to intake as before. Each kind is handled in its own module; the shared
//! part here validates the envelope, keeps the audit trail and sends rejections. A control
//! message that cannot be carried out is rejected with a readable reason on the results queue
//! (`control_rejected`), its payload stays in the intake archive, and it is never retried.

pub mod cancel;
pub mod extend;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use tracing::{info, warn};

use super::lifecycle::{self as lc, LifecycleMessage};
use super::{FnError, Services};
use crate::domain::ids::short_hash;
use crate::domain::lifecycle::{Lifecycle, RequestState};
use crate::domain::request::{RequestId, MAX_REQUEST_BYTES};

/// The control kinds this build understands. (`approve` / `reject` belong to item review.)
pub const KINDS: [&str; 2] = ["cancel", "extend"];
/// Envelope version this build understands.
pub const VERSION: u64 = 1;

/// The control kind of `body`, when its `type` names one; `None` for a DSR request (or
/// anything intake's own validation should answer).
pub fn kind_of(body: &[u8]) -> Option<&'static str> {
    if body.len() > MAX_REQUEST_BYTES {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let t = v.get("type")?.as_str()?;
    KINDS.into_iter().find(|k| *k == t)
}

/// What a control message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlOutcome {
    /// Carried out (`false`: it had already been, e.g. a redelivered cancel).
    Applied {
        request_id: String,
        changed: bool,
    },
    Rejected {
        code: String,
    },
}

/// A refusal with the reason the ticketing system is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: String,
    pub reason: String,
}

pub fn refused(code: &str, reason: impl Into<String>) -> Refused {
    Refused {
        code: code.into(),
        reason: reason.into(),
    }
}

/// The validated envelope: the fields every control message has, and the rest by name.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub kind: &'static str,
    pub request_id: RequestId,
    pub fields: Map<String, Value>,
}

impl Envelope {
    /// Validate `type`, `version` and `requestId`; refuse any field not in `allowed` (a typo
    /// in a field name must not silently drop what the sender meant).
    pub fn parse(kind: &'static str, body: &[u8], allowed: &[&str]) -> Result<Envelope, Refused> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| refused("invalid_json", format!("the message is not JSON: {e}")))?;
        let Value::Object(mut o) = v else {
            return Err(refused(
                "invalid_control",
                "the message must be a JSON object",
            ));
        };
        match o.get("version") {
            None => {
                return Err(refused(
                    "invalid_control",
                    format!("version is required (this service understands version {VERSION})"),
                ))
            }
            Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
            Some(other) => {
                return Err(refused(
                    "unsupported_version",
                    format!(
                    "version {other} is not supported; this service understands version {VERSION}"
                ),
                ))
            }
        }
        let request_id = match o.get("requestId") {
            Some(Value::String(s)) => RequestId::parse(s)
                .map_err(|e| refused("invalid_control", format!("requestId: {e}")))?,
            Some(_) => return Err(refused("invalid_control", "requestId must be a string")),
            None => return Err(refused("invalid_control", "requestId is required")),
        };
        let unknown: Vec<String> = o
            .keys()
            .filter(|k| !["type", "version", "requestId"].contains(&k.as_str()))
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|k| format!("{k:?}"))
            .collect();
        if !unknown.is_empty() {
            return Err(refused(
                "invalid_control",
                format!(
                    "unknown field(s) {} in a {kind} message (allowed: {})",
                    unknown.join(", "),
                    allowed.join(", ")
                ),
            ));
        }
        o.remove("type");
        o.remove("version");
        o.remove("requestId");
        Ok(Envelope {
            kind,
            request_id,
            fields: o,
        })
    }

    /// An optional string field, at most `max` characters.
    pub fn opt_str(&self, name: &str, max: usize) -> Result<Option<String>, Refused> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(refused(
                "invalid_control",
                format!("{name} is longer than {max} characters"),
            )),
            Some(_) => Err(refused(
                "invalid_control",
                format!("{name} must be a string"),
            )),
        }
    }
}

/// Carry out control message `kind` (from [`kind_of`]). `sha` is the payload's SHA-256 and
/// `archived` where intake archived it.
pub async fn run(
    svc: &Services,
    kind: &'static str,
    body: &[u8],
    sha: &str,
    archived: &str,
) -> Result<ControlOutcome, FnError> {
    let result = match kind {
        "cancel" => cancel::run(svc, body, sha).await?,
        "extend" => extend::run(svc, body, sha).await?,
        other => Err((
            None,
            refused("invalid_control", format!("unknown control type {other:?}")),
        )),
    };
    match result {
        Ok((id, changed, detail)) => {
            if changed {
                audit(svc, kind, Some(&id), sha, archived, "applied", detail).await?;
            }
            info!(request = %id, control = kind, changed, "control: applied");
            Ok(ControlOutcome::Applied {
                request_id: id.to_string(),
                changed,
            })
        }
        Err((id, r)) => {
            // The ticketing system matches a refusal by requestId: read it where it is valid
            // even when the rest of the envelope is not.
            let id = id.or_else(|| {
                serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("requestId")?.as_str().map(str::to_string))
                    .and_then(|s| RequestId::parse(&s).ok())
            });
            reject(svc, kind, id, r, sha, archived).await
        }
    }
}

/// What a handler returns: the request it changed, whether it changed it, and the audit
/// details; or the request id (when readable) and the refusal.
pub(crate) type HandlerResult = Result<(RequestId, bool, Value), (Option<RequestId>, Refused)>;

/// The request's lifecycle document, created from its plan for a request accepted before
/// lifecycles were recorded. `None`: no request with this id was ever accepted.
pub async fn lifecycle_init(svc: &Services, id: &RequestId) -> Result<Option<Lifecycle>, FnError> {
    let state = svc.state();
    if let Some(doc) = lc::load(&state, id).await? {
        return Ok(Some(doc));
    }
    Ok(state.plan(id).await?.map(|plan| from_plan(&plan)))
}

/// The lifecycle of a planned request (intake's starting point).
pub fn from_plan(plan: &crate::domain::plan::Plan) -> Lifecycle {
    let mut doc = Lifecycle::received(
        plan.request_id.clone(),
        plan.regulation,
        plan.received_at,
        plan.deadline,
        plan.received_at,
        crate::trace::current()
            .map(|c| c.trace_id)
            .unwrap_or_else(|| crate::trace::trace_id_for(&plan.request_sha256)),
    );
    // Received -> Planned is always allowed.
    let _ = doc.transition(RequestState::Planned, OffsetDateTime::now_utc(), None);
    doc
}

pub fn unknown_request(id: &RequestId) -> Refused {
    refused(
        "unknown_request",
        format!("no request with requestId {id} has been accepted; nothing was changed"),
    )
}

async fn audit(
    svc: &Services,
    kind: &str,
    id: Option<&RequestId>,
    sha: &str,
    archived: &str,
    outcome: &str,
    detail: Value,
) -> Result<(), FnError> {
    let state = svc.state();
    let at = OffsetDateTime::now_utc();
    let record = serde_json::json!({
        "event": format!("control_{outcome}"),
        "control": kind,
        "requestId": id.map(|i| i.to_string()),
        "detail": detail,
        "payloadSha256": sha,
        "archivedAs": format!("{}/{archived}", crate::state::ARCHIVE),
        "at": at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    });
    let name = match (outcome, id) {
        ("applied", Some(id)) => format!("lifecycle/{id}/{kind}-{sha}.json"),
        _ => format!("control-rejected/{sha}.json"),
    };
    crate::functions::audit_trail::record(&state, &name, &record).await?;
    Ok(())
}

async fn reject(
    svc: &Services,
    kind: &str,
    id: Option<RequestId>,
    r: Refused,
    sha: &str,
    archived: &str,
) -> Result<ControlOutcome, FnError> {
    let detail = serde_json::json!({"code": r.code, "reason": r.reason});
    // Rejections are audited apart from the request's own trail (the id may be unreadable).
    audit(svc, kind, id.as_ref(), sha, archived, "rejected", detail).await?;
    let mut m = LifecycleMessage::new(
        "control_rejected",
        id.as_ref().map(|i| i.to_string()),
        OffsetDateTime::now_utc(),
    );
    m.control = Some(kind.to_string());
    m.code = Some(r.code.clone());
    m.reason = Some(r.reason.clone());
    let message_id = format!("control-rejected/{}", short_hash(&[sha], 24));
    // A refusal about a known request belongs to that request's trace.
    let trace_id = match &id {
        Some(i) => lc::load(&svc.state(), i).await?.map(|l| l.trace_id),
        None => None,
    };
    let sending = lc::send(svc, message_id, &m, id.as_ref());
    match trace_id {
        Some(t) => crate::trace::in_trace(&t, sending).await?,
        None => sending.await?,
    }
    // Only the code is logged: a reason may quote a field name from the payload, and payloads
    // are not logged (the reason is in the audit record and the message).
    warn!(control = kind, code = %r.code, payload_sha256 = %sha, "control: rejected");
    Ok(ControlOutcome::Rejected { code: r.code })
}
