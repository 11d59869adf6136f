//! `cancel`: stop a request. One not yet started does nothing more; a delete under way finishes
//! the chunk it is in, and every slice stops before its next chunk (the slices read the
//! request's lifecycle between chunks). The certificate then lists what was deleted and what
//! was not. Cancelling an already-cancelled request changes nothing (a redelivery); a request
//! that has finished cannot be cancelled.

use serde_json::json;
use time::OffsetDateTime;

use super::{lifecycle_init, unknown_request, Envelope, HandlerResult};
use crate::domain::lifecycle::MAX_REASON_CHARS;
use crate::functions::lifecycle::{self as lc, Changed};
use crate::functions::{FnError, Services};

pub const FIELDS: [&str; 1] = ["reason"];

pub async fn run(svc: &Services, body: &[u8]) -> Result<HandlerResult, FnError> {
    let env = match Envelope::parse("cancel", body, &FIELDS) {
        Ok(e) => e,
        Err(r) => return Ok(Err((None, r))),
    };
    let id = env.request_id.clone();
    let reason = match env.opt_str("reason", MAX_REASON_CHARS) {
        Ok(r) => r,
        Err(r) => return Ok(Err((Some(id), r))),
    };
    let Some(initial) = lifecycle_init(svc, &id).await? else {
        return Ok(Err((Some(id.clone()), unknown_request(&id))));
    };
    let now = OffsetDateTime::now_utc();
    let state = svc.state();
    let mut previous = None;
    let r = lc::update(
        &state,
        &id,
        || Some(initial.clone()),
        |doc| {
            previous = Some(doc.state);
            match doc.cancel(now, reason.clone()) {
                Ok(true) => Ok(Some(())),
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            }
        },
    )
    .await?;
    Ok(match r {
        Some(Changed::Yes((), doc)) => {
            crate::trace::in_trace(&doc.trace_id, lc::announce_state(svc, &doc, previous)).await?;
            Ok((
                id,
                true,
                json!({"previousState": previous, "reason": reason}),
            ))
        }
        Some(Changed::Unchanged(_)) => Ok((id, false, json!({}))),
        Some(Changed::Refused(e)) => Err((Some(id), super::refused(e.code, e.reason))),
        None => Err((Some(id.clone()), unknown_request(&id))),
    })
}
