//! `workspace-deleted` (Event Grid): when Azure ML reports a workspace deleted
//! (`Microsoft.Resources.ResourceDeleteSuccess`, operation
//! `Microsoft.MachineLearningServices/workspaces/delete`), record it in the audit trail and clean
//! up what survives the workspace: its containers in the storage account and its telemetry.
//!
//! The event is a hint, ARM is the authority: before anything is scheduled the workspace is read
//! from ARM. Still there: the event is forged or stale and nothing is deleted. Soft-deleted
//! (`provisioningState: SoftDeleted`): it can be recovered, so the clean-up waits out the
//! soft-delete window (the retention sweep runs due clean-ups, and cancels one if the workspace
//! came back). Gone (404): purged, cleaned at once. The event's own `forceToPurge` is recorded,
//! never trusted. A deleted workspace can no longer be read, so the clean-up works from what was
//! recorded on every DSR and sweep: the workspace's containers and the names of its jobs.
//!
//! Containers another known workspace also uses are never deleted; the artifact container
//! (`azureml` by default) is shared by every workspace of the storage account, known or not, so
//! it is never deleted either: only this workspace's run folders in it are.

use time::OffsetDateTime;
use tracing::{info, warn};

use std::collections::BTreeSet;

use super::{FnError, Services};
use crate::domain::ids::short_hash;
use crate::domain::workspace::WorkspaceId;
use crate::ports::blob::{BlobStoreExt, DeleteOutcome, StoreError};
use crate::ports::control_plane::{WorkspaceInfo, WorkspaceState};
use crate::protocol::eventgrid::{GridEvent, RESOURCE_DELETE_SUCCESS};
use crate::state::{StateStore, STATE};

pub(crate) const WORKSPACE_DELETE: &str = "Microsoft.MachineLearningServices/workspaces/delete";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    Ignored(String),
    Scheduled {
        workspace: String,
        due: OffsetDateTime,
    },
    CleanedUp {
        workspace: String,
    },
    NoInventory {
        workspace: String,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Cleanup {
    pub workspace: WorkspaceId,
    #[serde(with = "time::serde::rfc3339")]
    pub due_at: OffsetDateTime,
    pub purge: bool,
    pub event_id: String,
    pub info: WorkspaceInfo,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub outcome: Vec<String>,
}

pub async fn run(
    svc: &Services,
    event: &GridEvent,
    now: OffsetDateTime,
) -> Result<EventOutcome, FnError> {
    if event.event_type != RESOURCE_DELETE_SUCCESS {
        info!(event_type = %event.event_type, "workspace-deleted: not a resource deletion; ignored");
        return Ok(EventOutcome::Ignored(format!(
            "event type {}",
            event.event_type
        )));
    }
    let Some(data) = event.resource_action() else {
        return Err(FnError::BadRequest(
            "ResourceDeleteSuccess event without operationName/resourceUri".into(),
        ));
    };
    if !data.operation_name.eq_ignore_ascii_case(WORKSPACE_DELETE) {
        info!(operation = %data.operation_name, "workspace-deleted: not a workspace deletion; ignored");
        return Ok(EventOutcome::Ignored(format!(
            "operation {}",
            data.operation_name
        )));
    }
    if data
        .status
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case("Succeeded"))
    {
        return Ok(EventOutcome::Ignored("deletion did not succeed".into()));
    }
    let Ok(ws) = WorkspaceId::parse(&data.resource_uri) else {
        return Ok(EventOutcome::Ignored("resource is not a workspace".into()));
    };
    // Recorded for the audit trail only: an event body can be forged or replayed.
    let event_purge = data
        .http_request_url
        .as_deref()
        .is_some_and(|u| u.to_ascii_lowercase().contains("forcetopurge=true"));
    let arm = svc
        .control
        .workspace_state(&ws)
        .await
        .map_err(|e| FnError::Transient(e.to_string()))?;
    let purge = match arm {
        WorkspaceState::Active => {
            warn!(workspace = %ws.key(), "workspace-deleted: ARM reports the workspace exists; the event is not acted on");
            return Ok(EventOutcome::Ignored(
                "ARM reports the workspace still exists; nothing was deleted".into(),
            ));
        }
        WorkspaceState::SoftDeleted => false,
        WorkspaceState::Gone => true,
    };
    let state = svc.state();
    state.ensure_containers().await?;
    let at = event.time.unwrap_or(now);
    let audit = serde_json::json!({
        "event": "workspace_deleted", "workspace": ws.to_string(), "eventId": event.id, "purge": purge,
        "armState": format!("{arm:?}"), "eventSaysPurge": event_purge,
        "deletedAt": at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    });
    let audit_name = format!(
        "workspace-deletions/{}-{}.json",
        ws.key(),
        short_hash(&[&event.id], 12)
    );
    super::audit_trail::record(&state, &audit_name, &audit).await?;
    if !purge {
        // Recoverable until the soft-delete retention ends: followed up after that date.
        let until = at + time::Duration::days(svc.settings.workspace_soft_delete_days as i64);
        super::follow_up_workspace::record(
            &state,
            &ws,
            at,
            until,
            &format!("{}/{audit_name}", crate::state::AUDIT),
        )
        .await?;
    }

    let Some(info) = state
        .store
        .read_json::<WorkspaceInfo>(&state.workspace_inventory_ref(&ws))
        .await?
    else {
        warn!(workspace = %ws.key(), "workspace-deleted: no inventory for this workspace; nothing known to clean");
        return Ok(EventOutcome::NoInventory {
            workspace: ws.to_string(),
        });
    };
    let due = if purge {
        at
    } else {
        at + time::Duration::days(svc.settings.workspace_soft_delete_days as i64)
    };
    let existing: Option<Cleanup> = state.store.read_json(&state.cleanup_ref(&ws)).await?;
    // Keep the earliest due date (a purge after a soft delete brings the clean-up forward).
    if existing
        .as_ref()
        .is_none_or(|c| !c.done && (due < c.due_at))
    {
        let c = Cleanup {
            workspace: ws.clone(),
            due_at: due,
            purge,
            event_id: event.id.clone(),
            info,
            done: false,
            outcome: vec![],
        };
        state.store.write_json(&state.cleanup_ref(&ws), &c).await?;
    }
    if due <= now {
        run_due_cleanups(svc, now).await?;
        return Ok(EventOutcome::CleanedUp {
            workspace: ws.to_string(),
        });
    }
    info!(workspace = %ws.key(), due = %due, "workspace-deleted: soft delete; clean-up scheduled after the recovery window");
    Ok(EventOutcome::Scheduled {
        workspace: ws.to_string(),
        due,
    })
}

/// Run every clean-up whose time has come. Returns the workspaces cleaned.
pub async fn run_due_cleanups(svc: &Services, now: OffsetDateTime) -> Result<Vec<String>, FnError> {
    let state = svc.state();
    let mut done = Vec::new();
    for item in state
        .store
        .list_all(&state.account, crate::state::STATE, "cleanups/")
        .await?
    {
        let blob = state.blob(crate::state::STATE, item.name);
        let Some(mut c) = state.store.read_json::<Cleanup>(&blob).await? else {
            continue;
        };
        if c.done || c.due_at > now {
            continue;
        }
        // Recovered (or re-created) meanwhile? Then its data is live again: cancel. Asked for
        // purges too: ARM, not the record, decides.
        match svc.control.workspace_state(&c.workspace).await {
            Ok(WorkspaceState::Active) => {
                c.done = true;
                c.outcome = vec!["cancelled: the workspace exists again".into()];
                state.store.write_json(&blob, &c).await?;
                continue;
            }
            Ok(WorkspaceState::SoftDeleted | WorkspaceState::Gone) => {}
            Err(e) => return Err(FnError::Transient(e.to_string())),
        }
        c.outcome = clean(svc, &c.info).await?;
        c.done = true;
        state.store.write_json(&blob, &c).await?;
        let record = serde_json::to_value(&c).map_err(|e| FnError::Transient(e.to_string()))?;
        super::audit_trail::record(
            &state,
            &format!("workspace-cleanups/{}.json", c.workspace.key()),
            &record,
        )
        .await?;
        info!(workspace = %c.workspace.key(), "workspace clean-up done");
        done.push(c.workspace.to_string());
    }
    Ok(done)
}

/// Where the names of a workspace's jobs are kept: its run folders in the shared artifact
/// container can only be told apart by them once the workspace is gone.
fn job_names_ref(state: &StateStore, ws: &WorkspaceId) -> crate::ports::blob::BlobRef {
    state.blob(STATE, format!("inventory/workspace-jobs/{}.json", ws.key()))
}

/// The job names recorded for `ws` (empty when none were).
pub(crate) async fn job_names(
    state: &StateStore,
    ws: &WorkspaceId,
) -> Result<BTreeSet<String>, FnError> {
    Ok(state
        .store
        .read_json::<BTreeSet<String>>(&job_names_ref(state, ws))
        .await?
        .unwrap_or_default())
}

/// Add `names` to the job names recorded for `ws` (every job discovery lists all of a
/// workspace's jobs). A lost concurrent update only means fewer names, so less deleted later.
pub(crate) async fn record_job_names(
    state: &StateStore,
    ws: &WorkspaceId,
    names: BTreeSet<String>,
) -> Result<(), FnError> {
    let mut known = job_names(state, ws).await?;
    let before = known.len();
    known.extend(names);
    if known.len() != before {
        state
            .store
            .write_json(&job_names_ref(state, ws), &known)
            .await?;
    }
    Ok(())
}

async fn clean(svc: &Services, info: &WorkspaceInfo) -> Result<Vec<String>, FnError> {
    let state = svc.state();
    let others: Vec<WorkspaceInfo> = state
        .known_workspaces()
        .await?
        .into_iter()
        .filter(|o| o.id != info.id)
        .collect();
    let acct = &info.storage_account;
    let mut notes = Vec::new();

    // The artifact container: shared by every workspace of the storage account, including ones
    // this service never saw, so only this workspace's run folders go.
    let artifact = info.artifact_container.clone();
    let mine = job_names(&state, &info.id).await?;
    let mut theirs = BTreeSet::new();
    for o in others.iter().filter(|o| &o.storage_account == acct) {
        theirs.extend(job_names(&state, &o.id).await?);
    }
    let (mut folders, mut blobs, mut failed, mut ambiguous) = (0usize, 0usize, 0usize, 0usize);
    for job in &mine {
        if theirs.contains(job) {
            ambiguous += 1;
            continue;
        }
        let names: Vec<String> = match svc
            .store
            .list_all(acct, &artifact, &format!("ExperimentRun/dcid.{job}/"))
            .await
        {
            Ok(items) => items.into_iter().map(|b| b.name).collect(),
            Err(StoreError::NotFound(_)) => vec![],
            Err(e) => return Err(e.into()),
        };
        if names.is_empty() {
            continue;
        }
        folders += 1;
        for r in super::slice::delete_blobs(
            &svc.store,
            acct,
            &artifact,
            &names,
            svc.settings.concurrency,
        )
        .await?
        {
            match r {
                Ok(_) => blobs += 1,
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(_) => failed += 1,
            }
        }
    }
    let mut note = format!(
        "{acct}/{artifact}: kept, shared by the workspaces of this storage account; {folders} run folders of this workspace deleted ({blobs} blobs)"
    );
    if failed > 0 {
        note.push_str(&format!(", {failed} blobs could not be deleted"));
    }
    if ambiguous > 0 {
        note.push_str(&format!(
            ", {ambiguous} left in place because another workspace has jobs of the same name"
        ));
    }
    notes.push(note);

    // The notebooks share is Azure Files, not a blob container: emptied through the file port.
    if !info.file_share.is_empty() {
        let shared = others
            .iter()
            .any(|o| o.storage_account == info.storage_account && o.file_share == info.file_share);
        notes.push(if shared {
            format!(
                "{}/{} (file share): left in place, another workspace uses it",
                info.storage_account, info.file_share
            )
        } else {
            empty_share(svc, &info.storage_account, &info.file_share).await?
        });
    }

    // The workspace's own containers (named after its id): deleted unless another known
    // workspace uses them. The artifact container is never among them.
    let mut containers = vec![info.blobstore_container.clone()];
    containers.retain(|c| !c.is_empty() && *c != artifact && c != "azureml");
    containers.dedup();
    for c in &containers {
        let shared = others.iter().any(|o| {
            &o.storage_account == acct
                && (&o.artifact_container == c || &o.blobstore_container == c)
        });
        if shared {
            notes.push(format!(
                "{acct}/{c}: left in place, another workspace uses it"
            ));
            continue;
        }
        let outcome = svc.store.delete_container(acct, c).await?;
        notes.push(format!(
            "{acct}/{c}: {}",
            match outcome {
                DeleteOutcome::Deleted => "deleted".to_string(),
                DeleteOutcome::NotFound => "already gone".to_string(),
                DeleteOutcome::Retained { until } => format!("deleted, retained until {until}"),
            }
        ));
    }
    // Any other azureml* container is reported, not deleted: nothing ties it to this workspace.
    for c in svc.store.list_containers(acct, "azureml").await? {
        if c == artifact || containers.contains(&c) {
            continue;
        }
        notes.push(format!(
            "{acct}/{c}: left in place, not known to belong to this workspace"
        ));
    }
    match svc.telemetry.purge_workspace(info).await {
        Ok(s) => notes.push(format!("telemetry: {s:?}")),
        Err(e) => return Err(FnError::Transient(e.to_string())),
    }
    Ok(notes)
}

/// Delete every file of a workspace's notebooks share, then its emptied directories, deepest
/// first. The share itself stays (empty): deleting a share is a control-plane operation this
/// clean-up does not do. A missing share is reported as such; any other error fails the run so
/// it is retried, never reported as done.
async fn empty_share(svc: &Services, account: &str, share: &str) -> Result<String, FnError> {
    use crate::ports::file_share::{FileShareExt, ShareError};
    let fail = |e: ShareError| FnError::Transient(format!("{account}/{share} (file share): {e}"));
    let tree = match svc.files.list_tree(account, share, "").await {
        Ok(t) => t,
        Err(ShareError::ShareNotFound(_)) => {
            return Ok(format!(
                "{account}/{share} (file share): already gone (ShareNotFound)"
            ))
        }
        Err(e) => return Err(fail(e)),
    };
    for f in &tree.files {
        svc.files
            .delete_file(account, share, &f.path)
            .await
            .map_err(fail)?;
    }
    for d in &tree.directories {
        svc.files
            .delete_directory(account, share, d)
            .await
            .map_err(fail)?;
    }
    let retained = svc
        .files
        .retention(account, share)
        .await
        .map(|r| r.note(share))
        .unwrap_or_else(|e| Some(format!("share snapshots could not be checked: {e}")));
    Ok(format!(
        "{account}/{share} (file share): {} file(s) and {} folder(s) deleted, the empty share left in place{}",
        tree.files.len(),
        tree.directories.len(),
        retained.map(|n| format!("; {n}")).unwrap_or_default()
    ))
}
