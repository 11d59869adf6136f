//! The lifecycle's I/O: the per-request [`Lifecycle`] document in the state account, changed
//! with optimistic concurrency (If-Match on the version read), the index of open requests the
//! timer walks, and the lifecycle messages the ticketing system receives on the results queue.
//! Every message has a deterministic MessageId, so a redelivered change is not announced twice.

use time::OffsetDateTime;
use tracing::{info, warn};

use super::{FnError, Services};
use crate::domain::lifecycle::{Lifecycle, Refusal, RequestState, WarningKind};
use crate::domain::request::RequestId;
use crate::ports::blob::{BlobRef, BlobStoreExt, Condition, StoreError};
use crate::ports::bus::{queues, OutMessage};
use crate::state::{StateStore, STATE};

/// Index of requests whose deadline still matters (`open/<id>`), in [`STATE`].
pub const OPEN_PREFIX: &str = "open/";

pub fn lifecycle_ref(state: &StateStore, id: &RequestId) -> BlobRef {
    state.blob(STATE, format!("requests/{id}/lifecycle.json"))
}

fn open_ref(state: &StateStore, id: &RequestId) -> BlobRef {
    state.blob(STATE, format!("{OPEN_PREFIX}{id}"))
}

pub async fn load(state: &StateStore, id: &RequestId) -> Result<Option<Lifecycle>, FnError> {
    Ok(state.store.read_json(&lifecycle_ref(state, id)).await?)
}

/// What a change did.
pub enum Changed<T> {
    /// Stored; `T` is what the change returned.
    Yes(T, Lifecycle),
    /// Nothing to change (a redelivery): the document as it is.
    Unchanged(Lifecycle),
    /// The change refused (nothing stored).
    Refused(Refusal),
}

/// Apply `change` to the stored document (or to `init()` when there is none) and store the
/// result with If-Match / If-None-Match, re-reading and re-applying when another writer won.
/// `change` returning `Ok(None)` means "nothing to store".
pub async fn update<T, F>(
    state: &StateStore,
    id: &RequestId,
    init: impl Fn() -> Option<Lifecycle>,
    mut change: F,
) -> Result<Option<Changed<T>>, FnError>
where
    F: FnMut(&mut Lifecycle) -> Result<Option<T>, Refusal>,
{
    let blob = lifecycle_ref(state, id);
    for _ in 0..16 {
        let (mut doc, condition) = match state.store.read_small(&blob).await {
            Ok((bytes, etag)) => (
                serde_json::from_slice::<Lifecycle>(&bytes)
                    .map_err(|e| FnError::Transient(format!("{blob} cannot be read: {e}")))?,
                Condition::IfMatch(etag),
            ),
            Err(StoreError::NotFound(_)) => match init() {
                Some(d) => (d, Condition::IfNotExists),
                None => return Ok(None),
            },
            Err(e) => return Err(e.into()),
        };
        // A document made by `init` is stored even when the change has nothing to add.
        let fresh = matches!(condition, Condition::IfNotExists);
        let out = match change(&mut doc) {
            Ok(Some(t)) => Some(t),
            Ok(None) if fresh => None,
            Ok(None) => return Ok(Some(Changed::Unchanged(doc))),
            Err(r) => return Ok(Some(Changed::Refused(r))),
        };
        let body = serde_json::to_vec_pretty(&doc)
            .map_err(|e| FnError::Transient(format!("lifecycle: {e}")))?;
        match state
            .store
            .put(
                &blob,
                bytes::Bytes::from(body),
                "application/json",
                condition,
                &Default::default(),
            )
            .await
        {
            Ok(_) => {
                sync_open_index(state, &doc).await?;
                return Ok(Some(match out {
                    Some(t) => Changed::Yes(t, doc),
                    None => Changed::Unchanged(doc),
                }));
            }
            Err(StoreError::ConditionFailed(_) | StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(FnError::Transient(format!(
        "{blob}: too many concurrent changes"
    )))
}

/// Keep `open/<id>` in step with the document: present while the request is open.
async fn sync_open_index(state: &StateStore, doc: &Lifecycle) -> Result<(), FnError> {
    let r = open_ref(state, &doc.request_id);
    if doc.state.is_open() {
        state.store.create_json(&r, &serde_json::json!({})).await?;
    } else {
        match state.store.delete(&r).await {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Ids of the requests in the open index.
pub async fn open_requests(state: &StateStore) -> Result<Vec<RequestId>, FnError> {
    Ok(state
        .store
        .list_all(&state.account, STATE, OPEN_PREFIX)
        .await?
        .into_iter()
        .filter_map(|i| {
            i.name
                .strip_prefix(OPEN_PREFIX)
                .and_then(|n| RequestId::parse(n).ok())
        })
        .collect())
}

/// A lifecycle message on the results queue (schema: `schemas/dsr-lifecycle-message.schema.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleMessage {
    pub schema_version: String,
    /// `state_changed`, `deadline_extended`, `deadline_approaching`, `deadline_missed`,
    /// `control_rejected`.
    pub event: String,
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<RequestState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_state: Option<RequestState>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub deadline: Option<OffsetDateTime>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub previous_deadline: Option<OffsetDateTime>,
    /// The control message this answers (`cancel`, `extend`, ...), for `control_rejected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl LifecycleMessage {
    pub fn new(event: &str, request_id: Option<String>, at: OffsetDateTime) -> Self {
        Self {
            schema_version: "1.0".into(),
            event: event.into(),
            request_id,
            state: None,
            previous_state: None,
            deadline: None,
            previous_deadline: None,
            control: None,
            code: None,
            reason: None,
            at,
        }
    }
}

/// Whether a results-queue body is a lifecycle message (it has `event`) rather than a result
/// (`status`): both share the queue the ticketing system reads.
pub fn is_lifecycle_message(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("event").map(|e| e.is_string()))
        .unwrap_or(false)
}

/// Application property naming the kind of a results-queue message (`lifecycle`), so a topic
/// subscription can filter on it (`DsrMessage = 'lifecycle'`).
pub const KIND_PROPERTY: &str = "DsrMessage";

pub async fn send(
    svc: &Services,
    message_id: String,
    msg: &LifecycleMessage,
    correlation: Option<&RequestId>,
) -> Result<(), FnError> {
    let mut m = OutMessage::json(queues::RESULTS, message_id, msg);
    m.application_properties.insert(
        KIND_PROPERTY.into(),
        serde_json::Value::String("lifecycle".into()),
    );
    if let Some(id) = correlation {
        m = m.correlated(id.to_string());
    }
    svc.bus.send(m).await?;
    Ok(())
}

/// Announce that `doc` entered its current state from `previous`.
pub async fn announce_state(
    svc: &Services,
    doc: &Lifecycle,
    previous: Option<RequestState>,
) -> Result<(), FnError> {
    let at = doc.history.last().map(|h| h.at).unwrap_or(doc.received_at);
    let mut m = LifecycleMessage::new("state_changed", Some(doc.request_id.to_string()), at);
    m.state = Some(doc.state);
    m.previous_state = previous;
    m.deadline = Some(doc.deadline);
    m.reason = doc.history.last().and_then(|h| h.reason.clone());
    // The n-th change of a request: a redelivery that re-announces it is dropped by the bus.
    let id = format!(
        "state/{}/{}/{}",
        doc.request_id,
        doc.history.len(),
        doc.state.as_str()
    );
    send(svc, id, &m, Some(&doc.request_id)).await
}

/// Move request `id` to `to` and announce it. A request with no lifecycle document (one
/// accepted before this feature existed) or a change the lifecycle refuses is logged and
/// skipped: the pipeline's own work never fails over its bookkeeping.
pub async fn advance(
    svc: &Services,
    id: &RequestId,
    to: RequestState,
    reason: Option<String>,
) -> Result<Option<Lifecycle>, FnError> {
    let now = OffsetDateTime::now_utc();
    let state = svc.state();
    let mut previous = None;
    let r = update(
        &state,
        id,
        || None,
        |doc| {
            previous = Some(doc.state);
            match doc.transition(to, now, reason.clone()) {
                Ok(true) => Ok(Some(())),
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            }
        },
    )
    .await?;
    match r {
        Some(Changed::Yes((), doc)) => {
            announce_state(svc, &doc, previous).await?;
            info!(request = %id, state = %doc.state, "lifecycle: state changed");
            Ok(Some(doc))
        }
        Some(Changed::Unchanged(doc)) => Ok(Some(doc)),
        Some(Changed::Refused(r)) => {
            warn!(request = %id, to = %to, reason = %r.reason, "lifecycle: change not allowed; left as it is");
            load(&state, id).await
        }
        None => Ok(None),
    }
}

/// The trace a request's messages go in, for work that has none of its own (the timer, the
/// review CLI) or another's (a control message): the lifecycle's, else the one intake derives
/// from the request's hash, else one derived from its id.
pub async fn trace_id_of(state: &StateStore, id: &RequestId) -> Result<String, FnError> {
    Ok(match load(state, id).await? {
        Some(l) if !l.trace_id.is_empty() => l.trace_id,
        _ => match state.plan(id).await? {
            Some(plan) => crate::trace::trace_id_for(&plan.request_sha256),
            None => crate::trace::trace_id_for(id.as_str()),
        },
    })
}

/// The timer's deadline warnings: for every open request, each warning due and not yet sent
/// for its current deadline is recorded and sent (MessageId `warning/<id>/<kind>/<deadline>`,
/// so a run that crashed between the two cannot send it twice). Returns what was sent.
pub async fn send_deadline_warnings(
    svc: &Services,
    now: OffsetDateTime,
) -> Result<Vec<(String, WarningKind)>, FnError> {
    let state = svc.state();
    let days = svc.settings.deadline_warning_days;
    let mut sent = Vec::new();
    for id in open_requests(&state).await? {
        let Some(doc) = load(&state, &id).await? else {
            continue;
        };
        let due = doc.due_warnings(now, days);
        if due.is_empty() {
            continue;
        }
        // Sent before it is recorded: a run that stops in between sends it again next time
        // under the same MessageId, which the bus drops as a duplicate.
        for kind in &due {
            let mut m = LifecycleMessage::new(kind.as_str(), Some(id.to_string()), now);
            m.state = Some(doc.state);
            m.deadline = Some(doc.deadline);
            let deadline_key = doc.deadline.unix_timestamp();
            let message_id = format!("warning/{id}/{}/{deadline_key}", kind.as_str());
            // In the request's own trace, so the warning shows with the request's operation.
            crate::trace::in_trace(&doc.trace_id, send(svc, message_id, &m, Some(&id))).await?;
            warn!(request = %id, warning = kind.as_str(), state = %doc.state, "lifecycle: deadline warning sent");
            sent.push((id.to_string(), *kind));
        }
        update(
            &state,
            &id,
            || None,
            |d| {
                let mut changed = false;
                for k in &due {
                    if d.due_warnings(now, days).contains(k) {
                        d.record_warning(*k, now);
                        changed = true;
                    }
                }
                Ok(changed.then_some(()))
            },
        )
        .await?;
    }
    Ok(sent)
}
