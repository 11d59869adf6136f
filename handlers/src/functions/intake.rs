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
}

pub async fn run(
    svc: &Services,
    body: &[u8],
    delivery: &Delivery,
) -> Result<IntakeOutcome, FnError> {
    let now = OffsetDateTime::now_utc();
    let state = svc.state();
    state.ensure_containers().await?;
    let archived = state.archive_intake(body, now).await?;
    let sha = sha256_hex(body);

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

pub(crate) async fn fan_out(svc: &Services, plan: &Plan) -> Result<(), FnError> {
    let msgs = plan
        .slices
        .iter()
        .map(|spec| {
            let task = SliceTask::from_plan(plan, spec);
            OutMessage::json(&spec.resource_type.queue(), task.message_id(), &task)
                .correlated(plan.request_id.to_string())
        })
        .collect();
    svc.bus.send_all(msgs).await?;
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
            let mut aliases = e.notebook_aliases.clone();
            if aliases.is_empty() {
                if let Some(u) = &upn {
                    aliases.push(u.local_part().to_string());
                }
            }
            ResolvedSubject {
                object_id: e.object_id,
                tenant_id: e.tenant_id.or(s.tenant_id),
                upn,
                notebook_aliases: aliases,
            }
        }
        // An object id is already the identity the data is keyed by; the directory may simply
        // not know a departed user.
        (None, Some(oid)) => ResolvedSubject {
            object_id: oid,
            tenant_id: s.tenant_id,
            upn: s.upn.clone(),
            notebook_aliases: s.upn.iter().map(|u| u.local_part().to_string()).collect(),
        },
        (None, None) => return Ok(None),
    };
    Ok(Some(resolved))
}

async fn reject(
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
    state
        .store
        .create_json(
            &state.blob(crate::state::AUDIT, format!("rejected/{sha}.json")),
            &audit,
        )
        .await?;
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
    // The reason is safe to log; the payload (personal data) is not.
    warn!(code = %r.code, reason = %r.reason, payload_sha256 = %sha, "intake: request rejected");
    Ok(IntakeOutcome::Rejected { code: r.code })
}
