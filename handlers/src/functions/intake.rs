//! `dsr-intake`: validate a DSR, archive the original, resolve the subject, plan the slices,
//! persist the plan, fan out. Invalid requests are rejected (result message + audit), never
//! retried: the Service Bus message completes.

use time::OffsetDateTime;
use tracing::{info, warn};

use super::{Delivery, FnError, Services};
use crate::domain::ids::{sha256_hex, short_hash};
use crate::domain::plan::Plan;
use crate::domain::report::{FinalStatus, ResultMessage};
use crate::domain::request::{DsrRequest, Rejection};
use crate::domain::slice::SliceTask;
use crate::domain::subject::ResolvedSubject;
use crate::domain::workspace::WorkspaceId;
use crate::ports::blob::BlobStoreExt;
use crate::ports::bus::{queues, OutMessage};
use crate::ports::directory::DirectoryError;

/// What intake did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    Planned {
        request_id: String,
        slices: usize,
    },
    /// Same request delivered again: fan-out repeated (duplicates dropped by MessageId).
    Replayed {
        request_id: String,
    },
    Rejected {
        code: String,
    },
    /// A control message (`cancel`, `extend`, ...): see `functions::control`.
    Control {
        kind: String,
        outcome: super::control::ControlOutcome,
    },
    /// An `approve`/`reject` control message was applied; the report is at `version`.
    Reviewed {
        request_id: String,
        version: u32,
    },
}

/// Runs in the trace the message carried; one that carried none starts the trace of its
/// payload (derived from its hash, so a redelivery continues it).
pub async fn run(
    svc: &Services,
    body: &[u8],
    delivery: &Delivery,
) -> Result<IntakeOutcome, FnError> {
    if crate::trace::current().is_some() {
        return run_traced(svc, body, delivery).await;
    }
    let ctx = crate::trace::TraceContext::root(crate::trace::trace_id_for(&sha256_hex(body)));
    tracing::Span::current().record("trace_id", ctx.trace_id.as_str());
    crate::trace::scope(ctx, run_traced(svc, body, delivery)).await
}

async fn run_traced(
    svc: &Services,
    body: &[u8],
    delivery: &Delivery,
) -> Result<IntakeOutcome, FnError> {
    let now = OffsetDateTime::now_utc();
    let state = svc.state();
    state.ensure_containers().await?;
    let archived = state.archive_intake(body, now).await?;
    let sha = sha256_hex(body);

    // Control messages (`type` + `version`) are handled in their own modules; a message whose
    // `type` is a request kind (or missing) is a DSR request.
    if let Some("approve" | "reject") = crate::domain::review::message_type(body).as_deref() {
        return super::review::control_message(svc, body, &sha, &archived).await;
    }
    // A control message steers a request already accepted; anything else is a request.
    if let Some(kind) = super::control::kind_of(body) {
        let outcome = super::control::run(svc, kind, body, &sha, &archived).await?;
        return Ok(IntakeOutcome::Control {
            kind: kind.to_string(),
            outcome,
        });
    }

    let request = match DsrRequest::parse(body) {
        Ok(r) => r,
        Err(rejection) => return reject(svc, rejection, &sha, &archived, None).await,
    };

    // Idempotency: the plan is the record that this requestId was accepted.
    if let Some(plan) = state.plan(&request.request_id).await? {
        return replay_or_conflict(svc, &request, &plan, &sha, &archived).await;
    }

    if let Some(r) = out_of_scope(&svc.scope().await?, &request) {
        return reject(svc, r, &sha, &archived, request.reply_to.clone()).await;
    }

    let subject = match resolve(svc, &request).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let r = Rejection {
                code: "subject_not_found".into(),
                reason: "the subject could not be found in the identity directory".into(),
                request_id: Some(request.request_id.to_string()),
            };
            return reject(svc, r, &sha, &archived, request.reply_to.clone()).await;
        }
        Err(DirectoryError::Transient(e)) => {
            return Err(FnError::Transient(format!("directory: {e}")))
        }
        Err(DirectoryError::Other(e)) => return Err(FnError::Transient(format!("directory: {e}"))),
    };

    let mut request = request;
    if request.received_at.is_none() {
        request.received_at = delivery.enqueued_time;
    }
    let holds = svc.holds().await?;
    let plan = Plan::build(&request, subject, &holds, now, sha);
    let span = tracing::Span::current();
    span.record("request", plan.request_id.as_str());
    span.record("subject", plan.subject_log_id.as_str());
    // Persist before sending anything: the aggregator's definition of "done".
    if !state
        .store
        .create_json(&state.plan_ref(&plan.request_id), &plan)
        .await?
    {
        // Lost a race with a concurrent delivery: the same message, or another request that
        // reuses this id. Only the same content is replayed.
        let existing = state
            .plan(&plan.request_id)
            .await?
            .ok_or_else(|| FnError::Transient("plan vanished".into()))?;
        return replay_or_conflict(svc, &request, &existing, &plan.request_sha256, &archived).await;
    }
    start_lifecycle(svc, &plan).await?;
    fan_out(svc, &plan).await?;
    info!(
        request = %plan.request_id,
        kind = plan.kind.as_str(),
        subject = %plan.subject_log_id,
        slices = plan.slices.len(),
        dry_run = plan.dry_run,
        deadline = %plan.deadline,
        "intake: request planned and fanned out"
    );
    Ok(IntakeOutcome::Planned {
        request_id: plan.request_id.to_string(),
        slices: plan.slices.len(),
    })
}

/// A request whose id already has a plan: the same content is a redelivery (fan-out
/// repeated, duplicates dropped by MessageId); other content reusing the id is rejected, so the
/// sender learns that the second request was not carried out (the original stays archived).
async fn replay_or_conflict(
    svc: &Services,
    request: &DsrRequest,
    plan: &Plan,
    sha: &str,
    archived: &str,
) -> Result<IntakeOutcome, FnError> {
    if plan.request_sha256 != sha {
        let r = Rejection {
            code: "request_conflict".into(),
            reason: format!(
                "requestId {} was already used for a different request, which is being or has been carried out; this request was not carried out: send it again with a new requestId",
                request.request_id
            ),
            request_id: Some(request.request_id.to_string()),
        };
        return reject(svc, r, sha, archived, request.reply_to.clone()).await;
    }
    start_lifecycle(svc, plan).await?;
    fan_out(svc, plan).await?;
    info!(request = %plan.request_id, subject = %plan.subject_log_id, "intake: duplicate delivery, fan-out replayed");
    Ok(IntakeOutcome::Replayed {
        request_id: plan.request_id.to_string(),
    })
}

/// Intake acts only on workspaces the service is configured for (`Services::scope`). An empty
/// scope refuses every request: a privacy tool that acts on whatever its identity can reach,
/// because nobody said otherwise, is the failure this guards against.
fn out_of_scope(scope: &[WorkspaceId], request: &DsrRequest) -> Option<Rejection> {
    let reason = if scope.is_empty() {
        "no workspaces are configured for this service (azureml-dsr workspace add); every request is refused until an operator configures them".to_string()
    } else {
        // Workspace ids compare normalised (ARM ids are case-insensitive).
        let outside: Vec<String> = request
            .workspaces
            .iter()
            .enumerate()
            .filter(|(_, w)| !scope.contains(w))
            .map(|(i, w)| format!("scope.workspaces[{i}] ({w})"))
            .collect();
        if outside.is_empty() {
            return None;
        }
        format!(
            "{} not among the workspaces this service is configured for; nothing was done",
            if outside.len() == 1 {
                format!("{} is", outside[0])
            } else {
                format!("{} are", outside.join(", "))
            }
        )
    };
    Some(Rejection {
        code: "workspace_out_of_scope".into(),
        reason,
        request_id: Some(request.request_id.to_string()),
    })
}

/// Record the request as received and planned (once) and tell the ticketing system. Before the
/// fan-out, so a cancel can find the request as soon as any slice can start; a redelivery
/// repeats the announcements under the same MessageIds, which the bus drops.
async fn start_lifecycle(svc: &Services, plan: &Plan) -> Result<(), FnError> {
    use super::lifecycle::{self as lc, Changed};
    use crate::domain::lifecycle::RequestState;
    let doc = super::control::from_plan(plan);
    let now = OffsetDateTime::now_utc();
    let r = lc::update(
        &svc.state(),
        &plan.request_id,
        || Some(doc.clone()),
        |d| {
            // Rejected before (no plan then), sent again and accepted now: a new start.
            if d.state != RequestState::Rejected {
                return Ok(None);
            }
            d.transition(RequestState::Received, now, Some("submitted again".into()))?;
            d.transition(RequestState::Planned, now, None)?;
            d.regulation = plan.regulation;
            d.received_at = plan.received_at;
            d.original_deadline = plan.deadline;
            d.deadline = plan.deadline;
            Ok(Some(()))
        },
    )
    .await?;
    let stored = match r {
        Some(Changed::Yes((), d) | Changed::Unchanged(d)) => d,
        _ => return Ok(()),
    };
    announce_received_and_planned(svc, &stored).await?;
    // A cancel that overtook this request on the queue is applied now, before any slice starts.
    super::control::cancel::apply_pending(svc, &plan.request_id).await
}

/// Announce the request's latest `received` and `planned` changes (a redelivery repeats them
/// under the same MessageIds, which the bus drops).
async fn announce_received_and_planned(
    svc: &Services,
    stored: &crate::domain::lifecycle::Lifecycle,
) -> Result<(), FnError> {
    use crate::domain::lifecycle::RequestState;
    let from = stored
        .history
        .iter()
        .rposition(|h| h.state == RequestState::Received)
        .unwrap_or(0);
    let mut partial = stored.clone();
    for n in (from + 1)..=stored.history.len() {
        let state = stored.history[n - 1].state;
        if !matches!(
            state,
            RequestState::Received | RequestState::Planned | RequestState::Rejected
        ) {
            break;
        }
        partial.history = stored.history[..n].to_vec();
        partial.state = state;
        let previous = (n > 1).then(|| stored.history[n - 2].state);
        super::lifecycle::announce_state(svc, &partial, previous).await?;
    }
    Ok(())
}

/// A request refused at intake whose id could be read and that has no plan: its lifecycle says
/// rejected (received -> rejected), announced like every change. A request that reused the id
/// of an accepted one (a conflict) leaves that one's lifecycle alone.
async fn record_rejected(svc: &Services, r: &Rejection) -> Result<(), FnError> {
    use super::lifecycle::{self as lc, Changed};
    use crate::domain::lifecycle::{Lifecycle, RequestState};
    let Some(id) = r
        .request_id
        .as_deref()
        .and_then(|i| crate::domain::request::RequestId::parse(i).ok())
    else {
        return Ok(());
    };
    let state = svc.state();
    if state.plan(&id).await?.is_some() {
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let regulation = crate::domain::deadline::Regulation::default();
    let trace_id = crate::trace::current()
        .map(|c| c.trace_id)
        .unwrap_or_else(|| crate::trace::trace_id_for(id.as_str()));
    let init = Lifecycle::received(
        id.clone(),
        regulation,
        now,
        crate::domain::deadline::deadline(regulation, now),
        now,
        trace_id,
    );
    let reason = r.reason.clone();
    let out = lc::update(
        &state,
        &id,
        || Some(init.clone()),
        |d| {
            if d.state == RequestState::Rejected {
                // Rejected again: a new received -> rejected pair.
                d.transition(RequestState::Received, now, Some("submitted again".into()))?;
            }
            d.transition(RequestState::Rejected, now, Some(reason.clone()))
                .map(|changed| changed.then_some(()))
        },
    )
    .await?;
    match out {
        Some(Changed::Yes((), d)) => announce_received_and_planned(svc, &d).await,
        Some(Changed::Refused(e)) => {
            warn!(request = %id, reason = %e.reason, "intake: rejection not recorded in the lifecycle");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Send the plan's slice tasks, in the request's trace (a timer's retention sweep has no trace
/// of its own: its request's is derived from the plan, as intake derives a request's).
pub async fn fan_out(svc: &Services, plan: &Plan) -> Result<(), FnError> {
    let trace_id = crate::trace::trace_id_for(&plan.request_sha256);
    crate::trace::within(&trace_id, async {
        let msgs = plan
            .slices
            .iter()
            .map(|spec| {
                let task = SliceTask::from_plan(plan, spec);
                OutMessage::json(&spec.resource_type.queue(), task.message_id(), &task)
                    .correlated(plan.request_id.to_string())
            })
            .collect();
        svc.bus.send_all(msgs).await
    })
    .await?;
    Ok(())
}

async fn resolve(
    svc: &Services,
    request: &DsrRequest,
) -> Result<Option<ResolvedSubject>, DirectoryError> {
    let entry = svc.directory.lookup(&request.subject).await?;
    let s = &request.subject;
    let resolved = match (entry, s.object_id) {
        (Some(e), _) => {
            let upn = e.upn.clone().or_else(|| s.upn.clone());
            // The folder name comes from the directory (its aliases, else its UPN's local
            // part), never from the request's UPN alone.
            let mut aliases = e.notebook_aliases.clone();
            if aliases.is_empty() {
                if let Some(u) = &e.upn {
                    aliases.push(u.local_part().to_string());
                }
            }
            // A folder name another person maps to as well is nobody's to erase alone.
            let mut kept = Vec::new();
            let mut conflicts = 0u32;
            for a in aliases {
                if svc
                    .directory
                    .alias_holders(&a)
                    .await?
                    .iter()
                    .any(|oid| *oid != e.object_id)
                {
                    conflicts += 1;
                } else {
                    kept.push(a);
                }
            }
            ResolvedSubject {
                object_id: e.object_id,
                tenant_id: e.tenant_id.or(s.tenant_id),
                upn,
                display_name: e.display_name.clone(),
                notebook_aliases: kept,
                notebook_alias_conflicts: conflicts,
            }
        }
        // An object id is already the identity the data is keyed by; the directory may simply
        // not know a departed user.
        (None, Some(oid)) => ResolvedSubject {
            object_id: oid,
            tenant_id: s.tenant_id,
            upn: s.upn.clone(),
            // Only lists display-name matches for review; never proof of anything.
            display_name: s.display_name.clone(),
            // A UPN the directory does not confirm never names a folder to erase: the
            // notebooks slice leaves `Users/` alone and says so (needs review).
            notebook_aliases: vec![],
            notebook_alias_conflicts: 0,
        },
        (None, None) => return Ok(None),
    };
    Ok(Some(resolved))
}

pub(super) async fn reject(
    svc: &Services,
    r: Rejection,
    sha: &str,
    archived: &str,
    reply_to: Option<String>,
) -> Result<IntakeOutcome, FnError> {
    let state = svc.state();
    let audit = serde_json::json!({
        "event": "rejected",
        "code": r.code,
        "reason": r.reason,
        "requestId": r.request_id,
        "payloadSha256": sha,
        "archivedAs": format!("{}/{archived}", crate::state::ARCHIVE),
        "at": OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    });
    super::audit_trail::record(&state, &format!("rejected/{sha}.json"), &audit).await?;
    let msg = ResultMessage {
        schema_version: "1.0".into(),
        request_id: r.request_id.clone(),
        kind: None,
        status: FinalStatus::Rejected,
        code: Some(r.code.clone()),
        reason: Some(r.reason.clone()),
        dry_run: false,
        counts: None,
        deadline: None,
        report: None,
        export_link: None,
        reply_to,
    };
    let id = format!("rejected/{}", short_hash(&[sha], 24));
    svc.bus
        .send(OutMessage::json(queues::RESULTS, id, &msg))
        .await?;
    record_rejected(svc, &r).await?;
    // The reason is safe to log; the payload (personal data) is not.
    warn!(code = %r.code, reason = %r.reason, payload_sha256 = %sha, "intake: request rejected");
    Ok(IntakeOutcome::Rejected { code: r.code })
}
