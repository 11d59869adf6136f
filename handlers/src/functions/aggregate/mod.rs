//! `dsr-aggregate`: fan-in. Records each slice completion idempotently; when every planned slice
//! is in, finalises EXACTLY once. The report document is created with If-None-Match `*`: whoever
//! creates it is the finaliser, everyone else (a redelivery, a concurrent invocation) reads the
//! stored one, so the bundle, audit record and result message are always built from the same
//! report; the audit record is create-only and the result message has a deterministic MessageId.
//! A heavy request is read and written a page at a time (`state::paged_result`, `document`).

mod document;

use time::OffsetDateTime;
use tracing::info;

use super::{FnError, Services};
use crate::domain::plan::Plan;
use crate::domain::report::{
    all_slices_in, FinalReport, FinalStatus, ReportBuilder, ResultMessage,
};
use crate::domain::request::RequestKind;
use crate::domain::slice::SliceCompletion;
use crate::ports::blob::BlobStoreExt;
use crate::ports::bus::{queues, OutMessage};
use crate::state::{StateStore, EXPORTS, REPORTS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateStep {
    /// Recorded; `have` of `want` slices are in.
    Waiting { have: usize, want: usize },
    /// This invocation (or an earlier one) finalised the request.
    Finalised { created_report: bool },
}

pub async fn run(svc: &Services, completion: &SliceCompletion) -> Result<AggregateStep, FnError> {
    let state = svc.state();
    let plan = state.plan(&completion.request_id).await?.ok_or_else(|| {
        FnError::BadRequest(format!("no plan for request {}", completion.request_id))
    })?;
    if plan.slice(&completion.key).is_none() {
        return Err(FnError::BadRequest(format!(
            "slice {} is not part of request {}",
            completion.key, completion.request_id
        )));
    }
    if !state
        .has_slice_result(&completion.request_id, &completion.key)
        .await?
    {
        return Err(FnError::BadRequest(format!(
            "slice {} has no stored result",
            completion.key
        )));
    }
    state
        .store
        .create_json(
            &state.completion_ref(&plan.request_id, &completion.key),
            &serde_json::json!({"key": completion.key}),
        )
        .await?;
    let done = state.completed_keys(&plan.request_id).await?;
    if !all_slices_in(&plan, &done) {
        return Ok(AggregateStep::Waiting {
            have: done.len(),
            want: plan.slices.len(),
        });
    }
    finalise(svc, &state, &plan).await
}

async fn finalise(
    svc: &Services,
    state: &StateStore,
    plan: &Plan,
) -> Result<AggregateStep, FnError> {
    let lifecycle = super::lifecycle::load(state, &plan.request_id).await?;
    // Whoever creates the stored report is the finaliser; a redelivery, or an invocation that
    // lost the race, goes on with the stored one (its lineage traced once, by the winner).
    let (report, created) = match state.report_head(&plan.request_id).await? {
        Some(stored) => (stored, false),
        None => {
            let candidate = build(svc, state, plan, lifecycle.as_ref()).await?;
            if state
                .store
                .create_json(&state.report_ref(&plan.request_id), &candidate)
                .await?
            {
                (candidate, true)
            } else {
                let stored = state
                    .report_head(&plan.request_id)
                    .await?
                    .ok_or_else(|| FnError::Transient("stored report vanished".into()))?;
                (stored, false)
            }
        }
    };

    // Human- and machine-readable copies: export bundle or deletion certificate, written a
    // page at a time; the audit record hashes the JSON's bytes as written.
    let (container, base) = match (plan.kind, plan.dry_run) {
        (RequestKind::Export, false) => (EXPORTS, format!("{}/", plan.request_id)),
        _ => (REPORTS, format!("{}/", plan.request_id)),
    };
    let stem = match (plan.kind, plan.dry_run) {
        (RequestKind::Export, false) => "manifest",
        (_, true) => "dry-run",
        _ => "certificate",
    };
    let json_ref = state.blob(container, format!("{base}{stem}.json"));
    let written = document::write(
        state,
        &report,
        &json_ref,
        &state.blob(container, format!("{base}{stem}.md")),
        document::BLOCK_SIZE,
    )
    .await?;

    // Append-only audit record (CCPA: keep requests and responses 24 months).
    let audit = serde_json::json!({
        "requestId": report.request_id,
        "type": report.kind,
        "status": report.status,
        "dryRun": report.dry_run,
        "regulation": report.regulation,
        "subject": report.subject_log_id,
        "receivedAt": report.received_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "deadline": report.deadline.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "finishedAt": report.finished_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "withinDeadline": report.within_deadline,
        "counts": report.counts,
        "report": json_ref.to_string(),
        "reportSha256": written.sha256,
        "itemsMerkleRoot": report.items_merkle_root,
    });
    // Chained (tamper-evident) and kept at `requests/<id>.json` as before.
    super::audit_trail::record(state, &format!("requests/{}.json", plan.request_id), &audit)
        .await?;
    // What the certificate says is retained, for the follow-up after its date.
    super::follow_up::record_ledger(state, written.ledger).await?;

    // An export's link is to its archive (built once, from the stored report), never to the
    // bare manifest: the person downloads one file holding everything and a guide to it.
    let export_link = if plan.kind == RequestKind::Export && !plan.dry_run {
        // From the stored report's head: the archive reads a paged result a page at a time.
        let archive = super::archive::ensure(
            state.store.as_ref(),
            state,
            &report,
            super::archive::BLOCK_SIZE,
        )
        .await?;
        if archive.built {
            info!(request = %plan.request_id, entries = archive.entries, bytes = archive.bytes, "aggregate: export archive written");
        }
        state
            .store
            .read_link(
                &archive.blob,
                time::Duration::days(svc.settings.export_link_days.clamp(1, 7)),
            )
            .await?
    } else {
        None
    };
    let msg = ResultMessage {
        schema_version: "1.0".into(),
        request_id: Some(plan.request_id.to_string()),
        kind: Some(plan.kind),
        status: report.status,
        code: None,
        reason: None,
        dry_run: plan.dry_run,
        counts: Some(report.counts.clone()),
        deadline: Some(report.deadline),
        report: Some(json_ref.to_string()),
        export_link,
        reply_to: plan.reply_to.clone(),
    };
    svc.bus
        .send(
            OutMessage::json(queues::RESULTS, format!("result/{}", plan.request_id), &msg)
                .correlated(plan.request_id.to_string()),
        )
        .await?;
    if lifecycle
        .as_ref()
        .is_some_and(|l| l.cancel_requested() && report.status != FinalStatus::Cancelled)
    {
        super::control::cancel::settle_overtaken(svc, &plan.request_id, report.status).await?;
    } else if lifecycle.is_some() {
        super::lifecycle::advance(
            svc,
            &plan.request_id,
            crate::domain::lifecycle::RequestState::from_final(report.status),
            None,
        )
        .await?;
    }
    if created {
        info!(request = %plan.request_id, subject = %plan.subject_log_id, status = ?report.status, items = report.counts.items, "aggregate: request finalised");
    }
    Ok(AggregateStep::Finalised {
        created_report: created,
    })
}

/// The report from the slices' stored results, read in plan order and a page at a time: counts,
/// status, Merkle root and the lineage's starting points are gathered on the way; a paged
/// result stays a head in it.
async fn build(
    svc: &Services,
    state: &StateStore,
    plan: &Plan,
    lifecycle: Option<&crate::domain::lifecycle::Lifecycle>,
) -> Result<FinalReport, FnError> {
    let mut b = ReportBuilder::new(plan);
    let mut starts = super::lineage::Starts::default();
    for s in &plan.slices {
        let head = state
            .slice_result(&plan.request_id, &s.key)
            .await?
            .ok_or_else(|| FnError::Transient(format!("result of {} missing", s.key)))?;
        starts.add(&head.workspace, &head.items);
        let pages = head.pages.is_some().then(|| head.clone());
        b.slice(head);
        if let Some(head) = pages {
            for page in 0..StateStore::result_pages(&head) {
                let items = state
                    .result_page(&plan.request_id, &head, page)
                    .await
                    .map_err(|e| FnError::Transient(format!("reading {}: {e}", s.key)))?;
                starts.add(&head.workspace, &items);
                b.items(&items);
            }
        }
    }
    let cut_short = b.cancel_cut_short();
    let mut report = b.finish(OffsetDateTime::now_utc());
    // Lineage impact (read-only).
    if plan.kind != RequestKind::Retention {
        report.derived_from_subject_data = Some(super::lineage::trace_starts(svc, starts).await);
    }
    // A cancelled request's report says so; its items say what was and was not done.
    if let Some(l) = lifecycle {
        // Only when it stopped something: a cancel that landed while the last chunk was
        // finishing leaves every outcome in place, and the report keeps its true status.
        if l.cancel_requested() && cut_short {
            report.status = FinalStatus::Cancelled;
        }
        // The deadline in force is the extended one, where the request was extended.
        report.deadline = l.deadline;
        report.within_deadline = report.finished_at <= l.deadline;
    }
    Ok(report)
}
