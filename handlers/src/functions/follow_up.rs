//! The "retained until" follow-up (`domain::follow_up`), run by the retention-sweep timer with
//! its clock: due ledger entries are re-checked through the blob store port
//! ([`BlobStore::recoverable`](crate::ports::blob::BlobStore::recoverable): in Azure a listing
//! with deleted blobs, versions and snapshots), the file-share port (Azure Files: the file and
//! each share snapshot) and the telemetry port (each purge operation's status, asked again:
//! "fully erased" only once it reports `completed`), and a final certificate version
//! (`dsr-reports/<id>/certificate.final.{json,md}`) and a chained audit record are written.
//! A request whose telemetry purges are still running waits for them (certificate v2) first.

use time::OffsetDateTime;
use tracing::info;

use super::{FnError, Services};
use crate::domain::follow_up::{final_version, key, Found, Ledger};
use crate::domain::report::{render_markdown, FinalReport, FinalStatus, ResultMessage};
use crate::domain::request::RequestKind;
use crate::domain::slice::Item;
use crate::ports::blob::{BlobRef, BlobStoreExt, Condition};
use crate::ports::bus::{queues, OutMessage};
use crate::state::{StateStore, REPORTS, STATE};

pub const LEDGER_PREFIX: &str = "follow-up/";

fn ledger_ref(state: &StateStore, id: &crate::domain::request::RequestId) -> BlobRef {
    state.blob(STATE, format!("{LEDGER_PREFIX}{id}.json"))
}

/// Called by the aggregator: remember what the certificate says is retained (create-only, so a
/// redelivery changes nothing). `ledger` is [`Ledger::of`] the report, gathered as the
/// certificate was written.
pub async fn record_ledger(state: &StateStore, ledger: Option<Ledger>) -> Result<(), FnError> {
    if let Some(mut ledger) = ledger {
        // Where each purge's status can be asked again (the records are dropped once the
        // purges end; the ledger keeps only the status locations).
        let prefix = format!("{}{}/", crate::state::PURGES_PREFIX, ledger.request_id);
        let records = state.purge_records(&prefix).await?;
        for l in ledger.items.iter_mut() {
            if let Item::Telemetry {
                table, destination, ..
            } = &l.item
            {
                l.purge_status = records
                    .iter()
                    .filter(|(_, r)| {
                        r.slice_key == l.slice_key
                            && &r.table == table
                            && destination.as_deref().is_none_or(|d| d == r.destination)
                    })
                    .filter_map(|(_, r)| r.status_url.clone())
                    .collect();
            }
        }
        state
            .store
            .create_json(&ledger_ref(state, &ledger.request_id), &ledger)
            .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowUpSweep {
    /// Requests whose final certificate version was written.
    pub finalised: Vec<String>,
    /// Of those, how many items were still recoverable.
    pub still_recoverable: usize,
    /// Open entries not yet due (or waiting for telemetry purges).
    pub waiting: usize,
}

pub async fn sweep(svc: &Services, now: OffsetDateTime) -> Result<FollowUpSweep, FnError> {
    let state = svc.state();
    let mut out = FollowUpSweep::default();
    let ws = super::follow_up_workspace::sweep(svc, &state, now).await?;
    out.finalised.extend(ws.finalised);
    out.still_recoverable += ws.still_recoverable;
    out.waiting += ws.waiting;
    for item in state
        .store
        .list_all(&state.account, STATE, LEDGER_PREFIX)
        .await?
    {
        let at = state.blob(STATE, item.name);
        let Some(ledger): Option<Ledger> = state.store.read_json(&at).await? else {
            continue;
        };
        if ledger.done_at.is_some() {
            continue;
        }
        if !ledger.due(now) {
            out.waiting += 1;
            continue;
        }
        match finalise(svc, &state, &ledger, now).await? {
            Some(still) => {
                out.still_recoverable += still;
                out.finalised.push(ledger.request_id.to_string());
                let done = Ledger {
                    done_at: Some(now),
                    ..ledger
                };
                state.store.write_json(&at, &done).await?;
            }
            None => out.waiting += 1,
        }
    }
    Ok(out)
}

/// The newest certificate version before the final one.
async fn latest(state: &StateStore, id: &str) -> Result<Option<(BlobRef, FinalReport)>, FnError> {
    for name in [
        format!("{id}/certificate.v2.json"),
        format!("{id}/certificate.json"),
    ] {
        let at = state.blob(REPORTS, name);
        if let Some(r) = state.store.read_json::<FinalReport>(&at).await? {
            return Ok(Some((at, r)));
        }
    }
    Ok(None)
}

/// What of a purged table may still be there: each purge operation asked again through its
/// status location (`GET …/operations/{purgeId}`, `{"status": "pending" | "completed"}`); only
/// `completed` counts as erased. `None` when a status cannot be read (then the final version
/// does not say "erased").
async fn purge_left(
    svc: &Services,
    report: &FinalReport,
    l: &crate::domain::follow_up::LedgerItem,
) -> Option<Vec<String>> {
    use crate::domain::slice::ItemStatus;
    use crate::ports::telemetry::PurgePoll;
    let status = report
        .results
        .iter()
        .filter(|r| r.key == l.slice_key)
        .flat_map(|r| r.items.iter())
        .find(|i| i.item == l.item)
        .map(|i| i.status.clone());
    if let Some(ItemStatus::Failed { reason }) = &status {
        return Some(vec![format!("purge failed: {reason}")]);
    }
    if l.purge_status.is_empty() {
        // Never accepted with a status location: only the certificate's own record remains.
        return match status {
            Some(ItemStatus::Deleted { verified: true }) => Some(vec![]),
            Some(ItemStatus::Pending { .. }) => Some(vec!["purge not completed".into()]),
            _ => None,
        };
    }
    let mut left = Vec::new();
    for url in &l.purge_status {
        match svc.telemetry.poll_purge(url).await {
            Ok(PurgePoll::Completed) => {}
            Ok(PurgePoll::Pending) => {
                left.push("purge operation still pending (not completed)".to_string())
            }
            Ok(PurgePoll::Failed { reason }) => left.push(format!(
                "purge operation failed: {}",
                crate::logging::redact(&reason)
            )),
            Err(_) => return None,
        }
    }
    Some(left)
}

/// Returns the number of items still recoverable, or `None` when the request must wait.
async fn finalise(
    svc: &Services,
    state: &StateStore,
    ledger: &Ledger,
    now: OffsetDateTime,
) -> Result<Option<usize>, FnError> {
    let id = ledger.request_id.to_string();
    let Some((based_on, report)) = latest(state, &id).await? else {
        return Err(FnError::Transient(format!(
            "follow-up of {id}: no certificate found"
        )));
    };
    // Purges still running: wait for their certificate version, unless their completion
    // window has ended (then the final version names them still open).
    let window_over = ledger
        .items
        .iter()
        .filter(|l| l.is_purge())
        .all(|l| l.until <= now);
    // (A request in review carries its running purges as pending items, not in its status.)
    let purges_running = report.status == FinalStatus::CompletedPurgePending
        || report.results.iter().flat_map(|r| r.items.iter()).any(|i| {
            matches!(i.item, Item::Telemetry { .. })
                && matches!(i.status, crate::domain::slice::ItemStatus::Pending { .. })
        });
    if purges_running && !window_over {
        return Ok(None);
    }
    let mut found = Found::new();
    for l in &ledger.items {
        let pieces = match &l.item {
            Item::Blob {
                account,
                container,
                name,
                ..
            } => Some(
                svc.store
                    .recoverable(&BlobRef::new(account, container, name.clone()), now)
                    .await?,
            ),
            Item::File {
                account,
                share,
                path,
                ..
            } => Some(
                svc.files
                    .recoverable(account, share, path, now)
                    .await
                    .map_err(|e| FnError::Transient(format!("follow-up of {id}: {e}")))?,
            ),
            Item::Telemetry { .. } => purge_left(svc, &report, l).await,
            _ => None,
        };
        found.insert(key(&l.slice_key, &l.item), pieces);
    }
    let still = found
        .values()
        .filter(|p| p.as_ref().is_some_and(|p| !p.is_empty()))
        .count();
    let (revised, statement) = final_version(&report, ledger, &found, now);
    let json_ref = state.blob(REPORTS, format!("{id}/certificate.final.json"));
    state.store.write_json(&json_ref, &revised).await?;
    let md = format!(
        "> Final version ({}): {statement}. Based on {based_on}.\n\n{}",
        now.date(),
        render_markdown(&revised)
    );
    state
        .store
        .put(
            &state.blob(REPORTS, format!("{id}/certificate.final.md")),
            bytes::Bytes::from(md),
            "text/markdown",
            Condition::None,
            &Default::default(),
        )
        .await?;
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let audit = serde_json::json!({
        "requestId": id,
        "type": revised.kind,
        "version": "final",
        "change": "retained data followed up after its retention date",
        "statement": statement,
        "previousStatus": report.status,
        "status": revised.status,
        "subject": revised.subject_log_id,
        "checkedAt": rfc(now),
        "items": ledger.items.iter().map(|l| serde_json::json!({
            "item": l.item.label(),
            // A share snapshot has no end date: its date is only when it was re-checked.
            (if l.recheck_only { "recheckOn" } else { "retainedUntil" }): rfc(l.until),
            "stillRecoverable": found.get(&key(&l.slice_key, &l.item)),
        })).collect::<Vec<_>>(),
        "basedOn": based_on.to_string(),
        "report": json_ref.to_string(),
        "reportSha256": crate::domain::ids::sha256_hex(&serde_json::to_vec(&revised).unwrap_or_default()),
        "itemsMerkleRoot": revised.items_merkle_root,
    });
    super::audit_trail::record(state, &format!("requests/{id}.final.json"), &audit).await?;
    // A result message only when the outcome changed (something was still there): a final
    // version confirming the previous one tells the ticketing system nothing new. It goes in
    // the request's trace (the timer has none of its own).
    if revised.kind != RequestKind::Export && revised.status != report.status {
        let trace_id = super::lifecycle::trace_id_of(state, &ledger.request_id).await?;
        let msg = ResultMessage {
            schema_version: "1.0".into(),
            request_id: Some(id.clone()),
            kind: Some(revised.kind),
            status: revised.status,
            code: None,
            reason: Some(statement),
            dry_run: revised.dry_run,
            counts: Some(revised.counts.clone()),
            deadline: Some(revised.deadline),
            report: Some(json_ref.to_string()),
            export_link: None,
            reply_to: None,
        };
        crate::trace::within(&trace_id, async {
            svc.bus
                .send(
                    OutMessage::json(queues::RESULTS, format!("result/{id}/final"), &msg)
                        .correlated(id.clone()),
                )
                .await
        })
        .await?;
    }
    info!(request = %id, status = ?revised.status, still_recoverable = still, "follow-up: final certificate version written");
    Ok(Some(still))
}
