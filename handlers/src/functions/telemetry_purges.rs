//! Telemetry purges, tracked to the end. A Log Analytics purge is asynchronous (up to 30 days),
//! not idempotent and rate-limited (about 50 requests per hour per workspace), so:
//! - the delete slice writes one record per purge in the state account
//!   (`dsr-state/purges/<request>/<slice>/<id>.json`, create-only, so a redelivered slice
//!   finds the same records instead of planning again) and sends those it can;
//! - a send marks the record `sending` first and records the answer after: a POST is never
//!   repeated automatically — a refusal or a 5xx fails the record, a record found still
//!   `sending` (a crash between the POST and the write) is failed as "outcome unknown"
//!   after [`SENDING_GRACE`], for an operator to check; a rate limit (`Deferred`) leaves it
//!   `to_send` for the next run;
//! - the retention-sweep timer ([`sweep`]) sends what is still to send and polls accepted
//!   purges until they complete or fail (a purge still open after [`PURGE_SLA`] fails);
//! - when every purge of a request has ended, a new certificate version
//!   (`certificate.vN.json`/`.md` next to the first, N one above the newest version — a review
//!   decision may have added one) and an audit record of the change
//!   (`dsr-audit/requests/<id>.vN.json`) are written and a result message sent; the records
//!   are then removed (the certificate keeps what they proved).

use std::collections::BTreeMap;

use time::OffsetDateTime;
use tracing::{info, warn};

use super::{FnError, Services};
use crate::domain::report::{render_markdown, FinalReport, ResultMessage};
use crate::domain::request::{RequestId, RequestKind};
use crate::domain::slice::{Item, ItemStatus, SliceTask};
use crate::domain::telemetry::{combined_status, PurgeRecord, PurgeState};
use crate::ports::blob::{BlobRef, BlobStoreExt, Condition};
use crate::ports::bus::{queues, OutMessage};
use crate::ports::control_plane::WorkspaceInfo;
use crate::ports::telemetry::{PurgePoll, PurgeSend};
use crate::state::{StateStore, PURGES_PREFIX, REPORTS};

/// Microsoft's stated time for a purge to complete.
pub(crate) const PURGE_SLA: time::Duration = time::Duration::days(30);
/// How long a record may stay `sending` before its outcome is declared unknown.
pub(crate) const SENDING_GRACE: time::Duration = time::Duration::hours(1);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeSweep {
    pub sent: usize,
    pub still_open: usize,
    pub completed: usize,
    pub failed: usize,
    /// Requests whose certificate got a new version in this run.
    pub revised: Vec<String>,
}

fn slice_prefix(request: &RequestId, slice_key: &str) -> String {
    format!("{PURGES_PREFIX}{request}/{slice_key}/")
}

/// Send one `to_send` record: mark it `sending`, POST once, record the answer.
async fn send(
    svc: &Services,
    state: &StateStore,
    at: &BlobRef,
    rec: &mut PurgeRecord,
    now: OffsetDateTime,
) -> Result<(), FnError> {
    rec.state = PurgeState::Sending;
    state.store.write_json(at, rec).await?;
    match svc.telemetry.send_purge(&rec.destination, &rec.body).await {
        Ok(PurgeSend::Accepted {
            operation_id,
            status_url,
        }) => {
            rec.state = PurgeState::Pending;
            rec.operation_id = Some(operation_id);
            rec.status_url = Some(status_url);
            rec.requested_at = Some(now);
            rec.reason = None;
        }
        Ok(PurgeSend::Deferred { reason }) => {
            rec.state = PurgeState::ToSend;
            rec.reason = Some(reason);
        }
        Err(e) => {
            // Not resent: the service may have accepted it (a 5xx or a lost answer).
            rec.state = PurgeState::Failed;
            rec.finished_at = Some(now);
            rec.reason = Some(format!(
                "the purge request was not accepted ({}); it is not resent automatically because a purge is not idempotent",
                crate::logging::redact(&e.to_string())
            ));
        }
    }
    state.store.write_json(at, rec).await?;
    Ok(())
}

/// The delete slice's telemetry step: plan (once), persist, send what can be sent; the item
/// status of each telemetry entry (by index).
pub(crate) async fn purge_for_slice(
    svc: &Services,
    task: &SliceTask,
    ws: &WorkspaceInfo,
    entries: &[(usize, Item)],
    now: OffsetDateTime,
) -> Result<Vec<(usize, ItemStatus)>, FnError> {
    let state = svc.state();
    let prefix = slice_prefix(&task.request_id, &task.key);
    let mut records = state.purge_records(&prefix).await?;
    let mut unaddressable: BTreeMap<(String, String), String> = BTreeMap::new();
    if records.is_empty() {
        let plans = svc
            .telemetry
            .purge_plan(ws, &task.subject)
            .await
            .map_err(|e| FnError::Transient(e.to_string()))?;
        for p in plans {
            match p.bodies {
                Ok(bodies) => {
                    for body in bodies {
                        let rec = PurgeRecord {
                            request_id: task.request_id.clone(),
                            slice_key: task.key.clone(),
                            destination: p.destination.clone(),
                            table: p.table.clone(),
                            body,
                            state: PurgeState::ToSend,
                            operation_id: None,
                            status_url: None,
                            created_at: now,
                            requested_at: None,
                            finished_at: None,
                            reason: None,
                        };
                        // Create-only: a concurrent delivery writes the same name.
                        state
                            .store
                            .create_json(&state.purge_ref(&rec), &rec)
                            .await?;
                    }
                }
                Err(reason) => {
                    unaddressable.insert((p.destination, p.table), reason);
                }
            }
        }
        records = state.purge_records(&prefix).await?;
    }
    for (at, rec) in records.iter_mut() {
        if rec.state == PurgeState::ToSend {
            send(svc, &state, at, rec, now).await?;
        }
    }
    let mut out = Vec::new();
    for (i, item) in entries {
        let Item::Telemetry {
            table, destination, ..
        } = item
        else {
            continue;
        };
        let same_dest = |d: &str| {
            destination
                .as_deref()
                .is_none_or(|x| x.eq_ignore_ascii_case(d))
        };
        let mine: Vec<&PurgeRecord> = records
            .iter()
            .map(|(_, r)| r)
            .filter(|r| &r.table == table && same_dest(&r.destination))
            .collect();
        let status = if let Some(reason) = unaddressable
            .iter()
            .find(|((d, t), _)| t == table && same_dest(d))
            .map(|(_, r)| r)
        {
            ItemStatus::Failed {
                reason: reason.clone(),
            }
        } else {
            // No purge for a table the inventory listed: its rows were gone when planned.
            combined_status(&mine).unwrap_or(ItemStatus::Deleted { verified: false })
        };
        out.push((*i, status));
    }
    Ok(out)
}

/// The timer's part: send what waits, poll what runs, fail what is overdue, and revise the
/// certificates of requests whose purges have all ended.
pub async fn sweep(svc: &Services, now: OffsetDateTime) -> Result<PurgeSweep, FnError> {
    let state = svc.state();
    let mut out = PurgeSweep::default();
    let mut by_request: BTreeMap<String, Vec<(BlobRef, PurgeRecord)>> = BTreeMap::new();
    for (at, mut rec) in state.purge_records(PURGES_PREFIX).await? {
        match rec.state {
            PurgeState::ToSend => {
                send(svc, &state, &at, &mut rec, now).await?;
                if rec.state == PurgeState::Pending {
                    out.sent += 1;
                }
            }
            PurgeState::Sending if now - rec.created_at > SENDING_GRACE => {
                rec.state = PurgeState::Failed;
                rec.finished_at = Some(now);
                rec.reason = Some("the purge request's outcome is unknown (no answer was recorded); check the workspace's purge operations and resend by hand if needed".into());
                state.store.write_json(&at, &rec).await?;
            }
            PurgeState::Pending => {
                let polled = match rec.status_url.as_deref() {
                    Some(u) => svc.telemetry.poll_purge(u).await,
                    None => Ok(PurgePoll::Failed {
                        reason: "accepted without a status location".into(),
                    }),
                };
                let requested = rec.requested_at.unwrap_or(rec.created_at);
                match polled {
                    Ok(PurgePoll::Pending) | Err(_) if now - requested <= PURGE_SLA => {
                        if let Err(e) = polled {
                            warn!(error = %crate::logging::redact(&e.to_string()), "telemetry purge status could not be read; polled again next run");
                        }
                    }
                    Ok(PurgePoll::Completed) => {
                        rec.state = PurgeState::Completed;
                        rec.finished_at = Some(now);
                        state.store.write_json(&at, &rec).await?;
                    }
                    Ok(PurgePoll::Failed { reason }) => {
                        rec.state = PurgeState::Failed;
                        rec.finished_at = Some(now);
                        rec.reason = Some(crate::logging::redact(&reason));
                        state.store.write_json(&at, &rec).await?;
                    }
                    _ => {
                        rec.state = PurgeState::Failed;
                        rec.finished_at = Some(now);
                        rec.reason = Some(format!(
                            "not completed within the purge SLA ({} days)",
                            PURGE_SLA.whole_days()
                        ));
                        state.store.write_json(&at, &rec).await?;
                    }
                }
            }
            _ => {}
        }
        match rec.state {
            PurgeState::Completed => out.completed += 1,
            PurgeState::Failed => out.failed += 1,
            _ => out.still_open += 1,
        }
        by_request
            .entry(rec.request_id.to_string())
            .or_default()
            .push((at, rec));
    }
    for (id, recs) in by_request {
        if recs.iter().any(|(_, r)| r.state.is_open()) {
            continue;
        }
        if revise_certificate(svc, &state, &recs, now).await? {
            out.revised.push(id);
        }
    }
    if out != PurgeSweep::default() {
        info!(
            sent = out.sent,
            open = out.still_open,
            completed = out.completed,
            failed = out.failed,
            revised = out.revised.len(),
            "retention-sweep: telemetry purges polled"
        );
    }
    Ok(out)
}

/// Write the new certificate version of a request whose purges have all ended, then drop the
/// records. `false` while the request has no certificate yet (not finalised).
async fn revise_certificate(
    svc: &Services,
    state: &StateStore,
    recs: &[(BlobRef, PurgeRecord)],
    now: OffsetDateTime,
) -> Result<bool, FnError> {
    let Some((_, first)) = recs.first() else {
        return Ok(false);
    };
    let id = &first.request_id;
    // The newest version (a review decision may have added one) is the base, so neither
    // revision loses the other's changes.
    let latest = match state.plan(id).await? {
        Some(plan) => super::review::latest_report(state, &plan).await?,
        None => None,
    };
    let (base_version, report) = match latest {
        Some(l) => l,
        None => {
            let v1 = state.blob(REPORTS, format!("{id}/certificate.json"));
            let Some(report): Option<FinalReport> = state.store.read_json(&v1).await? else {
                return Ok(false);
            };
            (1, report)
        }
    };
    let revised = report.revised(now, |slice_key, item| {
        let Item::Telemetry {
            table, destination, ..
        } = item
        else {
            return None;
        };
        let mine: Vec<&PurgeRecord> = recs
            .iter()
            .map(|(_, r)| r)
            .filter(|r| {
                r.slice_key == slice_key
                    && &r.table == table
                    && destination
                        .as_deref()
                        .is_none_or(|d| d.eq_ignore_ascii_case(&r.destination))
            })
            .collect();
        combined_status(&mine)
    });
    // A rerun after a crash finds its own version already written (same statuses): rewritten
    // in place rather than added again.
    let version = if base_version > 1 && revised.results == report.results {
        base_version
    } else {
        base_version + 1
    };
    let v2 = state.blob(REPORTS, format!("{id}/certificate.v{version}.json"));
    state.store.write_json(&v2, &revised).await?;
    state
        .store
        .put(
            &state.blob(REPORTS, format!("{id}/certificate.v{version}.md")),
            bytes::Bytes::from(render_markdown(&revised)),
            "text/markdown",
            Condition::None,
            &Default::default(),
        )
        .await?;
    let audit = serde_json::json!({
        "requestId": revised.request_id,
        "type": revised.kind,
        "version": version,
        "change": "telemetry purges ended",
        "previousStatus": report.status,
        "status": revised.status,
        "subject": revised.subject_log_id,
        "revisedAt": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "purges": recs.iter().map(|(_, r)| serde_json::json!({
            "destination": r.destination, "table": r.table, "operationId": r.operation_id,
            "state": r.state,
            "requestedAt": r.requested_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
            "finishedAt": r.finished_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        })).collect::<Vec<_>>(),
        "report": v2.to_string(),
        "reportSha256": crate::domain::ids::sha256_hex(&serde_json::to_vec(&revised).unwrap_or_default()),
        "itemsMerkleRoot": revised.items_merkle_root,
    });
    super::audit_trail::record(state, &format!("requests/{id}.v{version}.json"), &audit).await?;
    // The timer has no trace of its own: these messages go in the request's.
    let trace_id = super::lifecycle::trace_id_of(state, id).await?;
    crate::trace::within(&trace_id, async {
        let msg = ResultMessage {
            schema_version: "1.0".into(),
            request_id: Some(id.to_string()),
            kind: Some(revised.kind),
            status: revised.status,
            code: None,
            reason: None,
            dry_run: revised.dry_run,
            counts: Some(revised.counts.clone()),
            deadline: Some(revised.deadline),
            report: Some(v2.to_string()),
            export_link: None,
            reply_to: None,
        };
        if revised.kind != RequestKind::Export {
            svc.bus
                .send(
                    OutMessage::json(queues::RESULTS, format!("result/{id}/v{version}"), &msg)
                        .correlated(id.to_string()),
                )
                .await?;
        }
        // The lifecycle follows (completed with purge pending -> completed or partially failed);
        // a request with no lifecycle document (a retention sweep) is left alone.
        super::lifecycle::advance(
            svc,
            id,
            crate::domain::lifecycle::RequestState::from_final(revised.status),
            None,
        )
        .await?;
        Ok::<(), FnError>(())
    })
    .await?;
    for (at, _) in recs {
        match state.store.delete(at).await {
            Ok(_) | Err(crate::ports::blob::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    info!(request = %id, status = ?revised.status, "telemetry purges ended: new certificate version written");
    Ok(true)
}
