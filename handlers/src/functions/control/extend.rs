//! `extend`: move an open request's deadline by `days`, for a `reason` (GDPR Art. 12(3): by at
//! most two further months; CCPA: once, by at most 45 days; both counted from the original
//! deadline and notified within the original period — see `domain::lifecycle`). The extension
//! is recorded in the request's lifecycle and audit trail and sent to the ticketing system
//! (`deadline_extended` on the results queue). Anything beyond the law is refused with the
//! limit in the reason, and nothing changes.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{lifecycle_init, refused, unknown_request, Envelope, HandlerResult};
use crate::domain::lifecycle::MAX_REASON_CHARS;
use crate::functions::lifecycle::{self as lc, Changed, LifecycleMessage};
use crate::functions::{FnError, Services};

pub const FIELDS: [&str; 2] = ["days", "reason"];

pub async fn run(svc: &Services, body: &[u8], sha: &str) -> Result<HandlerResult, FnError> {
    let env = match Envelope::parse("extend", body, &FIELDS) {
        Ok(e) => e,
        Err(r) => return Ok(Err((None, r))),
    };
    let id = env.request_id.clone();
    let days = match env.fields.get("days") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(d) if (1..=366).contains(&d) => d as u32,
            _ => {
                return Ok(Err((
                    Some(id),
                    refused(
                        "invalid_control",
                        "days must be a whole number from 1 to 366",
                    ),
                )))
            }
        },
        Some(_) => {
            return Ok(Err((
                Some(id),
                refused("invalid_control", "days must be a whole number"),
            )))
        }
        None => {
            return Ok(Err((
                Some(id),
                refused("invalid_control", "days is required"),
            )))
        }
    };
    let reason = match env.opt_str("reason", MAX_REASON_CHARS) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Ok(Err((
                Some(id),
                refused(
                    "invalid_control",
                    "reason is required (GDPR Art. 12(3): the subject must be told why)",
                ),
            )))
        }
        Err(r) => return Ok(Err((Some(id), r))),
    };
    let Some(initial) = lifecycle_init(svc, &id).await? else {
        return Ok(Err((Some(id.clone()), unknown_request(&id))));
    };
    let now = OffsetDateTime::now_utc();
    let state = svc.state();
    let mut before = None;
    let r = lc::update(
        &state,
        &id,
        || Some(initial.clone()),
        |doc| {
            if doc
                .extensions
                .iter()
                .any(|e| e.message_sha256.as_deref() == Some(sha))
            {
                return Ok(None);
            }
            before = Some(doc.deadline);
            let after = doc.extend(days, &reason, now)?;
            if let Some(e) = doc.extensions.last_mut() {
                e.message_sha256 = Some(sha.to_string());
            }
            Ok(Some(after))
        },
    )
    .await?;
    Ok(match r {
        Some(Changed::Yes(after, doc)) => {
            let mut m = LifecycleMessage::new("deadline_extended", Some(id.to_string()), now);
            m.state = Some(doc.state);
            m.deadline = Some(after);
            m.previous_deadline = before;
            m.reason = Some(reason.clone());
            let message_id = format!("extended/{id}/{}", doc.extensions.len());
            crate::trace::in_trace(&doc.trace_id, lc::send(svc, message_id, &m, Some(&id))).await?;
            Ok((
                id,
                true,
                json!({
                    "days": days,
                    "reason": reason,
                    "deadlineBefore": before.map(rfc3339),
                    "deadline": rfc3339(after),
                    "originalDeadline": rfc3339(doc.original_deadline),
                }),
            ))
        }
        Some(Changed::Unchanged(_)) => Ok((id, false, json!({}))),
        Some(Changed::Refused(e)) => Err((Some(id), refused(e.code, e.reason))),
        None => Err((Some(id.clone()), unknown_request(&id))),
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
