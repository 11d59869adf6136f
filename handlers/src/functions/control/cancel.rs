//! `cancel`: stop a request. One not yet started does nothing more; a delete under way finishes
//! the chunk it is in, and every slice stops before its next chunk (the slices read the
//! request's lifecycle between chunks). The certificate then lists what was deleted and what
//! was not. Cancelling an already-cancelled request changes nothing (a redelivery); a request
//! that has finished cannot be cancelled, and neither can one whose every part has already done
//! its work (`already_finished`: it ends with its own outcome, never a false `cancelled`). A
//! cancel that lands while the last chunk is finishing, and so stops nothing, is settled at
//! fan-in ([`settle_overtaken`]).
//!
//! On a Service Bus queue without sessions a cancel can overtake its own request (sent just
//! after it, delivered first, or the request redelivered after a failure). Refusing it would let
//! a withdrawn request run, deletes included; so a cancel for a request not (yet) accepted is
//! remembered for [`PENDING_CANCEL_HOURS`] (`dsr-state/pending-cancels/<id>.json`, announced as
//! `cancel_pending`), and a request with that id accepted within that time is cancelled on
//! arrival, before any slice starts. After that time it is forgotten (audited either way).

use serde_json::json;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::{lifecycle_init, refused, Envelope, HandlerResult};
use crate::domain::ids::short_hash;
use crate::domain::lifecycle::{RequestState, MAX_REASON_CHARS};
use crate::domain::report::FinalStatus;
use crate::domain::request::RequestId;
use crate::functions::lifecycle::{self as lc, Changed, LifecycleMessage};
use crate::functions::{FnError, Services};
use crate::ports::blob::{BlobRef, BlobStoreExt, StoreError};
use crate::state::{StateStore, STATE};

pub const FIELDS: [&str; 1] = ["reason"];

/// How long a cancel for a request not yet accepted waits for it. Service Bus redelivers a
/// failed message within minutes (lock duration x max delivery count); a day covers a backlog
/// too, and stays short enough that a mistyped requestId is soon forgotten.
pub const PENDING_CANCEL_HOURS: i64 = 24;
const PENDING_PREFIX: &str = "pending-cancels/";

/// A cancel waiting for its request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingCancel {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub payload_sha256: String,
}

fn pending_ref(state: &StateStore, id: &RequestId) -> BlobRef {
    state.blob(STATE, format!("{PENDING_PREFIX}{id}.json"))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub async fn run(svc: &Services, body: &[u8], sha: &str) -> Result<HandlerResult, FnError> {
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
        return remember(svc, &id, reason, sha).await;
    };
    if matches!(
        initial.state,
        RequestState::Received | RequestState::Planned | RequestState::InProgress
    ) && all_slices_finished(svc, &id).await?
    {
        return Ok(Err((
            Some(id.clone()),
            refused(
                "already_finished",
                format!("every part of request {id} had finished its work when the cancel arrived: there is nothing left to stop, and the request ends with its own outcome (its result follows)"),
            ),
        )));
    }
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
        None => Err((Some(id.clone()), super::unknown_request(&id))),
    })
}

/// Whether every planned slice of `id` has stored its result (its work is done; only fan-in
/// is left).
async fn all_slices_finished(svc: &Services, id: &RequestId) -> Result<bool, FnError> {
    let state = svc.state();
    let Some(plan) = state.plan(id).await? else {
        return Ok(false);
    };
    for s in &plan.slices {
        let r = state.result_ref(id, &s.key);
        let page = state
            .store
            .list_page(&r.account, &r.container, &r.name, None, 1)
            .await?;
        if !page.items.iter().any(|i| i.name == r.name) {
            return Ok(false);
        }
    }
    Ok(!plan.slices.is_empty())
}

/// A cancel for a request not accepted (yet): remembered, announced as `cancel_pending`.
async fn remember(
    svc: &Services,
    id: &RequestId,
    reason: Option<String>,
    sha: &str,
) -> Result<HandlerResult, FnError> {
    let state = svc.state();
    let now = OffsetDateTime::now_utc();
    let pending = PendingCancel {
        at: now,
        until: now + time::Duration::hours(PENDING_CANCEL_HOURS),
        reason,
        payload_sha256: sha.to_string(),
    };
    let created = state
        .store
        .create_json(&pending_ref(&state, id), &pending)
        .await?;
    // Intake looks for a pending cancel after it records a request; this looks for the request
    // after recording the cancel: whichever comes second sees the other.
    if lifecycle_init(svc, id).await?.is_some() {
        apply_pending(svc, id).await?;
        return Ok(Ok((id.clone(), true, json!({"appliedAtOnce": true}))));
    }
    let stored: PendingCancel = state
        .store
        .read_json(&pending_ref(&state, id))
        .await?
        .unwrap_or(pending);
    let mut m = LifecycleMessage::new("cancel_pending", Some(id.to_string()), stored.at);
    m.control = Some("cancel".into());
    m.reason = Some(format!(
        "no request with requestId {id} has been accepted yet; if it arrives before {}, it is cancelled on arrival and nothing in it is started",
        rfc3339(stored.until)
    ));
    let message_id = format!(
        "cancel-pending/{id}/{}",
        short_hash(&[&stored.payload_sha256], 16)
    );
    let trace = lc::trace_id_of(&state, id).await?;
    crate::trace::in_trace(&trace, lc::send(svc, message_id, &m, Some(id))).await?;
    info!(request = %id, "control: cancel remembered for a request not yet accepted");
    Ok(Ok((
        id.clone(),
        created,
        json!({"pending": true, "until": rfc3339(stored.until), "reason": stored.reason}),
    )))
}

async fn audit(svc: &Services, name: String, record: serde_json::Value) -> Result<(), FnError> {
    crate::functions::audit_trail::record(&svc.state(), &name, &record).await?;
    Ok(())
}

/// Intake, on accepting request `id`: a cancel remembered for it is applied (within its time)
/// or forgotten (after it), audited either way, and its record removed.
pub async fn apply_pending(svc: &Services, id: &RequestId) -> Result<(), FnError> {
    let state = svc.state();
    let r = pending_ref(&state, id);
    let Some(p) = state.store.read_json::<PendingCancel>(&r).await? else {
        return Ok(());
    };
    let now = OffsetDateTime::now_utc();
    let base = format!("lifecycle/{id}/cancel-{}", p.payload_sha256);
    if now <= p.until {
        let Some(init) = lifecycle_init(svc, id).await? else {
            return Ok(());
        };
        let mut previous = None;
        let out = lc::update(
            &state,
            id,
            || Some(init.clone()),
            |doc| {
                previous = Some(doc.state);
                doc.cancel(now, p.reason.clone())
                    .map(|changed| changed.then_some(()))
            },
        )
        .await?;
        match out {
            Some(Changed::Yes((), doc)) => {
                crate::trace::in_trace(&doc.trace_id, lc::announce_state(svc, &doc, previous))
                    .await?;
                audit(
                    svc,
                    format!("{base}-on-arrival.json"),
                    json!({"event": "pending_cancel_applied", "requestId": id, "cancelledAt": rfc3339(p.at), "appliedAt": rfc3339(now), "payloadSha256": p.payload_sha256}),
                )
                .await?;
                info!(request = %id, "control: a cancel that arrived before its request was applied");
            }
            Some(Changed::Refused(e)) => {
                warn!(request = %id, code = e.code, "control: a pending cancel could not be applied");
            }
            _ => {}
        }
    } else {
        audit(
            svc,
            format!("{base}-expired.json"),
            json!({"event": "pending_cancel_expired", "requestId": id, "cancelledAt": rfc3339(p.at), "until": rfc3339(p.until), "requestArrivedAt": rfc3339(now), "payloadSha256": p.payload_sha256}),
        )
        .await?;
        warn!(request = %id, "control: a cancel remembered for this request expired before it arrived; the request goes ahead");
    }
    match state.store.delete(&r).await {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Pending cancels whose request never came, removed after their time (the retention sweep).
pub async fn expire_pending(svc: &Services, now: OffsetDateTime) -> Result<usize, FnError> {
    let state = svc.state();
    let mut n = 0;
    for item in state
        .store
        .list_all(&state.account, STATE, PENDING_PREFIX)
        .await?
    {
        let b = state.blob(STATE, item.name.clone());
        let Some(p) = state.store.read_json::<PendingCancel>(&b).await? else {
            continue;
        };
        if now > p.until {
            match state.store.delete(&b).await {
                Ok(_) | Err(StoreError::NotFound(_)) => n += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(n)
}

/// Fan-in found that a cancel stopped nothing (every item has its outcome): the request ends in
/// the state its report earned, announced and audited, instead of a false `cancelled`.
pub async fn settle_overtaken(
    svc: &Services,
    id: &RequestId,
    status: FinalStatus,
) -> Result<(), FnError> {
    let to = RequestState::from_final(status);
    let now = OffsetDateTime::now_utc();
    let state = svc.state();
    let out = lc::update(
        &state,
        id,
        || None,
        |doc| doc.cancel_overtaken(to, now).map(|c| c.then_some(())),
    )
    .await?;
    match out {
        Some(Changed::Yes((), doc)) => {
            lc::announce_state(svc, &doc, Some(RequestState::Cancelled)).await?;
            audit(
                svc,
                format!("lifecycle/{id}/cancel-overtaken.json"),
                json!({"event": "cancel_overtaken", "requestId": id, "state": to, "reason": crate::domain::lifecycle::CANCEL_OVERTAKEN, "at": rfc3339(now)}),
            )
            .await?;
            info!(request = %id, state = %to, "lifecycle: a cancel that stopped nothing; the request ends with its own outcome");
        }
        Some(Changed::Refused(e)) => {
            warn!(request = %id, code = e.code, "lifecycle: an overtaken cancel could not be settled")
        }
        _ => {}
    }
    Ok(())
}
