//! `dsr-aggregate`: fan-in. Records each slice completion idempotently; when every planned slice
//! is in, finalises EXACTLY once. The report document is created with If-None-Match `*`: whoever
//! creates it is the finaliser, everyone else (a redelivery, a concurrent invocation) reads the
//! stored one, so the bundle, audit record and result message are always built from the same
//! report; the audit record is create-only and the result message has a deterministic MessageId.

use time::OffsetDateTime;
use tracing::info;

use super::{FnError, Services};
use crate::domain::plan::Plan;
use crate::domain::report::{
    all_slices_in, build_report, render_markdown, FinalReport, FinalStatus, ResultMessage,
};
use crate::domain::request::RequestKind;
use crate::domain::slice::SliceCompletion;
use crate::ports::blob::{BlobStoreExt, Condition};
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
    let mut results = Vec::with_capacity(plan.slices.len());
    for s in &plan.slices {
        results.push(
            state
                .slice_result(&plan.request_id, &s.key)
                .await?
                .ok_or_else(|| FnError::Transient(format!("result of {} missing", s.key)))?,
        );
    }
    let mut candidate = build_report(plan, results, OffsetDateTime::now_utc());
    // Lineage impact (read-only), traced once: a redelivery uses the stored report.
    if plan.kind != RequestKind::Retention && state.report(&plan.request_id).await?.is_none() {
        candidate.derived_from_subject_data =
            Some(super::lineage::trace_report(svc, &candidate).await);
    }
    // A cancelled request's report says so; its items say what was and was not done.
    let lifecycle = super::lifecycle::load(state, &plan.request_id).await?;
    if let Some(l) = &lifecycle {
        // Only when it stopped something: a cancel that landed while the last chunk was
        // finishing leaves every outcome in place, and the report keeps its true status.
        if l.cancel_requested() && crate::domain::lifecycle::cancel_cut_short(&candidate.results) {
            candidate.status = crate::domain::report::FinalStatus::Cancelled;
        }
        // The deadline in force is the extended one, where the request was extended.
        candidate.deadline = l.deadline;
        candidate.within_deadline = candidate.finished_at <= l.deadline;
    }
    // Serialised once (compact: a heavy subject's report lists a million items): the same bytes
    // are the stored report, the manifest or certificate copy, and what the audit record hashes.
    let body = bytes::Bytes::from(
        serde_json::to_vec(&candidate).map_err(|e| FnError::Transient(e.to_string()))?,
    );
    let created = state
        .store
        .create_bytes(
            &state.report_ref(&plan.request_id),
            body.clone(),
            "application/json",
        )
        .await?;
    let (report, body): (FinalReport, bytes::Bytes) = if created {
        (candidate, body)
    } else {
        drop((candidate, body));
        let (stored, _) = state
            .store
            .read_small(&state.report_ref(&plan.request_id))
            .await?;
        let report = serde_json::from_slice(&stored)
            .map_err(|e| FnError::Transient(format!("stored report unreadable: {e}")))?;
        (report, stored)
    };

    // Human- and machine-readable copies: export bundle or deletion certificate.
    let md = render_markdown(&report);
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
    state
        .store
        .put(
            &json_ref,
            body.clone(),
            "application/json",
            Condition::None,
            &Default::default(),
        )
        .await?;
    state
        .store
        .put(
            &state.blob(container, format!("{base}{stem}.md")),
            bytes::Bytes::from(md),
            "text/markdown",
            Condition::None,
            &Default::default(),
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
        "reportSha256": crate::domain::ids::sha256_hex(&body),
        "itemsMerkleRoot": report.items_merkle_root,
    });
    // Chained (tamper-evident) and kept at `requests/<id>.json` as before.
    super::audit_trail::record(state, &format!("requests/{}.json", plan.request_id), &audit)
        .await?;
    drop(body);
    // What the certificate says is retained, for the follow-up after its date.
    super::follow_up::record_ledger(state, &report, &json_ref).await?;

    // An export's link is to its archive (built once, from the stored report), never to the
    // bare manifest: the person downloads one file holding everything and a guide to it.
    let export_link = if plan.kind == RequestKind::Export && !plan.dry_run {
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
