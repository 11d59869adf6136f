//! Applying a person's review decision: the items a finished request left for review
//! (display-name-only assets) are approved or rejected; every decision is recorded in the audit
//! trail (who, when, why); approved items go through the slice engine's own export or delete
//! (holds, dry run and verification included); the report gets a new version.
//!
//! One entry, [`decide`], for the CLI (`azureml-dsr review approve|reject`) and the intake
//! queue's `approve`/`reject` control messages ([`control_message`]). Every step can be
//! repeated: a decision record is created once and a repeat must agree with it; exports
//! overwrite the same paths and deletes of deleted items report deleted; a report version is
//! created once (a concurrent decision retries on the newer version).

use time::OffsetDateTime;
use tracing::info;

use super::intake::IntakeOutcome;
use super::{FnError, Services};
use crate::domain::plan::Plan;
use crate::domain::report::{render_markdown, FinalReport, FinalStatus, ResultMessage};
use crate::domain::request::{Rejection, RequestId, RequestKind};
use crate::domain::review::{parse_control, Decision, ReviewDecision, ReviewItem};
use crate::domain::slice::{ItemOutcome, SliceTask};
use crate::ports::blob::{BlobRef, BlobStoreExt, Condition};
use crate::ports::bus::{queues, OutMessage};
use crate::state::{StateStore, AUDIT, EXPORTS, REPORTS};

/// What a decision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewOutcome {
    /// Recorded (and approved items processed); the report is now at `version`.
    Decided {
        version: u32,
        approved: Vec<String>,
        rejected: Vec<String>,
        status: FinalStatus,
    },
    /// Nothing was recorded or changed, for this reason (safe to show and log: no personal data).
    Refused(String),
}

/// Where a request's report lives: (container, `<id>/<stem>`).
fn report_base(plan: &Plan) -> (&'static str, String) {
    let stem = match (plan.kind, plan.dry_run) {
        (RequestKind::Export, false) => "manifest",
        (_, true) => "dry-run",
        _ => "certificate",
    };
    let container = if plan.kind == RequestKind::Export && !plan.dry_run {
        EXPORTS
    } else {
        REPORTS
    };
    (container, format!("{}/{stem}", plan.request_id))
}

/// The newest version of a request's report: `<stem>.json` is version 1, `<stem>.vN.json`
/// version N (telemetry purges and review decisions each add one). `None` before the request
/// is finalised.
pub async fn latest_report(
    state: &StateStore,
    plan: &Plan,
) -> Result<Option<(u32, FinalReport)>, FnError> {
    let Some((v, blob)) = latest_report_ref(state, plan).await? else {
        return Ok(None);
    };
    Ok(state
        .store
        .read_json::<FinalReport>(&blob)
        .await?
        .map(|r| (v, r)))
}

/// The newest version of a request's report (see [`latest_report`]): its number and its JSON
/// blob, unread (`<same name>.md` is its Markdown copy).
pub async fn latest_report_ref(
    state: &StateStore,
    plan: &Plan,
) -> Result<Option<(u32, BlobRef)>, FnError> {
    let (container, base) = report_base(plan);
    let mut newest: Option<(u32, String)> = None;
    for b in state
        .store
        .list_all(&state.account, container, &base)
        .await?
    {
        let version = if b.name == format!("{base}.json") {
            Some(1)
        } else {
            b.name
                .strip_prefix(&format!("{base}.v"))
                .and_then(|r| r.strip_suffix(".json"))
                .and_then(|n| n.parse::<u32>().ok())
        };
        if let Some(v) = version {
            if newest.as_ref().is_none_or(|(n, _)| v > *n) {
                newest = Some((v, b.name));
            }
        }
    }
    Ok(newest.map(|(v, name)| (v, state.blob(container, name))))
}

/// Write `report` as version `version` (created once: `Ok(false)` when another writer took the
/// version first), with its Markdown copy. Returns the JSON blob's name.
pub async fn write_version(
    state: &StateStore,
    plan: &Plan,
    version: u32,
    report: &FinalReport,
) -> Result<Option<String>, FnError> {
    let (container, base) = report_base(plan);
    let json = state.blob(container, format!("{base}.v{version}.json"));
    if !state.store.create_json(&json, report).await? {
        return Ok(None);
    }
    state
        .store
        .put(
            &state.blob(container, format!("{base}.v{version}.md")),
            bytes::Bytes::from(render_markdown(report)),
            "text/markdown",
            Condition::None,
            &Default::default(),
        )
        .await?;
    Ok(Some(json.to_string()))
}

/// Every review item of a request as its newest report lists them (decided or not), with the
/// report version; `None` while the request has no report.
pub async fn items(
    svc: &Services,
    request_id: &RequestId,
) -> Result<Option<(u32, Vec<ReviewItem>)>, FnError> {
    let state = svc.state();
    let Some(plan) = state.plan(request_id).await? else {
        return Ok(None);
    };
    Ok(latest_report(&state, &plan).await?.map(|(v, r)| {
        (
            v,
            r.results
                .iter()
                .flat_map(|res| res.review.iter().cloned())
                .collect(),
        )
    }))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Record and apply a review decision (see the module doc). `Refused` changes nothing.
pub async fn decide(
    svc: &Services,
    d: &ReviewDecision,
    at: OffsetDateTime,
) -> Result<ReviewOutcome, FnError> {
    // What a decision does to a request is announced in the request's trace, whether it came
    // from the CLI (no trace) or a control message (its own trace).
    let state = svc.state();
    let trace_id = super::lifecycle::trace_id_of(&state, &d.request_id).await?;
    crate::trace::in_trace(&trace_id, decide_in_trace(svc, d, at)).await
}

async fn decide_in_trace(
    svc: &Services,
    d: &ReviewDecision,
    at: OffsetDateTime,
) -> Result<ReviewOutcome, FnError> {
    let refuse = |why: String| Ok(ReviewOutcome::Refused(why));
    if let Err(why) = d.validate() {
        return refuse(why);
    }
    let state = svc.state();
    state.ensure_containers().await?;
    let id = &d.request_id;
    let Some(plan) = state.plan(id).await? else {
        return refuse(format!("request {id} is unknown here (never planned, or its working state was removed after DSR_STATE_RETENTION_DAYS)"));
    };
    let Some((version, report)) = latest_report(&state, &plan).await? else {
        return refuse(format!(
            "request {id} has no report yet: its review items are listed when it finishes"
        ));
    };
    if d.approve && svc.settings.review_separate_approver {
        // Rejecting keeps data and needs no second person; approving acts on it.
        match plan.submitted_by.as_deref() {
            None => return refuse(format!("DSR_REVIEW_SEPARATE_APPROVER is set and request {id} names no submitter (submittedBy), so an approver other than the submitter cannot be ensured; nothing was approved")),
            Some(s) if s.trim().eq_ignore_ascii_case(d.approver.trim()) => {
                return refuse(format!("DSR_REVIEW_SEPARATE_APPROVER is set: the approver submitted request {id} and cannot also approve its review items; nothing was approved"))
            }
            Some(_) => {}
        }
    }

    // The named items, as the newest report lists them (slice key, item).
    let listed: Vec<(String, ReviewItem)> = report
        .results
        .iter()
        .flat_map(|r| r.review.iter().map(move |i| (r.key.clone(), i.clone())))
        .collect();
    let mut targets: Vec<(String, ReviewItem)> = Vec::new();
    let mut unknown = 0usize;
    for name in &d.items {
        match listed.iter().find(|(_, i)| i.named_by(name)) {
            Some(t) if !targets.iter().any(|(_, i)| i.id == t.1.id) => targets.push(t.clone()),
            Some(_) => {}
            None => unknown += 1,
        }
    }
    if unknown > 0 {
        return refuse(format!(
            "{unknown} of the {} named item(s) are not review items of request {id} (`azureml-dsr review {id}` lists them); nothing was decided",
            d.items.len()
        ));
    }
    if let Some((_, i)) = targets
        .iter()
        .find(|(_, i)| i.decision.as_ref().is_some_and(|p| p.approved != d.approve))
    {
        return refuse(format!(
            "item {} of request {id} was already decided the other way; a decision is final",
            i.id
        ));
    }

    // The audit trail first: one record per item, created once. A record that exists (a
    // redelivery, a crash after recording) must agree, and its who/when/why stand.
    let mut decided: Vec<(String, ReviewItem, Decision)> = Vec::new();
    for (key, item) in targets {
        let mut decision = Decision {
            approved: d.approve,
            by: d.approver.trim().to_string(),
            at,
            reason: d.reason.trim().to_string(),
        };
        let record = state.blob(AUDIT, format!("reviews/{id}/{}.json", item.id));
        let body = serde_json::json!({
            "requestId": id, "item": item.id, "resourceType": item.resource_type,
            "resourceId": item.resource_id, "evidence": item.evidence,
            "decision": if d.approve { "approve" } else { "reject" },
            "approved": decision.approved, "by": decision.by, "at": rfc3339(at), "reason": decision.reason,
        });
        if !state.store.create_json(&record, &body).await? {
            let existing: Option<serde_json::Value> = state.store.read_json(&record).await?;
            let prior = existing.and_then(|v| {
                Some(Decision {
                    approved: v.get("approved")?.as_bool()?,
                    by: v.get("by")?.as_str()?.to_string(),
                    at: OffsetDateTime::parse(
                        v.get("at")?.as_str()?,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .ok()?,
                    reason: v.get("reason")?.as_str()?.to_string(),
                })
            });
            match prior {
                Some(p) if p.approved == d.approve => decision = p,
                _ => {
                    return refuse(format!(
                        "item {} of request {id} was already decided the other way; a decision is final",
                        item.id
                    ))
                }
            }
        }
        // Chained once per name (a redelivery after a crash does not chain it twice).
        let stored: serde_json::Value = state.store.read_json(&record).await?.unwrap_or(body);
        super::audit_trail::record(&state, &format!("reviews/{id}/{}.json", item.id), &stored)
            .await?;
        decided.push((key, item, decision));
    }

    // Approved items: the slice engine's own processing of what discovery froze for them.
    let mut outcomes: Vec<(String, Vec<ItemOutcome>)> = Vec::new();
    for (key, item, decision) in &decided {
        if !decision.approved || item.decision.is_some() {
            continue;
        }
        let Some(spec) = plan.slice(key) else {
            return refuse(format!(
                "item {} names a slice request {id} does not have",
                item.id
            ));
        };
        let task = SliceTask::from_plan(&plan, spec);
        let Some(candidate) = state
            .inventory(&task)
            .await?
            .and_then(|inv| inv.candidates.into_iter().find(|c| c.review.id == item.id))
        else {
            return refuse(format!("item {} of request {id}: what discovery found for it is no longer stored (working state removed); submit a new request", item.id));
        };
        let mut out = super::slice::process(svc, &task, &candidate.entries).await?;
        if task.kind.mutates() && !task.dry_run && task.hold.is_none() {
            super::slice::verify(svc, &task, &mut out)
                .await
                .map_err(|e| match e {
                    super::discovery::DiscoveryError::Retry(e) => e,
                    super::discovery::DiscoveryError::Permanent(m) => FnError::Transient(m),
                })?;
        }
        outcomes.push((item.id.clone(), out));
    }

    // The new report version: decisions on the items, approved items' outcomes in their slice.
    let mut next = report.clone();
    for res in &mut next.results {
        for i in &mut res.review {
            if let Some((_, _, dec)) = decided.iter().find(|(_, t, _)| t.id == i.id) {
                if i.decision.is_none() {
                    i.decision = Some(dec.clone());
                    if let Some((_, out)) = outcomes.iter().find(|(oid, _)| *oid == i.id) {
                        res.items.extend(out.iter().cloned());
                    }
                }
            }
        }
    }
    let approved: Vec<String> = decided
        .iter()
        .filter(|(_, _, d)| d.approved)
        .map(|(_, i, _)| i.id.clone())
        .collect();
    let rejected: Vec<String> = decided
        .iter()
        .filter(|(_, _, d)| !d.approved)
        .map(|(_, i, _)| i.id.clone())
        .collect();
    if next == report {
        // Every named item already carried this decision: a repeat, nothing to write.
        return Ok(ReviewOutcome::Decided {
            version,
            approved,
            rejected,
            status: report.status,
        });
    }
    let next = next.revised(at, |_, _| None);
    let new_version = version + 1;
    let Some(written) = write_version(&state, &plan, new_version, &next).await? else {
        // A concurrent decision wrote this version first: retry on top of it.
        return Err(FnError::Transient(format!(
            "report version {new_version} of {id} was written concurrently; retry"
        )));
    };
    let audit = serde_json::json!({
        "requestId": id,
        "type": next.kind,
        "version": new_version,
        "change": "review decision",
        "previousStatus": report.status,
        "status": next.status,
        "subject": next.subject_log_id,
        "revisedAt": rfc3339(at),
        "approved": approved,
        "rejected": rejected,
        "by": d.approver.trim(),
        "reason": d.reason.trim(),
        "report": written,
        "reportSha256": crate::domain::ids::sha256_hex(&serde_json::to_vec(&next).unwrap_or_default()),
    });
    super::audit_trail::record(
        &state,
        &format!("requests/{id}.v{new_version}.json"),
        &audit,
    )
    .await?;
    let msg = ResultMessage {
        schema_version: "1.0".into(),
        request_id: Some(id.to_string()),
        kind: Some(next.kind),
        status: next.status,
        code: None,
        reason: None,
        dry_run: next.dry_run,
        counts: Some(next.counts.clone()),
        deadline: Some(next.deadline),
        report: Some(written),
        export_link: None,
        reply_to: plan.reply_to.clone(),
    };
    svc.bus
        .send(
            OutMessage::json(queues::RESULTS, format!("result/{id}/v{new_version}"), &msg)
                .correlated(id.to_string()),
        )
        .await?;
    // The lifecycle follows the decision (needs review -> completed, partially failed, ...).
    super::lifecycle::advance(
        svc,
        id,
        crate::domain::lifecycle::RequestState::from_final(next.status),
        None,
    )
    .await?;
    info!(request = %id, version = new_version, approved = approved.len(), rejected = rejected.len(), status = ?next.status, "review: decision recorded and applied");
    Ok(ReviewOutcome::Decided {
        version: new_version,
        approved,
        rejected,
        status: next.status,
    })
}

/// An `approve`/`reject` control message from the intake queue (already archived as
/// `archived`, hash `sha`): validated like a request; a bad message or a refused decision is
/// rejected with its reason (result message and audit record), never retried.
pub async fn control_message(
    svc: &Services,
    body: &[u8],
    sha: &str,
    archived: &str,
) -> Result<IntakeOutcome, FnError> {
    let d = match parse_control(body) {
        Ok(d) => d,
        Err(r) => return super::intake::reject(svc, r, sha, archived, None).await,
    };
    match decide(svc, &d, OffsetDateTime::now_utc()).await? {
        ReviewOutcome::Decided { version, .. } => Ok(IntakeOutcome::Reviewed {
            request_id: d.request_id.to_string(),
            version,
        }),
        ReviewOutcome::Refused(reason) => {
            let r = Rejection {
                code: "review_refused".into(),
                reason,
                request_id: Some(d.request_id.to_string()),
            };
            super::intake::reject(svc, r, sha, archived, None).await
        }
    }
}
